// meta_kernels.cu: the fused meta-step kernel (one block per task), the deterministic
// reduction over tasks, and the optimizer update on the device. See meta_kernels.hpp.
//
// The per-task code is native/cuda/task_kernel.hpp, the same templates the CPU addon runs with
// a one-thread block in test/cuda-host.test.ts. Here a block of `threads` threads runs them,
// with the task's working memory in dynamic shared memory when it fits the device (up to
// 227 KB per block on Hopper after cudaFuncSetAttribute), else in a global scratch area.
//
// Accumulation rule: every kernel OVERWRITES its outputs (slots, losses, grad, out2) except
// update, which updates p, m, v in place and scales grad in place.
#include "meta_kernels.hpp"

#include <cooperative_groups.h>

#include <algorithm>

#include "cuda_check.hpp"

namespace maml::cuda {

// The cluster of the calling block, for task_cluster.hpp (its rank, a barrier of all its
// threads, a peer block's shared memory). Only here: <cooperative_groups.h> declares a namespace
// ::cuda that makes `cuda::` ambiguous in files that use namespace maml (gpu_check.cu). Outside
// the anonymous namespace: there, nvcc warns about the host pass's unused stubs.
struct DeviceCluster {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __device__ int rank() const { return static_cast<int>(cooperative_groups::this_cluster().block_rank()); }
  __device__ void sync() const { cooperative_groups::this_cluster().sync(); }
  // the two halves of sync(): arrive (release: this thread's writes, to peers too) and wait
  // (acquire: the writes of every thread that arrived)
  __device__ void arrive() const { cooperative_groups::this_cluster().barrier_arrive(); }
  __device__ void wait() const { cooperative_groups::this_cluster().barrier_wait(); }
  template <class T>
  __device__ T* peer(T* p, int q) const {
    return cooperative_groups::this_cluster().map_shared_rank(p, q);
  }
#else
  // Host compilation, and device code before Hopper (no clusters: the cluster kernel's body is
  // compiled for sm_90 and later only): never called.
  MAML_HD int rank() const { return 0; }
  MAML_HD void sync() const {}
  MAML_HD void arrive() const {}
  MAML_HD void wait() const {}
  template <class T>
  MAML_HD T* peer(T* p, int) const {
    return p;
  }
#endif
};

namespace {

// Registers: at most 128 per thread, so that two blocks of 256 threads share a multiprocessor
// (the global-memory variant used 167 and ran one wide-net task per multiprocessor, waiting on
// memory most of the time; the shared-memory variant fits in 127 anyway).
constexpr int kTaskThreadsMax = 256, kTaskBlocksPerSM = 2;

// Block b runs task task0 + b; with global working memory it uses scratch row b. kVariant: 1, or
// 3 (MAML_CUDA_KERNEL=3, global-memory kernel only: task_kernel.hpp's row-register products of
// wide layers and weight_tile_fixed), an experiment to time on a GPU. (Variant 2, weight_tile_fixed
// alone, was folded into 3: its two kernel instances cost every install ~20 s of compilation.)
template <bool kShared, int kVariant = 1>
__global__ void __launch_bounds__(kTaskThreadsMax, kTaskBlocksPerSM) meta_tasks_kernel(KModel m, KConfig c, KArgs<float> a, Layout lay, float* scratch, int task0) {
  extern __shared__ __align__(16) float smem[];  // 16-byte aligned: variant 3 loads four floats at once
  const int t = task0 + static_cast<int>(blockIdx.x);
  float* work = kShared ? smem : scratch + static_cast<int64_t>(blockIdx.x) * lay.total;
  const int64_t slot = static_cast<int64_t>(m.P) + c.R;
  task_meta_step<kVariant>(DeviceBlock{}, m, c, a, t, work, lay, a.slots + t * slot, a.losses + t, kShared ? nullptr : smem);
}

// Variant 4: cluster q of the launch (blocks q c .. q c + c − 1, ranks 0 .. c − 1) runs task
// task0 + q with its blocks' working memory in shared memory and scratch row q in global memory.
// One block per multiprocessor (each holds up to 227 KB), so up to 255 registers per thread.
// Compiled for Hopper and later only (before, there are no clusters: cluster_capacity says 0
// and the kernel is never launched; its empty body saves the sm_80 build ~10 s).
__global__ void __launch_bounds__(kTaskThreadsMax, 1) meta_cluster_kernel(const __grid_constant__ KModel m, const __grid_constant__ KConfig c,
                                                                          const __grid_constant__ KArgs<float> a, const __grid_constant__ KCluster kc,
                                                                          float* scratch, int task0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(16) float smem[];
  const int q = static_cast<int>(blockIdx.x) / kc.c;
  const int t = task0 + q;
  const int64_t slot = static_cast<int64_t>(m.P) + c.R;
  task_meta_step_cluster(DeviceBlock{}, DeviceCluster{}, m, c, kc, a, t, smem, scratch + static_cast<int64_t>(q) * kc.g_total,
                         a.slots + t * slot, a.losses + t);
#endif
}

// The launch configuration of n tasks on clusters of kc.c blocks (attr: its storage).
cudaLaunchConfig_t cluster_config(const KCluster& kc, int threads, int n, cudaStream_t stream, cudaLaunchAttribute* attr) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(n * kc.c));
  cfg.blockDim = dim3(static_cast<unsigned>(threads));
  cfg.dynamicSmemBytes = static_cast<size_t>(kc.total) * sizeof(float);
  cfg.stream = stream;
  attr->id = cudaLaunchAttributeClusterDimension;
  attr->val.clusterDim.x = static_cast<unsigned>(kc.c);
  attr->val.clusterDim.y = 1;
  attr->val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cfg;
}

