/**
 * maml-native: exact MAML, first-order MAML, Reptile, Meta-SGD, ANIL and the MAML++
 * refinements on hand-written native kernels. This file only re-exports.
 */
export { MamlError, ERROR_CODES, type ErrorCode } from './errors.js';
export {
  initParams,
  paramCount,
  paramLayout,
  type ModelSpec,
  type Activation,
  type LossName,
  type LayerSlice,
} from './model.js';
export { forward, gradient, hvp, metaGradient, type MetaGradientOptions, type MetaGradientResult } from './functional.js';
export { ALGORITHMS, type Algorithm, type MetaBatch, type InnerLr, type InnerOptions, type RateShape } from './inner.js';
export {
  MetaLearner,
  AdaptedModel,
  type MetaLearnerOptions,
  type OptimizerOptions,
  type SupportSet,
  type AdaptOptions,
} from './learner.js';
export { sinusoid, type SinusoidOptions, type SinusoidSampler, type SineBatch } from './sinusoid.js';
export { setThreads, getThreads } from './native.js';
export { backendInfo, resolveDevice, type BackendInfo, type DeviceRequest } from './loader.js';
export { Rng } from './rng.js';
export type { Precision } from './validate.js';
// Education: per-student models (simulator, ASSISTments loader, encoder, evaluation, serving)
export {
  simulateStudents, SIMULATOR_DEFAULTS, loadAssistmentsCsv, writeAssistmentsCsv, CsvFormatError,
  studentHistories, splitStudents, StudentEncoder, fitIrt2pl, mapAbility, encodeStudents, cutStudents,
  auc, accuracy, logLoss, bootstrapMetrics, bayesPredictor, StudentModel, StudentService,
  loadStudentData, trainStudents, evaluateStudents, formatEvaluation, qualityBar, STUDENT_DEFAULTS,
  type SimulatorConfig, type SimulatorTruth, type SimulatedData, type LoadOptions, type LoadStats, type LoadedLog,
  type ResponseLog, type StudentHistory, type EncoderState, type Answer, type Estimate, type StudentModelSettings,
  type StudentServiceOptions, type DataSource, type StudentData, type StudentTrainOptions, type StudentEvaluation,
} from './education/index.js';
// Few-shot classification: N-way K-shot episodes and disjoint class splits
export { fewShotSampler, splitClasses, type FewShotSampler, type FewShotSamplerOptions, type SampledEpisodes, type ClassSplit } from './fewshot/sampler.js';
// Few-shot classification: Prototypical, Matching and Relation Networks
export {
  FewShotLearner, FewShotClassifier,
  type FewShotLearnerOptions, type FewShotStepResult, type FewShotEvaluation, type FewShotSupport,
} from './fewshot/learner.js';
export { fewShotLoss, type FewShotLossOptions, type FewShotLossResult } from './fewshot/functional.js';
export { FEW_SHOT_ALGORITHMS, type FewShotAlgorithm, type Episodes, type MlpOptions, type RelationOptions } from './fewshot/spec.js';
// Few-shot baselines and the glyph benchmark (characters rendered from hanzi-writer-data, loaded lazily)
export {
  nearestNeighbour, pretrainClassifier, fineTuneEvaluate, bodyFeatures, meanCi95,
  type EpisodeArrays, type PretrainOptions, type PretrainedBody, type FineTuneOptions,
} from './fewshot/baselines.js';
export { loadHanziCharacters, hanziDataDir, HANZI_PACKAGE, type HanziCharacter, type HanziLoadOptions } from './glyphs/hanzi.js';
export { renderGlyph, rotateImage, DISTORTION_DEFAULTS, type Distortion } from './glyphs/render.js';
export { glyphDataset, type GlyphDataset, type GlyphDatasetOptions, type GlyphClass } from './glyphs/dataset.js';
export {
  trainGlyphs, evaluateGlyphs, episodeAccuracies, glyphDefaults, saveGlyphModel, loadGlyphModel, GLYPH_ALGORITHMS, GLYPH_HIDDEN,
  type GlyphAlgorithm, type GlyphTrainOptions, type GlyphModel, type GlyphEvalOptions, type GlyphCheckpointInfo,
} from './glyphs/experiment.js';
export { runComparison, formatComparison, GLYPH_SETTINGS, PRETRAIN_DEFAULTS, type CompareOptions, type CompareRow } from './glyphs/compare.js';
