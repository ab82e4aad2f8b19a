// Servers first: concurrent asynchronous calls on several learners are safe and give the same
// answers as synchronous ones, and repeated calls do not grow memory.
import { describe, it, expect } from 'vitest';
import { MetaLearner, metaGradient, sinusoid } from '../src/index.js';
import { memoryRounds } from './helpers.js';

const model = { layers: [1, 32, 32, 1], activation: 'relu', loss: 'mse' } as const;

describe('concurrency', () => {
  it('many learners stepping and adapting at once get the answers of sequential calls', async () => {
    const tasks = sinusoid({ seed: 12 });
    const batches = Array.from({ length: 6 }, () => tasks.sample(16));
    const support = sinusoid({ seed: 13 }).sample(40);
    const expected = [1, 2, 3, 4].map((seed) => {
      const l = new MetaLearner({ model, seed });
      batches.forEach((b) => l.step(b));
      return { params: l.params, adapted: l.adaptBatch(support, { steps: 5 }).map((m) => m.params) };
    });
    const learners = [1, 2, 3, 4].map((seed) => new MetaLearner({ model, seed }));
    const runs = learners.map(async (l) => {
      await Promise.all(batches.map((b) => l.stepAsync(b)));
      const [adapted] = await Promise.all([l.adaptBatchAsync(support, { steps: 5 }), l.adaptAsync({ x: support.xs.subarray(0, 10), y: support.ys.subarray(0, 10) })]);
      return { params: l.params, adapted: adapted.map((m) => m.params) };
    });
    // synchronous work on the main thread in between, on other data
    metaGradient(model, expected[0]!.params, batches[0]!, { algorithm: 'maml', innerLr: 0.01, innerSteps: 2 });
    const got = await Promise.all(runs);
    got.forEach((g, i) => {
      expect(g.params).toEqual(expected[i]!.params);
      g.adapted.forEach((p, t) => expect(p).toEqual(expected[i]!.adapted[t]));
    });
  });
});

describe('memory', () => {
  it('rounds of 60,000 adapt/predict calls, 12,000 async adaptations and 3,300 meta-steps do not grow native memory or the heap', async () => {
    const learner = new MetaLearner({ model: { layers: [1, 16, 1], activation: 'tanh', loss: 'mse' }, seed: 1 });
    const x = Float32Array.from({ length: 10 }, (_, i) => i / 5 - 1);
    const y = x.map(Math.sin);
    // meta-steps in lanes (20 tasks: a group of 16 and one of 4 single tasks), sync and async
    const stepper = new MetaLearner({ model: { layers: [1, 24, 24, 1], activation: 'relu', loss: 'mse' }, innerSteps: 2, seed: 2 });
    const tasks = sinusoid({ seed: 4, shots: 5 }).sample(20);
    const round = async (n: number) => {
      for (let i = 0; i < n; i++) learner.adapt({ x, y }, { steps: 2 }).predict(x);
      for (let i = 0; i < n / 5; i += 100) await Promise.all(Array.from({ length: 100 }, () => learner.adaptAsync({ x, y })));
      for (let i = 0; i < n / 20; i++) stepper.step(tasks);
      for (let i = 0; i < n / 200; i++) await stepper.stepAsync(tasks);
    };
    // The resident set follows V8's heap sizing and the C allocator's arenas, which grow in
    // steps of MBs without a leak; the bytes malloc has handed out and not taken back do not.
    const m = await memoryRounds(() => round(60_000));
    console.log(`memory growth per round of 72,000 calls (${m.malloc ? 'malloc in use' : 'rss'}): ${m.deltas.map((d) => d.toFixed(3)).join(', ')} MB; heap used ${m.heapMB.toFixed(2)} MB, external ${m.externalMB.toFixed(2)} MB over the three`);
    // a leak of 100 bytes a call would add 7 MB to every round, 21 MB to the three; what moves
    // without a leak (V8's own allocations) stays within a few MB either way
    expect(m.total).toBeLessThan(m.malloc ? 5 : 16);
    expect(m.heapMB).toBeLessThan(2);
    expect(m.externalMB).toBeLessThan(2);
  }, 120_000);
});
