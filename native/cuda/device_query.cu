// device_query.cu: query_devices(), the CUDA runtime's view of the GPUs (see device_query.hpp).
//
// Host code only. Build: `npm run build:cuda` (CMakeLists.txt, cmake-js); on a machine without
// a GPU, `node -e "console.log(require('./build-cuda/Release/maml_cuda.node').deviceInfo())"`
// prints cudaCompiled: true and error.code 'NO_DEVICE'.
#include "device_query.hpp"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <exception>

namespace maml::cuda {
namespace {

// "13.0" from 13000.
std::string cuda_version_string(int v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d.%d", v / 1000, (v % 1000) / 10);
  return buf;
}

// The driver a CUDA runtime needs, for the message. CUDA 13.x needs the R580 branch or newer.
std::string driver_needed(int runtime_version) {
  if (runtime_version >= 13000 && runtime_version < 14000) return "an NVIDIA driver R580 or newer";
  return "an NVIDIA driver that supports CUDA " + cuda_version_string(runtime_version);
}

bool is_driver_problem(cudaError_t e) {
  return e == cudaErrorInsufficientDriver || e == cudaErrorStubLibrary ||
         e == cudaErrorCallRequiresNewerDriver || e == cudaErrorSystemDriverMismatch ||
         e == cudaErrorCompatNotSupportedOnDevice;
}

void fill(DeviceReport& r) {
  int runtime = 0, driver = 0;
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) r.runtime_version = runtime;
  if (cudaDriverGetVersion(&driver) == cudaSuccess) r.driver_version = driver;
  if (r.runtime_version == 0) r.runtime_version = CUDART_VERSION;

  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // reset the last-error state so that later calls start clean
    const std::string what = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    if (e == cudaErrorNoDevice) {
      r.error_code = "NO_DEVICE";
      r.error_message = "no CUDA-capable device was found (" + what + ")";
    } else if (r.driver_version == 0 || is_driver_problem(e)) {
      r.error_code = "NO_DEVICE";
      const std::string found =
          r.driver_version == 0
              ? std::string("no NVIDIA driver was found")
              : "the NVIDIA driver supports CUDA up to " + cuda_version_string(r.driver_version);
      r.error_message = found + "; the CUDA " + cuda_version_string(r.runtime_version) +
                        " runtime in this binary needs " + driver_needed(r.runtime_version) +
                        " (" + what + ")";
    } else {
      r.error_code = "CUDA_ERROR";
      r.error_message = "cudaGetDeviceCount failed (" + what + ")";
    }
    return;
  }
  if (count == 0) {
    r.error_code = "NO_DEVICE";
    r.error_message = "the CUDA runtime reports 0 devices";
    return;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    const cudaError_t pe = cudaGetDeviceProperties(&p, i);
    if (pe != cudaSuccess) {
      cudaGetLastError();
      r.error_code = "CUDA_ERROR";
      r.error_message = "cudaGetDeviceProperties(" + std::to_string(i) + ") failed (" +
                        cudaGetErrorName(pe) + ": " + cudaGetErrorString(pe) + ")";
      return;
    }
    DeviceProps d;
    d.name = p.name;
    d.compute_capability = std::to_string(p.major) + "." + std::to_string(p.minor);
    d.memory_bytes = static_cast<uint64_t>(p.totalGlobalMem);
    r.devices.push_back(std::move(d));
  }
}

}  // namespace

DeviceReport query_devices() noexcept {
  DeviceReport r;
  try {
    fill(r);
  } catch (const std::exception& ex) {  // std::bad_alloc from a string: report, never abort
    r.error_code = "CUDA_ERROR";
    r.error_message = std::string("device query failed: ") + ex.what();
  } catch (...) {
    r.error_code = "CUDA_ERROR";
    r.error_message = "device query failed";
  }
  return r;
}

}  // namespace maml::cuda
