/**
 * The education experiment end to end: data (simulator or CSV) → split by student → encoder
 * fitted on training students → meta-training → settings chosen on validation students →
 * evaluation on test students against the baselines, with bootstrap intervals over students.
 *
 * Methods compared at each K (the first K answers of a test student are seen, the following
 * ones, at most `queryMax`, are predicted):
 *   meta     (a) the meta-learned model adapted to the K answers (inner steps chosen per K on
 *                validation students);
 *   global   (b) the same network trained on all training students' answers, not adapted;
 *   scratch  (c) the same network trained from zero on the K answers alone (rate and steps
 *                chosen per K on validation students);
 *   irt      (d) 2PL IRT: items fitted on training students, the ability by MAP from the K answers
 *                (the ability prior's spread chosen per K on validation students);
 *   bayes    (e) simulated data only: the posterior predictive under the true parameters;
 *   truth    (f) simulated data only: the true probabilities.
 */
import { MamlError } from '../errors.js';
import { MetaLearner, type AdaptedModel } from '../learner.js';
import type { Algorithm } from '../inner.js';
import { initParams } from '../model.js';
import { Rng } from '../rng.js';
import { createProgress } from '../progress.js';
import { loadAssistmentsCsv, type LoadStats } from './assistments.js';
import { bayesPredictor } from './bayes.js';
import { StudentEncoder } from './encoder.js';
import { mapAbility } from './irt.js';
import { splitStudents, studentHistories, type ResponseLog, type StudentHistory } from './log.js';
import { bootstrapMetrics, type Estimate } from './metrics.js';
import { scaleInnerRates, StudentModel, type StudentModelSettings } from './model.js';
import { simulateStudents, type SimulatorConfig, type SimulatorTruth } from './simulator.js';
import { cutStudents, encodeStudents, studentsWithMoreThan, studentTaskSampler, type EncodedStudents, type StudentBatch } from './tasks.js';

export type DataSource =
  | { kind: 'simulator'; config?: Partial<SimulatorConfig> }
  | { kind: 'csv'; file: string; keepScaffolding?: boolean; encoding?: 'latin1' | 'utf8' };

export interface StudentData {
  source: DataSource;
  log: ResponseLog;
  truth?: SimulatorTruth;
  loadStats?: LoadStats;
}

/** Loads or simulates the answers. */
export async function loadStudentData(source: DataSource, onProgress?: (rows: number, bytes: number, total: number) => void): Promise<StudentData> {
  if (source.kind === 'simulator') {
    const { log, truth } = simulateStudents(source.config ?? {});
    return { source, log, truth };
  }
  const log = await loadAssistmentsCsv(source.file, { keepScaffolding: source.keepScaffolding, encoding: source.encoding, onProgress });
  return { source, log, loadStats: log.stats };
}

export interface StudentTrainOptions {
  /** student split (fractions of train and validation; the rest is test) and its seed */
  split: { seed: number; train: number; validation: number };
  /** K values evaluated */
  ks: number[];
  /** answers predicted after the first K (at most) */
  queryMax: number;
  /** hidden widths of the network (default none: a logistic model over the features) */
  hidden: number[];
  algorithm: Algorithm;
  innerLr: number;
  innerSteps: number;
  metaBatch: number;
  iterations: number;
  metaLr: number;
  /** K values of meta-training tasks */
  trainKs: number[];
  trainQueryMax: number;
  /** Adam steps of the global model (b) */
  globalIterations: number;
  /** inner-step counts and multipliers of the learned inner rates tried per K on validation students */
  stepsGrid: number[];
  rateScaleGrid: number[];
  /** from-scratch (c): rates and step counts tried per K on validation students */
  scratchLrGrid: number[];
  scratchStepsGrid: number[];
  /** IRT (d): prior standard deviations of the ability tried per K on validation students */
  irtPriorSdGrid: number[];
  maxSkills: number;
  seed: number;
  /** bootstrap resamples of test students */
  bootstrap: number;
  /** importance samples of the Bayes-optimal predictor (e) */
  bayesSamples: number;
  progress: boolean;
}

