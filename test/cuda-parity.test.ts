// The CUDA backend against the CPU: the meta-gradient computed on the GPU (cudaMetaGradient,
// the kernels MetaLearner uses) against the float64 reference core, and MetaLearner training
// and adaptation with device 'cuda' against device 'cpu'. Fresh random inputs; every
// algorithm, loss, activation; meta-batch sizes 1, 7, 25, 130; widths that are not multiples of
// 32; the wide net 1-256-256-1 (global-memory path).
// Tolerances (relative 2-norm error, worst element reported): meta-gradients 1e-4 per inner
// step against float64 (float32 arithmetic, other summation order than the CPU), rate
// gradients 1e-3 per step; parameters after 5 training steps 1e-3 against the CPU learner.
//
// The GPU suites need a usable CUDA device and the CUDA-enabled binary
// (build-cuda/Release/maml_cuda.node); elsewhere they are skipped and say why in their names.
// The build tests run wherever nvcc is found.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it, expect } from 'vitest';
import { MamlError, MetaLearner, initParams, paramCount, sinusoid, type Algorithm, type ModelSpec } from '../src/index.js';
import { checkBatch, checkInner, type MetaBatch } from '../src/inner.js';
import { backendInfo, loadCuda, loadNative } from '../src/loader.js';
import { checkModel } from '../src/model.js';
import { checkOptimizer } from '../src/learner.js';
import type { CudaAddon } from '../src/native-types.js';
import { Rng } from '../src/rng.js';
// @ts-expect-error: a plain ES module without type declarations
import { findNvcc } from '../scripts/build-native.mjs';
import { MODELS, expectClose, modelName, randomArray, randomTargets } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cudaBinary = process.env.MAML_CUDA_PATH ?? path.join(root, 'build-cuda', 'Release', 'maml_cuda.node');
const info = backendInfo();
const cuda = loadCuda() as CudaAddon | null;
const kernels = typeof cuda?.cudaMetaGradient === 'function';
const device = kernels && info.cuda.devices.length > 0 && !/no usable CUDA device/.test(info.cuda.error ?? '');
const noDeviceWhy = !cuda
  ? `no CUDA binary: ${info.cuda.error}`
  : !kernels
    ? 'the CUDA binary has no meta-step kernels (stale build: npm run build:cuda)'
    : `no usable CUDA device: ${info.cuda.error}`;
const nvcc = findNvcc() as string | null;
const cudaWanted = nvcc !== null && ['', '0', 'false'].includes(process.env.MAML_NATIVE_NO_CUDA ?? '');

