/**
 * Self-test of the independent float64 TypeScript reference (test/reference/): its losses,
 * gradients, Hessian-vector products and meta-gradients are checked against central finite
 * differences, closed forms and hand-computed definitions.
 *
 * Tolerances (float64 everywhere):
 * - first derivatives vs central differences with eps = 1e-5 (ReLU nets get inputs whose
 *   pre-activations stay >= 1e-3 away from the kink): relative error <= 1e-6 per
 *   element, measured against max(|expected_i|, 1e-3 * max_j |expected_j|);
 * - per-parameter (Meta-SGD) rate gradients vs central differences: relative error <= 1e-5
 *   (many entries are ~1e-3 of the largest, where the differences reach their roundoff);
 * - HVP vs central differences of the reference gradient, eps = 1e-5: relative error <= 1e-6;
 * - closed forms and hand-computed definitions (same arithmetic, other order): 1e-10.
 * On failure the message names the worst element, both values and the error.
 */
import { describe, expect, it } from 'vitest';
import {
  refForward,
  refHvp,
  refLossGrad,
  refMetaGradient,
  refParamCount,
  type RefMetaOptions,
  type RefModel,
} from './reference/maml-reference.js';
import {
  compareVectors,
  fdDirectional,
  fdGradient,
  handInnerLoop,
  handMetaLoss,
  minAbsPreactivation,
  minAbsPreactivationInnerLoop,
  randomBatch,
  randomData,
  randomParams,
  type HandInner,
} from './reference/checks.js';
import { Rng } from './reference/rng.js';

const FD_RTOL = 1e-6;
/** per-parameter rate gradients have many tiny entries, where central differences are at their roundoff limit */
const FD_RTOL_RATES = 1e-5;
const EXACT_RTOL = 1e-10;
const RELU_MARGIN = 1e-3;

type Act = RefModel['activation'];
type Loss = RefModel['loss'];
const ACTS: Act[] = ['tanh', 'relu'];
const LOSSES: Loss[] = ['mse', 'cross-entropy', 'binary-cross-entropy'];

function expectClose(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, minScale = 1e-4) {
  const c = compareVectors(label, actual, expected, rtol);
  expect(c.ok, c.message).toBe(true);
  // the expected vector must not be trivially small, or the check would prove nothing
  expect(c.maxAbsExpected, `${label}: expected vector is (nearly) zero`).toBeGreaterThan(minScale);
}

/**
 * Central-difference step. For ReLU nets the inputs are chosen so that every pre-activation
 * (at every inner iterate) is at least RELU_MARGIN = 1e-3 away from 0, while a step of 1e-5
 * moves pre-activations by well under 1e-3, so the differences never straddle a kink.
 */
function epsFor(_act: Act): number {
  return 1e-5;
}

/** Plain loss from the numeric forward pass, written out from the definitions. */
function plainLoss(model: RefModel, out: Float64Array, y: Float64Array | Int32Array, n: number): number {
  const dL = model.layers[model.layers.length - 1]!;
  let total = 0;
  if (model.loss === 'mse') {
    for (let i = 0; i < n * dL; i++) total += (out[i]! - y[i]!) ** 2;
    return total / (n * dL);
  }
  if (model.loss === 'cross-entropy') {
    for (let s = 0; s < n; s++) {
      const row = Array.from(out.subarray(s * dL, (s + 1) * dL));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, z) => a + Math.exp(z - m), 0));
      total += lse - row[y[s]!]!;
    }
    return total / n;
  }
  for (let i = 0; i < n * dL; i++) {
    const z = out[i]!;
    total += Math.max(z, 0) - z * y[i]! + Math.log1p(Math.exp(-Math.abs(z)));
  }
  return total / (n * dL);
}

function modelOf(layers: number[], activation: Act, loss: Loss): RefModel {
  return { layers, activation, loss };
}

