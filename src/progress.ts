/**
 * A progress bar for long work (meta-training, evaluation over many tasks).
 *
 * On a terminal it redraws one line in place, at most every `minIntervalMs`:
 *   train ██████████░░░░░░░░░░ 35000/70000  50.0%  812 it/s  ETA 43s  loss=0.01234
 * Anywhere else (a pipe, a CI log) it prints a plain line at each 10% of progress and one at
 * the end, with no '\r' or escape codes, so logs stay readable.
 *
 * `update()` is meant for hot loops: when it does not draw it costs a few comparisons. On a
 * terminal the clock is read only every `stride` calls (at most 1024), and the stride adapts
 * so that the clock is read a few times per interval whatever the speed of the loop.
 */

import { MamlError, describe } from './errors.js';

/** Where and how to report. `total` is the number of steps, a positive integer. */
export interface ProgressOptions {
  total: number;
  /** Printed first on every line, e.g. 'train'. */
  label?: string;
  /** Defaults to process.stderr. A terminal (isTTY true) gets the redrawn bar. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** false prints nothing at all. Default true. */
  enabled?: boolean;
  /** Least time between two redraws on a terminal, in milliseconds. Default 100. */
  minIntervalMs?: number;
  /** Milliseconds from an arbitrary origin; for tests. Default performance.now. */
  now?: () => number;
}

/** A running progress report. Calls after finish() are ignored. */
export interface Progress {
  /** `done` steps of `total` are complete; `info` fields (e.g. { loss }) are shown after the bar. */
  update(done: number, info?: Record<string, number | string>): void;
  /** Draws the final state and ends the line. */
  finish(info?: Record<string, number | string>): void;
}

/**
 * Starts a progress report.
 *
 * @example
 * ```ts
 * const progress = createProgress({ total: iterations, label: 'train' });
 * for (let i = 0; i < iterations; i++) {
 *   const loss = learner.step(batch());
 *   progress.update(i + 1, { loss });
 * }
 * progress.finish();
 * ```
 */
export function createProgress(options: ProgressOptions): Progress {
  if (options === null || typeof options !== 'object') {
    throw new MamlError('INVALID_ARGUMENT', `createProgress: options must be an object, got ${describe(options)}`);
  }
  const { total, label = '', enabled = true, minIntervalMs = 100 } = options;
  if (typeof total !== 'number' || !Number.isInteger(total) || total <= 0) {
    throw new MamlError('INVALID_ARGUMENT', `createProgress: total must be a positive integer, got ${describe(total)}`);
  }
  if (typeof label !== 'string') {
    throw new MamlError('INVALID_ARGUMENT', `createProgress: label must be a string, got ${describe(label)}`);
  }
  if (typeof minIntervalMs !== 'number' || !(minIntervalMs >= 0) || !Number.isFinite(minIntervalMs)) {
    throw new MamlError('INVALID_ARGUMENT', `createProgress: minIntervalMs must be a finite number >= 0, got ${describe(minIntervalMs)}`);
  }
  if (options.now !== undefined && typeof options.now !== 'function') {
    throw new MamlError('INVALID_ARGUMENT', `createProgress: now must be a function, got ${describe(options.now)}`);
  }
  const stream = options.stream ?? process.stderr;
  if (enabled && (stream === null || typeof stream !== 'object' || typeof stream.write !== 'function')) {
    throw new MamlError('INVALID_ARGUMENT', `createProgress: stream must be a writable stream, got ${describe(stream)}`);
  }
  if (!enabled) return { update() {}, finish() {} };
  const now = options.now ?? (() => performance.now());
  return stream.isTTY === true
    ? new TerminalProgress(total, clean(label), stream, minIntervalMs, now)
    : new LogProgress(total, clean(label), stream, now);
}

/**
 * A duration for people: "42s", "3m05s", "1h02m". Non-finite or negative input gives "?"
 * (an ETA that cannot be known yet).
 */
