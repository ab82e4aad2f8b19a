/**
 * FewShotLearner: Prototypical, Matching and Relation Networks. An embedding MLP (and, for
 * Relation Networks, a relation MLP) trained by ordinary backpropagation through each
 * episode's query loss; one native call per meta-batch, tasks spread over threads
 * (native/core/fewshot.hpp). FewShotClassifier: a support set turned into a classifier.
 *
 * Concurrency, as MetaLearner: stepAsync calls run one after another in call order; an
 * evaluateAsync waits for the steps called before it; a synchronous call made while an
 * asynchronous one is pending throws MamlError('BUSY').
 */
import { MamlError } from '../errors.js';
import { checkOptimizer, snapshot, type OptimState, type OptimizerOptions } from '../learner.js';
import { callNative, callNativeAsync } from '../native.js';
import type { NativeAddon, NativeEpisodes } from '../native-types.js';
import { checkInt, checkObject, checkReal, rowsOf, checkLabels, fail } from '../validate.js';
import { readFewShotCheckpoint, writeFewShotCheckpoint } from './checkpoint.js';
import {
  checkClassesPresent,
  checkEpisodes,
  checkFewShotSpec,
  initFewShotParams,
  type Episodes,
  type FewShotAlgorithm,
  type FewShotSpec,
  type MlpOptions,
  type RelationOptions,
} from './spec.js';
import { SerialQueue } from '../queue.js';

/** Options of `new FewShotLearner()`: the algorithm, its MLPs, the optimizer and the seed. */
export interface FewShotLearnerOptions {
  algorithm: FewShotAlgorithm;
  /** The embedding MLP [inputDim, …, embedDim]: hidden layers use `activation` (default relu), the last layer is linear. */
  embedding: MlpOptions;
  /**
   * Relation Networks only: the relation MLP scoring [query embedding, class embedding]
   * (2·embedDim inputs, 1 output; sigmoid applied). Default { layers: [2·embedDim, 64, 1], activation: 'relu' } (see RELATION_HIDDEN),
   * classEmbedding 'mean', normalize 'episode' (the episode's embeddings standardized per dimension first).
   */
  relation?: RelationOptions;
  /** default { kind: 'adam', lr: 1e-3 } (as MetaLearner) */
  optimizer?: OptimizerOptions;
  /** seeds PyTorch's default initialization (default 0) */
  seed?: number;
  /** initial parameters (embedding, then relation) instead of a seeded initialization */
  params?: Float32Array;
}

/** Loss and accuracy of a meta-batch: means over tasks of the query loss and accuracy. */
export interface FewShotStepResult {
  loss: number;
  accuracy: number;
  /** the gradient's L2 norm before clipping */
  gradNorm: number;
}

/** Loss and accuracy of a meta-batch (means over tasks), and each task's figures. */
export interface FewShotEvaluation {
  loss: number;
  accuracy: number;
  /** [tasks]: each task's query accuracy */
  accuracies: Float32Array;
  /** [tasks]: each task's query loss */
  losses: Float32Array;
}

/** A support set: x [n, inputDim], labels [n] in [0, ways); ways defaults to max(labels) + 1. */
export interface FewShotSupport {
  x: Float32Array;
  labels: Int32Array;
  ways?: number;
}

function evaluation(r: { loss: number; accuracy: number; losses: Float64Array; accuracies: Float64Array }): FewShotEvaluation {
  return { loss: r.loss, accuracy: r.accuracy, accuracies: Float32Array.from(r.accuracies), losses: Float32Array.from(r.losses) };
}

/**
 * A metric-based few-shot learner.
 *
 * @example
 * const learner = new FewShotLearner({ algorithm: 'protonet', embedding: { layers: [784, 128, 64] }, seed: 1 });
 * for (let i = 0; i < 1000; i++) learner.step(sampler.sample(16));   // episodes with ways, labels in [0, ways)
 * const clf = learner.adapt({ x: supportX, labels: supportLabels });
 * clf.predict(queryX);                                                // Int32Array of classes
 */
export class FewShotLearner {
  readonly algorithm: FewShotAlgorithm;
  readonly inputDim: number;
  readonly embedDim: number;
  readonly seed: number;
  readonly #spec: FewShotSpec;
  readonly #opt: OptimState;
  #params: Float32Array;
  #m1: Float32Array;
  #m2: Float32Array;
  #t = 0;
  #queue = new SerialQueue();
  /** dispose() was called: the state is gone and every call throws DISPOSED */
  #disposed = false;

