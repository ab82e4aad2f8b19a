// SVG charts: well-formed, readable ticks, log axes, gaps, escaping, and bounded size.
// Run: npx vitest run test/plot.test.ts

import { describe, it, expect } from 'vitest';
import { renderChart, renderFigure, niceTicks, escapeXml, PALETTE, type ChartSpec } from '../src/plot.js';
import { MamlError } from '../src/errors.js';

/** Rough XML check: one <svg> root with xmlns, balanced tags, no stray '<' or bare '&'. */
function expectWellFormed(svg: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  expect(svg).not.toMatch(/NaN|Infinity|undefined/);
  const stack: string[] = [];
  let roots = 0;
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(svg); m; m = tag.exec(svg)) {
    const text = svg.slice(last, m.index);
    expect(text, `text before offset ${m.index}`).not.toMatch(/[<>]|&(?!(amp|lt|gt|quot|apos);)/);
    last = tag.lastIndex;
    const [, closing, name, , selfClosing] = m;
    if (closing) expect(stack.pop(), `closing </${name}> at ${m.index}`).toBe(name);
    else if (!selfClosing) {
      if (stack.length === 0) roots++;
      stack.push(name!);
    } else if (stack.length === 0) roots++;
  }
  expect(svg.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
}

/** The plot area, read from the chart's clip rectangle. */
function plotBox(svg: string): { x: number; y: number; w: number; h: number } {
  const m = /<clipPath id="[^"]+"><rect x="([-\d.]+)" y="([-\d.]+)" width="([-\d.]+)" height="([-\d.]+)"\/>/.exec(svg)!;
  return { x: Number(m[1]), y: Number(m[2]), w: Number(m[3]), h: Number(m[4]) };
}

/** Path data of the series drawn as lines, in order (grid and legend paths excluded). */
function seriesPaths(svg: string): string[] {
  const data = svg.slice(svg.indexOf('clip-path='), svg.indexOf('</g>', svg.indexOf('clip-path=')));
  return [...data.matchAll(/<path d="([^"]*)" stroke=/g)].map((m) => m[1]!);
}

function vertices(d: string): { pen: string; x: number; y: number }[] {
  return [...d.matchAll(/([ML])([-\d.]+) ([-\d.]+)/g)].map((m) => ({ pen: m[1]!, x: Number(m[2]), y: Number(m[3]) }));
}

/** Labels of the y-axis ticks (right-aligned texts left of the plot), top to bottom reversed. */
function yTickLabels(svg: string): string[] {
  return [...svg.matchAll(/<text x="[-\d.]+" y="([-\d.]+)" text-anchor="end" dy="0.35em">([^<]*)<\/text>/g)]
    .sort((a, b) => Number(b[1]) - Number(a[1]))
    .map((m) => m[2]!);
}

function xTickLabels(svg: string): string[] {
  const box = plotBox(svg);
  return [...svg.matchAll(/<text x="([-\d.]+)" y="([-\d.]+)" text-anchor="middle">([^<]*)<\/text>/g)]
    .filter((m) => Math.abs(Number(m[2]) - (box.y + box.h + 17)) < 0.02)
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((m) => m[3]!);
}

function line(name: string, x: ArrayLike<number>, y: ArrayLike<number>): ChartSpec {
  return { title: name, xLabel: 'x', yLabel: 'y', series: [{ name, x, y }] };
}

const isNiceStep = (step: number): boolean => {
  const f = step / Math.pow(10, Math.floor(Math.log10(step) + 1e-9));
  return [1, 2, 5].some((n) => Math.abs(f - n) < 1e-9);
};

