// device.hpp: what this binary knows about CUDA devices.
#pragma once
#include <napi.h>

namespace maml::binding {
// { cudaCompiled: boolean, deviceCount: number, devices: [...], error?: {code, message} }
Napi::Value DeviceInfo(const Napi::CallbackInfo& info);
// { precision: [...], cuda: boolean, compiler: string, threads: number }
Napi::Value BuildInfo(const Napi::CallbackInfo& info);
// Bytes the C allocator has handed out and not taken back (glibc), or -1: for leak tests.
Napi::Value MallocInUse(const Napi::CallbackInfo& info);
}  // namespace maml::binding
