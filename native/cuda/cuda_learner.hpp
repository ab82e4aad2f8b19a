// cuda_learner.hpp: a meta-learner whose state lives on the GPU (cuda_learner.cu).
//
// The parameters and learned rates [P + R], the optimizer moments and the fixed rates stay in
// device memory between steps. step() copies the batch into a pinned host buffer, sends it to
// the device on the learner's own stream, runs the meta-step kernels (meta_kernels.hpp), reads
// back only the loss and gradient norm (16 bytes) and enqueues the update. get_state copies the
// state back on request. Plain C++ interface (no CUDA types), so the binding compiles with the
// host compiler. Every failure throws maml::Error (cuda_check.hpp); nothing aborts.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/meta.hpp"
#include "core/model.hpp"
#include "core/optim.hpp"

namespace maml::cuda {

struct LearnerConfig {
  ModelSpec spec;
  MetaConfig cfg;            // cfg.want_rate_grad: the rates are learned (state holds them)
  OptimConfig opt;
  std::vector<float> state;  // [P + R] initial parameters, then learned rates (R = 0 when fixed)
  std::vector<float> fixed_rates;  // the rates when they are not learned
  int64_t rate_step_stride = 0, rate_param_stride = 0;
};

// A batch in host memory (pointers valid during the call), CSR rows as native/core/batch.hpp.
struct HostBatch {
  int64_t tasks = 0;
  const int64_t* s_off = nullptr;  // [tasks + 1]
  const int64_t* q_off = nullptr;  // [tasks + 1] (all zero: no query set)
  const float* xs = nullptr;
  const float* ys = nullptr;
  const int32_t* ys_lab = nullptr;
  const float* xq = nullptr;
  const float* yq = nullptr;
  const int32_t* yq_lab = nullptr;
};

struct StepResult {
  double loss = 0, grad_norm = 0;
};

class CudaLearner {
 public:
  explicit CudaLearner(const LearnerConfig& config);
  ~CudaLearner();
  CudaLearner(const CudaLearner&) = delete;
  CudaLearner& operator=(const CudaLearner&) = delete;

  // One meta-step with optimizer step number t (1-based). Throws NON_FINITE (state unchanged)
  // when the loss or the gradient is not finite.
  StepResult step(const HostBatch& b, int64_t t);
  // The mean meta-gradient [P] and rate gradient [R] at the current state, without an update.
  double meta_gradient(const HostBatch& b, float* grad, float* rate_grad);
  // Adapts every task of b (support sets only) from the current parameters with `steps` inner
  // steps and the given rates (host memory); adapted: [tasks, P] host memory.
  void adapt(const HostBatch& b, int steps, const float* rates, int64_t rates_len, int64_t step_stride,
             int64_t param_stride, float* adapted);
  // New multi-step loss weights w_0..w_S (S + 1 values).
  void set_weights(const std::vector<double>& weights);
  void get_state(float* out) const;      // [P + R]
  void set_state(const float* in);       // [P + R]; the moments are kept
  int64_t state_length() const;
  // "shared" or "global": where the last launch kept the tasks' working memory.
  const char* last_memory() const;
  // With MAML_CUDA_TIMING=1 in the environment at construction: the last meta-step's kernels
  // (tasks, reduction, loss and norm; from the device's clock), in microseconds; else -1.
  double kernel_us() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace maml::cuda
