// device.hpp: what this binary knows about CUDA devices.
#pragma once
#include <napi.h>

namespace maml::binding {
// { cudaCompiled: boolean, deviceCount: number, devices: [...], error?: {code, message} }
Napi::Value DeviceInfo(const Napi::CallbackInfo& info);
// { precision: [...], cuda: boolean, compiler: string, threads: number }
Napi::Value BuildInfo(const Napi::CallbackInfo& info);
}  // namespace maml::binding
