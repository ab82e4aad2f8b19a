// Bad inputs to the few-shot learners: each gives a MamlError with a stable code, and leaves
// the learner unchanged.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FewShotLearner, MamlError, MetaLearner, fewShotLoss, type ErrorCode } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { clusterEpisodes } from './fewshot-helpers.js';

function expectCode(fn: () => unknown, code: ErrorCode, pattern?: RegExp) {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(MamlError);
  expect((caught as MamlError).code).toBe(code);
  if (pattern) expect((caught as MamlError).message).toMatch(pattern);
}

const embedding = { layers: [4, 8, 3] };
const good = () => clusterEpisodes(new Rng(1), 4, 2, 3, 2, 2);

describe('FewShotLearner options', () => {
  it('refuse unknown algorithms, missing or malformed embeddings, and relation options on other algorithms', () => {
    expectCode(() => new FewShotLearner({ algorithm: 'siamese' as never, embedding }), 'INVALID_ARGUMENT', /options\.algorithm/);
    expectCode(() => new FewShotLearner({ algorithm: 'protonet' } as never), 'INVALID_ARGUMENT', /options\.embedding/);
    expectCode(() => new FewShotLearner({ algorithm: 'protonet', embedding: { layers: [4] } }), 'INVALID_ARGUMENT');
    expectCode(() => new FewShotLearner({ algorithm: 'protonet', embedding: { layers: [4, 0] } }), 'INVALID_ARGUMENT');
    expectCode(() => new FewShotLearner({ algorithm: 'protonet', embedding: { layers: [4, 3], activation: 'gelu' as never } }), 'INVALID_ARGUMENT');
    expectCode(() => new FewShotLearner({ algorithm: 'protonet', embedding, relation: { layers: [6, 1] } }), 'INVALID_ARGUMENT', /only for algorithm 'relation'/);
    expectCode(() => new FewShotLearner({ algorithm: 'matching', embedding, relation: { layers: [6, 1] } }), 'INVALID_ARGUMENT');
    expectCode(() => new FewShotLearner({ algorithm: 'relation', embedding, relation: { layers: [5, 1] } }), 'SHAPE_MISMATCH', /2 × embedDim = 6/);
    expectCode(() => new FewShotLearner({ algorithm: 'relation', embedding, relation: { layers: [6, 2] } }), 'SHAPE_MISMATCH');
    expectCode(() => new FewShotLearner({ algorithm: 'relation', embedding, relation: { layers: [6, 1], classEmbedding: 'max' as never } }), 'INVALID_ARGUMENT');
    expectCode(() => new FewShotLearner({ algorithm: 'relation', embedding, relation: { layers: [6, 1], normalize: 'batch' as never } }), 'INVALID_ARGUMENT', /options\.relation\.normalize/);
    expectCode(() => new FewShotLearner({ algorithm: 'protonet', embedding, optimizer: { kind: 'adam', lr: -1 } }), 'INVALID_ARGUMENT');
    expectCode(() => new FewShotLearner({ algorithm: 'protonet', embedding, params: new Float32Array(3) }), 'SHAPE_MISMATCH');
    expectCode(() => new FewShotLearner({ algorithm: 'protonet', embedding, seed: -1 }), 'INVALID_ARGUMENT');
  });
});

