// Servers first: concurrent asynchronous calls on several learners are safe and give the same
// answers as synchronous ones, and repeated calls do not grow memory.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, it, expect } from 'vitest';
import { MetaLearner, metaGradient, sinusoid } from '../src/index.js';
import { loadNative } from '../src/loader.js';

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
  it('100,000 adapt/predict calls and 20,000 async adaptations do not grow native memory or the heap', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const learner = new MetaLearner({ model: { layers: [1, 16, 1], activation: 'tanh', loss: 'mse' }, seed: 1 });
    const x = Float32Array.from({ length: 10 }, (_, i) => i / 5 - 1);
    const y = x.map(Math.sin);
    const round = async (n: number) => {
      for (let i = 0; i < n; i++) learner.adapt({ x, y }, { steps: 2 }).predict(x);
      for (let i = 0; i < n / 5; i += 100) await Promise.all(Array.from({ length: 100 }, () => learner.adaptAsync({ x, y })));
    };
    await round(20_000); // warm up: JIT, pools, arenas
    gc();
    const before = process.memoryUsage();
    const mallocBefore = loadNative().mallocInUse();
    await round(100_000);
    gc();
    const after = process.memoryUsage();
    const mb = (b: number) => b / 2 ** 20;
    // The resident set follows V8's heap sizing and the C allocator's arenas, which grow in
    // steps of MBs without a leak; the bytes malloc has handed out and not taken back do not.
    const mallocAfter = loadNative().mallocInUse();
    console.log(`memory growth over 120,000 calls: malloc in use ${mb(mallocAfter - mallocBefore).toFixed(3)} MB, rss ${mb(after.rss - before.rss).toFixed(2)} MB, heap used ${mb(after.heapUsed - before.heapUsed).toFixed(2)} MB, external ${mb(after.external - before.external).toFixed(2)} MB`);
    // a leak of 100 bytes a call would add 12 MB
    if (mallocBefore >= 0) expect(mb(mallocAfter - mallocBefore)).toBeLessThan(1);
    else expect(mb(after.rss - before.rss)).toBeLessThan(32);
    expect(mb(after.heapUsed - before.heapUsed)).toBeLessThan(2);
    expect(mb(after.external - before.external)).toBeLessThan(2);
  }, 120_000);
});
