/**
 * Meta-batches and inner-loop options: validation and conversion into what native code reads.
 * Shared by the functional API and MetaLearner so that both check inputs the same way.
 */
import { MamlError } from './errors.js';
import type { Model } from './model.js';
import type { NativeBatch, NativeInner, Real } from './native-types.js';
import {
  checkInt,
  checkLabels,
  checkNumber,
  checkObject,
  checkOneOf,
  checkReal,
  fail,
  firstNonFinite,
  type Precision,
} from './validate.js';

export type Algorithm = 'maml' | 'fomaml' | 'reptile' | 'meta-sgd' | 'anil';
export const ALGORITHMS: readonly Algorithm[] = ['maml', 'fomaml', 'reptile', 'meta-sgd', 'anil'];

/** The largest number of inner steps accepted. */
export const MAX_INNER_STEPS = 10_000;

/**
 * A meta-batch: `tasks` tasks stored task-major, flat and row-major. `xs` is
 * [tasks·support, d0]; `ys` is [tasks·support, dL] (or Int32Array labels [tasks·support] for
 * cross-entropy); `xq`, `yq` likewise with `query` rows per task. Tasks of unequal sizes give
 * `supportOffsets` / `queryOffsets` (Int32Array [tasks + 1], CSR style) instead of
 * `support` / `query`.
 */
export interface MetaBatch {
  tasks: number;
  support?: number;
  query?: number;
  supportOffsets?: Int32Array;
  queryOffsets?: Int32Array;
  xs: Real;
  ys: Real | Int32Array;
  xq?: Real;
  yq?: Real | Int32Array;
}

/** A learning rate per step (number or number[]), or per parameter (a typed array). */
export type InnerLr = number | readonly number[] | Float32Array | Float64Array;

export interface InnerOptions {
  algorithm: Algorithm;
  innerLr: InnerLr;
  innerSteps: number;
  stepWeights?: readonly number[];
}

/** How rates are laid out: one per step, one per parameter, or one per step and parameter. */
export type RateShape = 'per-step' | 'per-param' | 'per-step-param';

export interface Inner extends NativeInner {
  algorithmName: Algorithm;
  rates: Real;
  rateShape: RateShape;
}

const MAX_ROWS = 2 ** 31 - 1;

function uniformOffsets(tasks: number, per: number, where: string, name: string): Int32Array {
  if (tasks * per > MAX_ROWS) throw new MamlError('TOO_LARGE', `${where}: ${tasks} tasks × ${per} ${name} rows is too many`);
  const off = new Int32Array(tasks + 1);
  for (let t = 0; t <= tasks; t++) off[t] = t * per;
  return off;
}

function checkOffsets(value: unknown, tasks: number, where: string, name: string): Int32Array {
  if (!(value instanceof Int32Array)) fail('INVALID_ARGUMENT', where, name, `an Int32Array of ${tasks + 1} offsets`, value);
  if (value.length !== tasks + 1) fail('SHAPE_MISMATCH', where, name, `of length tasks + 1 = ${tasks + 1}`, value);
  if (value[0] !== 0) throw new MamlError('INVALID_ARGUMENT', `${where}: ${name}[0] must be 0, got ${value[0]}`);
  for (let t = 0; t < tasks; t++)
    if (value[t + 1]! < value[t]!)
      throw new MamlError('INVALID_ARGUMENT', `${where}: ${name} must not decrease, but [${t + 1}] = ${value[t + 1]} < [${t}] = ${value[t]}`);
  return value;
}

function rowsFor(b: Record<string, unknown>, tasks: number, where: string, part: 'support' | 'query'): Int32Array {
  const offName = part === 'support' ? 'supportOffsets' : 'queryOffsets';
  if (b[offName] !== undefined) {
    const off = checkOffsets(b[offName], tasks, where, `batch.${offName}`);
    if (b[part] !== undefined) {
      const per = checkInt(b[part], where, `batch.${part}`, 0, MAX_ROWS);
      for (let t = 0; t < tasks; t++)
        if (off[t + 1]! - off[t]! !== per)
          throw new MamlError('SHAPE_MISMATCH', `${where}: batch.${part} = ${per} disagrees with batch.${offName} (task ${t} has ${off[t + 1]! - off[t]!} rows)`);
    }
    return off;
  }
  const per = checkInt(b[part], where, `batch.${part}`, 0, MAX_ROWS);
  return uniformOffsets(tasks, per, where, part);
}

