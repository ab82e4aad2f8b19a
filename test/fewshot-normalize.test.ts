// Relation Networks' episode normalization (relation.normalize, native/core/fewshot_norm.hpp):
// what it computes, beyond the finite-difference and reference tests of fewshot-gradients:
// the loss ignores a shift of the embedding's output (normalize 'episode' only); a classifier
// standardizes its support set together with each call's rows, so that adapt + predict on an
// episode agrees with evaluate(), and one row's scores equal a TypeScript computation over the
// support set plus that row; checkpoints keep the option, and files written before it load
// as 'none'. Tolerances: 1e-12 relative (float64 invariance), 1e-5 (float32 logits).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FewShotLearner, fewShotLoss, forward, type FewShotLearnerOptions, type FewShotLossOptions } from '../src/index.js';
import { checkFewShotSpec, initFewShotParams } from '../src/fewshot/spec.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../src/safetensors.js';
import { Rng } from '../src/rng.js';
import { clusterEpisodes, raggedEpisodes, standardize } from './fewshot-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'fewshot-norm-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('episode normalization: the loss', () => {
  for (const normalize of ['episode', 'none'] as const)
    it(`${normalize}: shifting the embedding's last bias ${normalize === 'episode' ? 'leaves the loss unchanged' : 'changes the loss'}`, () => {
      const options: FewShotLossOptions = { algorithm: 'relation', embedding: { layers: [5, 8, 4], activation: 'relu' }, relation: { layers: [8, 6, 1], normalize } };
      const spec = checkFewShotSpec(options, 'test');
      const params = initFewShotParams(spec, 2, 'float64') as Float64Array;
      const ep = raggedEpisodes(new Rng(3), 5, 3, 4, 3, 5);
      const r = fewShotLoss(options, params, ep);
      const shifted = params.slice();
      const biasEnd = spec.embeddingParams; // the last layer's bias [4] ends the embedding's block
      for (let d = 0; d < 4; d++) shifted[biasEnd - 4 + d]! += [0.7, -1.3, 2.1, 0.4][d]!;
      const s = fewShotLoss(options, shifted, ep);
      if (normalize === 'episode') {
        expect(Math.abs(s.loss - r.loss) / r.loss).toBeLessThan(1e-12);
        // and the gradient with respect to that bias vanishes
        for (let d = 0; d < 4; d++) expect(Math.abs(r.grad[biasEnd - 4 + d]!)).toBeLessThan(1e-12);
      } else {
        expect(Math.abs(s.loss - r.loss) / r.loss).toBeGreaterThan(1e-4);
      }
    });

  it("the option reaches native code: the default ('episode') and 'none' give different losses", () => {
    const base: FewShotLossOptions = { algorithm: 'relation', embedding: { layers: [5, 8, 4], activation: 'tanh' } };
    const spec = checkFewShotSpec(base, 'test');
    const params = initFewShotParams(spec, 4, 'float64') as Float64Array;
    const ep = raggedEpisodes(new Rng(8), 5, 2, 3, 2, 4);
    const episode = fewShotLoss(base, params, ep).loss;
    const none = fewShotLoss({ ...base, relation: { normalize: 'none' } }, params, ep).loss;
    expect(none).not.toBe(episode);
  });
});

