/**
 * Dependency-free SVG charts a person can read: training curves, fitted functions, metrics
 * against K. `renderChart` draws one chart, `renderFigure` several side by side; both return
 * one complete standalone `<svg>` string to write to a `.svg` file.
 *
 * What every chart has: "nice" ticks (1, 2, 5 × 10^k, or powers of ten on a log axis) with
 * grid lines, a title, axis labels and a legend placed in the emptiest corner.
 * What it never has: NaN or Infinity. Non-finite points (and non-positive ones on a log axis)
 * are skipped and a line breaks there; an empty or constant series gets a padded range.
 * Size: coordinates are rounded to 2 decimals, and a line keeps at most the first, last,
 * lowest and highest point of each pixel column, so 100,000 points still make a file of tens
 * of kilobytes with every spike visible.
 */

import { MamlError, describe } from './errors.js';

/** One curve or point cloud. `x` and `y` have the same length; point i is (x[i], y[i]). */
export interface Series {
  name: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  /** 'line' (default) joins points in index order; 'dashed' likewise; 'points' draws dots. */
  style?: 'line' | 'points' | 'dashed';
  /** Any SVG color; defaults to the next color of a ten-color palette. */
  color?: string;
}

/** One chart. Ranges are chosen from the data unless given; `logY` needs positive y values. */
export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logY?: boolean;
  xRange?: [number, number];
  yRange?: [number, number];
}

/** Distinct colors (Tableau 10), used in order by series without a `color`. */
export const PALETTE: readonly string[] = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
  '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
];

/**
 * Renders one chart as a standalone SVG document.
 *
 * @example
 * ```ts
 * import { writeFileSync } from 'node:fs';
 * const svg = renderChart({
 *   title: 'Meta-training loss', xLabel: 'iteration', yLabel: 'loss', logY: true,
 *   series: [{ name: 'train', x: iterations, y: losses }],
 * });
 * writeFileSync('loss.svg', svg);
 * ```
 */
export function renderChart(spec: ChartSpec, options: { width?: number; height?: number } = {}): string {
  checkObject(options, 'renderChart: options');
  const width = checkSize(options.width, 640, 'renderChart: options.width');
  const height = checkSize(options.height, 420, 'renderChart: options.height');
  checkSpec(spec, 'renderChart: spec');
  return svgDocument(width, height, renderPanel(spec, width, height));
}

/**
 * Renders several charts in a grid (row by row, `columns` per row) as one SVG document.
 *
 * @example
 * ```ts
 * const svg = renderFigure([lossChart, sineChart, aucChart], { title: 'Sine regression, 5-shot' });
 * ```
 */
export function renderFigure(
  panels: ChartSpec[],
  options: { title?: string; columns?: number; panelWidth?: number; panelHeight?: number } = {},
): string {
  if (!Array.isArray(panels) || panels.length === 0) {
    throw new MamlError('INVALID_ARGUMENT', `renderFigure: panels must be a non-empty array of chart specs, got ${describe(panels)}`);
  }
  checkObject(options, 'renderFigure: options');
  panels.forEach((p, i) => checkSpec(p, `renderFigure: panels[${i}]`));
  const pw = checkSize(options.panelWidth, 480, 'renderFigure: options.panelWidth');
  const ph = checkSize(options.panelHeight, 360, 'renderFigure: options.panelHeight');
  const columns = options.columns ?? Math.min(panels.length, 3);
  if (!Number.isInteger(columns) || columns < 1) {
    throw new MamlError('INVALID_ARGUMENT', `renderFigure: options.columns must be a positive integer, got ${describe(columns)}`);
  }
  if (options.title !== undefined && typeof options.title !== 'string') {
    throw new MamlError('INVALID_ARGUMENT', `renderFigure: options.title must be a string, got ${describe(options.title)}`);
  }
  const titleH = options.title ? 36 : 0;
  const cols = Math.min(columns, panels.length);
  const rows = Math.ceil(panels.length / cols);
  const out: string[] = [];
  if (options.title) {
    out.push(`<text x="${num((cols * pw) / 2)}" y="24" text-anchor="middle" font-size="17" font-weight="bold">${escapeXml(options.title)}</text>`);
  }
  panels.forEach((p, i) => {
    const x = (i % cols) * pw;
    const y = titleH + Math.floor(i / cols) * ph;
    out.push(`<g transform="translate(${num(x)},${num(y)})">`, renderPanel(p, pw, ph, `${i}`), '</g>');
  });
  return svgDocument(cols * pw, titleH + rows * ph, out.join('\n'));
}

