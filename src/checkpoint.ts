/**
 * Learner checkpoints in the safetensors format (DESIGN.md §7). Tensors are named
 * `layers.{l}.weight` [d_{l+1}, d_l] and `layers.{l}.bias` [d_{l+1}], so that PyTorch loads them
 * into a module holding its Linear layers in `layers`; the model spec, the algorithm, the
 * inner rates and the optimizer settings are JSON strings in the header's metadata.
 */
import { MamlError } from './errors.js';
import type { Algorithm, RateShape } from './inner.js';
import type { OptimizerOptions } from './learner.js';
import { checkModel, paramLayout, type ModelSpec } from './model.js';
import { readSafetensorsFile, writeSafetensorsFile, type Tensor } from './safetensors.js';
import { firstNonFinite } from './validate.js';

export const CHECKPOINT_FORMAT = 'maml-native';
export const CHECKPOINT_VERSION = '1';

export interface CheckpointData {
  model: ModelSpec;
  params: Float32Array;
  algorithm: Algorithm;
  innerSteps: number;
  innerLr: Float32Array;
  innerLrShape: RateShape;
  learnInnerLr: boolean;
  stepWeights: number[];
  optimizer: OptimizerOptions;
  stepCount: number;
  seed: number;
}

export function writeCheckpoint(path: string, c: CheckpointData): void {
  if (typeof path !== 'string' || path.length === 0)
    throw new MamlError('INVALID_ARGUMENT', `save: path must be a non-empty string, got ${typeof path}`);
  const tensors: Record<string, Tensor> = {};
  for (const l of paramLayout(c.model)) {
    tensors[`layers.${l.index}.weight`] = {
      dtype: 'F32',
      shape: [l.outputs, l.inputs],
      data: c.params.slice(l.weightOffset, l.weightOffset + l.outputs * l.inputs),
    };
    tensors[`layers.${l.index}.bias`] = { dtype: 'F32', shape: [l.outputs], data: c.params.slice(l.biasOffset, l.biasOffset + l.outputs) };
  }
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    model: JSON.stringify({ layers: Array.from(c.model.layers), activation: c.model.activation, loss: c.model.loss }),
    algorithm: c.algorithm,
    inner_steps: String(c.innerSteps),
    inner_lr: JSON.stringify(Array.from(c.innerLr)),
    inner_lr_shape: c.innerLrShape,
    learn_inner_lr: String(c.learnInnerLr),
    step_weights: JSON.stringify(c.stepWeights),
    optimizer: JSON.stringify(c.optimizer),
    step_count: String(c.stepCount),
    seed: String(c.seed),
  };
  writeSafetensorsFile(path, tensors, metadata);
}

/** A CORRUPT_FILE error naming the file and the kind of file it should have been. */
export function corruptFile(kind: string, path: string, what: string): never {
  throw new MamlError('CORRUPT_FILE', `${path}: not a valid maml-native ${kind}: ${what}`);
}

/** A metadata entry that holds JSON, parsed; CORRUPT_FILE when missing or not JSON. */
export function metadataJson(kind: string, path: string, meta: Record<string, string>, key: string): unknown {
  const text = meta[key];
  if (text === undefined) corruptFile(kind, path, `the metadata has no '${key}'`);
  try {
    return JSON.parse(text);
  } catch {
    return corruptFile(kind, path, `metadata '${key}' is not valid JSON`);
  }
}

/** A metadata entry that holds a non-negative integer; CORRUPT_FILE otherwise. */
export function metadataInt(kind: string, path: string, meta: Record<string, string>, key: string): number {
  const v = Number(meta[key]);
  if (meta[key] === undefined || !Number.isInteger(v) || v < 0) corruptFile(kind, path, `metadata '${key}' must be a non-negative integer`);
  return v;
}

const KIND = 'checkpoint';
function corrupt(path: string, what: string): never {
  return corruptFile(KIND, path, what);
}
function json(path: string, meta: Record<string, string>, key: string): unknown {
  return metadataJson(KIND, path, meta, key);
}
function int(path: string, meta: Record<string, string>, key: string): number {
  return metadataInt(KIND, path, meta, key);
}

