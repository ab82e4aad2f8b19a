/**
 * Helpers for checking gradients against finite differences, and small generators of
 * seeded random models and meta-batches, used by the reference self-test (and usable by
 * other suites that compare the native code with the reference).
 */
import { Rng } from './rng.js';
import { refLayerOffsets, refLossGrad, refParamCount, type RefBatch, type RefModel } from './maml-reference.js';

export interface Comparison {
  ok: boolean;
  /** worst |a - e| / max(|e_i|, floor), floor = floorRel * max_j |e_j| */
  worst: number;
  index: number;
  actual: number;
  expected: number;
  maxAbsExpected: number;
  message: string;
}

/**
 * Element-wise relative comparison: element i passes when
 * |a_i - e_i| <= rtol * max(|e_i|, floorRel * max_j |e_j|, absFloor).
 * The floor keeps elements that are tiny compared with the rest of the vector (where finite
 * differences only have absolute accuracy) from failing spuriously.
 */
export function compareVectors(
  label: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  floorRel = 1e-3,
  absFloor = 1e-12,
): Comparison {
  if (actual.length !== expected.length) {
    return {
      ok: false,
      worst: Infinity,
      index: -1,
      actual: NaN,
      expected: NaN,
      maxAbsExpected: NaN,
      message: `${label}: length ${actual.length} != expected length ${expected.length}`,
    };
  }
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) maxAbs = Math.max(maxAbs, Math.abs(expected[i]!));
  const floor = Math.max(floorRel * maxAbs, absFloor);
  let worst = -1;
  let index = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const r = Number.isFinite(a) && Number.isFinite(e) ? Math.abs(a - e) / Math.max(Math.abs(e), floor) : Infinity;
    if (r > worst) {
      worst = r;
      index = i;
    }
  }
  const ok = worst <= rtol;
  const message =
    `${label}: worst element ${index} of ${expected.length}: got ${actual[index]}, expected ${expected[index]}, ` +
    `relative error ${worst.toExponential(3)} (tolerance ${rtol}), max |expected| ${maxAbs.toExponential(3)}`;
  return { ok, worst, index, actual: actual[index]!, expected: expected[index]!, maxAbsExpected: maxAbs, message };
}

