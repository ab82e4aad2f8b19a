/**
 * The functional API, for people who write their own loops: forward, gradient,
 * Hessian-vector product and one meta-batch's meta-gradient. Every function validates in
 * three visible steps (model, arrays, options), then makes one native call that reads the
 * caller's typed arrays in place.
 */
import { checkInner, checkBatch, checkTargets as checkBatchTargets, type InnerOptions, type MetaBatch } from './inner.js';
import { checkModel, type Model, type ModelSpec } from './model.js';
import { callNative } from './native.js';
import type { Real } from './native-types.js';
import { checkObject, checkOneOf, checkReal, precisionOf, rowsOf, type Precision } from './validate.js';

export interface MetaGradientOptions extends InnerOptions {
  /** 'float64' runs the double-precision reference: params, xs, xq and real targets are Float64Arrays. */
  precision?: Precision;
  /**
   * 'fast' (default): the vectorized float32 kernels; 'reference': the plain-loop core that
   * every fast kernel is tested against. float64 always runs the reference.
   */
  kernel?: 'fast' | 'reference';
}

export interface MetaGradientResult<A extends Real = Real> {
  /** Mean over tasks of the outer loss Σ_s w_s L_query(θ_s) (plain MAML: the query loss after adaptation). */
  loss: number;
  /** Gradient in the parameter layout (see `metaGradient`). */
  grad: A;
  /**
   * Exact gradient of `loss` with respect to the inner rates (maml, meta-sgd, anil): one entry
   * per step for a number or number[] `innerLr`, per parameter for a per-parameter vector.
   */
  innerLrGrad?: A;
}

function checkParams(model: Model, params: unknown, where: string, precision?: Precision): { params: Real; precision: Precision } {
  const p = precision ?? precisionOf(params, where, 'params');
  return { params: checkReal(params, where, 'params', p, model.nParams, 'P = Σ d_l (d_{l-1} + 1)'), precision: p };
}

function checkTargets(model: Model, y: unknown, rows: number, precision: Precision, where: string): { y?: Real; labels?: Int32Array } {
  const t = checkBatchTargets(y, model, rows, precision, where, 'y');
  return t instanceof Int32Array ? { labels: t } : { y: t };
}

/**
 * The network's outputs (logits for the cross-entropies) for inputs x [n, d0]: [n, dL].
 * Float64Array params and x run the double-precision core; Float32Array ones the fast kernels
 * (`options.kernel: 'reference'`: the plain-loop core). A row's outputs never depend on the
 * other rows of x.
 *
 * @example
 * const y = forward(model, params, new Float32Array([0.5, -1.2])); // two inputs of a 1-D model
 */
export function forward<A extends Real>(model: ModelSpec, params: A, x: A, options?: { kernel?: 'fast' | 'reference' }): A {
  const where = 'forward';
  const m = checkModel(model, where);
  const { precision } = checkParams(m, params, where);
  const n = rowsOf(checkReal(x, where, 'x', precision), where, 'x', m.dIn);
  const o = options === undefined ? {} : checkObject(options, where, 'options');
  const reference = o.kernel !== undefined && checkOneOf(o.kernel, where, 'options.kernel', ['fast', 'reference'] as const) === 'reference';
  return callNative((a) => a.forward({ layers: m.layers, activation: m.activation, loss: m.loss, params, x, n, reference })) as A;
}

/** The loss on (x, y) and its gradient with respect to params. */
export function gradient<A extends Real>(model: ModelSpec, params: A, x: A, y: A | Int32Array): { loss: number; grad: A } {
  const where = 'gradient';
  const m = checkModel(model, where);
  const { precision } = checkParams(m, params, where);
  const n = rowsOf(checkReal(x, where, 'x', precision), where, 'x', m.dIn);
  const t = checkTargets(m, y, n, precision, where);
  return callNative((a) => a.lossGrad({ layers: m.layers, activation: m.activation, loss: m.loss, params, x, n, ...t })) as {
    loss: number;
    grad: A;
  };
}

/**
 * The exact Hessian-vector product H v of the loss on (x, y) at params (Pearlmutter's
 * R-operator: no Hessian is formed). v is in the parameter layout.
 */
export function hvp<A extends Real>(model: ModelSpec, params: A, x: A, y: A | Int32Array, v: A): A {
  const where = 'hvp';
  const m = checkModel(model, where);
  const { precision } = checkParams(m, params, where);
  const n = rowsOf(checkReal(x, where, 'x', precision), where, 'x', m.dIn);
  const t = checkTargets(m, y, n, precision, where);
  checkReal(v, where, 'v', precision, m.nParams, 'the parameter layout');
  return callNative((a) => a.hvp({ layers: m.layers, activation: m.activation, loss: m.loss, params, x, n, v, ...t }).hvp) as A;
}

/**
 * One meta-batch's meta-gradient, in one native call with tasks spread over threads.
 *
 * - `maml`, `meta-sgd`, `anil`: `grad` is the exact gradient of `loss` with respect to params,
 *   second order, through every inner step (anil adapts only the last layer).
 * - `fomaml`: the mean over tasks of Σ_s w_s ∇L_query(θ_s) (first order).
 * - `reptile`: the mean over tasks of θ − θ_S.
 *
 * @example
 * const batch = sinusoid({ shots: 10, queries: 10, seed: 1 }).sample(25);
 * const { loss, grad } = metaGradient(model, params, batch, { algorithm: 'maml', innerLr: 0.01, innerSteps: 1 });
 */
export function metaGradient<A extends Real = Float32Array>(
  model: ModelSpec,
  params: A,
  batch: MetaBatch,
  options: MetaGradientOptions,
): MetaGradientResult<A> {
  const where = 'metaGradient';
  const m = checkModel(model, where);
  const o = checkObject(options, where, 'options');
  const precision = o.precision === undefined ? 'float32' : checkOneOf(o.precision, where, 'options.precision', ['float32', 'float64'] as const);
  checkParams(m, params, where, precision);
  const inner = checkInner(options, m, precision, where);
  const b = checkBatch(batch, m, precision, where, true);
  const reference = o.kernel === undefined ? false : checkOneOf(o.kernel, where, 'options.kernel', ['fast', 'reference'] as const) === 'reference';
  const r = callNative((a) =>
    a.metaGradient({
      layers: m.layers,
      activation: m.activation,
      loss: m.loss,
      params,
      ...inner,
      ...b,
      wantRateGrad: true,
      reference,
    }),
  );
  const out: MetaGradientResult<A> = { loss: r.loss, grad: r.grad as A };
  if (r.rateGrad) out.innerLrGrad = r.rateGrad as A;
  return out;
}
