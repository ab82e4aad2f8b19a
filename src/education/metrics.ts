/**
 * Metrics of probabilistic predictions of 0/1 outcomes, and bootstrap confidence intervals
 * over students.
 *
 * - AUC: the probability that a random correct answer gets a higher score than a random wrong
 *   one, ties counting one half (the Mann-Whitney statistic with mid-ranks). Pooled over all
 *   predictions, as knowledge-tracing papers report it.
 * - accuracy: the share of predictions on the right side of 0.5 (0.5 itself predicts "wrong").
 * - log-loss: the mean of −log p(outcome), with p clipped to [1e-7, 1 − 1e-7].
 * Every metric takes optional weights (a bootstrap resample gives each prediction the number
 * of times its student was drawn).
 */
import { Rng } from '../rng.js';

export interface Metrics {
  auc: number;
  accuracy: number;
  logLoss: number;
}

const EPS = 1e-7;

/** Ascending order of scores and, for each position, the end of its tie group. */
export interface Ranking {
  order: Int32Array;
  /** groupEnd[i]: one past the last position of the tie group of order[i] */
  groupEnd: Int32Array;
}

export function rank(scores: ArrayLike<number>): Ranking {
  const n = scores.length;
  const order = Int32Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => scores[a]! - scores[b]! || a - b);
  const groupEnd = new Int32Array(n);
  for (let i = 0; i < n; ) {
    let j = i + 1;
    while (j < n && scores[order[j]!] === scores[order[i]!]) j++;
    for (let k = i; k < j; k++) groupEnd[k] = j;
    i = j;
  }
  return { order, groupEnd };
}

/** AUC of scores for 0/1 labels (NaN when one class is absent). */
export function auc(scores: ArrayLike<number>, labels: ArrayLike<number>, weights?: ArrayLike<number>, ranking: Ranking = rank(scores)): number {
  const { order, groupEnd } = ranking;
  let negBelow = 0, num = 0, pos = 0, neg = 0;
  for (let i = 0; i < order.length; ) {
    const end = groupEnd[i]!;
    let gp = 0, gn = 0;
    for (let k = i; k < end; k++) {
      const r = order[k]!;
      const w = weights ? weights[r]! : 1;
      if (labels[r]! > 0.5) gp += w;
      else gn += w;
    }
    num += gp * (negBelow + 0.5 * gn);
    negBelow += gn;
    pos += gp;
    neg += gn;
    i = end;
  }
  return pos > 0 && neg > 0 ? num / (pos * neg) : NaN;
}

export function accuracy(p: ArrayLike<number>, labels: ArrayLike<number>, weights?: ArrayLike<number>): number {
  let right = 0, total = 0;
  for (let i = 0; i < p.length; i++) {
    const w = weights ? weights[i]! : 1;
    total += w;
    if ((p[i]! > 0.5 ? 1 : 0) === (labels[i]! > 0.5 ? 1 : 0)) right += w;
  }
  return total > 0 ? right / total : NaN;
}

export function logLoss(p: ArrayLike<number>, labels: ArrayLike<number>, weights?: ArrayLike<number>): number {
  let sum = 0, total = 0;
  for (let i = 0; i < p.length; i++) {
    const w = weights ? weights[i]! : 1;
    const q = Math.min(1 - EPS, Math.max(EPS, p[i]!));
    sum -= w * (labels[i]! > 0.5 ? Math.log(q) : Math.log(1 - q));
    total += w;
  }
  return total > 0 ? sum / total : NaN;
}

export function metrics(p: ArrayLike<number>, labels: ArrayLike<number>, weights?: ArrayLike<number>, ranking?: Ranking): Metrics {
  return { auc: auc(p, labels, weights, ranking), accuracy: accuracy(p, labels, weights), logLoss: logLoss(p, labels, weights) };
}

/** A point estimate with a percentile bootstrap interval. */
export interface Estimate {
  value: number;
  lo: number;
  hi: number;
}

export interface BootstrapResult {
  /** per method: each metric with its 95% interval */
  methods: Record<string, { auc: Estimate; accuracy: Estimate; logLoss: Estimate }>;
  /** paired differences `${a} - ${b}` of each metric, over the same resamples */
  differences: Record<string, { auc: Estimate; accuracy: Estimate; logLoss: Estimate }>;
}

