// cuda_ops.hpp: the CUDA learner's entry points (cuda_ops.cc), exported only by the
// CUDA-enabled binary (MAML_WITH_CUDA; build-cuda/Release/maml_cuda.node).
#pragma once
#include <napi.h>

namespace maml::binding {
// cudaLearnerCreate(options) -> handle: parameters, rates and optimizer state on the device.
Napi::Value CudaLearnerCreate(const Napi::CallbackInfo& info);
// cudaLearnerStep(handle, batch) -> { loss, gradNorm }: one meta-step on the device.
Napi::Value CudaLearnerStep(const Napi::CallbackInfo& info);
// cudaLearnerStepAsync(handle, batch) -> Promise<{ loss, gradNorm }>: the same on a worker
// thread, with the batch copied first; the handle is busy (BUSY) until it settles.
Napi::Value CudaLearnerStepAsync(const Napi::CallbackInfo& info);
// cudaLearnerDispose(handle): frees the device state now; later calls throw DISPOSED; again: no-op.
Napi::Value CudaLearnerDispose(const Napi::CallbackInfo& info);
// cudaLearnerGetState(handle) -> Float32Array [P + R]; cudaLearnerSetState(handle, state).
Napi::Value CudaLearnerGetState(const Napi::CallbackInfo& info);
Napi::Value CudaLearnerSetState(const Napi::CallbackInfo& info);
// cudaLearnerAdapt(handle, options) -> Float32Array [B, P]: adaptation on the device.
Napi::Value CudaLearnerAdapt(const Napi::CallbackInfo& info);
// cudaLearnerAdaptAsync(handle, options) -> Promise<Float32Array [B, P]>: the same on a worker
// thread, with the support sets and rates copied first; the handle is busy until it settles.
Napi::Value CudaLearnerAdaptAsync(const Napi::CallbackInfo& info);
// cudaMetaGradient(options): metaGradient's options and result, computed on the device.
Napi::Value CudaMetaGradient(const Napi::CallbackInfo& info);
}  // namespace maml::binding
