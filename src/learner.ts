/**
 * MetaLearner: meta-training state (parameters, learned inner rates, optimizer moments) and
 * per-user adaptation. The parameters, rates and Adam moments live in flat Float32Arrays that
 * native code updates in place; every getter hands out a copy.
 *
 * Concurrency: asynchronous calls on one learner keep call order: stepAsync calls run one
 * after another, and an adaptation waits for the steps called before it; adaptations with no
 * step pending start at once and run in parallel, and adaptAsync calls made in the same turn
 * of the event loop are sent to native code as one batch. A synchronous call made while a
 * queued asynchronous call is pending throws MamlError('BUSY').
 */
import { MamlError } from './errors.js';
import { checkBatch, checkInner, ratesForSteps, type Algorithm, type Inner, type InnerLr, type MetaBatch } from './inner.js';
import { checkModel, initParams, type Model, type ModelSpec } from './model.js';
import { callNative, callNativeAsync } from './native.js';
import { PackedSlot, type NativeAddon, type NativeBatch, type NativeOptim } from './native-types.js';
import { resolveDevice, type DeviceRequest } from './loader.js';
import { CudaBackend, type CudaAdaptArgs } from './backend-cuda.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import {
  checkBoolean,
  checkInt,
  checkNumber,
  checkObject,
  checkOneOf,
  checkReal,
  fail,
  rowsOf,
} from './validate.js';
import { SerialQueue } from './queue.js';

export interface OptimizerOptions {
  kind: 'adam' | 'sgd';
  /** learning rate (default 1e-3) */
  lr?: number;
  /** Adam's (β1, β2), default [0.9, 0.999] */
  betas?: [number, number];
  /** Adam's ε, default 1e-8 */
  eps?: number;
  /** L2 penalty added to the gradient, as torch.optim (default 0) */
  weightDecay?: number;
  /** SGD momentum (default 0), dampening (default 0), nesterov (default false) */
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  /** clip the meta-gradient to this global L2 norm before the update (default: no clipping) */
  clipNorm?: number;
}

export interface MetaLearnerOptions {
  model: ModelSpec;
  /** default 'maml' */
  algorithm?: Algorithm;
  /** inner rate(s): a number, one per step, or per parameter (meta-sgd); default 0.01 */
  innerLr?: InnerLr;
  /** default 1 */
  innerSteps?: number;
  /** MAML++ multi-step loss weights w_0..w_S (default: the last step only) */
  stepWeights?: readonly number[];
  /** learn the inner rates with the meta-optimizer (default: true for meta-sgd, false otherwise) */
  learnInnerLr?: boolean;
  /** default { kind: 'adam', lr: 1e-3 } */
  optimizer?: OptimizerOptions;
  /** default 'auto': CUDA when usable, otherwise the CPU (see `deviceReason`) */
  device?: DeviceRequest;
  /** seeds the initial parameters (default 0) */
  seed?: number;
  /** initial parameters instead of a seeded initialization */
  params?: Float32Array;
}

/** The support set of one user: x [n, d0], y [n, dL] (or Int32Array labels [n]). */
export interface SupportSet {
  x: Float32Array;
  y: Float32Array | Int32Array;
}

export interface AdaptOptions {
  /** inner steps (default: the learner's innerSteps) */
  steps?: number;
}

/** A model adapted to one user: its parameters and its predictions. */
export class AdaptedModel {
  readonly model: ModelSpec;
  readonly params: Float32Array;
  readonly #m: Model;

  /** @internal */
  constructor(m: Model, params: Float32Array) {
    this.#m = m;
    this.model = m.spec;
    this.params = params;
  }

