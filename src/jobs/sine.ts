/**
 * The main job: meta-train on the sinusoid benchmark with the MAML paper's settings, then
 * measure the mean squared error on fresh test tasks before adaptation and after 1 and 10
 * steps, save a checkpoint and plot the training curve and one adapted fit.
 */
import { MetaLearner, type AdaptedModel } from '../learner.js';
import type { Algorithm } from '../inner.js';
import { sinusoid } from '../sinusoid.js';
import { createProgress } from '../progress.js';
import { renderFigure } from '../plot.js';
import { writeFileAtomic } from '../safetensors.js';

export interface SineJobOptions {
  iterations: number;
  metaBatch: number;
  shots: number;
  queries: number;
  innerLr: number;
  innerSteps: number;
  metaLr: number;
  algorithm: Algorithm;
  seed: number;
  testTasks: number;
  testQueries: number;
  /** the adaptation steps at which the test error is reported */
  evalSteps: number[];
  out?: string;
  plot?: string;
  progress: boolean;
}

export const SINE_DEFAULTS: SineJobOptions = {
  iterations: 70_000,
  metaBatch: 25,
  shots: 10,
  queries: 10,
  innerLr: 0.01,
  innerSteps: 1,
  metaLr: 1e-3,
  algorithm: 'maml',
  seed: 1,
  testTasks: 1000,
  testQueries: 100,
  evalSteps: [1, 10],
  progress: true,
};

export interface SineJobResult {
  settings: Omit<SineJobOptions, 'progress'>;
  seconds: number;
  trainSeconds: number;
  stepsPerSecond: number;
  /** test MSE before adaptation and after each of evalSteps (key: `after${k}`) */
  errors: Record<string, number>;
  /** 95% confidence half-widths of those errors over test tasks */
  errors95: Record<string, number>;
  finalTrainLoss: number;
  checkpoint?: string;
  plot?: string;
}

/** Mean over tasks of the query MSE of per-task parameters (or one shared vector). */
function queryErrors(learner: MetaLearner, perTask: AdaptedModel[] | null, xq: Float32Array, yq: Float32Array, tasks: number, q: number) {
  const errs = new Float64Array(tasks);
  const shared = perTask ? null : learner.predict(xq);
  for (let t = 0; t < tasks; t++) {
    const x = xq.subarray(t * q, (t + 1) * q);
    const pred = shared ? shared.subarray(t * q, (t + 1) * q) : perTask![t]!.predict(x);
    let se = 0;
    for (let i = 0; i < q; i++) se += (pred[i]! - yq[t * q + i]!) ** 2;
    errs[t] = se / q;
  }
  return errs;
}

function meanAnd95(a: Float64Array): [number, number] {
  let s = 0;
  for (const v of a) s += v;
  const mean = s / a.length;
  let ss = 0;
  for (const v of a) ss += (v - mean) ** 2;
  const sd = Math.sqrt(ss / Math.max(1, a.length - 1));
  return [mean, (1.96 * sd) / Math.sqrt(a.length)];
}

