// MetaLearner: the optimizer update against PyTorch's formulas written out in TypeScript,
// asynchronous calls against synchronous ones, adaptation against the functional API, and
// learned inner rates (Meta-SGD, MAML++).
import { describe, it, expect } from 'vitest';
import { MetaLearner, gradient, initParams, metaGradient, sinusoid, type OptimizerOptions } from '../src/index.js';
import { expectClose } from './helpers.js';

const model = { layers: [1, 16, 16, 1], activation: 'tanh', loss: 'mse' } as const;

/** torch.optim.Adam / SGD, step by step, in float32 like the learner. */
function torchUpdate(o: Required<OptimizerOptions>, p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, t: number) {
  const f = Math.fround;
  for (let i = 0; i < p.length; i++) {
    let gi = g[i]!;
    if (o.weightDecay) gi = f(gi + f(f(o.weightDecay) * p[i]!));
    if (o.kind === 'adam') {
      m[i] = f(m[i]! + f(f(1 - o.betas[0]) * f(gi - m[i]!)));
      v[i] = f(f(v[i]! * f(o.betas[1])) + f(f(f(1 - o.betas[1]) * gi) * gi));
      const denom = f(f(Math.sqrt(v[i]!) / f(Math.sqrt(1 - o.betas[1] ** t))) + f(o.eps));
      p[i] = f(p[i]! - f(f(o.lr / (1 - o.betas[0] ** t)) * f(m[i]! / denom)));
    } else {
      let d = gi;
      if (o.momentum) {
        m[i] = t === 1 ? d : f(f(f(o.momentum) * m[i]!) + f(f(1 - o.dampening) * d));
        d = o.nesterov ? f(d + f(f(o.momentum) * m[i]!)) : m[i]!;
      }
      p[i] = f(p[i]! - f(f(o.lr) * d));
    }
  }
}

const OPTIMIZERS: Required<OptimizerOptions>[] = [
  { kind: 'adam', lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, momentum: 0, dampening: 0, nesterov: false, clipNorm: 0 },
  { kind: 'adam', lr: 3e-3, betas: [0.8, 0.99], eps: 1e-6, weightDecay: 0.01, momentum: 0, dampening: 0, nesterov: false, clipNorm: 0 },
  { kind: 'sgd', lr: 0.05, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, momentum: 0, dampening: 0, nesterov: false, clipNorm: 0 },
  { kind: 'sgd', lr: 0.05, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-3, momentum: 0.9, dampening: 0.1, nesterov: false, clipNorm: 0 },
  { kind: 'sgd', lr: 0.05, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, momentum: 0.9, dampening: 0, nesterov: true, clipNorm: 0.5 },
];

describe('meta-optimizers follow torch.optim', () => {
  for (const opt of OPTIMIZERS) {
    it(`${opt.kind} ${JSON.stringify(opt)}`, () => {
      const learner = new MetaLearner({ model, algorithm: 'maml', innerLr: 0.05, innerSteps: 2, optimizer: opt, seed: 3 });
      const tasks = sinusoid({ seed: 4, shots: 5, queries: 5 });
      const p = learner.params;
      const m = new Float32Array(p.length);
      const v = new Float32Array(p.length);
      for (let t = 1; t <= 4; t++) {
        const batch = tasks.sample(6);
        const { grad, loss } = metaGradient(model, p, batch, { algorithm: 'maml', innerLr: 0.05, innerSteps: 2 });
        if (opt.clipNorm) {
          const norm = Math.sqrt(grad.reduce((s, g) => s + g * g, 0));
          const c = Math.min(1, opt.clipNorm / (norm + 1e-6));
          grad.forEach((g, i) => (grad[i] = Math.fround(g * Math.fround(c))));
        }
        torchUpdate(opt, p, grad, m, v, t);
        const r = learner.step(batch);
        if (t === 1) expect(r.loss).toBe(loss);
        else expect(Math.abs(r.loss - loss) / loss).toBeLessThan(1e-6);
      }
      expectClose(learner.params, p, 1e-6, 'parameters after 4 steps');
      expect(learner.stepCount).toBe(4);
    });
  }
});

