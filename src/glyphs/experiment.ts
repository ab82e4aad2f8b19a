/**
 * Training and evaluating few-shot learners on the glyph benchmark: the metric learners
 * (FewShotLearner: protonet, matching, relation) and the gradient-based ones (MetaLearner with
 * an N-way softmax head: maml, fomaml, reptile), all with the same MLP body
 * 784-256-128-64-64 (Finn et al.'s Omniglot MLP, without its batch normalization).
 *
 * Inner loops follow the MAML paper's Omniglot settings: 5-way, one inner step at α = 0.4,
 * meta-batch 32; 20-way, five steps at α = 0.1, meta-batch 16; adaptation at test time takes
 * `testSteps` steps, by default as many as in training (more steps at α = 0.4 lowered the
 * validation accuracy of a 5-way 1-shot MAML model from 80% after 1 step to 57% after 3).
 * Prototypical and Matching Networks train on 20-way episodes whatever the test setting (Snell
 * et al. trained on more ways than they tested: 20-way 1-shot training gave 91.9% at 5-way
 * 1-shot on validation characters after 2,000 steps here, 5-way training 81.2% after 1,000);
 * Relation Networks on 5-way episodes; all three on 1-shot episodes (a protonet trained
 * 20-way 5-shot scored 97.8% at 5-way 5-shot on validation characters, the 1-shot one 97.7%).
 * One model of each then serves every test setting.
 * Reptile, as in Nichol et al.'s Omniglot runs, trains on episodes with 10 shots per class
 * (5 inner steps at α = 0.1, Adam at 0.002 on θ − θ_S) and adapts with 30 steps at test time. A checkpoint is the learner's safetensors file plus
 * `NAME.glyphs.json` (algorithm, ways, shots, test steps, dataset options, time taken).
 */
import { existsSync, readFileSync } from 'node:fs';
import { MamlError } from '../errors.js';
import { MetaLearner } from '../learner.js';
import { FewShotLearner } from '../fewshot/learner.js';
import { createProgress } from '../progress.js';
import { writeFileAtomic } from '../safetensors.js';
import { fewShotSampler, type SampledEpisodes } from '../fewshot/sampler.js';
import { meanCi95 } from '../fewshot/baselines.js';
import type { GlyphDataset, GlyphDatasetOptions } from './dataset.js';

export type GlyphAlgorithm = 'protonet' | 'matching' | 'relation' | 'maml' | 'fomaml' | 'reptile';
/** The learners the glyph benchmark trains: the metric-based ones and the MAML family. */
export const GLYPH_ALGORITHMS: readonly GlyphAlgorithm[] = ['protonet', 'matching', 'relation', 'maml', 'fomaml', 'reptile'];
export const METRIC_ALGORITHMS: readonly GlyphAlgorithm[] = ['protonet', 'matching', 'relation'];
const METRIC = new Set<GlyphAlgorithm>(METRIC_ALGORITHMS);

/** Hidden widths of the MLP body shared by every learner and the pre-trained baseline. */
export const GLYPH_HIDDEN = [256, 128, 64, 64];

/** Options of trainGlyphs: the learner, its episodes and its training schedule. */
export interface GlyphTrainOptions {
  algorithm: GlyphAlgorithm;
  ways: number;
  shots: number;
  /** classes per training episode (default: ways; metric learners train on more, as Snell et al.) */
  trainWays: number;
  /** support examples per class in training episodes (default: shots; Reptile trains on more, as its paper) */
  trainShots: number;
  /** query examples per class in training episodes */
  queries: number;
  iterations: number;
  /** episodes per meta-step */
  metaBatch: number;
  /** Adam's rate */
  lr: number;
  /** gradient-based learners: inner rate and steps while training, steps when adapting at test time */
  innerLr: number;
  innerSteps: number;
  testSteps: number;
  seed: number;
  progress: boolean;
  /** relation: hidden widths of the relation module [2·64, …hidden, 1] (default: FewShotLearner's) */
  relationHidden?: number[];
}

