/**
 * From one answer to a feature vector. Everything item-level (skill slots, discrimination,
 * difficulty) is estimated from training students only; what depends on the student being
 * predicted is only that student's own earlier answers (how often it practised the skill).
 *
 * The feature vector of an answer to item j with skills k_1..k_m, the student having answered
 * n earlier items on those skills (mean over the m skills):
 *
 *   x = [ slot_0 … slot_{S−1}, slot_other | â_j | −b̂_j | â_j·min(n, 50)/10 ]
 *        skill identity, one-hot × â_j/√m    general  difficulty  practice
 *
 * where (â_j, b̂_j) are the item's 2PL parameters fitted on training students (irt.ts) and
 * the slots are the `maxSkills` most frequent training skills, the rest sharing slot_other.
 * With these inputs a logistic model σ(w·x + c) is a multidimensional IRT model: w on a skill
 * slot is the student's ability on that skill, w on `general` its ability on all of them, so a
 * few gradient steps on a student's answers move exactly the quantities that differ between
 * students. Width d = S + 4.
 */
import { MamlError } from '../errors.js';
import { fitIrt2pl, type IrtItems } from './irt.js';
import type { ResponseLog, StudentHistory } from './log.js';

export const PRACTICE_CAP = 50;
export const PRACTICE_SCALE = 10;

/** Everything an encoder knows, as plain JSON (saved next to a checkpoint). */
export interface EncoderState {
  /** skill ids with their own slot, in slot order */
  skills: string[];
  /** items seen in training: ids, 2PL parameters, skill ids */
  items: { id: string; a: number; b: number; skills: string[] }[];
  /** parameters of items no training student answered */
  defaultA: number;
  defaultB: number;
}

/** One answer as the serving side knows it: an item id and whether it was right. */
export interface Answer {
  item: string;
  correct: number;
}

export class StudentEncoder {
  readonly state: EncoderState;
  /** feature width d */
  readonly width: number;
  readonly #slot = new Map<string, number>();
  readonly #item = new Map<string, number>();
  readonly #itemSlots: Int32Array[];

