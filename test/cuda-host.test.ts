// The CUDA task kernel (native/cuda/task_kernel.hpp), compiled for the host with a one-thread
// block, against the plain-loop reference core (native/core/meta.hpp) in float64. This runs on
// every machine and is the proof of the kernels' logic where no GPU is present: the same
// templates run on the GPU with a block of threads (meta_kernels.cu), where only the order of
// the two block reductions (loss value, scalar-rate gradient) differs.
//
// Inputs are fresh random batches and parameters; every algorithm, loss, activation, rate
// layout, multi-step loss weights, ragged tasks, one with an empty support set (a query set is never empty: the API refuses it).
// Tolerances (relative 2-norm error, worst element reported):
//   float64 kernel vs float64 reference: 1e-11 (the same arithmetic in another order)
//   float32 kernel vs float64 reference: 2e-5 per inner step (float32 rounding through the
//   inner loop), rate gradients 10x that (they are differences of near-equal terms).
import { describe, it, expect } from 'vitest';
import { initParams, paramCount, type Algorithm, type ModelSpec } from '../src/index.js';
import { checkBatch, checkInner, type MetaBatch } from '../src/inner.js';
import { loadNative } from '../src/loader.js';
import { checkModel } from '../src/model.js';
import type { Real } from '../src/native-types.js';
import { Rng } from '../src/rng.js';
import { MODELS, compare, expectClose, modelName, randomArray, randomTargets } from './helpers.js';

type Addon = ReturnType<typeof loadNative> & {
  metaGradientCudaHost(o: unknown): { loss: number; grad: Real; rateGrad?: Real; clusterSharedBytes?: number };
  adaptBatchCudaHost(o: unknown): Real;
};
const addon = loadNative() as Addon;

const ALGOS: Algorithm[] = ['maml', 'fomaml', 'reptile', 'meta-sgd', 'anil'];
const EXTRA: ModelSpec[] = [
  { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' },
  { layers: [5, 13, 7, 3], activation: 'tanh', loss: 'mse' },
  { layers: [9, 17, 33, 4], activation: 'tanh', loss: 'cross-entropy' },
  { layers: [3, 24, 24, 24, 2], activation: 'relu', loss: 'binary-cross-entropy' },
];

type Options = { algorithm: Algorithm; innerSteps: number; innerLr: number | number[] | Float32Array | Float64Array; stepWeights?: number[] };

function args(model: ModelSpec, params: Real, batch: MetaBatch, o: Options, precision: 'float32' | 'float64') {
  const m = checkModel(model, 'test');
  const inner = checkInner(o, m, precision, 'test');
  const b = checkBatch(batch, m, precision, 'test', true);
  return { layers: m.layers, activation: m.activation, loss: m.loss, params, ...inner, ...b, wantRateGrad: true };
}

/** A ragged float64 batch: sizes drawn in [1, maxRows], the first task with an empty support set. */
function raggedBatch(rng: Rng, model: ModelSpec, tasks: number, maxRows: number): MetaBatch {
  const d0 = model.layers[0]!;
  const so = new Int32Array(tasks + 1), qo = new Int32Array(tasks + 1);
  for (let t = 0; t < tasks; t++) {
    so[t + 1] = so[t]! + (t === 0 ? 0 : 1 + rng.int(maxRows));
    qo[t + 1] = qo[t]! + 1 + rng.int(maxRows);
  }
  const rs = so[tasks]!, rq = qo[tasks]!;
  return {
    tasks,
    supportOffsets: so,
    queryOffsets: qo,
    xs: randomArray(rng, rs * d0),
    ys: randomTargets(rng, model, rs),
    xq: randomArray(rng, rq * d0),
    yq: randomTargets(rng, model, rq),
  } as MetaBatch;
}

function f32(b: MetaBatch): MetaBatch {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(b)) out[k] = v instanceof Float64Array ? Float32Array.from(v) : v;
  return out as unknown as MetaBatch;
}

