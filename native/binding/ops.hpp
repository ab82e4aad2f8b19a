// ops.hpp: the numerical entry points of the addon (see ops.cc).
#pragma once
#include <napi.h>

namespace maml::binding {
Napi::Value Forward(const Napi::CallbackInfo& info);
Napi::Value LossGrad(const Napi::CallbackInfo& info);
Napi::Value Hvp(const Napi::CallbackInfo& info);
Napi::Value MetaGradient(const Napi::CallbackInfo& info);
Napi::Value MetaStep(const Napi::CallbackInfo& info);
Napi::Value MetaStepAsync(const Napi::CallbackInfo& info);
// metaStep with packed arguments (args.hpp: numbers, layers, weights, rates, state, m, v, offsets, batch, result).
Napi::Value MetaStepPacked(const Napi::CallbackInfo& info);
Napi::Value AdaptBatch(const Napi::CallbackInfo& info);
Napi::Value AdaptBatchAsync(const Napi::CallbackInfo& info);
Napi::Value SetThreads(const Napi::CallbackInfo& info);
Napi::Value GetThreads(const Napi::CallbackInfo& info);
}  // namespace maml::binding
