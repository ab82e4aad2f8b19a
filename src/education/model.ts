/**
 * A trained per-student model as one unit: the meta-learner (a safetensors checkpoint), the
 * encoder that turns answers into features, and the settings chosen on validation students
 * (inner steps per K). Saved as two files, `NAME.safetensors` (loadable by MetaLearner.load and
 * by PyTorch) and `NAME.education.json` beside it.
 *
 * This is the serving side's API: give it a student's answers (item ids, oldest first), get an
 * adapted model, ask for the probabilities of candidate items.
 */
import { readFileSync } from 'node:fs';
import { MamlError } from '../errors.js';
import { forward } from '../functional.js';
import { MetaLearner, AdaptedModel } from '../learner.js';
import { writeFileAtomic } from '../safetensors.js';
import { StudentEncoder, type Answer, type EncoderState } from './encoder.js';

/** What the .education.json file holds besides the encoder. */
export interface StudentModelSettings {
  /**
   * adaptation of a student with at least K answers: [[K, steps, rateScale], …], ascending K;
   * the inner rates are the meta-learned ones times rateScale (chosen on validation students)
   */
  adaptation: [number, number, number][];
  /** answers used to adapt: the most recent ones, at most this many */
  maxSupport: number;
  /** free-form: where the training data came from, the split, the training settings, baselines */
  [key: string]: unknown;
}

interface BundleFile {
  format: 'maml-native/students';
  version: 1;
  encoder: EncoderState;
  settings: StudentModelSettings;
}

/**
 * A learner with the same parameters and settings as `learner` and its inner rates times c
 * (for adaptation only: its optimizer state is fresh).
 */
export function scaleInnerRates(learner: MetaLearner, c: number): MetaLearner {
  const rates = learner.innerLr.map((r) => r * c);
  const innerLr = learner.innerLrShape === 'per-step' ? (learner.innerSteps === 0 ? rates[0]! : Array.from(rates)) : rates;
  return new MetaLearner({
    model: learner.model,
    algorithm: learner.algorithm,
    innerSteps: learner.innerSteps,
    innerLr,
    stepWeights: learner.stepWeights,
    learnInnerLr: learner.learnInnerLr,
    params: learner.params,
    seed: learner.seed,
  });
}

