/**
 * Renders a character's stroke medians as anti-aliased thick polylines into a small greyscale
 * image (ink 1, paper 0, row-major [size × size]), with seeded per-sample distortions that
 * play the role of Omniglot's 20 different writers:
 *
 * - stroke-point noise: each stroke is densified (points at most 1/32 of the box apart) and
 *   displaced by a smooth random curve along its length (a random offset plus a half and a
 *   full sine period, independently in x and y), so strokes bend, shift and change length
 *   a little, independently of each other;
 * - affine jitter of the whole character: rotation, scale, aspect, shear, translation;
 * - stroke thickness: one width per sample.
 *
 * Coverage of a pixel is clamp(r + 1/2 − d, 0, 1), d the distance from the pixel's centre to
 * the nearest segment and r half the stroke width: a one-pixel linear ramp at the edge.
 * Everything is computed in float64 from a seeded generator, so one seed gives a bit-identical
 * image on every platform.
 */
import { Rng } from '../rng.js';
import { checkInt, fail } from '../validate.js';
import type { HanziCharacter } from './hanzi.js';

/** The ranges of the random distortions (each drawn uniformly unless said otherwise). */
export interface Distortion {
  /** rotation in degrees, uniform in ±rotation */
  rotation: number;
  /** isotropic scale, uniform in [lo, hi] (1 maps the 1024 box onto the whole image) */
  scale: [number, number];
  /** relative difference of the x and y scales, uniform in ±aspect */
  aspect: number;
  /** shear factor, uniform in ±shear */
  shear: number;
  /** translation in fractions of the image, uniform in ±translate (x and y) */
  translate: number;
  /** stroke width in pixels of a 28-pixel image (scaled with the size), uniform in [lo, hi] */
  thickness: [number, number];
  /** standard deviation of each coefficient of the smooth per-stroke displacement, in fractions of the box */
  pointNoise: number;
}

/**
 * The default distortions of the benchmark, tuned so that 1-NN on raw pixels scores about what it
 * scores on Omniglot (44 / 66 / 24 / 43% at 5-way 1-shot / 5-shot, 20-way 1-shot / 5-shot,
 * against 41.7 / 63.2 / 26.7 / 42.6% for pixel nearest neighbours in Vinyals et al. 2016).
 */
export const DISTORTION_DEFAULTS: Distortion = {
  rotation: 12,
  scale: [0.74, 0.94],
  aspect: 0.12,
  shear: 0.2,
  translate: 0.08,
  thickness: [1.6, 2.6],
  pointNoise: 0.03,
};

/** A stroke as flat x, y arrays in image units (pixels). */
interface Polyline {
  x: Float64Array;
  y: Float64Array;
}

/** Densifies a stroke to points at most `step` apart (box units, y already flipped to point down). */
function densify(stroke: [number, number][], step: number): { x: number[]; y: number[] } {
  const x: number[] = [], y: number[] = [];
  for (let i = 0; i < stroke.length; i++) {
    const px = stroke[i]![0] / 1024, py = (900 - stroke[i]![1]) / 1024;
    if (i > 0) {
      const qx = x[x.length - 1]!, qy = y[y.length - 1]!;
      const n = Math.ceil(Math.hypot(px - qx, py - qy) / step);
      for (let k = 1; k < n; k++) {
        x.push(qx + ((px - qx) * k) / n);
        y.push(qy + ((py - qy) * k) / n);
      }
    }
    x.push(px);
    y.push(py);
  }
  return { x, y };
}

/** The strokes of one sample, distorted and mapped to pixel coordinates, and the half-width. */
function distortedStrokes(ch: HanziCharacter, size: number, d: Distortion, rng: Rng): { strokes: Polyline[]; radius: number } {
  const deg = (rng.uniform() * 2 - 1) * d.rotation * (Math.PI / 180);
  const s = d.scale[0] + (d.scale[1] - d.scale[0]) * rng.uniform();
  const asp = (rng.uniform() * 2 - 1) * d.aspect;
  const sh = (rng.uniform() * 2 - 1) * d.shear;
  const tx = (rng.uniform() * 2 - 1) * d.translate, ty = (rng.uniform() * 2 - 1) * d.translate;
  const width = d.thickness[0] + (d.thickness[1] - d.thickness[0]) * rng.uniform();
  // A = R(θ) · Shear · diag(s(1+a), s(1−a)), about the centre of the box, then shifted
  const sx = s * (1 + asp), sy = s * (1 - asp);
  const c = Math.cos(deg), sn = Math.sin(deg);
  const a11 = c * sx, a12 = (c * sh - sn) * sy, a21 = sn * sx, a22 = (sn * sh + c) * sy;
  const strokes: Polyline[] = [];
  for (const stroke of ch.medians) {
    const p = densify(stroke, 1 / 32);
    const n = p.x.length;
    // smooth displacement along the stroke: offset + half period + full period, in x and y
    const cx = [rng.normal(), rng.normal(), rng.normal()].map((v) => v * d.pointNoise);
    const cy = [rng.normal(), rng.normal(), rng.normal()].map((v) => v * d.pointNoise);
    const x = new Float64Array(n), y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const u = n === 1 ? 0 : i / (n - 1);
      const h = Math.sin(Math.PI * u), f = Math.sin(2 * Math.PI * u);
      const bx = p.x[i]! + cx[0]! + cx[1]! * h + cx[2]! * f - 0.5;
      const by = p.y[i]! + cy[0]! + cy[1]! * h + cy[2]! * f - 0.5;
      x[i] = (a11 * bx + a12 * by + 0.5 + tx) * size;
      y[i] = (a21 * bx + a22 * by + 0.5 + ty) * size;
    }
    strokes.push({ x, y });
  }
  return { strokes, radius: (width * size) / 28 / 2 };
}