export function readCheckpoint(path: string): CheckpointData {
  if (typeof path !== 'string' || path.length === 0)
    throw new MamlError('INVALID_ARGUMENT', `load: path must be a non-empty string, got ${typeof path}`);
  const file = readSafetensorsFile(path);
  const meta = file.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) corrupt(path, `metadata 'format' is ${JSON.stringify(meta.format)}, expected '${CHECKPOINT_FORMAT}'`);
  if (meta.version !== CHECKPOINT_VERSION)
    throw new MamlError('UNSUPPORTED', `${path}: checkpoint version ${meta.version} is not supported by this version (${CHECKPOINT_VERSION})`);
  let model: ModelSpec;
  try {
    model = checkModel(json(path, meta, 'model'), 'load').spec;
  } catch (err) {
    if (err instanceof MamlError && err.code !== 'CORRUPT_FILE') corrupt(path, `metadata 'model' is invalid (${err.message})`);
    throw err;
  }
  const layout = paramLayout(model);
  const last = layout[layout.length - 1]!;
  // Every tensor is checked against the model before the parameters are allocated: a forged
  // 'model' cannot make us allocate more than the file holds.
  const expected = new Set<string>();
  const placed: Array<[Float32Array, number]> = [];
  for (const l of layout) {
    for (const [name, shape, offset] of [
      [`layers.${l.index}.weight`, [l.outputs, l.inputs], l.weightOffset],
      [`layers.${l.index}.bias`, [l.outputs], l.biasOffset],
    ] as const) {
      expected.add(name);
      const t = file.tensors[name];
      if (!t) corrupt(path, `tensor '${name}' is missing`);
      if (t.dtype !== 'F32') corrupt(path, `tensor '${name}' is ${t.dtype}, expected F32`);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
        corrupt(path, `tensor '${name}' has shape [${t.shape}], expected [${shape}] for model layers [${model.layers}]`);
      const bad = firstNonFinite(t.data);
      if (bad >= 0) corrupt(path, `tensor '${name}' holds a non-finite value at ${bad}`);
      placed.push([t.data as Float32Array, offset]);
    }
  }
  const params = new Float32Array(last.biasOffset + last.outputs);
  for (const [data, offset] of placed) params.set(data, offset);
  for (const name of Object.keys(file.tensors)) if (!expected.has(name)) corrupt(path, `unexpected tensor '${name}'`);
  const innerLrRaw = json(path, meta, 'inner_lr');
  if (!Array.isArray(innerLrRaw) || innerLrRaw.length === 0 || innerLrRaw.some((x) => typeof x !== 'number' || !Number.isFinite(x)))
    corrupt(path, `metadata 'inner_lr' must be a non-empty array of finite numbers`);
  const stepWeights = json(path, meta, 'step_weights');
  if (!Array.isArray(stepWeights) || stepWeights.some((x) => typeof x !== 'number' || !Number.isFinite(x)))
    corrupt(path, `metadata 'step_weights' must be an array of finite numbers`);
  const optimizer = json(path, meta, 'optimizer');
  if (typeof optimizer !== 'object' || optimizer === null || Array.isArray(optimizer)) corrupt(path, `metadata 'optimizer' must be an object`);
  const shape = meta.inner_lr_shape;
  if (shape !== 'per-step' && shape !== 'per-param' && shape !== 'per-step-param')
    corrupt(path, `metadata 'inner_lr_shape' is ${JSON.stringify(shape)}`);
  if (meta.learn_inner_lr !== 'true' && meta.learn_inner_lr !== 'false') corrupt(path, `metadata 'learn_inner_lr' must be 'true' or 'false'`);
  return {
    model,
    params,
    algorithm: meta.algorithm as Algorithm,
    innerSteps: int(path, meta, 'inner_steps'),
    innerLr: Float32Array.from(innerLrRaw as number[]),
    innerLrShape: shape,
    learnInnerLr: meta.learn_inner_lr === 'true',
    stepWeights: stepWeights as number[],
    optimizer: optimizer as OptimizerOptions,
    stepCount: int(path, meta, 'step_count'),
    seed: int(path, meta, 'seed'),
  };
}