export function runSineJob(opts: SineJobOptions, log: (line: string) => void = () => {}): SineJobResult {
  const t0 = performance.now();
  const learner = new MetaLearner({
    model: { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' },
    algorithm: opts.algorithm,
    innerLr: opts.innerLr,
    innerSteps: opts.innerSteps,
    optimizer: { kind: 'adam', lr: opts.metaLr },
    device: 'auto',
    seed: opts.seed,
  });
  log(`meta-training ${opts.algorithm} on sinusoid tasks: MLP 1-40-40-1 relu, K=${opts.shots}, ${opts.innerSteps} inner step(s) at ${opts.innerLr}, meta-batch ${opts.metaBatch}, Adam ${opts.metaLr}, ${opts.iterations} iterations, device ${learner.device}`);
  const sampler = sinusoid({ shots: opts.shots, queries: opts.queries, seed: opts.seed });
  const progress = createProgress({ total: opts.iterations, label: 'meta-train', enabled: opts.progress });
  const every = Math.max(1, Math.floor(opts.iterations / 500));
  const curveX: number[] = [];
  const curveY: number[] = [];
  let window = 0;
  let windowN = 0;
  let ema = NaN;
  const tTrain = performance.now();
  for (let i = 1; i <= opts.iterations; i++) {
    const { loss } = learner.step(sampler.sample(opts.metaBatch));
    window += loss;
    windowN++;
    ema = Number.isNaN(ema) ? loss : 0.99 * ema + 0.01 * loss;
    if (i % every === 0 || i === opts.iterations) {
      curveX.push(i);
      curveY.push(window / windowN);
      window = 0;
      windowN = 0;
    }
    progress.update(i, { loss: ema });
  }
  const trainSeconds = (performance.now() - tTrain) / 1000;
  progress.finish({ loss: ema });

  // evaluation on fresh tasks: K support points to adapt, testQueries points to measure
  const test = sinusoid({ shots: opts.shots, queries: opts.testQueries, seed: opts.seed + 1_000_003 }).sample(opts.testTasks);
  const errors: Record<string, number> = {};
  const errors95: Record<string, number> = {};
  [errors.before, errors95.before] = meanAnd95(queryErrors(learner, null, test.xq, test.yq, test.tasks, opts.testQueries));
  const fits: Record<number, AdaptedModel> = {};
  for (const k of opts.evalSteps) {
    const adapted = learner.adaptBatch({ tasks: test.tasks, support: opts.shots, xs: test.xs, ys: test.ys }, { steps: k });
    fits[k] = adapted[0]!;
    const e = meanAnd95(queryErrors(learner, adapted, test.xq, test.yq, test.tasks, opts.testQueries));
    errors[`after${k}`] = e[0];
    errors95[`after${k}`] = e[1];
  }
  log(
    `test MSE on ${opts.testTasks} new tasks (K=${opts.shots}, ${opts.testQueries} query points): ` +
      Object.entries(errors)
        .map(([k, v]) => `${k === 'before' ? 'before adaptation' : `after ${k.slice(5)} step(s)`} ${v.toFixed(3)} ± ${errors95[k]!.toFixed(3)}`)
        .join(', '),
  );

  let checkpoint: string | undefined;
  if (opts.out) {
    learner.save(opts.out);
    checkpoint = opts.out;
    log(`checkpoint saved to ${opts.out}`);
  }
  let plot: string | undefined;
  if (opts.plot) {
    const grid = Float32Array.from({ length: 200 }, (_, i) => -5 + (10 * i) / 199);
    const a = test.amplitude[0]!, p = test.phase[0]!;
    const series = [
      { name: 'true function', x: grid, y: grid.map((x) => a * Math.sin(x - p)) },
      { name: 'before adaptation', x: grid, y: learner.predict(grid), style: 'dashed' as const },
      ...opts.evalSteps.map((k) => ({
        name: `after ${k} step${k === 1 ? '' : 's'}`,
        x: grid,
        y: fits[k]!.predict(grid),
        style: 'dashed' as const,
      })),
      { name: `${opts.shots} support points`, x: test.xs.subarray(0, opts.shots), y: test.ys.subarray(0, opts.shots), style: 'points' as const },
    ];
    const svg = renderFigure(
      [
        { title: 'Meta-training loss (query MSE after adaptation)', xLabel: 'iteration', yLabel: 'loss', series: [{ name: opts.algorithm, x: curveX, y: curveY }], logY: true },
        { title: `One new task: A = ${a.toFixed(2)}, phase = ${p.toFixed(2)}`, xLabel: 'x', yLabel: 'y', series },
      ],
      { title: `maml-native: ${opts.algorithm} on sinusoid tasks, ${opts.iterations} iterations` },
    );
    writeFileAtomic(opts.plot, new TextEncoder().encode(svg));
    plot = opts.plot;
    log(`plot written to ${opts.plot}`);
  }
  const { progress: _p, ...settings } = opts;
  return {
    settings,
    seconds: (performance.now() - t0) / 1000,
    trainSeconds,
    stepsPerSecond: opts.iterations / trainSeconds,
    errors,
    errors95,
    finalTrainLoss: curveY[curveY.length - 1] ?? NaN,
    ...(checkpoint ? { checkpoint } : {}),
    ...(plot ? { plot } : {}),
  };
}
