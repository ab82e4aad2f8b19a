/**
 * N-way K-shot episodes over any labeled set, and disjoint class splits.
 *
 * An episode draws `ways` classes without replacement, then `shots + queries` distinct
 * examples of each class without replacement; its classes are renumbered 0..ways−1 in the
 * (random) order they were drawn. Episodes are stored task-major, like every meta-batch of
 * this library: task t's support rows are xs[t·ways·shots … (t+1)·ways·shots), class-major
 * inside the task (label j's `shots` rows, then label j+1's), and the same for the query set
 * with `queries` rows per class.
 */
import { MamlError } from '../errors.js';
import type { MetaBatch } from '../inner.js';
import { Rng } from '../rng.js';
import { checkInt, checkNumber, checkObject, checkReal, fail } from '../validate.js';

/** A batch of N-way K-shot episodes (a MetaBatch with integer labels and the original classes). */
export interface SampledEpisodes extends MetaBatch {
  tasks: number;
  ways: number;
  shots: number;
  queries: number;
  /** rows per task: ways · shots and ways · queries */
  support: number;
  query: number;
  xs: Float32Array;
  /** labels in [0, ways) */
  ys: Int32Array;
  xq: Float32Array;
  yq: Int32Array;
  /** [tasks × ways]: the original class id behind episode label j of task t (for debugging) */
  classes: Int32Array;
}

/** Options of fewShotSampler: a labeled set and the episode shape (ways, shots, queries). */
export interface FewShotSamplerOptions {
  /** [n × inputDim] examples, flat and row-major */
  x: Float32Array;
  /** [n] class ids (any non-negative integers) */
  labels: Int32Array;
  inputDim: number;
  ways: number;
  shots: number;
  /** query examples per class (default 1) */
  queries?: number;
  seed?: number;
  /** the class ids this sampler may draw (default: every class present in labels) */
  classes?: Int32Array;
}

/** Draws N-way K-shot episodes from a labeled set (made by fewShotSampler). */
export interface FewShotSampler {
  readonly ways: number;
  readonly shots: number;
  readonly queries: number;
  readonly inputDim: number;
  /** the class ids it draws from, ascending */
  readonly classes: Int32Array;
  /** Draws `tasks` episodes. */
  sample(tasks: number): SampledEpisodes;
}

const MAX_ROWS = 2 ** 31 - 1;

/** Row indices of each class, for the classes present in labels. */
function rowsByClass(labels: Int32Array, where: string): Map<number, number[]> {
  const by = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i]!;
    if (c < 0) throw new MamlError('INVALID_ARGUMENT', `${where}: labels[${i}] is ${c}; class ids must be non-negative integers`);
    let rows = by.get(c);
    if (!rows) by.set(c, (rows = []));
    rows.push(i);
  }
  return by;
}

/**
 * A seeded sampler of N-way K-shot episodes.
 *
 * @example
 * const sampler = fewShotSampler({ x, labels, inputDim: 784, ways: 5, shots: 1, queries: 15, seed: 1, classes: split.train });
 * const episodes = sampler.sample(32); // { tasks: 32, ways: 5, support: 5, query: 75, xs, ys, xq, yq, classes }
 */
