// The "pure JavaScript" baseline: a straightforward typed-array implementation of an MLP's
// forward pass, backward pass and Pearlmutter R-operator (exact Hessian-vector products), and
// of the MAML / FOMAML / Reptile meta-gradient built on them, one task at a time, one thread.
// Float64Array working storage (JavaScript arithmetic is double anyway); parameters in the
// library's layout: per layer W [d_l × d_{l−1}] row-major, then b [d_l]. MSE loss, relu or tanh.
//
// Run by bench/run.mjs as a child process speaking the protocol of bench/lib/common.mjs:
//   node bench/baselines/plain-js.mjs
// or imported: metaGradient(job-like spec, params, batch) -> { loss, grad }.
import { pathToFileURL } from 'node:url';
import { jobBatches, serve } from '../lib/common.mjs';

/** Workspace for one model and up to `rows` samples: activations, pre-activations, deltas, tangents. */
export function createMlp(layers, activation, rows) {
  if (activation !== 'relu' && activation !== 'tanh') throw new Error(`plain-js: activation ${activation} not supported`);
  const L = layers.length - 1;
  const offW = [], offB = [];
  let P = 0;
  for (let l = 1; l <= L; l++) {
    offW[l] = P;
    P += layers[l] * layers[l - 1];
    offB[l] = P;
    P += layers[l];
  }
  const per = (f) => layers.map((d) => new Float64Array(rows * d).fill(0)).map(f ?? ((a) => a));
  return {
    layers, L, P, offW, offB, activation, rows,
    a: per(), // a[l]: [n, d_l] activations (a[0] = x)
    z: per(), // z[l]: [n, d_l] pre-activations
    d: per(), // d[l]: [n, d_l] dLoss/dz_l
    ra: per(), // R{a_l}
    rz: per(), // R{z_l}
    rd: per(), // R{d_l}
    e: per(), // dLoss/da_l scratch
    re: per(), // R{dLoss/da_l} scratch
  };
}

const act = (kind, z) => (kind === 'relu' ? (z > 0 ? z : 0) : Math.tanh(z));
// f'(z) and f''(z) written through the activation value a = f(z)
const dact = (kind, z, a) => (kind === 'relu' ? (z > 0 ? 1 : 0) : 1 - a * a);
const ddact = (kind, z, a) => (kind === 'relu' ? 0 : -2 * a * (1 - a * a));

/** Forward pass on x [n, d0] at theta; fills m.a, m.z. Returns the output array a[L]. */
export function forward(m, theta, x, n) {
  const { layers, L, offW, offB, a, z } = m;
  for (let i = 0; i < n * layers[0]; i++) a[0][i] = x[i];
  for (let l = 1; l <= L; l++) {
    const din = layers[l - 1], dout = layers[l], W = offW[l], b = offB[l];
    const ain = a[l - 1], zl = z[l], al = a[l];
    for (let r = 0; r < n; r++) {
      for (let o = 0; o < dout; o++) {
        let s = theta[b + o];
        const w = W + o * din;
        for (let i = 0; i < din; i++) s += ain[r * din + i] * theta[w + i];
        zl[r * dout + o] = s;
        al[r * dout + o] = l === L ? s : act(m.activation, s);
      }
    }
  }
  return a[L];
}

/** MSE loss on the last forward pass and its gradient, accumulated: grad += scale · ∇L. Returns L. */
export function backward(m, theta, y, n, grad, scale) {
  const { layers, L, offW, offB, a, z, d, e } = m;
  const dL = layers[L];
  const c = 2 / (n * dL);
  let loss = 0;
  for (let i = 0; i < n * dL; i++) {
    const r = a[L][i] - y[i];
    loss += r * r;
    d[L][i] = c * r;
  }
  for (let l = L; l >= 1; l--) {
    const din = layers[l - 1], dout = layers[l], W = offW[l], b = offB[l];
    const dl = d[l], ain = a[l - 1];
    for (let r = 0; r < n; r++) {
      for (let o = 0; o < dout; o++) {
        const g = scale * dl[r * dout + o];
        grad[b + o] += g;
        const w = W + o * din;
        for (let i = 0; i < din; i++) grad[w + i] += g * ain[r * din + i];
      }
    }
    if (l > 1) {
      const el = e[l - 1], dprev = d[l - 1], zp = z[l - 1], ap = a[l - 1];
      el.fill(0, 0, n * din);
      for (let r = 0; r < n; r++)
        for (let o = 0; o < dout; o++) {
          const g = dl[r * dout + o];
          const w = W + o * din;
          for (let i = 0; i < din; i++) el[r * din + i] += g * theta[w + i];
        }
      for (let k = 0; k < n * din; k++) dprev[k] = el[k] * dact(m.activation, zp[k], ap[k]);
    }
  }
  return loss / (n * dL);
}

