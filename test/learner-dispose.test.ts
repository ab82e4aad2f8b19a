// MetaLearner.dispose() and FewShotLearner.dispose() on the CPU: the state arrays are dropped at once (their memory can be
// reclaimed while the learner object is still referenced), every later call throws DISPOSED,
// a second dispose does nothing, and a pending asynchronous call makes it throw BUSY. The
// CUDA side (device memory freed by cudaLearnerDispose) is in cuda-backend.test.ts.
import v8 from 'node:v8';
import vm from 'node:vm';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FewShotLearner, MetaLearner, paramCount, sinusoid, type ErrorCode, type ModelSpec } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { clusterEpisodes } from './fewshot-helpers.js';
import { codeOf, rejection } from './helpers.js';

const SINE: ModelSpec = { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' };
const tasks = sinusoid({ shots: 5, queries: 5, seed: 31 });

const rejectionCode = async (p: Promise<unknown>): Promise<ErrorCode> => (await rejection(p)).code;

describe('MetaLearner.dispose (CPU)', () => {
  it('every later call throws DISPOSED; metadata getters still answer', async () => {
    const l = new MetaLearner({ model: SINE, algorithm: 'meta-sgd', innerSteps: 2, seed: 1, device: 'cpu' });
    const b = tasks.sample(3);
    l.step(b);
    expect(l.disposed).toBe(false);
    l.dispose();
    expect(l.disposed).toBe(true);
    const support = { x: b.xs.subarray(0, 5), y: b.ys.subarray(0, 5) };
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'maml-dispose-')), 'l.safetensors');
    const sync: [string, () => unknown][] = [
      ['params', () => l.params],
      ['innerLr', () => l.innerLr],
      ['step', () => l.step(b)],
      ['adapt', () => l.adapt(support)],
      ['adaptBatch', () => l.adaptBatch({ tasks: 1, support: 5, xs: support.x, ys: support.y })],
      ['predict', () => l.predict(Float32Array.of(0.5))],
      ['save', () => l.save(file)],
      ['stepWeights', () => (l.stepWeights = [0, 0, 1])],
    ];
    for (const [name, fn] of sync) expect(codeOf(fn), name).toBe('DISPOSED');
    expect(fs.existsSync(file)).toBe(false);
    expect(await rejectionCode(l.stepAsync(b))).toBe('DISPOSED');
    expect(await rejectionCode(l.adaptAsync(support))).toBe('DISPOSED');
    expect(await rejectionCode(l.adaptBatchAsync({ tasks: 1, support: 5, xs: support.x, ys: support.y }))).toBe('DISPOSED');
    expect(l.stepCount).toBe(1);
    expect(l.model).toEqual(SINE);
    expect(l.stepWeights).toEqual([0, 0, 1]);
  });

  it('a second dispose does nothing', () => {
    const l = new MetaLearner({ model: SINE, seed: 2, device: 'cpu' });
    l.dispose();
    expect(() => l.dispose()).not.toThrow();
    expect(l.disposed).toBe(true);
  });

  it('is refused with BUSY while an asynchronous call is pending, and accepted once it settled', async () => {
    const l = new MetaLearner({ model: SINE, seed: 3, device: 'cpu' });
    const pending = l.stepAsync(tasks.sample(3));
    expect(codeOf(() => l.dispose())).toBe('BUSY');
    expect(l.disposed).toBe(false);
    expect(Number.isFinite((await pending).loss)).toBe(true);
    expect(l.stepCount).toBe(1);
    l.dispose();
    expect(l.disposed).toBe(true);
  });

  it('adaptAsync calls made earlier in the same turn still resolve, with θ from before dispose', async () => {
    const o = { model: SINE, seed: 4, device: 'cpu' as const };
    const [l, twin] = [new MetaLearner(o), new MetaLearner(o)];
    const b = tasks.sample(2);
    const support = { x: b.xs.subarray(0, 5), y: b.ys.subarray(0, 5) };
    const pending = l.adaptAsync(support, { steps: 3 });
    l.dispose();
    expect((await pending).params).toEqual(twin.adapt(support, { steps: 3 }).params);
  });

  it('drops the parameters and optimizer moments at once (3 × P floats; garbage-collected while the learner lives)', async () => {
    v8.setFlagsFromString('--expose_gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // V8 frees array buffers on a background thread after a collection: collect, then wait
    const settle = async () => {
      for (let i = 0; i < 5; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 10));
      }
      return process.memoryUsage().arrayBuffers;
    };
    const model: ModelSpec = { layers: [1, 1500, 1500, 1], activation: 'tanh', loss: 'mse' };
    const P = paramCount(model);
    const l = new MetaLearner({ model, seed: 5, device: 'cpu' });
    const before = await settle();
    l.dispose();
    let freed = 0;
    for (let i = 0; i < 20 && freed <= 0.9 * 3 * P * 4; i++) freed = before - (await settle());
    // state, m and v: 3 × P float32 = 27 MB here; at least 90% of it must be gone
    expect(freed).toBeGreaterThan(0.9 * 3 * P * 4);
    expect(l.disposed).toBe(true);
  });
});

describe('FewShotLearner.dispose', () => {
  const embedding = { layers: [4, 8, 3] };
  const episodes = () => clusterEpisodes(new Rng(1), 4, 2, 3, 2, 2);

  it('every later call throws DISPOSED; classifiers made before keep working; a second dispose does nothing', async () => {
    const l = new FewShotLearner({ algorithm: 'protonet', embedding, seed: 1 });
    l.step(episodes());
    const support = { x: episodes().xs.subarray(0, 6 * 4), labels: Int32Array.of(0, 0, 1, 1, 2, 2) };
    const clf = l.adapt(support);
    const x = Float32Array.of(0.1, -0.2, 0.3, 0.4);
    const before = clf.predictProba(x);
    l.dispose();
    expect(l.disposed).toBe(true);
    const sync: [string, () => unknown][] = [
      ['params', () => l.params],
      ['params=', () => (l.params = new Float32Array(0))],
      ['step', () => l.step(episodes())],
      ['evaluate', () => l.evaluate(episodes())],
      ['embed', () => l.embed(x)],
      ['adapt', () => l.adapt(support)],
      ['save', () => l.save(path.join(os.tmpdir(), 'never-written.safetensors'))],
    ];
    for (const [name, fn] of sync) expect(codeOf(fn), name).toBe('DISPOSED');
    expect(await rejectionCode(l.stepAsync(episodes()))).toBe('DISPOSED');
    expect(await rejectionCode(l.evaluateAsync(episodes()))).toBe('DISPOSED');
    expect(clf.predictProba(x)).toEqual(before);
    expect(l.steps).toBe(1);
    l.dispose();
    expect(l.disposed).toBe(true);
  });

  it('is refused with BUSY while a stepAsync is pending, and accepted once it settled', async () => {
    const l = new FewShotLearner({ algorithm: 'matching', embedding, seed: 2 });
    const pending = l.stepAsync(episodes());
    expect(codeOf(() => l.dispose())).toBe('BUSY');
    await pending;
    expect(l.steps).toBe(1);
    l.dispose();
    expect(l.disposed).toBe(true);
  });
});
