/**
 * Independent float64 reference of the MLP, its losses, Hessian-vector products and the
 * meta-gradients of MAML, FOMAML, Reptile, Meta-SGD and ANIL, for the tests.
 *
 * Written without looking at the native code: everything is computed with the scalar
 * autodiff of ./autodiff.ts. Gradients come from one backward pass; HVPs are the gradient
 * of (grad . v) (double backward); exact meta-gradients unroll the inner loop on the graph
 * (inner gradients built with createGraph) and backpropagate the outer loss to theta and
 * to the inner learning rates. Deliberately simple and slow: tiny networks only.
 */
import {
  Node,
  add,
  affine,
  constant,
  detach,
  grad,
  leaf,
  logSumExp,
  mul,
  noGrad,
  relu,
  scale,
  softplus,
  sub,
  sum,
  tanh,
} from './autodiff.js';

export interface RefModel {
  layers: number[];
  activation: 'relu' | 'tanh';
  loss: 'mse' | 'cross-entropy' | 'binary-cross-entropy';
}

export interface RefBatch {
  tasks: number;
  support: number;
  query: number;
  xs: Float64Array;
  ys: Float64Array | Int32Array;
  xq: Float64Array;
  yq: Float64Array | Int32Array;
}

export interface RefMetaOptions {
  algorithm: 'maml' | 'fomaml' | 'reptile' | 'meta-sgd' | 'anil';
  innerLr: number | number[] | Float64Array;
  innerSteps: number;
  stepWeights?: number[];
}

function checkModel(model: RefModel): void {
  const { layers } = model;
  if (!Array.isArray(layers) || layers.length < 2) throw new Error('model.layers needs at least 2 sizes');
  for (const d of layers) if (!Number.isInteger(d) || d < 1) throw new Error(`bad layer size ${d}`);
  if (model.activation !== 'relu' && model.activation !== 'tanh') throw new Error(`bad activation ${model.activation}`);
  if (model.loss !== 'mse' && model.loss !== 'cross-entropy' && model.loss !== 'binary-cross-entropy') {
    throw new Error(`bad loss ${model.loss}`);
  }
}

export function refParamCount(model: RefModel): number {
  checkModel(model);
  let p = 0;
  for (let l = 1; l < model.layers.length; l++) p += model.layers[l]! * (model.layers[l - 1]! + 1);
  return p;
}

/** Offsets of W_l and b_l (l = 1..L) in the flat parameter vector. */
export function refLayerOffsets(model: RefModel): { w: number; b: number; dIn: number; dOut: number }[] {
  const out: { w: number; b: number; dIn: number; dOut: number }[] = [];
  let off = 0;
  for (let l = 1; l < model.layers.length; l++) {
    const dIn = model.layers[l - 1]!;
    const dOut = model.layers[l]!;
    out.push({ w: off, b: off + dOut * dIn, dIn, dOut });
    off += dOut * (dIn + 1);
  }
  return out;
}

function checkLen(name: string, arr: ArrayLike<number>, len: number): void {
  if (arr.length !== len) throw new Error(`${name}: expected length ${len}, got ${arr.length}`);
}

/** Plain numeric forward pass: [n x dL] raw outputs (logits). */
export function refForward(model: RefModel, params: Float64Array, x: Float64Array, n: number): Float64Array {
  const P = refParamCount(model);
  checkLen('params', params, P);
  const d0 = model.layers[0]!;
  const dL = model.layers[model.layers.length - 1]!;
  checkLen('x', x, n * d0);
  const offs = refLayerOffsets(model);
  const out = new Float64Array(n * dL);
  for (let s = 0; s < n; s++) {
    let h: number[] = Array.from(x.subarray(s * d0, (s + 1) * d0));
    offs.forEach((o, li) => {
      const z: number[] = [];
      for (let r = 0; r < o.dOut; r++) {
        let acc = params[o.b + r]!;
        for (let c = 0; c < o.dIn; c++) acc += params[o.w + r * o.dIn + c]! * h[c]!;
        z.push(acc);
      }
      const last = li === offs.length - 1;
      h = last ? z : z.map((v) => (model.activation === 'relu' ? (v > 0 ? v : 0) : Math.tanh(v)));
    });
    for (let k = 0; k < dL; k++) out[s * dL + k] = h[k]!;
  }
  return out;
}

/** Forward pass on the graph: outputs per sample. */
function forwardNodes(model: RefModel, theta: Node[], x: ArrayLike<number>, n: number): Node[][] {
  const d0 = model.layers[0]!;
  const offs = refLayerOffsets(model);
  const outs: Node[][] = [];
  for (let s = 0; s < n; s++) {
    let h: Node[] = [];
    for (let c = 0; c < d0; c++) h.push(constant(x[s * d0 + c]!));
    offs.forEach((o, li) => {
      const z: Node[] = [];
      for (let r = 0; r < o.dOut; r++) {
        z.push(affine(theta.slice(o.w + r * o.dIn, o.w + (r + 1) * o.dIn), h, theta[o.b + r]!));
      }
      const last = li === offs.length - 1;
      h = last ? z : z.map((v) => (model.activation === 'relu' ? relu(v) : tanh(v)));
    });
    outs.push(h);
  }
  return outs;
}