export function formatDuration(seconds: number): string {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad2(s % 60)}s`;
  const m = Math.round(s / 60); // whole minutes once past an hour
  return `${Math.floor(m / 60)}h${pad2(m % 60)}m`;
}

/** A number in few characters: integers as they are, others to 4 significant digits. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2).replace('e+', 'e');
  return v.toPrecision(4).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

// ---------------------------------------------------------------------------------------------

type Info = Record<string, number | string> | undefined;
type Stream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

class TerminalProgress implements Progress {
  private done = 0;
  private info: Info;
  private finished = false;
  private readonly start: number;
  private lastDraw = -Infinity;
  private lastCheck: number;
  private calls = 0; // update() calls since the clock was last read
  private stride = 1; // read the clock every `stride` calls

  constructor(
    private readonly total: number,
    private readonly label: string,
    private readonly stream: Stream,
    private readonly minIntervalMs: number,
    private readonly now: () => number,
  ) {
    this.start = this.lastCheck = now();
  }

  update(done: number, info?: Info): void {
    if (this.finished) return;
    if (!(done >= 0)) throw badDone(done); // also catches NaN, which would stall the report
    this.done = done;
    this.info = info;
    if (++this.calls < this.stride) return;
    this.calls = 0;
    const t = this.now();
    // Aim at about 4 clock reads per interval: read less often in fast loops, more in slow ones.
    const sinceCheck = t - this.lastCheck;
    this.lastCheck = t;
    if (sinceCheck < this.minIntervalMs / 8 && this.stride < 1024) this.stride *= 2;
    else if (sinceCheck > this.minIntervalMs / 2 && this.stride > 1) this.stride = Math.max(1, this.stride >> 1);
    if (t - this.lastDraw < this.minIntervalMs) return;
    this.lastDraw = t;
    this.draw(t, false);
  }

  finish(info?: Info): void {
    if (this.finished) return;
    this.finished = true;
    if (info !== undefined) this.info = info;
    this.draw(this.now(), true);
    this.stream.write('\n');
  }

  private draw(t: number, final: boolean): void {
    const columns = typeof this.stream.columns === 'number' && this.stream.columns > 20 ? this.stream.columns : 80;
    const s = stats(this.done, this.total, (t - this.start) / 1000);
    const head = this.label ? `${this.label} ` : '';
    const counts = ` ${String(s.done).padStart(String(this.total).length)}/${this.total} ${s.percent.padStart(6)}  ${s.rate}`; // fixed width: the bar does not jitter
    const time = final ? `  in ${formatDuration(s.elapsed)}` : `  ETA ${formatDuration(s.eta)}`;
    const tail = `${counts}${time}${formatInfo(this.info)}`;
    const barWidth = Math.max(0, Math.min(40, columns - 1 - head.length - tail.length));
    const filled = Math.round((barWidth * s.done) / this.total);
    const bar = barWidth >= 5 ? '█'.repeat(filled) + '░'.repeat(barWidth - filled) : '';
    // Never wider than the terminal: a wrapped line cannot be redrawn with '\r'.
    const line = `${head}${bar}${tail}`.slice(0, columns - 1);
    this.stream.write(`\r${line}\x1b[K`);
  }
}

class LogProgress implements Progress {
  private done = 0;
  private info: Info;
  private finished = false;
  private readonly start: number;
  private printedTenth = 0; // the last 10% step printed

  constructor(
    private readonly total: number,
    private readonly label: string,
    private readonly stream: Stream,
    private readonly now: () => number,
  ) {
    this.start = now();
  }

  update(done: number, info?: Info): void {
    if (this.finished) return;
    if (!(done >= 0)) throw badDone(done); // also catches NaN, which would stall the report
    this.done = done;
    this.info = info;
    if (done * 10 < (this.printedTenth + 1) * this.total) return; // cheap: no clock, no division
    this.printedTenth = Math.min(10, Math.floor((done * 10) / this.total));
    this.print(false);
  }

  finish(info?: Info): void {
    if (this.finished) return;
    this.finished = true;
    if (info !== undefined) this.info = info;
    this.print(true);
  }

  private print(final: boolean): void {
    const s = stats(this.done, this.total, (this.now() - this.start) / 1000);
    const head = this.label ? `${this.label}: ` : '';
    const time = final ? `done in ${formatDuration(s.elapsed)}` : `ETA ${formatDuration(s.eta)}`;
    this.stream.write(`${head}${s.done}/${this.total} ${s.percent}  ${s.rate}  ${time}${formatInfo(this.info)}\n`);
  }
}

/** What both kinds of report show, computed only when drawing. */
function stats(done: number, total: number, elapsed: number) {
  const d = Number.isFinite(done) ? Math.min(total, Math.max(0, done)) : 0;
  const rate = elapsed > 0 ? d / elapsed : 0;
  return {
    done: Number.isInteger(d) ? d : Number(d.toFixed(1)),
    percent: `${((100 * d) / total).toFixed(1)}%`,
    rate: `${rate >= 100 ? Math.round(rate) : rate >= 10 ? rate.toFixed(1) : rate.toFixed(2)} it/s`,
    eta: rate > 0 ? (total - d) / rate : NaN,
    elapsed,
  };
}

function formatInfo(info: Info): string {
  if (!info || typeof info !== 'object') return '';
  let out = '';
  for (const [key, value] of Object.entries(info)) {
    out += `  ${clean(key)}=${typeof value === 'number' ? formatNumber(value) : clean(String(value))}`;
  }
  return out;
}

/** Control characters would break the line or inject escape codes. */
function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}

function badDone(done: unknown): MamlError {
  return new MamlError('INVALID_ARGUMENT', `Progress.update: done must be a number >= 0, got ${describe(done)}`);
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}
