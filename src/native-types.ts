/**
 * The shape of the native addon's export table (native/addon.cc). Internal: the public API
 * wraps every function with validation and error mapping. Codes: activation relu = 0,
 * tanh = 1; loss mse = 0, cross-entropy = 1, binary-cross-entropy = 2; algorithm maml = 0,
 * fomaml = 1, reptile = 2, meta-sgd = 3, anil = 4; optimizer adam = 0, sgd = 1.
 */
export type Real = Float32Array | Float64Array;

export interface NativeSpec {
  layers: Int32Array;
  activation: number;
  loss: number;
}

export interface NativeBatch {
  tasks: number;
  supportOffsets: Int32Array;
  queryOffsets?: Int32Array;
  xs: Real;
  ys?: Real;
  ysLabels?: Int32Array;
  xq?: Real;
  yq?: Real;
  yqLabels?: Int32Array;
}

export interface NativeInner {
  algorithm: number;
  steps: number;
  weights: Float64Array;
  rateStepStride: number;
  rateParamStride: number;
  wantRateGrad?: boolean;
  /** run the plain-loop core instead of the fast float32 kernels */
  reference?: boolean;
}

export interface NativeOptim {
  optKind: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  clipNorm: number;
}

export interface DeviceReport {
  cudaCompiled: boolean;
  deviceCount: number;
  devices: { name: string; computeCapability: string; memoryBytes: number }[];
  runtimeVersion?: number;
  driverVersion?: number;
  error?: { code: string; message: string };
}

export interface BuildReport {
  precision: string[];
  cuda: boolean;
  compiler: string;
  threads: number;
  defaultThreads: number;
  /** the instruction set of the fast kernels on this machine: 'avx512' | 'avx2' | 'baseline' */
  isa: string;
}

export interface NativeAddon {
  forward(o: NativeSpec & { params: Real; x: Real; n: number; reference?: boolean }): Real;
  lossGrad(o: NativeSpec & { params: Real; x: Real; n: number; y?: Real; labels?: Int32Array }): { loss: number; grad: Real };
  hvp(o: NativeSpec & { params: Real; x: Real; n: number; y?: Real; labels?: Int32Array; v: Real }): {
    loss: number;
    grad: Real;
    hvp: Real;
  };
  metaGradient(o: NativeSpec & NativeInner & NativeBatch & { params: Real; rates: Real }): {
    loss: number;
    grad: Real;
    rateGrad?: Real;
  };
  metaStep(o: NativeSpec & NativeInner & NativeOptim & NativeBatch & MetaStepState): { loss: number; gradNorm: number };
  metaStepAsync(o: NativeSpec & NativeInner & NativeOptim & NativeBatch & MetaStepState): Promise<{ loss: number; gradNorm: number }>;
  /**
   * metaStep with packed arguments (a few Node-API calls instead of ~40 property reads):
   * numbers [PackedSlot.count] in PackedSlot order; ys / yq hold the labels for cross-entropy;
   * the loss and the gradient norm are written into result [2].
   */
  metaStepPacked(
    numbers: Float64Array,
    layers: Int32Array,
    weights: Float64Array,
    rates: Real | undefined,
    state: Real,
    m: Real,
    v: Real,
    supportOffsets: Int32Array,
    queryOffsets: Int32Array | undefined,
    xs: Real,
    ys: Real | Int32Array | undefined,
    xq: Real | undefined,
    yq: Real | Int32Array | undefined,
    result: Float64Array,
  ): void;
  adaptBatch(o: NativeSpec & NativeInner & NativeBatch & { params: Real; rates: Real }): Real;
  adaptBatchAsync(o: NativeSpec & NativeInner & NativeBatch & { params: Real; rates: Real }): Promise<Real>;
  setThreads(n: number): void;
  getThreads(): number;
  deviceInfo(): DeviceReport;
  buildInfo(): BuildReport;
  /** bytes in use by the C allocator (glibc), or -1 where unknown: for leak tests */
  mallocInUse(): number;
  // metric-based few-shot learners (native/binding/fewshot_ops.cc; checked in src/fewshot/spec.ts)
  fewshotGradient(o: NativeFewShotSpec & NativeEpisodes & { params: Real }): FewShotNativeResult & { grad: Real };
  fewshotEvaluate(o: NativeFewShotSpec & NativeEpisodes & { params: Real }): FewShotNativeResult;
  fewshotEvaluateAsync(o: NativeFewShotSpec & NativeEpisodes & { params: Real }): Promise<FewShotNativeResult>;
  fewshotStep(o: NativeFewShotSpec & NativeEpisodes & NativeOptim & FewShotStepState): { loss: number; accuracy: number; gradNorm: number };
  fewshotStepAsync(
    o: NativeFewShotSpec & NativeEpisodes & NativeOptim & FewShotStepState,
  ): Promise<{ loss: number; accuracy: number; gradNorm: number }>;
  /** logits [n, ways] of x [n, d0] against support embeddings supportEmb [ns, D] */
  fewshotLogits(
    o: NativeFewShotSpec & { params: Real; ways: number; ns: number; supportEmb: Real; supportLabels: Int32Array; x: Real; n: number },
  ): Real;
}

