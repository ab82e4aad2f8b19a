/**
 * The CUDA backend of MetaLearner: parameters, learned rates and optimizer moments live on the
 * GPU (native/cuda/cuda_learner.cu). A step sends the batch and reads back the loss and the
 * gradient norm; the state comes back only when asked (`pull`), which MetaLearner does lazily
 * before anything reads its parameters. Every native error becomes a MamlError with its code.
 */
import { fromNative } from './errors.js';
import { loadCudaKernels } from './loader.js';
import type { CudaAddon, CudaLearnerHandle, NativeBatch, NativeInner, NativeOptim, NativeSpec } from './native-types.js';

export interface CudaCreateArgs extends NativeSpec, NativeInner, NativeOptim {
  /** [P + R] the initial parameters, then the learned rates (R = 0 when fixed) */
  state: Float32Array;
  learnRates: boolean;
  /** the fixed rates (when learnRates is false) */
  rates?: Float32Array;
}

export interface CudaAdaptArgs extends NativeBatch {
  steps: number;
  rates: Float32Array;
  rateStepStride: number;
  rateParamStride: number;
}

function call<R>(fn: () => R): R {
  try {
    return fn();
  } catch (err) {
    throw fromNative(err);
  }
}

export class CudaBackend {
  readonly #addon: CudaAddon;
  readonly #handle: CudaLearnerHandle;
  /** where the last step kept each task's working memory: 'shared', 'global', or 'cluster' (MAML_CUDA_KERNEL=4: the shared memory of a cluster of blocks) */
  memory = 'none';

  /** @throws MamlError NO_DEVICE / UNSUPPORTED (no usable device), OUT_OF_MEMORY, CUDA_ERROR */
  constructor(args: CudaCreateArgs) {
    this.#addon = loadCudaKernels();
    this.#handle = call(() => this.#addon.cudaLearnerCreate(args));
  }

  /**
   * One meta-step on the device with optimizer step number t (1-based); `weights` (the
   * multi-step loss weights w_0..w_S) only when they changed since the last step.
   */
  step(batch: NativeBatch, t: number, weights?: Float64Array): { loss: number; gradNorm: number } {
    const r = call(() => this.#addon.cudaLearnerStep(this.#handle, { ...batch, t, ...(weights ? { weights } : {}) }));
    this.memory = r.memory;
    return { loss: r.loss, gradNorm: r.gradNorm };
  }

  /**
   * step() on a worker thread: the batch is copied before this returns, the device step runs
   * off the event loop. The caller keeps calls in order (MetaLearner's SerialQueue); until the
   * promise settles, every other call on this backend throws BUSY.
   */
  async stepAsync(batch: NativeBatch, t: number, weights?: Float64Array): Promise<{ loss: number; gradNorm: number }> {
    const stack = new Error().stack;
    let r: { loss: number; gradNorm: number; memory: string };
    try {
      r = await this.#addon.cudaLearnerStepAsync(this.#handle, { ...batch, t, ...(weights ? { weights } : {}) });
    } catch (err) {
      throw fromNative(err, stack);
    }
    this.memory = r.memory;
    return { loss: r.loss, gradNorm: r.gradNorm };
  }

  /** Frees the device memory now (not at garbage collection); a second call does nothing. */
  dispose(): void {
    call(() => this.#addon.cudaLearnerDispose(this.#handle));
  }

  /** A copy of the device state [P + R]. */
  pull(): Float32Array {
    return call(() => this.#addon.cudaLearnerGetState(this.#handle));
  }

  /** Adapted parameters [tasks, P] of every task's support set, from the device parameters. */
  adapt(args: CudaAdaptArgs): Float32Array {
    return call(() => this.#addon.cudaLearnerAdapt(this.#handle, args));
  }

  /**
   * adapt() on a worker thread: the support sets are copied before this returns, the device
   * work runs off the event loop. Until the promise settles every other call on this backend
   * throws BUSY (MetaLearner queues its device calls so that this does not happen).
   */
  async adaptAsync(args: CudaAdaptArgs): Promise<Float32Array> {
    const stack = new Error().stack;
    try {
      return await this.#addon.cudaLearnerAdaptAsync(this.#handle, args);
    } catch (err) {
      throw fromNative(err, stack);
    }
  }
}
