/**
 * Education: per-student models from a few answers (issue #5). Re-exports only.
 */
export { simulateStudents, simulatorConfig, SIMULATOR_DEFAULTS, type SimulatorConfig, type SimulatorTruth, type SimulatedData } from './simulator.js';
export { loadAssistmentsCsv, writeAssistmentsCsv, CsvFormatError, type LoadOptions, type LoadStats, type LoadedLog } from './assistments.js';
export { studentHistories, splitStudents, hashUnit, GROUP_NAMES, type ResponseLog, type StudentHistory, type SplitOptions, type Group } from './log.js';
export { StudentEncoder, type EncoderState, type Answer } from './encoder.js';
export { fitIrt2pl, mapAbility, type IrtItems } from './irt.js';
export { encodeStudents, cutStudents, studentsWithMoreThan, studentTaskSampler, type EncodedStudents, type StudentBatch } from './tasks.js';
export { auc, accuracy, logLoss, metrics, rank, bootstrapMetrics, type Metrics, type Estimate, type BootstrapResult } from './metrics.js';
export { bayesPredictor, type BayesPredictor } from './bayes.js';
export { StudentModel, scaleInnerRates, bundlePath, type StudentModelSettings } from './model.js';
export { StudentService, type StudentServiceOptions } from './service.js';
export {
  loadStudentData,
  splitData,
  trainStudents,
  evaluateStudents,
  formatEvaluation,
  qualityBar,
  STUDENT_DEFAULTS,
  METHODS,
  METHOD_LABELS,
  type DataSource,
  type StudentData,
  type StudentTrainOptions,
  type TrainedStudents,
  type StudentEvaluation,
  type EvaluationRow,
  type Method,
} from './experiment.js';