/** Escapes text for XML content and attribute values, dropping characters XML forbids. */
export function escapeXml(text: string): string {
  return String(text)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/**
 * Nice linear ticks: a step of 1, 2 or 5 × 10^k giving about `target` intervals, and the
 * range widened outward to whole steps so the ticks cover [min, max].
 */
export function niceTicks(min: number, max: number, target = 5): { lo: number; hi: number; step: number; ticks: number[] } {
  const step = niceStep((max * 0.5 - min * 0.5) / (target * 0.5)); // halves: no overflow at ±1e308
  let lo = Math.floor(min / step + 1e-9) * step;
  let hi = Math.ceil(max / step - 1e-9) * step;
  if (!Number.isFinite(lo)) lo = min;
  if (!Number.isFinite(hi)) hi = max;
  return { lo, hi, step, ticks: ticksIn(lo, hi, step) };
}

// ---------------------------------------------------------------------------------------------
// Layout of one panel, in its own coordinates [0, w] × [0, h].

const FONT = 12; // tick labels; a character is about 0.6 em wide
const charW = (size: number): number => 0.6 * size;

interface Axis {
  lo: number; // in axis units (log10 of the value on a log axis)
  hi: number;
  ticks: { at: number; label: string; major: boolean }[]; // `at` in axis units
}

function renderPanel(spec: ChartSpec, w: number, h: number, salt = ''): string {
  const log = spec.logY === true;
  const valid = (x: number, y: number): boolean => Number.isFinite(x) && Number.isFinite(y) && (!log || y > 0);
  const xAxis = spec.xRange ? givenLinear(spec.xRange) : dataLinear(spec.series, 'x', valid, undefined);
  const inX = spec.xRange ? spec.xRange : undefined;
  const yAxis = log
    ? spec.yRange ? logAxis(Math.log10(spec.yRange[0]), Math.log10(spec.yRange[1])) : dataLog(spec.series, valid, inX)
    : spec.yRange ? givenLinear(spec.yRange) : dataLinear(spec.series, 'y', valid, inX);

  const yLabelW = Math.max(...yAxis.ticks.filter((t) => t.label).map((t) => t.label.length), 1) * charW(FONT);
  const left = Math.round(30 + yLabelW + 8);
  const right = 18;
  const top = 40;
  const bottom = 50;
  const x0 = Math.min(left, w - 20);
  const x1 = Math.max(x0 + 10, w - right);
  const y0 = Math.min(top, h - 20);
  const y1 = Math.max(y0 + 10, h - bottom);
  const sx = (v: number): number => x0 + ((v * 0.5 - xAxis.lo * 0.5) / (xAxis.hi * 0.5 - xAxis.lo * 0.5)) * (x1 - x0);
  const sAxisY = (a: number): number => y1 - ((a * 0.5 - yAxis.lo * 0.5) / (yAxis.hi * 0.5 - yAxis.lo * 0.5)) * (y1 - y0);
  const sy = log ? (v: number) => sAxisY(Math.log10(v)) : sAxisY;

  const clipId = `clip${hash(`${salt}|${spec.title}|${w}|${h}|${x0}|${y0}`)}`;
  const out: string[] = [];
  out.push(`<defs><clipPath id="${clipId}"><rect x="${num(x0)}" y="${num(y0)}" width="${num(x1 - x0)}" height="${num(y1 - y0)}"/></clipPath></defs>`);
  out.push(`<text x="${num((x0 + x1) / 2)}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(spec.title)}</text>`);

  // Grid, frame, ticks and their labels.
  const grid: string[] = [];
  const minor: string[] = [];
  const labels: string[] = [];
  for (const t of xAxis.ticks) {
    const px = num(sx(t.at));
    grid.push(`M${px} ${num(y0)}V${num(y1)}`);
    labels.push(`<text x="${px}" y="${num(y1 + 17)}" text-anchor="middle">${escapeXml(t.label)}</text>`);
  }
  for (const t of yAxis.ticks) {
    const py = num(sAxisY(t.at));
    (t.major ? grid : minor).push(`M${num(x0)} ${py}H${num(x1)}`);
    if (t.label) labels.push(`<text x="${num(x0 - 6)}" y="${py}" text-anchor="end" dy="0.35em">${escapeXml(t.label)}</text>`);
  }
  if (minor.length) out.push(`<path d="${minor.join('')}" stroke="#f0f0f0" fill="none"/>`);
  out.push(`<path d="${grid.join('')}" stroke="#dddddd" fill="none"/>`);
  out.push(`<rect x="${num(x0)}" y="${num(y0)}" width="${num(x1 - x0)}" height="${num(y1 - y0)}" fill="none" stroke="#333333"/>`);
  out.push(`<g font-size="${FONT}" fill="#333333">`, ...labels, '</g>');
  out.push(`<text x="${num((x0 + x1) / 2)}" y="${num(h - 10)}" text-anchor="middle" font-size="13">${escapeXml(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(16,${num((y0 + y1) / 2)}) rotate(-90)" text-anchor="middle" font-size="13">${escapeXml(spec.yLabel)}</text>`);

  // The data, clipped to the plot area.
  const colors = spec.series.map((s, i) => s.color ?? PALETTE[i % PALETTE.length]!);
  out.push(`<g clip-path="url(#${clipId})" fill="none">`);
  spec.series.forEach((s, i) => {
    const color = escapeXml(colors[i]!);
    if (s.style === 'points') {
      out.push(pointsMarkup(s, valid, sx, sy, [x0, x1, y0, y1], color));
    } else {
      const d = linePath(s, valid, sx, sy, Math.max(1, Math.round(x1 - x0)));
      if (d) out.push(`<path d="${d}" stroke="${color}" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round"${s.style === 'dashed' ? ' stroke-dasharray="6 4"' : ''}/>`);
    }
  });
  out.push('</g>');
  out.push(legendMarkup(spec.series, colors, valid, sx, sy, [x0, x1, y0, y1]));
  return out.join('\n');
}

function svgDocument(w: number, h: number, body: string): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${num(w)}" height="${num(h)}" viewBox="0 0 ${num(w)} ${num(h)}" font-family="Helvetica, Arial, sans-serif" font-size="${FONT}">`,
    `<rect width="${num(w)}" height="${num(h)}" fill="#ffffff"/>`,
    body,
    '</svg>',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Ranges and ticks.

function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

function ticksIn(lo: number, hi: number, step: number): number[] {
  const dec = Math.min(20, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  const first = Math.ceil(lo / step - 1e-9);
  const ticks: number[] = [];
  for (let i = first; ticks.length < 50; i++) {
    const v = Number((i * step).toFixed(dec));
    if (!Number.isFinite(v) || v > hi + step * 1e-9) break;
    ticks.push(v);
  }
  return ticks;
}

function givenLinear(range: [number, number]): Axis {
  const [lo, hi] = range;
  const step = niceStep((hi * 0.5 - lo * 0.5) / 2.5);
  return { lo, hi, ticks: ticksIn(lo, hi, step).map((v) => tick(v, step)) };
}

/** Linear axis over the valid points (only those with x in `inX`, when given). */
/** [min, max] of x or y over the valid points (only those with x in `inX`, when given). */
function extent(series: Series[], key: 'x' | 'y', valid: (x: number, y: number) => boolean, inX: [number, number] | undefined): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (const s of series) {
    for (let i = 0; i < s.x.length; i++) {
      const x = s.x[i]!;
      const y = s.y[i]!;
      if (!valid(x, y) || (inX && (x < inX[0] || x > inX[1]))) continue;
      const v = key === 'x' ? x : y;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  return [min, max];
}

function dataLinear(series: Series[], key: 'x' | 'y', valid: (x: number, y: number) => boolean, inX: [number, number] | undefined): Axis {
  let [min, max] = extent(series, key, valid, inX);
  if (min > max) [min, max] = [0, 1]; // no data
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    [min, max] = [min - pad, max + pad];
  }
  const { lo, hi, step, ticks } = niceTicks(min, max);
  return { lo, hi, ticks: ticks.map((v) => tick(v, step)) };
}

function dataLog(series: Series[], valid: (x: number, y: number) => boolean, inX: [number, number] | undefined): Axis {
  let [min, max] = extent(series, 'y', valid, inX);
  if (min > max) [min, max] = [1, 10];
  let lo = Math.floor(Math.log10(min) + 1e-9);
  let hi = Math.ceil(Math.log10(max) - 1e-9);
  if (lo >= hi) [lo, hi] = [lo - 1, hi + 1];
  return logAxis(lo, hi);
}

/**
 * Log axis between 10^lo and 10^hi (lo, hi in decades): labeled powers of ten (every
 * `stride`-th when there are many), light lines at 2..9 × 10^k when there are few, and labels
 * at 2 and 5 × 10^k when the range is about one decade, since two powers are too few to read by.
 */
function logAxis(lo: number, hi: number): Axis {
  const ticks: Axis['ticks'] = [];
  const span = hi - lo;
  const stride = Math.max(1, Math.ceil(span / 8));
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
    if (k >= lo - 1e-9 && k <= hi + 1e-9) {
      if (k % stride === 0) ticks.push({ at: k, label: powerLabel(k), major: true });
      else ticks.push({ at: k, label: '', major: false });
    }
    if (span > 5) continue;
    for (let m = 2; m <= 9; m++) {
      const at = k + Math.log10(m);
      if (at <= lo || at >= hi) continue;
      ticks.push({ at, label: span <= 1.5 && (m === 2 || m === 5) ? trimNumber(m * Math.pow(10, k), k) : '', major: false });
    }
  }
  return { lo, hi, ticks };
}

function powerLabel(k: number): string {
  return k >= -4 && k <= 5 ? trimNumber(Math.pow(10, k), k) : `1e${k}`;
}

/** A value m × 10^k written without floating-point noise (0.30000000000000004 → 0.3). */
function trimNumber(v: number, k: number): string {
  return k < -4 || k > 5 ? v.toExponential(0).replace('+', '') : v.toFixed(Math.max(0, -k));
}

function tick(v: number, step: number): Axis['ticks'][number] {
  return { at: v, label: tickLabel(v, step), major: true };
}

/** Label for a linear tick: as many decimals as the step needs, exponents for extremes. */
function tickLabel(v: number, step: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) {
    const digits = Math.min(20, Math.max(0, Math.floor(Math.log10(a)) - Math.floor(Math.log10(step))));
    return v.toExponential(digits).replace(/\.?0+e/, 'e').replace('e+', 'e');
  }
  return v.toFixed(Math.min(20, Math.max(0, -Math.floor(Math.log10(step) + 1e-9))));
}