/** Random params and data; for ReLU, the first seed whose pre-activations avoid the kink. */
function setup(model: RefModel, seed: number, n: number) {
  for (let k = 0; k < 200; k++) {
    const rng = new Rng(seed + 1000 * k);
    const params = randomParams(model, rng, 1.5);
    const { x, y } = randomData(model, rng, n);
    if (model.activation === 'tanh' || minAbsPreactivation(model, params, x, n) > RELU_MARGIN) {
      return { params, x, y, rng };
    }
  }
  throw new Error('no seed found with ReLU pre-activations away from 0');
}

function innerFor(model: RefModel, options: RefMetaOptions): HandInner {
  const P = refParamCount(model);
  const S = options.innerSteps;
  const lr = options.innerLr;
  const alphaAt =
    typeof lr === 'number'
      ? () => lr
      : lr instanceof Float64Array
        ? (_s: number, i: number) => lr[i]!
        : (s: number) => lr[s]!;
  const mask = new Float64Array(P).fill(1);
  if (options.algorithm === 'anil') {
    const dIn = model.layers[model.layers.length - 2]!;
    const dOut = model.layers[model.layers.length - 1]!;
    mask.fill(0);
    mask.fill(1, P - dOut * (dIn + 1));
  }
  let weights = options.stepWeights;
  if (weights === undefined) {
    weights = new Array<number>(S + 1).fill(0);
    weights[S] = 1;
  }
  return { alphaAt, mask, weights, steps: S };
}

/** Meta setup: for ReLU, a seed whose pre-activations avoid the kink along the inner loop. */
function metaSetup(model: RefModel, options: RefMetaOptions, seed: number, tasks = 3, support = 4, query = 5) {
  for (let k = 0; k < 200; k++) {
    const rng = new Rng(seed + 1000 * k);
    const params = randomParams(model, rng, 1.5);
    const batch = randomBatch(model, rng, tasks, support, query);
    if (model.activation === 'tanh') return { params, batch };
    if (minAbsPreactivationInnerLoop(model, params, batch, innerFor(model, options)) > RELU_MARGIN) {
      return { params, batch };
    }
  }
  throw new Error('no seed found with ReLU pre-activations away from 0');
}

/** The finite-difference check of one exact (second-order) meta-gradient configuration. */
function checkExactMeta(model: RefModel, options: RefMetaOptions, seed: number) {
  const { params, batch } = metaSetup(model, options, seed);
  const P = refParamCount(model);
  const S = options.innerSteps;
  const eps = epsFor(model.activation);
  const res = refMetaGradient(model, params, batch, options);
  const inner = innerFor(model, options);
  const label = `${options.algorithm} ${model.activation} ${model.loss} S=${S}`;

  // the loss equals the hand-computed meta-loss
  expect(Math.abs(res.loss - handMetaLoss(model, params, batch, inner)), `${label}: loss`).toBeLessThan(
    1e-12 * Math.max(1, Math.abs(res.loss)),
  );
  // gradient with respect to theta
  const fdTheta = fdGradient((p) => handMetaLoss(model, p, batch, inner), params, eps);
  expect(res.grad.length).toBe(P);
  expectClose(`${label}: d loss / d theta`, res.grad, fdTheta, FD_RTOL);

  // gradient with respect to the rates
  expect(res.innerLrGrad, `${label}: innerLrGrad`).toBeDefined();
  const lrg = res.innerLrGrad!;
  const lr = options.innerLr;
  if (lr instanceof Float64Array || (typeof lr === 'number' && options.algorithm === 'meta-sgd')) {
    const rates = lr instanceof Float64Array ? lr : new Float64Array(P).fill(lr);
    expect(lrg.length).toBe(P);
    const fdRates = fdGradient(
      (a) => handMetaLoss(model, params, batch, { ...inner, alphaAt: (_s, i) => a[i]! }),
      rates,
      eps,
    );
    expectClose(`${label}: d loss / d alpha (per parameter)`, lrg, fdRates, FD_RTOL_RATES);
    if (options.algorithm === 'anil') {
      for (let i = 0; i < P; i++) if (inner.mask[i] === 0) expect(lrg[i], `anil rate grad ${i}`).toBe(0);
    }
  } else {
    const rates = Float64Array.from(typeof lr === 'number' ? new Array<number>(S).fill(lr) : lr);
    expect(lrg.length).toBe(S);
    const fdRates = fdGradient(
      (a) => handMetaLoss(model, params, batch, { ...inner, alphaAt: (s) => a[s]! }),
      rates,
      eps,
    );
    expectClose(`${label}: d loss / d alpha_s (per step)`, lrg, fdRates, FD_RTOL, 1e-6);
    if (typeof lr === 'number') {
      // the derivative for the one shared rate is the sum over steps
      const fdShared = fdGradient(
        (a) => handMetaLoss(model, params, batch, { ...inner, alphaAt: () => a[0]! }),
        Float64Array.of(lr),
        eps,
      );
      expectClose(`${label}: d loss / d alpha (shared)`, [lrg.reduce((a, b) => a + b, 0)], fdShared, FD_RTOL, 1e-6);
    }
  }
  return { params, batch, res };
}

