// device_query.hpp: what the CUDA runtime says about this machine's GPUs, as plain C++ values.
//
// Compiled only into the CUDA-enabled binary (build-cuda/Release/maml_cuda.node, built by
// CMakeLists.txt when nvcc is found: `npm run build:cuda`). The runtime is linked statically,
// so the binary loads on a machine with no GPU or no driver; query_devices() then reports why
// there is no usable device instead of failing. JavaScript reads the report through
// deviceInfo() (native/binding/device.cc).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace maml::cuda {

struct DeviceProps {
  std::string name;                // "NVIDIA H100 80GB HBM3"
  std::string compute_capability;  // "9.0"
  uint64_t memory_bytes;           // total global memory
};

struct DeviceReport {
  int runtime_version = 0;  // CUDA version of the linked runtime, 1000 * major + 10 * minor
  int driver_version = 0;   // highest CUDA version the installed driver supports; 0 = no driver
  std::vector<DeviceProps> devices;
  std::string error_code;     // "" when the query succeeded, else "NO_DEVICE" or "CUDA_ERROR"
  std::string error_message;  // for people: what failed and what would fix it
};

// Never throws and never aborts: every failure is recorded in error_code / error_message.
// NO_DEVICE: no GPU, no driver, or a driver too old for the linked runtime (the message names
// the driver needed). CUDA_ERROR: anything else, with cudaGetErrorString's text.
// Devices found before a failure stay in `devices`.
DeviceReport query_devices() noexcept;

}  // namespace maml::cuda
