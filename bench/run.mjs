#!/usr/bin/env node
// The benchmark harness of issue 3 (`npm run bench`): tinybench suites over the compiled library
// (lib/), each case beside its baselines measured in the same run, written to bench/RESULTS.md
// and bench/results.json.
//
//   node bench/run.mjs [--quick | --smoke] [--full] [--only CASE[,CASE…]] [--out DIR]
//                      [--no-pytorch] [--no-tfjs] [--full-iterations N] [--python PATH]
//   node bench/run.mjs --render bench/results.json     (re-write RESULTS.md from saved results)
//
//   --quick   shorter time budgets (the default profile gives each row about 2 s)
//   --smoke   tiny networks and batches, a few samples each, no PyTorch: what `npm test` runs
//   --full    also the paper's 70,000-step sinusoid run through the CLI (minutes), and PyTorch's
//   --only    the cases named, by id or part of one: maml/b25-s1, fomaml, wide-b32-s5, adapt,
//             adapt-throughput, memory, sine-70k, …
//   --out     where RESULTS.md and results.json go (default bench/)
//   --python  the interpreter with torch (else $MAML_BENCH_PYTHON, python3, /usr/bin/python3)
//   MAML_NATIVE_PATH=<addon.node> measures another build of the addon (the library's loader).
//
// Cases: {maml,fomaml,reptile}/{b25-s1,b25-s5,b100-s5,wide-b32-s5} (metaGradient and
// MetaLearner.step against PyTorch 1 thread / all threads, TF.js cpu and wasm for MAML B = 25,
// plain JavaScript), adapt, adapt-throughput, memory (peak RSS for S = 1, 10, 50 at B = 100,
// beside PyTorch's), sine-70k. Baselines run as child processes (bench/baselines/), each first
// proving it computes the same loss and meta-gradient as ours (bench/lib/meta.mjs).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem, type } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backendInfo, getThreads } from '../lib/index.js';
import { BaselineChild } from './lib/client.mjs';
import { metaCases, runMetaCase } from './lib/meta.mjs';
import { runAdapt, runAdaptThroughput } from './lib/adapt.mjs';
import { renderReport } from './lib/report.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
    'no-pytorch': { type: 'boolean', default: false },
    'no-tfjs': { type: 'boolean', default: false },
    'full-iterations': { type: 'string' },
    python: { type: 'string' },
    render: { type: 'string' },
  },
});

if (args.render) {
  // re-write RESULTS.md from a saved results.json (after a change to the report's layout)
  const saved = JSON.parse(readFileSync(resolve(args.render), 'utf8'));
  const dest = join(resolve(args.out ?? dirname(resolve(args.render))), 'RESULTS.md');
  writeFileSync(dest, renderReport(saved));
  process.stderr.write(`wrote ${dest}\n`);
  process.exit(0);
}

// Time budgets per row (ms) and sizes. `slow` applies to a baseline whose check call took
// longer than slowMs: a few samples instead of a time budget.
const PROFILES = {
  default: {
    ours: { time: 2000, iterations: 20, warmup: 300 },
    base: { time: 2000, iterations: 5, warmup: 300 },
    slow: { time: 0, iterations: 3, warmup: 0, warmupIterations: 1 },
    slowMs: 400, batches: 8,
    adapt: { shots: 10, steps: 10, users: 2000, repeats: 9 },
    memory: { tasks: 100, steps: [1, 10, 50], iterations: 3, layers: [1, 40, 40, 1] },
    fullIterations: 70000,
  },
  quick: {
    ours: { time: 500, iterations: 10, warmup: 100 },
    base: { time: 500, iterations: 3, warmup: 100 },
    slow: { time: 0, iterations: 2, warmup: 0, warmupIterations: 1 },
    slowMs: 200, batches: 4,
    adapt: { shots: 10, steps: 10, users: 1000, repeats: 5 },
    memory: { tasks: 100, steps: [1, 10, 50], iterations: 2, layers: [1, 40, 40, 1] },
    fullIterations: 70000,
  },
  smoke: {
    ours: { time: 20, iterations: 3, warmup: 0, warmupIterations: 1 },
    base: { time: 20, iterations: 2, warmup: 0, warmupIterations: 1 },
    slow: { time: 0, iterations: 2, warmup: 0, warmupIterations: 1 },
    slowMs: 100, batches: 2,
    adapt: { shots: 5, steps: 2, users: 16, repeats: 2 },
    memory: { tasks: 4, steps: [1, 2], iterations: 1, layers: [1, 8, 8, 1] },
    fullIterations: 20,
  },
};
const profileName = args.smoke ? 'smoke' : args.quick ? 'quick' : 'default';
const profile = PROFILES[profileName];
const fullIterations = args['full-iterations'] ? Number(args['full-iterations']) : profile.fullIterations;
const only = args.only ? args.only.split(',').map((s) => s.trim()).filter(Boolean) : null;
// a case runs when a term names it (maml/b25-s1) or one of its parts (maml, b25-s1)
const wanted = (id) => !only || only.some((o) => o === id || id.split('/').includes(o));
const outDir = resolve(args.out ?? here);
const work = mkdtempSync(join(tmpdir(), 'maml-bench-'));
const log = (line) => process.stderr.write(line + '\n');
const t0 = performance.now();

