// Peak resident memory of second-order MAML meta-steps in a fresh process (bench/run.mjs runs
// one per S): `node bench/lib/memory-child.mjs <tasks> <innerSteps> <iterations> <layers>`.
// Resets the high-water mark (VmHWM) after setup where /proc/self/clear_refs allows it, runs
// MetaLearner.step on pre-sampled batches, and prints JSON { baseKiB, peakKiB, hwmReset, maxRssKiB }.
import { readFileSync, writeFileSync } from 'node:fs';
import { MetaLearner, sinusoid } from '../../lib/index.js';

const [tasks, steps, iterations] = process.argv.slice(2, 5).map(Number);
const layers = (process.argv[5] ?? '1,40,40,1').split(',').map(Number);
const status = (key) => Number(readFileSync('/proc/self/status', 'utf8').match(new RegExp(`^${key}:\\s+(\\d+)`, 'm'))?.[1]);
const learner = new MetaLearner({
  model: { layers, activation: 'relu', loss: 'mse' }, algorithm: 'maml', innerLr: 0.01, innerSteps: steps,
  optimizer: { kind: 'adam', lr: 1e-3 }, seed: 1,
});
const sampler = sinusoid({ shots: 10, queries: 10, seed: 1 });
const batches = Array.from({ length: iterations }, () => sampler.sample(tasks));
globalThis.gc?.();
let hwmReset = true;
let base = status('VmRSS');
try {
  writeFileSync('/proc/self/clear_refs', '5');
} catch {
  hwmReset = false;
  base = status('VmHWM');
}
for (const b of batches) learner.step(b);
const peak = status('VmHWM');
process.stdout.write(JSON.stringify({ ok: true, baseKiB: base, peakKiB: peak, hwmReset, maxRssKiB: process.resourceUsage().maxRSS }) + '\n');
