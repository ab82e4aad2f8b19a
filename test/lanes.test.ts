// The lanes path (native/cpu/lanes.hpp: up to 16 tasks at once, one per lane of an AVX-512
// vector) against the plain-loop float32 core, on fresh random inputs: every algorithm, batch
// sizes around the lane count and the minimum group (6), runs of tasks of equal size broken
// by ragged ones, empty support sets, multi-step loss weights, per-step and per-parameter
// rates with their gradients, every loss and activation, widths that are not multiples of the
// blocks. Tolerance: relative error (2-norm) 2e-5 for one inner step, 2e-4 for three (another
// summation order; rate gradients 10 times that). The group layout depends on the batch only,
// so results must also be bit-identical for any thread count.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MetaLearner, getThreads, initParams, metaGradient, paramCount, setThreads, type ModelSpec } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { expectClose, modelName, randomArray, randomBatch, randomTargets, toF32 } from './helpers.js';

const MODELS: ModelSpec[] = [
  { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' },
  { layers: [5, 13, 7, 3], activation: 'relu', loss: 'mse' },
  { layers: [9, 17, 33, 4], activation: 'tanh', loss: 'cross-entropy' },
  { layers: [1, 64, 1], activation: 'tanh', loss: 'binary-cross-entropy' },
  { layers: [3, 24, 24, 24, 2], activation: 'relu', loss: 'cross-entropy' },
];
const initialThreads = getThreads();
afterAll(() => setThreads(initialThreads));

type Opts = Parameters<typeof metaGradient>[3];
function check(model: ModelSpec, batch: Parameters<typeof metaGradient>[2], opts: Opts, tol: number) {
  const params = Float32Array.from(initParams(model, { seed: 4 }));
  const fast = metaGradient(model, params, batch, { ...opts, kernel: 'fast' });
  const ref = metaGradient(model, params, batch, { ...opts, kernel: 'reference' });
  expect(Math.abs(fast.loss - ref.loss) / Math.max(Math.abs(ref.loss), 1e-12)).toBeLessThan(tol);
  expectClose(fast.grad, ref.grad, tol, 'gradient');
  expect(!!fast.innerLrGrad).toBe(!!ref.innerLrGrad);
  if (ref.innerLrGrad) expectClose(fast.innerLrGrad!, ref.innerLrGrad, tol * 10, 'rate gradient');
  return fast;
}

describe('meta-gradients in lanes match the reference core (float32)', () => {
  for (const model of MODELS) {
    for (const algorithm of ['maml', 'fomaml', 'reptile', 'meta-sgd', 'anil'] as const) {
      for (const tasks of [5, 6, 16, 17, 25, 40]) {
        for (const [innerSteps, tol] of [[1, 2e-5], [3, 2e-4]] as const) {
          it(`${algorithm}, B = ${tasks}, ${innerSteps} step(s), ${modelName(model)}`, () => {
            const rng = new Rng(1000 + tasks * 7 + innerSteps);
            const batch = toF32(randomBatch(rng, model, tasks, 1 + rng.int(12), 1 + rng.int(9)));
            const stepWeights =
              algorithm !== 'reptile' && innerSteps > 1 ? Array.from({ length: innerSteps + 1 }, (_, i) => (i + 1) / (innerSteps + 1)) : undefined;
            // per-parameter rates for meta-sgd, a rate per step for maml (both with rate gradients)
            const innerLr =
              algorithm === 'meta-sgd'
                ? Float32Array.from(randomArray(rng, paramCount(model), 0.1).map((r) => Math.abs(r) + 0.02))
                : algorithm === 'maml'
                  ? Array.from({ length: innerSteps }, (_, i) => 0.05 + 0.02 * i)
                  : 0.1;
            check(model, batch, { algorithm, innerLr, innerSteps, stepWeights }, tol);
          });
        }
      }
    }
  }

  it('runs of equal tasks broken by ragged ones, and empty support sets', () => {
    const model: ModelSpec = { layers: [2, 19, 11, 3], activation: 'relu', loss: 'cross-entropy' };
    const rng = new Rng(77);
    // support sizes: 7 tasks of 4, 1 of 6, 16 of 4, 3 of 0 (too few for a group), 8 of 0, 9 of 5
    const sizes = [...Array(7).fill(4), 6, ...Array(16).fill(4), ...Array(3).fill(0), ...Array(8).fill(0), ...Array(9).fill(5)];
    const qsizes = sizes.map((s, i) => (i % 11 === 10 ? 2 : 3));
    const off = (a: number[]) => Int32Array.from([0, ...a.map((_, i) => a.slice(0, i + 1).reduce((x, y) => x + y, 0))]);
    const rs = sizes.reduce((a, b) => a + b, 0);
    const rq = qsizes.reduce((a, b) => a + b, 0);
    const batch = {
      tasks: sizes.length,
      supportOffsets: off(sizes),
      queryOffsets: off(qsizes),
      xs: Float32Array.from(randomArray(rng, rs * 2)),
      ys: randomTargets(rng, model, rs) as Int32Array,
      xq: Float32Array.from(randomArray(rng, rq * 2)),
      yq: randomTargets(rng, model, rq) as Int32Array,
    };
    for (const algorithm of ['maml', 'fomaml', 'reptile', 'anil'] as const) check(model, batch as never, { algorithm, innerLr: 0.2, innerSteps: 2 }, 1e-4);
  });

  it('one thread reuses its lane memory across models of the same widths but another activation', () => {
    // (a tanh model keeps more per inner step than a ReLU one of the same widths)
    setThreads(1);
    const rng = new Rng(31);
    for (const activation of ['relu', 'tanh', 'relu', 'tanh'] as const) {
      const model: ModelSpec = { layers: [2, 12, 12, 2], activation, loss: 'mse' };
      const batch = toF32(randomBatch(rng, model, 16, 5, 4));
      check(model, batch, { algorithm: 'maml', innerLr: 0.1, innerSteps: 2 }, 2e-4);
    }
    setThreads(initialThreads);
  });

  it('tasks whose lane group would pass the working-memory budget (1,500 rows each) run one by one, correctly', () => {
    const model = MODELS[0]!;
    const rng = new Rng(41);
    const batch = toF32(randomBatch(rng, model, 16, 1500, 10));
    check(model, batch, { algorithm: 'maml', innerLr: 0.01, innerSteps: 1 }, 2e-5);
  });

  it('reptile without query sets: the support loss at the adapted parameters, the same step', () => {
    const model = MODELS[0]!;
    const rng = new Rng(5);
    const { tasks, support, xs, ys } = toF32(randomBatch(rng, model, 20, 10, 1));
    const make = () => new MetaLearner({ model, algorithm: 'reptile', innerLr: 0.05, innerSteps: 4, seed: 3 });
    const [a, b] = [make(), make()];
    const ra = a.step({ tasks, support, xs, ys });
    const rb = b.step({ tasks, support, query: support, xs, ys, xq: xs, yq: ys });
    expect(ra.loss).toBe(rb.loss);
    expect(ra.gradNorm).toBe(rb.gradNorm);
    expect(Array.from(a.params)).toEqual(Array.from(b.params));
  });

  it('the same bits on 1, 2 and 3 threads', () => {
    const model = MODELS[2]!;
    const rng = new Rng(9);
    const batch = toF32(randomBatch(rng, model, 37, 5, 4));
    const params = Float32Array.from(initParams(model, { seed: 1 }));
    for (const algorithm of ['maml', 'fomaml', 'reptile'] as const) {
      const runs = [1, 2, 3].map((n) => {
        setThreads(n);
        return metaGradient(model, params, batch, { algorithm, innerLr: 0.1, innerSteps: 2 });
      });
      for (const r of runs.slice(1)) {
        expect(r.loss).toBe(runs[0]!.loss);
        expect(Buffer.from(r.grad.buffer).equals(Buffer.from(runs[0]!.grad.buffer))).toBe(true);
      }
    }
  });

  it('MAML_LANES=0 (tasks one by one) gives the same gradients within float32 rounding', () => {
    const lib = resolve(__dirname, '..', 'lib', 'index.js');
    const script = `
      import { metaGradient, initParams, backendInfo } from ${JSON.stringify(lib)};
      const model = { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' };
      const params = initParams(model, { seed: 3 });
      let s = 7; const r = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
      const a = (n) => Float32Array.from({ length: n }, r);
      const batch = { tasks: 25, support: 10, query: 10, xs: a(250), ys: a(250), xq: a(250), yq: a(250) };
      const g = metaGradient(model, params, batch, { algorithm: process.env.ALGO, innerLr: 0.01, innerSteps: 5 });
      console.log(JSON.stringify({ loss: g.loss, grad: Array.from(g.grad), isa: backendInfo().cpu.build?.isa }));`;
    const run = (lanes: string, algo: string) =>
      JSON.parse(
        execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, MAML_LANES: lanes, ALGO: algo } }).toString(),
      ) as { loss: number; grad: number[]; isa: string };
    for (const algo of ['maml', 'fomaml']) {
      const on = run('1', algo);
      const off = run('0', algo);
      expect(Math.abs(on.loss - off.loss) / off.loss).toBeLessThan(1e-6);
      expectClose(Float32Array.from(on.grad), Float32Array.from(off.grad), 1e-5, 'gradient');
      // and the lanes really ran (AVX-512 or AVX2; baseline x86-64 has none): another
      // summation order rounds some entries differently
      expect(on.grad.some((g, i) => g !== off.grad[i])).toBe(on.isa !== 'baseline');
    }
  });

  it('MAML_CPU_LEVEL=3: AVX2 lanes (8 tasks per group; baseline kernels on a CPU without AVX2) match the reference core for every algorithm',
    () => {
      const lib = resolve(__dirname, '..', 'lib', 'index.js');
      const script = `
        import { metaGradient, initParams, backendInfo } from ${JSON.stringify(lib)};
        let s = 11; const r = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
        const a = (n) => Float32Array.from({ length: n }, r);
        const worst = [];
        for (const [layers, activation, loss] of [[[1, 40, 40, 1], 'relu', 'mse'], [[5, 13, 7, 3], 'tanh', 'cross-entropy']]) {
          const model = { layers, activation, loss };
          const params = initParams(model, { seed: 3 });
          const d0 = layers[0], dL = layers[layers.length - 1], B = 19, n = 7;
          const y = (rows) => loss === 'cross-entropy' ? Int32Array.from({ length: rows }, (_, i) => (i * 7 + 3) % dL) : a(rows * dL);
          const batch = { tasks: B, support: n, query: n, xs: a(B * n * d0), ys: y(B * n), xq: a(B * n * d0), yq: y(B * n) };
          for (const algorithm of ['maml', 'fomaml', 'reptile', 'meta-sgd', 'anil']) {
            const opts = { algorithm, innerLr: 0.05, innerSteps: 2 };
            const f = metaGradient(model, params, batch, opts);
            const g = metaGradient(model, params, batch, { ...opts, kernel: 'reference' });
            let d = 0, nr = 0;
            for (let i = 0; i < g.grad.length; i++) { d += (f.grad[i] - g.grad[i]) ** 2; nr += g.grad[i] ** 2; }
            worst.push(Math.sqrt(d / nr));
          }
        }
        console.log(JSON.stringify({ isa: backendInfo().cpu.build?.isa, worst: Math.max(...worst) }));`;
      const out = JSON.parse(
        execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, MAML_CPU_LEVEL: '3' } }).toString(),
      ) as { isa: string; worst: number };
      expect(['avx2', 'baseline']).toContain(out.isa);
      expect(out.worst).toBeLessThan(2e-4);
    },
  );
});

