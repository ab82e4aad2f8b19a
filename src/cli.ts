/**
 * The `maml-native` command line.
 *
 *   maml-native train sine [--iterations N] [--json] [--out FILE] [--plot FILE] [options]
 *   maml-native train students | eval students ...   (src/jobs/students.ts)
 *   maml-native info
 *
 * Progress goes to stderr (a bar on a terminal, plain lines otherwise); with --json the last
 * line of stdout is one JSON object with the settings, the seconds taken and the results.
 */
import { parseArgs } from 'node:util';
import { ensureDirFor, intOption, numberOption, UsageError } from './cli-args.js';
import { MamlError } from './errors.js';
import { ALGORITHMS, type Algorithm } from './inner.js';
import { runSineJob, SINE_DEFAULTS, type SineJobOptions } from './jobs/sine.js';
import { backendInfo } from './loader.js';
import { setThreads } from './native.js';
import { evalStudentsCommand, trainStudentsCommand, STUDENTS_USAGE } from './jobs/students.js';
import { evalGlyphsCommand, trainGlyphsCommand, GLYPHS_USAGE } from './jobs/glyphs.js';

const USAGE = `Usage:
  maml-native train sine [options]    meta-train on the sinusoid benchmark of the MAML paper
  maml-native info                    native backends, threads and CUDA devices (JSON)
${STUDENTS_USAGE}
${GLYPHS_USAGE}
Options of train sine:
  --iterations N     meta-steps (default ${SINE_DEFAULTS.iterations})
  --algorithm A      ${ALGORITHMS.join(' | ')} (default maml)
  --inner-steps S    inner steps while training (default 1)
  --inner-lr A       inner learning rate (default 0.01)
  --meta-batch B     tasks per meta-step (default 25)
  --lr L             Adam learning rate (default 0.001)
  --shots K          support points per task (default 10)
  --seed N           seed of initialization and tasks (default 1)
  --threads N        native worker threads (default: all cores)
  --out FILE         checkpoint to write (default out/sine.safetensors)
  --plot FILE        SVG of the training curve and one adapted fit (default out/sine.svg)
  --json             end with one JSON line of results on stdout
  --quiet            no progress bar
`;

export { UsageError };

function trainSine(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      iterations: { type: 'string' },
      algorithm: { type: 'string' },
      'inner-steps': { type: 'string' },
      'inner-lr': { type: 'string' },
      'meta-batch': { type: 'string' },
      lr: { type: 'string' },
      shots: { type: 'string' },
      seed: { type: 'string' },
      threads: { type: 'string' },
      out: { type: 'string' },
      plot: { type: 'string' },
      json: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const algorithm = (values.algorithm ?? 'maml') as Algorithm;
  if (!ALGORITHMS.includes(algorithm)) throw new UsageError(`--algorithm must be one of ${ALGORITHMS.join(', ')}, got '${algorithm}'`);
  if (values.threads !== undefined) setThreads(intOption(values.threads, 'threads', 1, 1));
  const opts: SineJobOptions = {
    ...SINE_DEFAULTS,
    iterations: intOption(values.iterations, 'iterations', SINE_DEFAULTS.iterations, 1),
    algorithm,
    innerSteps: intOption(values['inner-steps'], 'inner-steps', SINE_DEFAULTS.innerSteps, 0),
    innerLr: numberOption(values['inner-lr'], 'inner-lr', SINE_DEFAULTS.innerLr),
    metaBatch: intOption(values['meta-batch'], 'meta-batch', SINE_DEFAULTS.metaBatch, 1),
    metaLr: numberOption(values.lr, 'lr', SINE_DEFAULTS.metaLr),
    shots: intOption(values.shots, 'shots', SINE_DEFAULTS.shots, 1),
    seed: intOption(values.seed, 'seed', SINE_DEFAULTS.seed, 0),
    out: values.out ?? 'out/sine.safetensors',
    plot: values.plot ?? 'out/sine.svg',
    progress: !values.quiet,
  };
  ensureDirFor(opts.out!);
  ensureDirFor(opts.plot!);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const result = runSineJob(opts, log);
  log(`done in ${result.seconds.toFixed(1)} s (${result.stepsPerSecond.toFixed(0)} meta-steps/s)`);
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}

/** Runs the CLI; resolves with the process exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    const [command, target, ...rest] = argv;
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    }
    if (command === 'info') {
      process.stdout.write(`${JSON.stringify(backendInfo(), null, 2)}\n`);
      return 0;
    }
    if (command === 'train' && target === 'sine') return trainSine(rest);
    if (command === 'train' && target === 'students') return await trainStudentsCommand(rest);
    if (command === 'eval' && target === 'students') return await evalStudentsCommand(rest);
    if (command === 'train' && target === 'glyphs') return trainGlyphsCommand(rest);
    if (command === 'eval' && target === 'glyphs') return evalGlyphsCommand(rest);
    throw new UsageError(`unknown command '${[command, target].filter(Boolean).join(' ')}'`);
  } catch (err) {
    if (err instanceof UsageError || (err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`maml-native: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof MamlError) {
      process.stderr.write(`maml-native: error ${err.code}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