  /** Network outputs for x [n, d0] (logits for the cross-entropies): [n, dL]. */
  predict(x: Float32Array): Float32Array {
    const where = 'AdaptedModel.predict';
    const n = rowsOf(checkReal(x, where, 'x', 'float32'), where, 'x', this.#m.dIn);
    const m = this.#m;
    return callNative((a) => a.forward({ layers: m.layers, activation: m.activation, loss: m.loss, params: this.params, x, n })) as Float32Array;
  }

  /**
   * Probabilities for x: sigmoid of the outputs for binary-cross-entropy, softmax per row for
   * cross-entropy. For mse this is the same as predict().
   */
  predictProba(x: Float32Array): Float32Array {
    return toProbabilities(this.#m, this.predict(x));
  }
}

export function toProbabilities(m: Model, out: Float32Array): Float32Array {
  if (m.spec.loss === 'binary-cross-entropy') {
    for (let i = 0; i < out.length; i++) out[i] = 1 / (1 + Math.exp(-out[i]!));
  } else if (m.spec.loss === 'cross-entropy') {
    const k = m.dOut;
    for (let r = 0; r < out.length; r += k) {
      let max = -Infinity;
      for (let j = 0; j < k; j++) max = Math.max(max, out[r + j]!);
      let sum = 0;
      for (let j = 0; j < k; j++) sum += out[r + j] = Math.exp(out[r + j]! - max);
      for (let j = 0; j < k; j++) out[r + j] = out[r + j]! / sum;
    }
  }
  return out;
}

/** One adaptAsync call waiting to be sent with others of the same turn. */
interface CoalescedAdapt {
  xs: Float32Array;
  ys: Float32Array | Int32Array;
  resolve: (m: AdaptedModel) => void;
  reject: (err: unknown) => void;
}

/** A copy of a batch's arrays, so that a queued asynchronous call sees them as they were. */
export function snapshot<B extends NativeBatch>(b: B): B {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(b)) out[k] = ArrayBuffer.isView(v) ? (v as Float32Array).slice() : v;
  return out as unknown as B;
}

export interface OptimState extends NativeOptim {
  kindName: 'adam' | 'sgd';
}

/** Validates optimizer options (defaults: Adam, lr 1e-3); shared with FewShotLearner. */
export function checkOptimizer(value: unknown, where: string): OptimState {
  const o = checkObject(value ?? { kind: 'adam' }, where, 'options.optimizer');
  const kindName = checkOneOf(o.kind ?? 'adam', where, 'options.optimizer.kind', ['adam', 'sgd'] as const);
  const betas = o.betas === undefined ? [0.9, 0.999] : o.betas;
  if (!Array.isArray(betas) || betas.length !== 2) fail('INVALID_ARGUMENT', where, 'options.optimizer.betas', 'a pair [β1, β2]', betas);
  const num = (v: unknown, name: string, dflt: number, opts: { min?: number; max?: number; exclusiveMin?: boolean }) =>
    v === undefined ? dflt : checkNumber(v, where, `options.optimizer.${name}`, opts);
  return {
    kindName,
    optKind: kindName === 'adam' ? 0 : 1,
    lr: num(o.lr, 'lr', 1e-3, { min: 0 }),
    beta1: checkNumber(betas[0], where, 'options.optimizer.betas[0]', { min: 0, max: 0.999999999 }),
    beta2: checkNumber(betas[1], where, 'options.optimizer.betas[1]', { min: 0, max: 0.999999999 }),
    eps: num(o.eps, 'eps', 1e-8, { min: 0, exclusiveMin: true }),
    weightDecay: num(o.weightDecay, 'weightDecay', 0, { min: 0 }),
    momentum: num(o.momentum, 'momentum', 0, { min: 0 }),
    dampening: num(o.dampening, 'dampening', 0, { min: 0, max: 1 }),
    nesterov: o.nesterov === undefined ? false : checkBoolean(o.nesterov, where, 'options.optimizer.nesterov'),
    clipNorm: num(o.clipNorm, 'clipNorm', 0, { min: 0 }),
  };
}

/**
 * Meta-learns an initialization (and, for meta-sgd or MAML++, inner rates) that adapts to a
 * new task in a few gradient steps.
 *
 * @example
 * const learner = new MetaLearner({
 *   model: { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' },
 *   algorithm: 'maml', innerLr: 0.01, innerSteps: 1, optimizer: { kind: 'adam', lr: 1e-3 }, seed: 1,
 * });
 * const tasks = sinusoid({ shots: 10, queries: 10, seed: 1 });
 * for (let i = 0; i < 1000; i++) learner.step(tasks.sample(25));
 * const user = learner.adapt({ x, y }, { steps: 10 });
 * user.predict(xNew);
 */
export class MetaLearner {
  readonly model: ModelSpec;
  readonly algorithm: Algorithm;
  readonly innerSteps: number;
  readonly learnInnerLr: boolean;
  /** the device steps run on */
  readonly device: 'cpu' | 'cuda';
  /** why that device was chosen (for example why CUDA was not used) */
  readonly deviceReason: string;
  readonly seed: number;
  readonly #m: Model;
  #inner: Inner;
  readonly #opt: OptimState;
  /** [P + R]: the parameters, then the learned rates (R = 0 when rates are fixed) */
  #state: Float32Array;
  readonly #packed = new Float64Array(PackedSlot.count);
  readonly #packedResult = new Float64Array(2);
  #mom1: Float32Array;
  #mom2: Float32Array;
  #t = 0;
  #queue = new SerialQueue();
  /** adaptAsync calls waiting for the end of this turn of the event loop, by step count */
  #coalesced = new Map<number, CoalescedAdapt[]>();
  /** device: 'cuda': the state on the GPU; #state is its copy, stale after a step until #sync() */
  #cuda: CudaBackend | null = null;
  #stale = false;
  /** the step weights changed since the last CUDA step (they live on the GPU too) */
  #weightsChanged = false;
  /** a CUDA stepAsync or asynchronous adaptation is running on a worker thread (it holds the GPU state) */
  #cudaRunning = false;
  /** a CPU stepAsync is running on a native thread */
  #cpuRunning = false;
  /** dispose() was called: the state is gone and every call throws DISPOSED */
  #disposed = false;

