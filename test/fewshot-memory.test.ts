// Few-shot learners do not leak: rounds of synchronous and asynchronous steps, evaluations and
// classifier calls leave the C allocator's bytes in use and the JS heap where they were (one
// warm-up round first: worker threads allocate their scratch memory once).
import { describe, expect, it } from 'vitest';
import { FewShotLearner } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { clusterEpisodes } from './fewshot-helpers.js';
import { memoryRounds } from './helpers.js';

describe('few-shot memory', () => {
  it('rounds of 8,000 calls (step, evaluate, adapt + predict, stepAsync, evaluateAsync) do not grow native memory or the heap', async () => {
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
    const m = await memoryRounds(() => round(2000));
    // a leak of 100 bytes a call would add 0.8 MB to every round
    if (!(m.total < (m.malloc ? 1 : 16))) throw new Error(`memory grew by ${m.deltas.map((d) => d.toFixed(3)).join(', ')} MB per round`);
    expect(m.heapMB).toBeLessThan(2);
    expect(m.externalMB).toBeLessThan(2);
  }, 120_000);
});