describe('FewShotLearner episodes', () => {
  const learner = new FewShotLearner({ algorithm: 'relation', embedding, seed: 1 });
  const before = learner.params;

  it('refuse labels outside [0, ways)', () => {
    const e = good();
    e.yq[1] = 3;
    expectCode(() => learner.step(e), 'INVALID_ARGUMENT', /labels must lie in \[0, 2\]/);
    const f = good();
    f.ys[0] = -1;
    expectCode(() => learner.evaluate(f), 'INVALID_ARGUMENT');
  });

  it('refuse a class without a support example in some task', () => {
    const e = good();
    e.ys[6 + 2] = 0; // task 1: class 1's rows are 8, 9 → only one of them moved
    e.ys[6 + 3] = 0;
    expectCode(() => learner.step(e), 'INVALID_ARGUMENT', /class 1 has no support example in task 1/);
  });

  it('refuse wrong lengths, zero or fractional ways, tasks without query rows', () => {
    expectCode(() => learner.step({ ...good(), xs: new Float32Array(5) }), 'SHAPE_MISMATCH', /batch\.xs/);
    expectCode(() => learner.step({ ...good(), yq: new Int32Array(3) }), 'SHAPE_MISMATCH');
    expectCode(() => learner.step({ ...good(), ways: 0 }), 'INVALID_ARGUMENT', /episodes\.ways/);
    expectCode(() => learner.step({ ...good(), ways: 2.5 }), 'INVALID_ARGUMENT');
    expectCode(() => learner.step({ ...good(), query: 0, xq: new Float32Array(0), yq: new Int32Array(0) }), 'SHAPE_MISMATCH', /no query rows/);
    expectCode(() => learner.step({ ...good(), ys: Float32Array.from(good().ys) as never }), 'INVALID_ARGUMENT', /Int32Array/);
    expectCode(() => learner.step({ ...good(), xs: Float64Array.from(good().xs) }), 'INVALID_ARGUMENT', /Float32Array/);
  });

  it('refuse NaN and infinite inputs', () => {
    const e = good();
    e.xq[3] = NaN;
    expectCode(() => learner.step(e), 'NON_FINITE');
    const f = good();
    f.xs[0] = Infinity;
    expectCode(() => learner.evaluate(f), 'NON_FINITE');
  });

  it('reject asynchronously, with the same codes', async () => {
    await expect(learner.stepAsync({ ...good(), ways: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(learner.evaluateAsync({ ...good(), xs: new Float32Array(2) })).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
  });

  it('leave the learner unchanged after all of the above', () => {
    expect(learner.params).toEqual(before);
    expect(learner.steps).toBe(0);
  });
});

describe('FewShotLearner.adapt, the classifier and fewShotLoss', () => {
  const learner = new FewShotLearner({ algorithm: 'protonet', embedding, seed: 1 });
  it('adapt refuses missing classes, bad labels and bad lengths', () => {
    const x = new Float32Array(3 * 4).fill(0.5);
    expectCode(() => learner.adapt({ x, labels: Int32Array.of(0, 2, 2) }), 'INVALID_ARGUMENT', /class 1 has no support example/);
    expectCode(() => learner.adapt({ x, labels: Int32Array.of(0, 1, 2), ways: 4 }), 'INVALID_ARGUMENT', /class 3/);
    expectCode(() => learner.adapt({ x, labels: Int32Array.of(0, 1, 3), ways: 3 }), 'INVALID_ARGUMENT', /labels must lie/);
    expectCode(() => learner.adapt({ x, labels: Int32Array.of(0, 1) }), 'SHAPE_MISMATCH');
    expectCode(() => learner.adapt({ x: new Float32Array(5), labels: Int32Array.of(0) }), 'SHAPE_MISMATCH');
    expectCode(() => learner.adapt({ x, labels: [0, 1, 2] as never }), 'INVALID_ARGUMENT');
    expectCode(() => learner.adapt({ x, labels: Int32Array.of(0, 1, 2), ways: 0 }), 'INVALID_ARGUMENT');
  });

  it('adapt refuses more classes than support rows before allocating anything per class', () => {
    // one label near 2^31 implies 2^31 classes: refused from the row count, not from a 2 GB table
    const x = new Float32Array(4).fill(0.5);
    expectCode(() => learner.adapt({ x, labels: Int32Array.of(2 ** 31 - 1) }), 'INVALID_ARGUMENT', /class 0 has no support example \(support.labels: 1 rows for 2147483648 classes\)/);
    const x3 = new Float32Array(3 * 4).fill(0.5);
    expectCode(() => learner.adapt({ x: x3, labels: Int32Array.of(0, 2, 1), ways: 1 << 24 }), 'INVALID_ARGUMENT', /class 3 has no support example \(support.labels: 3 rows for 16777216 classes\)/);
  });

  it('the classifier refuses inputs of the wrong width or with NaN', () => {
    const clf = learner.adapt({ x: new Float32Array(2 * 4).map((_, i) => i), labels: Int32Array.of(0, 1) });
    expectCode(() => clf.predict(new Float32Array(5)), 'SHAPE_MISMATCH');
    expectCode(() => clf.logits(new Float32Array(4).fill(NaN)), 'NON_FINITE');
    expect(clf.predict(new Float32Array(0)).length).toBe(0);
  });

  it('fewShotLoss refuses parameters of the wrong length or precision mix', () => {
    const o = { algorithm: 'protonet' as const, embedding };
    expectCode(() => fewShotLoss(o, new Float64Array(7), good()), 'SHAPE_MISMATCH');
    expectCode(() => fewShotLoss(o, new Float64Array(8 * 5 + 3 * 9), good()), 'INVALID_ARGUMENT', /Float64Array/);
    expectCode(() => fewShotLoss(o, [1, 2] as never, good()), 'INVALID_ARGUMENT');
  });

  it('a synchronous call while an asynchronous step is pending throws BUSY', async () => {
    const l = new FewShotLearner({ algorithm: 'matching', embedding, seed: 2 });
    const p = l.stepAsync(good());
    expectCode(() => l.evaluate(good()), 'BUSY');
    expectCode(() => l.adapt({ x: new Float32Array(4), labels: Int32Array.of(0) }), 'BUSY');
    await p;
    expect(l.steps).toBe(1);
  });
});

describe('few-shot checkpoints', () => {
  it('refuse other files: a MetaLearner checkpoint, garbage, a missing file; MetaLearner refuses a few-shot one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fewshot-bad-'));
    try {
      const meta = join(dir, 'meta.safetensors');
      new MetaLearner({ model: { layers: [4, 8, 3], activation: 'relu', loss: 'cross-entropy' } }).save(meta);
      expectCode(() => FewShotLearner.load(meta), 'CORRUPT_FILE', /few-shot/);
      const fs = join(dir, 'fs.safetensors');
      new FewShotLearner({ algorithm: 'protonet', embedding }).save(fs);
      expectCode(() => MetaLearner.load(fs), 'CORRUPT_FILE');
      const junk = join(dir, 'junk.safetensors');
      writeFileSync(junk, 'not a checkpoint');
      expectCode(() => FewShotLearner.load(junk), 'CORRUPT_FILE');
      expectCode(() => FewShotLearner.load(join(dir, 'missing.safetensors')), 'IO_ERROR');
      expectCode(() => new FewShotLearner({ algorithm: 'protonet', embedding }).save(''), 'INVALID_ARGUMENT');
      // settings that ask for ~2^31 parameters over tiny tensors: refused before allocating them
      const forged = join(dir, 'forged.safetensors');
      const bytes = readFileSync(fs);
      const n = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
      header.__metadata__.embedding = JSON.stringify({ layers: [1 << 24, 127], activation: 'relu' });
      const h = Buffer.from(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8, ' '));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      writeFileSync(forged, Buffer.concat([len, h, bytes.subarray(8 + n)]));
      expectCode(() => FewShotLearner.load(forged), 'CORRUPT_FILE', /hold 67 values, but its settings need 2130706559 parameters/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
