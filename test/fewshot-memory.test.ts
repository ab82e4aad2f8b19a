// Few-shot learners do not leak: rounds of synchronous and asynchronous steps, evaluations and
// classifier calls leave the C allocator's bytes in use and the JS heap where they were (one
// warm-up round first: worker threads allocate their scratch memory once).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { FewShotLearner } from '../src/index.js';
import { loadNative } from '../src/loader.js';
import { Rng } from '../src/rng.js';
import { clusterEpisodes } from './fewshot-helpers.js';

describe('few-shot memory', () => {
  it('rounds of 8,000 calls (step, evaluate, adapt + predict, stepAsync, evaluateAsync) do not grow native memory or the heap', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const learner = new FewShotLearner({ algorithm: 'relation', embedding: { layers: [4, 8, 3] }, relation: { layers: [6, 5, 1] }, seed: 1 });
    const e = clusterEpisodes(new Rng(1), 4, 2, 3, 1, 2);
    const round = async (n: number) => {
      for (let i = 0; i < n; i++) {
        learner.step(e);
        learner.evaluate(e);
        learner.adapt({ x: e.xs.subarray(0, 12), labels: e.ys.subarray(0, 3) }).predict(e.xq);
      }
      for (let i = 0; i < n; i += 100) {
        await Promise.all(Array.from({ length: 50 }, () => learner.stepAsync(e)));
        await Promise.all(Array.from({ length: 50 }, () => learner.evaluateAsync(e)));
      }
    };
    const mb = (b: number) => b / 2 ** 20;
    // (V8 frees the backing stores of collected ArrayBuffers on a background sweeper: wait for it)
    const sample = async () => {
      gc();
      await new Promise((r) => setTimeout(r, 50));
      gc();
      return { malloc: loadNative().mallocInUse(), mem: process.memoryUsage() };
    };
    await round(2000);
    const s0 = await sample();
    const deltas: number[] = [];
    let last = s0;
    for (let r = 0; r < 3; r++) {
      await round(2000);
      const now = await sample();
      deltas.push(mb(last.malloc >= 0 ? now.malloc - last.malloc : now.mem.rss - last.mem.rss));
      last = now;
    }
    // a leak of 100 bytes a call would add 0.8 MB to every round
    const total = deltas.reduce((a, b) => a + b, 0);
    if (!(total < (s0.malloc >= 0 ? 1 : 16))) throw new Error(`memory grew by ${deltas.map((d) => d.toFixed(3)).join(', ')} MB per round`);
    expect(mb(last.mem.heapUsed - s0.mem.heapUsed)).toBeLessThan(2);
    expect(mb(last.mem.external - s0.mem.external)).toBeLessThan(2);
  }, 120_000);
});
