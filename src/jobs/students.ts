/**
 * The education commands (issue #5):
 *
 *   maml-native train students [--csv FILE] [--out FILE] [--plot FILE] [--json] [options]
 *   maml-native eval students --checkpoint FILE [--csv FILE] [--plot FILE] [--json]
                                        the table again for a saved model (plot default: FILE.eval.svg)
 *
 * `train` simulates students (or loads an ASSISTments-style CSV), meta-trains the per-student
 * model, fits the baselines, evaluates everything on held-out students, prints the table,
 * writes the checkpoint (NAME.safetensors + NAME.education.json) and an SVG of AUC against K.
 * `eval` reloads a checkpoint and evaluates it again, on its own data or on another CSV.
 * Progress goes to stderr; the table to stdout; with --json the last line of stdout is one
 * JSON object with the settings, the seconds taken and the results.
 */
import { parseArgs } from 'node:util';
import { ensureDirFor, intOption, UsageError } from '../cli-args.js';
import { ALGORITHMS, type Algorithm } from '../inner.js';
import { setThreads } from '../native.js';
import { renderChart, renderFigure, type ChartSpec } from '../plot.js';
import { createProgress } from '../progress.js';
import { writeFileAtomic } from '../safetensors.js';
import {
  evaluateStudents,
  formatEvaluation,
  loadStudentData,
  METHOD_LABELS,
  qualityBar,
  STUDENT_DEFAULTS,
  trainStudents,
  type DataSource,
  type StudentData,
  type StudentEvaluation,
  type StudentTrainOptions,
} from '../education/experiment.js';
import { StudentModel } from '../education/model.js';

export const STUDENTS_USAGE = `  maml-native train students [options]  per-student models: simulated students (or --csv), baselines, evaluation
  maml-native eval students --checkpoint FILE [--csv FILE] [--plot FILE] [--json]
                                        the table again for a saved model (plot default: FILE.eval.svg)

Options of train students:
  --csv FILE         an ASSISTments-style CSV (user_id, problem_id, skill_id, correct, order_id)
                     instead of the built-in simulator
  --keep-scaffolding keep rows with original = 0 (dropped by default)
  --encoding E       latin1 (default) or utf8
  --students N       simulated students (default 8000)
  --learning G       simulated ability gain per practised answer (default 0)
  --iterations N     meta-steps (default ${STUDENT_DEFAULTS.iterations})
  --algorithm A      ${ALGORITHMS.join(' | ')} (default ${STUDENT_DEFAULTS.algorithm})
  --hidden W,W       hidden layer widths (default none: a logistic model over the features)
  --seed N           seed of the simulator, the split and the training (default 1)
  --threads N        native worker threads (default: all cores)
  --out FILE         checkpoint to write (default out/students.safetensors, plus .education.json)
  --plot FILE        SVG of AUC against K and the training curve (default out/students.svg)
  --json             end with one JSON line of results on stdout
  --quiet            no progress bars
`;


function usageError(err: unknown): number {
  process.stderr.write(`maml-native: ${(err as Error).message}\n\nUsage:\n${STUDENTS_USAGE}`);
  return 2;
}

const log = (line: string) => process.stderr.write(`${line}\n`);

async function load(source: DataSource, progress: boolean): Promise<StudentData> {
  if (source.kind === 'simulator') return loadStudentData(source);
  const bar = createProgress({ total: 1000, label: 'load csv', enabled: progress });
  const data = await loadStudentData(source, (_rows, bytes, total) => bar.update(Math.min(1000, Math.round((1000 * bytes) / Math.max(1, total)))));
  bar.finish();
  const s = data.loadStats!;
  log(`${source.file}: ${s.rows} rows → ${s.interactions} answers in ${s.seconds.toFixed(1)} s (${s.scaffoldingDropped} scaffolding rows dropped, ${s.multiSkillRows} multi-skill rows merged, ${s.emptySkill} answers without a skill)`);
  return data;
}