/** Central finite differences of f at p along each coordinate. */
export function fdGradient(f: (p: Float64Array) => number, p: Float64Array, eps: number): Float64Array {
  const g = new Float64Array(p.length);
  const q = Float64Array.from(p);
  for (let i = 0; i < p.length; i++) {
    q[i] = p[i]! + eps;
    const fp = f(q);
    q[i] = p[i]! - eps;
    const fm = f(q);
    q[i] = p[i]!;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

/** Central finite difference of the vector function g along direction v. */
export function fdDirectional(
  g: (p: Float64Array) => Float64Array,
  p: Float64Array,
  v: Float64Array,
  eps: number,
): Float64Array {
  const pp = Float64Array.from(p, (x, i) => x + eps * v[i]!);
  const pm = Float64Array.from(p, (x, i) => x - eps * v[i]!);
  const gp = g(pp);
  const gm = g(pm);
  return Float64Array.from(gp, (x, i) => (x - gm[i]!) / (2 * eps));
}

/** Parameters drawn like PyTorch's nn.Linear default (uniform +-gain/sqrt(fan_in)). */
export function randomParams(model: RefModel, rng: Rng, gain = 1): Float64Array {
  const p = new Float64Array(refParamCount(model));
  for (const o of refLayerOffsets(model)) {
    const bound = gain / Math.sqrt(o.dIn);
    for (let i = o.w; i < o.b + o.dOut; i++) p[i] = rng.uniform(-bound, bound);
  }
  return p;
}

/** Random inputs and targets for n samples (labels for cross-entropy, 0/1 for BCE). */
export function randomData(
  model: RefModel,
  rng: Rng,
  n: number,
): { x: Float64Array; y: Float64Array | Int32Array } {
  const d0 = model.layers[0]!;
  const dL = model.layers[model.layers.length - 1]!;
  const x = rng.normals(n * d0);
  let y: Float64Array | Int32Array;
  if (model.loss === 'mse') y = rng.normals(n * dL);
  else if (model.loss === 'cross-entropy') y = rng.labels(n, dL);
  else y = rng.bits(n * dL);
  return { x, y };
}

export function randomBatch(model: RefModel, rng: Rng, tasks: number, support: number, query: number): RefBatch {
  const s = randomData(model, rng, tasks * support);
  const q = randomData(model, rng, tasks * query);
  return { tasks, support, query, xs: s.x, ys: s.y, xq: q.x, yq: q.y };
}

/** min over samples and hidden units of |pre-activation| (Infinity without hidden layers). */
export function minAbsPreactivation(model: RefModel, params: Float64Array, x: Float64Array, n: number): number {
  const d0 = model.layers[0]!;
  const offs = refLayerOffsets(model);
  let m = Infinity;
  for (let s = 0; s < n; s++) {
    let h = Array.from(x.subarray(s * d0, (s + 1) * d0));
    for (let li = 0; li < offs.length - 1; li++) {
      const o = offs[li]!;
      const z: number[] = [];
      for (let r = 0; r < o.dOut; r++) {
        let acc = params[o.b + r]!;
        for (let c = 0; c < o.dIn; c++) acc += params[o.w + r * o.dIn + c]! * h[c]!;
        z.push(acc);
        m = Math.min(m, Math.abs(acc));
      }
      h = z.map((v) => (model.activation === 'relu' ? Math.max(v, 0) : Math.tanh(v)));
    }
  }
  return m;
}

export interface HandInner {
  /** learning rate of parameter i at inner step s */
  alphaAt: (s: number, i: number) => number;
  /** 1 where the inner loop updates the parameter */
  mask: Float64Array;
  /** S + 1 weights of the query losses */
  weights: number[];
  steps: number;
}

export interface HandTask {
  /** theta_0 .. theta_S */
  thetas: Float64Array[];
  queryLosses: number[];
  queryGrads: Float64Array[];
}

function sliceY(y: Float64Array | Int32Array, t: number, per: number): Float64Array | Int32Array {
  return y.subarray(t * per, (t + 1) * per);
}

/**
 * The inner loop done by hand with refLossGrad (numbers only): for each task the iterates
 * theta_s and the query losses and gradients at each of them.
 */
export function handInnerLoop(model: RefModel, params: Float64Array, batch: RefBatch, inner: HandInner): HandTask[] {
  const d0 = model.layers[0]!;
  const dL = model.layers[model.layers.length - 1]!;
  const yPer = model.loss === 'cross-entropy' ? 1 : dL;
  const out: HandTask[] = [];
  for (let t = 0; t < batch.tasks; t++) {
    const xs = batch.xs.subarray(t * batch.support * d0, (t + 1) * batch.support * d0);
    const ys = sliceY(batch.ys, t, batch.support * yPer);
    const xq = batch.xq.subarray(t * batch.query * d0, (t + 1) * batch.query * d0);
    const yq = sliceY(batch.yq, t, batch.query * yPer);
    const thetas = [Float64Array.from(params)];
    const queryLosses: number[] = [];
    const queryGrads: Float64Array[] = [];
    for (let s = 0; s <= inner.steps; s++) {
      const th = thetas[s]!;
      const q = refLossGrad(model, th, xq, yq, batch.query);
      queryLosses.push(q.loss);
      queryGrads.push(q.grad);
      if (s === inner.steps) break;
      const g = refLossGrad(model, th, xs, ys, batch.support).grad;
      thetas.push(Float64Array.from(th, (v, i) => v - inner.alphaAt(s, i) * inner.mask[i]! * g[i]!));
    }
    out.push({ thetas, queryLosses, queryGrads });
  }
  return out;
}

/** Meta-loss by hand: mean over tasks of sum_s w_s L_query(theta_s). */
export function handMetaLoss(model: RefModel, params: Float64Array, batch: RefBatch, inner: HandInner): number {
  const tasks = handInnerLoop(model, params, batch, inner);
  let total = 0;
  for (const t of tasks) {
    for (let s = 0; s <= inner.steps; s++) total += inner.weights[s]! * t.queryLosses[s]!;
  }
  return total / batch.tasks;
}

/** min |pre-activation| over every inner iterate on support and query data (ReLU safety). */
export function minAbsPreactivationInnerLoop(
  model: RefModel,
  params: Float64Array,
  batch: RefBatch,
  inner: HandInner,
): number {
  const d0 = model.layers[0]!;
  const tasks = handInnerLoop(model, params, batch, inner);
  let m = Infinity;
  tasks.forEach((task, t) => {
    const xs = batch.xs.subarray(t * batch.support * d0, (t + 1) * batch.support * d0);
    const xq = batch.xq.subarray(t * batch.query * d0, (t + 1) * batch.query * d0);
    for (const th of task.thetas) {
      m = Math.min(m, minAbsPreactivation(model, th, xs, batch.support));
      m = Math.min(m, minAbsPreactivation(model, th, xq, batch.query));
    }
  });
  return m;
}
