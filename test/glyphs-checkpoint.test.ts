// loadGlyphModel's sidecar (NAME.glyphs.json): a damaged one gives CORRUPT_FILE or IO_ERROR,
// never a TypeError.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FewShotLearner, loadGlyphModel } from '../src/index.js';
import { codeOf as code } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'maml-glyph-ckpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('loadGlyphModel', () => {
  const path = join(dir, 'm.safetensors');
  new FewShotLearner({ algorithm: 'protonet', embedding: { layers: [4, 3] }, seed: 1 }).save(path);
  const side = join(dir, 'm.glyphs.json');
  const good = { algorithm: 'protonet', ways: 5, shots: 1, testSteps: 0, dataset: {}, training: {}, trainSeconds: 1 };

  it('loads a learner with a valid sidecar', () => {
    writeFileSync(side, JSON.stringify(good));
    const { model } = loadGlyphModel(path);
    expect(model.learner).toBeInstanceOf(FewShotLearner);
    expect(model.ways).toBe(5);
  });

  it('refuses a sidecar that is missing, not JSON, not an object, or with bad counts', () => {
    expect(code(() => loadGlyphModel(join(dir, 'none.safetensors')))).toBe('IO_ERROR');
    for (const text of ['{', 'null', '[1]', '7', JSON.stringify({ ...good, ways: 0 }), JSON.stringify({ ...good, shots: '1' }), JSON.stringify({ ...good, testSteps: -1 }), JSON.stringify({ ...good, training: undefined }), JSON.stringify({ ...good, dataset: null })]) {
      writeFileSync(side, text);
      expect(code(() => loadGlyphModel(path)), text).toBe('CORRUPT_FILE');
    }
  });
});
