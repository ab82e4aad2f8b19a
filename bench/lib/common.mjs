// Shared pieces of the benchmark harness and of its JavaScript baselines: the FLOP count of
// issue 3, sample statistics, a tinybench timer, the job file that every implementation reads,
// and the line protocol a baseline child process speaks.
//
// Job file (JSON, written by bench/run.mjs, read by every baseline):
//   { model: { layers, activation, loss }, algorithm, innerLr, innerSteps, tasks, support, query,
//     params: number[P], batches: [{ xs, ys, xq, yq }], adam: { lr, beta1, beta2, eps } }
// batches[0] is the shared agreement case; timing cycles through all of them (pre-sampled,
// so no row times task sampling).
//
// Child protocol: one JSON request per stdin line, one JSON reply per stdout line.
//   { cmd: 'ping' }                               -> { ok }   (started and imported)
//   { cmd: 'load', file }                         -> { ok, info }
//   { cmd: 'check' }                              -> { ok, loss, grad }   (batches[0], initial params)
//   { cmd: 'time', mode: 'grad'|'step', time, iterations, warmup } -> { ok, stats }
//   { cmd: 'quit' }
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Bench } from 'tinybench';

/** P = Σ d_{l−1}·d_l (weights only), as issue 3 counts it. */
export function flopWeights(layers) {
  let p = 0;
  for (let l = 1; l < layers.length; l++) p += layers[l - 1] * layers[l];
  return p;
}

/** FLOPs of one meta-step (a multiply-add is 2) by issue 3's count. */
export function metaStepFlops({ layers, algorithm, tasks, innerSteps, support, query }) {
  const P = flopWeights(layers);
  const S = innerSteps, K = support, Q = query, B = tasks;
  if (algorithm === 'maml') return B * P * (18 * S * K + 6 * Q);
  if (algorithm === 'fomaml') return B * P * (6 * S * K + 6 * Q);
  if (algorithm === 'reptile') return B * P * 6 * S * K;
  throw new Error(`no FLOP count for ${algorithm}`);
}

function quantile(sorted, q) {
  if (sorted.length === 1) return sorted[0];
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Statistics of latency samples in ms: median, p10, p90, MAD (unscaled), mean, min, n. */
export function summarize(samples) {
  const s = Float64Array.from(samples).sort();
  if (s.length === 0) throw new Error('no samples');
  const median = quantile(s, 0.5);
  const dev = Float64Array.from(s, (x) => Math.abs(x - median)).sort();
  let sum = 0;
  for (const x of s) sum += x;
  return { n: s.length, median, p10: quantile(s, 0.1), p90: quantile(s, 0.9), mad: quantile(dev, 0.5), mean: sum / s.length, min: s[0] };
}

/**
 * Times fn (sync or async) with tinybench: `time` ms budget and at least `iterations` samples,
 * after `warmup` ms of warm-up. Returns summarize() of the per-call latencies in ms.
 */
export async function timeFn(fn, budget) {
  return summarize(await timeSamples(fn, budget));
}

/** The raw latency samples (ms) of timeFn. */
export async function timeSamples(fn, { time = 1000, iterations = 10, warmup = 200, warmupIterations = 3 } = {}) {
  const bench = new Bench({ time, iterations, warmupTime: warmup, warmupIterations, retainSamples: true, throws: true });
  bench.add('case', fn);
  await bench.run();
  const r = bench.tasks[0].result;
  if (!r || r.state === 'errored' || r.error) throw r?.error ?? new Error('tinybench gave no result');
  return Array.from(r.latency.samples);
}

export function readJob(file) {
  const job = JSON.parse(readFileSync(file, 'utf8'));
  return job;
}

/**
 * Serves the child protocol on stdin/stdout. `makeSession(job)` returns
 * { info, check(): {loss, grad}, step(i) / grad(i): one timed call on batch i mod n }.
 * Either may be async.
 */
export async function serve(makeSession) {
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  let session = null;
  const reply = (o) => process.stdout.write(JSON.stringify(o) + '\n');
  for await (const line of rl) {
    if (!line.trim()) continue;
    let req;
    try {
      req = JSON.parse(line);
      if (req.cmd === 'quit') break;
      if (req.cmd === 'ping') {
        reply({ ok: true });
        continue;
      }
      if (req.cmd === 'load') {
        session?.dispose?.();
        session = await makeSession(readJob(req.file));
        reply({ ok: true, info: session.info });
      } else if (req.cmd === 'check') {
        const r = await session.check();
        reply({ ok: true, loss: r.loss, grad: Array.from(r.grad) });
      } else if (req.cmd === 'time') {
        const fn = req.mode === 'step' ? session.step : session.grad;
        let i = 0;
        const stats = await timeFn(() => fn(i++), req);
        reply({ ok: true, stats });
      } else throw new Error(`unknown command ${req.cmd}`);
    } catch (err) {
      reply({ ok: false, error: String(err?.stack ?? err) });
    }
  }
  session?.dispose?.();
  rl.close();
}

/** Batch i of the job as typed arrays of the given kind (cached). */
export function jobBatches(job, Kind = Float32Array) {
  return job.batches.map((b) => ({
    tasks: job.tasks,
    support: job.support,
    query: job.query,
    xs: Kind.from(b.xs),
    ys: Kind.from(b.ys),
    xq: Kind.from(b.xq),
    yq: Kind.from(b.yq),
  }));
}