/** Targets for `rows` samples: Int32Array labels (cross-entropy) or real values in the model's precision. */
export function checkTargets(value: unknown, model: Model, rows: number, precision: Precision, where: string, name: string): Real | Int32Array {
  if (model.spec.loss === 'cross-entropy') return checkLabels(value, where, name, rows, model.dOut);
  const y = checkReal(value, where, name, precision, rows * model.dOut, `rows × ${model.dOut} outputs`);
  if (model.spec.loss === 'binary-cross-entropy')
    for (let i = 0; i < y.length; i++)
      if (!(y[i]! >= 0 && y[i]! <= 1))
        throw new MamlError('INVALID_ARGUMENT', `${where}: ${name}[${i}] is ${y[i]}; binary-cross-entropy targets must lie in [0, 1]`);
  return y;
}

/** Validates a meta-batch and returns the arrays native code reads (no copies). */
export function checkBatch(value: unknown, model: Model, precision: Precision, where: string, needQuery: boolean): NativeBatch {
  const b = checkObject(value, where, 'batch');
  const tasks = checkInt(b.tasks, where, 'batch.tasks', 1, MAX_ROWS);
  const supportOffsets = rowsFor(b, tasks, where, 'support');
  const rs = supportOffsets[tasks]!;
  const xs = checkReal(b.xs, where, 'batch.xs', precision, rs * model.dIn, `support rows × ${model.dIn} inputs`);
  const out: NativeBatch = { tasks, supportOffsets, xs };
  const ys = checkTargets(b.ys, model, rs, precision, where, 'batch.ys');
  if (ys instanceof Int32Array) out.ysLabels = ys;
  else out.ys = ys;
  const hasQuery = b.query !== undefined || b.queryOffsets !== undefined;
  if (needQuery || hasQuery) {
    const queryOffsets = rowsFor(b, tasks, where, 'query');
    const rq = queryOffsets[tasks]!;
    if (needQuery)
      for (let t = 0; t < tasks; t++)
        if (queryOffsets[t + 1] === queryOffsets[t])
          throw new MamlError('SHAPE_MISMATCH', `${where}: task ${t} has no query rows; every task needs at least one`);
    out.queryOffsets = queryOffsets;
    out.xq = checkReal(b.xq, where, 'batch.xq', precision, rq * model.dIn, `query rows × ${model.dIn} inputs`);
    const yq = checkTargets(b.yq, model, rq, precision, where, 'batch.yq');
    if (yq instanceof Int32Array) out.yqLabels = yq;
    else out.yq = yq;
  }
  return out;
}

/**
 * Validates inner-loop options and lays the rates out for native code:
 * - a number or a number[] (one per step) → per-step rates (meta-sgd: expanded per parameter);
 * - a typed array of length P → per-parameter rates shared by every step;
 * - a typed array of length S·P → per-step, per-parameter rates.
 */