function checkTargets(model: RefModel, y: ArrayLike<number>, n: number): void {
  const dL = model.layers[model.layers.length - 1]!;
  if (model.loss === 'cross-entropy') {
    checkLen('labels', y, n);
    for (let i = 0; i < n; i++) {
      const c = y[i]!;
      if (!Number.isInteger(c) || c < 0 || c >= dL) throw new Error(`label ${c} out of range 0..${dL - 1}`);
    }
  } else {
    checkLen('targets', y, n * dL);
  }
}

/** The (mean) loss on the graph. */
function lossNode(model: RefModel, theta: Node[], x: ArrayLike<number>, y: ArrayLike<number>, n: number): Node {
  const dL = model.layers[model.layers.length - 1]!;
  const outs = forwardNodes(model, theta, x, n);
  const terms: Node[] = [];
  if (model.loss === 'mse') {
    for (let s = 0; s < n; s++) {
      for (let k = 0; k < dL; k++) {
        const d = sub(outs[s]![k]!, constant(y[s * dL + k]!));
        terms.push(mul(d, d));
      }
    }
    return scale(sum(terms), 1 / (n * dL));
  }
  if (model.loss === 'cross-entropy') {
    for (let s = 0; s < n; s++) {
      const z = outs[s]!;
      terms.push(sub(logSumExp(z), z[y[s]!]!));
    }
    return scale(sum(terms), 1 / n);
  }
  // binary cross-entropy with logits: softplus(z) - z*y, mean over all n*dL elements
  for (let s = 0; s < n; s++) {
    for (let k = 0; k < dL; k++) {
      const z = outs[s]![k]!;
      terms.push(sub(softplus(z), scale(z, y[s * dL + k]!)));
    }
  }
  return scale(sum(terms), 1 / (n * dL));
}

function values(ns: Node[]): Float64Array {
  const out = new Float64Array(ns.length);
  for (let i = 0; i < ns.length; i++) out[i] = ns[i]!.v;
  return out;
}

export function refLossGrad(
  model: RefModel,
  params: Float64Array,
  x: Float64Array,
  y: Float64Array | Int32Array,
  n: number,
): { loss: number; grad: Float64Array } {
  const P = refParamCount(model);
  checkLen('params', params, P);
  checkLen('x', x, n * model.layers[0]!);
  checkTargets(model, y, n);
  const theta = Array.from(params, (v) => leaf(v));
  const L = lossNode(model, theta, x, y, n);
  return { loss: L.v, grad: values(grad(L, theta, false)) };
}

export function refHvp(
  model: RefModel,
  params: Float64Array,
  x: Float64Array,
  y: Float64Array | Int32Array,
  n: number,
  v: Float64Array,
): Float64Array {
  const P = refParamCount(model);
  checkLen('params', params, P);
  checkLen('v', v, P);
  checkLen('x', x, n * model.layers[0]!);
  checkTargets(model, y, n);
  const theta = Array.from(params, (p) => leaf(p));
  const L = lossNode(model, theta, x, y, n);
  const g = grad(L, theta, true);
  const gv = sum(g.map((gi, i) => scale(gi, v[i]!)));
  return values(grad(gv, theta, false));
}

/** 1 on the last layer's W and b, 0 elsewhere (ANIL). */
export function refHeadMask(model: RefModel): Float64Array {
  const P = refParamCount(model);
  const offs = refLayerOffsets(model);
  const last = offs[offs.length - 1]!;
  const mask = new Float64Array(P);
  for (let i = last.w; i < P; i++) mask[i] = 1;
  return mask;
}

type Rates = { kind: 'step'; values: number[] } | { kind: 'param'; values: Float64Array };

function resolveRates(options: RefMetaOptions, S: number, P: number): Rates {
  const lr = options.innerLr;
  if (typeof lr === 'number') {
    if (!Number.isFinite(lr)) throw new Error('innerLr must be finite');
    if (options.algorithm === 'meta-sgd') return { kind: 'param', values: new Float64Array(P).fill(lr) };
    return { kind: 'step', values: new Array<number>(S).fill(lr) };
  }
  if (lr instanceof Float64Array) {
    checkLen('innerLr (per parameter)', lr, P);
    return { kind: 'param', values: lr };
  }
  if (Array.isArray(lr)) {
    checkLen('innerLr (per step)', lr, S);
    return { kind: 'step', values: lr.slice() };
  }
  throw new Error('innerLr must be a number, number[] or Float64Array');
}

