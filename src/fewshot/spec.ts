/**
 * Few-shot learners' settings and episodes: validation and conversion into what native code
 * (native/binding/fewshot_ops.cc) reads. Shared by FewShotLearner and fewShotLoss.
 */
import { MamlError } from '../errors.js';
import { checkBatch, type MetaBatch } from '../inner.js';
import { ACTIVATIONS, MAX_PARAMS, MAX_WIDTH, type Activation, type Model } from '../model.js';
import type { NativeEpisodes, NativeFewShotSpec } from '../native-types.js';
import { Rng } from '../rng.js';
import { checkInt, checkObject, checkOneOf, fail, type Precision } from '../validate.js';

export type { NativeEpisodes, NativeFewShotSpec };

export type FewShotAlgorithm = 'protonet' | 'matching' | 'relation';

/**
 * Hidden width of the default relation module [2·embedDim, 64, 1]. The paper's module ends
 * in an 8-unit layer after two convolution blocks with batch normalization; on MLP embeddings
 * (no normalization, whose outputs barely vary at PyTorch's initialization) 8 units collapsed
 * to the constant prediction 1/ways on the glyph benchmark (5-way 1-shot: loss 0.16, accuracy
 * exactly chance for 1,000 iterations at learning rates 1e-3 to 1e-2); 64 units left the
 * plateau after about 200 iterations (72% after 2,000) with seeds 1 and 3, but not within 600
 * iterations with seed 2. The plateau: the embeddings vary so little between inputs that every
 * ReLU of the module is on for all pairs or off for all, so the module is linear in
 * [query, class] and cannot compare them; it leaves the plateau only as the embeddings grow.
 * Episode normalization (relation.normalize, the default) removes that cause. With it, 1,000
 * steps of 20-way 1-shot training (meta-batch 16, Adam 3e-3) gave 74.0% on validation
 * characters (5-way 1-shot) with 64 hidden units and 61.6% with 8, so the width stays 64;
 * without it, 1,000 such steps (Adam 1e-3, seeds 1 and 2) stayed at exactly chance. It
 * trains faster at larger rates: 59.6% (1e-3), 74.0% (3e-3), 79.1% (1e-2) on validation.
 */
export const RELATION_HIDDEN = 64;
export const RELATION_NORMALIZE = ['episode', 'none'] as const;
/** The metric-based algorithms FewShotLearner trains: Prototypical, Matching and Relation Networks. */
export const FEW_SHOT_ALGORITHMS: readonly FewShotAlgorithm[] = ['protonet', 'matching', 'relation'];

/** An MLP: widths `layers = [d0, …, dL]`; hidden layers use `activation` (default relu), the last is linear. */
export interface MlpOptions {
  layers: readonly number[];
  activation?: Activation;
}

/** The relation module of Relation Networks (layers default to [2·embedDim, RELATION_HIDDEN, 1]). */
export interface RelationOptions extends Omit<MlpOptions, 'layers'> {
  layers?: readonly number[];
  /**
   * How a class's support embeddings become its class embedding: 'mean' (default) or 'sum'
   * (the paper's K-shot choice; its scale grows with the number of shots).
   */
  classEmbedding?: 'mean' | 'sum';
  /**
   * 'episode' (default): before the class embeddings and the relation module, each embedding
   * dimension is standardized over all of the episode's embeddings, support and query rows
   * together (mean and biased variance, eps 1e-5: training-mode BatchNorm1d without a learned
   * scale and shift, which the module's first layer would absorb), with the exact gradient.
   * The same at test time: evaluate() uses each episode's rows, a FewShotClassifier its
   * support set plus the rows of each logits/predict call (so one row is the support set plus
   * that row). 'none': the raw embeddings (the behaviour before this option).
   */
  normalize?: 'episode' | 'none';
}

/**
 * A batch of few-shot episodes: a MetaBatch whose labels `ys`, `yq` are Int32Arrays in
 * [0, ways), where every class has at least one support example in every task.
 */
export interface Episodes extends MetaBatch {
  ways: number;
}

/** A validated learner spec. Internal. */
export interface FewShotSpec {
  algorithm: FewShotAlgorithm;
  embedding: { layers: number[]; activation: Activation };
  relation?: { layers: number[]; activation: Activation; classEmbedding: 'mean' | 'sum'; normalize: 'episode' | 'none' };
  inputDim: number;
  embedDim: number;
  /** parameters of the embedding (they come first), and of the whole learner */
  embeddingParams: number;
  nParams: number;
  native: NativeFewShotSpec;
}

function countParams(layers: readonly number[]): number {
  let n = 0;
  for (let l = 1; l < layers.length; l++) n += layers[l]! * (layers[l - 1]! + 1);
  return n;
}

function checkMlp(value: unknown, where: string, name: string, defaults?: MlpOptions): { layers: number[]; activation: Activation } {
  const o = checkObject(value ?? defaults, where, name);
  const layers = o.layers ?? defaults?.layers;
  if (!Array.isArray(layers) && !(layers instanceof Int32Array))
    fail('INVALID_ARGUMENT', where, `${name}.layers`, 'an array of layer widths such as [784, 64, 64]', layers);
  const widths = Array.from(layers as ArrayLike<number>);
  if (widths.length < 2 || widths.length > 1024)
    fail('INVALID_ARGUMENT', where, `${name}.layers`, 'an array of 2 to 1024 widths (input, hidden…, output)', layers);
  widths.forEach((w, i) => checkInt(w, where, `${name}.layers[${i}]`, 1, MAX_WIDTH));
  const activation = checkOneOf(o.activation ?? 'relu', where, `${name}.activation`, ACTIVATIONS);
  return { layers: widths, activation };
}