export const STUDENT_DEFAULTS: StudentTrainOptions = {
  split: { seed: 1, train: 0.7, validation: 0.1 },
  ks: [0, 1, 3, 5, 10, 20],
  queryMax: 50,
  hidden: [],
  algorithm: 'meta-sgd',
  innerLr: 0.3,
  innerSteps: 8,
  metaBatch: 256,
  iterations: 2000,
  metaLr: 0.003,
  trainKs: [3, 5, 10, 20],
  trainQueryMax: 50,
  globalIterations: 1500,
  stepsGrid: [1, 2, 3, 5, 8, 12, 20, 30],
  rateScaleGrid: [0.25, 0.35, 0.5, 0.75, 1, 1.5, 2, 3],
  scratchLrGrid: [0.03, 0.1, 0.3, 1, 3],
  scratchStepsGrid: [1, 3, 10, 30, 100],
  irtPriorSdGrid: [0.05, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1, 1.5],
  maxSkills: 128,
  seed: 1,
  bootstrap: 200,
  bayesSamples: 4096,
  progress: true,
};

export interface StudentSplit {
  histories: StudentHistory[];
  groups: Uint8Array;
  train: StudentHistory[];
  validation: StudentHistory[];
  test: StudentHistory[];
}

/** Histories split by student; only students with at least one answer. */
export function splitData(log: ResponseLog, split: StudentTrainOptions['split']): StudentSplit {
  const histories = studentHistories(log).filter((h) => h.rows.length > 0);
  const groups = splitStudents(log.studentIds, split);
  return {
    histories,
    groups,
    train: histories.filter((h) => groups[h.student] === 0),
    validation: histories.filter((h) => groups[h.student] === 1),
    test: histories.filter((h) => groups[h.student] === 2),
  };
}

export interface TrainedStudents {
  model: StudentModel;
  /** (b): parameters of the global model */
  globalParams: Float32Array;
  /** (c): [K, rate, steps] per K */
  scratch: [number, number, number][];
  curve: { x: number[]; y: number[] };
  seconds: number;
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));
type Log = (line: string) => void;

/** Probabilities of the query rows of `batch` under per-task models (or one shared). */
function queryProbabilities(batch: StudentBatch, models: (AdaptedModel | null)[], shared: (x: Float32Array) => Float32Array, d: number): Float64Array {
  const out = new Float64Array(batch.queryOffsets[batch.tasks]!);
  const all = models.every((m) => m === null) ? shared(batch.xq) : null;
  for (let t = 0; t < batch.tasks; t++) {
    const a = batch.queryOffsets[t]!, b = batch.queryOffsets[t + 1]!;
    const z = all ? all.subarray(a, b) : (models[t] ? models[t]!.predict(batch.xq.subarray(a * d, b * d)) : shared(batch.xq.subarray(a * d, b * d)));
    for (let i = 0; i < b - a; i++) out[a + i] = sigmoid(z[i]!);
  }
  return out;
}

function meanLogLoss(p: Float64Array, y: Float32Array): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) {
    const q = Math.min(1 - 1e-7, Math.max(1e-7, p[i]!));
    s -= y[i]! > 0.5 ? Math.log(q) : Math.log(1 - q);
  }
  return s / p.length;
}

/** (d): per task, the MAP ability from the support answers, then σ(a·θ − b) for the query rows. */
function irtProbabilities(log: ResponseLog, enc: EncodedStudents, batch: StudentBatch, encoder: StudentEncoder, priorSd: number): Float64Array {
  const out = new Float64Array(batch.yq.length);
  const param = (row: number) => encoder.itemParams(log.itemIds[log.item[row]!]!);
  for (let t = 0; t < batch.tasks; t++) {
    const base = enc.offsets[batch.students[t]!]!;
    const k = batch.supportOffsets[t + 1]! - batch.supportOffsets[t]!;
    const a = new Float64Array(k), b = new Float64Array(k), y = new Float64Array(k);
    for (let i = 0; i < k; i++) {
      const row = enc.rows[base + i]!;
      const p = param(row);
      a[i] = p.a;
      b[i] = p.b;
      y[i] = log.correct[row]!;
    }
    const theta = mapAbility(a, b, y, k, priorSd);
    for (let q = batch.queryOffsets[t]!; q < batch.queryOffsets[t + 1]!; q++) {
      const p = param(enc.rows[batch.queryRows[q]!]!);
      out[q] = sigmoid(p.a * theta - p.b);
    }
  }
  return out;
}

