/**
 * Response logs: who answered which item, on which skills, correctly or not, and when.
 * One shape for both sources, the simulator (simulator.ts) and ASSISTments-style CSV files
 * (assistments.ts), so that everything downstream (split, encoder, tasks, evaluation) does
 * not care where the answers came from.
 *
 * Column-oriented: interaction i is (student[i], item[i], correct[i], order[i]) with skills
 * skills[skillOffsets[i] .. skillOffsets[i + 1]) (CSR; an interaction may have 0, 1 or more).
 * Ids are indices into studentIds / itemIds / skillIds (the strings of the source).
 */
import { MamlError } from '../errors.js';

export interface ResponseLog {
  /** [n] index into studentIds */
  student: Int32Array;
  /** [n] index into itemIds */
  item: Int32Array;
  /** [n] 1 correct, 0 wrong */
  correct: Uint8Array;
  /** [n] chronological key (ASSISTments' order_id); ties keep file order */
  order: Float64Array;
  /** [n + 1] CSR offsets into `skills` */
  skillOffsets: Int32Array;
  /** skill indices into skillIds */
  skills: Int32Array;
  studentIds: string[];
  itemIds: string[];
  skillIds: string[];
}

/** One student's answers in chronological order: indices of interactions of the log. */
export interface StudentHistory {
  /** index into log.studentIds */
  student: number;
  id: string;
  /** interaction indices, oldest first */
  rows: Int32Array;
}

/** Number of interactions. */
export function logSize(log: ResponseLog): number {
  return log.student.length;
}

/**
 * Every student's answers in chronological order (by `order`, ties in file order), students in
 * the order of log.studentIds. Students without answers get an empty history.
 */
export function studentHistories(log: ResponseLog): StudentHistory[] {
  const n = logSize(log);
  const S = log.studentIds.length;
  const count = new Int32Array(S + 1);
  for (let i = 0; i < n; i++) count[log.student[i]! + 1]!++;
  for (let s = 0; s < S; s++) count[s + 1]! += count[s]!;
  const rows = new Int32Array(n);
  const fill = count.slice(0, S);
  for (let i = 0; i < n; i++) rows[fill[log.student[i]!]!++] = i;
  const out: StudentHistory[] = [];
  const order = log.order;
  for (let s = 0; s < S; s++) {
    const r = rows.subarray(count[s]!, count[s + 1]!);
    let sorted = true;
    for (let k = 1; k < r.length; k++) if (order[r[k]!]! < order[r[k - 1]!]!) { sorted = false; break; }
    // typed-array sort is not stable: break ties by file position explicitly
    if (!sorted) r.sort((a, b) => order[a]! - order[b]! || a - b);
    out.push({ student: s, id: log.studentIds[s]!, rows: r });
  }
  return out;
}

/** The split of students: 0 train, 1 validation, 2 test. */
export type Group = 0 | 1 | 2;
export const GROUP_NAMES = ['train', 'validation', 'test'] as const;

export interface SplitOptions {
  /** fractions of train and validation students; the rest is test (default 0.6, 0.1) */
  train?: number;
  validation?: number;
  /** default 0 */
  seed?: number;
}

/** FNV-1a over the UTF-16 code units of a string, mixed with a seed: a uniform double in [0, 1). */
export function hashUnit(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // final avalanche (murmur3 fmix32) so that nearby ids land far apart
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

/**
 * Assigns each student to train, validation or test by a hash of the student's id and the
 * seed. The group of a student depends on nothing but its id, so the same student lands in the
 * same group whatever else the file holds, and no answer of a test student can reach training.
 */
export function splitStudents(studentIds: readonly string[], options: SplitOptions = {}): Uint8Array {
  const train = options.train ?? 0.6;
  const validation = options.validation ?? 0.1;
  const seed = options.seed ?? 0;
  if (!(train > 0 && validation >= 0 && train + validation < 1))
    throw new MamlError('INVALID_ARGUMENT', `splitStudents: fractions must satisfy train > 0, validation >= 0, train + validation < 1, got ${train}, ${validation}`);
  const out = new Uint8Array(studentIds.length);
  studentIds.forEach((id, s) => {
    const u = hashUnit(id, seed);
    out[s] = u < train ? 0 : u < train + validation ? 1 : 2;
  });
  return out;
}
