// Few-shot learners' losses and gradients (native/core/fewshot.hpp): float64 gradients against
// central finite differences over ALL parameters (embedding and relation), the forward loss
// against a plain TypeScript computation, float32 against float64, and independence from the
// thread count. Episodes are ragged (unequal shots per class and query rows per task).
// Tolerances: relative 2-norm error 1e-6 (finite differences, eps 1e-6), 1e-12 (forward loss
// against the TypeScript reference), 1e-4 (float32 against float64).
import { afterAll, describe, expect, it } from 'vitest';
import { fewShotLoss, getThreads, setThreads, type FewShotLossOptions } from '../src/index.js';
import { initFewShotParams, checkFewShotSpec } from '../src/fewshot/spec.js';
import { Rng } from '../src/rng.js';
import { expectClose, finiteDiff } from './helpers.js';
import { raggedEpisodes, referenceLoss } from './fewshot-helpers.js';

const initialThreads = getThreads();
afterAll(() => setThreads(initialThreads));

const CASES: { name: string; options: FewShotLossOptions }[] = [
  { name: 'protonet, tanh', options: { algorithm: 'protonet', embedding: { layers: [4, 6, 3], activation: 'tanh' } } },
  { name: 'protonet, relu, 3 layers', options: { algorithm: 'protonet', embedding: { layers: [4, 7, 5, 3], activation: 'relu' } } },
  { name: 'matching, tanh', options: { algorithm: 'matching', embedding: { layers: [4, 6, 3], activation: 'tanh' } } },
  { name: 'matching, relu, 3 layers', options: { algorithm: 'matching', embedding: { layers: [4, 7, 5, 3], activation: 'relu' } } },
  // relation: episode normalization by default, 'none' explicitly; mean and sum class embeddings
  { name: 'relation, tanh, default relation module (episode normalization)', options: { algorithm: 'relation', embedding: { layers: [4, 6, 3], activation: 'tanh' } } },
  {
    name: 'relation, normalize none, tanh, default relation module',
    options: { algorithm: 'relation', embedding: { layers: [4, 6, 3], activation: 'tanh' }, relation: { layers: [6, 64, 1], normalize: 'none' } },
  },
  {
    name: 'relation, episode normalization, relu embedding, tanh relation module, summed class embeddings',
    options: {
      algorithm: 'relation',
      embedding: { layers: [4, 7, 3], activation: 'relu' },
      relation: { layers: [6, 5, 4, 1], activation: 'tanh', classEmbedding: 'sum', normalize: 'episode' },
    },
  },
  {
    name: 'relation, normalize none, relu embedding, tanh relation module, summed class embeddings',
    options: {
      algorithm: 'relation',
      embedding: { layers: [4, 7, 3], activation: 'relu' },
      relation: { layers: [6, 5, 4, 1], activation: 'tanh', classEmbedding: 'sum', normalize: 'none' },
    },
  },
  {
    name: 'relation, episode normalization, relu 3-layer embedding, relu relation module, mean class embeddings',
    options: { algorithm: 'relation', embedding: { layers: [4, 7, 5, 3], activation: 'relu' }, relation: { layers: [6, 8, 1], classEmbedding: 'mean' } },
  },
  {
    name: 'relation, one-layer relation module',
    options: { algorithm: 'relation', embedding: { layers: [4, 5, 3], activation: 'tanh' }, relation: { layers: [6, 1] } },
  },
];

const SHAPES = [
  { ways: 2, maxShots: 1, maxQuery: 3 },
  { ways: 3, maxShots: 3, maxQuery: 5 },
  { ways: 5, maxShots: 2, maxQuery: 4 },
];

function params64(o: FewShotLossOptions, seed: number): Float64Array {
  return initFewShotParams(checkFewShotSpec(o, 'test'), seed, 'float64') as Float64Array;
}

