/**
 * The Bayes-optimal predictor of simulated answers: the posterior predictive probability of a
 * correct answer given a student's first K answers, under the simulator's true item parameters
 * and ability prior (simulator.ts),
 *
 *   P(y = 1 | support) = ∫ σ(a_j·q_j·(θ + shift) − b_j) p(θ | support) dθ,
 *
 * computed by self-normalized importance sampling with M draws of θ from the prior, shared by
 * all students (common random numbers: the comparison between K values is not blurred by
 * fresh noise). With no learning the per-item tables of σ(z) and log σ(±z) over the M draws
 * are computed once, and a student's weights cost M additions per support answer.
 * The effective sample size (Σw)²/Σw² is reported so that the Monte Carlo error is visible.
 */
import { Rng } from '../rng.js';
import type { ResponseLog } from './log.js';
import type { SimulatorTruth } from './simulator.js';

export interface BayesPredictor {
  samples: number;
  /**
   * Posterior predictive probabilities for the answers `query` (log rows) of a student whose
   * earlier answers are `support` (log rows, oldest first; the student's complete history up
   * to the first query row is `history`, used for the learning shift). Returns the
   * probabilities and the effective sample size of the weights.
   */
  predict(history: ArrayLike<number>, k: number, query: ArrayLike<number>): { p: Float64Array; ess: number };
}

const softplus = (z: number): number => (z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z)));

export function bayesPredictor(log: ResponseLog, truth: SimulatorTruth, options: { samples?: number; seed?: number } = {}): BayesPredictor {
  const M = options.samples ?? 8192;
  const c = truth.config;
  const D = c.skills;
  const J = truth.discrimination.length;
  const rng = new Rng(options.seed ?? 12345);
  const sg = Math.sqrt(c.abilityCorrelation), se = Math.sqrt(1 - c.abilityCorrelation);
  const theta = new Float64Array(M * D);
  for (let m = 0; m < M; m++) {
    const g = rng.normal();
    for (let k = 0; k < D; k++) theta[m * D + k] = c.abilitySd * (sg * g + se * rng.normal());
  }
  // z[j, m] = a_j q_j·θ_m − b_j; only the skills item j loads on
  const itemSkills: number[][] = [];
  for (let j = 0; j < J; j++) {
    const s: number[] = [];
    for (let k = 0; k < D; k++) if (truth.loadings[j * D + k] !== 0) s.push(k);
    itemSkills.push(s);
  }
  const zOf = (j: number, m: number, shift: Float64Array | null): number => {
    let v = 0;
    for (const k of itemSkills[j]!) v += truth.loadings[j * D + k]! * (theta[m * D + k]! + (shift ? shift[k]! : 0));
    return truth.discrimination[j]! * v - truth.difficulty[j]!;
  };
  const learning = c.learningRate !== 0;
  // tables (no learning): per item, σ(z) and log σ(±z) over the draws
  let P: Float32Array | null = null, L1: Float32Array | null = null, L0: Float32Array | null = null;
  const tableRow = new Int32Array(J).fill(-1);
  const ensure = (j: number): number => {
    if (tableRow[j]! >= 0) return tableRow[j]!;
    throw new Error('unreachable');
  };
  if (!learning) {
    const used = new Uint8Array(J);
    for (let i = 0; i < log.item.length; i++) used[log.item[i]!] = 1;
    let rowsNeeded = 0;
    for (let j = 0; j < J; j++) if (used[j]) tableRow[j] = rowsNeeded++;
    P = new Float32Array(rowsNeeded * M);
    L1 = new Float32Array(rowsNeeded * M);
    L0 = new Float32Array(rowsNeeded * M);
    for (let j = 0; j < J; j++) {
      const r = tableRow[j]!;
      if (r < 0) continue;
      for (let m = 0; m < M; m++) {
        const z = zOf(j, m, null);
        P[r * M + m] = 1 / (1 + Math.exp(-z));
        L1[r * M + m] = -softplus(-z);
        L0[r * M + m] = -softplus(z);
      }
    }
  }
  const lw = new Float64Array(M), w = new Float64Array(M);
  return {
    samples: M,
    predict(history, k, query) {
      lw.fill(0);
      const shift = learning ? new Float64Array(D) : null;
      const addShift = (j: number) => {
        if (shift) for (const s of itemSkills[j]!) shift[s]! += c.learningRate * truth.loadings[j * D + s]!;
      };
      for (let i = 0; i < k; i++) {
        const row = history[i]!;
        const j = log.item[row]!, y = log.correct[row]!;
        if (!learning) {
          const t = (y ? L1! : L0!).subarray(ensure(j) * M, (ensure(j) + 1) * M);
          for (let m = 0; m < M; m++) lw[m]! += t[m]!;
        } else {
          for (let m = 0; m < M; m++) {
            const z = zOf(j, m, shift);
            lw[m]! -= y ? softplus(-z) : softplus(z);
          }
          addShift(j);
        }
      }
      let max = -Infinity;
      for (let m = 0; m < M; m++) if (lw[m]! > max) max = lw[m]!;
      let sum = 0, sum2 = 0;
      for (let m = 0; m < M; m++) {
        const v = Math.exp(lw[m]! - max);
        w[m] = v;
        sum += v;
        sum2 += v * v;
      }
      for (let m = 0; m < M; m++) w[m] = w[m]! / sum;
      const p = new Float64Array(query.length);
      for (let q = 0; q < query.length; q++) {
        const j = log.item[query[q]!]!;
        let acc = 0;
        if (!learning) {
          const t = P!.subarray(ensure(j) * M, (ensure(j) + 1) * M);
          for (let m = 0; m < M; m++) acc += w[m]! * t[m]!;
        } else {
          for (let m = 0; m < M; m++) acc += w[m]! / (1 + Math.exp(-zOf(j, m, shift)));
          addShift(j); // the query answers are practice too
        }
        p[q] = acc;
      }
      return { p, ess: (sum * sum) / sum2 };
    },
  };
}