  constructor(options: MetaLearnerOptions) {
    const where = 'MetaLearner';
    const o = checkObject(options, where, 'options');
    this.#m = checkModel(o.model, where);
    this.model = this.#m.spec;
    this.#inner = checkInner(o, this.#m, 'float32', where);
    this.algorithm = this.#inner.algorithmName;
    this.innerSteps = this.#inner.steps;
    this.learnInnerLr =
      o.learnInnerLr === undefined ? this.algorithm === 'meta-sgd' : checkBoolean(o.learnInnerLr, where, 'options.learnInnerLr');
    if (this.learnInnerLr && (this.algorithm === 'fomaml' || this.algorithm === 'reptile'))
      throw new MamlError('INVALID_ARGUMENT', `${where}: learnInnerLr needs a second-order algorithm (maml, meta-sgd, anil), not ${this.algorithm}`);
    if (this.learnInnerLr && this.innerSteps === 0)
      throw new MamlError('INVALID_ARGUMENT', `${where}: learnInnerLr needs at least one inner step`);
    this.#opt = checkOptimizer(o.optimizer, where);
    this.seed = o.seed === undefined ? 0 : checkInt(o.seed, where, 'options.seed', 0, 2 ** 32 - 1);
    const request = (o.device ?? 'auto') as DeviceRequest;
    const { device, reason } = resolveDevice(request);
    const P = this.#m.nParams;
    const params =
      o.params === undefined ? initParams(this.model, { seed: this.seed }) : checkReal(o.params, where, 'options.params', 'float32', P);
    const R = this.learnInnerLr ? this.#inner.rates.length : 0;
    this.#state = new Float32Array(P + R);
    this.#state.set(params);
    if (R > 0) {
      this.#state.set(this.#inner.rates, P);
      this.#inner = { ...this.#inner, rates: this.#state.subarray(P) };
    } else {
      this.#inner = { ...this.#inner, rates: Float32Array.from(this.#inner.rates) };
    }
    this.#mom1 = new Float32Array(P + R);
    this.#mom2 = new Float32Array(P + R);
    [this.device, this.deviceReason] = [device, reason];
    if (device === 'cuda') {
      const m = this.#m;
      try {
        this.#cuda = new CudaBackend({
          layers: m.layers, activation: m.activation, loss: m.loss, ...this.#inner, ...this.#opt,
          state: this.#state, learnRates: this.learnInnerLr, rates: this.#inner.rates as Float32Array,
        });
      } catch (err) {
        // 'auto' falls back for a model the kernels do not take (more than 16 layers)
        if (request !== 'auto' || !(err instanceof MamlError) || err.code !== 'UNSUPPORTED') throw err;
        [this.device, this.deviceReason] = ['cpu', `CUDA not used: ${err.message}`];
      }
    }
  }

  /** Brings the host copy of the state up to date with the GPU (device: 'cuda'). */
  #sync(where = 'params'): void {
    this.#checkAlive(where);
    if (this.#cudaRunning)
      throw new MamlError('BUSY', `MetaLearner.${where}: an asynchronous call is using the state on the GPU; await it first`);
    if (this.#cpuRunning)
      throw new MamlError('BUSY', `MetaLearner.${where}: a stepAsync is updating the parameters on a native thread; await it first`);
    if (this.#cuda && this.#stale) {
      this.#state.set(this.#cuda.pull());
      this.#stale = false;
    }
  }

  /**
   * A copy of the parameters θ.
   * @throws MamlError BUSY while a stepAsync is running (its native thread updates θ in place).
   */
  get params(): Float32Array {
    this.#sync();
    return this.#state.slice(0, this.#m.nParams);
  }

  /** A copy of the inner rates (per step, or per parameter for meta-sgd). */
  get innerLr(): Float32Array {
    this.#sync('innerLr');
    return Float32Array.from(this.#inner.rates);
  }

  /** How the inner rates are laid out. */
  get innerLrShape(): 'per-step' | 'per-param' | 'per-step-param' {
    return this.#inner.rateShape;
  }

  /** The MAML++ multi-step loss weights w_0..w_S in use. */
  get stepWeights(): number[] {
    return Array.from(this.#inner.weights);
  }
  set stepWeights(w: readonly number[]) {
    this.#checkIdle('stepWeights');
    const inner = checkInner(
      { algorithm: this.algorithm, innerSteps: this.innerSteps, innerLr: 0.01, stepWeights: w },
      this.#m,
      'float32',
      'MetaLearner.stepWeights',
    );
    this.#inner = { ...this.#inner, weights: inner.weights };
    this.#weightsChanged = true;
  }

  /** Number of meta-steps taken. */
  get stepCount(): number {
    return this.#t;
  }

  /** The optimizer settings. */
  get optimizer(): OptimizerOptions {
    const o = this.#opt;
    return {
      kind: o.kindName,
      lr: o.lr,
      betas: [o.beta1, o.beta2],
      eps: o.eps,
      weightDecay: o.weightDecay,
      momentum: o.momentum,
      dampening: o.dampening,
      nesterov: o.nesterov,
      clipNorm: o.clipNorm,
    };
  }

  #checkAlive(where: string): void {
    if (this.#disposed) throw new MamlError('DISPOSED', `MetaLearner.${where}: this learner was disposed; create or load a new one`);
  }

  #checkIdle(where: string): void {
    this.#checkAlive(where);
    if (this.#queue.pending > 0)
      throw new MamlError('BUSY', `MetaLearner.${where}: an asynchronous call on this learner is still running; await it first`);
  }

  #checkStepBatch(batch: MetaBatch, where: string): NativeBatch {
    return checkBatch(batch, this.#m, 'float32', where, this.algorithm !== 'reptile');
  }

  #stepArgs(b: NativeBatch): Parameters<NativeAddon['metaStep']>[0] {
    const m = this.#m;
    return {
      layers: m.layers,
      activation: m.activation,
      loss: m.loss,
      ...this.#inner,
      ...this.#opt,
      ...b,
      state: this.#state,
      m: this.#mom1,
      v: this.#mom2,
      t: this.#t + 1,
      learnRates: this.learnInnerLr,
      rates: this.#inner.rates,
    };
  }

  /**
   * One meta-step on a meta-batch: the meta-gradient, clipping, and the optimizer update, in
   * one native call. Returns the meta-batch's loss before the update.
   */
  step(batch: MetaBatch): { loss: number; gradNorm: number } {
    this.#checkIdle('step');
    this.#flushAll(); // adaptations called before this step see θ before it
    const b = this.#checkStepBatch(batch, 'MetaLearner.step');
    if (this.#cuda) return this.#cudaStep(b);
    const n = this.#packed;
    this.#packStep(n, b);
    const out = this.#packedResult;
    const ce = b.ysLabels !== undefined;
    callNative((a) =>
      a.metaStepPacked(n, this.#m.layers, this.#inner.weights, this.learnInnerLr ? undefined : this.#inner.rates, this.#state, this.#mom1,
        this.#mom2, b.supportOffsets, b.queryOffsets, b.xs, ce ? b.ysLabels : b.ys, b.xq, ce ? b.yqLabels : b.yq, out),
    );
    this.#t++;
    return { loss: out[0]!, gradNorm: out[1]! };
  }

  // The numbers of step() in metaStepPacked's order (the arrays go as arguments).
  #packStep(n: Float64Array, b: NativeBatch): void {
    const m = this.#m, inner = this.#inner, o = this.#opt;
    n[PackedSlot.algorithm] = inner.algorithm;
    n[PackedSlot.steps] = inner.steps;
    n[PackedSlot.activation] = m.activation;
    n[PackedSlot.loss] = m.loss;
    n[PackedSlot.optKind] = o.optKind;
    n[PackedSlot.lr] = o.lr;
    n[PackedSlot.beta1] = o.beta1;
    n[PackedSlot.beta2] = o.beta2;
    n[PackedSlot.eps] = o.eps;
    n[PackedSlot.weightDecay] = o.weightDecay;
    n[PackedSlot.momentum] = o.momentum;
    n[PackedSlot.dampening] = o.dampening;
    n[PackedSlot.nesterov] = o.nesterov ? 1 : 0;
    n[PackedSlot.clipNorm] = o.clipNorm;
    n[PackedSlot.learnRates] = this.learnInnerLr ? 1 : 0;
    n[PackedSlot.reference] = inner.reference ? 1 : 0;
    n[PackedSlot.rateStepStride] = inner.rateStepStride;
    n[PackedSlot.rateParamStride] = inner.rateParamStride;
    n[PackedSlot.t] = this.#t + 1;
    n[PackedSlot.tasks] = b.tasks;
    n[PackedSlot.wantRateGrad] = inner.wantRateGrad ? 1 : 0;
  }

  #cudaStep(b: NativeBatch): { loss: number; gradNorm: number } {
    const r = this.#cuda!.step(b, this.#t + 1, this.#weightsChanged ? this.#inner.weights : undefined);
    this.#weightsChanged = false;
    this.#stale = true;
    this.#t++;
    return r;
  }

  /**
   * step() off the event loop. The batch is validated and copied before the call returns. On
   * CUDA the device step runs on a native worker thread; until it settles, `params` and
   * `innerLr` throw BUSY (they would have to read the state the step is updating).
   */
  stepAsync(batch: MetaBatch): Promise<{ loss: number; gradNorm: number }> {
    let b: NativeBatch;
    try {
      this.#checkAlive('stepAsync');
      b = snapshot(this.#checkStepBatch(batch, 'MetaLearner.stepAsync'));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#enqueue(async () => {
      if (this.#cuda) return this.#cudaStepAsync(b);
      const args = this.#stepArgs(b);
      this.#cpuRunning = true; // a native thread updates θ in place: reads would see it half done
      try {
        const r = await callNativeAsync((a) => a.metaStepAsync(args));
        this.#t++;
        return r;
      } finally {
        this.#cpuRunning = false;
      }
    });
  }

  /** #cudaStep on a native worker thread (cudaLearnerStepAsync), inside the queue's slot. */
  async #cudaStepAsync(b: NativeBatch): Promise<{ loss: number; gradNorm: number }> {
    this.#cudaRunning = true;
    try {
      const r = await this.#cuda!.stepAsync(b, this.#t + 1, this.#weightsChanged ? this.#inner.weights : undefined);
      this.#weightsChanged = false;
      this.#stale = true;
      this.#t++;
      return r;
    } finally {
      this.#cudaRunning = false;
    }
  }

  #enqueue<R>(fn: () => Promise<R>): Promise<R> {
    return this.#queue.run(fn);
  }

  #adaptArgs(batch: NativeBatch, steps: number): Parameters<NativeAddon['adaptBatch']>[0] {
    const m = this.#m;
    if (this.learnInnerLr) this.#sync(); // the rates are read here; θ stays on the GPU
    const { rates, rateStepStride } = ratesForSteps(this.#inner, steps, m.nParams);
    return {
      layers: m.layers,
      activation: m.activation,
      loss: m.loss,
      ...this.#inner,
      steps,
      weights: new Float64Array(steps + 1),
      rates,
      rateStepStride,
      ...batch,
      params: this.#state.subarray(0, m.nParams),
    };
  }

  #supportBatch(support: unknown, where: string): NativeBatch {
    const s = checkObject(support, where, 'support');
    const x = checkReal(s.x, where, 'support.x', 'float32');
    const n = rowsOf(x, where, 'support.x', this.#m.dIn);
    return checkBatch({ tasks: 1, support: n, xs: x, ys: s.y }, this.#m, 'float32', where, false);
  }

  #steps(options: unknown, where: string): number {
    if (options === undefined) return this.innerSteps;
    const o = checkObject(options, where, 'options');
    return o.steps === undefined ? this.innerSteps : checkInt(o.steps, where, 'options.steps', 0, 10_000);
  }

  /**
   * Adapts the meta-learned initialization to one user's support set with `steps` inner steps
   * (the same update rule as in training; extra steps reuse the last step's rate).
   */
  adapt(support: SupportSet, options?: AdaptOptions): AdaptedModel {
    const where = 'MetaLearner.adapt';
    this.#checkIdle('adapt');
    const args = this.#adaptArgs(this.#supportBatch(support, where), this.#steps(options, where));
    return new AdaptedModel(this.#m, this.#adaptNative(args));
  }

  /** adapt() off the event loop. */
  adaptAsync(support: SupportSet, options?: AdaptOptions): Promise<AdaptedModel> {
    const where = 'MetaLearner.adaptAsync';
    let batch: NativeBatch, steps: number;
    try {
      this.#checkAlive('adaptAsync');
      batch = this.#supportBatch(support, where);
      steps = this.#steps(options, where);
    } catch (err) {
      return Promise.reject(err);
    }
    // On the GPU every adaptation takes its place in the queue when it is called (it must see θ
    // as the calls before it leave it, and no later step may run first): no coalescing there.
    if (this.#queue.pending > 0 || this.#cuda)
      return this.#afterSteps(batch, async (b) => {
        const args = this.#adaptArgs(b, steps);
        return new AdaptedModel(this.#m, await this.#adaptNativeAsync(args));
      });
    // Calls made in the same turn of the event loop share one native call (one batch).
    let group = this.#coalesced.get(steps);
    if (!group) {
      group = [];
      this.#coalesced.set(steps, group);
      queueMicrotask(() => this.#flush(steps));
    }
    const item = { xs: (batch.xs as Float32Array).slice(), ys: (batch.ys ?? batch.ysLabels)!.slice() } as CoalescedAdapt;
    group.push(item);
    return new Promise<AdaptedModel>((resolve, reject) => {
      item.resolve = resolve;
      item.reject = reject;
    });
  }

  /** Sends the adaptations coalesced for `steps` inner steps as one native call. */
  #flush(steps: number): void {
    const group = this.#coalesced.get(steps);
    if (!group) return;
    this.#coalesced.delete(steps);
    const m = this.#m;
    const supportOffsets = new Int32Array(group.length + 1);
    let rows = 0;
    group.forEach((g, t) => {
      rows += g.xs.length / m.dIn;
      supportOffsets[t + 1] = rows;
    });
    const xs = new Float32Array(rows * m.dIn);
    const labels = m.spec.loss === 'cross-entropy';
    const ys = labels ? new Int32Array(rows) : new Float32Array(rows * m.dOut);
    group.forEach((g, t) => {
      xs.set(g.xs, supportOffsets[t]! * m.dIn);
      ys.set(g.ys as never, supportOffsets[t]! * (labels ? 1 : m.dOut));
    });
    const batch: NativeBatch = { tasks: group.length, supportOffsets, xs, ...(labels ? { ysLabels: ys as Int32Array } : { ys: ys as Float32Array }) };
    const args = this.#adaptArgs(batch, steps);
    this.#adaptNativeAsync(args).then(
      (out) => {
        const models = this.#batchModels(out as Float32Array, group.length);
        group.forEach((g, t) => g.resolve(models[t]!));
      },
      (err) => group.forEach((g) => g.reject(err)),
    );
  }

  /** Sends every coalesced adaptation now (before a synchronous step changes θ). */
  #flushAll(): void {
    for (const steps of [...this.#coalesced.keys()]) this.#flush(steps);
  }

  /**
   * Runs a read-only asynchronous call (an adaptation) in call order after the pending
   * meta-steps: at once when none is pending (native code copies θ and the batch before it
   * returns, so such calls run in parallel with each other and with later steps), queued
   * behind them otherwise (then on a private copy of the batch). On the GPU always queued: the
   * adaptation holds the device state while it runs on its worker thread.
   */
  #afterSteps<R>(batch: NativeBatch, fn: (b: NativeBatch) => Promise<R>): Promise<R> {
    if (this.#queue.pending === 0 && !this.#cuda) return fn(batch);
    const copy = snapshot(batch);
    return this.#enqueue(() => fn(copy));
  }

  /** Adapted parameters [tasks, P]: on the GPU with device 'cuda', else in native threads. */
  #adaptNative(args: Parameters<NativeAddon['adaptBatch']>[0]): Float32Array {
    if (this.#cuda) return this.#cuda.adapt(args as CudaAdaptArgs);
    return callNative((a) => a.adaptBatch(args)) as Float32Array;
  }

  /**
   * The same off the event loop. On the GPU it holds the device state while it runs, so callers
   * run it in the queue's slot (#afterSteps): later asynchronous calls wait for it and
   * synchronous ones throw BUSY, as for stepAsync.
   */
  async #adaptNativeAsync(args: Parameters<NativeAddon['adaptBatch']>[0]): Promise<Float32Array> {
    if (!this.#cuda) return callNativeAsync((a) => a.adaptBatchAsync(args)) as Promise<Float32Array>;
    this.#checkAlive('adaptAsync');
    this.#cudaRunning = true;
    try {
      return await this.#cuda.adaptAsync(args as CudaAdaptArgs);
    } finally {
      this.#cudaRunning = false;
    }
  }

  #batchModels(out: Float32Array, tasks: number): AdaptedModel[] {
    const P = this.#m.nParams;
    return Array.from({ length: tasks }, (_, t) => new AdaptedModel(this.#m, out.subarray(t * P, (t + 1) * P)));
  }

  /**
   * Adapts many users in one native call, spread over threads. `batch` holds only support
   * sets: { tasks, support | supportOffsets, xs, ys }. The models share one buffer [tasks, P].
   */
  adaptBatch(batch: Pick<MetaBatch, 'tasks' | 'support' | 'supportOffsets' | 'xs' | 'ys'>, options?: AdaptOptions): AdaptedModel[] {
    const where = 'MetaLearner.adaptBatch';
    this.#checkIdle('adaptBatch');
    const b = checkBatch(batch, this.#m, 'float32', where, false);
    const args = this.#adaptArgs(b, this.#steps(options, where));
    return this.#batchModels(this.#adaptNative(args), b.tasks);
  }

  /** adaptBatch() off the event loop. */
  adaptBatchAsync(batch: Pick<MetaBatch, 'tasks' | 'support' | 'supportOffsets' | 'xs' | 'ys'>, options?: AdaptOptions): Promise<AdaptedModel[]> {
    const where = 'MetaLearner.adaptBatchAsync';
    let b: NativeBatch, steps: number;
    try {
      this.#checkAlive('adaptBatchAsync');
      b = checkBatch(batch, this.#m, 'float32', where, false);
      steps = this.#steps(options, where);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#afterSteps(b, async (nb) => {
      const args = this.#adaptArgs(nb, steps);
      return this.#batchModels(await this.#adaptNativeAsync(args), nb.tasks);
    });
  }

  /** Outputs of the meta-learned (unadapted) model for x [n, d0]. */
  predict(x: Float32Array): Float32Array {
    this.#checkIdle('predict');
    return new AdaptedModel(this.#m, this.params).predict(x);
  }

  /**
   * Saves the learner as a safetensors checkpoint (tensors `layers.{l}.weight` and
   * `layers.{l}.bias`, loadable by PyTorch; settings and rates in the metadata). Written to a
   * temporary file, flushed, then renamed: an existing file is never left half-written.
   */
  save(path: string): void {
    this.#checkIdle('save');
    writeCheckpoint(path, {
      model: this.model,
      params: this.params,
      algorithm: this.algorithm,
      innerSteps: this.innerSteps,
      innerLr: this.innerLr,
      innerLrShape: this.innerLrShape,
      learnInnerLr: this.learnInnerLr,
      stepWeights: this.stepWeights,
      optimizer: this.optimizer,
      stepCount: this.#t,
      seed: this.seed,
    });
  }

  /**
   * Frees the learner's memory now instead of at garbage collection: the parameters, rates and
   * optimizer moments, on the GPU (device 'cuda') and in host memory. Afterwards every method
   * and the `params` and `innerLr` getters throw MamlError('DISPOSED'); a second dispose()
   * does nothing. While an asynchronous call is pending it throws BUSY (await it first);
   * adaptAsync calls made earlier in the same turn are sent to native code first (they copy θ).
   *
   * @example
   * const learner = new MetaLearner({ model, device: 'cuda' });
   * try { for (const b of batches) learner.step(b); learner.save('m.safetensors'); } finally { learner.dispose(); }
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#checkIdle('dispose');
    this.#flushAll();
    this.#cuda?.dispose();
    this.#cuda = null;
    this.#disposed = true;
    this.#state = new Float32Array(0);
    this.#mom1 = new Float32Array(0);
    this.#mom2 = new Float32Array(0);
    this.#inner = { ...this.#inner, rates: new Float32Array(0) };
  }

  /** Whether dispose() was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Loads a checkpoint written by save(). Restores the parameters, inner rates, settings and
   * step count; the optimizer's moments start afresh.
   */
  static load(path: string, options: { device?: DeviceRequest } = {}): MetaLearner {
    const c = readCheckpoint(path);
    const innerLr = c.innerLrShape === 'per-step' ? Array.from(c.innerLr) : c.innerLr;
    let learner: MetaLearner;
    try {
      learner = new MetaLearner({
      model: c.model,
      algorithm: c.algorithm,
      innerSteps: c.innerSteps,
      innerLr: c.innerLrShape === 'per-step' && c.innerSteps === 0 ? c.innerLr[0]! : innerLr,
      stepWeights: c.stepWeights,
      learnInnerLr: c.learnInnerLr,
      optimizer: c.optimizer,
      seed: c.seed,
      params: c.params,
      ...(options.device ? { device: options.device } : {}),
      });
    } catch (err) {
      if (err instanceof MamlError && err.code !== 'NO_DEVICE' && err.code !== 'UNSUPPORTED')
        throw new MamlError('CORRUPT_FILE', `${path}: the checkpoint's settings are invalid: ${err.message}`, { cause: err });
      throw err;
    }
    learner.#t = c.stepCount;
    return learner;
  }
}
