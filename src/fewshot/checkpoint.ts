/**
 * Few-shot learner checkpoints in the safetensors format (as src/checkpoint.ts): tensors
 * `embedding.layers.{l}.weight` [d_{l+1}, d_l] and `embedding.layers.{l}.bias` [d_{l+1}]
 * (PyTorch loads them into a module with an `embedding` holding its Linear layers in
 * `layers`), `relation.layers.{l}.…` likewise for Relation Networks; the algorithm, both MLP
 * specs (the relation module's with classEmbedding and normalize), the optimizer settings,
 * the step count and the seed are JSON strings in the metadata.
 */
import { corruptFile, metadataInt, metadataJson } from '../checkpoint.js';
import { MamlError } from '../errors.js';
import type { OptimizerOptions } from '../learner.js';
import { paramLayout } from '../model.js';
import { readSafetensorsFile, writeSafetensorsFile, type Tensor } from '../safetensors.js';
import { firstNonFinite } from '../validate.js';
import { checkFewShotSpec, type FewShotAlgorithm, type MlpOptions, type RelationOptions } from './spec.js';

export const FEW_SHOT_CHECKPOINT_FORMAT = 'maml-native-fewshot';
export const FEW_SHOT_CHECKPOINT_VERSION = '1';

export interface FewShotCheckpoint {
  algorithm: FewShotAlgorithm;
  embedding: MlpOptions;
  relation?: RelationOptions & MlpOptions;  // resolved: its layers are always there
  params: Float32Array;
  optimizer: OptimizerOptions;
  steps: number;
  seed: number;
}

/** [prefix, layers, offset of the MLP's first parameter] for each MLP of a learner. */
function parts(c: { embedding: MlpOptions; relation?: MlpOptions | undefined }) {
  const out: { prefix: string; layers: readonly number[]; base: number }[] = [{ prefix: 'embedding', layers: c.embedding.layers, base: 0 }];
  if (c.relation) {
    let p = 0;
    for (let l = 1; l < c.embedding.layers.length; l++) p += c.embedding.layers[l]! * (c.embedding.layers[l - 1]! + 1);
    out.push({ prefix: 'relation', layers: c.relation.layers, base: p });
  }
  return out;
}

export function writeFewShotCheckpoint(path: string, c: FewShotCheckpoint): void {
  if (typeof path !== 'string' || path.length === 0)
    throw new MamlError('INVALID_ARGUMENT', `save: path must be a non-empty string, got ${typeof path}`);
  const tensors: Record<string, Tensor> = {};
  for (const { prefix, layers, base } of parts(c))
    for (const l of paramLayout({ layers, activation: 'relu', loss: 'mse' })) {
      const w = base + l.weightOffset, b = base + l.biasOffset;
      tensors[`${prefix}.layers.${l.index}.weight`] = { dtype: 'F32', shape: [l.outputs, l.inputs], data: c.params.slice(w, w + l.outputs * l.inputs) };
      tensors[`${prefix}.layers.${l.index}.bias`] = { dtype: 'F32', shape: [l.outputs], data: c.params.slice(b, b + l.outputs) };
    }
  const metadata: Record<string, string> = {
    format: FEW_SHOT_CHECKPOINT_FORMAT,
    version: FEW_SHOT_CHECKPOINT_VERSION,
    algorithm: c.algorithm,
    embedding: JSON.stringify(c.embedding),
    optimizer: JSON.stringify(c.optimizer),
    step_count: String(c.steps),
    seed: String(c.seed),
  };
  if (c.relation) metadata.relation = JSON.stringify(c.relation);
  writeSafetensorsFile(path, tensors, metadata);
}

const KIND = 'few-shot checkpoint';
function corrupt(path: string, what: string): never {
  return corruptFile(KIND, path, what);
}
function json(path: string, meta: Record<string, string>, key: string): unknown {
  return metadataJson(KIND, path, meta, key);
}
function int(path: string, meta: Record<string, string>, key: string): number {
  return metadataInt(KIND, path, meta, key);
}

/**
 * The relation module's settings; files written before `normalize` existed were trained
 * without normalization, so a missing `normalize` reads as 'none' (not the new default).
 */
function relationSettings(path: string, meta: Record<string, string>): unknown {
  const r = json(path, meta, 'relation');
  if (typeof r === 'object' && r !== null && !Array.isArray(r) && !('normalize' in r)) return { ...r, normalize: 'none' };
  return r;
}

export function readFewShotCheckpoint(path: string): FewShotCheckpoint {
  if (typeof path !== 'string' || path.length === 0)
    throw new MamlError('INVALID_ARGUMENT', `load: path must be a non-empty string, got ${typeof path}`);
  const file = readSafetensorsFile(path);
  const meta = file.metadata;
  if (meta.format !== FEW_SHOT_CHECKPOINT_FORMAT)
    corrupt(path, `metadata 'format' is ${JSON.stringify(meta.format)}, expected '${FEW_SHOT_CHECKPOINT_FORMAT}'`);
  if (meta.version !== FEW_SHOT_CHECKPOINT_VERSION)
    throw new MamlError('UNSUPPORTED', `${path}: checkpoint version ${meta.version} is not supported by this version (${FEW_SHOT_CHECKPOINT_VERSION})`);
  const settings = {
    algorithm: meta.algorithm,
    embedding: json(path, meta, 'embedding'),
    ...(meta.relation !== undefined ? { relation: relationSettings(path, meta) } : {}),
  };
  let spec;
  try {
    spec = checkFewShotSpec(settings, 'load');
  } catch (err) {
    if (err instanceof MamlError) corrupt(path, `the settings are invalid (${err.message})`);
    throw err;
  }
  // the settings alone could ask for ~2^31 parameters: count what the file holds first
  let held = 0;
  for (const t of Object.values(file.tensors)) held += t.data.length;
  if (held !== spec.nParams) corrupt(path, `its tensors hold ${held} values, but its settings need ${spec.nParams} parameters`);
  const params = new Float32Array(spec.nParams);
  const expected = new Set<string>();
  for (const { prefix, layers, base } of parts(spec))
    for (const l of paramLayout({ layers, activation: 'relu', loss: 'mse' }))
      for (const [name, shape, offset] of [
        [`${prefix}.layers.${l.index}.weight`, [l.outputs, l.inputs], base + l.weightOffset],
        [`${prefix}.layers.${l.index}.bias`, [l.outputs], base + l.biasOffset],
      ] as const) {
        expected.add(name);
        const t = file.tensors[name];
        if (!t) corrupt(path, `tensor '${name}' is missing`);
        if (t.dtype !== 'F32') corrupt(path, `tensor '${name}' is ${t.dtype}, expected F32`);
        if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
          corrupt(path, `tensor '${name}' has shape [${t.shape}], expected [${shape}]`);
        const bad = firstNonFinite(t.data);
        if (bad >= 0) corrupt(path, `tensor '${name}' holds a non-finite value at ${bad}`);
        params.set(t.data, offset);
      }
  for (const name of Object.keys(file.tensors)) if (!expected.has(name)) corrupt(path, `unexpected tensor '${name}'`);
  const optimizer = json(path, meta, 'optimizer');
  if (typeof optimizer !== 'object' || optimizer === null || Array.isArray(optimizer)) corrupt(path, `metadata 'optimizer' must be an object`);
  return {
    algorithm: spec.algorithm,
    embedding: spec.embedding,
    ...(spec.relation ? { relation: spec.relation } : {}),
    params,
    optimizer: optimizer as OptimizerOptions,
    steps: int(path, meta, 'step_count'),
    seed: int(path, meta, 'seed'),
  };
}
