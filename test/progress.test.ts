// Progress reports: a redrawn bar on terminals, plain lines elsewhere, nothing when disabled.
// Run: npx vitest run test/progress.test.ts

import { describe, it, expect } from 'vitest';
import { createProgress, formatDuration, formatNumber, type ProgressOptions } from '../src/progress.js';
import { MamlError } from '../src/errors.js';

/** A stream that records what is written, as a terminal or as a pipe. */
function fakeStream(isTTY: boolean, columns = 100) {
  const writes: string[] = [];
  const stream = {
    isTTY,
    columns,
    write(chunk: string) {
      writes.push(chunk);
      return true;
    },
  } as unknown as NonNullable<ProgressOptions['stream']>;
  return { stream, writes, text: () => writes.join('') };
}

/** A clock the test moves by hand, counting how often it is read. */
function fakeClock() {
  const clock = { t: 1000, reads: 0, now: () => (clock.reads++, clock.t) };
  return clock;
}

describe('createProgress on a terminal', () => {
  it('redraws one line with \\r, clears to the end of it, and ends with a newline', () => {
    const { stream, writes, text } = fakeStream(true, 100);
    const clock = fakeClock();
    const p = createProgress({ total: 200, label: 'train', stream, now: clock.now });
    for (let i = 1; i <= 200; i++) {
      clock.t += 10; // 10 ms per step: 100 it/s
      p.update(i, { loss: 0.123456, task: 'sine' });
    }
    p.finish();
    expect(text().endsWith('\n')).toBe(true);
    const draws = writes.slice(0, -1);
    expect(draws.length).toBeGreaterThan(5);
    for (const d of draws) {
      expect(d.startsWith('\r')).toBe(true);
      expect(d.endsWith('\x1b[K')).toBe(true);
      expect(d.length - '\r\x1b[K'.length).toBeLessThan(100); // never wraps
    }
    const midway = draws.find((d) => d.includes(' 100/200 ')) ?? draws[Math.floor(draws.length / 2)]!;
    expect(midway).toMatch(/^\rtrain █+░+ \d+\/200 +\d+\.\d% +100 it\/s +ETA \d+s +loss=0\.1235 +task=sine/);
    expect(draws[draws.length - 1]).toMatch(/ 200\/200 +100\.0% .* in 2s +loss=0\.1235/);
  });

  it('draws at most once per minIntervalMs however often update is called', () => {
    const { stream, writes } = fakeStream(true);
    const clock = fakeClock();
    const p = createProgress({ total: 1000, stream, minIntervalMs: 100, now: clock.now });
    for (let i = 1; i <= 1000; i++) {
      clock.t += 1; // 1 s in all: about 10 redraws
      p.update(i);
    }
    expect(writes.length).toBeGreaterThanOrEqual(5);
    expect(writes.length).toBeLessThanOrEqual(11);
  });

  it('reads the clock rarely in a hot loop of 70,000 updates', () => {
    const { stream } = fakeStream(true);
    const clock = fakeClock();
    const p = createProgress({ total: 70_000, stream, now: () => ((clock.t += 0.001), clock.now()) }); // 1 µs per read
    const start = performance.now();
    for (let i = 1; i <= 70_000; i++) p.update(i, { loss: 1 / i });
    const ms = performance.now() - start;
    p.finish();
    expect(clock.reads).toBeLessThan(1000);
    expect(ms).toBeLessThan(500); // generous: in practice about a millisecond
  });

  it('fits the bar to a narrow terminal', () => {
    const { stream, writes } = fakeStream(true, 40);
    const clock = fakeClock();
    const p = createProgress({ total: 10, label: 'a long label for a narrow terminal', stream, now: clock.now });
    clock.t += 500;
    p.update(3, { loss: 0.5 });
    p.finish();
    for (const w of writes) expect(w.replace('\r', '').replace('\x1b[K', '').replace('\n', '').length).toBeLessThan(40);
  });
});