// ---------------------------------------------------------------------------------------------
// Series markup.

/**
 * Path data for a line. Points are taken in index order in `columns` chunks; of each chunk
 * the first, last, lowest and highest valid points are kept, so the drawing is bounded by
 * 4 points per pixel column and every extreme survives. The pen lifts wherever an invalid
 * point lies between two kept points.
 */
function linePath(
  s: Series,
  valid: (x: number, y: number) => boolean,
  sx: (v: number) => number,
  sy: (v: number) => number,
  columns: number,
): string {
  const n = s.x.length;
  const invalidBefore = new Int32Array(n + 1); // invalidBefore[i] = invalid points among 0..i-1
  for (let i = 0; i < n; i++) invalidBefore[i + 1] = invalidBefore[i]! + (valid(s.x[i]!, s.y[i]!) ? 0 : 1);
  const chunk = Math.max(1, Math.ceil(n / columns));
  const parts: string[] = [];
  let prev = -1;
  const keep = (i: number): void => {
    const pen = prev < 0 || invalidBefore[i]! - invalidBefore[prev + 1]! > 0 ? 'M' : 'L';
    parts.push(`${pen}${num(sx(s.x[i]!))} ${num(sy(s.y[i]!))}`);
    prev = i;
  };
  for (let a = 0; a < n; a += chunk) {
    const b = Math.min(n, a + chunk);
    let first = -1;
    let last = -1;
    let lowest = -1;
    let highest = -1;
    for (let i = a; i < b; i++) {
      const y = s.y[i]!;
      if (!valid(s.x[i]!, y)) continue;
      if (first < 0) first = lowest = highest = i;
      last = i;
      if (y < s.y[lowest]!) lowest = i;
      if (y > s.y[highest]!) highest = i;
    }
    if (first < 0) continue;
    const kept = [...new Set([first, lowest, highest, last])].sort((p, q) => p - q);
    for (const i of kept) keep(i);
  }
  // A single isolated point would be invisible as a path: draw it as a zero-length segment.
  return parts.join('').replace(/M([-\d.]+) ([-\d.]+)(?=M|$)/g, 'M$1 $2h0.01');
}

