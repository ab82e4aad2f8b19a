// The native core against the independent plain-TypeScript float64 reference
// (test/reference: a scalar autodiff that differentiates through the unrolled inner loop),
// and the float32 instantiation against the float64 one.
// Tolerances: native float64 vs reference 1e-9 (2-norm relative); float32 vs float64 2e-4
// for one-step meta-gradients, 1e-3 for three steps (float32 rounding through the loop).
import { describe, it, expect } from 'vitest';
import { forward, gradient, hvp, metaGradient, initParams, type Algorithm } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { refForward, refHvp, refLossGrad, refMetaGradient } from './reference/maml-reference.js';
import { MODELS, expectClose, modelName, randomArray, randomBatch, randomTargets, toF32 } from './helpers.js';

const ALGOS: Algorithm[] = ['maml', 'fomaml', 'reptile', 'meta-sgd', 'anil'];

describe('native float64 core matches the TypeScript reference', () => {
  for (const model of MODELS) {
    it(`forward, gradient and hvp, ${modelName(model)}`, () => {
      const rng = new Rng(31);
      const params = initParams(model, { seed: 4, precision: 'float64' });
      const n = 6;
      const x = randomArray(rng, n * model.layers[0]!, 2);
      const y = randomTargets(rng, model, n) as Float64Array;
      const v = randomArray(rng, params.length);
      const spec = { ...model, layers: [...model.layers] };
      expectClose(forward(model, params, x), refForward(spec, params, x, n), 1e-12, 'forward');
      const g = gradient(model, params, x, y);
      const rg = refLossGrad(spec, params, x, y, n);
      expect(g.loss).toBeCloseTo(rg.loss, 12);
      expectClose(g.grad, rg.grad, 1e-10, 'gradient');
      expectClose(hvp(model, params, x, y, v), refHvp(spec, params, x, y, n, v), 1e-10, 'hvp');
    });

    for (const algorithm of ALGOS) {
      it(`${algorithm} meta-gradient with 2 steps and step weights, ${modelName(model)}`, () => {
        const rng = new Rng(41);
        const params = initParams(model, { seed: 6, precision: 'float64' });
        const batch = randomBatch(rng, model, 3, 4, 5);
        const innerLr = algorithm === 'meta-sgd' ? randomArray(rng, params.length, 0.2).map((r) => Math.abs(r) + 0.05) : [0.25, 0.15];
        const stepWeights = algorithm === 'reptile' ? undefined : [0.2, 0.3, 0.5];
        const opts = { algorithm, innerLr, innerSteps: 2, stepWeights };
        const mine = metaGradient(model, params, batch, { ...opts, precision: 'float64' });
        const ref = refMetaGradient({ ...model, layers: [...model.layers] }, params, batch, opts);
        expect(mine.loss).toBeCloseTo(ref.loss, 10);
        expectClose(mine.grad, ref.grad, 1e-9, 'meta-gradient');
        if (ref.innerLrGrad) expectClose(mine.innerLrGrad!, ref.innerLrGrad, 1e-9, 'rate gradient');
        else expect(mine.innerLrGrad).toBeUndefined();
      });
    }
  }
});

describe('float32 agrees with float64', () => {
  for (const model of MODELS) {
    for (const [innerSteps, tol] of [[1, 2e-4], [3, 1e-3]] as const) {
      it(`maml, ${innerSteps} step(s), ${modelName(model)}: relative error below ${tol}`, () => {
        const rng = new Rng(51);
        const params = initParams(model, { seed: 8, precision: 'float64' });
        const batch = randomBatch(rng, model, 5, 6, 6);
        const opts = { algorithm: 'maml' as const, innerLr: 0.1, innerSteps };
        const d = metaGradient(model, params, batch, { ...opts, precision: 'float64' });
        const f = metaGradient(model, Float32Array.from(params), toF32(batch), opts);
        expect(f.grad).toBeInstanceOf(Float32Array);
        expect(Math.abs(f.loss - d.loss) / Math.abs(d.loss)).toBeLessThan(tol);
        expectClose(f.grad, d.grad, tol, 'float32 vs float64');
      });
    }
  }
});