describe('reference: layout and forward pass', () => {
  it('counts parameters as sum d_l (d_{l-1} + 1)', () => {
    expect(refParamCount(modelOf([3, 6, 5, 4], 'tanh', 'mse'))).toBe(83);
    expect(refParamCount(modelOf([1, 40, 40, 1], 'relu', 'mse'))).toBe(1761);
    expect(refParamCount(modelOf([2, 3], 'relu', 'mse'))).toBe(9);
  });

  it('uses W [d_l x d_{l-1}] row-major then b, layer by layer', () => {
    // one linear layer: W = [[1,2],[3,4],[5,6]], b = [7,8,9]
    const lin = modelOf([2, 3], 'relu', 'mse');
    const out = refForward(lin, Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), Float64Array.from([1, -1, 2, 0.5]), 2);
    expect(Array.from(out)).toEqual([6, 7, 8, 2 + 1 + 7, 6 + 2 + 8, 10 + 3 + 9]);
    // [2, 2, 1]: W1 = [[1,-1],[2,1]], b1 = [0.5,-4], W2 = [[3,-2]], b2 = [0.25]
    const p = Float64Array.from([1, -1, 2, 1, 0.5, -4, 3, -2, 0.25]);
    const x = Float64Array.from([2, 1]); // z1 = [1.5, 1]
    const relu = refForward(modelOf([2, 2, 1], 'relu', 'mse'), p, x, 1);
    expect(relu[0]).toBeCloseTo(3 * 1.5 - 2 * 1 + 0.25, 14);
    const x2 = Float64Array.from([1, 1]); // z1 = [0.5, -1]: second unit is cut by ReLU
    expect(refForward(modelOf([2, 2, 1], 'relu', 'mse'), p, x2, 1)[0]).toBeCloseTo(3 * 0.5 + 0.25, 14);
    const th = refForward(modelOf([2, 2, 1], 'tanh', 'mse'), p, x, 1);
    expect(th[0]).toBeCloseTo(3 * Math.tanh(1.5) - 2 * Math.tanh(1) + 0.25, 14);
  });

  it('computes the three losses as PyTorch means', () => {
    for (const act of ACTS) {
      for (const loss of LOSSES) {
        const model = modelOf([3, 6, 5, 4], act, loss);
        const { params, x, y } = setup(model, 11, 5);
        const got = refLossGrad(model, params, x, y, 5).loss;
        const want = plainLoss(model, refForward(model, params, x, 5), y, 5);
        expect(Math.abs(got - want), `${act} ${loss}`).toBeLessThan(1e-13 * Math.max(1, Math.abs(want)));
      }
    }
    // closed forms with all-zero parameters (outputs 0)
    const zeros = new Float64Array(refParamCount(modelOf([3, 6, 5, 4], 'tanh', 'mse')));
    const x = new Rng(5).normals(6);
    expect(refLossGrad(modelOf([3, 6, 5, 4], 'tanh', 'cross-entropy'), zeros, x, Int32Array.of(1, 3), 2).loss).toBeCloseTo(
      Math.log(4),
      14,
    );
    expect(
      refLossGrad(modelOf([3, 6, 5, 4], 'tanh', 'binary-cross-entropy'), zeros, x, new Float64Array(8).fill(1), 2).loss,
    ).toBeCloseTo(Math.log(2), 14);
    const y = Float64Array.from([1, 2, 3, 4, -1, -2, -3, -4]);
    expect(refLossGrad(modelOf([3, 6, 5, 4], 'tanh', 'mse'), zeros, x, y, 2).loss).toBeCloseTo(60 / 8, 13);
    // stable BCE for large logits: z = 800 with y = 0 costs 800, with y = 1 costs ~0
    const big = modelOf([1, 1], 'tanh', 'binary-cross-entropy');
    const r = refLossGrad(big, Float64Array.of(0, 800), Float64Array.of(1, 1), Float64Array.of(0, 1), 2);
    expect(r.loss).toBeCloseTo(400, 10);
    expect(Number.isFinite(r.grad[0]!)).toBe(true);
  });

  it('rejects bad shapes and labels', () => {
    const model = modelOf([3, 6, 5, 4], 'tanh', 'cross-entropy');
    const P = refParamCount(model);
    const x = new Rng(1).normals(6);
    expect(() => refLossGrad(model, new Float64Array(P - 1), x, Int32Array.of(0, 1), 2)).toThrow();
    expect(() => refLossGrad(model, new Float64Array(P), x, Int32Array.of(0, 4), 2)).toThrow();
    expect(() => refLossGrad(model, new Float64Array(P), x.subarray(1), Int32Array.of(0, 1), 2)).toThrow();
    const batch = randomBatch(model, new Rng(2), 2, 2, 2);
    expect(() =>
      refMetaGradient(model, new Float64Array(P), batch, { algorithm: 'maml', innerLr: [0.1], innerSteps: 2 }),
    ).toThrow();
    expect(() =>
      refMetaGradient(model, new Float64Array(P), batch, {
        algorithm: 'maml',
        innerLr: 0.1,
        innerSteps: 2,
        stepWeights: [0.5, 0.5],
      }),
    ).toThrow();
    expect(() =>
      refMetaGradient(model, new Float64Array(P), batch, { algorithm: 'meta-sgd', innerLr: new Float64Array(3), innerSteps: 1 }),
    ).toThrow();
  });
});