/** Slots of metaStepPacked's numbers: the order of native/binding/args.hpp's `slot` enum. */
export enum PackedSlot {
  algorithm,
  steps,
  activation,
  loss,
  optKind,
  lr,
  beta1,
  beta2,
  eps,
  weightDecay,
  momentum,
  dampening,
  nesterov,
  clipNorm,
  learnRates,
  reference,
  rateStepStride,
  rateParamStride,
  t,
  tasks,
  wantRateGrad,
  count,
}

/** Learner state handed to metaStep: updated in place. */
export interface MetaStepState {
  /** [P + R]: parameters, then the learned inner rates (R = 0 when the rates are fixed). */
  state: Real;
  m: Real;
  v: Real;
  /** 1-based optimizer step number of this update. */
  t: number;
  learnRates: boolean;
  /** the fixed rates when learnRates is false */
  rates?: Real;
}

/** Few-shot learner settings as native code reads them: algorithm protonet = 0, matching = 1, relation = 2. */
export interface NativeFewShotSpec {
  fsAlgorithm: number;
  embLayers: Int32Array;
  embActivation: number;
  relLayers?: Int32Array;
  relActivation?: number;
  /** relation: class embedding = sum of the support embeddings (else their mean) */
  relSum?: boolean;
  /** relation: standardize the episode's embeddings per dimension first (absent: false) */
  relNormalize?: boolean;
  /** run the plain-loop core instead of the fast float32 embedding kernels */
  reference?: boolean;
}

/** Few-shot episodes: a batch with labels in [0, ways) and every class in every task's support set. */
export interface NativeEpisodes extends NativeBatch {
  ways: number;
  queryOffsets: Int32Array;
  ysLabels: Int32Array;
  yqLabels: Int32Array;
}

export interface FewShotNativeResult {
  loss: number;
  accuracy: number;
  /** per task */
  losses: Float64Array;
  accuracies: Float64Array;
}

/** A few-shot learner's parameters [P] (updated in place) and Adam moments. */
export interface FewShotStepState {
  state: Real;
  m: Real;
  v: Real;
  /** 1-based optimizer step number of this update. */
  t: number;
}

/** A CUDA learner's state on the GPU (native/binding/cuda_ops.cc); opaque to TypeScript. */
export type CudaLearnerHandle = { readonly __brand: 'CudaLearnerHandle' };

/**
 * Exports of the CUDA-enabled binary only (maml_cuda.node), plus the host-compiled CUDA task
 * kernel that both binaries export for tests (metaGradientCudaHost, adaptBatchCudaHost).
 */
export interface CudaAddon extends NativeAddon {
  cudaLearnerCreate(o: NativeSpec & NativeInner & NativeOptim & { state: Float32Array; learnRates: boolean; rates?: Float32Array }): CudaLearnerHandle;
  cudaLearnerStep(h: CudaLearnerHandle, o: NativeBatch & { t: number; weights?: Float64Array }): { loss: number; gradNorm: number; memory: string };
  /** The step on a worker thread (the batch copied first); the handle is busy until it settles. */
  cudaLearnerStepAsync(h: CudaLearnerHandle, o: NativeBatch & { t: number; weights?: Float64Array }): Promise<{ loss: number; gradNorm: number; memory: string }>;
  /** Frees the device state now; later calls throw DISPOSED; a second dispose does nothing. */
  cudaLearnerDispose(h: CudaLearnerHandle): void;
  cudaLearnerGetState(h: CudaLearnerHandle): Float32Array;
  cudaLearnerSetState(h: CudaLearnerHandle, state: Float32Array): void;
  cudaLearnerAdapt(h: CudaLearnerHandle, o: NativeBatch & { steps: number; rates: Float32Array; rateStepStride: number; rateParamStride: number }): Float32Array;
  /** The adaptation on a worker thread (support sets and rates copied first); busy until it settles. */
  cudaLearnerAdaptAsync(h: CudaLearnerHandle, o: NativeBatch & { steps: number; rates: Float32Array; rateStepStride: number; rateParamStride: number }): Promise<Float32Array>;
  cudaMetaGradient(o: Parameters<NativeAddon['metaGradient']>[0]): { loss: number; grad: Float32Array; rateGrad?: Float32Array; memory: string };
  metaGradientCudaHost(o: Parameters<NativeAddon['metaGradient']>[0]): { loss: number; grad: Real; rateGrad?: Real };
  adaptBatchCudaHost(o: Parameters<NativeAddon['adaptBatch']>[0]): Real;
}
