// Checkpoints: a round trip restores the learner exactly; the file is a safetensors file that
// PyTorch's loader reads (names, shapes, dtype); corrupt and truncated files give CORRUPT_FILE.
import { mkdtempSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import { MamlError, MetaLearner, sinusoid } from '../src/index.js';
import { readSafetensorsFile } from '../src/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'maml-ckpt-'));
const model = { layers: [1, 12, 8, 1], activation: 'relu', loss: 'mse' } as const;

function trained(options: Partial<ConstructorParameters<typeof MetaLearner>[0]> = {}) {
  const learner = new MetaLearner({ model, seed: 4, ...options });
  const tasks = sinusoid({ seed: 5 });
  for (let i = 0; i < 3; i++) learner.step(tasks.sample(5));
  return learner;
}

function expectCorrupt(path: string, code: 'CORRUPT_FILE' | 'UNSUPPORTED' = 'CORRUPT_FILE') {
  let err: unknown;
  try {
    MetaLearner.load(path);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(MamlError);
  expect((err as MamlError).code).toBe(code);
  expect((err as MamlError).message).toContain(path);
}

describe('checkpoints', () => {
  it('round trip restores parameters, rates, settings and step count bit for bit', () => {
    for (const options of [
      {},
      { algorithm: 'meta-sgd' as const, innerLr: 0.02 },
      { algorithm: 'maml' as const, innerLr: [0.1, 0.05], innerSteps: 2, learnInnerLr: true, stepWeights: [0, 0.3, 0.7] },
      { algorithm: 'anil' as const, optimizer: { kind: 'sgd' as const, lr: 0.1, momentum: 0.9 } },
    ]) {
      const a = trained(options);
      const path = join(dir, `rt-${a.algorithm}.safetensors`);
      a.save(path);
      const b = MetaLearner.load(path);
      expect(b.params).toEqual(a.params);
      expect(b.innerLr).toEqual(a.innerLr);
      expect(b.innerLrShape).toBe(a.innerLrShape);
      expect(b.algorithm).toBe(a.algorithm);
      expect(b.innerSteps).toBe(a.innerSteps);
      expect(b.stepWeights).toEqual(a.stepWeights);
      expect(b.learnInnerLr).toBe(a.learnInnerLr);
      expect(b.optimizer).toEqual(a.optimizer);
      expect(b.stepCount).toBe(3);
      const x = Float32Array.from([0.3, -2]);
      expect(b.adapt({ x, y: Float32Array.from([1, 2]) }).params).toEqual(a.adapt({ x, y: Float32Array.from([1, 2]) }).params);
    }
  });

  it('writes PyTorch names and shapes: layers.{l}.weight [out, in], layers.{l}.bias [out], F32', () => {
    const a = trained();
    const path = join(dir, 'names.safetensors');
    a.save(path);
    const f = readSafetensorsFile(path);
    expect(Object.keys(f.tensors).sort()).toEqual(['layers.0.bias', 'layers.0.weight', 'layers.1.bias', 'layers.1.weight', 'layers.2.bias', 'layers.2.weight']);
    expect(f.tensors['layers.1.weight']!.shape).toEqual([8, 12]);
    expect(f.tensors['layers.2.bias']!.shape).toEqual([1]);
    expect(f.tensors['layers.0.weight']!.data).toEqual(a.params.subarray(0, 12));
    expect(JSON.parse(f.metadata.model!)).toEqual({ layers: [1, 12, 8, 1], activation: 'relu', loss: 'mse' });
  });

  it('saving over an existing checkpoint replaces it whole and leaves no temporary file', () => {
    const path = join(dir, 'over.safetensors');
    trained().save(path);
    const b = trained({ seed: 99 });
    b.save(path);
    expect(MetaLearner.load(path).params).toEqual(b.params);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('a truncated checkpoint gives CORRUPT_FILE at every length', () => {
    const path = join(dir, 'full.safetensors');
    trained().save(path);
    const bytes = readFileSync(path);
    const cut = join(dir, 'cut.safetensors');
    for (const len of [0, 1, 7, 8, 20, bytes.length >> 1, bytes.length - 1]) {
      writeFileSync(cut, bytes.subarray(0, len));
      expectCorrupt(cut);
    }
  });

  it('corrupt headers, metadata and data give CORRUPT_FILE naming the file', () => {
    const path = join(dir, 'base.safetensors');
    trained().save(path);
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    const write = (h: unknown, data = bytes.subarray(8 + n)) => {
      const text = Buffer.from(JSON.stringify(h));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(text.length));
      const p = join(dir, 'bad.safetensors');
      writeFileSync(p, Buffer.concat([len, text, data]));
      return p;
    };
    const edits: ((h: Record<string, any>) => void)[] = [
      (h) => delete h['layers.1.weight'],
      (h) => (h.__metadata__.model = '{"layers": [1, 13, 8, 1], "activation": "relu", "loss": "mse"}'),
      (h) => (h.__metadata__.model = 'not json'),
      // a forged model of 2.1e9 parameters: refused from the tensors, before any allocation
      (h) => (h.__metadata__.model = '{"layers": [1, 46000, 46000, 1], "activation": "relu", "loss": "mse"}'),
      (h) => (h.__metadata__.format = 'something-else'),
      (h) => delete h.__metadata__,
      (h) => (h.__metadata__.inner_lr = '[]'),
      (h) => (h.__metadata__.inner_lr = '[NaN]'),
      (h) => (h.__metadata__.algorithm = 'maml3'),
      (h) => (h.__metadata__.inner_steps = '-1'),
      (h) => (h.__metadata__.step_weights = '[1, 2, 3]'),
      (h) => (h['layers.0.weight'].dtype = 'F64'),
    ];
    for (const edit of edits) {
      const h = structuredClone(header);
      edit(h);
      expectCorrupt(write(h));
    }
    // a NaN inside the weights
    const data = Buffer.from(bytes.subarray(8 + n));
    data.writeFloatLE(NaN, header['layers.0.weight'].data_offsets[0]);
    expectCorrupt(write(header, data));
    // a newer version is refused as unsupported rather than misread
    const h = structuredClone(header);
    h.__metadata__.version = '99';
    expectCorrupt(write(h), 'UNSUPPORTED');
  });
});
