/**
 * fewShotLoss: a few-shot learner's episode loss, its exact gradient and accuracy at given
 * parameters, without a learner (like `gradient` in functional.ts). Float64Array parameters
 * and inputs run the double-precision core: that is what the finite-difference tests use.
 */
import { callNative } from '../native.js';
import type { Real } from '../native-types.js';
import { checkObject, checkOneOf, checkReal, precisionOf } from '../validate.js';
import { checkEpisodes, checkFewShotSpec, type Episodes, type FewShotAlgorithm, type MlpOptions, type RelationOptions } from './spec.js';

/** The learner settings fewShotLoss evaluates (as FewShotLearnerOptions), and which kernels run. */
export interface FewShotLossOptions {
  algorithm: FewShotAlgorithm;
  embedding: MlpOptions;
  relation?: RelationOptions;
  /**
   * 'fast' (default): the embedding on the vectorized float32 kernels; 'reference': the
   * plain-loop core that they are tested against. float64 always runs the reference.
   */
  kernel?: 'fast' | 'reference';
}

/** What fewShotLoss returns; `grad` has the precision of `params`. */
export interface FewShotLossResult<A extends Real = Real> {
  /** mean over tasks of each task's mean query loss */
  loss: number;
  /** its gradient with respect to params (embedding, then relation) */
  grad: A;
  /** mean over tasks of the query accuracy */
  accuracy: number;
  /** [tasks] each task's loss and accuracy */
  losses: Float64Array;
  accuracies: Float64Array;
}

/**
 * The meta-batch's loss, gradient and accuracy at `params`, in one native call.
 *
 * @example
 * const r = fewShotLoss({ algorithm: 'protonet', embedding: { layers: [2, 16, 8] } }, params, episodes);
 * r.loss; r.grad; r.accuracy;
 */
export function fewShotLoss<A extends Real>(options: FewShotLossOptions, params: A, episodes: Episodes): FewShotLossResult<A> {
  const where = 'fewShotLoss';
  const o = checkObject(options, where, 'options');
  const spec = checkFewShotSpec(o, where);
  const reference = o.kernel === undefined ? false : checkOneOf(o.kernel, where, 'options.kernel', ['fast', 'reference'] as const) === 'reference';
  const precision = precisionOf(params, where, 'params');
  checkReal(params, where, 'params', precision, spec.nParams, 'embedding then relation parameters');
  const e = checkEpisodes(episodes, spec, precision, where);
  return callNative((a) => a.fewshotGradient({ ...spec.native, ...e, params, reference })) as FewShotLossResult<A>;
}
