/**
 * Baselines of few-shot classification, for the comparison of issue #6:
 *
 * - nearest neighbour on raw inputs: each query takes the label of the support example at the
 *   smallest Euclidean distance (ties: the first in support order);
 * - a network pre-trained on all training classes (a softmax classifier with the same MLP body
 *   as the meta-learners, plain minibatch training with Adam on the native fast path), then,
 *   per episode, a new N-way linear head trained on the support set on top of the FROZEN body
 *   (the features after the last hidden activation).
 *
 * Both return one accuracy per episode; `meanCi95` turns those into mean ± half-width.
 */
import { MamlError } from '../errors.js';
import { forward, gradient } from '../functional.js';
import { MetaLearner } from '../learner.js';
import { paramCount, type ModelSpec } from '../model.js';
import { Rng } from '../rng.js';

/** Episodes as the sampler lays them out: task-major, `support` and `query` rows per task. */
export interface EpisodeArrays {
  tasks: number;
  support: number;
  query: number;
  ways: number;
  xs: Float32Array;
  ys: Int32Array;
  xq: Float32Array;
  yq: Int32Array;
}

/** Mean and 95% confidence half-width (1.96 · sd / √n) of per-episode values. */
export function meanCi95(values: ArrayLike<number>): { mean: number; ci95: number } {
  const n = values.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += values[i]!;
  const mean = s / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (values[i]! - mean) ** 2;
  return { mean, ci95: n > 1 ? (1.96 * Math.sqrt(ss / (n - 1))) / Math.sqrt(n) : NaN };
}

/** Per-episode accuracy of 1-nearest-neighbour (Euclidean) on the raw inputs. */
export function nearestNeighbour(e: EpisodeArrays): Float64Array {
  const d = e.xs.length / (e.tasks * e.support);
  if (!Number.isInteger(d) || e.xq.length !== e.tasks * e.query * d)
    throw new MamlError('SHAPE_MISMATCH', 'nearestNeighbour: xs and xq do not hold tasks × support and tasks × query rows of one width');
  const acc = new Float64Array(e.tasks);
  for (let t = 0; t < e.tasks; t++) {
    let right = 0;
    for (let q = 0; q < e.query; q++) {
      const qo = (t * e.query + q) * d;
      let best = Infinity, label = -1;
      for (let s = 0; s < e.support; s++) {
        const so = (t * e.support + s) * d;
        let dist = 0;
        for (let k = 0; k < d; k++) {
          const v = e.xq[qo + k]! - e.xs[so + k]!;
          dist += v * v;
        }
        if (dist < best) {
          best = dist;
          label = e.ys[t * e.support + s]!;
        }
      }
      if (label === e.yq[t * e.query + q]) right++;
    }
    acc[t] = right / e.query;
  }
  return acc;
}

/** Settings of pretrainClassifier: a body and softmax head trained on all training classes at once. */
export interface PretrainOptions {
  /** hidden widths of the body (the meta-learners' MLP without its head) */
  hidden: number[];
  activation: 'relu' | 'tanh';
  iterations: number;
  batch: number;
  lr: number;
  seed: number;
}

/** A pre-trained body: the MLP up to and including the last hidden layer. */
export interface PretrainedBody {
  spec: ModelSpec;
  params: Float32Array;
  seconds: number;
  /** mean training loss over the last 10% of iterations */
  finalLoss: number;
}

/** Adam (torch.optim defaults but lr) on a flat parameter vector. */
function adam(params: Float32Array, lr: number) {
  const m = new Float32Array(params.length), v = new Float32Array(params.length);
  let t = 0;
  return (g: ArrayLike<number>) => {
    t++;
    const b1 = 0.9, b2 = 0.999;
    const c1 = 1 - b1 ** t, c2 = 1 - b2 ** t;
    for (let i = 0; i < params.length; i++) {
      const gi = g[i]!;
      m[i] = b1 * m[i]! + (1 - b1) * gi;
      v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
      params[i] = params[i]! - (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + 1e-8);
    }
  };
}

/**
 * Trains a softmax classifier over `classes` (all training classes) on rows of x, and returns
 * its body (the head is dropped).
 */