function aucChart(ev: StudentEvaluation, title: string): ChartSpec {
  const methods = [...new Set(ev.rows.map((r) => r.method))];
  return {
    title,
    xLabel: 'K (answers seen)',
    yLabel: 'AUC on the following answers',
    series: methods.map((m) => {
      const rows = ev.rows.filter((r) => r.method === m);
      return { name: METHOD_LABELS[m], x: rows.map((r) => r.k), y: rows.map((r) => r.auc.value), ...(m === 'truth' || m === 'bayes' ? { style: 'dashed' as const } : {}) };
    }),
  };
}

function report(ev: StudentEvaluation, json: boolean, extra: Record<string, unknown>): void {
  process.stdout.write(`${formatEvaluation(ev)}\n`);
  const bar = qualityBar(ev);
  if (bar.some((b) => b.check.includes('bayes'))) {
    process.stdout.write('\nquality bar (AUC differences, paired bootstrap 95% CI):\n');
    for (const b of bar)
      process.stdout.write(`  K=${b.k}: ${b.check.padEnd(34)} ${b.holds ? 'holds' : 'FAILS'}  (${b.by >= 0 ? '+' : ''}${b.by.toFixed(4)} [${b.ci[0].toFixed(4)}, ${b.ci[1].toFixed(4)}])\n`);
  }
  if (json) process.stdout.write(`${JSON.stringify({ ...extra, evaluation: ev, qualityBar: bar })}\n`);
}

export async function trainStudentsCommand(argv: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        csv: { type: 'string' },
        'keep-scaffolding': { type: 'boolean', default: false },
        encoding: { type: 'string' },
        students: { type: 'string' },
        learning: { type: 'string' },
        iterations: { type: 'string' },
        algorithm: { type: 'string' },
        hidden: { type: 'string' },
        seed: { type: 'string' },
        threads: { type: 'string' },
        out: { type: 'string' },
        plot: { type: 'string' },
        json: { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    return usageError(err);
  }
  let opts: StudentTrainOptions, source: DataSource;
  try {
    const algorithm = (values.algorithm ?? STUDENT_DEFAULTS.algorithm) as Algorithm;
    if (!ALGORITHMS.includes(algorithm)) throw new UsageError(`--algorithm must be one of ${ALGORITHMS.join(', ')}, got '${algorithm}'`);
    const hidden = values.hidden === undefined || values.hidden === '' ? [] : values.hidden.split(',').map((w) => intOption(w, 'hidden', 0, 1));
    const seed = intOption(values.seed, 'seed', STUDENT_DEFAULTS.seed, 0);
    if (values.encoding !== undefined && values.encoding !== 'latin1' && values.encoding !== 'utf8')
      throw new UsageError(`--encoding must be latin1 or utf8, got '${values.encoding}'`);
    const learning = values.learning === undefined ? 0 : Number(values.learning);
    if (!Number.isFinite(learning)) throw new UsageError(`--learning must be a number, got '${values.learning}'`);
    if (values.csv !== undefined && (values.students !== undefined || values.learning !== undefined))
      throw new UsageError('--students and --learning configure the simulator; they do not apply with --csv');
    source = values.csv !== undefined
      ? { kind: 'csv', file: values.csv, ...(values['keep-scaffolding'] ? { keepScaffolding: true } : {}), ...(values.encoding ? { encoding: values.encoding as 'latin1' | 'utf8' } : {}) }
      : { kind: 'simulator', config: { seed, ...(values.students !== undefined ? { students: intOption(values.students, 'students', 8000, 10) } : {}), ...(learning ? { learningRate: learning } : {}) } };
    if (values.threads !== undefined) setThreads(intOption(values.threads, 'threads', 1, 1));
    opts = {
      ...STUDENT_DEFAULTS,
      split: { ...STUDENT_DEFAULTS.split, seed },
      iterations: intOption(values.iterations, 'iterations', STUDENT_DEFAULTS.iterations, 1),
      algorithm,
      hidden,
      seed,
      progress: !values.quiet,
    };
  } catch (err) {
    if (err instanceof UsageError) return usageError(err);
    throw err;
  }
  const out = values.out ?? 'out/students.safetensors';
  const plot = values.plot ?? 'out/students.svg';
  ensureDirFor(out);
  ensureDirFor(plot);
  const t0 = performance.now();
  const data = await load(source, opts.progress);
  const trained = trainStudents(data, opts, log);
  trained.model.save(out);
  log(`checkpoint saved to ${out} (and ${out.replace(/\.safetensors$/i, '')}.education.json)`);
  const ev = evaluateStudents(data, trained.model, opts, log);
  const panels: ChartSpec[] = [
    aucChart(ev, `AUC against K (${ev.testStudents} held-out students)`),
    { title: 'Meta-training loss (query log-loss after adaptation)', xLabel: 'iteration', yLabel: 'loss', series: [{ name: opts.algorithm, x: trained.curve.x, y: trained.curve.y }] },
  ];
  writeFileAtomic(plot, new TextEncoder().encode(renderFigure(panels, { title: `maml-native: per-student models, ${source.kind === 'csv' ? source.file : 'simulated students'}` })));
  log(`plot written to ${plot}`);
  const seconds = (performance.now() - t0) / 1000;
  log(`done in ${seconds.toFixed(1)} s`);
  const { progress: _p, ...settings } = opts;
  report(ev, values.json === true, { command: 'train students', source, settings, adaptation: trained.model.settings.adaptation, checkpoint: out, plot, seconds, trainSeconds: trained.seconds, ...(data.loadStats ? { loadStats: data.loadStats } : {}) });
  return 0;
}

