/**
 * The sinusoid regression benchmark of the MAML paper (Finn et al., 2017): each task is
 * y = A sin(x − φ) with amplitude A ~ U[0.1, 5], phase φ ~ U[0, π], inputs x ~ U[−5, 5].
 */
import { Rng } from './rng.js';
import type { MetaBatch } from './inner.js';
import { checkInt, checkNumber, checkObject, fail } from './validate.js';

/** A sampled meta-batch with the tasks' true amplitudes and phases. */
export interface SineBatch extends MetaBatch {
  support: number;
  query: number;
  xs: Float32Array;
  ys: Float32Array;
  xq: Float32Array;
  yq: Float32Array;
  amplitude: Float64Array;
  phase: Float64Array;
}

export interface SinusoidOptions {
  /** support points per task, K (default 10) */
  shots?: number;
  /** query points per task (default 10) */
  queries?: number;
  seed?: number;
  amplitude?: [number, number];
  phase?: [number, number];
  x?: [number, number];
}

export interface SinusoidSampler {
  readonly shots: number;
  readonly queries: number;
  /** Draws `tasks` fresh tasks. */
  sample(tasks: number): SineBatch;
}

function range(v: unknown, dflt: [number, number], where: string, name: string): [number, number] {
  if (v === undefined) return dflt;
  if (!Array.isArray(v) || v.length !== 2) fail('INVALID_ARGUMENT', where, name, 'a pair [low, high]', v);
  const lo = checkNumber(v[0], where, `${name}[0]`);
  const hi = checkNumber(v[1], where, `${name}[1]`, { min: lo });
  return [lo, hi];
}

/**
 * A seeded sampler of sinusoid tasks.
 *
 * @example
 * const tasks = sinusoid({ shots: 10, queries: 10, seed: 1 });
 * const batch = tasks.sample(25); // { tasks: 25, support: 10, query: 10, xs, ys, xq, yq, … }
 */
export function sinusoid(options: SinusoidOptions = {}): SinusoidSampler {
  const where = 'sinusoid';
  const o = checkObject(options, where, 'options');
  const shots = o.shots === undefined ? 10 : checkInt(o.shots, where, 'options.shots', 0, 1_000_000);
  const queries = o.queries === undefined ? 10 : checkInt(o.queries, where, 'options.queries', 0, 1_000_000);
  const seed = o.seed === undefined ? 0 : checkInt(o.seed, where, 'options.seed', 0, 2 ** 32 - 1);
  const amp = range(o.amplitude, [0.1, 5], where, 'options.amplitude');
  const ph = range(o.phase, [0, Math.PI], where, 'options.phase');
  const xr = range(o.x, [-5, 5], where, 'options.x');
  const rng = new Rng(seed);
  const x0 = xr[0];
  const xw = xr[1] - xr[0];
  return {
    shots,
    queries,
    sample(tasks: number): SineBatch {
      checkInt(tasks, 'sinusoid.sample', 'tasks', 1, Math.floor(2 ** 31 / Math.max(1, shots + queries)));
      const xs = new Float32Array(tasks * shots);
      const ys = new Float32Array(tasks * shots);
      const xq = new Float32Array(tasks * queries);
      const yq = new Float32Array(tasks * queries);
      const amplitude = new Float64Array(tasks);
      const phase = new Float64Array(tasks);
      for (let t = 0; t < tasks; t++) {
        const a = rng.range(amp[0], amp[1]);
        const p = rng.range(ph[0], ph[1]);
        amplitude[t] = a;
        phase[t] = p;
        for (let i = t * shots; i < (t + 1) * shots; i++) {
          const x = Math.fround(x0 + xw * rng.uniform32());
          xs[i] = x;
          ys[i] = a * Math.sin(x - p);
        }
        for (let i = t * queries; i < (t + 1) * queries; i++) {
          const x = Math.fround(x0 + xw * rng.uniform32());
          xq[i] = x;
          yq[i] = a * Math.sin(x - p);
        }
      }
      return { tasks, support: shots, query: queries, xs, ys, xq, yq, amplitude, phase };
    },
  };
}
