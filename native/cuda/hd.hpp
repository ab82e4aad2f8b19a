// hd.hpp: what lets one source file compile as CUDA device code AND as plain host C++.
//
// MAML_HD marks a function __host__ __device__ under nvcc and is empty under g++/clang++, so
// native/cuda/task_kernel.hpp (the per-task meta-step) is compiled into the CPU addon too and
// tested there against native/core without a GPU (test/cuda-host.test.ts).
//
// A "block" is the group of threads that runs one task. Every loop of the task kernel is
// strided by (tid(), size()) and dependent phases are separated by sync():
//   DeviceBlock  on the GPU: tid = threadIdx.x, size = blockDim.x, sync = __syncthreads()
//   SerialBlock  on the host: one thread (tid 0, size 1), sync does nothing.
// Control flow that reaches a sync() must be uniform over the block (it depends only on the
// task, never on tid), so the serial and the parallel runs execute the same phases.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define MAML_HD __host__ __device__
#define MAML_UNROLL _Pragma("unroll")
#define MAML_UNROLL4 _Pragma("unroll 4")
#define MAML_NOINLINE __noinline__
#else
#define MAML_HD
#define MAML_UNROLL
#define MAML_UNROLL4
#define MAML_NOINLINE
#endif

namespace maml::cuda {

struct SerialBlock {
  MAML_HD int tid() const { return 0; }
  MAML_HD int size() const { return 1; }
  MAML_HD void sync() const {}
};

struct DeviceBlock {
#ifdef __CUDA_ARCH__
  __device__ int tid() const { return static_cast<int>(threadIdx.x); }
  __device__ int size() const { return static_cast<int>(blockDim.x); }
  __device__ void sync() const { __syncthreads(); }
#else
  // Host compilation of the same templates (never called on the host).
  MAML_HD int tid() const { return 0; }
  MAML_HD int size() const { return 1; }
  MAML_HD void sync() const {}
#endif
};

// Math on float and double, spelled so that nvcc picks the device functions and g++ the libm ones.
MAML_HD inline float k_exp(float x) { return expf(x); }
MAML_HD inline double k_exp(double x) { return exp(x); }
MAML_HD inline float k_log(float x) { return logf(x); }
MAML_HD inline double k_log(double x) { return log(x); }
MAML_HD inline float k_log1p(float x) { return log1pf(x); }
MAML_HD inline double k_log1p(double x) { return log1p(x); }
MAML_HD inline float k_tanh(float x) { return tanhf(x); }
MAML_HD inline double k_tanh(double x) { return tanh(x); }
MAML_HD inline float k_abs(float x) { return fabsf(x); }
MAML_HD inline double k_abs(double x) { return fabs(x); }

// Four consecutive values p[0..3] into o[0..3]. On the device, float: one 16-byte load (p must
// be 16-byte aligned: kernel variant 3 keeps its staged operands so); elsewhere four loads.
template <class T>
MAML_HD inline void k_ld4(const T* p, T* o) {
  o[0] = p[0];
  o[1] = p[1];
  o[2] = p[2];
  o[3] = p[3];
}
#ifdef __CUDACC__
MAML_HD inline void k_ld4(const float* p, float* o) {
#ifdef __CUDA_ARCH__
  const float4 q = *reinterpret_cast<const float4*>(p);
  o[0] = q.x;
  o[1] = q.y;
  o[2] = q.z;
  o[3] = q.w;
#else
  o[0] = p[0];
  o[1] = p[1];
  o[2] = p[2];
  o[3] = p[3];
#endif
}
#endif

}  // namespace maml::cuda
