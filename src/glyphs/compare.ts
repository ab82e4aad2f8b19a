/**
 * The comparison of issue #6 on the glyph benchmark: every learner and both baselines at
 * 5-way 1-shot, 5-way 5-shot, 20-way 1-shot and 20-way 5-shot, each on the same held-out test
 * episodes (one sampler seed per setting), accuracy with a 95% confidence interval.
 *
 * Learners are read from `DIR/<algorithm>-<training ways>way-<shots>shot.safetensors` when a checkpoint
 * trained on the same dataset options is there (as `train glyphs` writes them), and trained
 * with the defaults and saved there otherwise. The pre-trained baseline's body is cached as
 * `DIR/pretrained.safetensors` the same way.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProgress } from '../progress.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../safetensors.js';
import { fineTuneEvaluate, meanCi95, nearestNeighbour, pretrainClassifier, type PretrainedBody, type PretrainOptions } from '../fewshot/baselines.js';
import type { GlyphDataset, GlyphDatasetOptions } from './dataset.js';
import {
  episodeAccuracies,
  GLYPH_HIDDEN,
  glyphDefaults,
  loadGlyphModel,
  overEpisodes,
  saveGlyphModel,
  sidecarPath,
  trainGlyphs,
  type GlyphAlgorithm,
  type GlyphModel,
} from './experiment.js';

/** The [ways, shots] settings of the comparison: 5-way and 20-way, 1-shot and 5-shot. */
export const GLYPH_SETTINGS: [number, number][] = [[5, 1], [5, 5], [20, 1], [20, 5]];

/** The pre-trained baseline's settings in the comparison (the learners' MLP body). */
export const PRETRAIN_DEFAULTS: PretrainOptions = { hidden: GLYPH_HIDDEN, activation: 'relu', iterations: 3000, batch: 512, lr: 1e-3, seed: 1 };

/** Options of runComparison: where the models are kept, which settings and methods, and the test episodes. */
export interface CompareOptions {
  dir: string;
  settings: [number, number][];
  algorithms: GlyphAlgorithm[];
  baselines: boolean;
  episodes: number;
  /** seeds the test episodes (setting i uses seed + i) */
  seed: number;
  /** training iterations for learners trained here (default: each algorithm's default) */
  iterations?: number;
  pretrain: PretrainOptions;
  /** the options the dataset was built with (recorded with checkpoints, compared when reusing them) */
  dataset: GlyphDatasetOptions;
  progress: boolean;
}

/** One method's accuracy (± 95% half-width) at one setting, as runComparison reports it. */
export interface CompareRow {
  method: string;
  ways: number;
  shots: number;
  accuracy: number;
  ci95: number;
  episodes: number;
  /** seconds of training (meta-training, or the pre-training shared by all settings) */
  trainSeconds: number;
  evalSeconds: number;
}

export const BASELINE_LABELS = { nn: 'nearest neighbour (raw pixels)', finetune: 'pre-trained + fine-tuned head' };