describe('asynchronous calls', () => {
  it('stepAsync gives bit-identical parameters to step, and queued calls run in order', async () => {
    const a = new MetaLearner({ model, seed: 9 });
    const b = new MetaLearner({ model, seed: 9 });
    const tasks = sinusoid({ seed: 2 });
    const batches = Array.from({ length: 5 }, () => tasks.sample(10));
    const sync = batches.map((x) => a.step(x).loss);
    const async = await Promise.all(batches.map((x) => b.stepAsync(x)));
    expect(async.map((r) => r.loss)).toEqual(sync);
    expect(b.params).toEqual(a.params);
    expect(b.stepCount).toBe(5);
  });

  it('the batch is copied at call time: changing it afterwards does not change the step', async () => {
    const a = new MetaLearner({ model, seed: 9 });
    const b = new MetaLearner({ model, seed: 9 });
    const batch = sinusoid({ seed: 2 }).sample(10);
    a.step(batch);
    const copy = { ...batch, xs: batch.xs.slice(), ys: batch.ys.slice() };
    const pending = b.stepAsync(copy);
    copy.xs.fill(0);
    copy.ys.fill(0);
    await pending;
    expect(b.params).toEqual(a.params);
  });

  it('adaptations keep call order with steps: one called before a pending step sees the old parameters, one after sees the new', async () => {
    const l = new MetaLearner({ model, seed: 4 });
    const ref = new MetaLearner({ model, seed: 4 });
    const b = sinusoid({ seed: 5 }).sample(8);
    const sup = { x: b.xs.slice(0, 10), y: b.ys.slice(0, 10) };
    const before = l.adaptAsync(sup, { steps: 3 });
    const step = l.stepAsync(b);
    const after = l.adaptAsync(sup, { steps: 3 });
    sup.x.fill(0); // the queued adaptation works on a copy made at call time
    const x = b.xs.slice(0, 10);
    const a0 = ref.adapt({ x, y: b.ys.slice(0, 10) }, { steps: 3 });
    ref.step(b);
    const a1 = ref.adapt({ x, y: b.ys.slice(0, 10) }, { steps: 3 });
    await step;
    expect((await before).params).toEqual(a0.params);
    expect((await after).params).toEqual(a1.params);
    expect(a0.params).not.toEqual(a1.params);
  });

  it('params while a stepAsync runs on a native thread throws BUSY, never a half-updated copy', async () => {
    const l = new MetaLearner({ model, seed: 4 });
    const ref = new MetaLearner({ model, seed: 4 });
    const b = sinusoid({ seed: 5 }).sample(8);
    const initial = l.params;
    const step = l.stepAsync(b);
    expect(l.params).toEqual(initial); // queued: the step starts in a later microtask
    await Promise.resolve();
    await Promise.resolve(); // now on a native thread until the event loop delivers its result
    let code: string | undefined;
    try {
      void l.params;
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).toBe('BUSY');
    await step;
    ref.step(b);
    expect(l.params).toEqual(ref.params);
  });

  it('adaptAsync calls of one turn are sent together and each gets the model adapt() gives, whatever its support size', async () => {
    const ce = { layers: [3, 8, 4], activation: 'tanh', loss: 'cross-entropy' } as const;
    const l = new MetaLearner({ model: ce, seed: 2 });
    const users = Array.from({ length: 9 }, (_, u) => ({
      x: Float32Array.from({ length: 3 * (u + 1) }, (_, i) => Math.sin(i * 1.7 + u)),
      y: Int32Array.from({ length: u + 1 }, (_, i) => (i + u) % 4),
    }));
    const got = await Promise.all(users.map((u) => l.adaptAsync(u, { steps: 4 })));
    users.forEach((u, i) => expect(got[i]!.params).toEqual(l.adapt(u, { steps: 4 }).params));
    // different step counts in one turn, and a synchronous step right after: the
    // adaptations called before it see θ before it
    const ref = new MetaLearner({ model: ce, seed: 2 });
    const b = { tasks: 2, support: 3, query: 2, xs: new Float32Array(18).fill(0.3), ys: Int32Array.from([0, 1, 2, 3, 0, 1]), xq: new Float32Array(12).fill(-0.2), yq: Int32Array.from([1, 2, 3, 0]) };
    const a1 = l.adaptAsync(users[2]!, { steps: 1 });
    const a2 = l.adaptAsync(users[3]!, { steps: 2 });
    l.step(b);
    expect((await a1).params).toEqual(ref.adapt(users[2]!, { steps: 1 }).params);
    expect((await a2).params).toEqual(ref.adapt(users[3]!, { steps: 2 }).params);
    ref.step(b);
    expect(l.params).toEqual(ref.params);
  });

  it('the event loop keeps turning while adaptBatchAsync runs', async () => {
    const learner = new MetaLearner({ model: { layers: [1, 64, 64, 1], activation: 'relu', loss: 'mse' }, seed: 1 });
    const big = sinusoid({ seed: 3, shots: 50 }).sample(400);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    const models = await learner.adaptBatchAsync(big, { steps: 30 });
    const ms = performance.now() - t0;
    clearInterval(timer);
    expect(models).toHaveLength(400);
    if (ms > 20) expect(ticks).toBeGreaterThan(0);
  });
});