export function fewShotSampler(options: FewShotSamplerOptions): FewShotSampler {
  const where = 'fewShotSampler';
  const o = checkObject(options, where, 'options');
  const inputDim = checkInt(o.inputDim, where, 'options.inputDim', 1, MAX_ROWS);
  const x = checkReal(o.x, where, 'options.x', 'float32') as Float32Array;
  if (x.length % inputDim !== 0)
    throw new MamlError('SHAPE_MISMATCH', `${where}: options.x has length ${x.length}, which is not a multiple of inputDim = ${inputDim}`);
  const n = x.length / inputDim;
  if (!(o.labels instanceof Int32Array)) fail('INVALID_ARGUMENT', where, 'options.labels', 'an Int32Array of class ids', o.labels);
  const labels = o.labels;
  if (labels.length !== n) fail('SHAPE_MISMATCH', where, 'options.labels', `of length ${n} (one per row of x)`, labels);
  const ways = checkInt(o.ways, where, 'options.ways', 1, 100_000);
  const shots = checkInt(o.shots, where, 'options.shots', 1, 100_000);
  const queries = o.queries === undefined ? 1 : checkInt(o.queries, where, 'options.queries', 0, 100_000);
  const seed = o.seed === undefined ? 0 : checkInt(o.seed, where, 'options.seed', 0, 2 ** 32 - 1);
  const by = rowsByClass(labels, where);
  let classes: Int32Array;
  if (o.classes === undefined) classes = Int32Array.from([...by.keys()]).sort();
  else {
    if (!(o.classes instanceof Int32Array)) fail('INVALID_ARGUMENT', where, 'options.classes', 'an Int32Array of class ids', o.classes);
    classes = Int32Array.from(o.classes).sort();
    for (let i = 1; i < classes.length; i++)
      if (classes[i] === classes[i - 1]) throw new MamlError('INVALID_ARGUMENT', `${where}: options.classes lists class ${classes[i]} twice`);
  }
  if (ways > classes.length)
    throw new MamlError('INVALID_ARGUMENT', `${where}: options.ways is ${ways}, but only ${classes.length} classes are available`);
  const need = shots + queries;
  const pools: Int32Array[] = [];
  for (const c of classes) {
    const rows = by.get(c);
    if (!rows || rows.length < need)
      throw new MamlError(
        'INVALID_ARGUMENT',
        `${where}: class ${c} has ${rows?.length ?? 0} examples, fewer than shots + queries = ${need}`,
      );
    pools.push(Int32Array.from(rows));
  }
  const rng = new Rng(seed);
  // Persistent permutations: a partial Fisher-Yates shuffle of any permutation draws a uniform
  // sample without replacement, so nothing needs resetting between episodes.
  const classOrder = Int32Array.from({ length: classes.length }, (_, i) => i);
  const partialShuffle = (a: Int32Array, k: number) => {
    for (let i = 0; i < k; i++) {
      const j = i + rng.int(a.length - i);
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
  };
  const support = ways * shots;
  const query = ways * queries;
  return {
    ways,
    shots,
    queries,
    inputDim,
    classes: classes.slice(),
    sample(tasks: number): SampledEpisodes {
      checkInt(tasks, 'fewShotSampler.sample', 'tasks', 1, Math.floor(MAX_ROWS / Math.max(1, (support + query) * inputDim)));
      const xs = new Float32Array(tasks * support * inputDim);
      const ys = new Int32Array(tasks * support);
      const xq = new Float32Array(tasks * query * inputDim);
      const yq = new Int32Array(tasks * query);
      const drawn = new Int32Array(tasks * ways);
      for (let t = 0; t < tasks; t++) {
        partialShuffle(classOrder, ways);
        for (let j = 0; j < ways; j++) {
          const ci = classOrder[j]!;
          drawn[t * ways + j] = classes[ci]!;
          const pool = pools[ci]!;
          partialShuffle(pool, need);
          for (let k = 0; k < need; k++) {
            const src = pool[k]! * inputDim;
            const row = k < shots ? t * support + j * shots + k : t * query + j * queries + (k - shots);
            const dst = k < shots ? xs : xq;
            dst.set(x.subarray(src, src + inputDim), row * inputDim);
            (k < shots ? ys : yq)[row] = j;
          }
        }
      }
      return { tasks, ways, shots, queries, support, query, xs, ys, xq, yq, classes: drawn };
    },
  };
}

/** Class ids of a disjoint train / validation / test split, each ascending. */
export interface ClassSplit {
  train: Int32Array;
  val: Int32Array;
  test: Int32Array;
}

/**
 * Splits classes into disjoint train, validation and test sets, seeded. `sizes` holds
 * fractions (each in [0, 1], summing to at most 1; when they sum to 1 the test set takes what
 * rounding leaves) or class counts (integers summing to at most the number of classes).
 * `classes` is the labels array (its distinct values are the classes) or a class count n
 * (classes 0..n−1).
 *
 * @example
 * const split = splitClasses(labels, { train: 0.7, val: 0.1, test: 0.2 }, 1);
 */
export function splitClasses(classes: Int32Array | number, sizes: { train: number; val?: number; test: number }, seed = 0): ClassSplit {
  const where = 'splitClasses';
  let ids: Int32Array;
  if (typeof classes === 'number') ids = Int32Array.from({ length: checkInt(classes, where, 'classes', 1, MAX_ROWS) }, (_, i) => i);
  else if (classes instanceof Int32Array) ids = Int32Array.from(rowsByClass(classes, where).keys()).sort();
  else return fail('INVALID_ARGUMENT', where, 'classes', 'an Int32Array of labels or a class count', classes);
  const s = checkObject(sizes, where, 'sizes');
  checkInt(seed, where, 'seed', 0, 2 ** 32 - 1);
  const f = {
    train: checkNumber(s.train, where, 'sizes.train', { min: 0 }),
    val: s.val === undefined ? 0 : checkNumber(s.val, where, 'sizes.val', { min: 0 }),
    test: checkNumber(s.test, where, 'sizes.test', { min: 0 }),
  };
  const C = ids.length;
  const sum = f.train + f.val + f.test;
  let counts: [number, number, number];
  if (sum <= 1 + 1e-9 && f.train <= 1 && f.val <= 1 && f.test <= 1) {
    const train = Math.round(f.train * C);
    const val = Math.round(f.val * C);
    const test = Math.abs(sum - 1) < 1e-9 ? C - train - val : Math.round(f.test * C);
    counts = [train, val, Math.max(0, test)];
  } else {
    for (const k of ['train', 'val', 'test'] as const)
      if (!Number.isInteger(f[k]))
        throw new MamlError('INVALID_ARGUMENT', `${where}: sizes.${k} is ${f[k]}; sizes must be fractions summing to at most 1 or integer class counts`);
    counts = [f.train, f.val, f.test];
  }
  if (counts[0] + counts[1] + counts[2] > C)
    throw new MamlError('INVALID_ARGUMENT', `${where}: the split asks for ${counts[0]} + ${counts[1]} + ${counts[2]} classes, but there are only ${C}`);
  const rng = new Rng(seed);
  const perm = ids.slice();
  for (let i = perm.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  const train = perm.slice(0, counts[0]).sort();
  const val = perm.slice(counts[0], counts[0] + counts[1]).sort();
  const test = perm.slice(counts[0] + counts[1], counts[0] + counts[1] + counts[2]).sort();
  return { train, val, test };
}