/** The defaults of one algorithm at one (ways, shots). */
export function glyphDefaults(algorithm: GlyphAlgorithm, ways: number, shots: number): GlyphTrainOptions {
  const base = { algorithm, ways, shots, trainWays: ways, trainShots: shots, queries: 5, lr: 1e-3, seed: 1, progress: true };
  // Relation Networks' MSE on one-hot targets collapsed to the constant prediction 0 with
  // 20-way training episodes (relation module hidden width 8 or 64 alike), so they train on
  // 5-way episodes. They learn slowly (5-way 1-shot: 59.5% on test characters after 2,000
  // steps, 79.2% on validation characters after 6,000).
  if (algorithm === 'relation') return { ...base, trainWays: 5, trainShots: 1, iterations: 6000, metaBatch: 16, innerLr: 0, innerSteps: 0, testSteps: 0 };
  if (METRIC.has(algorithm)) return { ...base, trainWays: 20, trainShots: 1, iterations: 2000, metaBatch: 16, innerLr: 0, innerSteps: 0, testSteps: 0 };
  if (algorithm === 'reptile') return { ...base, trainShots: 10, queries: 1, lr: 2e-3, iterations: ways <= 5 ? 2000 : 600, metaBatch: 16, innerLr: 0.1, innerSteps: 5, testSteps: 30 };
  // FOMAML's training diverged on 5-shot episodes (5-way: training loss rising, 36.6% at
  // 5-way 5-shot on test characters; 43.1% on validation ones with 5 steps at α = 0.1), so it
  // trains on 1-shot episodes and adapts with K shots at test time. At 20-way its training
  // loss stayed at ln 20 with one step at α = 0.4 and barely moved with five at α = 0.1 (the
  // inner loop changed the 20-way predictions too little for the first-order meta-gradient to
  // carry a signal); five steps at α = 0.4 learned steadily (validation characters, 1,500 steps:
  // training loss 2.73 → 1.44, 52.3% at 20-way 1-shot, 73.2% at 20-way 5-shot).
  const fo = algorithm === 'fomaml' ? { trainShots: 1 } : {};
  return ways <= 5
    ? { ...base, ...fo, iterations: 3000, metaBatch: 32, innerLr: 0.4, innerSteps: 1, testSteps: 1 }
    : { ...base, ...fo, iterations: shots > 1 && algorithm !== 'fomaml' ? 800 : 2000, metaBatch: 16, innerLr: algorithm === 'fomaml' ? 0.4 : 0.1, innerSteps: 5, testSteps: 5 };
}

/** A trained learner of either family, with what evaluation needs to know. */
export interface GlyphModel {
  algorithm: GlyphAlgorithm;
  ways: number;
  shots: number;
  testSteps: number;
  learner: MetaLearner | FewShotLearner;
}

export interface GlyphTrainResult {
  model: GlyphModel;
  seconds: number;
  /** mean training loss and accuracy per 1% of iterations */
  curve: { x: number[]; loss: number[]; accuracy: number[] };
}

function createLearner(o: GlyphTrainOptions, inputDim: number): MetaLearner | FewShotLearner {
  const optimizer = { kind: 'adam' as const, lr: o.lr };
  if (METRIC.has(o.algorithm))
    return new FewShotLearner({
      algorithm: o.algorithm as 'protonet' | 'matching' | 'relation',
      embedding: { layers: [inputDim, ...GLYPH_HIDDEN], activation: 'relu' },
      ...(o.algorithm === 'relation' && o.relationHidden ? { relation: { layers: [2 * GLYPH_HIDDEN.at(-1)!, ...o.relationHidden, 1], activation: 'relu' as const } } : {}),
      optimizer,
      seed: o.seed,
    });
  return new MetaLearner({
    model: { layers: [inputDim, ...GLYPH_HIDDEN, o.ways], activation: 'relu', loss: 'cross-entropy' },
    algorithm: o.algorithm as 'maml' | 'fomaml' | 'reptile',
    innerLr: o.innerLr,
    innerSteps: o.innerSteps,
    optimizer,
    seed: o.seed,
  });
}