describe('adaptation', () => {
  it('adapt() takes the inner-loop steps that the functional gradient describes', () => {
    const learner = new MetaLearner({ model, innerLr: 0.1, innerSteps: 1, seed: 5 });
    const b = sinusoid({ seed: 6, shots: 8 }).sample(1);
    const adapted = learner.adapt({ x: b.xs, y: b.ys }, { steps: 3 });
    let p = learner.params;
    for (let s = 0; s < 3; s++) {
      const g = gradient(model, p, b.xs, b.ys).grad;
      p = p.map((v, i) => v - 0.1 * g[i]!);
    }
    expectClose(adapted.params, p, 1e-6, 'adapted parameters');
    expect(adapted.predict(b.xq)).toEqual(learner.adaptBatch({ tasks: 1, support: 8, xs: b.xs, ys: b.ys }, { steps: 3 })[0]!.predict(b.xq));
  });

  it('adaptBatch gives each task the same model as adapt() on it alone', async () => {
    const learner = new MetaLearner({ model, seed: 5 });
    const b = sinusoid({ seed: 7, shots: 5 }).sample(6);
    const all = learner.adaptBatch(b, { steps: 4 });
    const allAsync = await learner.adaptBatchAsync(b, { steps: 4 });
    for (let t = 0; t < 6; t++) {
      const one = learner.adapt({ x: b.xs.subarray(t * 5, t * 5 + 5), y: b.ys.subarray(t * 5, t * 5 + 5) }, { steps: 4 });
      expect(all[t]!.params).toEqual(one.params);
      expect(allAsync[t]!.params).toEqual(one.params);
    }
    const single = await learner.adaptAsync({ x: b.xs.subarray(0, 5), y: b.ys.subarray(0, 5) }, { steps: 4 });
    expect(single.params).toEqual(all[0]!.params);
  });

  it('adapting with zero steps returns the meta-learned parameters; predictProba gives probabilities', () => {
    const bce = { layers: [2, 6, 1], activation: 'relu', loss: 'binary-cross-entropy' } as const;
    const learner = new MetaLearner({ model: bce, seed: 2 });
    const x = Float32Array.from([0.1, 0.2, -1, 2, 3, -0.5]);
    const y = Float32Array.from([1, 0, 1]);
    const same = learner.adapt({ x, y }, { steps: 0 });
    expect(same.params).toEqual(learner.params);
    const probs = same.predictProba(x);
    const logits = same.predict(x);
    probs.forEach((p, i) => expect(p).toBeCloseTo(1 / (1 + Math.exp(-logits[i]!)), 6));
  });
});

describe('learned inner rates', () => {
  it('meta-sgd learns per-parameter rates, and they change with training', () => {
    const learner = new MetaLearner({ model, algorithm: 'meta-sgd', innerLr: 0.01, seed: 1, optimizer: { kind: 'adam', lr: 1e-2 } });
    expect(learner.innerLr.length).toBe(initParams(model).length);
    const tasks = sinusoid({ seed: 1 });
    for (let i = 0; i < 5; i++) learner.step(tasks.sample(10));
    const rates = learner.innerLr;
    expect(rates.some((r) => Math.abs(r - 0.01) > 1e-3)).toBe(true);
    expect(new Set(rates).size).toBeGreaterThan(10);
  });

  it('MAML++ per-step learned rates move in the direction of their exact gradient', () => {
    const learner = new MetaLearner({ model, algorithm: 'maml', innerLr: [0.02, 0.02], innerSteps: 2, learnInnerLr: true, stepWeights: [0, 0.5, 0.5], seed: 1, optimizer: { kind: 'sgd', lr: 1e-3 } });
    const batch = sinusoid({ seed: 8 }).sample(10);
    const { innerLrGrad } = metaGradient(model, learner.params, batch, { algorithm: 'maml', innerLr: [0.02, 0.02], innerSteps: 2, stepWeights: [0, 0.5, 0.5] });
    learner.step(batch);
    const moved = Array.from(learner.innerLr, (r) => r - 0.02);
    moved.forEach((d, s) => expect(d).toBeCloseTo(-1e-3 * innerLrGrad![s]!, 7));
  });
});
