// The meta-step cases of issue 3: MAML / FOMAML / Reptile on sinusoid tasks, ours (the
// library's metaGradient, and MetaLearner.step = meta-gradient + Adam) against each baseline.
// Every baseline first computes the meta-gradient and loss of batch 0 at the initial
// parameters; a row is timed only when they agree with ours within TOLERANCE.
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { MetaLearner, initParams, metaGradient, sinusoid } from '../../lib/index.js';
import { metaStepFlops, summarize, timeSamples } from './common.mjs';

/** Agreement of a baseline with the library on the shared case (float32 rounding only). */
export const TOLERANCE = { gradRel: 1e-4, lossRel: 1e-5 };

export const ADAM = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 };

/** The four network/batch configurations of issue 3's table (tiny ones for --smoke). */
export function metaConfigs(smoke) {
  const sine = [1, 40, 40, 1], wide = [1, 256, 256, 1];
  if (smoke) {
    return [
      { id: 'b25-s1', layers: [1, 8, 8, 1], tasks: 4, innerSteps: 1, support: 5, query: 5 },
      { id: 'b25-s5', layers: [1, 8, 8, 1], tasks: 4, innerSteps: 2, support: 5, query: 5 },
      { id: 'b100-s5', layers: [1, 8, 8, 1], tasks: 6, innerSteps: 2, support: 5, query: 5 },
      { id: 'wide-b32-s5', layers: [1, 16, 16, 1], tasks: 3, innerSteps: 2, support: 5, query: 5 },
    ];
  }
  return [
    { id: 'b25-s1', layers: sine, tasks: 25, innerSteps: 1, support: 10, query: 10 },
    { id: 'b25-s5', layers: sine, tasks: 25, innerSteps: 5, support: 10, query: 10 },
    { id: 'b100-s5', layers: sine, tasks: 100, innerSteps: 5, support: 10, query: 10 },
    { id: 'wide-b32-s5', layers: wide, tasks: 32, innerSteps: 5, support: 10, query: 10 },
  ];
}

export const META_ALGORITHMS = ['maml', 'fomaml', 'reptile'];

export function metaCases(smoke) {
  const out = [];
  for (const algorithm of META_ALGORITHMS)
    for (const c of metaConfigs(smoke)) out.push({ ...c, id: `${algorithm}/${c.id}`, config: c.id, algorithm, kind: 'meta' });
  return out;
}

export function describeMeta(c) {
  return `${c.algorithm.toUpperCase()}, MLP ${c.layers.join('-')} relu, MSE, B = ${c.tasks}, S = ${c.innerSteps}, K = ${c.support}, Q = ${c.query}, α = 0.01`;
}

/** Which baselines time a case: TF.js only for issue 3's MAML B = 25 rows. */
export function baselinesFor(c, available) {
  return available.filter((b) => !b.startsWith('tfjs') || (c.algorithm === 'maml' && (c.config === 'b25-s1' || c.config === 'b25-s5')));
}

function relErr(a, b) {
  let d = 0, n = 0, maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    const e = a[i] - b[i];
    d += e * e;
    n += b[i] * b[i];
    maxAbs = Math.max(maxAbs, Math.abs(e));
  }
  return { rel: Math.sqrt(d) / Math.max(Math.sqrt(n), 1e-30), maxAbs };
}

/** Compares a baseline's { loss, grad } with ours; returns the agreement record. */
export function agreement(ours, theirs) {
  if (theirs.grad.length !== ours.grad.length)
    return { status: 'mismatch', reason: `gradient length ${theirs.grad.length}, expected ${ours.grad.length}` };
  const g = relErr(theirs.grad, ours.grad);
  const lossRel = Math.abs(theirs.loss - ours.loss) / Math.max(Math.abs(ours.loss), 1e-30);
  const ok = g.rel <= TOLERANCE.gradRel && lossRel <= TOLERANCE.lossRel;
  return { status: ok ? 'agree' : 'mismatch', gradRel: g.rel, gradMaxAbs: g.maxAbs, lossRel };
}

/** Pre-samples the batches of a case and writes the job file every baseline reads. */
export function buildJob(c, nBatches, dir) {
  const model = { layers: c.layers, activation: 'relu', loss: 'mse' };
  const params = initParams(model, { seed: 1 });
  const sampler = sinusoid({ shots: c.support, queries: c.query, seed: 7 });
  const batches = Array.from({ length: nBatches }, () => sampler.sample(c.tasks));
  const job = {
    model, algorithm: c.algorithm, innerLr: 0.01, innerSteps: c.innerSteps, tasks: c.tasks, support: c.support, query: c.query,
    params: Array.from(params),
    batches: batches.map((b) => ({ xs: Array.from(b.xs), ys: Array.from(b.ys), xq: Array.from(b.xq), yq: Array.from(b.yq) })),
    adam: ADAM,
  };
  const file = join(dir, `job-${c.id.replace('/', '-')}.json`);
  writeFileSync(file, JSON.stringify(job));
  return { model, params, batches, file };
}

const f64 = (a) => Float64Array.from(a);