/** Per-episode query accuracy of adapted MetaLearner models: argmax of the logits. */
function metaAccuracies(learner: MetaLearner, e: SampledEpisodes, steps: number): Float64Array {
  const models = learner.adaptBatch({ tasks: e.tasks, support: e.support, xs: e.xs, ys: e.ys }, { steps });
  const d = e.xq.length / (e.tasks * e.query);
  const acc = new Float64Array(e.tasks);
  for (let t = 0; t < e.tasks; t++) {
    const logits = models[t]!.predict(e.xq.subarray(t * e.query * d, (t + 1) * e.query * d));
    let right = 0;
    for (let q = 0; q < e.query; q++) {
      let best = 0;
      for (let j = 1; j < e.ways; j++) if (logits[q * e.ways + j]! > logits[q * e.ways + best]!) best = j;
      if (best === e.yq[t * e.query + q]) right++;
    }
    acc[t] = right / e.query;
  }
  return acc;
}

/** Per-episode query accuracies of a trained model. */
export function episodeAccuracies(model: GlyphModel, e: SampledEpisodes): Float64Array {
  if (model.learner instanceof FewShotLearner) return Float64Array.from(model.learner.evaluate(e).accuracies);
  return metaAccuracies(model.learner, e, model.testSteps);
}

/** Meta-trains one learner on the training classes of the dataset. */
export function trainGlyphs(data: GlyphDataset, o: GlyphTrainOptions, log: (line: string) => void = () => {}): GlyphTrainResult {
  if (!METRIC.has(o.algorithm) && o.trainWays !== o.ways)
    throw new MamlError('INVALID_ARGUMENT', `trainGlyphs: ${o.algorithm} trains an N-way head, so its training episodes must be ${o.ways}-way, got trainWays = ${o.trainWays}`);
  const learner = createLearner(o, data.inputDim);
  const sampler = fewShotSampler({ x: data.x, labels: data.labels, inputDim: data.inputDim, ways: o.trainWays, shots: o.trainShots, queries: o.queries, seed: o.seed, classes: data.split.train });
  const inner = METRIC.has(o.algorithm) ? '' : `, ${o.innerSteps} inner step(s) at ${o.innerLr} (${o.testSteps} at test)`;
  log(`meta-training ${o.algorithm} on glyphs: ${o.ways}-way ${o.shots}-shot${o.trainShots !== o.shots || o.trainWays !== o.ways ? ` (training episodes ${o.trainWays}-way ${o.trainShots}-shot)` : ''}, ${o.queries} queries per class, MLP ${[data.inputDim, ...GLYPH_HIDDEN].join('-')}${inner}, meta-batch ${o.metaBatch}, Adam ${o.lr}, ${o.iterations} iterations, ${data.split.train.length} training classes`);
  const progress = createProgress({ total: o.iterations, label: `train ${o.algorithm}`, enabled: o.progress });
  const every = Math.max(1, Math.floor(o.iterations / 100));
  const curve = { x: [] as number[], loss: [] as number[], accuracy: [] as number[] };
  let wl = 0, wa = 0, wn = 0, ema = NaN;
  const t0 = performance.now();
  for (let i = 1; i <= o.iterations; i++) {
    const e = sampler.sample(o.metaBatch);
    let loss: number, accuracy = NaN;
    if (learner instanceof FewShotLearner) ({ loss, accuracy } = learner.step(e));
    else ({ loss } = learner.step(e));
    wl += loss;
    wa += accuracy;
    wn++;
    ema = Number.isNaN(ema) ? loss : 0.98 * ema + 0.02 * loss;
    if (i % every === 0 || i === o.iterations) {
      curve.x.push(i);
      curve.loss.push(wl / wn);
      curve.accuracy.push(wa / wn);
      wl = wa = wn = 0;
    }
    progress.update(i, { loss: ema });
  }
  progress.finish({ loss: ema });
  const seconds = (performance.now() - t0) / 1000;
  return { model: { algorithm: o.algorithm, ways: o.ways, shots: o.shots, testSteps: o.testSteps, learner }, seconds, curve };
}

/** Options of evaluateGlyphs: the test episodes' shape, count and seed. */
export interface GlyphEvalOptions {
  ways: number;
  shots: number;
  /** query examples per class (default 15, or what the samples per class allow) */
  queries?: number;
  episodes: number;
  /** seeds the test episodes: the same seed gives every method the same episodes */
  seed: number;
  /** which classes: 'test' (default) or 'val' */
  part?: 'test' | 'val';
}

