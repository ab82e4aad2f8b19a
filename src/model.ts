/**
 * The model spec, the flat parameter layout and PyTorch's default initialization.
 *
 * Parameters are one flat vector: for each layer l in order, W_l as [d_l, d_{l-1}] row-major
 * (PyTorch's `nn.Linear.weight`), then b_l [d_l]. Everything per parameter (gradients, Adam
 * moments, Meta-SGD rates) uses this layout.
 */
import { MamlError } from './errors.js';
import { Rng } from './rng.js';
import { checkInt, checkObject, checkOneOf, fail, type Precision } from './validate.js';

export type Activation = 'relu' | 'tanh';
export type LossName = 'mse' | 'cross-entropy' | 'binary-cross-entropy';

/** An MLP: widths `layers = [d0, …, dL]`, hidden `activation`, a linear last layer, a `loss`. */
export interface ModelSpec {
  layers: readonly number[];
  activation: Activation;
  loss: LossName;
}

export const ACTIVATIONS: readonly Activation[] = ['relu', 'tanh'];
export const LOSSES: readonly LossName[] = ['mse', 'cross-entropy', 'binary-cross-entropy'];

/** Widths above this are refused (a layer would not fit in memory). */
export const MAX_WIDTH = 1 << 24;
/** Parameter vectors above this are refused. */
export const MAX_PARAMS = 2 ** 31;

/** A validated model with the numbers native code needs. Internal. */
export interface Model {
  spec: ModelSpec;
  layers: Int32Array;
  activation: number;
  loss: number;
  nParams: number;
  dIn: number;
  dOut: number;
  /** offset of the last layer's weights: ANIL adapts [headBegin, nParams). */
  headBegin: number;
}

const cache = new WeakMap<object, Model>();

/** Validates a model spec (cached per object). */
export function checkModel(value: unknown, where: string): Model {
  if (typeof value === 'object' && value !== null) {
    const hit = cache.get(value);
    if (hit && sameSpec(hit.spec, value as ModelSpec)) return hit;
  }
  const o = checkObject(value, where, 'model');
  const layers = o.layers;
  if (!Array.isArray(layers) && !(layers instanceof Int32Array))
    fail('INVALID_ARGUMENT', where, 'model.layers', 'an array of layer widths such as [1, 40, 40, 1]', layers);
  const widths = Array.from(layers as ArrayLike<number>);
  if (widths.length < 2 || widths.length > 1024)
    fail('INVALID_ARGUMENT', where, 'model.layers', 'an array of 2 to 1024 widths (input, hidden…, output)', layers);
  widths.forEach((w, i) => checkInt(w, where, `model.layers[${i}]`, 1, MAX_WIDTH));
  const activation = checkOneOf(o.activation, where, 'model.activation', ACTIVATIONS);
  const loss = checkOneOf(o.loss, where, 'model.loss', LOSSES);
  const dOut = widths[widths.length - 1]!;
  if (loss === 'cross-entropy' && dOut < 2)
    fail('INVALID_ARGUMENT', where, 'model.layers', 'a last width of at least 2 (classes) for cross-entropy', dOut);
  let nParams = 0;
  for (let l = 1; l < widths.length; l++) nParams += widths[l]! * (widths[l - 1]! + 1);
  if (nParams > MAX_PARAMS)
    throw new MamlError('TOO_LARGE', `${where}: the model has ${nParams} parameters; at most 2^31 are supported`);
  const spec: ModelSpec = { layers: widths, activation, loss };
  const model: Model = {
    spec,
    layers: Int32Array.from(widths),
    activation: ACTIVATIONS.indexOf(activation),
    loss: LOSSES.indexOf(loss),
    nParams,
    dIn: widths[0]!,
    dOut,
    headBegin: nParams - dOut * (widths[widths.length - 2]! + 1),
  };
  if (typeof value === 'object' && value !== null) cache.set(value, model);
  return model;
}

function sameSpec(a: ModelSpec, b: ModelSpec): boolean {
  if (a.activation !== b.activation || a.loss !== b.loss || !b.layers || a.layers.length !== b.layers.length) return false;
  for (let i = 0; i < a.layers.length; i++) if (a.layers[i] !== b.layers[i]) return false;
  return true;
}

/** Number of parameters P = Σ d_l (d_{l-1} + 1). */
export function paramCount(model: ModelSpec): number {
  return checkModel(model, 'paramCount').nParams;
}

/** Where each layer's weight and bias live in the flat vector. */
export interface LayerSlice {
  /** 0-based layer index (PyTorch's `layers.{index}`). */
  index: number;
  inputs: number;
  outputs: number;
  weightOffset: number;
  biasOffset: number;
}

/** The offsets of W_l [d_l, d_{l-1}] and b_l [d_l] for every layer. */
export function paramLayout(model: ModelSpec): LayerSlice[] {
  const m = checkModel(model, 'paramLayout');
  const out: LayerSlice[] = [];
  let off = 0;
  for (let l = 1; l < m.layers.length; l++) {
    const inputs = m.layers[l - 1]!;
    const outputs = m.layers[l]!;
    out.push({ index: l - 1, inputs, outputs, weightOffset: off, biasOffset: off + inputs * outputs });
    off += outputs * (inputs + 1);
  }
  return out;
}

/**
 * PyTorch's default `nn.Linear` initialization from a seeded generator: weights and biases
 * uniform in ±1/√fan_in. The same seed gives the same vector on every machine.
 *
 * @example
 * const params = initParams({ layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' }, { seed: 1 });
 */
export function initParams(model: ModelSpec, options: { seed?: number; precision: 'float64' }): Float64Array;
export function initParams(model: ModelSpec, options?: { seed?: number; precision?: 'float32' }): Float32Array;
export function initParams(model: ModelSpec, options?: { seed?: number; precision?: Precision }): Float32Array | Float64Array;
export function initParams(
  model: ModelSpec,
  options: { seed?: number; precision?: Precision } = {},
): Float32Array | Float64Array {
  const where = 'initParams';
  const m = checkModel(model, where);
  const o = checkObject(options, where, 'options');
  const seed = o.seed === undefined ? 0 : checkInt(o.seed, where, 'options.seed', 0, 2 ** 32 - 1);
  const precision = o.precision === undefined ? 'float32' : checkOneOf(o.precision, where, 'options.precision', ['float32', 'float64'] as const);
  const out = precision === 'float64' ? new Float64Array(m.nParams) : new Float32Array(m.nParams);
  const rng = new Rng(seed);
  for (const layer of paramLayout(m.spec)) {
    const bound = 1 / Math.sqrt(layer.inputs);
    const end = layer.biasOffset + layer.outputs;
    for (let i = layer.weightOffset; i < end; i++) out[i] = rng.range(-bound, bound);
  }
  return out;
}