function percentile(sorted: Float64Array, q: number): number {
  const finite = sorted.filter(Number.isFinite);
  if (finite.length === 0) return NaN;
  const at = q * (finite.length - 1);
  const lo = Math.floor(at), hi = Math.ceil(at);
  return finite[lo]! + (finite[hi]! - finite[lo]!) * (at - lo);
}

/**
 * Metrics of several methods' predictions of the same outcomes, with 95% percentile intervals
 * from `resamples` bootstrap resamples of students (`student[i]`: the student of prediction i,
 * in [0, students)). The same resamples serve every method, so the differences in `pairs`
 * ([a, b] → a − b) are paired.
 */
export function bootstrapMetrics(
  predictions: Record<string, ArrayLike<number>>,
  labels: ArrayLike<number>,
  student: Int32Array,
  students: number,
  options: { resamples?: number; seed?: number; pairs?: [string, string][] } = {},
): BootstrapResult {
  const B = options.resamples ?? 200;
  const rng = new Rng(options.seed ?? 0);
  const names = Object.keys(predictions);
  const rankings = Object.fromEntries(names.map((m) => [m, rank(predictions[m]!)]));
  const point = Object.fromEntries(names.map((m) => [m, metrics(predictions[m]!, labels, undefined, rankings[m])]));
  const keys = ['auc', 'accuracy', 'logLoss'] as const;
  const draws: Record<string, Record<(typeof keys)[number], Float64Array>> = {};
  for (const m of names) draws[m] = { auc: new Float64Array(B), accuracy: new Float64Array(B), logLoss: new Float64Array(B) };
  // accuracy and log-loss are sums over students: aggregate once, then weight per resample
  const perStudent = Object.fromEntries(
    names.map((m) => {
      const right = new Float64Array(students), loss = new Float64Array(students);
      const p = predictions[m]!;
      for (let i = 0; i < labels.length; i++) {
        const s = student[i]!;
        right[s]! += accuracy([p[i]!], [labels[i]!]);
        loss[s]! += logLoss([p[i]!], [labels[i]!]);
      }
      return [m, { right, loss }];
    }),
  );
  const rows = new Float64Array(students);
  for (let i = 0; i < labels.length; i++) rows[student[i]!]!++;
  const count = new Float64Array(students);
  const w = new Float64Array(labels.length);
  for (let r = 0; r < B; r++) {
    count.fill(0);
    for (let s = 0; s < students; s++) count[rng.int(students)]!++;
    for (let i = 0; i < w.length; i++) w[i] = count[student[i]!]!;
    let total = 0;
    for (let s = 0; s < students; s++) total += count[s]! * rows[s]!;
    for (const m of names) {
      const { right, loss } = perStudent[m]!;
      let a = 0, l = 0;
      for (let s = 0; s < students; s++) {
        a += count[s]! * right[s]!;
        l += count[s]! * loss[s]!;
      }
      draws[m]!.auc[r] = auc(predictions[m]!, labels, w, rankings[m]);
      draws[m]!.accuracy[r] = a / total;
      draws[m]!.logLoss[r] = l / total;
    }
  }
  const estimate = (value: number, d: Float64Array): Estimate => {
    const sorted = Float64Array.from(d).sort();
    return { value, lo: percentile(sorted, 0.025), hi: percentile(sorted, 0.975) };
  };
  const methods: BootstrapResult['methods'] = {};
  for (const m of names)
    methods[m] = { auc: estimate(point[m]!.auc, draws[m]!.auc), accuracy: estimate(point[m]!.accuracy, draws[m]!.accuracy), logLoss: estimate(point[m]!.logLoss, draws[m]!.logLoss) };
  const differences: BootstrapResult['differences'] = {};
  for (const [a, b] of options.pairs ?? []) {
    if (!(a in draws) || !(b in draws)) continue;
    const diff = (k: (typeof keys)[number]) =>
      estimate(point[a]![k] - point[b]![k], draws[a]![k].map((v, r) => v - draws[b]![k][r]!));
    differences[`${a} - ${b}`] = { auc: diff('auc'), accuracy: diff('accuracy'), logLoss: diff('logLoss') };
  }
  return { methods, differences };
}
