// Shared test utilities: seeded random inputs, comparisons that report the worst element,
// central finite differences.
import { expect } from 'vitest';
import { Rng } from '../src/rng.js';
import type { ModelSpec } from '../src/model.js';
import { MamlError, type ErrorCode } from '../src/errors.js';

/** n values uniform in [-scale, scale]: a Float64Array, or an array of the Kind given. */
export function randomArray(rng: Rng, n: number, scale?: number): Float64Array;
export function randomArray(rng: Rng, n: number, scale: number, Kind: Float32ArrayConstructor): Float32Array;
export function randomArray(rng: Rng, n: number, scale: number, Kind: Float64ArrayConstructor): Float64Array;
export function randomArray(rng: Rng, n: number, scale: number, Kind: Float32ArrayConstructor | Float64ArrayConstructor): Float32Array | Float64Array;
export function randomArray(rng: Rng, n: number, scale = 1, Kind: Float32ArrayConstructor | Float64ArrayConstructor = Float64Array): Float32Array | Float64Array {
  const a = new Kind(n);
  for (let i = 0; i < n; i++) a[i] = rng.range(-scale, scale);
  return a;
}

export function randomLabels(rng: Rng, n: number, classes: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.int(classes);
  return a;
}

/** Targets for `rows` samples of the model's loss: labels (cross-entropy), 0/1 values (binary), or values in [-1, 1]. */
export function randomTargets(rng: Rng, model: ModelSpec, rows: number): Float64Array | Int32Array;
export function randomTargets(rng: Rng, model: ModelSpec, rows: number, Kind: Float32ArrayConstructor): Float32Array | Int32Array;
export function randomTargets(rng: Rng, model: ModelSpec, rows: number, Kind: Float64ArrayConstructor): Float64Array | Int32Array;
export function randomTargets(rng: Rng, model: ModelSpec, rows: number, Kind: Float32ArrayConstructor | Float64ArrayConstructor): Float32Array | Float64Array | Int32Array;
export function randomTargets(rng: Rng, model: ModelSpec, rows: number, Kind: Float32ArrayConstructor | Float64ArrayConstructor = Float64Array): Float32Array | Float64Array | Int32Array {
  const dOut = model.layers[model.layers.length - 1]!;
  if (model.loss === 'cross-entropy') return randomLabels(rng, rows, dOut);
  if (model.loss === 'binary-cross-entropy') {
    const y = new Kind(rows * dOut);
    for (let i = 0; i < y.length; i++) y[i] = rng.uniform() < 0.5 ? 0 : 1;
    return y;
  }
  return randomArray(rng, rows * dOut, 1, Kind);
}

/** ||a - b|| / max(||a||, ||b||, floor), with the worst element for the failure message. */
export function compare(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-12) {
  expect(a.length).toBe(b.length);
  let diff = 0, na = 0, nb = 0, worst = -1, worstAbs = -1;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    diff += d * d;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
    if (!(Math.abs(d) <= worstAbs)) {
      worstAbs = Math.abs(d);
      worst = i;
    }
  }
  const rel = Math.sqrt(diff) / Math.max(Math.sqrt(na), Math.sqrt(nb), floor);
  return { rel, worst, a: a[worst], b: b[worst], length: a.length };
}

export function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) {
  const c = compare(a, b);
  if (!(c.rel <= tol))
    throw new Error(`${what}: relative error ${c.rel.toExponential(3)} > ${tol}; worst element ${c.worst} of ${c.length}: ${c.a} vs ${c.b}`);
}

/** Central differences of f at x (Float64Array), with step eps. */
export function finiteDiff(f: (x: Float64Array) => number, x: Float64Array, eps = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  const xp = Float64Array.from(x);
  for (let i = 0; i < x.length; i++) {
    xp[i] = x[i]! + eps;
    const fp = f(xp);
    xp[i] = x[i]! - eps;
    const fm = f(xp);
    xp[i] = x[i]!;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

export const MODELS: ModelSpec[] = [
  { layers: [3, 6, 5, 2], activation: 'tanh', loss: 'mse' },
  { layers: [3, 6, 5, 2], activation: 'relu', loss: 'mse' },
  { layers: [4, 5, 3], activation: 'tanh', loss: 'cross-entropy' },
  { layers: [4, 5, 3], activation: 'relu', loss: 'cross-entropy' },
  { layers: [2, 7, 1], activation: 'tanh', loss: 'binary-cross-entropy' },
  { layers: [2, 7, 4, 2], activation: 'relu', loss: 'binary-cross-entropy' },
];

export function modelName(m: ModelSpec): string {
  return `[${m.layers.join('-')}] ${m.activation} ${m.loss}`;
}

/** A random float64 meta-batch for a model. */
export function randomBatch(rng: Rng, model: ModelSpec, tasks: number, support: number, query: number) {
  const d0 = model.layers[0]!;
  return {
    tasks,
    support,
    query,
    xs: randomArray(rng, tasks * support * d0),
    ys: randomTargets(rng, model, tasks * support),
    xq: randomArray(rng, tasks * query * d0),
    yq: randomTargets(rng, model, tasks * query),
  };
}

/** T with its Float64Array fields (and unions containing one) typed as Float32Array. */
export type AsF32<T> = { [K in keyof T]: T[K] extends infer V ? (V extends Float64Array ? Float32Array : V) : never };

/** b with every Float64Array field converted to a Float32Array. */
export function toF32<T>(b: T): AsF32<T> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(b as Record<string, unknown>)) out[k] = v instanceof Float64Array ? Float32Array.from(v) : v;
  return out as AsF32<T>;
}

/**
 * Native and JS memory growth over rounds of calls: one warm-up round (threads allocate their
 * scratch memory once), then `rounds` measured rounds; per round, the change of the bytes
 * malloc has handed out and not taken back (or of the resident set where mallinfo2 is
 * missing), in MB, and the heap / ArrayBuffer growth over all of them. Each sample runs the
 * garbage collector, waits for V8's background ArrayBuffer sweeper, and collects again.
 */
export async function memoryRounds(round: () => Promise<void>, rounds = 3) {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  const { loadNative } = await import('../src/loader.js');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const mb = (b: number) => b / 2 ** 20;
  const sample = async () => {
    gc();
    await new Promise((r) => setTimeout(r, 50));
    gc();
    return { malloc: loadNative().mallocInUse(), mem: process.memoryUsage() };
  };
  await round();
  const s0 = await sample();
  const deltas: number[] = [];
  let last = s0;
  for (let r = 0; r < rounds; r++) {
    await round();
    const now = await sample();
    deltas.push(mb(last.malloc >= 0 ? now.malloc - last.malloc : now.mem.rss - last.mem.rss));
    last = now;
  }
  return {
    /** whether deltas are malloc's bytes in use (else the resident set) */
    malloc: s0.malloc >= 0,
    deltas,
    total: deltas.reduce((a, b) => a + b, 0),
    heapMB: mb(last.mem.heapUsed - s0.mem.heapUsed),
    externalMB: mb(last.mem.external - s0.mem.external),
  };
}

/** The MamlError code fn() throws (it must throw a MamlError, if anything), or undefined. */
export function codeOf(fn: () => unknown): ErrorCode | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MamlError);
    return (err as MamlError).code;
  }
  return undefined;
}

/** The MamlError p rejects with (it must reject with one). */
export async function rejection(p: Promise<unknown>): Promise<MamlError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(MamlError);
  return err as MamlError;
}
