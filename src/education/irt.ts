/**
 * The classic baseline: a unidimensional two-parameter logistic IRT model,
 *
 *   P(student u answers item j correctly) = σ(a_j·θ_u − b_j),   θ_u ~ N(0, 1),
 *
 * with item parameters fitted on training students only, by marginal maximum a posteriori
 * (Bock-Aitkin EM: θ integrated out on a grid of 41 points; priors log a ~ N(0, 0.5²),
 * b ~ N(0, 2²)), and a new student's ability estimated by MAP from the answers seen so far
 * (θ = 0 with none). Joint MAP over abilities and items is not used: with many more students
 * than items it prefers shrunken abilities and inflated discriminations (a factor of 2 to 3 on
 * simulated data), because the scale of θ is then bought by the students' priors.
 * Items no training student answered get a = 1 and the mean training difficulty.
 */

const LOG_A_SD = 0.5;
const B_SD = 2;
const GRID = 41;

export interface IrtItems {
  /** [items] discrimination a_j */
  a: Float64Array;
  /** [items] difficulty b_j */
  b: Float64Array;
  /** [items] number of training answers */
  count: Int32Array;
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));
const logSigmoid = (z: number): number => (z > 0 ? -Math.log1p(Math.exp(-z)) : z - Math.log1p(Math.exp(z)));

/**
 * Fits item parameters on the given answers. `rowsByStudent` holds, per training student, the
 * indices of that student's answers in `item` / `correct`.
 */
export function fitIrt2pl(
  item: Int32Array,
  correct: Uint8Array,
  items: number,
  rowsByStudent: readonly Int32Array[],
  options: { iterations?: number } = {},
): IrtItems {
  const iterations = options.iterations ?? 20;
  const Q = GRID;
  const x = Float64Array.from({ length: Q }, (_, q) => -5 + (10 * q) / (Q - 1));
  const logW = x.map((v) => -0.5 * v * v);
  const logA = new Float64Array(items);
  const b = new Float64Array(items);
  const count = new Int32Array(items);
  const right = new Float64Array(items);
  for (const rows of rowsByStudent)
    for (const i of rows) {
      count[item[i]!]!++;
      right[item[i]!]! += correct[i]!;
    }
  // start b at the logit of the item's error rate (smoothed): σ(−b) is its success rate
  for (let j = 0; j < items; j++) b[j] = -Math.log((right[j]! + 0.5) / (count[j]! - right[j]! + 0.5));
  const L1 = new Float64Array(items * Q), L0 = new Float64Array(items * Q);
  const R = new Float64Array(items * Q), N = new Float64Array(items * Q);
  const lw = new Float64Array(Q);
  for (let it = 0; it < iterations; it++) {
    // E-step: each student's posterior over the grid, accumulated into expected counts per item
    for (let j = 0; j < items; j++) {
      if (count[j] === 0) continue;
      const a = Math.exp(logA[j]!);
      for (let q = 0; q < Q; q++) {
        const z = a * x[q]! - b[j]!;
        L1[j * Q + q] = logSigmoid(z);
        L0[j * Q + q] = logSigmoid(-z);
      }
    }
    R.fill(0);
    N.fill(0);
    for (const rows of rowsByStudent) {
      lw.set(logW);
      for (const i of rows) {
        const t = (correct[i] ? L1 : L0).subarray(item[i]! * Q, (item[i]! + 1) * Q);
        for (let q = 0; q < Q; q++) lw[q]! += t[q]!;
      }
      let max = -Infinity;
      for (let q = 0; q < Q; q++) if (lw[q]! > max) max = lw[q]!;
      let sum = 0;
      for (let q = 0; q < Q; q++) sum += lw[q] = Math.exp(lw[q]! - max);
      for (let q = 0; q < Q; q++) lw[q] = lw[q]! / sum;
      for (const i of rows) {
        const o = item[i]! * Q;
        for (let q = 0; q < Q; q++) N[o + q]! += lw[q]!;
        if (correct[i]) for (let q = 0; q < Q; q++) R[o + q]! += lw[q]!;
      }
    }
    // M-step: per item, Fisher-scoring steps on (log a, b) of the expected log posterior
    for (let j = 0; j < items; j++) {
      if (count[j] === 0) continue;
      for (let rep = 0; rep < 3; rep++) {
        const a = Math.exp(logA[j]!);
        let ga = -logA[j]! / (LOG_A_SD * LOG_A_SD), gb = -b[j]! / (B_SD * B_SD);
        let haa = 1 / (LOG_A_SD * LOG_A_SD), hbb = 1 / (B_SD * B_SD), hab = 0;
        for (let q = 0; q < Q; q++) {
          const n = N[j * Q + q]!;
          if (n === 0) continue;
          const ax = a * x[q]!;
          const p = sigmoid(ax - b[j]!);
          const r = R[j * Q + q]! - n * p, w = n * p * (1 - p);
          ga += r * ax;
          gb -= r;
          haa += w * ax * ax;
          hbb += w;
          hab -= w * ax;
        }
        const det = haa * hbb - hab * hab;
        logA[j] = logA[j]! + clamp((hbb * ga - hab * gb) / det, 0.5);
        b[j] = b[j]! + clamp((haa * gb - hab * ga) / det, 1);
      }
    }
  }
  let sumB = 0, seen = 0;
  for (let j = 0; j < items; j++) if (count[j]! > 0) { sumB += b[j]!; seen++; }
  const meanB = seen ? sumB / seen : 0;
  const a = new Float64Array(items);
  for (let j = 0; j < items; j++) {
    if (count[j] === 0) { a[j] = 1; b[j] = meanB; }
    else a[j] = Math.exp(logA[j]!);
  }
  return { a, b, count };
}

function clamp(step: number, max: number): number {
  return step > max ? max : step < -max ? -max : step;
}

/**
 * MAP ability under θ ~ N(0, priorSd²) from answers (a_i, b_i, y_i), i < n, by Newton's
 * method. The log posterior is strictly concave, so this converges from 0.
 */
export function mapAbility(a: ArrayLike<number>, b: ArrayLike<number>, y: ArrayLike<number>, n: number, priorSd = 1): number {
  let theta = 0;
  const prec = 1 / (priorSd * priorSd);
  for (let it = 0; it < 30; it++) {
    let g = -theta * prec, h = prec;
    for (let i = 0; i < n; i++) {
      const p = sigmoid(a[i]! * theta - b[i]!);
      g += a[i]! * (y[i]! - p);
      h += a[i]! * a[i]! * p * (1 - p);
    }
    const step = clamp(g / h, 2);
    theta += step;
    if (Math.abs(step) < 1e-10) break;
  }
  return theta;
}