function machine() {
  const info = backendInfo();
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'native', 'src'], { cwd: root, encoding: 'utf8' }).trim();
    if (dirty) commit += ' (native/ or src/ modified)';
  } catch {}
  const cpuinfo = (() => {
    try {
      return readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1];
    } catch {
      return undefined;
    }
  })();
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  return {
    cpu: cpuinfo ?? cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), memGiB: (totalmem() / 2 ** 30).toFixed(0),
    os: `${type()} ${release()}`, node: process.version, commit, loadStart: loadavg()[0],
    library: { version: pkg.version, path: relative(root, info.cpu.path ?? '') || info.cpu.path, threads: getThreads(), compiler: info.cpu.build?.compiler },
  };
}

function findPython() {
  if (args['no-pytorch'] || args.smoke) return { notRun: args.smoke ? 'not run in --smoke' : 'not run: --no-pytorch' };
  const candidates = [args.python ?? process.env.MAML_BENCH_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean);
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8' });
    if (r.status === 0) return { python: py };
  }
  return { notRun: `not run: torch not importable (tried ${candidates.join(', ')})` };
}

async function startBaselines(py) {
  const children = {};
  const script = join(here, 'baselines', 'pytorch_maml.py');
  const cores = availableParallelism();
  for (const [name, threads] of [['pytorch-1t', 1], ['pytorch-all', cores]]) {
    if (py.notRun) children[name] = { notRun: py.notRun };
    else {
      const env = { OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
      children[name] = new BaselineChild(name, py.python, [script, 'serve', '--threads', String(threads)], { env });
    }
  }
  for (const backend of ['cpu', 'wasm']) {
    const name = `tfjs-${backend}`;
    children[name] = args['no-tfjs'] ? { notRun: 'not run: --no-tfjs' } : new BaselineChild(name, process.execPath, [join(here, 'baselines', 'tfjs.mjs'), backend]);
  }
  children['plain-js'] = new BaselineChild('plain-js', process.execPath, [join(here, 'baselines', 'plain-js.mjs')]);
  // wait until every child has started and imported its framework, so that no start-up work
  // runs beside a timed case
  for (const [name, child] of Object.entries(children)) {
    if (child.notRun) continue;
    try {
      await child.request({ cmd: 'ping' }, 120_000);
    } catch (err) {
      children[name] = { notRun: `failed to start: ${String(err.message ?? err).slice(0, 300)}` };
    }
  }
  return children;
}

function runJson(cmd, argv, env) {
  const t = performance.now();
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 26, cwd: root });
  const wallSeconds = (performance.now() - t) / 1000;
  const line = (r.stdout ?? '').trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  if (r.status !== 0 || !line) return { ok: false, error: `exit ${r.status}: ${(r.stderr ?? '').trim().slice(-400)}`, wallSeconds };
  return { ...JSON.parse(line), wallSeconds };
}

