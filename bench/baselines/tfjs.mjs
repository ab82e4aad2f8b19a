// TensorFlow.js 4.22 baseline (tfjs-core with the cpu or the wasm backend): the same meta-step
// written as a TF.js user would, tasks batched as rank-3 tensors (tf.matMul on [B, n, d] with
// per-task weights [B, d_out, d_in]), second-order MAML by nested tf.grads (the inner gradients
// are themselves differentiated), FOMAML and Reptile without the outer differentiation.
// Parameters in the library's layout: per layer W [d_out, d_in], then b [d_out]. MSE, relu/tanh.
//
// Run by bench/run.mjs as a child process speaking the protocol of bench/lib/common.mjs:
//   node bench/baselines/tfjs.mjs cpu|wasm
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '../lib/tfjs-gradients.mjs';
import '@tensorflow/tfjs-backend-cpu';
import { jobBatches, serve } from '../lib/common.mjs';

const backends = new Map();

/** Selects and initializes a backend ('cpu' or 'wasm') once; resolves to a description of it. */
export function useBackend(name) {
  if (!backends.has(name)) backends.set(name, initBackend(name));
  return backends.get(name);
}

async function initBackend(name) {
  if (name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const require = createRequire(import.meta.url);
    wasm.setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm')) + '/');
  }
  if (!(await tf.setBackend(name))) throw new Error(`tfjs: backend ${name} did not initialize`);
  await tf.ready();
  const env = tf.env();
  const extra = name === 'wasm' ? { simd: await env.getAsync('WASM_HAS_SIMD_SUPPORT'), multithread: await env.getAsync('WASM_HAS_MULTITHREAD_SUPPORT') } : {};
  return { impl: `tfjs-${name}`, version: tf.version_core, backend: tf.getBackend(), ...extra };
}

/** Splits a flat parameter vector into [W1, b1, W2, b2, …] tensors. */
function unflatten(layers, flat) {
  const out = [];
  let o = 0;
  for (let l = 1; l < layers.length; l++) {
    const din = layers[l - 1], dout = layers[l];
    out.push(tf.tensor2d(flat.subarray(o, o + dout * din), [dout, din]));
    o += dout * din;
    out.push(tf.tensor1d(flat.subarray(o, o + dout)));
    o += dout;
  }
  return out;
}

function flatten(tensors) {
  return tf.concat(tensors.map((t) => tf.reshape(t, [-1])));
}

/**
 * Builds the meta-gradient for a job: returns f(paramTensors, batchTensors) -> { loss, grads }
 * (scalar tensor, list of tensors in the parameter order).
 */
export function buildMetaGradient(job) {
  const { layers } = job.model;
  const L = layers.length - 1;
  const B = job.tasks, S = job.innerSteps, alpha = job.innerLr, dL = layers[L];
  const act = job.model.activation === 'relu' ? tf.relu : tf.tanh;
  // per-task weights ws: [W1 [B,d1,d0], b1 [B,1,d1], …]; x: [B, n, d0]
  const forward = (ws, x) => {
    let h = x;
    for (let l = 0; l < L; l++) {
      const z = tf.add(tf.matMul(h, ws[2 * l], false, true), ws[2 * l + 1]);
      h = l === L - 1 ? z : act(z);
    }
    return h;
  };
  // Σ over tasks of each task's mean squared error (so that ∂/∂ws gives per-task gradients)
  const taskSumLoss = (ws, x, y, n) => tf.div(tf.sum(tf.squaredDifference(forward(ws, x), y)), n * dL);
  const perTask = (ps) => ps.map((p, i) => (i % 2 === 0 ? tf.tile(tf.expandDims(p, 0), [B, 1, 1]) : tf.tile(tf.reshape(p, [1, 1, -1]), [B, 1, 1])));
  const adapt = (ws, xs, ys) => {
    for (let s = 0; s < S; s++) {
      const g = tf.grads((...w) => taskSumLoss(w, xs, ys, job.support))(ws);
      ws = ws.map((w, i) => tf.sub(w, tf.mul(alpha, g[i])));
    }
    return ws;
  };
  return (ps, { xs, ys, xq, yq }) => {
    if (job.algorithm === 'maml') {
      const f = (...p) => tf.div(taskSumLoss(adapt(perTask(p), xs, ys), xq, yq, job.query), B);
      const { value, grads } = tf.valueAndGrads(f)(ps);
      return { loss: value, grads };
    }
    const wS = adapt(perTask(ps), xs, ys).map((w) => tf.keep(w));
    try {
      if (job.algorithm === 'fomaml') {
        const { value, grads } = tf.valueAndGrads((...w) => tf.div(taskSumLoss(w, xq, yq, job.query), B))(wS);
        return { loss: value, grads: grads.map((g, i) => tf.reshape(tf.sum(g, 0), ps[i].shape)) };
      }
      if (job.algorithm === 'reptile') {
        const loss = tf.div(taskSumLoss(wS, xq, yq, job.query), B);
        return { loss, grads: ps.map((p, i) => tf.sub(p, tf.reshape(tf.mean(wS[i], 0), p.shape))) };
      }
    } finally {
      wS.forEach((w) => w.dispose());
    }
    throw new Error(`tfjs: algorithm ${job.algorithm} not supported`);
  };
}

export async function makeSession(job, backend) {
  if (job.model.loss !== 'mse') throw new Error('tfjs: only the MSE loss is implemented');
  const info = await useBackend(backend);
  const d0 = job.model.layers[0], dL = job.model.layers.at(-1);
  const batches = jobBatches(job, Float32Array).map((b) => ({
    xs: tf.keep(tf.tensor3d(b.xs, [job.tasks, job.support, d0])),
    ys: tf.keep(tf.tensor3d(b.ys, [job.tasks, job.support, dL])),
    xq: tf.keep(tf.tensor3d(b.xq, [job.tasks, job.query, d0])),
    yq: tf.keep(tf.tensor3d(b.yq, [job.tasks, job.query, dL])),
  }));
  const metaGrad = buildMetaGradient(job);
  const params0 = unflatten(job.model.layers, Float32Array.from(job.params)).map((t) => tf.keep(t));
  const vars = params0.map((p, i) => tf.variable(p, true, `p${i}`));
  const opt = tf.train.adam(job.adam.lr, job.adam.beta1, job.adam.beta2, job.adam.eps);
  const gradOnce = (ps, b) =>
    tf.tidy(() => {
      const { loss, grads } = metaGrad(ps, b);
      return { loss: loss.dataSync()[0], grad: flatten(grads).dataSync() };
    });
  return {
    info,
    check: () => gradOnce(params0, batches[0]),
    grad: (i) => gradOnce(vars, batches[i % batches.length]),
    step: (i) => {
      tf.tidy(() => {
        const { loss, grads } = metaGrad(vars, batches[i % batches.length]);
        opt.applyGradients(Object.fromEntries(vars.map((v, k) => [v.name, grads[k]])));
        loss.dataSync();
      });
    },
    dispose: () => {
      for (const b of batches) Object.values(b).forEach((t) => t.dispose());
      params0.forEach((t) => t.dispose());
      vars.forEach((v) => v.dispose());
      opt.dispose();
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log = console.info = console.warn; // stdout carries the protocol only
  const backend = process.argv[2] ?? 'cpu';
  await useBackend(backend); // initialized before the harness's first 'ping' is answered
  await serve((job) => makeSession(job, backend));
}
