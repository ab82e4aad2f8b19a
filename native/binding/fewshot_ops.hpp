// fewshot_ops.hpp: the metric-based few-shot learners' entry points (see fewshot_ops.cc).
#pragma once
#include <napi.h>

namespace maml::binding {
Napi::Value FewShotGradient(const Napi::CallbackInfo& info);
Napi::Value FewShotEvaluate(const Napi::CallbackInfo& info);
Napi::Value FewShotEvaluateAsync(const Napi::CallbackInfo& info);
Napi::Value FewShotStep(const Napi::CallbackInfo& info);
Napi::Value FewShotStepAsync(const Napi::CallbackInfo& info);
Napi::Value FewShotLogits(const Napi::CallbackInfo& info);
}  // namespace maml::binding
