/**
 * Students as tasks. A student's chronological answers, encoded once ([n_u × d] features and
 * [n_u] outcomes, CSR over students), become a task by cutting at K: the first K answers are
 * the support set, the following ones (at most `queryMax`) the query set. Students with
 * different numbers of answers make ragged meta-batches (supportOffsets / queryOffsets,
 * DESIGN.md §2) rather than padded ones.
 */
import { MamlError } from '../errors.js';
import type { MetaBatch } from '../inner.js';
import type { Rng } from '../rng.js';
import type { StudentEncoder } from './encoder.js';
import type { ResponseLog, StudentHistory } from './log.js';

export interface EncodedStudents {
  /** the histories encoded, in order */
  histories: StudentHistory[];
  /** [students + 1] row offsets */
  offsets: Int32Array;
  /** [rows × d] */
  x: Float32Array;
  /** [rows] 0 / 1 */
  y: Float32Array;
  /** [rows] the log interaction of each row */
  rows: Int32Array;
  width: number;
}

/** Encodes the given students' histories with a fitted encoder. */
export function encodeStudents(log: ResponseLog, histories: readonly StudentHistory[], encoder: StudentEncoder): EncodedStudents {
  const d = encoder.width;
  const offsets = new Int32Array(histories.length + 1);
  histories.forEach((h, s) => (offsets[s + 1] = offsets[s]! + h.rows.length));
  const n = offsets[histories.length]!;
  const x = new Float32Array(n * d), y = new Float32Array(n), rows = new Int32Array(n);
  histories.forEach((h, s) => {
    encoder.encodeLogRows(log, h.rows, x, offsets[s]!);
    for (let i = 0; i < h.rows.length; i++) {
      rows[offsets[s]! + i] = h.rows[i]!;
      y[offsets[s]! + i] = log.correct[h.rows[i]!]!;
    }
  });
  return { histories: [...histories], offsets, x, y, rows, width: d };
}

/** A meta-batch of students cut at K, and where its query rows came from. */
export interface StudentBatch extends MetaBatch {
  supportOffsets: Int32Array;
  queryOffsets: Int32Array;
  xs: Float32Array;
  ys: Float32Array;
  xq: Float32Array;
  yq: Float32Array;
  /** positions (in EncodedStudents) of the tasks' students */
  students: Int32Array;
  /** [query rows] row index in EncodedStudents of each query row */
  queryRows: Int32Array;
}

/**
 * Cuts students `which` (positions in `enc`) at `ks[t]` answers each: support = the first K,
 * query = up to `queryMax` answers after them. Students need more than K answers.
 */
export function cutStudents(enc: EncodedStudents, which: ArrayLike<number>, ks: ArrayLike<number>, queryMax: number): StudentBatch {
  const T = which.length, d = enc.width;
  const supportOffsets = new Int32Array(T + 1), queryOffsets = new Int32Array(T + 1);
  for (let t = 0; t < T; t++) {
    const s = which[t]!;
    const n = enc.offsets[s + 1]! - enc.offsets[s]!;
    const k = ks[t]!;
    if (!(k < n)) throw new RangeError(`cutStudents: student ${enc.histories[s]!.id} has ${n} answers, not more than K = ${k}`);
    supportOffsets[t + 1] = supportOffsets[t]! + k;
    queryOffsets[t + 1] = queryOffsets[t]! + Math.min(queryMax, n - k);
  }
  const xs = new Float32Array(supportOffsets[T]! * d), ys = new Float32Array(supportOffsets[T]!);
  const xq = new Float32Array(queryOffsets[T]! * d), yq = new Float32Array(queryOffsets[T]!);
  const queryRows = new Int32Array(queryOffsets[T]!);
  for (let t = 0; t < T; t++) {
    const s = which[t]!, base = enc.offsets[s]!;
    const k = supportOffsets[t + 1]! - supportOffsets[t]!, q = queryOffsets[t + 1]! - queryOffsets[t]!;
    xs.set(enc.x.subarray(base * d, (base + k) * d), supportOffsets[t]! * d);
    ys.set(enc.y.subarray(base, base + k), supportOffsets[t]!);
    xq.set(enc.x.subarray((base + k) * d, (base + k + q) * d), queryOffsets[t]! * d);
    yq.set(enc.y.subarray(base + k, base + k + q), queryOffsets[t]!);
    for (let i = 0; i < q; i++) queryRows[queryOffsets[t]! + i] = base + k + i;
  }
  return { tasks: T, supportOffsets, queryOffsets, xs, ys, xq, yq, students: Int32Array.from(which), queryRows };
}

/** Positions of the students of `enc` with more than K answers. */
export function studentsWithMoreThan(enc: EncodedStudents, k: number): Int32Array {
  const out: number[] = [];
  for (let s = 0; s < enc.histories.length; s++) if (enc.offsets[s + 1]! - enc.offsets[s]! > k) out.push(s);
  return Int32Array.from(out);
}

/**
 * A meta-training sampler: each task is a random student (with at least 2 answers) cut at a K
 * drawn from `ks` (clipped to the student's answers minus one).
 */
export function studentTaskSampler(enc: EncodedStudents, options: { ks: readonly number[]; queryMax: number; rng: Rng }) {
  const eligible = studentsWithMoreThan(enc, 1);
  if (eligible.length === 0) throw new MamlError('INVALID_ARGUMENT', 'studentTaskSampler: no training student has 2 or more answers: there is nothing to meta-train on');
  return {
    eligible: eligible.length,
    sample(tasks: number): StudentBatch {
      const which = new Int32Array(tasks), ks = new Int32Array(tasks);
      for (let t = 0; t < tasks; t++) {
        const s = eligible[options.rng.int(eligible.length)]!;
        const n = enc.offsets[s + 1]! - enc.offsets[s]!;
        which[t] = s;
        ks[t] = Math.min(options.ks[options.rng.int(options.ks.length)]!, n - 1);
      }
      return cutStudents(enc, which, ks, options.queryMax);
    },
  };
}
