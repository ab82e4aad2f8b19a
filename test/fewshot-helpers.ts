// Few-shot test utilities: random ragged episodes, Gaussian-cluster episodes, and a plain
// TypeScript computation of the three episode losses (an independent reference for the
// native heads; embeddings come from the existing `forward`).
import { forward } from '../src/index.js';
import type { Episodes, FewShotLossOptions } from '../src/index.js';
import { Rng } from '../src/rng.js';

type Kind = Float32ArrayConstructor | Float64ArrayConstructor;

/**
 * `tasks` episodes of `ways` classes: class k of task t has 1..maxShots support rows (ragged),
 * and each task 1..maxQuery query rows with random labels (ragged).
 */
export function raggedEpisodes(rng: Rng, dIn: number, tasks: number, ways: number, maxShots: number, maxQuery: number, Kind: Kind = Float64Array, scale = 1.5) {
  const supportOffsets = new Int32Array(tasks + 1);
  const queryOffsets = new Int32Array(tasks + 1);
  const ys: number[] = [];
  const yq: number[] = [];
  for (let t = 0; t < tasks; t++) {
    for (let k = 0; k < ways; k++) for (let s = 1 + rng.int(maxShots); s > 0; s--) ys.push(k);
    for (let q = 1 + rng.int(maxQuery); q > 0; q--) yq.push(rng.int(ways));
    supportOffsets[t + 1] = ys.length;
    queryOffsets[t + 1] = yq.length;
  }
  const rand = (n: number) => {
    const a = new Kind(n);
    for (let i = 0; i < n; i++) a[i] = rng.range(-scale, scale);
    return a;
  };
  return {
    tasks, ways, supportOffsets, queryOffsets,
    xs: rand(ys.length * dIn), ys: Int32Array.from(ys), xq: rand(yq.length * dIn), yq: Int32Array.from(yq),
  };
}

/**
 * Separable episodes: every task draws `ways` cluster centres at random in [-3, 3]^dIn, and
 * examples are centre + N(0, noise²). `shots` support and `queries` query rows per class.
 */
export function clusterEpisodes(rng: Rng, dIn: number, tasks: number, ways: number, shots: number, queries: number, noise = 0.3) {
  const xs = new Float32Array(tasks * ways * shots * dIn);
  const xq = new Float32Array(tasks * ways * queries * dIn);
  const ys = new Int32Array(tasks * ways * shots);
  const yq = new Int32Array(tasks * ways * queries);
  const centre = new Float64Array(dIn);
  for (let t = 0; t < tasks; t++)
    for (let k = 0; k < ways; k++) {
      for (let d = 0; d < dIn; d++) centre[d] = rng.range(-3, 3);
      for (let s = 0; s < shots + queries; s++) {
        const isQ = s >= shots;
        const row = isQ ? (t * ways + k) * queries + (s - shots) : (t * ways + k) * shots + s;
        const x = isQ ? xq : xs;
        for (let d = 0; d < dIn; d++) x[row * dIn + d] = centre[d]! + noise * rng.normal();
        (isQ ? yq : ys)[row] = k;
      }
    }
  return { tasks, ways, support: ways * shots, query: ways * queries, xs, ys, xq, yq };
}

function lse(v: number[]): number {
  const m = Math.max(...v);
  return m + Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
}

/**
 * Episode normalization (relation.normalize 'episode'), in place: each of the D columns of
 * the row blocks taken together gets mean 0 and biased variance var / (var + 1e-5).
 */
export function standardize(blocks: Float64Array[], D: number): void {
  const n = blocks.reduce((s, b) => s + b.length / D, 0);
  for (let d = 0; d < D; d++) {
    let mean = 0, v = 0;
    for (const b of blocks) for (let i = d; i < b.length; i += D) mean += b[i]! / n;
    for (const b of blocks) for (let i = d; i < b.length; i += D) v += (b[i]! - mean) ** 2 / n;
    const sd = Math.sqrt(v + 1e-5);
    for (const b of blocks) for (let i = d; i < b.length; i += D) b[i] = (b[i]! - mean) / sd;
  }
}

