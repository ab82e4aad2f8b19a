// meta_kernels.hpp: launchers of the meta-step kernels (meta_kernels.cu). Pointers are device
// pointers; every launcher enqueues on `stream` and checks the launch (CUDA_CHECK, cuda_check.hpp).
//
// A meta-step is four launches on one stream:
//   1. meta_tasks   one block per task runs task_meta_step (task_kernel.hpp): slots [B, P + R], losses [B]
//   2. reduce       grad[i] = mean over tasks of slots[:, i], fixed order (chunks of 32 tasks)
//   3. finish       one block: loss = mean of losses, norm = ||grad||_2 (double, fixed tree order)
//   4. update       clipping by the host-computed coefficient, weight decay, Adam or SGD (optim.hpp)
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "task_cluster.hpp"

namespace maml::cuda {

// How a task's working memory is provided: in dynamic shared memory (fast), or in a global
// scratch area of chunk * lay.total floats (any size): the tasks then run in launches of at
// most `chunk` blocks, one after another on the stream, each reusing the scratch area (so a
// wide network's B = 100k tasks do not need B working areas at once).
struct TaskLaunch {
  int threads = 256;
  bool shared = true;
  float* scratch = nullptr;  // [chunk, lay.total] when !shared
  int chunk = 0;             // tasks per launch when !shared (0: all at once)
  int variant = 1;           // meta-step kernel variant: 1, 3 or 4 (experiments: MAML_CUDA_KERNEL)
  // Variant 4 (MAML_CUDA_KERNEL=4, an experiment): when cluster.c > 1, every task runs on a cluster
  // of cluster.c blocks (task_cluster.hpp) with cluster.total floats of shared memory each and
  // cluster.g_total floats of `scratch` (chunk tasks per launch).
  KCluster cluster;
};

// The largest block the four task kernels can all be launched with on the current device (their
// register use limits it; a block size above it fails with "too many resources requested").
int max_task_threads();
// The most dynamic shared memory a block of `device` can have (after cudaFuncSetAttribute).
int shared_limit(int device);
// How many clusters of the cluster kernel (variant 4) with layout kc and `threads` threads per
// block the current device can hold at once: 0 where it cannot launch them (no clusters before
// compute capability 9.0, or too much shared memory).
int cluster_capacity(const KCluster& kc, int threads);

void launch_meta_tasks(const KModel& m, const KConfig& c, const KArgs<float>& a, int tasks, const Layout& lay,
                       const TaskLaunch& how, cudaStream_t stream);
void launch_adapt_tasks(const KModel& m, const KConfig& c, const KArgs<float>& a, int tasks, const Layout& lay,
                        const TaskLaunch& how, cudaStream_t stream);
// grad [slot] = mean over tasks of slots [tasks, slot], in mean_over_tasks' order;
// partial: scratch of reduce_chunks(tasks) * slot floats.
int64_t reduce_chunks(int64_t tasks);
void launch_reduce(const float* slots, int64_t slot, int64_t tasks, float* partial, float* grad, cudaStream_t stream);
// out2 [2] (double) = { mean of losses [tasks], ||grad [n]||_2 }.
void launch_finish(const float* losses, int64_t tasks, const float* grad, int64_t n, double* out2, cudaStream_t stream);

// The optimizer's per-step scalars, computed on the host as optim.hpp does.
struct UpdateArgs {
  int kind = 0;  // 0 adam, 1 sgd
  float clip = 1.0f;  // gradient multiplier (1 = no clipping)
  float wd = 0.0f;
  // adam
  float one_minus_b1 = 0, b2 = 0, one_minus_b2 = 0, step_size = 0, bc2_sqrt = 1, eps = 0;
  // sgd
  float lr = 0, momentum = 0, damp = 1;
  int nesterov = 0, first = 1;
};
void launch_update(const UpdateArgs& u, float* p, float* grad, float* m, float* v, int64_t n, cudaStream_t stream);

}  // namespace maml::cuda