describe('few-shot gradients (float64) against central finite differences', () => {
  for (const { name, options } of CASES)
    for (const shape of SHAPES)
      it(`${name}: ${shape.ways}-way, up to ${shape.maxShots} shots, up to ${shape.maxQuery} queries, 3 tasks`, () => {
        const rng = new Rng(7 + shape.ways);
        const params = params64(options, 3);
        const ep = raggedEpisodes(rng, 4, 3, shape.ways, shape.maxShots, shape.maxQuery);
        const r = fewShotLoss(options, params, ep);
        expect(r.grad.length).toBe(params.length);
        const fd = finiteDiff((p) => fewShotLoss(options, p, ep).loss, params);
        expectClose(r.grad, fd, 1e-6, 'gradient');
        // every parameter block is reached (the relation module too)
        expect(r.grad.some((g, i) => i < 10 && g !== 0)).toBe(true);
        expect(r.grad.slice(-5).some((g) => g !== 0)).toBe(true);
      });
});

describe('few-shot forward loss against a plain TypeScript computation', () => {
  for (const { name, options } of CASES)
    it(name, () => {
      const rng = new Rng(21);
      const params = params64(options, 4);
      const ep = raggedEpisodes(rng, 4, 4, 4, 3, 6);
      const r = fewShotLoss(options, params, ep);
      const ref = referenceLoss(options, params, ep);
      expect(Math.abs(r.loss - ref) / Math.abs(ref)).toBeLessThan(1e-12);
      expect(r.losses.length).toBe(4);
      expect(r.accuracies.every((a) => a >= 0 && a <= 1)).toBe(true);
    });
});

describe('few-shot losses in float32 and float64, and with 1 or 2 threads', () => {
  for (const { name, options } of CASES)
    it(`${name}: float32 agrees with float64; 1 and 2 threads are bit-identical`, () => {
      const rng = new Rng(33);
      const p64 = params64(options, 5);
      const e64 = raggedEpisodes(rng, 4, 9, 3, 4, 6);
      const e32 = { ...e64, xs: Float32Array.from(e64.xs), xq: Float32Array.from(e64.xq) };
      const p32 = Float32Array.from(p64);
      const r64 = fewShotLoss(options, p64, e64);
      const r32 = fewShotLoss(options, p32, e32);
      expect(Math.abs(r32.loss - r64.loss) / r64.loss).toBeLessThan(1e-5);
      expectClose(r32.grad, r64.grad, 1e-4, 'float32 gradient');
      setThreads(1);
      const one = fewShotLoss(options, p32, e32);
      setThreads(2);
      const two = fewShotLoss(options, p32, e32);
      expect(two.loss).toBe(one.loss);
      expect(new Uint32Array(two.grad.buffer)).toEqual(new Uint32Array(one.grad.buffer));
      expect(two.accuracies).toEqual(one.accuracies);
    });
});

describe('few-shot fast float32 kernels against the plain-loop core (float32)', () => {
  // odd widths and one layer of >= 128 outputs (its input gradient takes the dot-product kernel);
  // relation with episode normalization (default; mean and sum) and without
  const VARIANTS = [
    ['protonet', undefined],
    ['matching', undefined],
    ['relation', undefined],
    ['relation', { layers: [18, 64, 1], classEmbedding: 'sum' }],
    ['relation', { layers: [18, 64, 1], normalize: 'none' }],
  ] as const;
  for (const [algorithm, relation] of VARIANTS)
    for (const activation of ['relu', 'tanh'] as const)
      it(`${algorithm}${relation ? ` ${JSON.stringify(relation)}` : ''}, ${activation}, embedding [13, 37, 130, 9]`, () => {
        const options: FewShotLossOptions = { algorithm, embedding: { layers: [13, 37, 130, 9], activation }, ...(relation ? { relation } : {}) };
        const rng = new Rng(44);
        const params = Float32Array.from(params64(options, 6));
        const ep = raggedEpisodes(rng, 13, 7, 5, 3, 9, Float32Array);
        const fast = fewShotLoss(options, params, ep);
        const ref = fewShotLoss({ ...options, kernel: 'reference' }, params, ep);
        expect(Math.abs(fast.loss - ref.loss) / ref.loss).toBeLessThan(1e-5);
        expectClose(fast.grad, ref.grad, 1e-5, 'fast gradient');
        expect(fast.accuracies).toEqual(ref.accuracies);
      });
});