describe('reference: loss gradients vs finite differences', () => {
  for (const act of ACTS) {
    for (const loss of LOSSES) {
      it(`${act} / ${loss}`, () => {
        const model = modelOf([3, 6, 5, 4], act, loss);
        const { params, x, y } = setup(model, 21, 5);
        const { grad } = refLossGrad(model, params, x, y, 5);
        const fd = fdGradient((p) => plainLoss(model, refForward(model, p, x, 5), y, 5), params, epsFor(act));
        expectClose(`grad ${act} ${loss}`, grad, fd, FD_RTOL);
      });
    }
  }

  it('gives ReLU a zero derivative at exactly 0 (as PyTorch)', () => {
    // [1, 1, 1] with W1 = 1, b1 = -1 and x = 1: the hidden pre-activation is exactly 0
    const model = modelOf([1, 1, 1], 'relu', 'mse');
    const { grad } = refLossGrad(model, Float64Array.of(1, -1, 2, 0.5), Float64Array.of(1), Float64Array.of(3), 1);
    expect(Math.abs(grad[0]!)).toBe(0); // dL/dW1
    expect(Math.abs(grad[1]!)).toBe(0); // dL/db1
    expect(Math.abs(grad[2]!)).toBe(0); // dL/dW2 = 2 (out - y) * h, h = 0
    expect(grad[3]).toBeCloseTo(2 * (0.5 - 3), 14);
  });
});