function options(rng: Rng, model: ModelSpec, algorithm: Algorithm, innerSteps: number, rateKind: 'scalar' | 'per-step' | 'per-param' | 'per-step-param'): Options {
  const P = paramCount(model);
  const positive = (n: number) => Float64Array.from(randomArray(rng, n, 0.08).map((r) => Math.abs(r) + 0.02));
  let innerLr: Options['innerLr'];
  if (rateKind === 'scalar') innerLr = 0.1;
  else if (rateKind === 'per-step') innerLr = Array.from(positive(innerSteps));
  else if (rateKind === 'per-param') innerLr = positive(P);
  else innerLr = positive(innerSteps * P);
  const stepWeights = algorithm === 'reptile' ? undefined : Array.from({ length: innerSteps + 1 }, (_, i) => (i === innerSteps ? 1 : rng.uniform() * 0.5));
  return { algorithm, innerSteps, innerLr, ...(stepWeights ? { stepWeights } : {}) };
}

/** Runs the host-compiled kernel in float64 and float32 and the reference in float64; compares. */
function check(model: ModelSpec, batch64: MetaBatch, o64: Options, seed: number) {
  const p64 = Float64Array.from(initParams(model, { seed }));
  const ref = addon.metaGradient({ ...args(model, p64, batch64, o64, 'float64'), reference: true } as never);
  const k64 = addon.metaGradientCudaHost(args(model, p64, batch64, o64, 'float64'));
  const o32 = { ...o64, innerLr: o64.innerLr instanceof Float64Array ? Float32Array.from(o64.innerLr) : o64.innerLr };
  const k32 = addon.metaGradientCudaHost(args(model, Float32Array.from(p64), f32(batch64), o32, 'float32'));
  expect(k64.grad).toBeInstanceOf(Float64Array);
  expect(k32.grad).toBeInstanceOf(Float32Array);
  const tol32 = 2e-5 * Math.max(1, o64.innerSteps);
  expect(Math.abs(k64.loss - ref.loss)).toBeLessThanOrEqual(1e-11 * Math.max(1, Math.abs(ref.loss)));
  expect(Math.abs(k32.loss - ref.loss)).toBeLessThanOrEqual(tol32 * Math.max(1, Math.abs(ref.loss)));
  expectClose(k64.grad, ref.grad, 1e-11, 'float64 gradient');
  expectClose(k32.grad, ref.grad, tol32, 'float32 gradient');
  expect(k64.rateGrad === undefined).toBe(ref.rateGrad === undefined);
  if (ref.rateGrad) {
    expectClose(k64.rateGrad!, ref.rateGrad, 1e-11, 'float64 rate gradient');
    expectClose(k32.rateGrad!, ref.rateGrad, tol32 * 10, 'float32 rate gradient');
  }
  return compare(k32.grad, ref.grad).rel;
}