/** Dots, one per occupied cell of a pixel grid (coarser when there are very many). */
function pointsMarkup(
  s: Series,
  valid: (x: number, y: number) => boolean,
  sx: (v: number) => number,
  sy: (v: number) => number,
  box: [number, number, number, number],
  color: string,
): string {
  const [x0, x1, y0, y1] = box;
  const pts: [number, number][] = [];
  for (let i = 0; i < s.x.length; i++) {
    const x = s.x[i]!;
    const y = s.y[i]!;
    if (!valid(x, y)) continue;
    const px = sx(x);
    const py = sy(y);
    if (px >= x0 - 4 && px <= x1 + 4 && py >= y0 - 4 && py <= y1 + 4) pts.push([px, py]);
  }
  let kept = pts;
  for (let cell = 1; kept.length > 4000; cell *= 2) {
    const seen = new Map<string, [number, number]>();
    for (const p of pts) {
      const key = `${Math.round(p[0] / cell)},${Math.round(p[1] / cell)}`;
      if (!seen.has(key)) seen.set(key, p);
    }
    kept = [...seen.values()];
  }
  if (kept.length <= 500) {
    return kept.map(([px, py]) => `<circle cx="${num(px)}" cy="${num(py)}" r="3.5" fill="${color}" stroke="#ffffff" stroke-width="0.8"/>`).join('\n');
  }
  // Many dots: one path of zero-length round-capped segments is far smaller than circles.
  return `<path d="${kept.map(([px, py]) => `M${num(px)} ${num(py)}h0`).join('')}" stroke="${color}" stroke-width="4" stroke-linecap="round"/>`;
}