/** Hv for a network without hidden layers, from the closed-form curvature of the loss in z. */
function linearHvp(model: RefModel, params: Float64Array, x: Float64Array, y: Float64Array | Int32Array, n: number, v: Float64Array) {
  const [d0, dL] = model.layers as [number, number];
  const out = refForward(model, params, x, n);
  const hv = new Float64Array(params.length);
  const bOff = d0 * dL;
  for (let s = 0; s < n; s++) {
    const xs = x.subarray(s * d0, (s + 1) * d0);
    const u = new Float64Array(dL); // J_s v
    for (let o = 0; o < dL; o++) {
      let acc = v[bOff + o]!;
      for (let c = 0; c < d0; c++) acc += v[o * d0 + c]! * xs[c]!;
      u[o] = acc;
    }
    const w = new Float64Array(dL); // (d2 l / dz2) u
    const z = out.subarray(s * dL, (s + 1) * dL);
    if (model.loss === 'mse') {
      for (let o = 0; o < dL; o++) w[o] = (2 / (n * dL)) * u[o]!;
    } else if (model.loss === 'cross-entropy') {
      const m = Math.max(...z);
      const e = Array.from(z, (zz) => Math.exp(zz - m));
      const tot = e.reduce((a, b) => a + b, 0);
      const pr = e.map((ee) => ee / tot);
      const pu = pr.reduce((a, p, o) => a + p * u[o]!, 0);
      for (let o = 0; o < dL; o++) w[o] = (pr[o]! * u[o]! - pr[o]! * pu) / n;
    } else {
      for (let o = 0; o < dL; o++) {
        const sg = 1 / (1 + Math.exp(-z[o]!));
        w[o] = (sg * (1 - sg) * u[o]!) / (n * dL);
      }
    }
    for (let o = 0; o < dL; o++) {
      for (let c = 0; c < d0; c++) hv[o * d0 + c] = hv[o * d0 + c]! + w[o]! * xs[c]!;
      hv[bOff + o] = hv[bOff + o]! + w[o]!;
    }
  }
  return hv;
}

describe('reference: Hessian-vector products', () => {
  for (const act of ACTS) {
    for (const loss of LOSSES) {
      it(`${act} / ${loss} vs finite differences of the gradient`, () => {
        const model = modelOf([3, 6, 5, 4], act, loss);
        const { params, x, y, rng } = setup(model, 31, 5);
        const v = rng.normals(params.length);
        const hv = refHvp(model, params, x, y, 5, v);
        const fd = fdDirectional((p) => refLossGrad(model, p, x, y, 5).grad, params, v, 1e-5);
        expectClose(`hvp ${act} ${loss}`, hv, fd, FD_RTOL);
        // symmetry: u . H v = v . H u
        const u = rng.normals(params.length);
        const hu = refHvp(model, params, x, y, 5, u);
        const uHv = u.reduce((a, ui, i) => a + ui * hv[i]!, 0);
        const vHu = v.reduce((a, vi, i) => a + vi * hu[i]!, 0);
        expect(Math.abs(uHv - vHu), `symmetry ${uHv} vs ${vHu}`).toBeLessThan(1e-12 * Math.max(1, Math.abs(uHv)));
      });
    }
  }

  for (const loss of LOSSES) {
    it(`${loss}: matches the closed-form curvature of a linear model`, () => {
      const model = modelOf([3, 4], 'tanh', loss);
      const { params, x, y, rng } = setup(model, 41, 6);
      const v = rng.normals(params.length);
      expectClose(`linear hvp ${loss}`, refHvp(model, params, x, y, 6, v), linearHvp(model, params, x, y, 6, v), EXACT_RTOL);
    });
  }
});