describe('renderChart', () => {
  it('produces one well-formed standalone svg with title, axis labels and a legend entry per series', () => {
    const xs = Array.from({ length: 50 }, (_, i) => i / 5);
    const svg = renderChart({
      title: 'Sine fit',
      xLabel: 'input x',
      yLabel: 'output y',
      series: [
        { name: 'true function', x: xs, y: xs.map(Math.sin) },
        { name: 'after adaptation', x: xs, y: xs.map((x) => 0.9 * Math.sin(x)), style: 'dashed' },
        { name: 'support', x: [1, 2, 3], y: [1, 2, 3].map(Math.sin), style: 'points' },
      ],
    }, { width: 500, height: 300 });
    expectWellFormed(svg);
    expect(svg).toContain('width="500" height="300" viewBox="0 0 500 300"');
    for (const text of ['Sine fit', 'input x', 'output y', 'true function', 'after adaptation', 'support']) expect(svg).toContain(`>${text}</text>`);
    expect(svg).toContain('stroke-dasharray');
    expect(svg.match(/<circle /g)!.length).toBeGreaterThanOrEqual(3 + 1); // 3 points + legend swatch
  });

  it('gives series without a color distinct palette colors', () => {
    const series = Array.from({ length: 4 }, (_, i) => ({ name: `s${i}`, x: [0, 1], y: [i, i + 1] }));
    const svg = renderChart({ title: 't', xLabel: 'x', yLabel: 'y', series });
    const data = svg.slice(svg.indexOf('clip-path='));
    const strokes = [...data.matchAll(/<path d="[^"]*" stroke="([^"]+)"/g)].slice(0, 4).map((m) => m[1]);
    expect(strokes).toEqual(PALETTE.slice(0, 4));
    expect(new Set(PALETTE).size).toBe(PALETTE.length);
  });

  it('labels linear ticks with nice values that cover the data', () => {
    const svg = renderChart(line('a', [3, 4, 5, 6, 7, 8], [0.13, 0.5, 0.87, 0.2, 0.4, 0.6]));
    expect(yTickLabels(svg)).toEqual(['0', '0.2', '0.4', '0.6', '0.8', '1.0']);
    expect(xTickLabels(svg)).toEqual(['3', '4', '5', '6', '7', '8']);
  });

  it('draws a log y axis with powers of ten and skips non-positive values', () => {
    const y = [2.5, 0.8, 0, 0.1, -1, 0.02, 0.003];
    const svg = renderChart({ ...line('loss', y.map((_, i) => i), y), logY: true });
    expectWellFormed(svg);
    expect(yTickLabels(svg).filter((l) => l)).toEqual(['0.001', '0.01', '0.1', '1', '10']);
    const v = vertices(seriesPaths(svg)[0]!);
    expect(v.length).toBe(5); // 0 and -1 skipped
    expect(v.map((p) => p.pen).join('')).toBe('MLMML'); // the line breaks at each skipped point
    // Equal ratios are equal distances on a log axis: 0.1 → 0.01 spans as much as 1 → 0.1.
    const box = plotBox(svg);
    const decade = box.h / 4; // 0.001 .. 10
    expect(v[2]!.y).toBeCloseTo(box.y + box.h - 2 * decade, 1); // 0.1
  });

  it('labels 2 and 5 between the powers when the log range is about one decade', () => {
    const svg = renderChart({ ...line('narrow', [0, 1, 2], [0.2, 0.3, 0.45]), logY: true });
    expect(yTickLabels(svg).filter((l) => l)).toEqual(['0.1', '0.2', '0.5', '1']);
  });

  it('skips non-finite points and breaks the line there', () => {
    const svg = renderChart(line('gaps', [0, 1, 2, 3, 4, 5, NaN, 7], [1, 2, NaN, 4, Infinity, 6, 7, 8]));
    expectWellFormed(svg);
    const v = vertices(seriesPaths(svg)[0]!);
    expect(v.map((p) => p.pen).join('')).toBe('MLMMM'); // 0-1 joined; 3, 5 and 7 stand alone
    expect(seriesPaths(svg)[0]).toMatch(/h0\.01$/); // a lone point still shows as a dot
  });

  it('pads empty, single-point and constant data instead of dividing by zero', () => {
    for (const spec of [
      { title: 'none', xLabel: 'x', yLabel: 'y', series: [] },
      line('empty', [], []),
      line('all invalid', [NaN, 1], [1, Infinity]),
      line('one', [3], [5]),
      line('constant', [2, 2, 2], [0, 0, 0]),
      { ...line('log constant', [1, 2], [1e-3, 1e-3]), logY: true },
      { ...line('log nothing positive', [1, 2], [0, -1]), logY: true },
    ]) {
      expectWellFormed(renderChart(spec));
    }
  });

  it('escapes text for XML', () => {
    const svg = renderChart({
      title: 'a<b & "c" \'d\'', xLabel: '<x>', yLabel: 'y&y',
      series: [{ name: '</text><script>', x: [0, 1], y: [0, 1], color: '"red' }],
    });
    expectWellFormed(svg);
    expect(svg).toContain('a&lt;b &amp; &quot;c&quot; &apos;d&apos;');
    expect(svg).toContain('&lt;/text&gt;&lt;script&gt;');
    expect(svg).not.toContain('<script');
    expect(escapeXml('a\u0001b')).toBe('ab'); // XML 1.0 forbids most control characters
  });

  it('keeps 100,000 points under 200 KB and every extreme visible', () => {
    const n = 100_000;
    const x = new Float64Array(n);
    const y = new Float64Array(n);
    let seed = 12345;
    for (let i = 0; i < n; i++) {
      seed = (seed * 16807) % 2147483647;
      x[i] = i;
      y[i] = Math.sin(i / 5000) + 0.2 * (seed / 2147483647 - 0.5);
    }
    y[54321] = 100; // one spike up and one down must survive downsampling
    y[76543] = -100;
    const svg = renderChart({ ...line('long', x, y), yRange: [-150, 150], xRange: [0, n - 1] });
    expectWellFormed(svg);
    expect(svg.length).toBeLessThan(200_000);
    const box = plotBox(svg);
    const v = vertices(seriesPaths(svg)[0]!);
    expect(v.length).toBeLessThanOrEqual(4 * Math.ceil(box.w) + 4);
    const top = v.reduce((a, b) => (b.y < a.y ? b : a));
    const bottom = v.reduce((a, b) => (b.y > a.y ? b : a));
    expect(top.y).toBeCloseTo(box.y + (box.h * (150 - 100)) / 300, 1);
    expect(top.x).toBeCloseTo(box.x + (box.w * 54321) / (n - 1), 1);
    expect(bottom.y).toBeCloseTo(box.y + (box.h * (150 + 100)) / 300, 1);
    expect(bottom.x).toBeCloseTo(box.x + (box.w * 76543) / (n - 1), 1);
    expect(v.filter((p) => p.pen === 'M').length).toBe(1); // no gaps invented
  });

  it('keeps 100,000 scattered points under 200 KB', () => {
    const n = 100_000;
    let seed = 777;
    const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const x = Float64Array.from({ length: n }, rnd);
    const y = Float64Array.from({ length: n }, rnd);
    const svg = renderChart({ title: 'cloud', xLabel: 'x', yLabel: 'y', series: [{ name: 'p', x, y, style: 'points' }] });
    expectWellFormed(svg);
    expect(svg.length).toBeLessThan(200_000);
  });

  it('rejects mismatched lengths and bad ranges with MamlError codes', () => {
    const bad = (f: () => unknown, code: string) => {
      try {
        f();
        expect.unreachable('should have thrown');
      } catch (e) {
        expect(e).toBeInstanceOf(MamlError);
        expect((e as MamlError).code).toBe(code);
      }
    };
    bad(() => renderChart(line('m', [1, 2, 3], [1, 2])), 'SHAPE_MISMATCH');
    bad(() => renderChart({ ...line('r', [1], [1]), xRange: [2, 1] }), 'INVALID_ARGUMENT');
    bad(() => renderChart({ ...line('r', [1], [1]), yRange: [0, 1], logY: true }), 'INVALID_ARGUMENT');
    bad(() => renderChart({ ...line('s', [1], [1]), series: [{ name: 's', x: [1], y: [1], style: 'bars' as 'line' }] }), 'INVALID_ARGUMENT');
    bad(() => renderChart(line('w', [1], [1]), { width: NaN }), 'INVALID_ARGUMENT');
    bad(() => renderFigure([]), 'INVALID_ARGUMENT');
  });
});

describe('niceTicks', () => {
  it('uses steps of 1, 2 or 5 × 10^k and covers random ranges', () => {
    for (let trial = 0; trial < 500; trial++) {
      const scale = Math.pow(10, Math.floor(Math.random() * 16) - 8);
      const a = (Math.random() - 0.5) * 100 * scale;
      const b = a + Math.random() * 100 * scale + 1e-3 * scale;
      const { lo, hi, step, ticks } = niceTicks(a, b);
      expect(isNiceStep(step), `step ${step} for [${a}, ${b}]`).toBe(true);
      expect(lo).toBeLessThanOrEqual(a);
      expect(hi).toBeGreaterThanOrEqual(b);
      expect(ticks.length).toBeGreaterThanOrEqual(3);
      expect(ticks.length).toBeLessThanOrEqual(12);
      expect(ticks[0]).toBeCloseTo(lo, 9);
      expect(Math.abs(ticks[ticks.length - 1]! - hi)).toBeLessThan(step * 1e-6);
      for (let i = 1; i < ticks.length; i++) expect(Math.abs(ticks[i]! - ticks[i - 1]! - step)).toBeLessThan(step * 1e-6);
    }
  });

  it('does not overflow on ranges near the limits of doubles', () => {
    const t = niceTicks(-1.7e308, 1.7e308);
    expect(Number.isFinite(t.lo) && Number.isFinite(t.hi) && Number.isFinite(t.step)).toBe(true);
    expectWellFormed(renderChart(line('huge', [0, 1], [-1.7e308, 1.7e308])));
  });
});

describe('renderFigure', () => {
  it('lays panels out in a grid inside one svg, each with its own clip path', () => {
    const panels = [1, 2, 3, 4].map((k) => line(`panel ${k}`, [0, 1, 2], [k, 2 * k, 3 * k]));
    const svg = renderFigure(panels, { title: 'Four <panels>', columns: 2, panelWidth: 300, panelHeight: 200 });
    expectWellFormed(svg);
    expect(svg).toContain('width="600" height="436"'); // 2 × 300 wide, title + 2 × 200 high
    expect(svg).toContain('Four &lt;panels&gt;');
    const ids = [...svg.matchAll(/<clipPath id="([^"]+)"/g)].map((m) => m[1]);
    expect(ids.length).toBe(4);
    expect(new Set(ids).size).toBe(4);
    for (const id of ids) expect(svg).toContain(`clip-path="url(#${id})"`);
    expect(svg).toContain('transform="translate(300,236)"');
  });
});