/** Legend box in whichever corner of the plot area covers the fewest data points. */
function legendMarkup(
  series: Series[],
  colors: string[],
  valid: (x: number, y: number) => boolean,
  sx: (v: number) => number,
  sy: (v: number) => number,
  box: [number, number, number, number],
): string {
  if (series.length === 0) return '';
  const [x0, x1, y0, y1] = box;
  const rowH = 17;
  const lw = 36 + Math.max(...series.map((s) => String(s.name).length)) * charW(FONT);
  const lh = 8 + rowH * series.length;
  const corners: [number, number][] = [
    [x1 - 8 - lw, y0 + 8], [x0 + 8, y0 + 8], [x1 - 8 - lw, y1 - 8 - lh], [x0 + 8, y1 - 8 - lh],
  ];
  const covered = corners.map(() => 0);
  const count = (px: number, py: number): void => {
    corners.forEach(([cx, cy], c) => {
      if (px >= cx && px <= cx + lw && py >= cy && py <= cy + lh) covered[c]!++;
    });
  };
  for (const s of series) {
    const stride = Math.max(1, Math.floor(s.x.length / 2000)); // a sample is enough to choose
    // A line with few points also covers the pixels between them.
    const between = s.style === 'points' ? 0 : Math.min(20, Math.floor(2000 / Math.max(1, s.x.length)));
    let prev: [number, number] | undefined;
    for (let i = 0; i < s.x.length; i += stride) {
      if (!valid(s.x[i]!, s.y[i]!)) {
        prev = undefined;
        continue;
      }
      const px = sx(s.x[i]!);
      const py = sy(s.y[i]!);
      count(px, py);
      for (let j = 1; prev && j <= between; j++) {
        const t = j / (between + 1);
        count(prev[0] + t * (px - prev[0]), prev[1] + t * (py - prev[1]));
      }
      prev = [px, py];
    }
  }
  const best = covered.indexOf(Math.min(...covered));
  const [lx, ly] = corners[best]!;
  const out = [`<g transform="translate(${num(lx)},${num(ly)})">`];
  out.push(`<rect width="${num(lw)}" height="${num(lh)}" fill="#ffffff" fill-opacity="0.85" stroke="#bbbbbb" rx="3"/>`);
  series.forEach((s, i) => {
    const cy = num(4 + rowH * i + rowH / 2);
    const color = escapeXml(colors[i]!);
    if (s.style === 'points') out.push(`<circle cx="18" cy="${cy}" r="3.5" fill="${color}"/>`);
    else out.push(`<path d="M6 ${cy}H30" stroke="${color}" stroke-width="2"${s.style === 'dashed' ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="36" y="${cy}" dy="0.35em">${escapeXml(String(s.name))}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

/** A coordinate rounded to 2 decimals; never NaN or Infinity (clamped far outside any plot). */
function num(v: number): string {
  const c = Number.isNaN(v) ? 0 : Math.min(1e6, Math.max(-1e6, v));
  const r = Math.round(c * 100) / 100;
  return r === 0 ? '0' : String(r);
}

/** FNV-1a, to give clip paths ids that differ between charts yet stay deterministic. */
function hash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}

function checkObject(value: unknown, what: string): void {
  if (value === null || typeof value !== 'object') throw new MamlError('INVALID_ARGUMENT', `${what} must be an object, got ${describe(value)}`);
}

function checkSize(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 50 || value > 20000) {
    throw new MamlError('INVALID_ARGUMENT', `${what} must be a number of pixels in [50, 20000], got ${describe(value)}`);
  }
  return value;
}

function checkRange(range: unknown, positive: boolean, what: string): void {
  const ok = Array.isArray(range) && range.length === 2 && range.every((v) => typeof v === 'number' && Number.isFinite(v)) && range[0] < range[1];
  if (!ok) throw new MamlError('INVALID_ARGUMENT', `${what} must be [lo, hi] with finite lo < hi, got ${Array.isArray(range) ? JSON.stringify(range) : describe(range)}`);
  if (positive && !(range[0] > 0)) throw new MamlError('INVALID_ARGUMENT', `${what} must be positive on a log axis, got ${JSON.stringify(range)}`);
}

function checkSpec(spec: ChartSpec, what: string): void {
  checkObject(spec, what);
  for (const key of ['title', 'xLabel', 'yLabel'] as const) {
    if (typeof spec[key] !== 'string') throw new MamlError('INVALID_ARGUMENT', `${what}.${key} must be a string, got ${describe(spec[key])}`);
  }
  if (!Array.isArray(spec.series)) throw new MamlError('INVALID_ARGUMENT', `${what}.series must be an array, got ${describe(spec.series)}`);
  if (spec.xRange !== undefined) checkRange(spec.xRange, false, `${what}.xRange`);
  if (spec.yRange !== undefined) checkRange(spec.yRange, spec.logY === true, `${what}.yRange`);
  spec.series.forEach((s, i) => {
    const where = `${what}.series[${i}]`;
    checkObject(s, where);
    if (typeof s.name !== 'string') throw new MamlError('INVALID_ARGUMENT', `${where}.name must be a string, got ${describe(s.name)}`);
    for (const key of ['x', 'y'] as const) {
      const a = s[key] as unknown as { length?: unknown } | null;
      if (a === null || typeof a !== 'object' || typeof a.length !== 'number') {
        throw new MamlError('INVALID_ARGUMENT', `${where}.${key} must be an array or typed array of numbers, got ${describe(s[key])}`);
      }
    }
    if (s.x.length !== s.y.length) {
      throw new MamlError('SHAPE_MISMATCH', `${where}: x has ${s.x.length} values but y has ${s.y.length}; they must have the same length`);
    }
    if (s.style !== undefined && s.style !== 'line' && s.style !== 'points' && s.style !== 'dashed') {
      throw new MamlError('INVALID_ARGUMENT', `${where}.style must be 'line', 'points' or 'dashed', got ${describe(s.style)}`);
    }
    if (s.color !== undefined && typeof s.color !== 'string') {
      throw new MamlError('INVALID_ARGUMENT', `${where}.color must be a string, got ${describe(s.color)}`);
    }
  });
}
