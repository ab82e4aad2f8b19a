// cuda_check.hpp: every CUDA runtime call and kernel launch goes through CUDA_CHECK, which
// throws maml::Error (never aborts): OUT_OF_MEMORY for allocation failures, NO_DEVICE for no
// GPU or a driver too old for this binary's runtime, CUDA_ERROR with cudaGetErrorString's text
// otherwise. After a launch: CUDA_CHECK(cudaGetLastError()).
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include "core/status.hpp"

namespace maml::cuda {

inline Error cuda_error(cudaError_t e, const char* what) {
  const std::string text = std::string(what) + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  switch (e) {
    case cudaErrorMemoryAllocation:
      return Error(Code::OutOfMemory, "out of GPU memory: " + text);
    case cudaErrorNoDevice:
      return Error(Code::NoDevice, "no CUDA device: " + text);
    case cudaErrorInsufficientDriver:
    case cudaErrorCallRequiresNewerDriver: {
      int driver = 0;
      if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0)
        return Error(Code::NoDevice, "no NVIDIA driver was found (no GPU on this machine?): " + text);
      return Error(Code::NoDevice, "the NVIDIA driver is too old for this binary's CUDA runtime " +
                                       std::to_string(CUDART_VERSION / 1000) + "." +
                                       std::to_string(CUDART_VERSION % 1000 / 10) + ": " + text);
    }
    default:
      return Error(Code::CudaError, text);
  }
}

}  // namespace maml::cuda

#define CUDA_CHECK(call)                                                                       \
  do {                                                                                         \
    const cudaError_t maml_cuda_err_ = (call);                                                 \
    if (maml_cuda_err_ != cudaSuccess) {                                                       \
      cudaGetLastError(); /* clear a non-sticky error so that later calls start clean */       \
      throw ::maml::cuda::cuda_error(maml_cuda_err_, #call " at " __FILE__ ":" MAML_STR(__LINE__)); \
    }                                                                                          \
  } while (0)
