// Float64 finite-difference checks of the native core: the loss gradient, the Hessian-vector
// product, and the meta-gradient of every algorithm, loss and activation, with one and
// several inner steps. Tolerance: relative error (2-norm) 1e-6 at eps 1e-6 unless stated.
import { describe, it, expect } from 'vitest';
import { gradient, hvp, metaGradient, initParams, type Algorithm, type ModelSpec } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { MODELS, expectClose, finiteDiff, modelName, randomArray, randomBatch, randomTargets } from './helpers.js';

const TOL = 1e-6;

describe('loss gradient and Hessian-vector product (float64)', () => {
  for (const model of MODELS) {
    it(`match finite differences for ${modelName(model)}`, () => {
      const rng = new Rng(11);
      const params = initParams(model, { seed: 3, precision: 'float64' });
      const n = 7;
      const x = randomArray(rng, n * model.layers[0]!, 2);
      const y = randomTargets(rng, model, n) as Float64Array;
      const { grad } = gradient(model, params, x, y);
      const fd = finiteDiff((p) => gradient(model, p, x, y).loss, params);
      expectClose(grad, fd, TOL, 'gradient');
      const v = randomArray(rng, params.length);
      const hv = hvp(model, params, x, y, v);
      // directional finite difference of the gradient: (g(p + e v) - g(p - e v)) / 2e
      const e = 1e-6;
      const gp = gradient(model, params.map((p, i) => p + e * v[i]!), x, y).grad;
      const gm = gradient(model, params.map((p, i) => p - e * v[i]!), x, y).grad;
      expectClose(hv, gp.map((g, i) => (g - gm[i]!) / (2 * e)), TOL, 'hvp');
      expect(hv.some((h) => h !== 0)).toBe(true);
    });
  }
});

const SECOND_ORDER: Algorithm[] = ['maml', 'meta-sgd', 'anil'];

describe('meta-gradient (float64) against finite differences of the meta-loss', () => {
  for (const model of MODELS) {
    for (const algorithm of SECOND_ORDER) {
      for (const innerSteps of [1, 3]) {
        it(`${algorithm}, ${innerSteps} step(s), ${modelName(model)}`, () => {
          const rng = new Rng(100 + innerSteps);
          const params = initParams(model, { seed: 5, precision: 'float64' });
          const batch = randomBatch(rng, model, 3, 5, 4);
          const innerLr = algorithm === 'meta-sgd' ? randomArray(rng, params.length, 0.3).map((r) => Math.abs(r) + 0.05) : 0.2;
          const opts = { algorithm, innerLr, innerSteps, precision: 'float64' as const };
          const r = metaGradient(model, params, batch, opts);
          const fd = finiteDiff((p) => metaGradient(model, p, batch, opts).loss, params);
          expectClose(r.grad, fd, TOL, 'meta-gradient');
          // the rates' gradient
          expect(r.innerLrGrad).toBeDefined();
          if (innerLr instanceof Float64Array) {
            const fdr = finiteDiff((lr) => metaGradient(model, params, batch, { ...opts, innerLr: lr }).loss, innerLr);
            expectClose(r.innerLrGrad!, fdr, TOL, 'rate gradient');
          } else {
            const per = Array.from({ length: innerSteps }, () => innerLr);
            const fdr = finiteDiff((lr) => metaGradient(model, params, batch, { ...opts, innerLr: Array.from(lr) }).loss, Float64Array.from(per));
            expectClose(r.innerLrGrad!, fdr, TOL, 'per-step rate gradient');
          }
        });
      }
    }
  }
});

