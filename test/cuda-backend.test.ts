// MetaLearner's CUDA wiring (src/backend-cuda.ts, the 'cuda' paths of src/learner.ts and
// src/loader.ts), checked on any machine with a stand-in CUDA binary that reports one device
// and runs the CPU addon on its own copy of the state (test/fixtures/fake-cuda-addon.cjs,
// loaded through MAML_CUDA_PATH). A learner on it must match a CPU learner exactly (the same
// arithmetic), read the state back only when asked, send new step weights, and adapt on the
// "device". The GPU kernels themselves are tested in cuda-host and cuda-parity.
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MamlError, MetaLearner, sinusoid, type Algorithm, type ModelSpec } from '../src/index.js';
import { _resetLoaderForTests, backendInfo, resolveDevice } from '../src/loader.js';
import { codeOf, rejection } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fake = path.join(here, 'fixtures', 'fake-cuda-addon.cjs');
const stand = createRequire(import.meta.url)(fake) as { calls: Record<string, number>; failNextAdaptAsync: string | null };
const calls = stand.calls;
const saved = { path: process.env.MAML_CUDA_PATH, off: process.env.MAML_NATIVE_NO_CUDA };

beforeAll(() => {
  process.env.MAML_CUDA_PATH = fake;
  delete process.env.MAML_NATIVE_NO_CUDA;
  _resetLoaderForTests();
});
afterAll(() => {
  if (saved.path === undefined) delete process.env.MAML_CUDA_PATH;
  else process.env.MAML_CUDA_PATH = saved.path;
  if (saved.off !== undefined) process.env.MAML_NATIVE_NO_CUDA = saved.off;
  _resetLoaderForTests();
});