/** Draws one segment: out[pixel] = max(out[pixel], coverage). */
function drawSegment(out: Float32Array, size: number, x0: number, y0: number, x1: number, y1: number, r: number): void {
  const reach = r + 0.5;
  const i0 = Math.max(0, Math.floor(Math.min(y0, y1) - reach)), i1 = Math.min(size - 1, Math.ceil(Math.max(y0, y1) + reach));
  const j0 = Math.max(0, Math.floor(Math.min(x0, x1) - reach)), j1 = Math.min(size - 1, Math.ceil(Math.max(x0, x1) + reach));
  const dx = x1 - x0, dy = y1 - y0;
  const len2 = dx * dx + dy * dy;
  for (let i = i0; i <= i1; i++) {
    const py = i + 0.5 - y0;
    for (let j = j0; j <= j1; j++) {
      const px = j + 0.5 - x0;
      let t = len2 > 0 ? (px * dx + py * dy) / len2 : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const ex = px - t * dx, ey = py - t * dy;
      const cov = reach - Math.sqrt(ex * ex + ey * ey);
      if (cov > 0) {
        const v = cov > 1 ? 1 : cov;
        const k = i * size + j;
        if (v > out[k]!) out[k] = v;
      }
    }
  }
}

/**
 * Renders one distorted sample of `ch` into out [size × size] (overwritten), drawing the
 * distortions from `rng`.
 */
export function renderGlyph(ch: HanziCharacter, size: number, distortion: Distortion, rng: Rng, out?: Float32Array): Float32Array {
  out = checkImage(out, 'renderGlyph', 'out', checkInt(size, 'renderGlyph', 'size', 1, MAX_IMAGE_SIZE));
  out.fill(0);
  const { strokes, radius } = distortedStrokes(ch, size, distortion, rng);
  for (const s of strokes) {
    if (s.x.length === 1) drawSegment(out, size, s.x[0]!, s.y[0]!, s.x[0]!, s.y[0]!, radius);
    for (let i = 1; i < s.x.length; i++) drawSegment(out, size, s.x[i - 1]!, s.y[i - 1]!, s.x[i]!, s.y[i]!, radius);
  }
  return out;
}

/** A seed for one (dataset seed, character, sample) triple: murmur3's finalizer over the three. */
export function sampleSeed(seed: number, codePoint: number, sample: number): number {
  let h = seed >>> 0;
  for (const v of [codePoint, sample]) {
    h = Math.imul(h ^ (v >>> 0), 0x9e3779b1);
    h ^= h >>> 15;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
  }
  return h >>> 0;
}

/** The largest image side renderGlyph and rotateImage take. */
export const MAX_IMAGE_SIZE = 4096;

/** A Float32Array [size × size] (a new one when absent), or a MamlError. */
function checkImage(value: Float32Array | undefined, where: string, name: string, size: number): Float32Array {
  if (value === undefined && name !== 'src') return new Float32Array(size * size);
  if (!(value instanceof Float32Array)) return fail('INVALID_ARGUMENT', where, name, 'a Float32Array', value);
  if (value.length !== size * size) fail('SHAPE_MISMATCH', where, name, `of length size × size = ${size * size}`, value);
  return value;
}

/** Rotates a square image by quarter turns counter-clockwise, into out (not src itself). */
export function rotateImage(src: Float32Array, size: number, quarterTurns: number, out?: Float32Array): Float32Array {
  const where = 'rotateImage';
  checkInt(size, where, 'size', 1, MAX_IMAGE_SIZE);
  checkImage(src, where, 'src', size);
  out = checkImage(out, where, 'out', size);
  if (out === src) fail('INVALID_ARGUMENT', where, 'out', 'another array than src', out);
  const q = ((checkInt(quarterTurns, where, 'quarterTurns', -(2 ** 31), 2 ** 31) % 4) + 4) % 4;
  const n = size - 1;
  // out(i, j) = src(si, sj) with (si, sj) = (i, j), (j, n − i), (n − i, n − j), (n − j, i) for q = 0..3
  for (let i = 0; i < size; i++)
    for (let j = 0; j < size; j++)
      out[i * size + j] =
        q === 0 ? src[i * size + j]! : q === 1 ? src[j * size + n - i]! : q === 2 ? src[(n - i) * size + n - j]! : src[(n - j) * size + i]!;
  return out;
}