/** The mean over tasks of each task's episode loss, computed in plain TypeScript (float64). */
export function referenceLoss(o: FewShotLossOptions, params: Float64Array, e: Episodes & { supportOffsets: Int32Array; queryOffsets: Int32Array }): number {
  const emb = { layers: o.embedding.layers, activation: o.embedding.activation ?? 'relu', loss: 'mse' } as const;
  let pe = 0;
  for (let l = 1; l < emb.layers.length; l++) pe += emb.layers[l]! * (emb.layers[l - 1]! + 1);
  const phi = params.subarray(0, pe);
  const dIn = emb.layers[0]!, D = emb.layers[emb.layers.length - 1]!, N = e.ways;
  const ys = e.ys as Int32Array, yq = e.yq as Int32Array;
  let total = 0;
  for (let t = 0; t < e.tasks; t++) {
    const s0 = e.supportOffsets[t]!, s1 = e.supportOffsets[t + 1]!, q0 = e.queryOffsets[t]!, q1 = e.queryOffsets[t + 1]!;
    const es = forward(emb, phi, (e.xs as Float64Array).slice(s0 * dIn, s1 * dIn)) as Float64Array;
    const eq = forward(emb, phi, (e.xq as Float64Array).slice(q0 * dIn, q1 * dIn)) as Float64Array;
    if (o.algorithm === 'relation' && o.relation?.normalize !== 'none') standardize([es, eq], D);
    const row = (a: Float64Array, i: number) => Array.from(a.subarray(i * D, (i + 1) * D));
    const ns = s1 - s0, nq = q1 - q0;
    const centres: number[][] = [];
    const counts: number[] = [];
    for (let k = 0; k < N; k++) {
      centres.push(new Array(D).fill(0));
      counts.push(0);
    }
    for (let i = 0; i < ns; i++) {
      const k = ys[s0 + i]!;
      counts[k]!++;
      row(es, i).forEach((v, d) => (centres[k]![d] += v));
    }
    const sum = o.algorithm === 'relation' && o.relation?.classEmbedding === 'sum';
    if (!sum) centres.forEach((c, k) => c.forEach((_, d) => (c[d] /= counts[k]!)));
    let task = 0;
    if (o.algorithm === 'protonet') {
      for (let q = 0; q < nq; q++) {
        const u = row(eq, q);
        const logits = centres.map((c) => -c.reduce((s, v, d) => s + (u[d]! - v) ** 2, 0));
        task += lse(logits) - logits[yq[q0 + q]!]!;
      }
      task /= nq;
    } else if (o.algorithm === 'matching') {
      const norm = (v: number[]) => Math.max(Math.sqrt(v.reduce((s, x) => s + x * x, 0)), 1e-8);
      for (let q = 0; q < nq; q++) {
        const u = row(eq, q);
        const cos = Array.from({ length: ns }, (_, i) => {
          const v = row(es, i);
          return u.reduce((s, x, d) => s + x * v[d]!, 0) / (norm(u) * norm(v));
        });
        const a = cos.map((c) => Math.exp(c - lse(cos)));
        let p = 0;
        for (let i = 0; i < ns; i++) if (ys[s0 + i] === yq[q0 + q]) p += a[i]!;
        task -= Math.log(p);
      }
      task /= nq;
    } else {
      const rel = { layers: o.relation?.layers ?? [2 * D, 64, 1], activation: o.relation?.activation ?? 'relu', loss: 'mse' } as const;
      const pairs = new Float64Array(nq * N * 2 * D);
      for (let q = 0; q < nq; q++)
        for (let k = 0; k < N; k++) {
          pairs.set(row(eq, q), (q * N + k) * 2 * D);
          pairs.set(centres[k]!, (q * N + k) * 2 * D + D);
        }
      const out = forward(rel, params.subarray(pe), pairs);
      for (let q = 0; q < nq; q++)
        for (let k = 0; k < N; k++) {
          const r = 1 / (1 + Math.exp(-out[q * N + k]!));
          task += (r - (yq[q0 + q] === k ? 1 : 0)) ** 2;
        }
      task /= nq * N;
    }
    total += task;
  }
  return total / e.tasks;
}