template <bool kShared>
__global__ void __launch_bounds__(kTaskThreadsMax, kTaskBlocksPerSM) adapt_tasks_kernel(KModel m, KConfig c, KArgs<float> a, Layout lay, float* scratch, int task0) {
  extern __shared__ __align__(16) float smem[];
  const int t = task0 + static_cast<int>(blockIdx.x);
  float* work = kShared ? smem : scratch + static_cast<int64_t>(blockIdx.x) * lay.total;
  task_adapt(DeviceBlock{}, m, c, a, t, work, lay, a.adapted + static_cast<int64_t>(t) * m.P, kShared ? nullptr : smem);
}

// Level 1: partial[c, i] = sum of chunk c's tasks (blockIdx.y = c); level 2: grad[i] = sum of
// the chunks in order / B. The order of mean_over_tasks (task_kernel.hpp), on many threads.
__global__ void chunk_kernel(const float* slots, int64_t slot, int64_t tasks, float* partial) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < slot) partial[blockIdx.y * slot + i] = chunk_sum(slots, slot, tasks, blockIdx.y, i);
}

__global__ void reduce_kernel(const float* partial, int64_t slot, int64_t chunks, int64_t tasks, float* grad) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= slot) return;
  float s = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) s += partial[c * slot + i];
  grad[i] = s / static_cast<float>(tasks);
}

constexpr int kFinishThreads = 1024;

// One block: strided partial sums per thread, then a fixed tree over the threads. The launch
// bound makes the compiler keep the registers within what a 1024-thread block may have.
__global__ void __launch_bounds__(kFinishThreads) finish_kernel(const float* losses, int64_t tasks, const float* grad, int64_t n, double* out2) {
  __shared__ double part_loss[kFinishThreads], part_sq[kFinishThreads];
  const int t = threadIdx.x;
  double l = 0.0, s = 0.0;
  for (int64_t i = t; i < tasks; i += kFinishThreads) l += static_cast<double>(losses[i]);
  for (int64_t i = t; i < n; i += kFinishThreads) {
    const double g = grad[i];
    s += g * g;
  }
  part_loss[t] = l;
  part_sq[t] = s;
  __syncthreads();
  for (int h = kFinishThreads / 2; h > 0; h >>= 1) {
    if (t < h) {
      part_loss[t] += part_loss[t + h];
      part_sq[t] += part_sq[t + h];
    }
    __syncthreads();
  }
  if (t == 0) {
    out2[0] = part_loss[0] / static_cast<double>(tasks);
    out2[1] = sqrt(part_sq[0]);
  }
}

// optim.hpp's formulas, per element.
__global__ void update_kernel(UpdateArgs u, float* p, float* grad, float* m, float* v, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float g = grad[i] * u.clip;
  if (u.wd != 0.0f) g += u.wd * p[i];
  grad[i] = g;
  if (u.kind == 0) {
    const float mi = m[i] + u.one_minus_b1 * (g - m[i]);
    const float vi = v[i] * u.b2 + u.one_minus_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / u.bc2_sqrt + u.eps;
    p[i] -= u.step_size * (mi / denom);
  } else {
    float d = g;
    if (u.momentum != 0.0f) {
      const float buf = u.first ? d : u.momentum * m[i] + u.damp * d;
      m[i] = buf;
      d = u.nesterov ? d + u.momentum * buf : buf;
    }
    p[i] -= u.lr * d;
  }
}

unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

