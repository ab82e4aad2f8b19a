/**
 * Per-student state for a server: each student's answers and adapted model. Recording answers
 * schedules a re-adaptation; all students whose answers changed since the last round are
 * adapted together in one native call per group (adaptBatchAsync: off the event loop), and the
 * next round starts when that one ends, so under load the batches grow instead of the queue.
 *
 * `mode: 'sync'` adapts each student on the spot with the synchronous adapt() instead: the
 * baseline that bench/education-server.mjs compares against (it blocks the event loop).
 */
import { MamlError, describe } from '../errors.js';
import type { AdaptedModel } from '../learner.js';
import type { Answer } from './encoder.js';
import type { StudentModel } from './model.js';

interface Waiter {
  target: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface StudentState {
  answers: Answer[];
  model: AdaptedModel | null;
  /** number of answers the model was adapted to */
  modelFor: number;
  waiters: Waiter[];
}

export interface StudentServiceOptions {
  /** 'batched' (default) or 'sync' (the blocking baseline) */
  mode?: 'batched' | 'sync';
  /** most answers accepted in one call (default 1000) */
  maxAnswersPerCall?: number;
}

/**
 * @example
 * const service = new StudentService(StudentModel.load('out/students.safetensors'));
 * await service.record('alice', [{ item: '17', correct: 1 }]);   // resolves once re-adapted
 * const { probabilities } = await service.predict('alice', ['18', '19']);
 */
export class StudentService {
  readonly model: StudentModel;
  readonly mode: 'batched' | 'sync';
  readonly #maxAnswers: number;
  readonly #students = new Map<string, StudentState>();
  readonly #pending = new Set<string>();
  #scheduled = false;
  #running = false;
  /** adaptation rounds run, and students adapted in them */
  rounds = 0;
  adapted = 0;

  constructor(model: StudentModel, options: StudentServiceOptions = {}) {
    this.model = model;
    this.mode = options.mode ?? 'batched';
    if (this.mode !== 'batched' && this.mode !== 'sync')
      throw new MamlError('INVALID_ARGUMENT', `StudentService: options.mode must be 'batched' or 'sync', got ${describe(this.mode)}`);
    this.#maxAnswers = options.maxAnswersPerCall ?? 1000;
  }

  get students(): number {
    return this.#students.size;
  }

  /** A copy of a student's answers (empty for an unknown student). */
  answers(id: string): Answer[] {
    return [...(this.#students.get(id)?.answers ?? [])];
  }

  /**
   * Validates and records answers, then resolves once the student's model reflects them.
   * @throws MamlError INVALID_ARGUMENT for a malformed answer (nothing is recorded then).
   */
  async record(id: string, answers: unknown): Promise<{ answered: number }> {
    const where = 'StudentService.record';
    if (typeof id !== 'string' || id.length === 0 || id.length > 200) throw new MamlError('INVALID_ARGUMENT', `${where}: the student id must be a non-empty string of at most 200 characters, got ${describe(id)}`);
    if (!Array.isArray(answers) || answers.length === 0 || answers.length > this.#maxAnswers)
      throw new MamlError('INVALID_ARGUMENT', `${where}: responses must be an array of 1 to ${this.#maxAnswers} answers, got ${describe(answers)}`);
    const clean: Answer[] = answers.map((a, i) => {
      const o = a as { item?: unknown; correct?: unknown };
      if (o === null || typeof o !== 'object') throw new MamlError('INVALID_ARGUMENT', `${where}: responses[${i}] must be an object { item, correct }, got ${describe(a)}`);
      const item = typeof o.item === 'number' && Number.isInteger(o.item) ? String(o.item) : o.item;
      if (typeof item !== 'string' || item.length === 0 || item.length > 200) throw new MamlError('INVALID_ARGUMENT', `${where}: responses[${i}].item must be an item id (a non-empty string), got ${describe(o.item)}`);
      const c = o.correct === true ? 1 : o.correct === false ? 0 : o.correct;
      if (c !== 0 && c !== 1) throw new MamlError('INVALID_ARGUMENT', `${where}: responses[${i}].correct must be 0, 1, true or false, got ${describe(o.correct)}`);
      return { item, correct: c };
    });
    let st = this.#students.get(id);
    if (!st) this.#students.set(id, (st = { answers: [], model: null, modelFor: 0, waiters: [] }));
    st.answers.push(...clean);
    const target = st.answers.length;
    if (this.mode === 'sync') {
      st.model = this.model.adapt(st.answers);
      st.modelFor = target;
      this.rounds++;
      this.adapted++;
      return { answered: target };
    }
    this.#pending.add(id);
    this.#schedule();
    await new Promise<void>((resolve, reject) => st!.waiters.push({ target, resolve, reject }));
    return { answered: target };
  }

  /**
   * P(correct) for each candidate item. Waits for a pending re-adaptation of the student; an
   * unknown student gets the meta-learned model's predictions.
   */
  async predict(id: string, items: readonly string[]): Promise<{ answered: number; probabilities: Float64Array }> {
    if (!Array.isArray(items) || items.length === 0 || items.length > 1000 || items.some((x) => typeof x !== 'string' || x.length === 0))
      throw new MamlError('INVALID_ARGUMENT', `StudentService.predict: items must be 1 to 1000 item ids, got ${describe(items)}`);
    const st = this.#students.get(id);
    if (!st) return { answered: 0, probabilities: this.model.predict(null, [], items) };
    if (st.modelFor < st.answers.length) {
      const target = st.answers.length;
      await new Promise<void>((resolve, reject) => st.waiters.push({ target, resolve, reject }));
    }
    const n = st.modelFor;
    return { answered: n, probabilities: this.model.predict(st.model, st.answers.slice(0, n), items) };
  }

  #schedule(): void {
    if (this.#scheduled || this.#running) return;
    this.#scheduled = true;
    setImmediate(() => void this.#round());
  }

  async #round(): Promise<void> {
    this.#scheduled = false;
    this.#running = true;
    const ids = [...this.#pending];
    this.#pending.clear();
    const states = ids.map((id) => this.#students.get(id)!);
    const snapshots = states.map((st) => st.answers.slice());
    try {
      const models = await this.model.adaptManyAsync(snapshots);
      this.rounds++;
      this.adapted += ids.length;
      states.forEach((st, i) => {
        st.model = models[i]!;
        st.modelFor = snapshots[i]!.length;
        const ready = st.waiters.filter((w) => w.target <= st.modelFor);
        st.waiters = st.waiters.filter((w) => w.target > st.modelFor);
        for (const w of ready) w.resolve();
      });
    } catch (err) {
      states.forEach((st, i) => {
        const failed = st.waiters.filter((w) => w.target <= snapshots[i]!.length);
        st.waiters = st.waiters.filter((w) => w.target > snapshots[i]!.length);
        for (const w of failed) w.reject(err);
      });
    } finally {
      this.#running = false;
      if (this.#pending.size > 0) this.#schedule();
    }
  }
}
