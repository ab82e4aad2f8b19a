// device.cc: device and build information. The CUDA query lives in native/cuda and is compiled
// only into the CUDA-enabled binary (MAML_WITH_CUDA); the CPU binary says it has no CUDA.
#include "device.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "cpu/fast.hpp"
#include "cpu/thread_pool.hpp"

#ifdef MAML_WITH_CUDA
#include "cuda/device_query.hpp"
#endif

namespace maml::binding {

Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
#ifdef MAML_WITH_CUDA
  const cuda::DeviceReport rep = cuda::query_devices();
  r.Set("cudaCompiled", Napi::Boolean::New(env, true));
  r.Set("runtimeVersion", Napi::Number::New(env, rep.runtime_version));
  r.Set("driverVersion", Napi::Number::New(env, rep.driver_version));
  Napi::Array devs = Napi::Array::New(env, rep.devices.size());
  for (size_t i = 0; i < rep.devices.size(); ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", rep.devices[i].name);
    d.Set("computeCapability", rep.devices[i].compute_capability);
    d.Set("memoryBytes", Napi::Number::New(env, static_cast<double>(rep.devices[i].memory_bytes)));
    devs.Set(static_cast<uint32_t>(i), d);
  }
  r.Set("deviceCount", Napi::Number::New(env, static_cast<double>(rep.devices.size())));
  r.Set("devices", devs);
  if (!rep.error_code.empty()) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("code", rep.error_code);
    e.Set("message", rep.error_message);
    r.Set("error", e);
  }
#else
  r.Set("cudaCompiled", Napi::Boolean::New(env, false));
  r.Set("deviceCount", Napi::Number::New(env, 0));
  r.Set("devices", Napi::Array::New(env));
#endif
  return r;
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  Napi::Array prec = Napi::Array::New(env, 2);
  prec.Set(0u, "float32");
  prec.Set(1u, "float64");
  r.Set("precision", prec);
#ifdef MAML_WITH_CUDA
  r.Set("cuda", Napi::Boolean::New(env, true));
#else
  r.Set("cuda", Napi::Boolean::New(env, false));
#endif
#if defined(__clang__)
  r.Set("compiler", "clang " __clang_version__);
#elif defined(__GNUC__)
  r.Set("compiler", "gcc " __VERSION__);
#elif defined(_MSC_VER)
  r.Set("compiler", "msvc");
#else
  r.Set("compiler", "unknown");
#endif
  r.Set("threads", Napi::Number::New(env, thread_count()));
  r.Set("isa", cpu::fast_isa());
  r.Set("defaultThreads", Napi::Number::New(env, default_thread_count()));
  return r;
}

Napi::Value MallocInUse(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 m = mallinfo2();
  return Napi::Number::New(info.Env(), static_cast<double>(m.uordblks + m.hblkhd));
#else
  return Napi::Number::New(info.Env(), -1);
#endif
}

}  // namespace maml::binding
