// The same seed gives bit-identical results; the meta-gradient does not depend on the number
// of threads (tasks are reduced in a fixed order).
import { afterAll, describe, it, expect } from 'vitest';
import { MetaLearner, getThreads, initParams, metaGradient, setThreads, sinusoid } from '../src/index.js';
import { expectClose } from './helpers.js';

const model = { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' } as const;
const initialThreads = getThreads();
afterAll(() => setThreads(initialThreads));

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

describe('determinism', () => {
  it('initParams and the sinusoid sampler repeat bit for bit for a seed, and differ across seeds', () => {
    expect(bits(initParams(model, { seed: 7 }))).toEqual(bits(initParams(model, { seed: 7 })));
    expect(bits(initParams(model, { seed: 7 }))).not.toEqual(bits(initParams(model, { seed: 8 })));
    const a = sinusoid({ seed: 3 }).sample(10);
    const b = sinusoid({ seed: 3 }).sample(10);
    expect(bits(a.xs)).toEqual(bits(b.xs));
    expect(bits(a.yq)).toEqual(bits(b.yq));
    expect(bits(sinusoid({ seed: 4 }).sample(10).xs)).not.toEqual(bits(a.xs));
  });

  it('the meta-gradient is bit-identical with 1, 2 and 3 threads', () => {
    const params = initParams(model, { seed: 1 });
    const batch = sinusoid({ seed: 2 }).sample(37);
    const results = [1, 2, 3].map((n) => {
      setThreads(n);
      return metaGradient(model, params, batch, { algorithm: 'maml', innerLr: 0.01, innerSteps: 3 });
    });
    for (const r of results.slice(1)) {
      expect(r.loss).toBe(results[0]!.loss);
      expect(bits(r.grad)).toEqual(bits(results[0]!.grad));
    }
  });

  // The fast path sums the task gradients by a pairwise tree whose nodes any worker may add:
  // every batch size shapes the tree differently (odd leaves pass up unpaired).
  it('every batch size from 1 to 9, and 33, gives the same gradient with 1, 2 and 3 threads, within 1e-5 of the reference', () => {
    const params = initParams(model, { seed: 11 });
    const tasks = sinusoid({ seed: 12 });
    for (const algorithm of ['maml', 'fomaml', 'reptile'] as const) {
      for (const B of [1, 2, 3, 4, 5, 6, 7, 8, 9, 33]) {
        const batch = tasks.sample(B);
        const opts = { algorithm, innerLr: 0.01, innerSteps: 2 };
        const results = [1, 2, 3].map((n) => {
          setThreads(n);
          return metaGradient(model, params, batch, opts);
        });
        for (const r of results.slice(1)) {
          expect(r.loss).toBe(results[0]!.loss);
          expect(bits(r.grad)).toEqual(bits(results[0]!.grad));
        }
        expectClose(results[0]!.grad, metaGradient(model, params, batch, { ...opts, kernel: 'reference' }).grad, 1e-5, `${algorithm} B = ${B}`);
      }
    }
  });

  it('two learners with the same seed train to bit-identical parameters, whatever the thread count', () => {
    const run = (threads: number) => {
      setThreads(threads);
      const learner = new MetaLearner({ model, algorithm: 'maml', innerLr: 0.01, innerSteps: 1, seed: 5 });
      const tasks = sinusoid({ seed: 6 });
      for (let i = 0; i < 20; i++) learner.step(tasks.sample(25));
      return learner.params;
    };
    const one = run(1);
    expect(bits(run(2))).toEqual(bits(one));
    expect(bits(run(1))).toEqual(bits(one));
  });
});

describe('scratch memory reused across calls', () => {
  it('alternating models of the same depth and different widths give the same results as fresh calls', () => {
    const a = { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' } as const;
    const b = { layers: [1, 7, 90, 1], activation: 'tanh', loss: 'mse' } as const;
    const pa = initParams(a, { seed: 1 });
    const pb = initParams(b, { seed: 2 });
    const batch = sinusoid({ seed: 3 }).sample(9);
    const opts = { algorithm: 'maml', innerLr: 0.01, innerSteps: 2 } as const;
    const first = metaGradient(a, pa, batch, opts);
    const fb = metaGradient(b, pb, batch, opts);
    for (let i = 0; i < 3; i++) {
      expect(bits(metaGradient(b, pb, sinusoid({ seed: 4 }).sample(30), opts).grad).length).toBe(pb.length);
      expect(bits(metaGradient(a, pa, batch, opts).grad)).toEqual(bits(first.grad));
      expect(bits(metaGradient(b, pb, batch, opts).grad)).toEqual(bits(fb.grad));
    }
  });
});