describe('reference: exact meta-gradients vs finite differences of the meta-loss', () => {
  const net = [3, 6, 5, 4];
  const cases: { name: string; model: RefModel; options: RefMetaOptions }[] = [];
  for (const S of [1, 3]) {
    cases.push(
      { name: `maml tanh mse S=${S}`, model: modelOf(net, 'tanh', 'mse'), options: { algorithm: 'maml', innerLr: 0.1, innerSteps: S } },
      { name: `maml relu cross-entropy S=${S}`, model: modelOf(net, 'relu', 'cross-entropy'), options: { algorithm: 'maml', innerLr: 0.3, innerSteps: S } },
      {
        name: `maml tanh binary-cross-entropy S=${S}`,
        model: modelOf(net, 'tanh', 'binary-cross-entropy'),
        options: { algorithm: 'maml', innerLr: 0.5, innerSteps: S },
      },
      { name: `anil tanh cross-entropy S=${S}`, model: modelOf(net, 'tanh', 'cross-entropy'), options: { algorithm: 'anil', innerLr: 0.3, innerSteps: S } },
      { name: `anil relu mse S=${S}`, model: modelOf(net, 'relu', 'mse'), options: { algorithm: 'anil', innerLr: 0.1, innerSteps: S } },
    );
  }
  cases.push(
    {
      name: 'maml tanh mse S=3, per-step rates and step weights',
      model: modelOf(net, 'tanh', 'mse'),
      options: { algorithm: 'maml', innerLr: [0.1, 0.05, 0.15], innerSteps: 3, stepWeights: [0.1, 0.2, 0.3, 0.4] },
    },
    {
      name: 'maml relu cross-entropy S=3, per-step rates and step weights',
      model: modelOf(net, 'relu', 'cross-entropy'),
      options: { algorithm: 'maml', innerLr: [0.3, 0.2, 0.4], innerSteps: 3, stepWeights: [0.25, 0, 0.25, 0.5] },
    },
    {
      name: 'maml tanh mse S=1, step weights on both iterates',
      model: modelOf(net, 'tanh', 'mse'),
      options: { algorithm: 'maml', innerLr: [0.2], innerSteps: 1, stepWeights: [0.3, 0.7] },
    },
    {
      name: 'meta-sgd tanh mse S=1, number rate (per-parameter gradient)',
      model: modelOf(net, 'tanh', 'mse'),
      options: { algorithm: 'meta-sgd', innerLr: 0.1, innerSteps: 1 },
    },
  );
  const rateRng = new Rng(77);
  const P = refParamCount(modelOf(net, 'tanh', 'mse'));
  for (const S of [1, 3]) {
    cases.push(
      {
        name: `meta-sgd tanh mse S=${S}, per-parameter rates`,
        model: modelOf(net, 'tanh', 'mse'),
        options: { algorithm: 'meta-sgd', innerLr: rateRng.uniforms(P, 0.02, 0.2), innerSteps: S },
      },
      {
        name: `meta-sgd relu cross-entropy S=${S}, per-parameter rates`,
        model: modelOf(net, 'relu', 'cross-entropy'),
        options: { algorithm: 'meta-sgd', innerLr: rateRng.uniforms(P, 0.1, 0.5), innerSteps: S },
      },
    );
  }
  cases.push({
    name: 'anil tanh binary-cross-entropy S=3, per-parameter rates',
    model: modelOf(net, 'tanh', 'binary-cross-entropy'),
    options: { algorithm: 'anil', innerLr: rateRng.uniforms(P, 0.2, 0.8), innerSteps: 3 },
  });

  cases.forEach((c, k) => {
    it(c.name, () => {
      checkExactMeta(c.model, c.options, 100 + k);
    });
  });

  it('maml S=1 equals (I - alpha H_sup) grad L_query(theta_1), via refHvp', () => {
    const model = modelOf(net, 'tanh', 'cross-entropy');
    const alpha = 0.4;
    const options: RefMetaOptions = { algorithm: 'maml', innerLr: alpha, innerSteps: 1 };
    const { params, batch } = metaSetup(model, options, 500);
    const res = refMetaGradient(model, params, batch, options);
    const tasks = handInnerLoop(model, params, batch, innerFor(model, options));
    const want = new Float64Array(params.length);
    const d0 = model.layers[0]!;
    tasks.forEach((t, i) => {
      const gq = t.queryGrads[1]!;
      const xs = batch.xs.subarray(i * batch.support * d0, (i + 1) * batch.support * d0);
      const ys = batch.ys.subarray(i * batch.support, (i + 1) * batch.support);
      const h = refHvp(model, params, xs, ys, batch.support, gq);
      for (let j = 0; j < want.length; j++) want[j] = want[j]! + (gq[j]! - alpha * h[j]!) / batch.tasks;
    });
    expectClose('maml S=1 closed form', res.grad, want, EXACT_RTOL);
    // and the rate gradient: -g_sup(theta_0) . grad L_query(theta_1)
    let lrWant = 0;
    tasks.forEach((t, i) => {
      const xs = batch.xs.subarray(i * batch.support * d0, (i + 1) * batch.support * d0);
      const ys = batch.ys.subarray(i * batch.support, (i + 1) * batch.support);
      const gs = refLossGrad(model, params, xs, ys, batch.support).grad;
      lrWant -= gs.reduce((a, g, j) => a + g * t.queryGrads[1]![j]!, 0) / batch.tasks;
    });
    expectClose('maml S=1 rate gradient closed form', res.innerLrGrad!, [lrWant], EXACT_RTOL, 1e-8);
  });

  it('meta-sgd with a number rate equals meta-sgd with that rate per parameter', () => {
    const model = modelOf(net, 'tanh', 'mse');
    const { params, batch } = metaSetup(model, { algorithm: 'meta-sgd', innerLr: 0.1, innerSteps: 2 }, 600);
    const a = refMetaGradient(model, params, batch, { algorithm: 'meta-sgd', innerLr: 0.1, innerSteps: 2 });
    const b = refMetaGradient(model, params, batch, {
      algorithm: 'meta-sgd',
      innerLr: new Float64Array(params.length).fill(0.1),
      innerSteps: 2,
    });
    expect(a.innerLrGrad!.length).toBe(params.length);
    expectClose('meta-sgd number vs vector: grad', a.grad, b.grad, EXACT_RTOL);
    expectClose('meta-sgd number vs vector: rate grad', a.innerLrGrad!, b.innerLrGrad!, EXACT_RTOL);
    // and maml with the same number gives per-step rate gradients whose sum is the sum of
    // the per-parameter ones
    const m = refMetaGradient(model, params, batch, { algorithm: 'maml', innerLr: 0.1, innerSteps: 2 });
    expect(m.innerLrGrad!.length).toBe(2);
    expectClose('maml vs meta-sgd: grad', m.grad, a.grad, EXACT_RTOL);
    const sumStep = m.innerLrGrad!.reduce((x, y) => x + y, 0);
    const sumParam = a.innerLrGrad!.reduce((x, y) => x + y, 0);
    expectClose('maml vs meta-sgd: total rate grad', [sumStep], [sumParam], EXACT_RTOL, 1e-8);
  });

  it('maml with 0 inner steps is the query loss and gradient at theta', () => {
    const model = modelOf(net, 'tanh', 'binary-cross-entropy');
    const options: RefMetaOptions = { algorithm: 'maml', innerLr: 0.1, innerSteps: 0 };
    const { params, batch } = metaSetup(model, options, 700);
    const res = refMetaGradient(model, params, batch, options);
    const tasks = handInnerLoop(model, params, batch, innerFor(model, options));
    const want = new Float64Array(params.length);
    let loss = 0;
    for (const t of tasks) {
      loss += t.queryLosses[0]! / batch.tasks;
      t.queryGrads[0]!.forEach((g, j) => (want[j] = want[j]! + g / batch.tasks));
    }
    expect(res.loss).toBeCloseTo(loss, 13);
    expectClose('maml S=0', res.grad, want, EXACT_RTOL);
    expect(res.innerLrGrad!.length).toBe(0);
  });
});

