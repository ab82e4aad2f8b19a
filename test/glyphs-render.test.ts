// The glyph benchmark's data: stroke data loading (and the message when the package is
// missing), the renderer's determinism per seed, the dataset's classes, rotations and splits.
import { describe, it, expect } from 'vitest';
import { MamlError } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { loadHanziCharacters, hanziDataDir } from '../src/glyphs/hanzi.js';
import { renderGlyph, rotateImage, sampleSeed, DISTORTION_DEFAULTS } from '../src/glyphs/render.js';
import { glyphDataset } from '../src/glyphs/dataset.js';
import { codeOf as code } from './helpers.js';

const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('hanzi stroke data', () => {
  const chars = loadHanziCharacters({ minStrokes: 3, maxStrokes: 4 });

  it('loads characters in code-point order with medians in the 1024 box, filtered by stroke count', () => {
    expect(chars.length).toBeGreaterThan(200);
    for (let i = 1; i < chars.length; i++) expect(chars[i]!.char.codePointAt(0)!).toBeGreaterThan(chars[i - 1]!.char.codePointAt(0)!);
    for (const c of chars.slice(0, 50)) {
      expect(c.medians.length).toBeGreaterThanOrEqual(3);
      expect(c.medians.length).toBeLessThanOrEqual(4);
      for (const s of c.medians) for (const [x, y] of s) expect(x >= -50 && x <= 1100 && y >= -200 && y <= 1000).toBe(true);
    }
  });

  it('a missing package gives MISSING_DEPENDENCY with the npm install command', () => {
    let err: unknown;
    try {
      loadHanziCharacters({ module: 'no-such-stroke-data-package' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MamlError);
    expect((err as MamlError).code).toBe('MISSING_DEPENDENCY');
    expect((err as MamlError).message).toMatch(/npm install no-such-stroke-data-package/);
    expect(() => hanziDataDir('hanzi-writer-data')).not.toThrow();
    expect(code(() => glyphDataset({ module: 'no-such-stroke-data-package' }))).toBe('MISSING_DEPENDENCY');
  });
});

describe('renderGlyph', () => {
  const [a, b] = loadHanziCharacters({ minStrokes: 5, maxStrokes: 5 }).slice(100, 102) as [never, never];

  it('gives bit-identical images for one seed, different images for other seeds and other characters', () => {
    const img = (ch: never, seed: number) => renderGlyph(ch, 28, DISTORTION_DEFAULTS, new Rng(seed));
    expect(same(img(a, 5), img(a, 5))).toBe(true);
    expect(same(img(a, 5), img(a, 6))).toBe(false);
    expect(same(img(a, 5), img(b, 5))).toBe(false);
    // without distortion, two characters still differ a lot: the strokes, not the noise, make the class
    const none = { ...DISTORTION_DEFAULTS, rotation: 0, scale: [0.85, 0.85] as [number, number], aspect: 0, shear: 0, translate: 0, thickness: [2, 2] as [number, number], pointNoise: 0 };
    const pa = renderGlyph(a, 28, none, new Rng(1)), pb = renderGlyph(b, 28, none, new Rng(2));
    expect(same(pa, renderGlyph(a, 28, none, new Rng(3)))).toBe(true); // no distortion: the seed does not matter
    let diff = 0;
    for (let i = 0; i < 784; i++) diff += Math.abs(pa[i]! - pb[i]!);
    expect(diff).toBeGreaterThan(20);
  });

  it('images lie in [0, 1], hold ink, and keep a margin free of most of it', () => {
    for (let s = 0; s < 20; s++) {
      const im = renderGlyph(a, 28, DISTORTION_DEFAULTS, new Rng(sampleSeed(1, 0x4e00, s)));
      let ink = 0, border = 0;
      for (let i = 0; i < 28; i++)
        for (let j = 0; j < 28; j++) {
          const v = im[i * 28 + j]!;
          expect(v >= 0 && v <= 1).toBe(true);
          ink += v;
          if (i === 0 || j === 0 || i === 27 || j === 27) border += v;
        }
      expect(ink).toBeGreaterThan(40);
      expect(border).toBeLessThan(0.1 * ink);
    }
  });

  it('rotateImage turns counter-clockwise by quarter turns, and four turns are the identity', () => {
    const rng = new Rng(3);
    const im = Float32Array.from({ length: 25 }, () => rng.uniform());
    const r1 = rotateImage(im, 5, 1);
    // counter-clockwise: the top-right pixel goes to the top-left
    expect(r1[0]).toBe(im[4]);
    expect(r1[4 * 5 + 0]).toBe(im[0]); // top-left goes to bottom-left
    let r: Float32Array = im;
    for (let k = 0; k < 4; k++) r = rotateImage(r, 5, 1);
    expect(same(r, im)).toBe(true);
    expect(same(rotateImage(im, 5, 2), rotateImage(r1, 5, 1))).toBe(true);
  });

  it('rotateImage and renderGlyph refuse images of the wrong size, fractional turns and in-place rotation', () => {
    const im = new Float32Array(25);
    expect(code(() => rotateImage(im, 4, 1))).toBe('SHAPE_MISMATCH'); // src is not 4 × 4 (it used to give NaNs)
    expect(code(() => rotateImage(im, 5, 1, new Float32Array(16)))).toBe('SHAPE_MISMATCH');
    expect(code(() => rotateImage(im, 5, 1.5))).toBe('INVALID_ARGUMENT');
    expect(code(() => rotateImage(im, -5, 1))).toBe('INVALID_ARGUMENT');
    expect(code(() => rotateImage(im, 5, 1, im))).toBe('INVALID_ARGUMENT');
    expect(code(() => rotateImage([0] as never, 1, 1))).toBe('INVALID_ARGUMENT');
    const [ch] = loadHanziCharacters({ maxStrokes: 3 });
    expect(code(() => renderGlyph(ch!, 0, DISTORTION_DEFAULTS, new Rng(1)))).toBe('INVALID_ARGUMENT');
    expect(code(() => renderGlyph(ch!, 8, DISTORTION_DEFAULTS, new Rng(1), new Float32Array(63)))).toBe('SHAPE_MISMATCH');
    expect(renderGlyph(ch!, 8, DISTORTION_DEFAULTS, new Rng(1)).length).toBe(64);
  });
});

describe('glyphDataset', () => {
  const opts = { trainCharacters: 6, valCharacters: 2, testCharacters: 4, samples: 5, seed: 3 };
  const d = glyphDataset(opts);

  it('has 4 rotation classes per character, class-major rows, and disjoint splits that keep rotations together', () => {
    expect(d.classes.length).toBe(12 * 4);
    expect(d.x.length).toBe(12 * 4 * 5 * 784);
    for (let r = 0; r < d.labels.length; r++) expect(d.labels[r]).toBe(Math.floor(r / 5));
    const { train, val, test } = d.split;
    expect([train.length, val.length, test.length]).toEqual([24, 8, 16]);
    expect(new Set([...train, ...val, ...test]).size).toBe(48);
    for (const part of [train, val, test]) {
      const chars = new Set([...part].map((c) => d.classes[c]!.char));
      expect(chars.size * 4).toBe(part.length);
    }
    // class 4c + q is sample-for-sample the q-quarter-turn of class 4c
    const row = (c: number, s: number) => d.x.subarray((c * 5 + s) * 784, (c * 5 + s + 1) * 784);
    expect(same(row(9, 2), rotateImage(row(8, 2), 28, 1))).toBe(true);
    expect(d.classes[9]).toEqual({ char: d.classes[8]!.char, rotation: 90 });
  });

  it('is deterministic per seed; another seed draws other characters or distortions', () => {
    const again = glyphDataset(opts);
    expect(same(again.x, d.x)).toBe(true);
    expect(Array.from(again.split.test)).toEqual(Array.from(d.split.test));
    const other = glyphDataset({ ...opts, seed: 4 });
    expect(same(other.x, d.x)).toBe(false);
  });

  it('refuses bad options with MamlError codes', () => {
    expect(code(() => glyphDataset({ ...opts, distortion: { rotation: NaN } }))).toBe('NON_FINITE');
    expect(code(() => glyphDataset({ ...opts, distortion: { wobble: 1 } as never }))).toBe('INVALID_ARGUMENT');
    expect(code(() => glyphDataset({ ...opts, distortion: { scale: [0.9, 0.5] } }))).toBe('INVALID_ARGUMENT');
    expect(code(() => glyphDataset({ ...opts, trainCharacters: 100_000 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => glyphDataset({ ...opts, samples: 0 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => glyphDataset({ trainCharacters: 0, valCharacters: 0, testCharacters: 0 }))).toBe('INVALID_ARGUMENT');
  });
});