describe('the CUDA build', () => {
  it.skipIf(!cudaWanted)(`exists where nvcc is found (built at install time)${cudaWanted ? '' : ' (skipped: no nvcc, or MAML_NATIVE_NO_CUDA)'}`, () => {
    expect(fs.existsSync(cudaBinary), `${cudaBinary} missing although nvcc is at ${nvcc}: see build-cuda/cuda-build.log`).toBe(true);
    expect(cuda, info.cuda.error).not.toBeNull();
    expect(kernels, 'the CUDA binary lacks cudaMetaGradient: rebuild with `npm run build:cuda`').toBe(true);
    expect(cuda!.deviceInfo().cudaCompiled).toBe(true);
  });

  it.skipIf(!kernels || device)(`without a device, the GPU entry points throw NO_DEVICE instead of aborting${kernels && !device ? '' : ' (skipped: needs the CUDA binary and no device)'}`, () => {
    const model: ModelSpec = { layers: [1, 8, 1], activation: 'relu', loss: 'mse' };
    const batch = sinusoid({ shots: 3, queries: 3, seed: 1 }).sample(2);
    const m = checkModel(model, 't');
    const a = { layers: m.layers, activation: m.activation, loss: m.loss, params: initParams(model), ...checkInner({}, m, 'float32', 't'), ...checkBatch(batch, m, 'float32', 't', true) };
    let code: unknown;
    try {
      cuda!.cudaMetaGradient(a);
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).toBe('NO_DEVICE');
    let err: unknown;
    try {
      new MetaLearner({ model, device: 'cuda' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MamlError);
    expect((err as MamlError).code).toBe('NO_DEVICE');
    expect(new MetaLearner({ model, device: 'auto' }).device).toBe('cpu');
  });
});

const ALGOS: Algorithm[] = ['maml', 'fomaml', 'reptile', 'meta-sgd', 'anil'];
const SINE: ModelSpec = { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' };
const WIDE: ModelSpec = { layers: [1, 256, 256, 1], activation: 'relu', loss: 'mse' };
const ODD: ModelSpec[] = [
  { layers: [5, 33, 7, 3], activation: 'tanh', loss: 'mse' },
  { layers: [9, 17, 45, 4], activation: 'tanh', loss: 'cross-entropy' },
  { layers: [3, 70, 2], activation: 'relu', loss: 'binary-cross-entropy' },
];

function uniformBatch(rng: Rng, model: ModelSpec, tasks: number, K: number, Q: number): MetaBatch {
  const d0 = model.layers[0]!;
  return {
    tasks, support: K, query: Q,
    xs: randomArray(rng, tasks * K * d0, 1, Float32Array), ys: randomTargets(rng, model, tasks * K, Float32Array),
    xq: randomArray(rng, tasks * Q * d0, 1, Float32Array), yq: randomTargets(rng, model, tasks * Q, Float32Array),
  } as MetaBatch;
}

/** A float32 batch of ragged tasks: support rows so[t]..so[t + 1] and query rows qo[t]..qo[t + 1] of task t. */
function raggedBatch(rng: Rng, model: ModelSpec, so: number[], qo: number[]): MetaBatch {
  const d0 = model.layers[0]!, rs = so[so.length - 1]!, rq = qo[qo.length - 1]!;
  return {
    tasks: so.length - 1, supportOffsets: Int32Array.from(so), queryOffsets: Int32Array.from(qo),
    xs: randomArray(rng, rs * d0, 1, Float32Array), ys: randomTargets(rng, model, rs, Float32Array),
    xq: randomArray(rng, rq * d0, 1, Float32Array), yq: randomTargets(rng, model, rq, Float32Array),
  } as MetaBatch;
}

function f64(b: MetaBatch): MetaBatch {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(b)) out[k] = v instanceof Float32Array ? Float64Array.from(v) : v;
  return out as unknown as MetaBatch;
}

/** GPU meta-gradient of a float32 batch against the float64 reference core on the same values. */
function checkGradient(model: ModelSpec, batch: MetaBatch, algorithm: Algorithm, innerSteps: number, seed: number) {
  const m = checkModel(model, 't');
  const rng = new Rng(seed);
  const P = paramCount(model);
  const lr = algorithm === 'meta-sgd' ? Float32Array.from(randomArray(rng, P, 0.05).map((r) => Math.abs(r) + 0.01)) : 0.05;
  const stepWeights = algorithm === 'reptile' ? undefined : Array.from({ length: innerSteps + 1 }, (_, i) => (i === innerSteps ? 1 : 0.3));
  const opts = { algorithm, innerSteps, innerLr: lr, ...(stepWeights ? { stepWeights } : {}) };
  const p32 = Float32Array.from(initParams(model, { seed }));
  const base = { layers: m.layers, activation: m.activation, loss: m.loss, wantRateGrad: true };
  const gpu = cuda!.cudaMetaGradient({ ...base, params: p32, ...checkInner(opts, m, 'float32', 't'), ...checkBatch(batch, m, 'float32', 't', true) });
  const opts64 = { ...opts, innerLr: lr instanceof Float32Array ? Float64Array.from(lr) : lr };
  const ref = loadNative().metaGradient({
    ...base, params: Float64Array.from(p32), ...checkInner(opts64, m, 'float64', 't'), ...checkBatch(f64(batch), m, 'float64', 't', true), reference: true,
  });
  const tol = 1e-4 * innerSteps;
  expect(Math.abs(gpu.loss - ref.loss)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(ref.loss)));
  expectClose(gpu.grad, ref.grad, tol, `gradient (${gpu.memory} memory)`);
  if (ref.rateGrad) expectClose(gpu.rateGrad!, ref.rateGrad, 10 * tol, 'rate gradient');
  return gpu.memory;
}

describe.skipIf(!device)(`CUDA meta-gradients match the reference${device ? '' : ` (skipped: ${noDeviceWhy})`}`, () => {
  for (const model of [...MODELS, ...ODD, SINE]) {
    for (const algorithm of ALGOS) {
      it(`${algorithm}, ${modelName(model)}, B = 1, 7, 25, 130`, () => {
        const rng = new Rng(model.layers.length * 31 + algorithm.length);
        for (const B of [1, 7, 25, 130]) checkGradient(model, uniformBatch(rng, model, B, 5 + (B % 4), 6), algorithm, B === 7 ? 3 : 1, B);
      });
    }
  }

  it('the sinusoid net runs in shared memory; 5 inner steps', () => {
    expect(checkGradient(SINE, uniformBatch(new Rng(3), SINE, 25, 10, 10), 'maml', 5, 3)).toBe('shared');
  });

  it('the wide net 1-256-256-1 (global-memory scratch), maml and meta-sgd, 2 inner steps', () => {
    const rng = new Rng(4);
    for (const algorithm of ['maml', 'meta-sgd'] as Algorithm[]) checkGradient(WIDE, uniformBatch(rng, WIDE, 9, 10, 10), algorithm, 2, 5);
  });

  it('ragged tasks, one with an empty support set', () => {
    const rng = new Rng(8);
    const model = ODD[1]!;
    const batch = raggedBatch(rng, model, [0, 0, 4, 11, 12], [0, 3, 5, 14, 15]);
    for (const algorithm of ALGOS) checkGradient(model, batch, algorithm, 2, 9);
  });
});

describe.skipIf(!device)(`MetaLearner on CUDA matches the CPU learner${device ? '' : ` (skipped: ${noDeviceWhy})`}`, () => {
  const cases: [ModelSpec, Algorithm, 'adam' | 'sgd'][] = [
    [SINE, 'maml', 'adam'], [SINE, 'meta-sgd', 'adam'], [MODELS[2]!, 'anil', 'sgd'], [ODD[2]!, 'fomaml', 'adam'], [SINE, 'reptile', 'sgd'],
  ];
  for (const [model, algorithm, kind] of cases) {
    it(`5 steps of ${algorithm} with ${kind}, ${modelName(model)}, then adaptBatch`, () => {
      const o = { model, algorithm, innerSteps: 2, seed: 7, optimizer: { kind, lr: 1e-3, momentum: kind === 'sgd' ? 0.9 : 0, clipNorm: 10 } };
      const gpu = new MetaLearner({ ...o, device: 'cuda' });
      const cpu = new MetaLearner({ ...o, device: 'cpu' });
      expect(gpu.device).toBe('cuda');
      const rng = new Rng(12);
      for (let i = 0; i < 5; i++) {
        const batch = uniformBatch(rng, model, 25, 10, 10);
        const a = gpu.step(batch), b = cpu.step(batch);
        expect(Math.abs(a.loss - b.loss)).toBeLessThanOrEqual(1e-3 * Math.max(1, Math.abs(b.loss)));
      }
      expectClose(gpu.params, cpu.params, 1e-3, 'parameters after 5 steps');
      if (algorithm === 'meta-sgd') expectClose(gpu.innerLr, cpu.innerLr, 1e-3, 'learned rates');
      const support = uniformBatch(rng, model, 7, 10, 1);
      const ga = gpu.adaptBatch(support), ca = cpu.adaptBatch(support);
      for (let t = 0; t < 7; t++) expectClose(ga[t]!.params, ca[t]!.params, 1e-3, `adapted task ${t}`);
    });
  }
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe.skipIf(!device)(`CUDA launches in chunks, asynchronous steps and dispose on the device${device ? '' : ` (skipped: ${noDeviceWhy})`}`, () => {
  it('the wide net in launches of a few tasks (MAML_CUDA_SCRATCH_BYTES) gives the same meta-gradient bit for bit', () => {
    const m = checkModel(WIDE, 't');
    const batch = uniformBatch(new Rng(21), WIDE, 10, 10, 10);
    const args = {
      layers: m.layers, activation: m.activation, loss: m.loss, params: Float32Array.from(initParams(WIDE, { seed: 2 })),
      ...checkInner({ algorithm: 'maml', innerSteps: 2, innerLr: 0.05 }, m, 'float32', 't'), ...checkBatch(batch, m, 'float32', 't', true),
    };
    const saved = process.env.MAML_CUDA_SCRATCH_BYTES;
    try {
      delete process.env.MAML_CUDA_SCRATCH_BYTES;
      const whole = cuda!.cudaMetaGradient(args);
      // 1 byte: one task per launch; 5 MB: 3 tasks of ~1.4 MB per launch (3, 3, 3, 1)
      for (const bytes of ['1', '5000000']) {
        process.env.MAML_CUDA_SCRATCH_BYTES = bytes;
        const chunked = cuda!.cudaMetaGradient(args);
        expect(chunked.memory).toBe('global');
        expect(chunked.loss).toBe(whole.loss);
        expect(chunked.grad).toEqual(whole.grad);
      }
    } finally {
      if (saved === undefined) delete process.env.MAML_CUDA_SCRATCH_BYTES;
      else process.env.MAML_CUDA_SCRATCH_BYTES = saved;
    }
  });

  // Variant 3 changes the wide layers' products of the global-memory kernel (another order of the
  // forward sums); variant 4 runs each task of a network that does not fit one block on a cluster
  // of 2 to 8 blocks (native/cuda/task_cluster.hpp). Both: the reference tolerance, and
  // reproducible bits. Shapes (all too large for one block's shared memory): the wide net; a
  // 300-input, 77-output layer (not a multiple of variant 3's 16-input tiles, fewer outputs than
  // threads); a 300-output layer (more outputs than threads); sets of more than 16 rows (row
  // chunks); ragged tasks with an empty support set; every loss. Variant 4 keeps every row's
  // activations in every block, so the ragged batch's sets of up to 40 rows do not fit its
  // clusters: they run the global-memory kernel (its fallback), and the test says so.
  function wideVariant(variant: '3' | '4') {
    const saved = process.env.MAML_CUDA_KERNEL;
    try {
      process.env.MAML_CUDA_KERNEL = variant;
      const rng = new Rng(27);
      const wideOdd: ModelSpec = { layers: [3, 300, 77, 3], activation: 'tanh', loss: 'mse' };
      const wide = (memory: string) => expect(memory).toBe(variant === '4' ? 'cluster' : 'global');
      for (const algorithm of ALGOS) wide(checkGradient(WIDE, uniformBatch(rng, WIDE, 9, 10, 10), algorithm, 2, 11));
      wide(checkGradient(wideOdd, uniformBatch(rng, wideOdd, 7, 20, 13), 'maml', 2, 12));
      wide(checkGradient(wideOdd, uniformBatch(rng, wideOdd, 5, 16, 3), 'meta-sgd', 3, 13));
      for (const loss of ['cross-entropy', 'binary-cross-entropy'] as const) {
        const model: ModelSpec = { layers: [5, 300, 77, 4], activation: 'relu', loss };
        wide(checkGradient(model, uniformBatch(rng, model, 6, 11, 9), 'maml', 2, 15));
      }
      // more outputs (300) than the block's threads: two column blocks
      const tall: ModelSpec = { layers: [4, 64, 300, 2], activation: 'tanh', loss: 'mse' };
      wide(checkGradient(tall, uniformBatch(rng, tall, 5, 10, 14), 'maml', 2, 16));
      const ragged = raggedBatch(rng, wideOdd, [0, 0, 4, 21, 33], [0, 3, 5, 24, 40]);
      for (const algorithm of ALGOS) expect(checkGradient(wideOdd, ragged, algorithm, 2, 14)).toBe('global');
      const m = checkModel(WIDE, 't');
      const args = {
        layers: m.layers, activation: m.activation, loss: m.loss, params: Float32Array.from(initParams(WIDE, { seed: 2 })), wantRateGrad: true,
        ...checkInner({ algorithm: 'maml', innerSteps: 3 }, m, 'float32', 't'), ...checkBatch(uniformBatch(rng, WIDE, 12, 10, 10), m, 'float32', 't', true),
      };
      const first = cuda!.cudaMetaGradient(args), again = cuda!.cudaMetaGradient(args);
      expect(again.grad).toEqual(first.grad);
      expect(again.loss).toBe(first.loss);
    } finally {
      if (saved === undefined) delete process.env.MAML_CUDA_KERNEL;
      else process.env.MAML_CUDA_KERNEL = saved;
    }
  }
  it('kernel variant 3 (MAML_CUDA_KERNEL=3) matches the reference on wide nets, reproducibly', () => wideVariant('3'));

  it('stepAsync (the step on a worker thread) equals step bit for bit, in call order, with new step weights', async () => {
    const o = { model: SINE, algorithm: 'maml' as const, innerSteps: 2, seed: 9, device: 'cuda' as const };
    const [a, b] = [new MetaLearner(o), new MetaLearner(o)];
    a.stepWeights = b.stepWeights = [0.2, 0.3, 0.5];
    const rng = new Rng(22);
    const batches = [25, 7, 130].map((B) => uniformBatch(rng, SINE, B, 10, 10));
    const got = await Promise.all(batches.map((x) => a.stepAsync(x)));
    expect(got).toEqual(batches.map((x) => b.step(x)));
    expect(a.params).toEqual(b.params);
    expect(a.stepCount).toBe(3);
  });

  it('adaptBatchAsync and adaptAsync (the adaptation on a worker thread) equal adaptBatch and adapt bit for bit, in call order with stepAsync', async () => {
    const o = { model: SINE, algorithm: 'meta-sgd' as const, innerSteps: 2, seed: 5, device: 'cuda' as const };
    const [a, b] = [new MetaLearner(o), new MetaLearner(o)];
    const rng = new Rng(25);
    const [b1, b2] = [uniformBatch(rng, SINE, 25, 10, 10), uniformBatch(rng, SINE, 25, 10, 10)];
    const users = uniformBatch(rng, SINE, 300, 10, 1);
    const x = users.xs.subarray(0, 10) as Float32Array, y = users.ys!.subarray(0, 10) as Float32Array;
    // queued: step, adaptation (sees θ after the first step), step
    const s1 = a.stepAsync(b1);
    const many = a.adaptBatchAsync(users, { steps: 4 });
    const one = a.adaptAsync({ x, y }, { steps: 4 });
    const s2 = a.stepAsync(b2);
    const r1 = b.step(b1);
    const wantMany = b.adaptBatch(users, { steps: 4 }), wantOne = b.adapt({ x, y }, { steps: 4 });
    const r2 = b.step(b2);
    expect(await s1).toEqual(r1);
    const gotMany = await many;
    gotMany.forEach((m, t) => expect(m.params).toEqual(wantMany[t]!.params));
    expect((await one).params).toEqual(wantOne.params);
    expect(await s2).toEqual(r2);
    expect(a.params).toEqual(b.params);
  });

  it('the native handle: BUSY while an async step runs, DISPOSED after dispose, a second dispose does nothing', async () => {
    const m = checkModel(SINE, 't');
    const inner = checkInner({}, m, 'float32', 't');
    const h = cuda!.cudaLearnerCreate({
      layers: m.layers, activation: m.activation, loss: m.loss, ...inner, ...checkOptimizer(undefined, 't'),
      state: Float32Array.from(initParams(SINE)), learnRates: false, rates: inner.rates as Float32Array,
    });
    // 2000 tasks: the step takes long enough that the calls below run while it does
    const batch = { ...checkBatch(uniformBatch(new Rng(23), SINE, 2000, 10, 10), m, 'float32', 't', true), t: 1 };
    const pending = cuda!.cudaLearnerStepAsync(h, batch);
    expect(codeOf(() => cuda!.cudaLearnerGetState(h))).toBe('BUSY');
    expect(codeOf(() => cuda!.cudaLearnerDispose(h))).toBe('BUSY');
    expect(Number.isFinite((await pending).loss)).toBe(true);
    const adapting = cuda!.cudaLearnerAdaptAsync(h, { ...batch, steps: 5, rates: inner.rates as Float32Array, rateStepStride: 0, rateParamStride: 0 });
    expect(codeOf(() => cuda!.cudaLearnerGetState(h))).toBe('BUSY');
    expect(codeOf(() => cuda!.cudaLearnerStep(h, { ...batch, t: 2 }))).toBe('BUSY');
    expect((await adapting).length).toBe(2000 * paramCount(SINE));
    expect(cuda!.cudaLearnerGetState(h).length).toBe(paramCount(SINE));
    cuda!.cudaLearnerDispose(h);
    expect(codeOf(() => cuda!.cudaLearnerGetState(h))).toBe('DISPOSED');
    expect(codeOf(() => cuda!.cudaLearnerStep(h, { ...batch, t: 2 }))).toBe('DISPOSED');
    expect(() => cuda!.cudaLearnerDispose(h)).not.toThrow();
    const l = new MetaLearner({ model: SINE, seed: 3, device: 'cuda' });
    l.step(uniformBatch(new Rng(24), SINE, 25, 10, 10));
    l.dispose();
    expect(codeOf(() => l.params)).toBe('DISPOSED');
  });

  // last in this file: a device fault in this experimental kernel would leave the context unusable
  // for the tests after it
  it('kernel variant 4 (MAML_CUDA_KERNEL=4, a cluster of blocks per task) matches the reference on wide nets, reproducibly', () => wideVariant('4'));
});