function runMemory(py) {
  const m = profile.memory;
  const rows = [];
  for (const S of m.steps) {
    const ours = runJson(process.execPath, ['--expose-gc', join(here, 'lib', 'memory-child.mjs'), String(m.tasks), String(S), String(m.iterations), m.layers.join(',')]);
    const pytorch = py.notRun
      ? { notRun: py.notRun }
      : runJson(py.python, [join(here, 'baselines', 'pytorch_maml.py'), 'memory', '--threads', '1', '--tasks', String(m.tasks), '--steps', String(S), '--iterations', String(m.iterations), '--layers', m.layers.join(',')], { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' });
    log(`  memory S = ${S}: ours peak ${(ours.peakKiB / 1024).toFixed(1)} MiB (+${((ours.peakKiB - ours.baseKiB) / 1024).toFixed(1)}), PyTorch ${pytorch.ok ? `${(pytorch.peakKiB / 1024).toFixed(1)} MiB (+${((pytorch.peakKiB - pytorch.baseKiB) / 1024).toFixed(1)})` : pytorch.notRun ?? pytorch.error}`);
    rows.push({ steps: S, ours, pytorch });
  }
  return {
    id: 'memory', kind: 'memory', rows,
    description: `Second-order MAML meta-steps (MetaLearner.step / torch with create_graph), MLP ${m.layers.join('-')}, B = ${m.tasks}, K = Q = 10, ${m.iterations} meta-steps, each in a fresh process. Peak = VmHWM (reset after setup through /proc/self/clear_refs where allowed); growth = peak − resident size before the first meta-step, i.e. the meta-steps' own working memory.`,
  };
}

function runFull(py) {
  const id = 'sine-70k';
  if (!args.full && !args.smoke) return { id, kind: 'full-run', notRun: 'Not run: pass --full (about a minute for ours; PyTorch takes minutes).' };
  const out = join(work, 'sine.safetensors');
  const argv = ['bin/maml-native.js', 'train', 'sine', '--iterations', String(fullIterations), '--json', '--quiet', '--out', out];
  log(`  sine-70k: node ${argv.join(' ')}`);
  const r = runJson(process.execPath, argv);
  const ours = r.settings ? { wallSeconds: r.wallSeconds, result: r } : null;
  let pytorch;
  if (py.notRun) pytorch = { notRun: py.notRun };
  else {
    log(`  sine-70k: PyTorch, ${fullIterations} steps`);
    pytorch = runJson(py.python, [join(here, 'baselines', 'pytorch_maml.py'), 'train', '--threads', '1', '--iterations', String(fullIterations), '--tasks', '25', '--steps', '1'], { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' });
  }
  log(`  sine-70k: ours ${ours ? ours.wallSeconds.toFixed(2) + ' s' : r.error}; PyTorch ${pytorch.ok ? pytorch.wallSeconds.toFixed(1) + ' s' : pytorch.notRun ?? pytorch.error}`);
  return {
    id, kind: 'full-run', iterations: fullIterations, ours, pytorch, error: ours ? undefined : r.error,
    command: `node ${argv.slice(0, -2).join(' ')} --out <tmp>`,
    description: `The MAML paper's sinusoid protocol (1-40-40-1 relu, K = 10, S = 1, α = 0.01, B = 25, Adam 1e-3), ${fullIterations} meta-steps, sampling included, then the CLI's test evaluation; wall time of the whole process. PyTorch: the same training loop with torch sampling, 1 thread, no test evaluation.`,
  };
}

const results = { command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(), profile: profileName, date: new Date().toISOString(), machine: machine(), baselines: {}, cases: [] };
log(`maml-native bench (${profileName}): ${results.machine.cpu}, ${results.machine.cores} cores, Node ${process.version}`);
const py = findPython();
const children = await startBaselines(py);
try {
  // a case that fails is recorded with its error and the run goes on
  const attempt = async (id, kind, fn) => {
    if (!wanted(id)) return;
    try {
      results.cases.push(await fn());
    } catch (err) {
      log(`  ${id}: FAILED ${err?.stack ?? err}`);
      results.cases.push({ id, kind, error: String(err?.message ?? err) });
    }
  };
  for (const c of metaCases(args.smoke)) await attempt(c.id, 'meta', () => runMetaCase(c, { profile, children, dir: work, log }));
  await attempt('adapt', 'adapt', () => runAdapt({ profile, log }));
  await attempt('adapt-throughput', 'throughput', () => runAdaptThroughput({ profile, log }));
  await attempt('memory', 'memory', () => runMemory(py));
  await attempt('sine-70k', 'full-run', () => runFull(py));
} finally {
  await Promise.all(Object.values(children).map((c) => c.close?.()));
  rmSync(work, { recursive: true, force: true });
}
for (const [name, child] of Object.entries(children)) results.baselines[name] = child.notRun ? { notRun: child.notRun } : { info: child.info ?? 'not used by the selected cases' };
results.machine.loadEnd = loadavg()[0];
results.finished = new Date().toISOString();
results.seconds = (performance.now() - t0) / 1000;
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'results.json'), JSON.stringify(results, null, 1) + '\n');
writeFileSync(join(outDir, 'RESULTS.md'), renderReport(results));
log(`wrote ${relative(process.cwd(), join(outDir, 'RESULTS.md')) || 'RESULTS.md'} and results.json in ${results.seconds.toFixed(0)} s`);