  constructor(state: EncoderState) {
    this.state = state;
    state.skills.forEach((s, k) => this.#slot.set(s, k));
    state.items.forEach((it, j) => this.#item.set(it.id, j));
    this.#itemSlots = state.items.map((it) => this.slotsOf(it.skills));
    this.width = state.skills.length + 4;
  }

  /** Index of the `general` feature; the skill slots come before it, `other` just before. */
  get generalIndex(): number {
    return this.state.skills.length + 1;
  }

  /**
   * Fits an encoder on the answers of training students only. `histories` must hold only
   * training students; nothing else of the log is read.
   */
  static fit(log: ResponseLog, trainHistories: readonly StudentHistory[], options: { maxSkills?: number; irtIterations?: number } = {}): StudentEncoder {
    const maxSkills = options.maxSkills ?? 128;
    if (!Number.isInteger(maxSkills) || maxSkills < 1) throw new MamlError('INVALID_ARGUMENT', `StudentEncoder.fit: options.maxSkills must be a positive integer, got ${maxSkills}`);
    const skillCount = new Int32Array(log.skillIds.length);
    const itemSeen = new Uint8Array(log.itemIds.length);
    const itemSkills = new Map<number, Set<number>>();
    for (const h of trainHistories)
      for (const i of h.rows) {
        const j = log.item[i]!;
        itemSeen[j] = 1;
        let set = itemSkills.get(j);
        if (!set) itemSkills.set(j, (set = new Set()));
        for (let k = log.skillOffsets[i]!; k < log.skillOffsets[i + 1]!; k++) {
          skillCount[log.skills[k]!]!++;
          set.add(log.skills[k]!);
        }
      }
    const ranked = Array.from(skillCount.keys())
      .filter((s) => skillCount[s]! > 0)
      .sort((p, q) => skillCount[q]! - skillCount[p]! || p - q)
      .slice(0, maxSkills);
    const irt: IrtItems = fitIrt2pl(log.item, log.correct, log.itemIds.length, trainHistories.map((h) => h.rows), { iterations: options.irtIterations });
    let sumB = 0, seen = 0;
    const items: EncoderState['items'] = [];
    for (let j = 0; j < log.itemIds.length; j++) {
      if (!itemSeen[j]) continue;
      sumB += irt.b[j]!;
      seen++;
      items.push({ id: log.itemIds[j]!, a: round(irt.a[j]!), b: round(irt.b[j]!), skills: Array.from(itemSkills.get(j) ?? [], (s) => log.skillIds[s]!) });
    }
    return new StudentEncoder({ skills: ranked.map((s) => log.skillIds[s]!), items, defaultA: 1, defaultB: round(seen ? sumB / seen : 0) });
  }

  /** Slot indices of skill ids (the `other` slot for skills without their own). */
  slotsOf(skills: readonly string[]): Int32Array {
    const out = new Int32Array(skills.length);
    skills.forEach((s, i) => (out[i] = this.#slot.get(s) ?? this.state.skills.length));
    return out;
  }

  /** The 2PL parameters of an item id (the defaults for an item never seen in training). */
  itemParams(id: string): { a: number; b: number; known: boolean } {
    const j = this.#item.get(id);
    if (j === undefined) return { a: this.state.defaultA, b: this.state.defaultB, known: false };
    const it = this.state.items[j]!;
    return { a: it.a, b: it.b, known: true };
  }

  /**
   * Features of one student's answers in chronological order, rows [n × d] written into `out`
   * at row `at`. `a`, `b`: the items' parameters; `slots(i)`: answer i's skill slots.
   */
  #encode(n: number, a: (i: number) => number, b: (i: number) => number, slots: (i: number) => Int32Array, out: Float32Array, at: number): Map<number, number> {
    const d = this.width;
    const practice = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const sl = slots(i);
      this.#row(a(i), b(i), sl, practice, out.subarray((at + i) * d, (at + i + 1) * d));
      for (let k = 0; k < sl.length; k++) practice.set(sl[k]!, (practice.get(sl[k]!) ?? 0) + 1);
    }
    return practice;
  }

  /** One feature row; `practice`: earlier answers per slot. */
  #row(a: number, b: number, sl: Int32Array, practice: Map<number, number>, row: Float32Array): void {
    const S1 = this.state.skills.length + 1;
    row.fill(0);
    const m = sl.length;
    let prac = 0;
    for (let k = 0; k < m; k++) {
      row[sl[k]!] = row[sl[k]!]! + a / Math.sqrt(m);
      prac += practice.get(sl[k]!) ?? 0;
    }
    row[S1] = a;
    row[S1 + 1] = -b;
    row[S1 + 2] = m ? (a * Math.min(prac / m, PRACTICE_CAP)) / PRACTICE_SCALE : 0;
  }

  /**
   * Features [rows.length × d] of log answers `rows`, one student's, oldest first. The items'
   * skills come from the log (so a test student's item that no training student answered
   * still gets its skill slots); parameters from the encoder.
   */
  encodeLogRows(log: ResponseLog, rows: ArrayLike<number>, out = new Float32Array(rows.length * this.width), at = 0): Float32Array {
    const params = (i: number) => this.itemParams(log.itemIds[log.item[rows[i]!]!]!);
    const slotCache = new Map<number, Int32Array>();
    const slots = (i: number): Int32Array => {
      const r = rows[i]!;
      let s = slotCache.get(r);
      if (!s) {
        const names: string[] = [];
        for (let k = log.skillOffsets[r]!; k < log.skillOffsets[r + 1]!; k++) names.push(log.skillIds[log.skills[k]!]!);
        slotCache.set(r, (s = this.slotsOf(names)));
      }
      return s;
    };
    const ps = Array.from({ length: rows.length }, (_, i) => params(i));
    this.#encode(rows.length, (i) => ps[i]!.a, (i) => ps[i]!.b, slots, out, at);
    return out;
  }

  /** Skill slots of an item id: its training skills (none for an unknown item). */
  #slotsOfItem(id: string): Int32Array {
    const j = this.#item.get(id);
    return j === undefined ? new Int32Array(0) : this.#itemSlots[j]!;
  }

  /** Features of a history of answers given by item id (the serving side's view), [n × d]. */
  encodeAnswers(items: readonly string[]): Float32Array {
    const out = new Float32Array(items.length * this.width);
    const ps = items.map((id) => this.itemParams(id));
    this.#encode(items.length, (i) => ps[i]!.a, (i) => ps[i]!.b, (i) => this.#slotsOfItem(items[i]!), out, 0);
    return out;
  }

  /**
   * Features of candidate items [m × d] for a student whose answers so far are `history`
   * (item ids, oldest first): each candidate as if it were the next answer.
   */
  encodeCandidates(history: readonly string[], candidates: readonly string[]): Float32Array {
    const d = this.width;
    const ps = history.map((id) => this.itemParams(id));
    const practice = this.#encode(history.length, (i) => ps[i]!.a, (i) => ps[i]!.b, (i) => this.#slotsOfItem(history[i]!), new Float32Array(history.length * d), 0);
    const out = new Float32Array(candidates.length * d);
    candidates.forEach((id, c) => {
      const p = this.itemParams(id);
      this.#row(p.a, p.b, this.#slotsOfItem(id), practice, out.subarray(c * d, (c + 1) * d));
    });
    return out;
  }
}

function round(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}