function layersFor(d: number, hidden: number[]): number[] {
  return [d, ...hidden, 1];
}

/**
 * Meta-trains the per-student model and fits the baselines, using training students (and
 * validation students for the settings chosen per K). Test students are not read.
 *
 * @example
 * const data = await loadStudentData({ kind: 'simulator', config: { students: 8000 } });
 * const trained = trainStudents(data, { ...STUDENT_DEFAULTS, progress: false });
 * console.log(formatEvaluation(evaluateStudents(data, trained.model, STUDENT_DEFAULTS)));
 */
export function trainStudents(data: StudentData, opts: StudentTrainOptions, log: Log = () => {}): TrainedStudents {
  const t0 = performance.now();
  const split = splitData(data.log, opts.split);
  log(`students: ${split.train.length} train, ${split.validation.length} validation, ${split.test.length} test; ${data.log.correct.length} answers, ${data.log.itemIds.length} items, ${data.log.skillIds.length} skills`);
  if (split.train.length < 10 || split.validation.length < 1)
    throw new MamlError('INVALID_ARGUMENT', `trainStudents: ${split.train.length} training and ${split.validation.length} validation students are too few (at least 10 and 1; students are split ${opts.split.train}/${opts.split.validation}/rest by a hash of their id)`);
  const encoder = StudentEncoder.fit(data.log, split.train, { maxSkills: opts.maxSkills });
  const encTrain = encodeStudents(data.log, split.train, encoder);
  const encVal = encodeStudents(data.log, split.validation, encoder);
  const d = encoder.width;
  const layers = layersFor(d, opts.hidden);
  const modelSpec = { layers, activation: 'tanh' as const, loss: 'binary-cross-entropy' as const };

  // (a) meta-training
  const learner = new MetaLearner({
    model: modelSpec,
    algorithm: opts.algorithm,
    innerLr: opts.innerLr,
    innerSteps: opts.innerSteps,
    optimizer: { kind: 'adam', lr: opts.metaLr },
    seed: opts.seed,
  });
  log(`meta-training ${opts.algorithm}: network ${layers.join('-')}, ${opts.innerSteps} inner steps at ${opts.innerLr}, meta-batch ${opts.metaBatch}, Adam ${opts.metaLr}, ${opts.iterations} iterations, K in {${opts.trainKs.join(', ')}}`);
  const rng = new Rng(opts.seed);
  const sampler = studentTaskSampler(encTrain, { ks: opts.trainKs, queryMax: opts.trainQueryMax, rng });
  const progress = createProgress({ total: opts.iterations, label: 'meta-train', enabled: opts.progress });
  const curve = { x: [] as number[], y: [] as number[] };
  const every = Math.max(1, Math.floor(opts.iterations / 200));
  let ema = NaN, win = 0, winN = 0;
  for (let i = 1; i <= opts.iterations; i++) {
    const { loss } = learner.step(sampler.sample(opts.metaBatch));
    ema = Number.isNaN(ema) ? loss : 0.98 * ema + 0.02 * loss;
    win += loss;
    winN++;
    if (i % every === 0 || i === opts.iterations) {
      curve.x.push(i);
      curve.y.push(win / winN);
      win = winN = 0;
    }
    progress.update(i, { loss: ema });
  }
  progress.finish({ loss: ema });

  // inner steps and rate scale per K, on validation students
  const adaptation: [number, number, number][] = [];
  const selection: Record<string, number> = {};
  const scaled = opts.rateScaleGrid.map((c) => ({ c, l: scaleInnerRates(learner, c) }));
  for (const k of opts.ks.filter((k) => k > 0)) {
    const which = studentsWithMoreThan(encVal, k);
    if (which.length === 0) continue;
    const batch = cutStudents(encVal, which, new Int32Array(which.length).fill(k), opts.queryMax);
    let best = Infinity, choice: [number, number, number] = [k, opts.innerSteps, 1];
    for (const { c, l } of scaled)
      for (const steps of opts.stepsGrid) {
        const ll = meanLogLoss(queryProbabilities(batch, l.adaptBatch(batch, { steps }), (x) => l.predict(x), d), batch.yq);
        selection[`K${k}/steps${steps}/scale${c}`] = ll;
        if (ll < best) [best, choice] = [ll, [k, steps, c]];
      }
    adaptation.push(choice);
  }
  log(`adaptation chosen on validation students: ${adaptation.map(([k, s, c]) => `K=${k}: ${s} steps at ${c}× the rates`).join(', ')}`);

  // (b) global model: every answer of every training student, no adaptation
  const global = new MetaLearner({ model: modelSpec, algorithm: 'maml', innerSteps: 0, optimizer: { kind: 'adam', lr: opts.metaLr }, seed: opts.seed });
  const all = studentsWithMoreThan(encTrain, 0);
  const gProgress = createProgress({ total: opts.globalIterations, label: 'global model', enabled: opts.progress });
  for (let i = 1; i <= opts.globalIterations; i++) {
    const which = Int32Array.from({ length: opts.metaBatch }, () => all[rng.int(all.length)]!);
    const b = cutStudents(encTrain, which, new Int32Array(which.length), 1_000_000);
    const { loss } = global.step(b);
    gProgress.update(i, { loss });
  }
  gProgress.finish();

  // (c) from scratch: zero parameters, plain gradient descent on the K answers
  const zeros = new Float32Array(initParams(modelSpec, { seed: opts.seed }).length);
  if (opts.hidden.length > 0) zeros.set(initParams(modelSpec, { seed: opts.seed })); // a hidden layer needs symmetry breaking
  const scratch: [number, number, number][] = [];
  for (const k of opts.ks.filter((k) => k > 0)) {
    const which = studentsWithMoreThan(encVal, k);
    if (which.length === 0) continue;
    const batch = cutStudents(encVal, which, new Int32Array(which.length).fill(k), opts.queryMax);
    let best = Infinity, choice: [number, number, number] = [k, opts.scratchLrGrid[0]!, opts.scratchStepsGrid[0]!];
    for (const lr of opts.scratchLrGrid) {
      const l = new MetaLearner({ model: modelSpec, algorithm: 'maml', innerLr: lr, innerSteps: 1, params: zeros });
      for (const steps of opts.scratchStepsGrid) {
        const ll = meanLogLoss(queryProbabilities(batch, l.adaptBatch(batch, { steps }), (x) => l.predict(x), d), batch.yq);
        if (ll < best) [best, choice] = [ll, [k, lr, steps]];
      }
    }
    scratch.push(choice);
  }
  log(`from-scratch rate and steps chosen on validation students: ${scratch.map(([k, lr, s]) => `K=${k}: ${lr}×${s}`).join(', ')}`);

  // (d) IRT: the prior of the ability, on validation students
  const irtPriorSd: [number, number][] = [];
  for (const k of opts.ks.filter((k) => k > 0)) {
    const which = studentsWithMoreThan(encVal, k);
    if (which.length === 0) continue;
    const batch = cutStudents(encVal, which, new Int32Array(which.length).fill(k), opts.queryMax);
    let best = Infinity, choice = 1;
    for (const sd of opts.irtPriorSdGrid) {
      const ll = meanLogLoss(irtProbabilities(data.log, encVal, batch, encoder, sd), batch.yq);
      if (ll < best) [best, choice] = [ll, sd];
    }
    irtPriorSd.push([k, choice]);
  }
  log(`IRT ability prior sd chosen on validation students: ${irtPriorSd.map(([k, sd]) => `K=${k}: ${sd}`).join(', ')}`);

  const settings: StudentModelSettings = {
    adaptation,
    maxSupport: 200,
    source: data.source,
    split: opts.split,
    ks: opts.ks,
    queryMax: opts.queryMax,
    training: { algorithm: opts.algorithm, innerLr: opts.innerLr, innerSteps: opts.innerSteps, metaBatch: opts.metaBatch, iterations: opts.iterations, metaLr: opts.metaLr, trainKs: opts.trainKs, trainQueryMax: opts.trainQueryMax, hidden: opts.hidden, seed: opts.seed },
    validationLogLoss: selection,
    baselines: { globalParams: Array.from(global.params), scratch, zeroInit: Array.from(zeros), irtPriorSd },
  };
  return { model: new StudentModel(learner, encoder, settings), globalParams: global.params, scratch, curve, seconds: (performance.now() - t0) / 1000 };
}

