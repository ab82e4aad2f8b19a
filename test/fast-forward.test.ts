// forward() / predict() in float32 run the fast kernels in chunks of 256 rows
// (native/cpu/fast_meta.cc fast_forward): they match the float64 core within float32 rounding
// (relative error 1e-5 in the 2-norm), each row's outputs are the same bits whatever the other
// rows of the call, and `kernel: 'reference'` still runs the plain float32 core.
import { describe, expect, it } from 'vitest';
import { forward, initParams, type ModelSpec } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { expectClose, modelName, randomArray } from './helpers.js';

const MODELS: ModelSpec[] = [
  { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' },
  { layers: [9, 17, 33, 4], activation: 'tanh', loss: 'cross-entropy' },
  { layers: [64, 300, 1], activation: 'relu', loss: 'binary-cross-entropy' },
  { layers: [3, 5], activation: 'tanh', loss: 'mse' },
];

describe('forward in float32 (fast kernels)', () => {
  for (const model of MODELS) {
    it(`matches the float64 core for 0, 1, 7, 256, 257 and 1000 rows: ${modelName(model)}`, () => {
      const rng = new Rng(21);
      const p64 = initParams(model, { seed: 8 });
      const p32 = Float32Array.from(p64);
      const d0 = model.layers[0]!;
      for (const n of [0, 1, 7, 256, 257, 1000]) {
        const x32 = Float32Array.from(randomArray(rng, n * d0, 2));
        const y32 = forward(model, p32, x32);
        const y64 = forward(model, Float64Array.from(p32), Float64Array.from(x32));
        expect(y32.length).toBe(y64.length);
        if (n > 0) expectClose(y32, y64, 1e-5, `${n} rows`);
        const ref = forward(model, p32, x32, { kernel: 'reference' });
        if (n > 0) expectClose(ref, y64, 1e-5, `${n} rows, reference kernel`);
      }
    });
  }

  it("a row's outputs do not depend on the other rows of the call", () => {
    const model = MODELS[1]!;
    const rng = new Rng(3);
    const p = Float32Array.from(initParams(model, { seed: 2 }));
    const x = Float32Array.from(randomArray(rng, 600 * 9, 1));
    const all = forward(model, p, x);
    for (const r of [0, 5, 255, 256, 599]) {
      const one = forward(model, p, x.slice(r * 9, r * 9 + 9));
      expect(Array.from(one)).toEqual(Array.from(all.subarray(r * 4, r * 4 + 4)));
    }
  });

  it("refuses an unknown kernel", () => {
    const model = MODELS[3]!;
    const p = Float32Array.from(initParams(model, { seed: 1 }));
    expect(() => forward(model, p, new Float32Array(3), { kernel: 'gpu' as never })).toThrow(/kernel/);
  });
});
