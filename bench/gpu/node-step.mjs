// bench/gpu/node-step.mjs: the product path on the GPU, from Node.js (run by bench/gpu.sh after
// the vitest suites): MetaLearner.step with device 'cuda' and device 'cpu' on the same batches
// (median wall time per call, TS validation and the Node-API crossing included), the CUDA
// learner's loss after 300 sinusoid meta-steps next to the CPU learner's, and adaptBatch of
// 1,000 users (K = 10, 10 steps) on both. Needs the compiled lib/ (npm run build).
//   node bench/gpu/node-step.mjs [OUT.json]
import fs from 'node:fs';
import { MetaLearner, sinusoid } from '../../lib/index.js';

const out = process.argv[2];
const rows = [];
const SINE = { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' };
const WIDE = { layers: [1, 256, 256, 1], activation: 'relu', loss: 'mse' };

function median(fn, minIters = 30, budgetMs = 1500) {
  for (let i = 0; i < 10; i++) fn(i);
  const t = [];
  const start = performance.now();
  while (t.length < minIters || (t.length < 5000 && performance.now() - start < budgetMs)) {
    const a = performance.now();
    fn(t.length);
    t.push((performance.now() - a) * 1e3);
  }
  t.sort((x, y) => x - y);
  return { median_us: t[t.length >> 1], p10_us: t[Math.floor(t.length / 10)], p90_us: t[Math.floor(t.length * 0.9)], n: t.length };
}

/** A learner on options.device, or null with row[device] = { error } where that fails. */
function make(options, row) {
  try {
    return new MetaLearner(options);
  } catch (err) {
    row[options.device] = { error: `${err.code ?? ''} ${err.message}` };
    return null;
  }
}

function stepCase(name, model, B, S) {
  const tasks = sinusoid({ shots: 10, queries: 10, seed: 3 });
  const batches = Array.from({ length: 8 }, () => tasks.sample(B));
  const row = { case: name };
  for (const device of ['cuda', 'cpu']) {
    const learner = make({ model, algorithm: 'maml', innerSteps: S, innerLr: 0.01, seed: 1, device }, row);
    if (!learner) continue;
    row[device] = median((i) => learner.step(batches[i % 8]));
    learner.dispose();
  }
  rows.push(row);
  const f = (r) => (r?.median_us !== undefined ? `${r.median_us.toFixed(1)} us` : `failed (${r?.error})`);
  console.log(`MetaLearner.step ${name.padEnd(16)} cuda ${f(row.cuda)}  cpu ${f(row.cpu)}` +
    (row.cuda?.median_us && row.cpu?.median_us ? `  cpu/cuda ${(row.cpu.median_us / row.cuda.median_us).toFixed(2)}x` : ''));
}

stepCase('sine_B25_S1', SINE, 25, 1);
stepCase('sine_B25_S5', SINE, 25, 5);
stepCase('sine_B1024_S5', SINE, 1024, 5);
stepCase('wide_B256_S5', WIDE, 256, 5);

// Training: the same 300 meta-steps on both devices; the losses differ by float32 rounding only.
{
  const losses = {};
  for (const device of ['cuda', 'cpu']) {
    const tasks = sinusoid({ shots: 10, queries: 10, seed: 5 });
    const learner = make({ model: SINE, algorithm: 'maml', innerSteps: 1, innerLr: 0.01, seed: 2, device }, losses);
    if (!learner) continue;
    let tail = 0;
    for (let i = 0; i < 300; i++) {
      const { loss } = learner.step(tasks.sample(25));
      if (i >= 250) tail += loss / 50;
    }
    losses[device] = tail;
    learner.dispose();
  }
  rows.push({ case: 'train_300', ...losses });
  const f = (v) => (typeof v === 'number' ? v.toFixed(4) : `failed (${v.error})`);
  console.log(`300 meta-steps, mean query loss of the last 50: cuda ${f(losses.cuda)}  cpu ${f(losses.cpu)}`);
}

// adaptBatch: 1,000 users, 10 points each, 10 steps.
{
  const tasks = sinusoid({ shots: 10, queries: 10, seed: 9 });
  const users = tasks.sample(1000);
  const row = { case: 'adaptBatch_1000' };
  const preds = {};
  for (const device of ['cuda', 'cpu']) {
    const learner = make({ model: SINE, algorithm: 'maml', innerSteps: 1, innerLr: 0.01, seed: 4, device }, row);
    if (!learner) continue;
    const support = { tasks: users.tasks, support: users.support, xs: users.xs, ys: users.ys };
    row[device] = median(() => learner.adaptBatch(support, { steps: 10 }), 5, 1500);
    preds[device] = learner.adaptBatch(support, { steps: 10 })[17].predict(users.xq.subarray(170, 180));
    learner.dispose();
  }
  let d = NaN;
  if (preds.cuda && preds.cpu) {
    d = 0;
    for (let i = 0; i < 10; i++) d = Math.max(d, Math.abs(preds.cuda[i] - preds.cpu[i]));
  }
  row.max_pred_diff = d;
  rows.push(row);
  const f = (r) => (r.median_us !== undefined ? `${r.median_us.toFixed(0)} us` : `failed (${r.error})`);
  console.log(`adaptBatch 1,000 users: cuda ${f(row.cuda)}  cpu ${f(row.cpu)}; one user's predictions differ by at most ${d.toExponential(1)}`);
}

// One user's adapt() (the latency a server sees), and adaptBatchAsync of 1,000 users (awaited).
{
  const tasks = sinusoid({ shots: 10, queries: 10, seed: 11 });
  const users = tasks.sample(1000);
  const support = { tasks: users.tasks, support: users.support, xs: users.xs, ys: users.ys };
  const one = { x: users.xs.subarray(0, 10), y: users.ys.subarray(0, 10) };
  const row = { case: 'adapt_one_and_async_1000' };
  for (const device of ['cuda', 'cpu']) {
    const learner = make({ model: SINE, algorithm: 'maml', innerSteps: 1, innerLr: 0.01, seed: 4, device }, row);
    if (!learner) continue;
    const single = median(() => learner.adapt(one, { steps: 10 }), 30, 1000);
    const times = [];
    for (let i = 0; i < 25; i++) {
      const a = performance.now();
      await learner.adaptBatchAsync(support, { steps: 10 });
      times.push((performance.now() - a) * 1e3);
    }
    times.sort((x, y) => x - y);
    row[device] = { adapt_one_us: single.median_us, adapt_batch_async_us: times[12] };
    learner.dispose();
  }
  rows.push(row);
  const f = (r) => (r?.adapt_one_us !== undefined ? `adapt() ${r.adapt_one_us.toFixed(0)} us, adaptBatchAsync(1,000) ${r.adapt_batch_async_us.toFixed(0)} us` : `failed (${r?.error})`);
  console.log(`one user, K = 10, 10 steps: cuda ${f(row.cuda)}; cpu ${f(row.cpu)}`);
}

if (out) fs.writeFileSync(out, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