/**
 * hv += scale · H v, H the Hessian of the MSE loss on (x, y) at theta, by the R-operator.
 * Runs its own forward pass.
 */
export function hvp(m, theta, x, y, n, v, hv, scale) {
  const { layers, L, offW, offB, a, z, d, e, ra, rz, rd, re } = m;
  forward(m, theta, x, n);
  // R-forward: Rz_l = Ra_{l−1} W^T + a_{l−1} V^T + vb;  Ra_l = f'(z_l) Rz_l (Ra_0 = 0)
  ra[0].fill(0, 0, n * layers[0]);
  for (let l = 1; l <= L; l++) {
    const din = layers[l - 1], dout = layers[l], W = offW[l], b = offB[l];
    for (let r = 0; r < n; r++)
      for (let o = 0; o < dout; o++) {
        let s = v[b + o];
        const w = W + o * din;
        for (let i = 0; i < din; i++) s += ra[l - 1][r * din + i] * theta[w + i] + a[l - 1][r * din + i] * v[w + i];
        rz[l][r * dout + o] = s;
        const k = r * dout + o;
        ra[l][k] = l === L ? s : dact(m.activation, z[l][k], a[l][k]) * s;
      }
  }
  // backward and R-backward
  const dL = layers[L];
  const c = 2 / (n * dL);
  for (let i = 0; i < n * dL; i++) {
    d[L][i] = c * (a[L][i] - y[i]);
    rd[L][i] = c * ra[L][i];
  }
  for (let l = L; l >= 1; l--) {
    const din = layers[l - 1], dout = layers[l], W = offW[l], b = offB[l];
    for (let r = 0; r < n; r++)
      for (let o = 0; o < dout; o++) {
        const g = d[l][r * dout + o], rg = rd[l][r * dout + o];
        hv[b + o] += scale * rg;
        const w = W + o * din;
        for (let i = 0; i < din; i++) hv[w + i] += scale * (rg * a[l - 1][r * din + i] + g * ra[l - 1][r * din + i]);
      }
    if (l > 1) {
      const el = e[l - 1], rel = re[l - 1];
      el.fill(0, 0, n * din);
      rel.fill(0, 0, n * din);
      for (let r = 0; r < n; r++)
        for (let o = 0; o < dout; o++) {
          const g = d[l][r * dout + o], rg = rd[l][r * dout + o];
          const w = W + o * din;
          for (let i = 0; i < din; i++) {
            el[r * din + i] += g * theta[w + i];
            rel[r * din + i] += rg * theta[w + i] + g * v[w + i];
          }
        }
      for (let k = 0; k < n * din; k++) {
        const zk = z[l - 1][k], ak = a[l - 1][k];
        d[l - 1][k] = el[k] * dact(m.activation, zk, ak);
        rd[l - 1][k] = rel[k] * dact(m.activation, zk, ak) + el[k] * ddact(m.activation, zk, ak) * rz[l - 1][k];
      }
    }
  }
}

/**
 * The meta-gradient of one meta-batch: spec { layers, activation, algorithm, innerLr, innerSteps },
 * params [P], batch { tasks, support, query, xs, ys, xq, yq } (d0 = dL = 1 rows are samples).
 * Returns { loss (mean query loss at θ_S), grad [P] }:
 *   maml:    exact  Σ_t ∇_θ L_q(θ_S(θ)) / B, reverse pass v_s = v_{s+1} − α H_s v_{s+1}
 *   fomaml:  Σ_t ∇L_q(θ_S) / B;     reptile: Σ_t (θ − θ_S) / B
 */
