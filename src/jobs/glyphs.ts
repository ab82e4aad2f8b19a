/**
 * The few-shot glyph commands (issue #6):
 *
 *   maml-native train glyphs --algorithm A --ways N --shots K [--iterations N] [--out FILE] [--seed S] ...
 *   maml-native eval glyphs --checkpoint FILE [--ways N] [--shots K] [--episodes 1000]
 *   maml-native eval glyphs --compare [--dir DIR] [--table FILE] [--settings 5x1,5x5,20x1,20x5] ...
 *   maml-native eval glyphs --baselines   (the comparison with the baselines only)
 *
 * The dataset is rendered from the stroke data of the npm package hanzi-writer-data (a
 * devDependency, loaded only here). Progress goes to stderr; results to stdout; with --json
 * the last line of stdout is one JSON object with the settings, the seconds taken and the
 * results.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureDirFor, intOption, numberOption, UsageError } from '../cli-args.js';
import { setThreads } from '../native.js';
import { writeFileAtomic } from '../safetensors.js';
import { glyphDataset, type GlyphDataset, type GlyphDatasetOptions } from '../glyphs/dataset.js';
import { evaluateGlyphs, GLYPH_ALGORITHMS, glyphDefaults, loadGlyphModel, saveGlyphModel, trainGlyphs, type GlyphAlgorithm } from '../glyphs/experiment.js';
import { formatComparison, GLYPH_SETTINGS, PRETRAIN_DEFAULTS, runComparison } from '../glyphs/compare.js';

export const GLYPHS_USAGE = `  maml-native train glyphs --algorithm A --ways N --shots K [options]
                                        few-shot classification of rendered characters (Omniglot-style)
  maml-native eval glyphs --checkpoint FILE [--ways N] [--shots K] [--episodes 1000] [--json]
  maml-native eval glyphs --compare [--dir DIR] [--table FILE] [--settings 5x1,5x5,20x1,20x5] [--json]
  maml-native eval glyphs --baselines   nearest neighbour and pre-trained + fine-tuned baselines only

Options of train glyphs (defaults depend on the algorithm; see README):
  --algorithm A      ${GLYPH_ALGORITHMS.join(' | ')} (default protonet)
  --ways N --shots K classes per episode and examples per class (default 5, 1)
  --iterations N     meta-steps      --meta-batch B  episodes per meta-step    --lr L  Adam's rate
  --queries Q        query examples per class in training episodes (default 5; reptile 1)
  --train-shots K    support examples per class in training episodes (default: --shots; reptile 10)
  --train-ways N     classes per training episode (default: protonet, matching 20; relation 5;
                     maml, fomaml, reptile: --ways, which their N-way head needs)
  --inner-lr A --inner-steps S --test-steps S   maml, fomaml, reptile: the inner loop
  --episodes N       test episodes evaluated after training (default 1000; 0 skips)
  --out FILE         checkpoint (default out/glyphs-ALGORITHM-Nway-Kshot.safetensors, plus .glyphs.json)
Options of eval glyphs --compare / --baselines:
  --dir DIR          where learners' checkpoints are read, or written when missing (default out/glyphs)
  --table FILE       the markdown table (default out/glyphs-compare.md; JSON beside it)
  --algorithms A,B   learners to include (default all six)    --iterations N  for learners trained here
  --no-baselines     leave the two baselines out
  --pretrain-iterations N   the pre-trained baseline's iterations (default ${PRETRAIN_DEFAULTS.iterations})
Dataset options (all glyph commands; checkpoints remember them):
  --train-chars N --val-chars N --test-chars N   characters per part (default 1200, 100, 423)
  --samples N        distorted samples per character (default 20)
  --data-seed N      seeds the characters, the split and the distortions (default 1)
Common: --seed N (training / test episodes), --threads N, --json, --quiet
`;

const log = (line: string) => process.stderr.write(`${line}\n`);

function usageError(err: unknown): number {
  process.stderr.write(`maml-native: ${(err as Error).message}\n\nUsage:\n${GLYPHS_USAGE}`);
  return 2;
}

const DATA_OPTIONS = {
  'train-chars': { type: 'string' },
  'val-chars': { type: 'string' },
  'test-chars': { type: 'string' },
  samples: { type: 'string' },
  'data-seed': { type: 'string' },
  seed: { type: 'string' },
  threads: { type: 'string' },
  json: { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
} as const;

function datasetOptions(v: Record<string, string | boolean | undefined>): GlyphDatasetOptions {
  const o: GlyphDatasetOptions = {};
  if (v['train-chars'] !== undefined) o.trainCharacters = intOption(v['train-chars'] as string, 'train-chars', 1200, 0);
  if (v['val-chars'] !== undefined) o.valCharacters = intOption(v['val-chars'] as string, 'val-chars', 100, 0);
  if (v['test-chars'] !== undefined) o.testCharacters = intOption(v['test-chars'] as string, 'test-chars', 423, 0);
  if (v.samples !== undefined) o.samples = intOption(v.samples as string, 'samples', 20, 2);
  o.seed = intOption(v['data-seed'] as string | undefined, 'data-seed', 1, 0);
  return o;
}

function buildDataset(o: GlyphDatasetOptions): GlyphDataset {
  const data = glyphDataset(o);
  log(`glyphs: ${data.classes.length} classes (${data.classes.length / 4} characters × 4 rotations) × ${data.samples} samples of ${data.size}×${data.size}; train/val/test classes ${data.split.train.length}/${data.split.val.length}/${data.split.test.length}; loaded in ${data.loadSeconds.toFixed(1)} s, rendered in ${data.renderSeconds.toFixed(1)} s`);
  return data;
}

function algorithmOption(v: string | undefined): GlyphAlgorithm {
  const a = (v ?? 'protonet') as GlyphAlgorithm;
  if (!GLYPH_ALGORITHMS.includes(a)) throw new UsageError(`--algorithm must be one of ${GLYPH_ALGORITHMS.join(', ')}, got '${v}'`);
  return a;
}

const pct = (a: number, ci: number) => `${(100 * a).toFixed(1)}% ± ${(100 * ci).toFixed(1)}`;

export function trainGlyphsCommand(argv: string[]): number {
  let values, opts, dataOpts: GlyphDatasetOptions, episodes: number;
  try {
    values = parseArgs({
      args: argv,
      options: {
        ...DATA_OPTIONS,
        algorithm: { type: 'string' },
        ways: { type: 'string' },
        shots: { type: 'string' },
        queries: { type: 'string' },
        'train-shots': { type: 'string' },
        'train-ways': { type: 'string' },
        iterations: { type: 'string' },
        'meta-batch': { type: 'string' },
        lr: { type: 'string' },
        'inner-lr': { type: 'string' },
        'inner-steps': { type: 'string' },
        'test-steps': { type: 'string' },
        episodes: { type: 'string' },
        out: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
    const algorithm = algorithmOption(values.algorithm);
    const ways = intOption(values.ways, 'ways', 5, 2);
    const shots = intOption(values.shots, 'shots', 1, 1);
    const d = glyphDefaults(algorithm, ways, shots);
    opts = {
      ...d,
      trainWays: intOption(values['train-ways'], 'train-ways', d.trainWays, 2),
      trainShots: intOption(values['train-shots'], 'train-shots', d.trainShots, 1),
      queries: intOption(values.queries, 'queries', d.queries, 1),
      iterations: intOption(values.iterations, 'iterations', d.iterations, 1),
      metaBatch: intOption(values['meta-batch'], 'meta-batch', d.metaBatch, 1),
      lr: numberOption(values.lr, 'lr', d.lr),
      innerLr: numberOption(values['inner-lr'], 'inner-lr', d.innerLr),
      innerSteps: intOption(values['inner-steps'], 'inner-steps', d.innerSteps, 0),
      testSteps: intOption(values['test-steps'], 'test-steps', d.testSteps, 0),
      seed: intOption(values.seed, 'seed', d.seed, 0),
      progress: !values.quiet,
    };
    dataOpts = datasetOptions(values);
    episodes = intOption(values.episodes, 'episodes', 1000, 0);
    if (values.threads !== undefined) setThreads(intOption(values.threads, 'threads', 1, 1));
  } catch (err) {
    if (err instanceof UsageError || (err instanceof Error && String((err as { code?: string }).code).startsWith('ERR_PARSE_ARGS'))) return usageError(err);
    throw err;
  }
  const out = values.out ?? `out/glyphs-${opts.algorithm}-${opts.ways}way-${opts.shots}shot.safetensors`;
  ensureDirFor(out);
  const t0 = performance.now();
  const data = buildDataset(dataOpts);
  const r = trainGlyphs(data, opts, log);
  const { progress: _p, ...settings } = opts;
  saveGlyphModel(out, r.model, { algorithm: opts.algorithm, ways: opts.ways, shots: opts.shots, testSteps: opts.testSteps, dataset: dataOpts, training: settings, trainSeconds: r.seconds });
  log(`trained in ${r.seconds.toFixed(1)} s (${(opts.iterations / r.seconds).toFixed(1)} meta-steps/s); checkpoint saved to ${out}`);
  let test: ReturnType<typeof evaluateGlyphs> | undefined;
  if (episodes > 0) {
    test = evaluateGlyphs(data, r.model, { ways: opts.ways, shots: opts.shots, episodes, seed: opts.seed + 1_000_003 });
    process.stdout.write(`${opts.algorithm} ${opts.ways}-way ${opts.shots}-shot on held-out characters: ${pct(test.accuracy, test.ci95)} (95% CI, ${episodes} episodes)\n`);
  }
  const seconds = (performance.now() - t0) / 1000;
  log(`done in ${seconds.toFixed(1)} s`);
  if (values.json) process.stdout.write(`${JSON.stringify({ command: 'train glyphs', settings, dataset: dataOpts, checkpoint: out, seconds, trainSeconds: r.seconds, finalLoss: r.curve.loss.at(-1), ...(test ? { test } : {}) })}\n`);
  return 0;
}

export function evalGlyphsCommand(argv: string[]): number {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        ...DATA_OPTIONS,
        checkpoint: { type: 'string' },
        ways: { type: 'string' },
        shots: { type: 'string' },
        episodes: { type: 'string' },
        compare: { type: 'boolean', default: false },
        baselines: { type: 'boolean', default: false },
        'no-baselines': { type: 'boolean', default: false },
        dir: { type: 'string' },
        table: { type: 'string' },
        settings: { type: 'string' },
        algorithms: { type: 'string' },
        iterations: { type: 'string' },
        'pretrain-iterations': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
    if (values.threads !== undefined) setThreads(intOption(values.threads, 'threads', 1, 1));
    if (values.compare || values.baselines) {
      if (values.checkpoint !== undefined) throw new UsageError('--checkpoint evaluates one model; --compare and --baselines run the whole comparison');
      return compare(values, argv);
    }
    if (values.checkpoint === undefined) throw new UsageError('eval glyphs needs --checkpoint FILE, --compare or --baselines');
  } catch (err) {
    if (err instanceof UsageError || (err instanceof Error && String((err as { code?: string }).code).startsWith('ERR_PARSE_ARGS'))) return usageError(err);
    throw err;
  }
  const t0 = performance.now();
  const { model, info } = loadGlyphModel(values.checkpoint);
  let ways: number, shots: number, episodes: number, seed: number;
  try {
    ways = intOption(values.ways, 'ways', info.ways, 2);
    shots = intOption(values.shots, 'shots', info.shots, 1);
    episodes = intOption(values.episodes, 'episodes', 1000, 1);
    seed = intOption(values.seed, 'seed', info.training.seed + 1_000_003, 0);
  } catch (err) {
    return usageError(err);
  }
  const data = buildDataset(info.dataset);
  const r = evaluateGlyphs(data, model, { ways, shots, episodes, seed });
  process.stdout.write(`${info.algorithm} (trained ${info.ways}-way ${info.shots}-shot) on ${ways}-way ${shots}-shot held-out episodes: ${pct(r.accuracy, r.ci95)} (95% CI, ${episodes} episodes)\n`);
  const seconds = (performance.now() - t0) / 1000;
  if (values.json) process.stdout.write(`${JSON.stringify({ command: 'eval glyphs', checkpoint: values.checkpoint, algorithm: info.algorithm, ways, shots, seed, seconds, ...r })}\n`);
  return 0;
}

function compare(values: Record<string, string | boolean | undefined>, argv: string[]): number {
  const settings = values.settings === undefined
    ? GLYPH_SETTINGS
    : (values.settings as string).split(',').map((s) => {
        const m = /^(\d+)x(\d+)$/.exec(s.trim());
        if (!m || Number(m[1]) < 2 || Number(m[2]) < 1) throw new UsageError(`--settings must be a list like 5x1,20x5 (ways x shots), got '${values.settings}'`);
        return [Number(m[1]), Number(m[2])] as [number, number];
      });
  const algorithms = values.baselines
    ? []
    : values.algorithms === undefined
      ? [...GLYPH_ALGORITHMS]
      : (values.algorithms as string).split(',').map((a) => algorithmOption(a.trim()));
  const dataOpts = datasetOptions(values);
  const episodes = intOption(values.episodes as string | undefined, 'episodes', 1000, 1);
  const seed = intOption(values.seed as string | undefined, 'seed', 1, 0);
  const iterations = values.iterations === undefined ? undefined : intOption(values.iterations as string, 'iterations', 1, 1);
  const pretrain = { ...PRETRAIN_DEFAULTS, iterations: intOption(values['pretrain-iterations'] as string | undefined, 'pretrain-iterations', PRETRAIN_DEFAULTS.iterations, 1) };
  const dir = (values.dir as string | undefined) ?? 'out/glyphs';
  const table = (values.table as string | undefined) ?? 'out/glyphs-compare.md';
  ensureDirFor(join(dir, 'x'));
  ensureDirFor(table);
  const t0 = performance.now();
  const data = buildDataset(dataOpts);
  const rows = runComparison(data, { dir, settings, algorithms, baselines: values['no-baselines'] !== true, episodes, seed, ...(iterations ? { iterations } : {}), pretrain, dataset: dataOpts, progress: !values.quiet }, log);
  const seconds = (performance.now() - t0) / 1000;
  const md = formatComparison(rows);
  const command = `maml-native eval glyphs ${argv.join(' ')}`.trim();
  writeFileAtomic(table, new TextEncoder().encode(`${md}\n\nAccuracy on ${episodes} held-out test episodes per setting (15 queries per class), mean ± 95% CI half-width. Command: \`${command}\`; ${seconds.toFixed(0)} s in all.\n`));
  writeFileAtomic(table.replace(/\.md$/i, '') + '.json', new TextEncoder().encode(`${JSON.stringify({ command, dataset: dataOpts, episodes, seed, seconds, rows }, null, 2)}\n`));
  process.stdout.write(`${md}\n`);
  log(`table written to ${table}; done in ${seconds.toFixed(0)} s`);
  if (values.json) process.stdout.write(`${JSON.stringify({ command: 'eval glyphs --compare', dataset: dataOpts, episodes, seed, seconds, rows })}\n`);
  return 0;
}