export async function evalStudentsCommand(argv: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        checkpoint: { type: 'string' },
        csv: { type: 'string' },
        'keep-scaffolding': { type: 'boolean', default: false },
        encoding: { type: 'string' },
        plot: { type: 'string' },
        threads: { type: 'string' },
        json: { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
    if (values.checkpoint === undefined) throw new UsageError('eval students needs --checkpoint FILE');
    if (values.encoding !== undefined && values.encoding !== 'latin1' && values.encoding !== 'utf8')
      throw new UsageError(`--encoding must be latin1 or utf8, got '${values.encoding}'`);
    if (values.threads !== undefined) setThreads(intOption(values.threads, 'threads', 1, 1));
  } catch (err) {
    return usageError(err);
  }
  const t0 = performance.now();
  const model = StudentModel.load(values.checkpoint);
  const s = model.settings as Record<string, unknown>;
  const training = (s.training ?? {}) as Partial<StudentTrainOptions>;
  const opts: StudentTrainOptions = {
    ...STUDENT_DEFAULTS,
    ...(Array.isArray(s.ks) ? { ks: s.ks as number[] } : {}),
    ...(typeof s.queryMax === 'number' ? { queryMax: s.queryMax } : {}),
    ...(s.split ? { split: s.split as StudentTrainOptions['split'] } : {}),
    seed: training.seed ?? STUDENT_DEFAULTS.seed,
    progress: !values.quiet,
  };
  const source: DataSource =
    values.csv !== undefined
      ? { kind: 'csv', file: values.csv, ...(values['keep-scaffolding'] ? { keepScaffolding: true } : {}), ...(values.encoding ? { encoding: values.encoding as 'latin1' | 'utf8' } : {}) }
      : ((s.source as DataSource | undefined) ?? { kind: 'simulator' });
  const data = await load(source, opts.progress);
  const ev = evaluateStudents(data, model, opts, log);
  const plot = values.plot ?? `${values.checkpoint.replace(/\.safetensors$/i, '')}.eval.svg`;
  ensureDirFor(plot);
  writeFileAtomic(plot, new TextEncoder().encode(renderChart(aucChart(ev, `AUC against K (${ev.testStudents} held-out students)`))));
  log(`plot written to ${plot}`);
  const seconds = (performance.now() - t0) / 1000;
  report(ev, values.json === true, { command: 'eval students', checkpoint: values.checkpoint, source, plot, seconds });
  return 0;
}