// tile_floats: the global-memory kernel's tile scratch (kTileFloats, or kTileFloatsV3 for
// variant 3; at most 48 KB, so no opt-in is needed).
template <class Kernel>
void launch_tasks(Kernel shared_kernel, Kernel global_kernel, const KModel& m, const KConfig& c,
                  const KArgs<float>& a, int tasks, const Layout& lay, const TaskLaunch& how, cudaStream_t stream,
                  int tile_floats = kTileFloats) {
  if (tasks <= 0) return;
  if (how.shared) {
    const size_t bytes = static_cast<size_t>(lay.total) * sizeof(float);
    CUDA_CHECK(cudaFuncSetAttribute(shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
    shared_kernel<<<tasks, how.threads, bytes, stream>>>(m, c, a, lay, nullptr, 0);
    CUDA_CHECK(cudaGetLastError());
  } else {
    // the working memory is global (chunks of tasks share it, in stream order); shared memory
    // holds the tiles of wide layers
    const int chunk = how.chunk > 0 ? how.chunk : tasks;
    for (int t0 = 0; t0 < tasks; t0 += chunk) {
      const int n = tasks - t0 < chunk ? tasks - t0 : chunk;
      global_kernel<<<n, how.threads, tile_floats * sizeof(float), stream>>>(m, c, a, lay, how.scratch, t0);
      CUDA_CHECK(cudaGetLastError());
    }
  }
}

}  // namespace

int max_task_threads() {
  int most = 1024;
  for (const void* k : {reinterpret_cast<const void*>(meta_tasks_kernel<true>),
                        reinterpret_cast<const void*>(meta_tasks_kernel<false>),
                        reinterpret_cast<const void*>(meta_tasks_kernel<false, 3>),
                        reinterpret_cast<const void*>(adapt_tasks_kernel<true>),
                        reinterpret_cast<const void*>(adapt_tasks_kernel<false>)}) {
    cudaFuncAttributes attr{};
    CUDA_CHECK(cudaFuncGetAttributes(&attr, k));
    most = std::min(most, attr.maxThreadsPerBlock);
  }
  return most;
}

int cluster_capacity(const KCluster& kc, int threads) {
  const size_t bytes = static_cast<size_t>(kc.total) * sizeof(float);
  if (cudaFuncSetAttribute(meta_cluster_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)) != cudaSuccess) {
    cudaGetLastError();  // too much shared memory for this device: not an error, the answer is 0
    return 0;
  }
  cudaLaunchAttribute attr;
  const cudaLaunchConfig_t cfg = cluster_config(kc, threads, 1, nullptr, &attr);
  int n = 0;
  if (cudaOccupancyMaxActiveClusters(&n, meta_cluster_kernel, &cfg) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

int shared_limit(int device) {
  int optin = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return optin;
}

void launch_meta_tasks(const KModel& m, const KConfig& c, const KArgs<float>& a, int tasks, const Layout& lay,
                       const TaskLaunch& how, cudaStream_t stream) {
  if (how.cluster.c > 1) {  // variant 4: a cluster per task, in launches of how.chunk tasks
    CUDA_CHECK(cudaFuncSetAttribute(meta_cluster_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(how.cluster.total * sizeof(float))));
    const int chunk = how.chunk > 0 ? how.chunk : tasks;
    for (int t0 = 0; t0 < tasks; t0 += chunk) {
      const int n = tasks - t0 < chunk ? tasks - t0 : chunk;
      cudaLaunchAttribute attr;
      const cudaLaunchConfig_t cfg = cluster_config(how.cluster, how.threads, n, stream, &attr);
      CUDA_CHECK(cudaLaunchKernelEx(&cfg, meta_cluster_kernel, m, c, a, how.cluster, how.scratch, t0));
      CUDA_CHECK(cudaGetLastError());
    }
    return;
  }
  // variant 3 changes only the global-memory kernel (the shared-memory one has no tiles): its
  // small networks run the default shared-memory kernel
  if (how.variant == 3)
    launch_tasks(meta_tasks_kernel<true, 1>, meta_tasks_kernel<false, 3>, m, c, a, tasks, lay, how, stream, kTileFloatsV3);
  else launch_tasks(meta_tasks_kernel<true>, meta_tasks_kernel<false>, m, c, a, tasks, lay, how, stream);
}

void launch_adapt_tasks(const KModel& m, const KConfig& c, const KArgs<float>& a, int tasks, const Layout& lay,
                        const TaskLaunch& how, cudaStream_t stream) {
  launch_tasks(adapt_tasks_kernel<true>, adapt_tasks_kernel<false>, m, c, a, tasks, lay, how, stream);
}

int64_t reduce_chunks(int64_t tasks) { return (tasks + kReduceChunk - 1) / kReduceChunk; }

void launch_reduce(const float* slots, int64_t slot, int64_t tasks, float* partial, float* grad, cudaStream_t stream) {
  if (slot <= 0) return;
  const int64_t chunks = reduce_chunks(tasks);
  MAML_CHECK(chunks < 65536, TooLarge, "too many tasks in one meta-batch for the GPU reduction");
  chunk_kernel<<<dim3(blocks_for(slot, 256), static_cast<unsigned>(chunks)), 256, 0, stream>>>(slots, slot, tasks, partial);
  CUDA_CHECK(cudaGetLastError());
  reduce_kernel<<<blocks_for(slot, 256), 256, 0, stream>>>(partial, slot, chunks, tasks, grad);
  CUDA_CHECK(cudaGetLastError());
}

void launch_finish(const float* losses, int64_t tasks, const float* grad, int64_t n, double* out2, cudaStream_t stream) {
  finish_kernel<<<1, kFinishThreads, 0, stream>>>(losses, tasks, grad, n, out2);
  CUDA_CHECK(cudaGetLastError());
}

void launch_update(const UpdateArgs& u, float* p, float* grad, float* m, float* v, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  update_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(u, p, grad, m, v, n);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace maml::cuda