function resolveWeights(options: RefMetaOptions, S: number): number[] {
  if (options.stepWeights === undefined) {
    const w = new Array<number>(S + 1).fill(0);
    w[S] = 1;
    return w;
  }
  checkLen('stepWeights', options.stepWeights, S + 1);
  return options.stepWeights.slice();
}

function taskSlice<T extends Float64Array | Int32Array>(arr: T, t: number, per: number): T {
  return arr.subarray(t * per, (t + 1) * per) as T;
}

export function refMetaGradient(
  model: RefModel,
  params: Float64Array,
  batch: RefBatch,
  options: RefMetaOptions,
): { loss: number; grad: Float64Array; innerLrGrad?: Float64Array } {
  const P = refParamCount(model);
  checkLen('params', params, P);
  const S = options.innerSteps;
  if (!Number.isInteger(S) || S < 0) throw new Error(`innerSteps must be an integer >= 0, got ${S}`);
  const algo = options.algorithm;
  if (!['maml', 'fomaml', 'reptile', 'meta-sgd', 'anil'].includes(algo)) throw new Error(`bad algorithm ${algo}`);
  const { tasks: T, support: ns, query: nq } = batch;
  if (!Number.isInteger(T) || T < 1) throw new Error('tasks must be >= 1');
  if (!Number.isInteger(ns) || ns < 1 || !Number.isInteger(nq) || nq < 1) throw new Error('support/query must be >= 1');
  const d0 = model.layers[0]!;
  const dL = model.layers[model.layers.length - 1]!;
  const yPer = model.loss === 'cross-entropy' ? 1 : dL;
  checkLen('xs', batch.xs, T * ns * d0);
  checkLen('xq', batch.xq, T * nq * d0);
  checkLen('ys', batch.ys, T * ns * yPer);
  checkLen('yq', batch.yq, T * nq * yPer);
  checkTargets(model, batch.ys, T * ns);
  checkTargets(model, batch.yq, T * nq);
  const rates = resolveRates(options, S, P);
  const weights = resolveWeights(options, S);
  const mask = algo === 'anil' ? refHeadMask(model) : new Float64Array(P).fill(1);

  const firstOrder = algo === 'fomaml' || algo === 'reptile';
  const theta0 = Array.from(params, (v) => leaf(v));
  // learning-rate leaves (only differentiated for the second-order algorithms)
  const rateLeaves: Node[] =
    rates.kind === 'step' ? rates.values.map((a) => leaf(a)) : Array.from(rates.values, (a) => leaf(a));
  const rateFor = (s: number, i: number): Node => (rates.kind === 'step' ? rateLeaves[s]! : rateLeaves[i]!);

  const taskLosses: Node[] = [];
  const reptileDir = new Float64Array(P);
  for (let t = 0; t < T; t++) {
    const xs = taskSlice(batch.xs, t, ns * d0);
    const ys = taskSlice(batch.ys, t, ns * yPer);
    const xq = taskSlice(batch.xq, t, nq * d0);
    const yq = taskSlice(batch.yq, t, nq * yPer);
    let theta = theta0;
    const outer: Node[] = [];
    for (let s = 0; s <= S; s++) {
      if (algo !== 'reptile' && weights[s] !== 0) {
        outer.push(scale(lossNode(model, theta, xq, yq, nq), weights[s]!));
      }
      if (s === S) break;
      const Lsup = lossNode(model, theta, xs, ys, ns);
      // exact: inner gradient kept on the graph; first order: its value only
      const g = grad(Lsup, theta, !firstOrder);
      const next: Node[] = new Array(P);
      for (let i = 0; i < P; i++) {
        if (mask[i] === 0) {
          next[i] = theta[i]!;
        } else if (firstOrder) {
          // theta_{s+1} = theta_s - const: d theta_{s+1} / d theta_s = I
          next[i] = sub(theta[i]!, constant(rates.kind === 'step' ? rates.values[s]! * g[i]!.v : rates.values[i]! * g[i]!.v));
        } else {
          next[i] = sub(theta[i]!, mul(rateFor(s, i), g[i]!));
        }
      }
      theta = next;
    }
    if (algo === 'reptile') {
      const lq = noGrad(() => lossNode(model, theta.map(detach), xq, yq, nq));
      outer.push(lq);
      for (let i = 0; i < P; i++) reptileDir[i] = reptileDir[i]! + (params[i]! - theta[i]!.v) / T;
    }
    taskLosses.push(sum(outer));
  }
  const total = scale(sum(taskLosses), 1 / T);
  if (algo === 'reptile') return { loss: total.v, grad: reptileDir };
  if (firstOrder) {
    const g = grad(total, theta0, false);
    return { loss: total.v, grad: values(g) };
  }
  const all = grad(total, [...theta0, ...rateLeaves], false);
  return { loss: total.v, grad: values(all.slice(0, P)), innerLrGrad: values(all.slice(P)) };
}