export function checkInner(value: unknown, model: Model, precision: Precision, where: string): Inner {
  const o = checkObject(value, where, 'options');
  const algorithmName = checkOneOf(o.algorithm ?? 'maml', where, 'options.algorithm', ALGORITHMS);
  const steps = checkInt(o.innerSteps ?? 1, where, 'options.innerSteps', 0, MAX_INNER_STEPS);
  const P = model.nParams;
  const Kind = precision === 'float64' ? Float64Array : Float32Array;
  const lr = o.innerLr ?? 0.01;
  let rates: Real;
  let rateShape: RateShape;
  if (typeof lr === 'number') {
    checkNumber(lr, where, 'options.innerLr', {});
    if (algorithmName === 'meta-sgd') {
      rates = new Kind(P).fill(lr);
      rateShape = 'per-param';
    } else {
      rates = new Kind(Math.max(steps, 1)).fill(lr);
      rateShape = 'per-step';
    }
  } else if (Array.isArray(lr)) {
    if (lr.length !== steps)
      fail('SHAPE_MISMATCH', where, 'options.innerLr', `an array of one rate per inner step (${steps})`, lr);
    lr.forEach((r, i) => checkNumber(r, where, `options.innerLr[${i}]`));
    if (algorithmName === 'meta-sgd') {
      rates = new Kind(Math.max(steps, 1) * P);
      for (let s = 0; s < steps; s++) rates.fill(lr[s] as number, s * P, (s + 1) * P);
      rateShape = 'per-step-param';
    } else {
      rates = Kind.from(lr.length ? (lr as number[]) : [0]);
      rateShape = 'per-step';
    }
  } else if (lr instanceof Float32Array || lr instanceof Float64Array) {
    const bad = firstNonFinite(lr);
    if (bad >= 0) throw new MamlError('NON_FINITE', `${where}: options.innerLr[${bad}] is ${lr[bad]}; rates must be finite`);
    if (lr.length === P) rateShape = 'per-param';
    else if (steps > 0 && lr.length === steps * P) rateShape = 'per-step-param';
    else
      fail('SHAPE_MISMATCH', where, 'options.innerLr', `a typed array of length P = ${P} (per parameter) or innerSteps × P = ${steps * P}`, lr);
    rates = lr instanceof Kind ? lr : Kind.from(lr);
  } else {
    return fail('INVALID_ARGUMENT', where, 'options.innerLr', 'a number, an array of one number per step, or a Float32Array of per-parameter rates', lr);
  }
  const weights = new Float64Array(steps + 1);
  if (o.stepWeights === undefined || o.stepWeights === null) {
    weights[steps] = 1;
  } else {
    const w = o.stepWeights;
    if (!Array.isArray(w) && !(w instanceof Float64Array) && !(w instanceof Float32Array))
      fail('INVALID_ARGUMENT', where, 'options.stepWeights', `an array of innerSteps + 1 = ${steps + 1} weights`, w);
    if ((w as ArrayLike<number>).length !== steps + 1)
      fail('SHAPE_MISMATCH', where, 'options.stepWeights', `an array of innerSteps + 1 = ${steps + 1} weights (w_0 … w_S)`, w);
    for (let s = 0; s <= steps; s++) weights[s] = checkNumber((w as ArrayLike<number>)[s], where, `options.stepWeights[${s}]`);
  }
  return {
    algorithmName,
    algorithm: ALGORITHMS.indexOf(algorithmName),
    steps,
    weights,
    rates,
    rateShape,
    rateStepStride: rateShape === 'per-step' ? (rates.length > 1 ? 1 : 0) : rateShape === 'per-param' ? 0 : P,
    rateParamStride: rateShape === 'per-step' ? 0 : 1,
  };
}

/**
 * Rates for adapting with `steps` steps from rates laid out for `inner.steps`: step s uses the
 * training rate of step min(s, S - 1), so a model trained with 1 step can adapt with 10.
 */
export function ratesForSteps(inner: Inner, steps: number, P: number): { rates: Real; rateStepStride: number } {
  if (inner.rateShape === 'per-param' || steps <= inner.steps) return { rates: inner.rates, rateStepStride: inner.rateStepStride };
  if (inner.steps === 0) return { rates: inner.rates, rateStepStride: 0 }; // one rate, used for every step
  const Kind = inner.rates instanceof Float64Array ? Float64Array : Float32Array;
  const width = inner.rateShape === 'per-step' ? 1 : P;
  const out = new Kind(steps * width);
  for (let s = 0; s < steps; s++) {
    const from = Math.min(s, inner.steps - 1) * width;
    out.set(inner.rates.subarray(from, from + width), s * width);
  }
  return { rates: out, rateStepStride: width };
}
