// Baselines of the glyph comparison: nearest neighbour, the pre-trained classifier and its
// fine-tuned head, and the confidence interval helper.
import { describe, it, expect } from 'vitest';
import { nearestNeighbour, meanCi95, pretrainClassifier, fineTuneEvaluate, fewShotSampler, glyphDataset } from '../src/index.js';
import { Rng } from '../src/rng.js';

/** Episodes whose query set is their support set. */
function selfEpisodes(tasks: number, ways: number, shots: number, dim: number, seed: number) {
  const rng = new Rng(seed);
  const xs = Float32Array.from({ length: tasks * ways * shots * dim }, () => rng.range(-1, 1));
  const ys = Int32Array.from({ length: tasks * ways * shots }, (_, i) => Math.floor((i % (ways * shots)) / shots));
  return { tasks, ways, support: ways * shots, query: ways * shots, xs, ys, xq: xs.slice(), yq: ys.slice() };
}

describe('nearest neighbour', () => {
  it('scores 100% when the query set is the support set', () => {
    const acc = nearestNeighbour(selfEpisodes(20, 5, 2, 7, 1));
    expect(Array.from(acc)).toEqual(new Array(20).fill(1));
  });

  it('takes the label of the closest support example', () => {
    // support: class 0 at the origin, class 1 at (10, 10); queries near each, and one nearer class 1
    const e = { tasks: 1, ways: 2, support: 2, query: 3, xs: Float32Array.from([0, 0, 10, 10]), ys: Int32Array.from([0, 1]), xq: Float32Array.from([1, -1, 9, 11, 6, 6]), yq: Int32Array.from([0, 1, 0]) };
    expect(nearestNeighbour(e)[0]).toBeCloseTo(2 / 3, 12);
  });
});

describe('meanCi95', () => {
  it('is the mean and 1.96 standard errors (sample standard deviation)', () => {
    const r = meanCi95([0.2, 0.4, 0.6, 0.8]);
    expect(r.mean).toBeCloseTo(0.5, 12);
    expect(r.ci95).toBeCloseTo((1.96 * Math.sqrt(0.2 / 3)) / 2, 12);
  });
});

describe('pre-trained classifier and fine-tuned head', () => {
  const data = glyphDataset({ trainCharacters: 10, valCharacters: 0, testCharacters: 5, samples: 8, seed: 2 });
  const options = { hidden: [32, 16], activation: 'relu' as const, iterations: 300, batch: 32, lr: 3e-3, seed: 1 };

  it('pre-training lowers the loss well below chance on the training classes', () => {
    const body = pretrainClassifier(data.x, data.labels, data.inputDim, data.split.train, options);
    expect(body.params.length).toBe(784 * 32 + 32 + 32 * 16 + 16);
    expect(body.finalLoss).toBeLessThan(0.5 * Math.log(40)); // 40 training classes: chance is ln 40
  });

  it('a head fine-tuned on the support set classifies that support set (query = support) almost perfectly', () => {
    const body = pretrainClassifier(data.x, data.labels, data.inputDim, data.split.train, { ...options, iterations: 50 });
    const e = fewShotSampler({ x: data.x, labels: data.labels, inputDim: 784, ways: 5, shots: 3, queries: 1, seed: 4, classes: data.split.test }).sample(10);
    const acc = fineTuneEvaluate(body, { ...e, query: e.support, xq: e.xs, yq: e.ys }, { steps: 100 });
    expect(meanCi95(acc).mean).toBeGreaterThan(0.95);
  });
});