describe('episode normalization: classifiers', () => {
  const options: FewShotLearnerOptions = {
    algorithm: 'relation', embedding: { layers: [8, 32, 16] }, relation: { layers: [32, 16, 1] }, optimizer: { kind: 'adam', lr: 1e-2 }, seed: 1,
  };
  const learner = new FewShotLearner(options);
  const rng = new Rng(4);
  for (let i = 0; i < 60; i++) learner.step(clusterEpisodes(rng, 8, 8, 4, 2, 3));

  it('adapt + predict on an episode gives the accuracy evaluate() reports (the same statistics)', () => {
    for (let t = 0; t < 5; t++) {
      const e = clusterEpisodes(new Rng(50 + t), 8, 1, 4, 2, 6, 1.5); // noisy: some errors
      const pred = learner.adapt({ x: e.xs, labels: e.ys }).predict(e.xq);
      let right = 0;
      pred.forEach((p, i) => (right += p === e.yq[i]! ? 1 : 0));
      expect(right / pred.length).toBe(learner.evaluate(e).accuracy);
    }
  });

  it("one row's scores: the support set and that row standardized together, then the relation module", () => {
    const e = clusterEpisodes(new Rng(9), 8, 1, 4, 2, 3, 0.5);
    const clf = learner.adapt({ x: e.xs, labels: e.ys });
    const p = learner.params;
    const phiLen = checkFewShotSpec(options, 'test').embeddingParams;
    const es = Float64Array.from(learner.embed(e.xs));
    for (let q = 0; q < 3; q++) {
      const row = e.xq.subarray(q * 8, (q + 1) * 8);
      const got = clf.logits(row);
      const s = es.slice();
      const eq = Float64Array.from(learner.embed(row));
      standardize([s, eq], 16);
      const pairs = new Float64Array(4 * 32);
      for (let k = 0; k < 4; k++) {
        pairs.set(eq, k * 32);
        for (let d = 0; d < 16; d++) pairs[k * 32 + 16 + d] = (s[(2 * k) * 16 + d]! + s[(2 * k + 1) * 16 + d]!) / 2; // ys = [0,0,1,1,...]
      }
      const out = forward({ layers: [32, 16, 1], activation: 'relu', loss: 'mse' }, Float64Array.from(p.subarray(phiLen)), pairs);
      for (let k = 0; k < 4; k++) expect(Math.abs(got[k]! - 1 / (1 + Math.exp(-out[k]!)))).toBeLessThan(1e-5);
      // a batch standardizes its rows together: the first row's scores in a batch differ
      if (q === 0) expect(Array.from(clf.logits(e.xq).subarray(0, 4))).not.toEqual(Array.from(got));
    }
    expect(Array.from(e.ys)).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
  });
});

describe('episode normalization: checkpoints', () => {
  for (const normalize of ['episode', 'none'] as const)
    it(`normalize '${normalize}' survives save and load`, () => {
      const l = new FewShotLearner({ algorithm: 'relation', embedding: { layers: [4, 8, 3] }, relation: { layers: [6, 5, 1], normalize }, seed: 2 });
      l.step(clusterEpisodes(new Rng(6), 4, 4, 3, 1, 2));
      const path = join(dir, `${normalize}.safetensors`);
      l.save(path);
      expect(JSON.parse(readSafetensorsFile(path).metadata.relation!).normalize).toBe(normalize);
      const m = FewShotLearner.load(path);
      expect(m.relation?.normalize).toBe(normalize);
      const e = clusterEpisodes(new Rng(7), 4, 3, 3, 1, 2);
      expect(m.evaluate(e)).toEqual(l.evaluate(e));
    });

  it("a checkpoint written before the option (no 'normalize' in its metadata) loads as 'none'", () => {
    const l = new FewShotLearner({ algorithm: 'relation', embedding: { layers: [4, 8, 3] }, relation: { layers: [6, 5, 1], normalize: 'none' }, seed: 3 });
    const path = join(dir, 'old.safetensors');
    l.save(path);
    const f = readSafetensorsFile(path);
    const { normalize: _n, ...old } = JSON.parse(f.metadata.relation!);
    writeSafetensorsFile(path, f.tensors, { ...f.metadata, relation: JSON.stringify(old) });
    const m = FewShotLearner.load(path);
    expect(m.relation?.normalize).toBe('none');
    const e = clusterEpisodes(new Rng(8), 4, 3, 3, 1, 2);
    expect(m.evaluate(e)).toEqual(l.evaluate(e));
  });
});