export function metaGradient(spec, params, batch, ws) {
  const { layers, algorithm } = spec;
  const S = spec.innerSteps, alpha = spec.innerLr;
  const B = batch.tasks, K = batch.support, Q = batch.query;
  const d0 = layers[0], dL = layers[layers.length - 1];
  const m = ws?.m ?? createMlp(layers, spec.activation, Math.max(K, Q));
  const P = m.P;
  const thetas = ws?.thetas ?? Array.from({ length: S + 1 }, () => new Float64Array(P));
  const g = ws?.g ?? new Float64Array(P), v = ws?.v ?? new Float64Array(P), hv = ws?.hv ?? new Float64Array(P);
  const grad = new Float64Array(P);
  let loss = 0;
  for (let t = 0; t < B; t++) {
    const xs = batch.xs.subarray(t * K * d0, (t + 1) * K * d0), ys = batch.ys.subarray(t * K * dL, (t + 1) * K * dL);
    const xq = batch.xq.subarray(t * Q * d0, (t + 1) * Q * d0), yq = batch.yq.subarray(t * Q * dL, (t + 1) * Q * dL);
    thetas[0].set(params);
    for (let s = 0; s < S; s++) {
      g.fill(0);
      forward(m, thetas[s], xs, K);
      backward(m, thetas[s], ys, K, g, 1);
      const cur = thetas[s], next = thetas[s + 1];
      for (let i = 0; i < P; i++) next[i] = cur[i] - alpha * g[i];
    }
    v.fill(0);
    forward(m, thetas[S], xq, Q);
    loss += backward(m, thetas[S], yq, Q, v, 1) / B;
    if (algorithm === 'reptile') {
      for (let i = 0; i < P; i++) grad[i] += (params[i] - thetas[S][i]) / B;
      continue;
    }
    if (algorithm === 'maml') {
      for (let s = S - 1; s >= 0; s--) {
        hv.fill(0);
        hvp(m, thetas[s], xs, ys, K, v, hv, 1);
        for (let i = 0; i < P; i++) v[i] -= alpha * hv[i];
      }
    } else if (algorithm !== 'fomaml') throw new Error(`plain-js: algorithm ${algorithm} not supported`);
    for (let i = 0; i < P; i++) grad[i] += v[i] / B;
  }
  return { loss, grad };
}

/** A benchmark session over a job (see bench/lib/common.mjs). */
export function makeSession(job) {
  if (job.model.loss !== 'mse') throw new Error('plain-js: only the MSE loss is implemented');
  const spec = { layers: job.model.layers, activation: job.model.activation, algorithm: job.algorithm, innerLr: job.innerLr, innerSteps: job.innerSteps };
  // test hook (test/bench-smoke.test.ts): different math, which the agreement check must refuse
  if (process.env.MAML_BENCH_FAULT === 'plain-js') spec.innerLr *= 1.5;
  const batches = jobBatches(job, Float64Array);
  const m = createMlp(spec.layers, spec.activation, Math.max(job.support, job.query));
  const P = m.P;
  const ws = { m, thetas: Array.from({ length: job.innerSteps + 1 }, () => new Float64Array(P)), g: new Float64Array(P), v: new Float64Array(P), hv: new Float64Array(P) };
  const params0 = Float64Array.from(job.params);
  const theta = Float64Array.from(job.params);
  const m1 = new Float64Array(P), m2 = new Float64Array(P);
  const { lr, beta1, beta2, eps } = job.adam;
  let t = 0;
  return {
    info: { impl: 'plain-js', version: process.version, precision: 'float64 arithmetic', threads: 1 },
    check: () => metaGradient(spec, params0, batches[0], ws),
    grad: (i) => metaGradient(spec, theta, batches[i % batches.length], ws),
    step: (i) => {
      const { grad } = metaGradient(spec, theta, batches[i % batches.length], ws);
      t++;
      const c1 = 1 - beta1 ** t, c2 = 1 - beta2 ** t;
      for (let k = 0; k < P; k++) {
        m1[k] = beta1 * m1[k] + (1 - beta1) * grad[k];
        m2[k] = beta2 * m2[k] + (1 - beta2) * grad[k] * grad[k];
        theta[k] -= (lr * (m1[k] / c1)) / (Math.sqrt(m2[k] / c2) + eps);
      }
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await serve(makeSession);