function sameOptions(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function getLearner(data: GlyphDataset, o: CompareOptions, alg: GlyphAlgorithm, testWays: number, testShots: number, log: (l: string) => void): { model: GlyphModel; seconds: number } {
  // Checkpoints are named by their training episodes, so that learners trained the same way for
  // several settings are trained once: metric learners (one model for every setting), FOMAML
  // (1-shot training) and Reptile (10-shot training) serve both shot counts.
  const d = glyphDefaults(alg, testWays, testShots);
  const path = join(o.dir, `${alg}-${d.trainWays}way-${d.trainShots}shot.safetensors`);
  if (existsSync(path) && existsSync(sidecarPath(path))) {
    const { model, info } = loadGlyphModel(path);
    if (sameOptions(info.dataset, o.dataset)) {
      log(`${alg} ${d.trainWays}-way ${d.trainShots}-shot: using ${path} (trained in ${info.trainSeconds.toFixed(0)} s)`);
      return { model, seconds: info.trainSeconds };
    }
    log(`${alg} ${d.trainWays}-way ${d.trainShots}-shot: ${path} was trained on other dataset options; training again`);
  }
  const training = { ...d, ...(o.iterations ? { iterations: o.iterations } : {}), progress: o.progress };
  const r = trainGlyphs(data, training, log);
  const { progress: _p, ...settings } = training;
  saveGlyphModel(path, r.model, { algorithm: alg, ways: d.ways, shots: d.trainShots, testSteps: training.testSteps, dataset: o.dataset, training: settings, trainSeconds: r.seconds });
  log(`${alg} ${d.trainWays}-way ${d.trainShots}-shot: trained in ${r.seconds.toFixed(0)} s, saved to ${path}`);
  return { model: r.model, seconds: r.seconds };
}

function getPretrained(data: GlyphDataset, o: CompareOptions, log: (l: string) => void): PretrainedBody {
  const path = join(o.dir, 'pretrained.safetensors');
  const settings = JSON.stringify({ pretrain: o.pretrain, dataset: o.dataset });
  if (existsSync(path)) {
    const f = readSafetensorsFile(path);
    if (f.metadata.settings === settings && f.tensors.params) {
      log(`pre-trained baseline: using ${path}`);
      return { spec: { layers: [data.inputDim, ...o.pretrain.hidden], activation: o.pretrain.activation, loss: 'mse' }, params: f.tensors.params.data as Float32Array, seconds: Number(f.metadata.seconds), finalLoss: Number(f.metadata.finalLoss) };
    }
  }
  log(`pre-training a softmax classifier over the ${data.split.train.length} training classes: MLP ${[data.inputDim, ...o.pretrain.hidden].join('-')}-${data.split.train.length}, ${o.pretrain.iterations} iterations of batch ${o.pretrain.batch}, Adam ${o.pretrain.lr}`);
  const bar = createProgress({ total: o.pretrain.iterations, label: 'pre-train', enabled: o.progress });
  const body = pretrainClassifier(data.x, data.labels, data.inputDim, data.split.train, o.pretrain, (i, loss) => bar.update(i, { loss }));
  bar.finish({ loss: body.finalLoss });
  writeSafetensorsFile(path, { params: { dtype: 'F32', shape: [body.params.length], data: body.params } }, { settings, seconds: String(body.seconds), finalLoss: String(body.finalLoss) });
  log(`pre-trained in ${body.seconds.toFixed(0)} s (final training loss ${body.finalLoss.toFixed(3)}), saved to ${path}`);
  return body;
}

/** Runs the comparison; returns one row per (method, setting). */
export function runComparison(data: GlyphDataset, o: CompareOptions, log: (l: string) => void = () => {}): CompareRow[] {
  const rows: CompareRow[] = [];
  const body = o.baselines ? getPretrained(data, o, log) : null;
  o.settings.forEach(([ways, shots], i) => {
    const ev = { ways, shots, episodes: o.episodes, seed: o.seed + i };
    const run = (method: string, trainSeconds: number, fn: Parameters<typeof overEpisodes>[2]) => {
      const t0 = performance.now();
      const { mean, ci95 } = meanCi95(overEpisodes(data, ev, fn));
      const evalSeconds = (performance.now() - t0) / 1000;
      rows.push({ method, ways, shots, accuracy: mean, ci95, episodes: o.episodes, trainSeconds, evalSeconds });
      log(`${ways}-way ${shots}-shot  ${method.padEnd(32)} ${(100 * mean).toFixed(1)}% ± ${(100 * ci95).toFixed(1)}  (${o.episodes} episodes, ${evalSeconds.toFixed(1)} s)`);
    };
    for (const alg of o.algorithms) {
      const { model, seconds } = getLearner(data, o, alg, ways, shots, log);
      run(alg, seconds, (e) => episodeAccuracies(model, e));
    }
    if (o.baselines) {
      run(BASELINE_LABELS.nn, 0, (e) => nearestNeighbour(e));
      run(BASELINE_LABELS.finetune, body!.seconds, (e) => fineTuneEvaluate(body!, e));
    }
  });
  return rows;
}

const pct = (r: CompareRow) => `${(100 * r.accuracy).toFixed(1)} ± ${(100 * r.ci95).toFixed(1)}`;

/** The comparison as a markdown table: one row per method, one column per setting, plus training times. */
export function formatComparison(rows: CompareRow[]): string {
  const settings = [...new Map(rows.map((r) => [`${r.ways}x${r.shots}`, [r.ways, r.shots] as const])).values()];
  const methods = [...new Set(rows.map((r) => r.method))];
  const head = `| method | ${settings.map(([w, k]) => `${w}-way ${k}-shot`).join(' | ')} | training seconds (${settings.map(([w, k]) => `${w}/${k}`).join(', ')}) |`;
  const sep = `| --- | ${settings.map(() => '---:').join(' | ')} | ---: |`;
  const lines = methods.map((m) => {
    const cells = settings.map(([w, k]) => {
      const r = rows.find((x) => x.method === m && x.ways === w && x.shots === k);
      return r ? pct(r) : '';
    });
    const secs = settings.map(([w, k]) => rows.find((x) => x.method === m && x.ways === w && x.shots === k)?.trainSeconds);
    const time = m === BASELINE_LABELS.nn ? '0' : m === BASELINE_LABELS.finetune ? `${secs.find((s) => s !== undefined)?.toFixed(0)} (once)` : secs.map((s) => (s === undefined ? '' : s.toFixed(0))).join(', ');
    return `| ${m} | ${cells.join(' | ')} | ${time} |`;
  });
  return [head, sep, ...lines].join('\n');
}

/** Reads back a comparison written as JSON (for the README and tests). */
export function readComparison(file: string): CompareRow[] {
  return JSON.parse(readFileSync(file, 'utf8')).rows as CompareRow[];
}