describe('createProgress on a pipe', () => {
  it('prints a plain line at each 10% and one at the end: 11 lines for 100 updates', () => {
    const { stream, text } = fakeStream(false);
    const clock = fakeClock();
    const p = createProgress({ total: 100, label: 'eval', stream, now: clock.now });
    for (let i = 1; i <= 100; i++) {
      clock.t += 50;
      p.update(i, { auc: 0.87654 });
    }
    p.finish({ auc: 0.9 });
    const out = text();
    expect(out).not.toMatch(/[\r\x1b]/);
    const lines = out.trimEnd().split('\n');
    expect(lines.length).toBe(11);
    expect(lines[0]).toMatch(/^eval: 10\/100 10\.0% +20\.0 it\/s +ETA 5s +auc=0\.8765$/);
    expect(lines[9]).toMatch(/^eval: 100\/100 100\.0% .*ETA 0s/);
    expect(lines[10]).toMatch(/^eval: 100\/100 100\.0% +20\.0 it\/s +done in 5s +auc=0\.9$/);
  });

  it('prints at most 11 lines for 70,000 updates and one line per jump', () => {
    const { stream, text } = fakeStream(false);
    const p = createProgress({ total: 70_000, stream });
    for (let i = 1; i <= 70_000; i++) p.update(i);
    p.finish();
    expect(text().trimEnd().split('\n').length).toBe(11);

    const jumpy = fakeStream(false);
    const q = createProgress({ total: 10, stream: jumpy.stream });
    q.update(7); // 10%..70% crossed at once: one line, not seven
    q.update(10);
    expect(jumpy.text().trimEnd().split('\n').map((l) => l.split(' ')[0])).toEqual(['7/10', '10/10']);
  });
});

describe('createProgress', () => {
  it('prints nothing when disabled, on a terminal or not', () => {
    for (const tty of [true, false]) {
      const { stream, writes } = fakeStream(tty);
      const p = createProgress({ total: 10, stream, enabled: false });
      for (let i = 1; i <= 10; i++) p.update(i, { loss: 1 });
      p.finish();
      expect(writes).toEqual([]);
    }
  });

  it('ignores updates after finish, and a second finish', () => {
    const { stream, writes } = fakeStream(false);
    const p = createProgress({ total: 10, stream });
    p.update(10);
    p.finish();
    const n = writes.length;
    p.update(5);
    p.finish();
    expect(writes.length).toBe(n);
  });

  it('rejects a total that is not a positive integer with INVALID_ARGUMENT', () => {
    for (const total of [0, -1, 2.5, NaN, Infinity, '10', undefined, null]) {
      let caught: unknown;
      try {
        createProgress({ total: total as number, stream: fakeStream(false).stream });
      } catch (e) {
        caught = e;
      }
      expect(caught, `total ${String(total)}`).toBeInstanceOf(MamlError);
      expect((caught as MamlError).code).toBe('INVALID_ARGUMENT');
      expect((caught as MamlError).message).toMatch(/total must be a positive integer/);
    }
  });

  it('rejects a NaN or negative count in update with INVALID_ARGUMENT', () => {
    const p = createProgress({ total: 10, stream: fakeStream(false).stream });
    expect(() => p.update(NaN)).toThrow(MamlError);
    expect(() => p.update(-1)).toThrow(/done must be a number >= 0/);
  });
});

describe('formatDuration and formatNumber', () => {
  it('writes durations as people read them', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(42)).toBe('42s');
    expect(formatDuration(59.6)).toBe('1m00s');
    expect(formatDuration(185)).toBe('3m05s');
    expect(formatDuration(3720)).toBe('1h02m');
    expect(formatDuration(3599.7)).toBe('1h00m');
    expect(formatDuration(100 * 3600)).toBe('100h00m');
    expect(formatDuration(NaN)).toBe('?');
    expect(formatDuration(Infinity)).toBe('?');
    expect(formatDuration(-1)).toBe('?');
  });

  it('writes numbers compactly', () => {
    expect(formatNumber(0.123456)).toBe('0.1235');
    expect(formatNumber(0.5)).toBe('0.5');
    expect(formatNumber(12)).toBe('12');
    expect(formatNumber(123.456)).toBe('123.5');
    expect(formatNumber(1.5e-5)).toBe('1.50e-5');
    expect(formatNumber(2.5e7)).toBe('25000000');
    expect(formatNumber(2.5e12)).toBe('2.50e12');
    expect(formatNumber(NaN)).toBe('NaN');
  });
});