describe('reference: first-order algorithms vs their definitions', () => {
  const net = [3, 6, 5, 4];
  for (const act of ACTS) {
    it(`fomaml ${act}: mean over tasks of sum_s w_s grad L_query(theta_s)`, () => {
      const model = modelOf(net, act, 'cross-entropy');
      const options: RefMetaOptions = {
        algorithm: 'fomaml',
        innerLr: [0.3, 0.2, 0.4],
        innerSteps: 3,
        stepWeights: [0.1, 0.2, 0.3, 0.4],
      };
      const { params, batch } = metaSetup(model, options, 800);
      const res = refMetaGradient(model, params, batch, options);
      const inner = innerFor(model, options);
      const tasks = handInnerLoop(model, params, batch, inner);
      const want = new Float64Array(params.length);
      for (const t of tasks) {
        for (let s = 0; s <= 3; s++) {
          t.queryGrads[s]!.forEach((g, j) => (want[j] = want[j]! + (inner.weights[s]! * g) / batch.tasks));
        }
      }
      expectClose(`fomaml ${act}`, res.grad, want, EXACT_RTOL);
      expect(Math.abs(res.loss - handMetaLoss(model, params, batch, inner))).toBeLessThan(1e-12);
      expect(res.innerLrGrad).toBeUndefined();
      // and it is not the exact gradient (the second-order term is visible)
      const exact = refMetaGradient(model, params, batch, { ...options, algorithm: 'maml' });
      expect(compareVectors('fomaml vs maml', res.grad, exact.grad, 1e-3).ok).toBe(false);
    });

    it(`reptile ${act}: mean over tasks of theta - theta_S`, () => {
      const model = modelOf(net, act, 'mse');
      const options: RefMetaOptions = { algorithm: 'reptile', innerLr: 0.1, innerSteps: 3 };
      const { params, batch } = metaSetup(model, options, 900);
      const res = refMetaGradient(model, params, batch, options);
      const tasks = handInnerLoop(model, params, batch, innerFor(model, options));
      const want = new Float64Array(params.length);
      let loss = 0;
      for (const t of tasks) {
        loss += t.queryLosses[3]! / batch.tasks;
        t.thetas[3]!.forEach((th, j) => (want[j] = want[j]! + (params[j]! - th) / batch.tasks));
      }
      expectClose(`reptile ${act}`, res.grad, want, EXACT_RTOL);
      expect(Math.abs(res.loss - loss)).toBeLessThan(1e-12);
      expect(res.innerLrGrad).toBeUndefined();
    });
  }

  it('reptile with per-parameter rates', () => {
    const model = modelOf(net, 'tanh', 'binary-cross-entropy');
    const P = refParamCount(model);
    const options: RefMetaOptions = { algorithm: 'reptile', innerLr: new Rng(3).uniforms(P, 0.1, 0.6), innerSteps: 2 };
    const { params, batch } = metaSetup(model, options, 950);
    const res = refMetaGradient(model, params, batch, options);
    const tasks = handInnerLoop(model, params, batch, innerFor(model, options));
    const want = new Float64Array(P);
    for (const t of tasks) t.thetas[2]!.forEach((th, j) => (want[j] = want[j]! + (params[j]! - th) / batch.tasks));
    expectClose('reptile per-parameter', res.grad, want, EXACT_RTOL);
  });
});