const SINE: ModelSpec = { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' };


describe('MetaLearner with device cuda (stand-in CUDA binary)', () => {
  it("'auto' and 'cuda' pick the device; backendInfo reports no error", () => {
    expect(resolveDevice('auto').device).toBe('cuda');
    expect(resolveDevice('cuda').reason).toContain('Fake GPU');
    expect(new MetaLearner({ model: SINE }).device).toBe('cuda');
    expect(backendInfo().cuda.error).toBeUndefined();
  });

  for (const algorithm of ['maml', 'meta-sgd', 'anil', 'reptile'] as Algorithm[]) {
    it(`${algorithm}: steps, stepAsync, params and rates match a CPU learner exactly`, async () => {
      const o = { model: SINE, algorithm, innerSteps: 2, seed: 3, optimizer: { kind: 'adam' as const, lr: 1e-3 } };
      const gpu = new MetaLearner({ ...o, device: 'cuda' });
      const cpu = new MetaLearner({ ...o, device: 'cpu' });
      const tasks = sinusoid({ shots: 5, queries: 5, seed: 2 });
      for (let i = 0; i < 3; i++) {
        const b = tasks.sample(4);
        expect(gpu.step(b)).toEqual(cpu.step(b));
      }
      const b = tasks.sample(4);
      expect(await gpu.stepAsync(b)).toEqual(await cpu.stepAsync(b));
      expect(gpu.params).toEqual(cpu.params);
      expect(gpu.innerLr).toEqual(cpu.innerLr);
      expect(gpu.stepCount).toBe(4);
    });
  }

  it('reads the state back only when it is asked for, and only once after a step', () => {
    const gpu = new MetaLearner({ model: SINE, algorithm: 'maml', seed: 1, device: 'cuda' });
    const tasks = sinusoid({ shots: 5, queries: 5, seed: 4 });
    const before = calls.pull!;
    gpu.step(tasks.sample(3));
    gpu.step(tasks.sample(3));
    expect(calls.pull).toBe(before);
    const p1 = gpu.params;
    const p2 = gpu.params;
    expect(calls.pull).toBe(before + 1);
    expect(p1).toEqual(p2);
  });

  it('new step weights reach the device with the next step', () => {
    const o = { model: SINE, algorithm: 'maml' as const, innerSteps: 2, seed: 5 };
    const gpu = new MetaLearner({ ...o, device: 'cuda' });
    const cpu = new MetaLearner({ ...o, device: 'cpu' });
    const tasks = sinusoid({ shots: 5, queries: 5, seed: 6 });
    const before = calls.weights!;
    gpu.stepWeights = cpu.stepWeights = [0.2, 0.3, 0.5];
    const b = tasks.sample(3);
    expect(gpu.step(b)).toEqual(cpu.step(b));
    expect(calls.weights).toBe(before + 1);
    gpu.step(b);
    expect(calls.weights).toBe(before + 1);
  });

  it('adapt, adaptBatch and adaptAsync run on the device and match the CPU', async () => {
    const o = { model: SINE, algorithm: 'meta-sgd' as const, innerSteps: 1, seed: 7 };
    const gpu = new MetaLearner({ ...o, device: 'cuda' });
    const cpu = new MetaLearner({ ...o, device: 'cpu' });
    const tasks = sinusoid({ shots: 5, queries: 5, seed: 8 });
    const b = tasks.sample(3);
    gpu.step(b);
    cpu.step(b);
    const before = calls.adapt!;
    const x = Float32Array.from([0.5, -1, 2]), y = Float32Array.from([0.1, 0.2, -0.3]);
    expect(gpu.adapt({ x, y }, { steps: 3 }).params).toEqual(cpu.adapt({ x, y }, { steps: 3 }).params);
    const [ga, ca] = [gpu.adaptBatch(b), cpu.adaptBatch(b)];
    ga.forEach((m, t) => expect(m.params).toEqual(ca[t]!.params));
    const asyncBefore = calls.adaptAsync!;
    const [gs, cs] = await Promise.all([gpu.adaptAsync({ x, y }), cpu.adaptAsync({ x, y })]);
    expect(gs.params).toEqual(cs.params);
    expect(calls.adapt).toBe(before + 2);
    expect(calls.adaptAsync).toBe(asyncBefore + 1); // off the event loop
  });

  it('adaptBatchAsync and adaptAsync on the device run in call order with stepAsync, through the asynchronous entry', async () => {
    const o = { model: SINE, algorithm: 'maml' as const, innerSteps: 1, seed: 31 };
    const gpu = new MetaLearner({ ...o, device: 'cuda' });
    const cpu = new MetaLearner({ ...o, device: 'cpu' });
    const tasks = sinusoid({ shots: 5, queries: 5, seed: 32 });
    const [b1, b2, users] = [tasks.sample(3), tasks.sample(3), tasks.sample(6)];
    const x = users.xs.subarray(0, 5), y = users.ys.subarray(0, 5);
    const [sync, async] = [calls.adapt!, calls.adaptAsync!];
    const s1 = gpu.stepAsync(b1);
    const many = gpu.adaptBatchAsync(users, { steps: 3 });
    const one = gpu.adaptAsync({ x, y }, { steps: 3 });
    const s2 = gpu.stepAsync(b2);
    const original = users.xs.slice();
    users.xs.fill(7); // the support sets were copied when the calls were made
    const [g1, gMany, gOne, g2] = await Promise.all([s1, many, one, s2]);
    users.xs.set(original);
    // the adaptations see θ after the first step and before the second
    const r1 = cpu.step(b1);
    const wantMany = cpu.adaptBatch(users, { steps: 3 }), wantOne = cpu.adapt({ x, y }, { steps: 3 });
    const r2 = cpu.step(b2);
    expect(g1).toEqual(r1);
    gMany.forEach((m, t) => expect(m.params).toEqual(wantMany[t]!.params));
    expect(gOne.params).toEqual(wantOne.params);
    expect(g2).toEqual(r2);
    expect(calls.adapt).toBe(sync);
    expect(calls.adaptAsync! - async).toBe(2);
  });

  it('a device error in an asynchronous adaptation rejects with its code; the learner stays usable, in order', async () => {
    const o = { model: SINE, algorithm: 'maml' as const, innerSteps: 1, seed: 37 };
    const gpu = new MetaLearner({ ...o, device: 'cuda' });
    const cpu = new MetaLearner({ ...o, device: 'cpu' });
    const tasks = sinusoid({ shots: 5, queries: 5, seed: 38 });
    const [b, users] = [tasks.sample(3), tasks.sample(4)];
    stand.failNextAdaptAsync = 'OUT_OF_MEMORY';
    const failed = gpu.adaptBatchAsync(users);
    const stepped = gpu.stepAsync(b); // queued behind the failing adaptation: runs anyway
    const err = await rejection(failed);
    expect(err).toBeInstanceOf(MamlError);
    expect(err.code).toBe('OUT_OF_MEMORY');
    expect(await stepped).toEqual(cpu.step(b));
    expect(gpu.params).toEqual(cpu.params); // no longer busy
    const again = await gpu.adaptBatchAsync(users);
    cpu.adaptBatch(users).forEach((m, t) => expect(again[t]!.params).toEqual(m.params));
  });

  it('on the device an asynchronous adaptation holds the state: reads and synchronous calls throw BUSY until it settles', async () => {
    const gpu = new MetaLearner({ model: SINE, seed: 33, device: 'cuda' });
    const users = sinusoid({ shots: 5, queries: 5, seed: 34 }).sample(4);
    const pending = gpu.adaptBatchAsync(users);
    await Promise.resolve(); // the queued adaptation starts in a microtask
    expect(codeOf(() => gpu.params)).toBe('BUSY');
    expect(codeOf(() => gpu.step(users))).toBe('BUSY');
    expect(codeOf(() => gpu.adapt({ x: users.xs.subarray(0, 5), y: users.ys.subarray(0, 5) }))).toBe('BUSY');
    expect(codeOf(() => gpu.dispose())).toBe('BUSY');
    expect((await pending).length).toBe(4);
    expect(gpu.params.length).toBeGreaterThan(0);
    gpu.step(users);
  });

  it('on the device adaptAsync calls queue in call order: one made before a stepAsync in the same turn sees θ before that step', async () => {
    const o = { model: SINE, algorithm: 'maml' as const, innerSteps: 1, seed: 35 };
    const gpu = new MetaLearner({ ...o, device: 'cuda' });
    const cpu = new MetaLearner({ ...o, device: 'cpu' });
    const tasks = sinusoid({ shots: 5, queries: 5, seed: 36 });
    const [b, users] = [tasks.sample(3), tasks.sample(2)];
    const support = (t: number) => ({ x: users.xs.subarray(5 * t, 5 * t + 5), y: users.ys.subarray(5 * t, 5 * t + 5) });
    const async = calls.adaptAsync!;
    const pending = [gpu.adaptAsync(support(0)), gpu.adaptAsync(support(1))];
    const stepped = gpu.stepAsync(b);
    expect(codeOf(() => gpu.step(b))).toBe('BUSY'); // the device is spoken for until they settle
    const want = [cpu.adapt(support(0)), cpu.adapt(support(1))];
    const r = cpu.step(b);
    const got = await Promise.all(pending);
    got.forEach((m, t) => expect(m.params).toEqual(want[t]!.params));
    expect(await stepped).toEqual(r);
    expect(calls.adaptAsync! - async).toBe(2); // one device call each: no coalescing on the GPU
    expect(gpu.params).toEqual(cpu.params);
  });

  it("a model the kernels do not take (17 layers): 'auto' falls back to the CPU with the reason, 'cuda' throws UNSUPPORTED", () => {
    const model: ModelSpec = { layers: Array.from({ length: 18 }, (_, i) => (i === 0 || i === 17 ? 1 : 3)), activation: 'tanh', loss: 'mse' };
    const auto = new MetaLearner({ model, seed: 1 });
    expect(auto.device).toBe('cpu');
    expect(auto.deviceReason).toMatch(/^CUDA not used: .*at most 16 layers/);
    auto.step(sinusoid({ shots: 3, queries: 3, seed: 1 }).sample(2));
    let code: unknown;
    try {
      new MetaLearner({ model, device: 'cuda' });
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).toBe('UNSUPPORTED');
  });

  it('save and load round-trip the device state', () => {
    const gpu = new MetaLearner({ model: SINE, seed: 9, device: 'cuda' });
    gpu.step(sinusoid({ shots: 5, queries: 5, seed: 10 }).sample(3));
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'maml-cuda-')), 'l.safetensors');
    gpu.save(file);
    const back = MetaLearner.load(file, { device: 'cuda' });
    expect(back.device).toBe('cuda');
    expect(back.params).toEqual(gpu.params);
    expect(back.stepCount).toBe(1);
  });

  it('stepAsync runs through the asynchronous native entry, in call order, and equals step', async () => {
    const o = { model: SINE, algorithm: 'maml' as const, innerSteps: 2, seed: 11 };
    const gpu = new MetaLearner({ ...o, device: 'cuda' });
    const cpu = new MetaLearner({ ...o, device: 'cpu' });
    const tasks = sinusoid({ shots: 5, queries: 5, seed: 12 });
    const batches = [tasks.sample(3), tasks.sample(4), tasks.sample(2)];
    gpu.stepWeights = cpu.stepWeights = [0.2, 0.3, 0.5];
    const [sync, async, weights] = [calls.step!, calls.stepAsync!, calls.weights!];
    const pending = batches.map((b) => gpu.stepAsync(b)); // three calls queued in one turn
    const original = batches[0]!.xs.slice();
    batches[0]!.xs.fill(9); // the batch was copied when stepAsync was called
    const got = await Promise.all(pending);
    batches[0]!.xs.set(original);
    expect(got).toEqual(batches.map((b) => cpu.step(b)));
    expect(calls.stepAsync! - async).toBe(3);
    expect(calls.step).toBe(sync);
    expect(calls.weights! - weights).toBe(1); // new weights sent once, with the first step
    expect(gpu.stepCount).toBe(3);
    expect(gpu.params).toEqual(cpu.params);
  });

  it('while a CUDA stepAsync runs, state reads and synchronous calls throw BUSY; afterwards all work', async () => {
    const gpu = new MetaLearner({ model: SINE, algorithm: 'meta-sgd', seed: 13, device: 'cuda' });
    const b = sinusoid({ shots: 5, queries: 5, seed: 14 }).sample(3);
    const pending = gpu.stepAsync(b);
    await Promise.resolve(); // the queued step starts in a microtask
    expect(codeOf(() => gpu.params)).toBe('BUSY');
    expect(codeOf(() => gpu.innerLr)).toBe('BUSY');
    expect(codeOf(() => gpu.step(b))).toBe('BUSY');
    expect(codeOf(() => gpu.dispose())).toBe('BUSY');
    const adapted = gpu.adaptAsync({ x: b.xs.subarray(0, 5), y: b.ys.subarray(0, 5) }); // queued behind the step
    expect(Number.isFinite((await pending).loss)).toBe(true);
    expect((await adapted).params).toEqual(gpu.adapt({ x: b.xs.subarray(0, 5), y: b.ys.subarray(0, 5) }).params);
    expect(gpu.stepCount).toBe(1);
  });

  it('a failing CUDA stepAsync rejects with the MamlError code and leaves the learner usable', async () => {
    const gpu = new MetaLearner({ model: SINE, innerLr: 1e30, seed: 15, device: 'cuda' });
    const b = sinusoid({ shots: 5, queries: 5, seed: 16 }).sample(3);
    const before = gpu.params;
    const err = await rejection(gpu.stepAsync(b));
    expect(err.code).toBe('NON_FINITE');
    expect(gpu.stepCount).toBe(0);
    expect(gpu.params).toEqual(before);
    expect((await rejection(gpu.stepAsync({ ...b, ys: new Float32Array(1) }))).code).toBe('SHAPE_MISMATCH');
    const ok = new MetaLearner({ model: SINE, seed: 15, device: 'cuda' });
    expect(Number.isFinite((await ok.stepAsync(b)).loss)).toBe(true);
  });

  it('dispose frees the device state at once; later calls throw DISPOSED; a second dispose does nothing', async () => {
    const gpu = new MetaLearner({ model: SINE, seed: 17, device: 'cuda' });
    const b = sinusoid({ shots: 5, queries: 5, seed: 18 }).sample(3);
    gpu.step(b);
    const freed = calls.dispose!;
    gpu.dispose();
    expect(calls.dispose).toBe(freed + 1);
    expect(gpu.disposed).toBe(true);
    expect(codeOf(() => gpu.params)).toBe('DISPOSED');
    expect(codeOf(() => gpu.step(b))).toBe('DISPOSED');
    expect(codeOf(() => gpu.adapt({ x: b.xs.subarray(0, 5), y: b.ys.subarray(0, 5) }))).toBe('DISPOSED');
    expect((await rejection(gpu.stepAsync(b))).code).toBe('DISPOSED');
    expect((await rejection(gpu.adaptAsync({ x: b.xs.subarray(0, 5), y: b.ys.subarray(0, 5) }))).code).toBe('DISPOSED');
    gpu.dispose();
    expect(calls.dispose).toBe(freed + 1);
  });

  it('dispose waits for nothing: refused with BUSY while a stepAsync is pending, accepted after it', async () => {
    const gpu = new MetaLearner({ model: SINE, seed: 19, device: 'cuda' });
    const pending = gpu.stepAsync(sinusoid({ shots: 5, queries: 5, seed: 20 }).sample(3));
    expect(codeOf(() => gpu.dispose())).toBe('BUSY');
    expect(gpu.disposed).toBe(false);
    expect(Number.isFinite((await pending).loss)).toBe(true);
    gpu.dispose();
    expect(gpu.disposed).toBe(true);
  });
});
