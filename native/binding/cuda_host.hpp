// cuda_host.hpp: the CUDA task kernel run on the host, for tests (see cuda_host.cc).
#pragma once
#include <napi.h>

namespace maml::binding {
// Same options and result as MetaGradient / AdaptBatch; runs native/cuda/task_kernel.hpp.
Napi::Value MetaGradientCudaHost(const Napi::CallbackInfo& info);
Napi::Value AdaptBatchCudaHost(const Napi::CallbackInfo& info);
}  // namespace maml::binding