/** Runs `fn` on `episodes` test episodes, 50 at a time, and returns the per-episode accuracies. */
export function overEpisodes(data: GlyphDataset, o: GlyphEvalOptions, fn: (e: SampledEpisodes) => ArrayLike<number>): Float64Array {
  const queries = o.queries ?? Math.min(15, data.samples - o.shots);
  const sampler = fewShotSampler({ x: data.x, labels: data.labels, inputDim: data.inputDim, ways: o.ways, shots: o.shots, queries, seed: o.seed, classes: data.split[o.part ?? 'test'] });
  const out = new Float64Array(o.episodes);
  for (let done = 0; done < o.episodes; ) {
    const n = Math.min(50, o.episodes - done);
    out.set(fn(sampler.sample(n)), done);
    done += n;
  }
  return out;
}

/** Accuracy (mean over episodes) and its 95% confidence half-width. */
export function evaluateGlyphs(data: GlyphDataset, model: GlyphModel, o: GlyphEvalOptions): { accuracy: number; ci95: number; episodes: number } {
  if (model.learner instanceof MetaLearner && o.ways !== model.ways)
    throw new MamlError('INVALID_ARGUMENT', `evaluateGlyphs: this ${model.algorithm} model has a ${model.ways}-way head; it cannot classify ${o.ways}-way episodes`);
  const { mean, ci95 } = meanCi95(overEpisodes(data, o, (e) => episodeAccuracies(model, e)));
  return { accuracy: mean, ci95, episodes: o.episodes };
}

/** What NAME.glyphs.json holds beside the learner's checkpoint. */
export interface GlyphCheckpointInfo {
  algorithm: GlyphAlgorithm;
  ways: number;
  shots: number;
  testSteps: number;
  dataset: GlyphDatasetOptions;
  training: Omit<GlyphTrainOptions, 'progress'>;
  trainSeconds: number;
}

export function sidecarPath(checkpoint: string): string {
  return `${checkpoint.replace(/\.safetensors$/i, '')}.glyphs.json`;
}

/** Saves the learner and its NAME.glyphs.json. */
export function saveGlyphModel(path: string, model: GlyphModel, info: GlyphCheckpointInfo): void {
  model.learner.save(path);
  writeFileAtomic(sidecarPath(path), new TextEncoder().encode(`${JSON.stringify(info, null, 2)}\n`));
}

/** Loads a learner saved by saveGlyphModel, with its settings. */
export function loadGlyphModel(path: string): { model: GlyphModel; info: GlyphCheckpointInfo } {
  const side = sidecarPath(path);
  if (!existsSync(side)) throw new MamlError('IO_ERROR', `loadGlyphModel: ${side} is missing (it is written beside the checkpoint by train glyphs)`);
  let info: GlyphCheckpointInfo;
  try {
    info = JSON.parse(readFileSync(side, 'utf8'));
  } catch (err) {
    throw new MamlError('CORRUPT_FILE', `loadGlyphModel: ${side} is not valid JSON`, { cause: err });
  }
  if (typeof info !== 'object' || info === null || Array.isArray(info))
    throw new MamlError('CORRUPT_FILE', `loadGlyphModel: ${side} does not hold an object`);
  if (!GLYPH_ALGORITHMS.includes(info.algorithm)) throw new MamlError('CORRUPT_FILE', `loadGlyphModel: ${side} names an unknown algorithm '${info.algorithm}'`);
  for (const [k, min] of [['ways', 1], ['shots', 1], ['testSteps', 0]] as const)
    if (!Number.isSafeInteger(info[k]) || info[k] < min)
      throw new MamlError('CORRUPT_FILE', `loadGlyphModel: ${side}: '${k}' must be an integer ≥ ${min}, got ${JSON.stringify(info[k])}`);
  for (const k of ['dataset', 'training'] as const)
    if (typeof info[k] !== 'object' || info[k] === null || Array.isArray(info[k]))
      throw new MamlError('CORRUPT_FILE', `loadGlyphModel: ${side}: '${k}' must be an object, got ${JSON.stringify(info[k])}`);
  const learner = METRIC.has(info.algorithm) ? FewShotLearner.load(path) : MetaLearner.load(path);
  return { model: { algorithm: info.algorithm, ways: info.ways, shots: info.shots, testSteps: info.testSteps, learner }, info };
}