describe('MAML++ refinements (float64)', () => {
  const model: ModelSpec = { layers: [3, 6, 5, 2], activation: 'tanh', loss: 'mse' };
  it('per-step rates and multi-step loss weights give the exact gradient of the weighted loss', () => {
    const rng = new Rng(7);
    const params = initParams(model, { seed: 9, precision: 'float64' });
    const batch = randomBatch(rng, model, 4, 6, 5);
    const opts = { algorithm: 'maml' as const, innerLr: [0.3, 0.1, 0.2], innerSteps: 3, stepWeights: [0.1, 0.2, 0.3, 0.4], precision: 'float64' as const };
    const r = metaGradient(model, params, batch, opts);
    expectClose(r.grad, finiteDiff((p) => metaGradient(model, p, batch, opts).loss, params), TOL, 'grad');
    const fdr = finiteDiff((lr) => metaGradient(model, params, batch, { ...opts, innerLr: Array.from(lr) }).loss, Float64Array.from(opts.innerLr));
    expectClose(r.innerLrGrad!, fdr, TOL, 'rate grad');
  });

  it('per-step per-parameter rates (length S·P) have an exact gradient', () => {
    const rng = new Rng(8);
    const params = initParams(model, { seed: 9, precision: 'float64' });
    const batch = randomBatch(rng, model, 2, 5, 5);
    const lr = randomArray(rng, 2 * params.length, 0.2).map((v) => Math.abs(v) + 0.05);
    const opts = { algorithm: 'meta-sgd' as const, innerLr: lr, innerSteps: 2, precision: 'float64' as const };
    const r = metaGradient(model, params, batch, opts);
    expect(r.innerLrGrad!.length).toBe(2 * params.length);
    expectClose(r.innerLrGrad!, finiteDiff((l) => metaGradient(model, params, batch, { ...opts, innerLr: l }).loss, lr), TOL, 'rate grad');
  });

  it('ragged tasks (CSR offsets) give the exact gradient and match uniform tasks task by task', () => {
    const rng = new Rng(9);
    const params = initParams(model, { seed: 1, precision: 'float64' });
    const supportOffsets = Int32Array.from([0, 3, 3, 8]); // a task with no support rows adapts nothing
    const queryOffsets = Int32Array.from([0, 2, 6, 7]);
    const batch = {
      tasks: 3,
      supportOffsets,
      queryOffsets,
      xs: randomArray(rng, 8 * 3),
      ys: randomArray(rng, 8 * 2),
      xq: randomArray(rng, 7 * 3),
      yq: randomArray(rng, 7 * 2),
    };
    const opts = { algorithm: 'maml' as const, innerLr: 0.3, innerSteps: 2, precision: 'float64' as const };
    const r = metaGradient(model, params, batch, opts);
    expectClose(r.grad, finiteDiff((p) => metaGradient(model, p, batch, opts).loss, params), TOL, 'ragged grad');
    // the mean of the three single-task gradients
    const mean = new Float64Array(params.length);
    for (let t = 0; t < 3; t++) {
      const s0 = supportOffsets[t]!, s1 = supportOffsets[t + 1]!, q0 = queryOffsets[t]!, q1 = queryOffsets[t + 1]!;
      const one = metaGradient(model, params, {
        tasks: 1,
        supportOffsets: Int32Array.from([0, s1 - s0]),
        queryOffsets: Int32Array.from([0, q1 - q0]),
        xs: batch.xs.slice(s0 * 3, s1 * 3),
        ys: batch.ys.slice(s0 * 2, s1 * 2),
        xq: batch.xq.slice(q0 * 3, q1 * 3),
        yq: batch.yq.slice(q0 * 2, q1 * 2),
      }, opts);
      one.grad.forEach((g, i) => (mean[i]! += g / 3));
    }
    expectClose(r.grad, mean, 1e-12, 'ragged vs single tasks');
  });
});

describe('first-order algorithms (float64) against their definitions', () => {
  for (const model of MODELS.slice(0, 4)) {
    it(`fomaml and reptile, ${modelName(model)}`, () => {
      const rng = new Rng(21);
      const params = initParams(model, { seed: 2, precision: 'float64' });
      const batch = randomBatch(rng, model, 2, 5, 4);
      const S = 2, lr = 0.15, d0 = model.layers[0]!;
      const dOut = model.layers[model.layers.length - 1]!;
      const wantF = new Float64Array(params.length);
      const wantR = new Float64Array(params.length);
      let loss = 0;
      for (let t = 0; t < 2; t++) {
        const xs = batch.xs.slice(t * 5 * d0, (t + 1) * 5 * d0);
        const ys = model.loss === 'cross-entropy' ? (batch.ys as Int32Array).slice(t * 5, (t + 1) * 5) : (batch.ys as Float64Array).slice(t * 5 * dOut, (t + 1) * 5 * dOut);
        const xq = batch.xq.slice(t * 4 * d0, (t + 1) * 4 * d0);
        const yq = model.loss === 'cross-entropy' ? (batch.yq as Int32Array).slice(t * 4, (t + 1) * 4) : (batch.yq as Float64Array).slice(t * 4 * dOut, (t + 1) * 4 * dOut);
        let th = Float64Array.from(params);
        for (let s = 0; s < S; s++) {
          const g = gradient(model, th, xs, ys as Float64Array).grad;
          th = th.map((p, i) => p - lr * g[i]!);
        }
        const q = gradient(model, th, xq, yq as Float64Array);
        loss += q.loss / 2;
        q.grad.forEach((g, i) => (wantF[i]! += g / 2));
        th.forEach((p, i) => (wantR[i]! += (params[i]! - p) / 2));
      }
      const f = metaGradient(model, params, batch, { algorithm: 'fomaml', innerLr: lr, innerSteps: S, precision: 'float64' });
      expectClose(f.grad, wantF, 1e-12, 'fomaml');
      expect(f.loss).toBeCloseTo(loss, 12);
      expect(f.innerLrGrad).toBeUndefined();
      const r = metaGradient(model, params, batch, { algorithm: 'reptile', innerLr: lr, innerSteps: S, precision: 'float64' });
      expectClose(r.grad, wantR, 1e-12, 'reptile');
      expect(r.loss).toBeCloseTo(loss, 12);
    });
  }
});