export const METHODS = ['meta', 'global', 'scratch', 'irt', 'bayes', 'truth'] as const;
export type Method = (typeof METHODS)[number];
export const METHOD_LABELS: Record<Method, string> = {
  meta: '(a) meta-learned, adapted',
  global: '(b) global model',
  scratch: '(c) per-student, from scratch',
  irt: '(d) IRT 2PL, MAP ability',
  bayes: '(e) Bayes-optimal',
  truth: '(f) true probabilities',
};

export interface EvaluationRow {
  k: number;
  method: Method;
  students: number;
  predictions: number;
  auc: Estimate;
  accuracy: Estimate;
  logLoss: Estimate;
}

export interface StudentEvaluation {
  rows: EvaluationRow[];
  /** paired differences per K: `meta - bayes`, `meta - global`, … */
  differences: { k: number; pair: string; auc: Estimate; accuracy: Estimate; logLoss: Estimate }[];
  /** mean effective sample size of the Bayes-optimal predictor per K */
  bayesEss?: Record<number, number>;
  testStudents: number;
  seconds: number;
}

/** Evaluates a trained model and the baselines on the test students of `data`. */
export function evaluateStudents(data: StudentData, model: StudentModel, opts: StudentTrainOptions, log: Log = () => {}): StudentEvaluation {
  const t0 = performance.now();
  const s = model.settings as StudentModelSettings & { baselines: { globalParams: number[]; scratch: [number, number, number][]; zeroInit: number[]; irtPriorSd?: [number, number][] } };
  const split = splitData(data.log, opts.split);
  const enc = encodeStudents(data.log, split.test, model.encoder);
  const d = model.encoder.width;
  const spec = model.learner.model;
  const global = new MetaLearner({ model: spec, algorithm: 'maml', innerSteps: 0, params: Float32Array.from(s.baselines.globalParams) });
  const bayes = data.truth ? bayesPredictor(data.log, data.truth, { samples: opts.bayesSamples, seed: opts.seed + 7 }) : null;
  const methods: Method[] = data.truth ? [...METHODS] : ['meta', 'global', 'scratch', 'irt'];
  const rows: EvaluationRow[] = [];
  const differences: StudentEvaluation['differences'] = [];
  const bayesEss: Record<number, number> = {};
  const progress = createProgress({ total: opts.ks.length, label: 'evaluate', enabled: opts.progress });
  opts.ks.forEach((k, ki) => {
    const which = studentsWithMoreThan(enc, k);
    if (which.length === 0) return;
    const batch = cutStudents(enc, which, new Int32Array(which.length).fill(k), opts.queryMax);
    const preds: Partial<Record<Method, Float64Array>> = {};
    // (a)
    const { steps, rateScale } = model.adaptationFor(k);
    const adapted: (AdaptedModel | null)[] = k === 0 || steps === 0 ? [] : model.learnerFor(rateScale).adaptBatch(batch, { steps });
    preds.meta = queryProbabilities(batch, adapted, (x) => model.learner.predict(x), d);
    // (b)
    preds.global = queryProbabilities(batch, [], (x) => global.predict(x), d);
    // (c)
    const sc = s.baselines.scratch.filter(([kk]) => kk <= k).pop();
    if (k === 0 || !sc) {
      const zero = new MetaLearner({ model: spec, algorithm: 'maml', innerSteps: 0, params: Float32Array.from(s.baselines.zeroInit) });
      preds.scratch = queryProbabilities(batch, [], (x) => zero.predict(x), d);
    } else {
      const l = new MetaLearner({ model: spec, algorithm: 'maml', innerLr: sc[1], innerSteps: 1, params: Float32Array.from(s.baselines.zeroInit) });
      preds.scratch = queryProbabilities(batch, l.adaptBatch(batch, { steps: sc[2] }), (x) => l.predict(x), d);
    }
    // (d)
    const sd = (s.baselines.irtPriorSd ?? []).filter(([kk]) => kk <= k).pop()?.[1] ?? 1;
    preds.irt = irtProbabilities(data.log, enc, batch, model.encoder, sd);
    // (e), (f)
    if (bayes && data.truth) {
      const pb = new Float64Array(batch.yq.length), pt = new Float64Array(batch.yq.length);
      let ess = 0;
      for (let t = 0; t < batch.tasks; t++) {
        const h = enc.histories[batch.students[t]!]!;
        const a = batch.queryOffsets[t]!, e = batch.queryOffsets[t + 1]!;
        const qRows = Int32Array.from({ length: e - a }, (_, i) => enc.rows[batch.queryRows[a + i]!]!);
        const r = bayes.predict(h.rows, k, qRows);
        pb.set(r.p, a);
        ess += r.ess;
        for (let i = 0; i < qRows.length; i++) pt[a + i] = data.truth.probability[qRows[i]!]!;
      }
      preds.bayes = pb;
      preds.truth = pt;
      bayesEss[k] = ess / batch.tasks;
    }
    const student = new Int32Array(batch.yq.length);
    for (let t = 0; t < batch.tasks; t++) student.fill(t, batch.queryOffsets[t]!, batch.queryOffsets[t + 1]!);
    const pairs: [string, string][] = (['bayes', 'global', 'scratch', 'irt', 'truth'] as const).filter((m) => preds[m]).map((m) => ['meta', m]);
    const boot = bootstrapMetrics(preds as Record<string, Float64Array>, batch.yq, student, batch.tasks, { resamples: opts.bootstrap, seed: opts.seed + k, pairs });
    for (const m of methods) {
      const r = boot.methods[m];
      if (r) rows.push({ k, method: m, students: batch.tasks, predictions: batch.yq.length, ...r });
    }
    for (const [pair, v] of Object.entries(boot.differences)) differences.push({ k, pair, ...v });
    progress.update(ki + 1);
  });
  progress.finish();
  log(`evaluated on ${split.test.length} test students in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { rows, differences, ...(bayes ? { bayesEss } : {}), testStudents: split.test.length, seconds: (performance.now() - t0) / 1000 };
}

const f3 = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : '  —  ');

/** The evaluation as a Markdown table: one row per K and method, values with 95% intervals. */
export function formatEvaluation(ev: StudentEvaluation): string {
  const lines = ['| K | method | students | AUC [95% CI] | accuracy [95% CI] | log-loss [95% CI] |', '| ---: | --- | ---: | --- | --- | --- |'];
  for (const r of ev.rows) {
    const e = (x: Estimate) => `${f3(x.value)} [${f3(x.lo)}, ${f3(x.hi)}]`;
    lines.push(`| ${r.k} | ${METHOD_LABELS[r.method]} | ${r.students} | ${e(r.auc)} | ${e(r.accuracy)} | ${e(r.logLoss)} |`);
  }
  return lines.join('\n');
}

/** The quality bar of issue 5 at K = 5, 10, 20: meta within 0.01 AUC of bayes, above global, scratch and irt. */
export function qualityBar(ev: StudentEvaluation, ks: number[] = [5, 10, 20]): { k: number; check: string; holds: boolean; by: number; ci: [number, number] }[] {
  const out: { k: number; check: string; holds: boolean; by: number; ci: [number, number] }[] = [];
  for (const k of ks) {
    for (const d of ev.differences.filter((x) => x.k === k)) {
      const other = d.pair.split(' - ')[1]!;
      if (other === 'truth') continue;
      if (other === 'bayes') out.push({ k, check: 'AUC(meta) >= AUC(bayes) - 0.01', holds: d.auc.value >= -0.01, by: d.auc.value, ci: [d.auc.lo, d.auc.hi] });
      else out.push({ k, check: `AUC(meta) > AUC(${other})`, holds: d.auc.value > 0, by: d.auc.value, ci: [d.auc.lo, d.auc.hi] });
    }
  }
  return out;
}