  constructor(options: FewShotLearnerOptions) {
    const where = 'FewShotLearner';
    const o = checkObject(options, where, 'options');
    this.#spec = checkFewShotSpec(o, where);
    this.algorithm = this.#spec.algorithm;
    this.inputDim = this.#spec.inputDim;
    this.embedDim = this.#spec.embedDim;
    this.#opt = checkOptimizer(o.optimizer, where);
    this.seed = o.seed === undefined ? 0 : checkInt(o.seed, where, 'options.seed', 0, 2 ** 32 - 1);
    const P = this.#spec.nParams;
    this.#params =
      o.params === undefined
        ? (initFewShotParams(this.#spec, this.seed) as Float32Array)
        : Float32Array.from(checkReal(o.params, where, 'options.params', 'float32', P, 'embedding then relation parameters'));
    this.#m1 = new Float32Array(P);
    this.#m2 = new Float32Array(P);
  }

  /** The embedding MLP's settings. */
  get embedding(): { layers: number[]; activation: 'relu' | 'tanh' } {
    return { ...this.#spec.embedding, layers: [...this.#spec.embedding.layers] };
  }

  /** The relation MLP's settings (Relation Networks only). */
  get relation(): { layers: number[]; activation: 'relu' | 'tanh'; classEmbedding: 'mean' | 'sum'; normalize: 'episode' | 'none' } | undefined {
    const r = this.#spec.relation;
    return r && { ...r, layers: [...r.layers] };
  }

  /** The optimizer settings. */
  get optimizer(): OptimizerOptions {
    const o = this.#opt;
    return {
      kind: o.kindName, lr: o.lr, betas: [o.beta1, o.beta2], eps: o.eps, weightDecay: o.weightDecay,
      momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov, clipNorm: o.clipNorm,
    };
  }

  /** A copy of the parameters: the embedding's (PyTorch nn.Linear layout per layer), then the relation module's. */
  get params(): Float32Array {
    this.#checkAlive('params');
    return this.#params.slice();
  }
  set params(p: Float32Array) {
    this.#checkIdle('params');
    this.#params.set(checkReal(p, 'FewShotLearner.params', 'params', 'float32', this.#spec.nParams));
  }

  /** Number of optimizer steps taken. */
  get steps(): number {
    return this.#t;
  }

  #checkAlive(where: string): void {
    if (this.#disposed) throw new MamlError('DISPOSED', `FewShotLearner.${where}: this learner was disposed; create or load a new one`);
  }

  #checkIdle(where: string): void {
    this.#checkAlive(where);
    if (this.#queue.pending > 0)
      throw new MamlError('BUSY', `FewShotLearner.${where}: an asynchronous call on this learner is still running; await it first`);
  }

  #stepArgs(e: NativeEpisodes): Parameters<NativeAddon['fewshotStep']>[0] {
    return { ...this.#spec.native, ...this.#opt, ...e, state: this.#params, m: this.#m1, v: this.#m2, t: this.#t + 1 };
  }

  /**
   * One optimizer step on a meta-batch of episodes: the mean query loss over tasks, its exact
   * gradient, clipping and the update, in one native call. Returns loss and accuracy before the update.
   */
  step(episodes: Episodes): FewShotStepResult {
    this.#checkIdle('step');
    const args = this.#stepArgs(checkEpisodes(episodes, this.#spec, 'float32', 'FewShotLearner.step'));
    const r = callNative((a) => a.fewshotStep(args));
    this.#t++;
    return r;
  }

  /** step() off the event loop. The episodes are validated and copied before the call returns. */
  stepAsync(episodes: Episodes): Promise<FewShotStepResult> {
    let e: NativeEpisodes;
    try {
      this.#checkAlive('stepAsync');
      e = snapshot(checkEpisodes(episodes, this.#spec, 'float32', 'FewShotLearner.stepAsync'));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#enqueue(async () => {
      const args = this.#stepArgs(e);
      const r = await callNativeAsync((a) => a.fewshotStepAsync(args));
      this.#t++;
      return r;
    });
  }

  #enqueue<R>(fn: () => Promise<R>): Promise<R> {
    return this.#queue.run(fn);
  }

  /** Loss and accuracy on a meta-batch without updating: means over tasks, and each task's accuracy. */
  evaluate(episodes: Episodes): FewShotEvaluation {
    this.#checkIdle('evaluate');
    const e = checkEpisodes(episodes, this.#spec, 'float32', 'FewShotLearner.evaluate');
    return evaluation(callNative((a) => a.fewshotEvaluate({ ...this.#spec.native, ...e, params: this.#params })));
  }

  /** evaluate() off the event loop; it sees the parameters after the steps called before it. */
  evaluateAsync(episodes: Episodes): Promise<FewShotEvaluation> {
    let e: NativeEpisodes;
    try {
      this.#checkAlive('evaluateAsync');
      e = checkEpisodes(episodes, this.#spec, 'float32', 'FewShotLearner.evaluateAsync');
    } catch (err) {
      return Promise.reject(err);
    }
    // native code copies the parameters and the episodes before it returns
    const run = (ep: NativeEpisodes) =>
      callNativeAsync((a) => a.fewshotEvaluateAsync({ ...this.#spec.native, ...ep, params: this.#params })).then(evaluation);
    if (this.#queue.pending === 0) return run(e);
    const copy = snapshot(e);
    return this.#enqueue(() => run(copy));
  }

  /** Embeddings [n, embedDim] of x [n, inputDim]. */
  embed(x: Float32Array): Float32Array {
    const where = 'FewShotLearner.embed';
    this.#checkIdle('embed');
    const n = rowsOf(checkReal(x, where, 'x', 'float32'), where, 'x', this.inputDim);
    return embedWith(this.#spec, this.#params, x, n);
  }

  /**
   * A classifier for the classes of one support set: it keeps the support embeddings (and a
   * copy of the parameters), from which it builds prototypes (protonet), attention over the
   * support examples (matching) or class embeddings for the relation module (relation).
   */
  adapt(support: FewShotSupport): FewShotClassifier {
    const where = 'FewShotLearner.adapt';
    this.#checkIdle('adapt');
    const s = checkObject(support, where, 'support');
    const x = checkReal(s.x, where, 'support.x', 'float32') as Float32Array;
    const n = rowsOf(x, where, 'support.x', this.inputDim);
    if (n === 0) fail('SHAPE_MISMATCH', where, 'support.x', 'at least one row', x);
    if (!(s.labels instanceof Int32Array)) fail('INVALID_ARGUMENT', where, 'support.labels', 'an Int32Array of class labels', s.labels);
    let ways: number;
    if (s.ways === undefined) {
      ways = 0;
      for (const c of s.labels) ways = Math.max(ways, c + 1);
      ways = Math.max(ways, 1);
    } else ways = checkInt(s.ways, where, 'support.ways', 1, 1 << 24);
    const labels = checkLabels(s.labels, where, 'support.labels', n, ways);
    if (ways > n) {
      // fewer rows than classes: name the first missing class without a table of `ways` flags
      // (one label near 2^31 would otherwise allocate 2 GB before failing)
      const present = new Set(labels);
      let missing = 0;
      while (present.has(missing)) missing++;
      throw new MamlError(
        'INVALID_ARGUMENT',
        `${where}: class ${missing} has no support example (support.labels: ${n} rows for ${ways} classes); every class needs at least one`,
      );
    }
    checkClassesPresent(labels, Int32Array.of(0, n), ways, where, 'support.labels');
    const params = this.params;
    return new FewShotClassifier(this.#spec, params, embedWith(this.#spec, params, x, n), labels.slice(), ways);
  }

  /**
   * Saves the learner as a safetensors checkpoint: tensors `embedding.layers.{l}.weight` /
   * `.bias` (and `relation.layers.{l}.…`), the settings in the metadata. Atomic (temporary
   * file, then rename). The optimizer's moments are not saved.
   */
  save(path: string): void {
    this.#checkIdle('save');
    writeFewShotCheckpoint(path, {
      algorithm: this.algorithm,
      embedding: this.embedding,
      ...(this.relation ? { relation: this.relation } : {}),
      params: this.params,
      optimizer: this.optimizer,
      steps: this.#t,
      seed: this.seed,
    });
  }

  /**
   * Drops the parameters and optimizer moments now, so that their memory can be reclaimed while
   * the learner object is still referenced. Afterwards every method and the `params` getter
   * throw MamlError('DISPOSED'); a second dispose() does nothing; while an asynchronous call
   * is pending it throws BUSY (await it first). Classifiers made by adapt() keep working (they
   * hold their own copy of the parameters).
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#checkIdle('dispose');
    this.#disposed = true;
    this.#params = new Float32Array(0);
    this.#m1 = new Float32Array(0);
    this.#m2 = new Float32Array(0);
  }

  /** Whether dispose() was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Loads a checkpoint written by save(); the optimizer's moments start afresh. */
  static load(path: string): FewShotLearner {
    const c = readFewShotCheckpoint(path);
    let learner: FewShotLearner;
    try {
      learner = new FewShotLearner({
        algorithm: c.algorithm,
        embedding: c.embedding,
        ...(c.relation ? { relation: c.relation } : {}),
        optimizer: c.optimizer,
        seed: c.seed,
        params: c.params,
      });
    } catch (err) {
      if (err instanceof MamlError) throw new MamlError('CORRUPT_FILE', `${path}: the checkpoint's settings are invalid: ${err.message}`, { cause: err });
      throw err;
    }
    learner.#t = c.steps;
    return learner;
  }
}

function embedWith(spec: FewShotSpec, params: Float32Array, x: Float32Array, n: number): Float32Array {
  const e = spec.native;
  return callNative((a) =>
    a.forward({ layers: e.embLayers, activation: e.embActivation, loss: 0, params: params.subarray(0, spec.embeddingParams), x, n }),
  ) as Float32Array;
}

/** Classes for new inputs from one support set (made by FewShotLearner.adapt). */
export class FewShotClassifier {
  readonly ways: number;
  readonly #spec: FewShotSpec;
  readonly #params: Float32Array;
  readonly #emb: Float32Array;
  readonly #labels: Int32Array;

  /** @internal */
  constructor(spec: FewShotSpec, params: Float32Array, supportEmb: Float32Array, labels: Int32Array, ways: number) {
    this.#spec = spec;
    this.#params = params;
    this.#emb = supportEmb;
    this.#labels = labels;
    this.ways = ways;
  }

  /**
   * Scores [n, ways] for x [n, inputDim]: −squared distances to the prototypes (protonet),
   * log-probabilities (matching), relation scores in (0, 1) (relation).
   */
  logits(x: Float32Array): Float32Array {
    const where = 'FewShotClassifier.logits';
    const n = rowsOf(checkReal(x, where, 'x', 'float32'), where, 'x', this.#spec.inputDim);
    return callNative((a) =>
      a.fewshotLogits({
        ...this.#spec.native,
        params: this.#params,
        ways: this.ways,
        ns: this.#labels.length,
        supportEmb: this.#emb,
        supportLabels: this.#labels,
        x,
        n,
      }),
    ) as Float32Array;
  }

  /**
   * Class probabilities [n, ways]: softmax of the logits (protonet), exp of the
   * log-probabilities (matching), relation scores divided by their sum per row (relation).
   */
  predictProba(x: Float32Array): Float32Array {
    const out = this.logits(x);
    const k = this.ways;
    for (let r = 0; r < out.length; r += k) {
      if (this.#spec.algorithm === 'relation') {
        let sum = 0;
        for (let j = 0; j < k; j++) sum += out[r + j]!;
        for (let j = 0; j < k; j++) out[r + j] = sum > 0 ? out[r + j]! / sum : 1 / k;
      } else {
        let max = -Infinity;
        for (let j = 0; j < k; j++) max = Math.max(max, out[r + j]!);
        let sum = 0;
        for (let j = 0; j < k; j++) sum += out[r + j] = Math.exp(out[r + j]! - max);
        for (let j = 0; j < k; j++) out[r + j] = out[r + j]! / sum;
      }
    }
    return out;
  }

  /** The class with the largest logit (the first on ties) for each row of x: Int32Array [n]. */
  predict(x: Float32Array): Int32Array {
    const lg = this.logits(x);
    const k = this.ways;
    const out = new Int32Array(lg.length / k);
    for (let i = 0; i < out.length; i++) {
      let best = 0;
      for (let j = 1; j < k; j++) if (lg[i * k + j]! > lg[i * k + best]!) best = j;
      out[i] = best;
    }
    return out;
  }
}