describe('reference: the checks can fail', () => {
  it('flags a gradient with one element off by 1e-4 relative', () => {
    const model = modelOf([3, 6, 5, 4], 'tanh', 'mse');
    const { params, x, y } = setup(model, 1, 5);
    const { grad } = refLossGrad(model, params, x, y, 5);
    const fd = fdGradient((p) => plainLoss(model, refForward(model, p, x, 5), y, 5), params, 1e-5);
    expect(compareVectors('good', grad, fd, FD_RTOL).ok).toBe(true);
    const bad = Float64Array.from(grad);
    let k = 0;
    for (let i = 0; i < bad.length; i++) if (Math.abs(grad[i]!) > Math.abs(grad[k]!)) k = i;
    bad[k] = bad[k]! * (1 + 1e-4);
    const c = compareVectors('bad', bad, fd, FD_RTOL);
    expect(c.ok).toBe(false);
    expect(c.index).toBe(k);
  });

  it('tells a first-order meta-gradient from the exact one by finite differences', () => {
    const model = modelOf([3, 6, 5, 4], 'tanh', 'mse');
    const options: RefMetaOptions = { algorithm: 'maml', innerLr: 0.1, innerSteps: 1 };
    const { params, batch } = metaSetup(model, options, 1);
    const fo = refMetaGradient(model, params, batch, { ...options, algorithm: 'fomaml' });
    const fd = fdGradient((p) => handMetaLoss(model, p, batch, innerFor(model, options)), params, 1e-5);
    expect(compareVectors('fomaml vs fd', fo.grad, fd, FD_RTOL).ok).toBe(false);
  });
});