/** Validates { algorithm, embedding, relation } (the rest of the options is ignored here). */
export function checkFewShotSpec(value: unknown, where: string): FewShotSpec {
  const o = checkObject(value, where, 'options');
  const algorithm = checkOneOf(o.algorithm, where, 'options.algorithm', FEW_SHOT_ALGORITHMS);
  if (o.embedding === undefined) fail('INVALID_ARGUMENT', where, 'options.embedding', 'an object { layers, activation? }', undefined);
  const embedding = checkMlp(o.embedding, where, 'options.embedding');
  const inputDim = embedding.layers[0]!;
  const embedDim = embedding.layers[embedding.layers.length - 1]!;
  const embeddingParams = countParams(embedding.layers);
  let nParams = embeddingParams;
  const native: NativeFewShotSpec = {
    fsAlgorithm: FEW_SHOT_ALGORITHMS.indexOf(algorithm),
    embLayers: Int32Array.from(embedding.layers),
    embActivation: ACTIVATIONS.indexOf(embedding.activation),
  };
  let relation: FewShotSpec['relation'];
  if (algorithm === 'relation') {
    const r = checkMlp(o.relation, where, 'options.relation', { layers: [2 * embedDim, RELATION_HIDDEN, 1], activation: 'relu' });
    if (r.layers[0] !== 2 * embedDim || r.layers[r.layers.length - 1] !== 1)
      fail('SHAPE_MISMATCH', where, 'options.relation.layers', `widths from 2 × embedDim = ${2 * embedDim} to 1`, `[${r.layers.join(', ')}]`);
    const ro = (o.relation ?? {}) as Record<string, unknown>;
    const classEmbedding = checkOneOf(ro.classEmbedding ?? 'mean', where, 'options.relation.classEmbedding', ['mean', 'sum'] as const);
    const normalize = checkOneOf(ro.normalize ?? 'episode', where, 'options.relation.normalize', RELATION_NORMALIZE);
    relation = { ...r, classEmbedding, normalize };
    nParams += countParams(r.layers);
    Object.assign(native, {
      relLayers: Int32Array.from(r.layers),
      relActivation: ACTIVATIONS.indexOf(r.activation),
      relSum: classEmbedding === 'sum',
      relNormalize: normalize === 'episode',
    });
  } else if (o.relation !== undefined) {
    throw new MamlError('INVALID_ARGUMENT', `${where}: options.relation is only for algorithm 'relation', not '${algorithm}'`);
  }
  if (nParams > MAX_PARAMS) throw new MamlError('TOO_LARGE', `${where}: the learner has ${nParams} parameters; at most 2^31 are supported`);
  return { algorithm, embedding, ...(relation ? { relation } : {}), inputDim, embedDim, embeddingParams, nParams, native };
}

/** The embedding as a ModelSpec-shaped object for forward() (its loss is irrelevant). */
export function embeddingModel(spec: FewShotSpec) {
  return { layers: spec.embedding.layers, activation: spec.embedding.activation, loss: 'mse' as const };
}

/**
 * PyTorch's default nn.Linear initialization (uniform ±1/√fan_in) from one seeded stream:
 * the embedding's layers, then the relation module's. The embedding part equals
 * initParams(embedding, { seed }).
 */
export function initFewShotParams(spec: FewShotSpec, seed: number, precision: Precision = 'float32'): Float32Array | Float64Array {
  const out = precision === 'float64' ? new Float64Array(spec.nParams) : new Float32Array(spec.nParams);
  const rng = new Rng(seed);
  let off = 0;
  for (const layers of [spec.embedding.layers, spec.relation?.layers ?? []])
    for (let l = 1; l < layers.length; l++) {
      const bound = 1 / Math.sqrt(layers[l - 1]!);
      const end = off + layers[l]! * (layers[l - 1]! + 1);
      for (; off < end; off++) out[off] = rng.range(-bound, bound);
    }
  return out;
}

/** Labels [rows] in [0, ways) where each class of each task [off[t], off[t+1]) appears. */
export function checkClassesPresent(labels: Int32Array, offsets: Int32Array, ways: number, where: string, name: string): void {
  const seen = new Uint8Array(ways);
  for (let t = 0; t + 1 < offsets.length; t++) {
    seen.fill(0);
    for (let i = offsets[t]!; i < offsets[t + 1]!; i++) seen[labels[i]!] = 1;
    const missing = seen.indexOf(0);
    if (missing >= 0)
      throw new MamlError(
        'INVALID_ARGUMENT',
        `${where}: class ${missing} has no support example in task ${t} (${name}); every class of a ${ways}-way episode needs at least one`,
      );
  }
}

/** Validates episodes for a learner's input width; returns the arrays native code reads (no copies). */
export function checkEpisodes(value: unknown, spec: FewShotSpec, precision: Precision, where: string): NativeEpisodes {
  const e = checkObject(value, where, 'episodes');
  const ways = checkInt(e.ways, where, 'episodes.ways', 1, MAX_WIDTH);
  // a stand-in model: the input width, `ways` classes, integer labels
  const model: Model = {
    spec: { layers: [spec.inputDim, ways], activation: 'relu', loss: 'cross-entropy' },
    layers: Int32Array.of(spec.inputDim, ways),
    activation: 0,
    loss: 1,
    nParams: 0,
    dIn: spec.inputDim,
    dOut: ways,
    headBegin: 0,
  };
  const b = checkBatch(e, model, precision, where, true) as NativeEpisodes;
  checkClassesPresent(b.ysLabels, b.supportOffsets, ways, where, 'episodes.ys');
  return { ...b, ways };
}