describe('the CUDA task kernel, compiled for the host, matches the reference core', () => {
  for (const model of [...MODELS, ...EXTRA]) {
    for (const algorithm of ALGOS) {
      for (const innerSteps of [1, 3]) {
        it(`${algorithm}, ${innerSteps} step(s), ${modelName(model)}, uniform tasks`, () => {
          const rng = new Rng(1000 * innerSteps + model.layers.reduce((a, b) => a * 7 + b, 0));
          const d0 = model.layers[0]!, B = 5, K = 6, Q = 7;
          const batch: MetaBatch = {
            tasks: B, support: K, query: Q,
            xs: randomArray(rng, B * K * d0), ys: randomTargets(rng, model, B * K),
            xq: randomArray(rng, B * Q * d0), yq: randomTargets(rng, model, B * Q),
          } as MetaBatch;
          const rateKind = algorithm === 'meta-sgd' ? 'per-param' : 'scalar';
          check(model, batch, options(rng, model, algorithm, innerSteps, rateKind), 3 + innerSteps);
        });
      }
    }
  }

  for (const rateKind of ['scalar', 'per-step', 'per-param', 'per-step-param'] as const) {
    for (const algorithm of ['maml', 'meta-sgd', 'anil'] as Algorithm[]) {
      if (rateKind === 'per-param' && algorithm !== 'meta-sgd') continue;
      if (rateKind === 'per-step-param' && algorithm !== 'meta-sgd') continue;
      it(`${algorithm} with ${rateKind} rates, multi-step loss weights, ragged tasks with empty sets`, () => {
        const rng = new Rng(77 + rateKind.length);
        for (const model of [MODELS[0]!, MODELS[3]!, MODELS[4]!]) {
          const batch = raggedBatch(rng, model, 6, 9);
          check(model, batch, options(rng, model, algorithm, 2, rateKind), 11);
        }
      });
    }
  }

  it('zero inner steps, and a loss weight of zero on the last step', () => {
    const rng = new Rng(5);
    const model = MODELS[1]!;
    const batch = raggedBatch(rng, model, 4, 5);
    check(model, batch, { algorithm: 'maml', innerSteps: 0, innerLr: 0.1 }, 2);
    check(model, batch, { algorithm: 'maml', innerSteps: 2, innerLr: [0.1, 0.2], stepWeights: [0.3, 0.7, 0] }, 2);
  });

  // The adaptation keeps θ_s in two buffers used in turn (its working memory does not grow with
  // the step count): odd and even step counts end in different buffers, and zero steps in the first.
  it('adaptation (the inner loop alone) matches the reference adaptBatch, for 0 to 7 steps', () => {
    const rng = new Rng(9);
    let k = 0;
    for (const model of [MODELS[0]!, MODELS[2]!, EXTRA[0]!]) {
      for (const algorithm of ['maml', 'anil', 'meta-sgd'] as Algorithm[]) {
        const steps = [3, 1, 2, 7, 4][k++ % 5]!;
        const batch = raggedBatch(rng, model, 5, 8);
        const o = options(rng, model, algorithm, steps, algorithm === 'meta-sgd' ? 'per-param' : 'per-step');
        const p64 = Float64Array.from(initParams(model, { seed: 4 }));
        const a = args(model, p64, batch, o, 'float64');
        const ref = addon.adaptBatch({ ...a, reference: true } as never);
        expectClose(addon.adaptBatchCudaHost(a), ref, 1e-12, `${algorithm} adapted parameters ${modelName(model)}, ${steps} steps`);
        expect(ref.length).toBe(5 * p64.length);
      }
    }
    const model = MODELS[0]!;
    const p = Float64Array.from(initParams(model, { seed: 5 }));
    const a = args(model, p, raggedBatch(rng, model, 3, 6), { algorithm: 'maml', innerSteps: 0, innerLr: 0.1 }, 'float64');
    const zero = addon.adaptBatchCudaHost(a);
    for (let t = 0; t < 3; t++) expect(Array.from(zero.subarray(t * p.length, (t + 1) * p.length))).toEqual(Array.from(p));
  });

  // The GPU's decomposition of the work: each task on a block of host threads that meet at a
  // barrier in every sync(). Against the one-thread run (float64): 1e-12, since only the two
  // block reductions sum in another order; and bit-identical over repeated runs (a missing
  // barrier or two threads writing one element would make it wrong or irreproducible).
  for (const threads of [3, 32]) {
    it(`a block of ${threads} host threads gives the one-thread result, reproducibly`, () => {
      const rng = new Rng(40 + threads);
      for (const [model, algorithm, rateKind] of [
        [EXTRA[0]!, 'maml', 'per-step'], [MODELS[2]!, 'meta-sgd', 'per-step-param'], [EXTRA[2]!, 'anil', 'scalar'],
        [MODELS[4]!, 'fomaml', 'scalar'], [EXTRA[3]!, 'reptile', 'scalar'], [MODELS[0]!, 'maml', 'scalar'],
      ] as [ModelSpec, Algorithm, 'scalar' | 'per-step' | 'per-param' | 'per-step-param'][]) {
        const batch = raggedBatch(rng, model, 4, 9);
        const o = options(rng, model, algorithm, 2, rateKind);
        const a = args(model, Float64Array.from(initParams(model, { seed: 6 })), batch, o, 'float64');
        const one = addon.metaGradientCudaHost(a);
        const many = addon.metaGradientCudaHost({ ...(a as object), blockThreads: threads });
        const again = addon.metaGradientCudaHost({ ...(a as object), blockThreads: threads });
        const what = `${algorithm} ${modelName(model)}`;
        expectClose(many.grad, one.grad, 1e-12, `${what}: gradient`);
        if (one.rateGrad) expectClose(many.rateGrad!, one.rateGrad, 1e-12, `${what}: rate gradient`);
        expect(Math.abs(many.loss - one.loss)).toBeLessThanOrEqual(1e-12 * Math.max(1, Math.abs(one.loss)));
        expect(Array.from(again.grad)).toEqual(Array.from(many.grad));
        const adapted = addon.adaptBatchCudaHost({ ...(a as object), blockThreads: threads });
        expect(Array.from(adapted)).toEqual(Array.from(addon.adaptBatchCudaHost(a)));
      }
    });
  }

  // The global-memory kernel of wide networks computes the forward-type products of layers
  // with din, dout >= 32 through shared-memory tiles (64 x 32 weights, 32 x 32 inputs): partial
  // tiles in every direction here (70 = 32 + 32 + 6 inputs, 45 of 64 outputs, 40 rows = 32 + 8).
  it('wide layers through the tiles: reference match in float64 and float32, same result for 1, 3 and 32 threads', () => {
    const rng = new Rng(17);
    for (const [model, algorithm, rateKind, rows] of [
      [{ layers: [3, 70, 45, 3], activation: 'relu', loss: 'mse' }, 'maml', 'per-step', 9],
      [{ layers: [40, 33, 4], activation: 'tanh', loss: 'cross-entropy' }, 'meta-sgd', 'per-param', 40],
      [{ layers: [1, 256, 256, 1], activation: 'relu', loss: 'mse' }, 'maml', 'scalar', 10],
      [{ layers: [6, 64, 96, 2], activation: 'tanh', loss: 'binary-cross-entropy' }, 'anil', 'scalar', 12],
    ] as [ModelSpec, Algorithm, 'scalar' | 'per-step' | 'per-param', number][]) {
      const batch = raggedBatch(rng, model, 3, rows);
      const o = options(rng, model, algorithm, 2, rateKind);
      const p64 = Float64Array.from(initParams(model, { seed: 8 }));
      const what = `${algorithm} ${modelName(model)}`;
      const ref = addon.metaGradient({ ...args(model, p64, batch, o, 'float64'), reference: true } as never);
      const a64 = { ...(args(model, p64, batch, o, 'float64') as object), tiled: true };
      const one = addon.metaGradientCudaHost(a64);
      expectClose(one.grad, ref.grad, 1e-11, `${what}: tiled float64 gradient`);
      if (ref.rateGrad) expectClose(one.rateGrad!, ref.rateGrad, 1e-11, `${what}: tiled float64 rate gradient`);
      const o32 = { ...o, innerLr: o.innerLr instanceof Float64Array ? Float32Array.from(o.innerLr) : o.innerLr };
      const k32 = addon.metaGradientCudaHost({ ...(args(model, Float32Array.from(p64), f32(batch), o32, 'float32') as object), tiled: true });
      expectClose(k32.grad, ref.grad, 4e-5, `${what}: tiled float32 gradient`);
      for (const blockThreads of [3, 32]) {
        const many = addon.metaGradientCudaHost({ ...a64, blockThreads });
        expect(Array.from(many.grad), `${what}, ${blockThreads} threads`).toEqual(Array.from(one.grad));
      }
      const adapted = addon.adaptBatchCudaHost({ ...a64, blockThreads: 32 });
      expectClose(adapted, addon.adaptBatch({ ...args(model, p64, batch, o, 'float64'), reference: true } as never), 1e-12, `${what}: tiled adaptation`);
    }
  });

  // Which path a backward phase takes depends on the block: weight gradients in register tiles
  // where a layer has at least 4 tiles per thread (so 1 thread tiles almost every layer, 128
  // threads only the 256-wide one), the layer's inputs and deltas staged in the tile scratch
  // where they fit (tasks of at most 10 rows for the 256-wide layer with R; the ragged tasks
  // here have up to 12). Those paths change where values are read from and which thread
  // computes which sum, never the order of a sum: float32 meta-gradients must not depend on them.
  it('float32: register-tiled and staged backward phases give the same bits as the plain ones', () => {
    const rng = new Rng(23);
    for (const [model, algorithm, rows] of [
      [{ layers: [1, 256, 256, 1], activation: 'relu', loss: 'mse' }, 'maml', 12],
      [{ layers: [7, 64, 37, 3], activation: 'tanh', loss: 'cross-entropy' }, 'meta-sgd', 9],
      [{ layers: [3, 70, 45, 3], activation: 'relu', loss: 'binary-cross-entropy' }, 'anil', 14],
      [{ layers: [5, 131, 33, 2], activation: 'tanh', loss: 'mse' }, 'reptile', 6],
    ] as [ModelSpec, Algorithm, number][]) {
      const batch = f32(raggedBatch(rng, model, 3, rows));
      const o = options(rng, model, algorithm, 2, algorithm === 'meta-sgd' ? 'per-param' : 'per-step');
      const o32 = { ...o, innerLr: o.innerLr instanceof Float64Array ? Float32Array.from(o.innerLr) : o.innerLr };
      const a = args(model, Float32Array.from(initParams(model, { seed: 4 })), batch, o32, 'float32') as object;
      for (const tiled of [false, true]) {
        const one = addon.metaGradientCudaHost({ ...a, tiled, blockThreads: 1 });
        const many = addon.metaGradientCudaHost({ ...a, tiled, blockThreads: 128 });
        const what = `${algorithm} ${modelName(model)}, tiles ${tiled}`;
        expect(Array.from(many.grad), what).toEqual(Array.from(one.grad));
        // the loss and a per-step rate's gradient are sums over the block's threads (a tree
        // whose shape depends on the block size): equal up to rounding
        if (one.rateGrad) expectClose(many.rateGrad!, one.rateGrad, 1e-5, `${what}: rate gradient`);
        expect(Math.abs(many.loss - one.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(one.loss));
      }
    }
  }, 60_000);

  // Without the tile scratch (where its row-register products do not run), kernel variant 3's
  // code is its weight-gradient tiles specialised per pass (no branch in their row loop) and its
  // delta rows with the R part fixed at compile time, which compute every sum as variant 1 does:
  // the same bits, in float32 and float64, for a single thread (which tiles almost every layer)
  // and a block of 32.
  it('kernel variant 3 without the tile scratch gives variant 1 bit for bit', () => {
    const rng = new Rng(29);
    for (const [model, algorithm, rateKind, rows] of [
      [{ layers: [1, 256, 256, 1], activation: 'relu', loss: 'mse' }, 'maml', 'scalar', 12],
      [{ layers: [7, 64, 37, 3], activation: 'tanh', loss: 'cross-entropy' }, 'meta-sgd', 'per-param', 9],
      [{ layers: [3, 70, 45, 3], activation: 'relu', loss: 'binary-cross-entropy' }, 'anil', 'per-step', 14],
      [{ layers: [5, 131, 33, 2], activation: 'tanh', loss: 'mse' }, 'fomaml', 'scalar', 6],
      [{ layers: [2, 9, 5, 1], activation: 'relu', loss: 'mse' }, 'reptile', 'scalar', 5],
      [{ layers: [4, 19, 3], activation: 'tanh', loss: 'cross-entropy' }, 'maml', 'per-step-param', 8],
    ] as [ModelSpec, Algorithm, 'scalar' | 'per-step' | 'per-param' | 'per-step-param', number][]) {
      const batch = raggedBatch(rng, model, 3, rows);
      const o = options(rng, model, algorithm, 2, rateKind);
      const p64 = Float64Array.from(initParams(model, { seed: 6 }));
      const o32 = { ...o, innerLr: o.innerLr instanceof Float64Array ? Float32Array.from(o.innerLr) : o.innerLr };
      for (const a of [args(model, p64, batch, o, 'float64'), args(model, Float32Array.from(p64), f32(batch), o32, 'float32')] as object[])
        for (const blockThreads of [1, 32]) {
          const one = addon.metaGradientCudaHost({ ...a, blockThreads });
          const two = addon.metaGradientCudaHost({ ...a, blockThreads, kernelVariant: 3 });
          const what = `${algorithm} ${modelName(model)}, ${blockThreads} threads`;
          expect(Array.from(two.grad), what).toEqual(Array.from(one.grad));
          if (one.rateGrad) expect(Array.from(two.rateGrad!), what).toEqual(Array.from(one.rateGrad));
          expect(two.loss, what).toBe(one.loss);
        }
    }
  }, 120_000);

  // Kernel variant 3 (MAML_CUDA_KERNEL=3 on the GPU) computes the wide layers' products with one
  // output column per thread and all the rows in registers: another order of the forward sums
  // (so not variant 1's bits), the same tolerance against the reference. The shapes cover its
  // edges: inputs not a multiple of its 16-input tiles (70, 45, 33, 131), more outputs than
  // threads (column blocks for 3 and 32 threads), every padded row count (4, 8, 12, 16), sets
  // of more than 16 rows (the forward and the deltas in row chunks: up to 30 rows above a wide
  // layer with deltas below it), an empty support set, R-forward with and without an input R part.
  it('kernel variant 3: reference match in float64 and float32, same bits for 1, 3 and 32 threads', () => {
    const rng = new Rng(31);
    let differs = 0;
    for (const [model, algorithm, rateKind, rows] of [
      [{ layers: [1, 256, 256, 1], activation: 'relu', loss: 'mse' }, 'maml', 'scalar', 10],
      [{ layers: [3, 70, 45, 3], activation: 'tanh', loss: 'mse' }, 'maml', 'per-step', 30],
      [{ layers: [40, 33, 4], activation: 'tanh', loss: 'cross-entropy' }, 'meta-sgd', 'per-param', 24],
      [{ layers: [6, 64, 131, 2], activation: 'relu', loss: 'binary-cross-entropy' }, 'anil', 'scalar', 7],
      [{ layers: [5, 48, 96, 3], activation: 'relu', loss: 'mse' }, 'fomaml', 'per-step-param', 4],
      [{ layers: [2, 37, 40, 1], activation: 'tanh', loss: 'mse' }, 'reptile', 'scalar', 16],
      // 400 outputs: 16 staged rows with their R parts exceed the scratch, so chunks of 12
      [{ layers: [3, 50, 400, 2], activation: 'tanh', loss: 'mse' }, 'meta-sgd', 'per-param', 20],
    ] as [ModelSpec, Algorithm, 'scalar' | 'per-step' | 'per-param' | 'per-step-param', number][]) {
      const batch = raggedBatch(rng, model, 4, rows);
      const o = options(rng, model, algorithm, 2, rateKind);
      const p64 = Float64Array.from(initParams(model, { seed: 12 }));
      const what = `${algorithm} ${modelName(model)}, variant 3`;
      const ref = addon.metaGradient({ ...args(model, p64, batch, o, 'float64'), reference: true } as never);
      const a64 = { ...(args(model, p64, batch, o, 'float64') as object), tiled: true };
      const three = addon.metaGradientCudaHost({ ...a64, kernelVariant: 3 });
      expectClose(three.grad, ref.grad, 1e-11, `${what}: float64 gradient`);
      if (ref.rateGrad) expectClose(three.rateGrad!, ref.rateGrad, 1e-11, `${what}: float64 rate gradient`);
      expect(Math.abs(three.loss - ref.loss)).toBeLessThanOrEqual(1e-11 * Math.max(1, Math.abs(ref.loss)));
      const one = addon.metaGradientCudaHost(a64);
      if (Array.from(one.grad).some((g, i) => g !== three.grad[i])) differs++;
      const o32 = { ...o, innerLr: o.innerLr instanceof Float64Array ? Float32Array.from(o.innerLr) : o.innerLr };
      const a32 = { ...(args(model, Float32Array.from(p64), f32(batch), o32, 'float32') as object), tiled: true, kernelVariant: 3 };
      const k32 = addon.metaGradientCudaHost(a32);
      expectClose(k32.grad, ref.grad, 4e-5, `${what}: float32 gradient`);
      for (const blockThreads of [3, 32]) {
        const many = addon.metaGradientCudaHost({ ...a32, blockThreads });
        expect(Array.from(many.grad), `${what}, ${blockThreads} threads`).toEqual(Array.from(k32.grad));
        if (k32.rateGrad) expectClose(many.rateGrad!, k32.rateGrad, 1e-5, `${what}, ${blockThreads} threads: rate gradient`);
      }
    }
    // the row-register products ran (their forward sums are in another order than variant 1's)
    expect(differs).toBeGreaterThanOrEqual(5);
  }, 120_000);

  // Kernel variant 4 (native/cuda/task_cluster.hpp: one task on a cluster of c blocks, each
  // holding its rows of every layer; the activations gathered into every block, the deltas'
  // partial sums sent to their owners) on host-emulated clusters whose blocks' memory starts as
  // NaN. Clusters of 1 to 8 blocks, more blocks than a layer has rows (the 1-output layers:
  // blocks that own nothing), every algorithm, loss and rate layout with learned rates (the
  // scalar rate gradient is a cluster reduction), ragged sets with an empty support set.
  it('the cluster kernel: reference match in float64 and float32 on clusters of 1 to 8 blocks, same bits for 1 and 3 threads per block', () => {
    const rng = new Rng(41);
    for (const [model, algorithm, rateKind, rows, c] of [
      [{ layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' }, 'maml', 'scalar', 10, 4],
      [{ layers: [3, 70, 45, 3], activation: 'tanh', loss: 'mse' }, 'maml', 'per-step', 13, 3],
      [{ layers: [40, 33, 4], activation: 'tanh', loss: 'cross-entropy' }, 'meta-sgd', 'per-param', 9, 2],
      [{ layers: [6, 64, 31, 2], activation: 'relu', loss: 'binary-cross-entropy' }, 'anil', 'scalar', 7, 4],
      [{ layers: [5, 48, 96, 3], activation: 'relu', loss: 'mse' }, 'fomaml', 'per-step-param', 4, 8],
      [{ layers: [2, 37, 40, 1], activation: 'tanh', loss: 'mse' }, 'reptile', 'scalar', 16, 5],
      [{ layers: [4, 9, 7, 5, 3], activation: 'tanh', loss: 'cross-entropy' }, 'meta-sgd', 'per-step-param', 6, 1],
      [{ layers: [3, 20, 17, 2], activation: 'relu', loss: 'mse' }, 'anil', 'per-step', 5, 6],
    ] as [ModelSpec, Algorithm, 'scalar' | 'per-step' | 'per-param' | 'per-step-param', number, number][]) {
      const batch = raggedBatch(rng, model, 4, rows);
      const o = options(rng, model, algorithm, 3, rateKind);
      const p64 = Float64Array.from(initParams(model, { seed: 14 }));
      const what = `${algorithm} ${modelName(model)}, cluster of ${c}`;
      const ref = addon.metaGradient({ ...args(model, p64, batch, o, 'float64'), reference: true } as never);
      const k64 = addon.metaGradientCudaHost({ ...(args(model, p64, batch, o, 'float64') as object), cluster: c });
      expectClose(k64.grad, ref.grad, 1e-11, `${what}: float64 gradient`);
      expect(k64.rateGrad === undefined).toBe(ref.rateGrad === undefined);
      if (ref.rateGrad) expectClose(k64.rateGrad!, ref.rateGrad, 1e-11, `${what}: float64 rate gradient`);
      expect(Math.abs(k64.loss - ref.loss)).toBeLessThanOrEqual(1e-11 * Math.max(1, Math.abs(ref.loss)));
      const o32 = { ...o, innerLr: o.innerLr instanceof Float64Array ? Float32Array.from(o.innerLr) : o.innerLr };
      const a32 = { ...(args(model, Float32Array.from(p64), f32(batch), o32, 'float32') as object), cluster: c };
      const k32 = addon.metaGradientCudaHost(a32);
      expectClose(k32.grad, ref.grad, 6e-5, `${what}: float32 gradient`);
      if (ref.rateGrad) expectClose(k32.rateGrad!, ref.rateGrad, 6e-4, `${what}: float32 rate gradient`);
      const many = addon.metaGradientCudaHost({ ...a32, blockThreads: 3 });
      expect(Array.from(many.grad), `${what}, 3 threads per block`).toEqual(Array.from(k32.grad));
      if (k32.rateGrad) expectClose(many.rateGrad!, k32.rateGrad, 1e-5, `${what}, 3 threads: rate gradient`);
    }
  }, 120_000);

  // The wide case must reach the cluster kernel on an H100/H200 (227 KB of shared memory per
  // block at most): with 10-row sets and 256 threads, clusters of 4 blocks fit and clusters of 2 do
  // not (so the GPU picks 4). A layout change that grew the blocks past the limit would silently
  // send the wide case back to the global-memory kernel.
  it('the cluster kernel\'s layout: the wide net with 10-row sets fits clusters of 4 blocks of an H200, not of 2', () => {
    const model: ModelSpec = { layers: [1, 256, 256, 1], activation: 'relu', loss: 'mse' };
    const rng = new Rng(8);
    const batch = { tasks: 1, support: 10, query: 10, xs: randomArray(rng, 10), ys: randomArray(rng, 10), xq: randomArray(rng, 10), yq: randomArray(rng, 10) } as MetaBatch;
    const o = options(rng, model, 'maml', 1, 'scalar');  // the shared-memory layout does not depend on the steps
    const p = Float64Array.from(initParams(model, { seed: 1 }));
    const bytes = (cluster: number) => addon.metaGradientCudaHost({ ...(args(model, p, batch, o, 'float64') as object), cluster, blockThreads: 256 }).clusterSharedBytes!;
    const limit = 227 * 1024;
    expect(bytes(4)).toBeLessThanOrEqual(limit);
    expect(bytes(4)).toBeGreaterThan(200 * 1024);
    expect(bytes(2)).toBeGreaterThan(limit);
  }, 60_000);

  it('a wrong kernel would be caught: perturbing one parameter changes the meta-gradient beyond tolerance', () => {
    const rng = new Rng(3);
    const model = EXTRA[0]!;
    const batch = raggedBatch(rng, model, 3, 10);
    const o = options(rng, model, 'maml', 2, 'scalar');
    const p = Float64Array.from(initParams(model, { seed: 1 }));
    const ref = addon.metaGradient({ ...args(model, p, batch, o, 'float64'), reference: true } as never);
    p[p.length - 1] = p[p.length - 1]! + 1e-3; // the output bias: always live
    const k = addon.metaGradientCudaHost(args(model, p, batch, o, 'float64'));
    expect(compare(k.grad, ref.grad).rel).toBeGreaterThan(1e-9);
  });
});