/**
 * Runs one meta case: ours (grad, step), then each baseline (check, then grad and step).
 * children: { name -> BaselineChild | { notRun: reason } }. Returns the case's result record.
 */
export async function runMetaCase(c, { profile, children, dir, log }) {
  const load = loadavg()[0];
  const { model, params, batches, file } = buildJob(c, profile.batches, dir);
  const opts = { algorithm: c.algorithm, innerLr: 0.01, innerSteps: c.innerSteps };
  const flops = metaStepFlops(c);
  const mine = metaGradient(model, params, batches[0], opts);
  const b0 = batches[0];
  const ref64 = metaGradient(model, f64(params), { ...b0, xs: f64(b0.xs), ys: f64(b0.ys), xq: f64(b0.xq), yq: f64(b0.yq) }, { ...opts, precision: 'float64' });
  const oursVs64 = agreement(ref64, mine);
  const rows = [];
  const n = batches.length;
  // Ours is timed in two halves, before and after the baselines, and the samples pooled, so
  // that a burst of other work on the machine does not fall on one side of a ratio only.
  const half = { ...profile.ours, time: profile.ours.time / 2, iterations: Math.ceil(profile.ours.iterations / 2) };
  let i = 0;
  const timeGrad = () => timeSamples(() => metaGradient(model, params, batches[i++ % n], opts), half);
  const learner = new MetaLearner({ model, ...opts, optimizer: { kind: 'adam', lr: ADAM.lr, betas: [ADAM.beta1, ADAM.beta2], eps: ADAM.eps }, seed: 1, params });
  const timeStep = () => timeSamples(() => learner.step(batches[i++ % n]), half);
  const gradSamples = await timeGrad();
  const stepSamples = await timeStep();
  const gf = (s) => flops / (s.median * 1e6);
  const first = { grad: summarize(gradSamples), step: summarize(stepSamples) };
  log(`  ${c.id}: ours grad ${first.grad.median.toFixed(3)} ms, step ${first.step.median.toFixed(3)} ms (${gf(first.step).toFixed(2)} GFLOP/s), first half`);
  const checks = {};
  // The harness's own CPU time while baselines run: near zero unless something in this process
  // (a spinning native thread pool, say) competes with the baseline being timed.
  const cpu0 = process.cpuUsage(), wall0 = performance.now();
  for (const name of baselinesFor(c, Object.keys(children))) {
    const child = children[name];
    if (child.notRun) {
      checks[name] = { status: 'not run', reason: child.notRun };
      continue;
    }
    try {
      const loaded = await child.request({ cmd: 'load', file });
      child.info ??= loaded.info;
      const t0 = performance.now();
      const theirs = await child.request({ cmd: 'check' });
      const checkMs = performance.now() - t0;
      const a = agreement(mine, theirs);
      checks[name] = a;
      if (a.status !== 'agree') {
        log(`  ${c.id}: ${name} MISMATCH (grad rel ${a.gradRel?.toExponential(2)}, loss rel ${a.lossRel?.toExponential(2)}): row refused`);
        continue;
      }
      const budget = checkMs > profile.slowMs ? profile.slow : profile.base;
      for (const mode of ['grad', 'step']) {
        const { stats } = await child.request({ cmd: 'time', mode, ...budget });
        rows.push({ impl: name, mode, stats, gflops: gf(stats) });
      }
      const st = rows.at(-1);
      log(`  ${c.id}: ${name} agrees (grad rel ${a.gradRel.toExponential(1)}); step ${st.stats.median.toFixed(3)} ms`);
    } catch (err) {
      checks[name] = { status: 'error', reason: String(err.message ?? err).slice(0, 500) };
      log(`  ${c.id}: ${name} failed: ${checks[name].reason}`);
    }
  }
  const cpu = process.cpuUsage(cpu0), wall = performance.now() - wall0;
  const harnessCpuShare = (cpu.user + cpu.system) / 1000 / Math.max(wall, 1e-9);
  if (harnessCpuShare > 0.05) log(`  ${c.id}: WARNING the harness used ${(harnessCpuShare * 100).toFixed(0)}% of a core while baselines were timed`);
  gradSamples.push(...(await timeGrad()));
  stepSamples.push(...(await timeStep()));
  const ours = { grad: summarize(gradSamples), step: summarize(stepSamples) };
  for (const r of rows) r.speedup = r.stats.median / ours[r.mode].median;
  rows.unshift(
    { impl: 'maml-native', mode: 'grad', stats: ours.grad, gflops: gf(ours.grad), halves: [first.grad.median, summarize(gradSamples.slice(first.grad.n)).median] },
    { impl: 'maml-native', mode: 'step', stats: ours.step, gflops: gf(ours.step), halves: [first.step.median, summarize(stepSamples.slice(first.step.n)).median] },
  );
  log(`  ${c.id}: ours grad ${ours.grad.median.toFixed(3)} ms, step ${ours.step.median.toFixed(3)} ms (${gf(ours.step).toFixed(2)} GFLOP/s), both halves`);
  return { id: c.id, kind: 'meta', description: describeMeta(c), config: c, flops, loss: mine.loss, oursVsFloat64: oursVs64, checks, rows, load, harnessCpuShare };
}