export function pretrainClassifier(
  x: Float32Array,
  labels: Int32Array,
  inputDim: number,
  classes: Int32Array,
  o: PretrainOptions,
  onStep?: (i: number, loss: number) => void,
): PretrainedBody {
  const t0 = performance.now();
  const index = new Map<number, number>();
  classes.forEach((c, i) => index.set(c, i));
  const rows: number[] = [];
  for (let r = 0; r < labels.length; r++) if (index.has(labels[r]!)) rows.push(r);
  if (rows.length === 0) throw new MamlError('INVALID_ARGUMENT', 'pretrainClassifier: no rows belong to the training classes');
  const full: ModelSpec = { layers: [inputDim, ...o.hidden, classes.length], activation: o.activation, loss: 'cross-entropy' };
  // Plain minibatch training through MetaLearner's fast native path: FOMAML with no inner step
  // is the query loss's gradient at θ, and Adam runs natively. A minibatch is split into
  // `tasks` equal tasks only so that the threads share it (the loss is the same mean).
  const tasks = o.batch % 4 === 0 ? 4 : 1;
  const learner = new MetaLearner({ model: full, algorithm: 'fomaml', innerSteps: 0, innerLr: 0.01, optimizer: { kind: 'adam', lr: o.lr }, seed: o.seed });
  const rng = new Rng(o.seed + 1);
  const bx = new Float32Array(o.batch * inputDim);
  const by = new Int32Array(o.batch);
  const batch = { tasks, support: 0, query: o.batch / tasks, xs: new Float32Array(0), ys: new Int32Array(0), xq: bx, yq: by };
  let tail = 0, tailN = 0;
  for (let i = 1; i <= o.iterations; i++) {
    for (let b = 0; b < o.batch; b++) {
      const r = rows[rng.int(rows.length)]!;
      bx.set(x.subarray(r * inputDim, (r + 1) * inputDim), b * inputDim);
      by[b] = index.get(labels[r]!)!;
    }
    const { loss } = learner.step(batch);
    if (i > o.iterations * 0.9) {
      tail += loss;
      tailN++;
    }
    onStep?.(i, loss);
  }
  const params = learner.params;
  const spec: ModelSpec = { layers: [inputDim, ...o.hidden], activation: o.activation, loss: 'mse' };
  const body = params.slice(0, paramCount(spec));
  return { spec, params: body, seconds: (performance.now() - t0) / 1000, finalLoss: tail / Math.max(1, tailN) };
}

/** Features of a pre-trained body: the activations of its last hidden layer, [n × width]. */
export function bodyFeatures(body: PretrainedBody, x: Float32Array): Float32Array {
  const out = forward(body.spec, body.params, x);
  const relu = body.spec.activation === 'relu';
  for (let i = 0; i < out.length; i++) out[i] = relu ? Math.max(0, out[i]!) : Math.tanh(out[i]!);
  return out;
}

/** Settings of fineTuneEvaluate's per-episode linear head. */
export interface FineTuneOptions {
  /** full-batch Adam steps on the support set (default 100) */
  steps?: number;
  /** Adam's rate (default 0.01) */
  lr?: number;
}

/**
 * Per-episode accuracy of a new N-way linear head trained on each episode's support set over
 * the frozen body's features (head initialized to zero, full-batch Adam on the cross-entropy).
 */
export function fineTuneEvaluate(body: PretrainedBody, e: EpisodeArrays, options: FineTuneOptions = {}): Float64Array {
  const steps = options.steps ?? 100;
  const lr = options.lr ?? 0.01;
  const fs = bodyFeatures(body, e.xs);
  const fq = bodyFeatures(body, e.xq);
  const w = body.spec.layers[body.spec.layers.length - 1]!;
  const head: ModelSpec = { layers: [w, e.ways], activation: 'relu', loss: 'cross-entropy' };
  const acc = new Float64Array(e.tasks);
  for (let t = 0; t < e.tasks; t++) {
    const xs = fs.subarray(t * e.support * w, (t + 1) * e.support * w);
    const ys = e.ys.subarray(t * e.support, (t + 1) * e.support);
    const params = new Float32Array(paramCount(head));
    const step = adam(params, lr);
    for (let s = 0; s < steps; s++) step(gradient(head, params, xs, ys).grad);
    const logits = forward(head, params, fq.subarray(t * e.query * w, (t + 1) * e.query * w));
    let right = 0;
    for (let q = 0; q < e.query; q++) {
      let best = 0;
      for (let j = 1; j < e.ways; j++) if (logits[q * e.ways + j]! > logits[q * e.ways + best]!) best = j;
      if (best === e.yq[t * e.query + q]) right++;
    }
    acc[t] = right / e.query;
  }
  return acc;
}
