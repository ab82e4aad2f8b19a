// The fast float32 kernels (native/cpu) against the plain-loop float32 core (native/core) on
// fresh random inputs: every algorithm, loss and activation, widths that are not multiples of
// the vector width, ragged tasks, per-parameter rates. Tolerance: relative error (2-norm)
// 2e-5 for one inner step, 2e-4 for three (the kernels sum in another order).
import { describe, it, expect } from 'vitest';
import { initParams, metaGradient, paramCount, type Algorithm, type ModelSpec } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { MODELS, expectClose, modelName, randomArray, randomBatch, toF32 } from './helpers.js';

const ALGOS: Algorithm[] = ['maml', 'fomaml', 'reptile', 'meta-sgd', 'anil'];
const EXTRA: ModelSpec[] = [
  { layers: [5, 13, 7, 3], activation: 'relu', loss: 'mse' },
  { layers: [9, 17, 33, 4], activation: 'tanh', loss: 'cross-entropy' },
  { layers: [1, 64, 1], activation: 'tanh', loss: 'binary-cross-entropy' },
  { layers: [3, 24, 24, 24, 2], activation: 'relu', loss: 'mse' },
];

function both(model: ModelSpec, params: Float32Array, batch: Parameters<typeof metaGradient>[2], opts: Parameters<typeof metaGradient>[3]) {
  return [metaGradient(model, params, batch, { ...opts, kernel: 'fast' }), metaGradient(model, params, batch, { ...opts, kernel: 'reference' })] as const;
}

describe('fast kernels match the reference core (float32)', () => {
  for (const model of [...MODELS, ...EXTRA]) {
    for (const algorithm of ALGOS) {
      for (const [innerSteps, tol] of [[1, 2e-5], [3, 2e-4]] as const) {
        it(`${algorithm}, ${innerSteps} step(s), ${modelName(model)}`, () => {
          const rng = new Rng(61 + innerSteps);
          const params = Float32Array.from(initParams(model, { seed: 12 }));
          const batch = toF32(randomBatch(rng, model, 7, 6, 5));
          const innerLr = algorithm === 'meta-sgd' ? Float32Array.from(randomArray(rng, paramCount(model), 0.1).map((r) => Math.abs(r) + 0.02)) : 0.1;
          const stepWeights = algorithm === 'reptile' ? undefined : Array.from({ length: innerSteps + 1 }, (_, i) => (i + 1) / (innerSteps + 1));
          const [fast, ref] = both(model, params, batch, { algorithm, innerLr, innerSteps, stepWeights });
          expect(Math.abs(fast.loss - ref.loss) / Math.abs(ref.loss)).toBeLessThan(tol);
          expectClose(fast.grad, ref.grad, tol, 'gradient');
          if (ref.innerLrGrad) expectClose(fast.innerLrGrad!, ref.innerLrGrad, tol * 10, 'rate gradient');
        });
      }
    }
  }

  it('wide layers (1-256-256-1), per-step per-parameter rates and ragged tasks with an empty support set', () => {
    const model: ModelSpec = { layers: [1, 256, 256, 1], activation: 'relu', loss: 'mse' };
    const rng = new Rng(5);
    const params = initParams(model, { seed: 3 });
    const P = params.length;
    const lr = Float32Array.from(randomArray(rng, 2 * P, 0.01).map((r) => Math.abs(r)));
    const batch = {
      tasks: 3,
      supportOffsets: Int32Array.from([0, 10, 10, 17]),
      queryOffsets: Int32Array.from([0, 5, 12, 13]),
      xs: Float32Array.from(randomArray(rng, 17, 5)),
      ys: Float32Array.from(randomArray(rng, 17, 3)),
      xq: Float32Array.from(randomArray(rng, 13, 5)),
      yq: Float32Array.from(randomArray(rng, 13, 3)),
    };
    const [fast, ref] = both(model, params, batch, { algorithm: 'meta-sgd', innerLr: lr, innerSteps: 2 });
    expectClose(fast.grad, ref.grad, 1e-4, 'gradient');
    expectClose(fast.innerLrGrad!, ref.innerLrGrad!, 1e-3, 'rate gradient');
  });
});