/** `out/students.safetensors` → `out/students.education.json` */
export function bundlePath(checkpoint: string): string {
  return checkpoint.replace(/\.safetensors$/i, '') + '.education.json';
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

/**
 * A meta-learned per-student model with its encoder and per-K adaptation settings.
 *
 * @example
 * const model = StudentModel.load('out/students.safetensors');
 * const answers = [{ item: '17', correct: 1 }, { item: '18', correct: 0 }];
 * const adapted = model.adapt(answers);                 // null for a student without answers
 * model.predict(adapted, answers, ['19', '20']);         // Float64Array of P(correct)
 */
export class StudentModel {
  readonly learner: MetaLearner;
  readonly encoder: StudentEncoder;
  readonly settings: StudentModelSettings;

  constructor(learner: MetaLearner, encoder: StudentEncoder, settings: StudentModelSettings) {
    this.learner = learner;
    this.encoder = encoder;
    this.settings = settings;
    this.#params = learner.params;
  }

  readonly #scaled = new Map<number, MetaLearner>();
  /** θ, for predictions of students without answers: forward() never conflicts with a pending async call */
  readonly #params: Float32Array;

  /** Inner steps and rate scale for a student with n answers (0 steps with none). */
  adaptationFor(n: number): { steps: number; rateScale: number } {
    let steps = 0, rateScale = 1;
    for (const [k, s, c] of this.settings.adaptation) if (n >= k) [steps, rateScale] = [s, c];
    return n === 0 ? { steps: 0, rateScale: 1 } : { steps, rateScale };
  }

  /** The meta-learner with its inner rates multiplied by c (same parameters). */
  learnerFor(c: number): MetaLearner {
    if (c === 1) return this.learner;
    let l = this.#scaled.get(c);
    if (!l) this.#scaled.set(c, (l = scaleInnerRates(this.learner, c)));
    return l;
  }

  #support(items: readonly string[], correct: readonly number[]): { x: Float32Array; y: Float32Array } {
    const x = this.encoder.encodeAnswers(items);
    const from = Math.max(0, items.length - this.settings.maxSupport);
    const d = this.encoder.width;
    return { x: x.subarray(from * d), y: Float32Array.from(correct.slice(from), (v) => (v ? 1 : 0)) };
  }

  /**
   * Adapts to many students in one native call, off the event loop. Students without answers
   * get the meta-learned model (null). Students are grouped by their number of inner steps.
   */
  async adaptManyAsync(students: readonly (readonly Answer[])[]): Promise<(AdaptedModel | null)[]> {
    const out: (AdaptedModel | null)[] = students.map(() => null);
    const groups = new Map<string, number[]>();
    students.forEach((h, i) => {
      if (h.length === 0) return;
      const a = this.adaptationFor(h.length);
      const key = `${a.steps}/${a.rateScale}`;
      let list = groups.get(key);
      if (!list) groups.set(key, (list = []));
      list.push(i);
    });
    for (const list of groups.values()) {
      const { steps, rateScale } = this.adaptationFor(students[list[0]!]!.length);
      const sets = list.map((i) => this.#support(students[i]!.map((a) => a.item), students[i]!.map((a) => a.correct)));
      const d = this.encoder.width;
      const offsets = new Int32Array(list.length + 1);
      sets.forEach((s, t) => (offsets[t + 1] = offsets[t]! + s.y.length));
      const xs = new Float32Array(offsets[list.length]! * d), ys = new Float32Array(offsets[list.length]!);
      sets.forEach((s, t) => {
        xs.set(s.x, offsets[t]! * d);
        ys.set(s.y, offsets[t]!);
      });
      const models = await this.learnerFor(rateScale).adaptBatchAsync({ tasks: list.length, supportOffsets: offsets, xs, ys }, { steps });
      list.forEach((i, t) => (out[i] = models[t]!));
    }
    return out;
  }

  /**
   * adaptManyAsync for one student, synchronously. Like MetaLearner.adapt it throws BUSY while
   * an adaptManyAsync call is running: a server uses one or the other.
   */
  adapt(history: readonly Answer[]): AdaptedModel | null {
    if (history.length === 0) return null;
    const s = this.#support(history.map((a) => a.item), history.map((a) => a.correct));
    const { steps, rateScale } = this.adaptationFor(history.length);
    return this.learnerFor(rateScale).adapt(s, { steps });
  }

  /**
   * P(correct) for each candidate item, for a student with answers `history` and an adapted
   * model (null: the meta-learned model, for a student without answers).
   */
  predict(adapted: AdaptedModel | null, history: readonly Answer[], candidates: readonly string[]): Float64Array {
    const x = this.encoder.encodeCandidates(history.map((a) => a.item), candidates);
    const z = adapted ? adapted.predict(x) : forward(this.learner.model, this.#params, x);
    return Float64Array.from(z, sigmoid);
  }

  /** Writes `path` (the learner) and `bundlePath(path)` (encoder and settings), atomically. */
  save(path: string): void {
    this.learner.save(path);
    const file: BundleFile = { format: 'maml-native/students', version: 1, encoder: this.encoder.state, settings: this.settings };
    writeFileAtomic(bundlePath(path), new TextEncoder().encode(JSON.stringify(file)));
  }

  static load(path: string): StudentModel {
    const learner = MetaLearner.load(path);
    const side = bundlePath(path);
    let file: BundleFile;
    try {
      file = JSON.parse(readFileSync(side, 'utf8')) as BundleFile;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new MamlError('IO_ERROR', `${side} is missing: a student model is ${path} plus this file (written by 'maml-native train students')`, { cause: err });
      if (err instanceof SyntaxError) throw new MamlError('CORRUPT_FILE', `${side}: not valid JSON: ${err.message}`, { cause: err });
      throw new MamlError('IO_ERROR', `cannot read ${side}: ${(err as Error).message}`, { cause: err });
    }
    if (file?.format !== 'maml-native/students' || file.version !== 1 || !file.encoder || !Array.isArray(file.settings?.adaptation))
      throw new MamlError('CORRUPT_FILE', `${side}: not a maml-native student model (format 'maml-native/students', version 1)`);
    const encoder = new StudentEncoder(file.encoder);
    if (learner.model.layers[0] !== encoder.width)
      throw new MamlError('CORRUPT_FILE', `${side}: the encoder makes ${encoder.width} features but ${path} takes ${learner.model.layers[0]}`);
    return new StudentModel(learner, encoder, file.settings);
  }
}
