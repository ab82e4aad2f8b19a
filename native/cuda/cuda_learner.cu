// cuda_learner.cu: CudaLearner (cuda_learner.hpp), the device state and the host side of a
// meta-step: batch upload through a pinned buffer on the learner's stream, the kernels of
// meta_kernels.cu, one 16-byte read-back (loss, gradient norm) per step.
#include "cuda_learner.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cuda_check.hpp"
#include "meta_kernels.hpp"
#include "plan.hpp"

namespace maml::cuda {
namespace {

// Threads per task block: 256, or MAML_CUDA_THREADS (a multiple of 32 in [32, 1024]) for
// experiments (bench/gpu/gpu_check.cu times 64, 128 and 256); capped by what the task kernels
// were compiled for (max_task_threads(): 256, their launch bounds).
int block_threads() {
  const char* env = std::getenv("MAML_CUDA_THREADS");
  const int n = env ? std::atoi(env) : 256;
  return n >= 32 && n <= 1024 && n % 32 == 0 ? n : 256;
}

// The meta-step kernel variant: 1, or MAML_CUDA_KERNEL=3 (the wide layers' products with all rows
// in registers, weight-gradient tiles specialised per pass; an experiment, bench/NOTES.md entry
// 25), or MAML_CUDA_KERNEL=4 (networks that do not fit one block: a cluster of blocks per task,
// task_cluster.hpp; an experiment, entry 26). Results within float32 rounding of each other.
int kernel_variant() {
  const char* env = std::getenv("MAML_CUDA_KERNEL");
  const int v = env ? std::atoi(env) : 1;
  return v == 3 || v == 4 ? v : 1;
}

// Bytes of global working memory for one launch of tasks: 2 GiB, or MAML_CUDA_SCRATCH_BYTES (a
// positive integer; tests set it small to run a few tasks per launch).
int64_t scratch_budget() {
  const char* env = std::getenv("MAML_CUDA_SCRATCH_BYTES");
  const long long n = env ? std::atoll(env) : 0;
  return n > 0 ? static_cast<int64_t>(n) : INT64_C(1) << 31;
}

// A device allocation that grows (never shrinks) on demand.
template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t cap = 0;
  T* grow(size_t n) {
    if (n <= cap && ptr) return ptr;
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    cap = 0;
    CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr), std::max<size_t>(n, 1) * sizeof(T)));
    cap = n;
    return ptr;
  }
  void release() {
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    cap = 0;
  }
};

// Page-locked host memory, so that the batch copy is a true asynchronous DMA.
struct PinnedBuffer {
  char* ptr = nullptr;
  size_t cap = 0;
  char* grow(size_t n) {
    if (n <= cap && ptr) return ptr;
    if (ptr) cudaFreeHost(ptr);
    ptr = nullptr;
    cap = 0;
    CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&ptr), std::max<size_t>(n, 1)));
    cap = n;
    return ptr;
  }
  void release() {
    if (ptr) cudaFreeHost(ptr);
    ptr = nullptr;
    cap = 0;
  }
};

size_t align16(size_t n) { return (n + 15) & ~static_cast<size_t>(15); }

}  // namespace

struct CudaLearner::Impl {
  int device = 0;
  cudaStream_t stream = nullptr;
  ModelSpec spec;
  KModel m;
  MetaConfig cfg;
  OptimConfig opt;
  int64_t P = 0, N = 0;  // parameters; state length P + R
  bool learn_rates = false;
  int64_t step_stride = 0, param_stride = 0, rates_len = 0;
  const char* memory = "none";
  int threads = 256;
  int64_t shared_bytes = 0;  // the device's per-block limit of dynamic shared memory
  // MAML_CUDA_TIMING=1: CUDA events around each meta-step's kernels (kernel_us()).
  cudaEvent_t ev0 = nullptr, ev1 = nullptr;
  double kernel_us = -1;
  // Recorded after each batch copy out of `pinned`: upload() waits for it before it writes the
  // pinned buffer again (a call that threw after its copy was enqueued may leave it running).
  cudaEvent_t upload_done = nullptr;

  DeviceBuffer<float> state, m1, m2, grad, fixed_rates, weights, slots, partial, losses, scratch, adapted, adapt_rates;
  DeviceBuffer<double> out2;
  DeviceBuffer<char> batch;
  PinnedBuffer pinned, pinned_out;

  void use_device() const { CUDA_CHECK(cudaSetDevice(device)); }

  // Copies b into the pinned buffer, then to the device; fills a's batch pointers.
  void upload(const HostBatch& b, KArgs<float>& a) {
    const int64_t B = b.tasks, d0 = spec.in_dim(), dL = spec.out_dim();
    const int64_t rs = b.s_off[B], rq = b.q_off[B];
    const bool labels = spec.loss == Loss::CrossEntropy;
    struct Part {
      const void* src;
      size_t bytes;
      size_t at = 0;
    };
    Part parts[6] = {
        {b.s_off, sizeof(int64_t) * static_cast<size_t>(B + 1)},
        {b.q_off, sizeof(int64_t) * static_cast<size_t>(B + 1)},
        {b.xs, sizeof(float) * static_cast<size_t>(rs * d0)},
        {labels ? static_cast<const void*>(b.ys_lab) : b.ys, labels ? sizeof(int32_t) * rs : sizeof(float) * rs * dL},
        {b.xq, b.xq ? sizeof(float) * static_cast<size_t>(rq * d0) : 0},
        {labels ? static_cast<const void*>(b.yq_lab) : b.yq,
         (labels ? b.yq_lab != nullptr : b.yq != nullptr) ? (labels ? sizeof(int32_t) * rq : sizeof(float) * rq * dL) : 0},
    };
    size_t total = 0;
    for (Part& p : parts) {
      p.at = total;
      total += align16(p.bytes);
    }
    CUDA_CHECK(cudaEventSynchronize(upload_done));  // the last copy out of `pinned` has finished
    char* host = pinned.grow(total);
    for (const Part& p : parts)
      if (p.bytes) std::memcpy(host + p.at, p.src, p.bytes);
    char* dev = batch.grow(total);
    CUDA_CHECK(cudaMemcpyAsync(dev, host, total, cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaEventRecord(upload_done, stream));
    const auto at = [&](int i) { return parts[i].bytes ? dev + parts[i].at : nullptr; };
    a.s_off = reinterpret_cast<const int64_t*>(at(0));
    a.q_off = reinterpret_cast<const int64_t*>(at(1));
    a.xs = reinterpret_cast<const float*>(at(2));
    a.ys = labels ? nullptr : reinterpret_cast<const float*>(at(3));
    a.ys_lab = labels ? reinterpret_cast<const int32_t*>(at(3)) : nullptr;
    a.xq = reinterpret_cast<const float*>(at(4));
    a.yq = labels ? nullptr : reinterpret_cast<const float*>(at(5));
    a.yq_lab = labels ? reinterpret_cast<const int32_t*>(at(5)) : nullptr;
  }

  // Where the tasks' working memory goes: shared memory if a block's fits, else global scratch
  // for at most scratch_bytes of tasks at a time (at least one task; launches run in chunks).
  int64_t scratch_bytes = 0;
  // cluster_capacity(k, threads), remembered per (cluster size, shared memory): the query costs a
  // driver call, and the answer is the same for every step of a run
  std::vector<std::pair<int64_t, int>> capacities;
  int capacity(const KCluster& k) {
    const int64_t key = k.total * (kMaxCluster + 1) + k.c;
    for (const auto& kv : capacities)
      if (kv.first == key) return kv.second;
    const int n = cluster_capacity(k, threads);
    capacities.emplace_back(key, n);
    return n;
  }
  // meta: a meta-step's launch (variant 4 applies to it; adaptations keep the one-block kernels)
  TaskLaunch placement(const Layout& lay, const KConfig& kc, int64_t tasks, bool meta) {
    TaskLaunch how;
    how.threads = threads;
    how.variant = kernel_variant();
    how.shared = lay.total * static_cast<int64_t>(sizeof(float)) <= shared_bytes;
    if (!how.shared && how.variant == 4 && meta) {
      // variant 4: the smallest cluster whose blocks' shared memory holds a task's slices, where
      // the device can launch it (else the global-memory kernel of variant 1)
      for (int c = 2; c <= kMaxCluster; c *= 2) {
        const KCluster k = plan_cluster(m, kc, lay.n_max, threads, c);
        if (k.total * static_cast<int64_t>(sizeof(float)) > shared_bytes || capacity(k) < 1) continue;
        how.cluster = k;
        const int64_t per_task = std::max<int64_t>(k.g_total, 1) * static_cast<int64_t>(sizeof(float));
        // at most 2^31 − 1 blocks per launch
        how.chunk = static_cast<int>(std::clamp<int64_t>(scratch_bytes / per_task, 1, std::min<int64_t>(tasks, INT32_MAX / c)));
        how.scratch = scratch.grow(static_cast<size_t>(checked_mul(how.chunk, std::max<int64_t>(k.g_total, 1), "GPU scratch")));
        memory = "cluster";
        return how;
      }
      how.variant = 1;
    }
    if (!how.shared) {
      const int64_t per_task = lay.total * static_cast<int64_t>(sizeof(float));
      how.chunk = static_cast<int>(std::clamp<int64_t>(scratch_bytes / per_task, 1, tasks));
      how.scratch = scratch.grow(static_cast<size_t>(checked_mul(how.chunk, lay.total, "GPU scratch")));
    }
    memory = how.shared ? "shared" : "global";
    return how;
  }

  // Launches the meta-gradient of b at the current state: d grad [N] (rate part zero when the
  // rates are not learned), out2 = {mean loss, ||grad||}; returns them after one sync.
  void meta_gradient(const HostBatch& b, double* loss, double* norm) {
    const int64_t B = b.tasks;
    MAML_CHECK(B >= 1 && B < (INT64_C(1) << 31), InvalidArgument, "a meta-batch needs 1 to 2^31 - 1 tasks");
    KArgs<float> a;
    upload(b, a);
    Rates<float> r;
    r.step_stride = step_stride;
    r.param_stride = param_stride;
    r.length = rates_len;
    const KConfig kc = make_kconfig(cfg, r);
    const int64_t slot = P + kc.R;
    a.theta = state.ptr;
    a.rates = learn_rates ? state.ptr + P : fixed_rates.ptr;
    a.weights = weights.ptr;
    a.slots = slots.grow(static_cast<size_t>(checked_mul(B, slot, "meta-gradient slots")));
    a.losses = losses.grow(static_cast<size_t>(B));
    const Layout lay = plan_layout(m, kc, max_rows(m, b.s_off, b.q_off, B), threads);
    const TaskLaunch how = placement(lay, kc, B, true);
    if (ev0) CUDA_CHECK(cudaEventRecord(ev0, stream));
    launch_meta_tasks(m, kc, a, static_cast<int>(B), lay, how, stream);
    float* part = partial.grow(static_cast<size_t>(checked_mul(reduce_chunks(B), slot, "reduction scratch")));
    launch_reduce(a.slots, slot, B, part, grad.ptr, stream);
    if (N > slot) CUDA_CHECK(cudaMemsetAsync(grad.ptr + slot, 0, sizeof(float) * static_cast<size_t>(N - slot), stream));
    launch_finish(a.losses, B, grad.ptr, N, out2.ptr, stream);
    if (ev1) CUDA_CHECK(cudaEventRecord(ev1, stream));
    double* h = reinterpret_cast<double*>(pinned_out.ptr);
    CUDA_CHECK(cudaMemcpyAsync(h, out2.ptr, 2 * sizeof(double), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    if (ev0 && ev1) {
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, ev0, ev1));
      kernel_us = 1e3 * ms;
    }
    *loss = h[0];
    *norm = h[1];
  }

  void release() {
    for (DeviceBuffer<float>* d : {&state, &m1, &m2, &grad, &fixed_rates, &weights, &slots, &partial, &losses, &scratch,
                                   &adapted, &adapt_rates})
      d->release();
    out2.release();
    batch.release();
    pinned.release();
    pinned_out.release();
    if (ev0) cudaEventDestroy(ev0);
    if (ev1) cudaEventDestroy(ev1);
    ev0 = ev1 = nullptr;
    if (upload_done) cudaEventDestroy(upload_done);
    upload_done = nullptr;
    if (stream) cudaStreamDestroy(stream);
    stream = nullptr;
  }
};

CudaLearner::CudaLearner(const LearnerConfig& c) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  MAML_CHECK(count > 0, NoDevice, "no CUDA device: the CUDA runtime reports 0 devices");
  s.device = 0;
  try {
    s.use_device();
    s.spec = c.spec;
    s.m = make_kmodel(c.spec);
    s.cfg = c.cfg;
    s.opt = c.opt;
    s.P = c.spec.n_params;
    s.N = static_cast<int64_t>(c.state.size());
    s.learn_rates = s.N > s.P;
    s.step_stride = c.rate_step_stride;
    s.param_stride = c.rate_param_stride;
    s.rates_len = s.learn_rates ? s.N - s.P : static_cast<int64_t>(c.fixed_rates.size());
    MAML_CHECK(s.N >= s.P && s.rates_len >= 1, ShapeMismatch, "CUDA learner: state or rates of the wrong length");
    CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&s.upload_done, cudaEventDisableTiming));
    // at most what the kernels' register use allows (a multiple of 32: the layout's reduction
    // buffer and the block size must agree, so this is fixed for the learner's life)
    s.threads = std::max(32, std::min(block_threads(), max_task_threads()) / 32 * 32);
    s.shared_bytes = shared_limit(s.device);
    s.scratch_bytes = scratch_budget();
    const char* timing = std::getenv("MAML_CUDA_TIMING");
    if (timing && std::strcmp(timing, "1") == 0) {
      CUDA_CHECK(cudaEventCreate(&s.ev0));
      CUDA_CHECK(cudaEventCreate(&s.ev1));
    }
    const size_t n = static_cast<size_t>(s.N);
    s.state.grow(n);
    s.m1.grow(n);
    s.m2.grow(n);
    s.grad.grow(n);
    s.out2.grow(2);
    s.pinned_out.grow(2 * sizeof(double));
    CUDA_CHECK(cudaMemcpyAsync(s.state.ptr, c.state.data(), n * sizeof(float), cudaMemcpyHostToDevice, s.stream));
    CUDA_CHECK(cudaMemsetAsync(s.m1.ptr, 0, n * sizeof(float), s.stream));
    CUDA_CHECK(cudaMemsetAsync(s.m2.ptr, 0, n * sizeof(float), s.stream));
    std::vector<float> w(c.cfg.weights.begin(), c.cfg.weights.end());
    s.weights.grow(w.size());
    CUDA_CHECK(cudaMemcpyAsync(s.weights.ptr, w.data(), w.size() * sizeof(float), cudaMemcpyHostToDevice, s.stream));
    if (!s.learn_rates) {
      s.fixed_rates.grow(c.fixed_rates.size());
      CUDA_CHECK(cudaMemcpyAsync(s.fixed_rates.ptr, c.fixed_rates.data(), c.fixed_rates.size() * sizeof(float),
                                 cudaMemcpyHostToDevice, s.stream));
    }
    CUDA_CHECK(cudaStreamSynchronize(s.stream));  // the host vectors above are pageable and temporary
  } catch (...) {
    s.release();
    throw;
  }
}

CudaLearner::~CudaLearner() {
  if (impl_) {
    cudaSetDevice(impl_->device);
    if (impl_->stream) cudaStreamSynchronize(impl_->stream);
    impl_->release();
    cudaGetLastError();  // a destructor reports nothing
  }
}

StepResult CudaLearner::step(const HostBatch& b, int64_t t) {
  Impl& s = *impl_;
  MAML_ASSERT(t >= 1);
  s.use_device();
  StepResult r;
  s.meta_gradient(b, &r.loss, &r.grad_norm);
  MAML_CHECK(std::isfinite(r.grad_norm) && std::isfinite(r.loss), NonFinite,
             "the meta-gradient is not finite (loss " + std::to_string(r.loss) +
                 "); the parameters were left unchanged. Lower the learning rates or clip the gradient.");
  const OptimConfig& o = s.opt;
  UpdateArgs u;
  u.kind = o.kind;
  if (o.clip_norm > 0.0) u.clip = static_cast<float>(std::min(1.0, o.clip_norm / (r.grad_norm + 1e-6)));
  u.wd = static_cast<float>(o.weight_decay);
  u.one_minus_b1 = static_cast<float>(1.0 - o.beta1);
  u.b2 = static_cast<float>(o.beta2);
  u.one_minus_b2 = static_cast<float>(1.0 - o.beta2);
  u.step_size = static_cast<float>(o.lr / (1.0 - std::pow(o.beta1, static_cast<double>(t))));
  u.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(t))));
  u.eps = static_cast<float>(o.eps);
  u.lr = static_cast<float>(o.lr);
  u.momentum = static_cast<float>(o.momentum);
  u.damp = static_cast<float>(1.0 - o.dampening);
  u.nesterov = o.nesterov ? 1 : 0;
  u.first = t == 1 ? 1 : 0;
  launch_update(u, s.state.ptr, s.grad.ptr, s.m1.ptr, s.m2.ptr, s.N, s.stream);
  return r;
}

double CudaLearner::meta_gradient(const HostBatch& b, float* grad, float* rate_grad) {
  Impl& s = *impl_;
  s.use_device();
  double loss = 0, norm = 0;
  s.meta_gradient(b, &loss, &norm);
  CUDA_CHECK(cudaMemcpyAsync(grad, s.grad.ptr, sizeof(float) * static_cast<size_t>(s.P), cudaMemcpyDeviceToHost, s.stream));
  if (rate_grad && s.N > s.P)
    CUDA_CHECK(cudaMemcpyAsync(rate_grad, s.grad.ptr + s.P, sizeof(float) * static_cast<size_t>(s.N - s.P),
                               cudaMemcpyDeviceToHost, s.stream));
  CUDA_CHECK(cudaStreamSynchronize(s.stream));
  return loss;
}

void CudaLearner::adapt(const HostBatch& b, int steps, const float* rates, int64_t rates_len, int64_t step_stride,
                        int64_t param_stride, float* out) {
  Impl& s = *impl_;
  s.use_device();
  const int64_t B = b.tasks;
  MAML_CHECK(B >= 1 && B < (INT64_C(1) << 31), InvalidArgument, "adaptation needs 1 to 2^31 - 1 tasks");
  KArgs<float> a;
  s.upload(b, a);
  float* dr = s.adapt_rates.grow(static_cast<size_t>(rates_len));
  CUDA_CHECK(cudaMemcpyAsync(dr, rates, sizeof(float) * static_cast<size_t>(rates_len), cudaMemcpyHostToDevice, s.stream));
  KConfig kc;
  kc.algo = static_cast<int>(s.cfg.algo);
  kc.steps = steps;
  kc.rate_step_stride = step_stride;
  kc.rate_param_stride = param_stride;
  a.theta = s.state.ptr;
  a.rates = dr;
  a.adapted = s.adapted.grow(static_cast<size_t>(checked_mul(B, s.P, "adapted parameters")));
  const Layout lay = plan_adapt_layout(s.m, max_rows(s.m, b.s_off, b.q_off, B), s.threads);
  launch_adapt_tasks(s.m, kc, a, static_cast<int>(B), lay, s.placement(lay, kc, B, false), s.stream);
  CUDA_CHECK(cudaMemcpyAsync(out, a.adapted, sizeof(float) * static_cast<size_t>(B * s.P), cudaMemcpyDeviceToHost,
                             s.stream));
  CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

void CudaLearner::set_weights(const std::vector<double>& w) {
  Impl& s = *impl_;
  MAML_CHECK(w.size() == s.cfg.weights.size(), ShapeMismatch, "weights: expected one per inner step and one more");
  s.use_device();
  const std::vector<float> f(w.begin(), w.end());
  CUDA_CHECK(cudaMemcpyAsync(s.weights.ptr, f.data(), f.size() * sizeof(float), cudaMemcpyHostToDevice, s.stream));
  CUDA_CHECK(cudaStreamSynchronize(s.stream));
  s.cfg.weights = w;
}

void CudaLearner::get_state(float* out) const {
  const Impl& s = *impl_;
  s.use_device();
  CUDA_CHECK(cudaMemcpyAsync(out, s.state.ptr, sizeof(float) * static_cast<size_t>(s.N), cudaMemcpyDeviceToHost, s.stream));
  CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

void CudaLearner::set_state(const float* in) {
  Impl& s = *impl_;
  s.use_device();
  CUDA_CHECK(cudaMemcpyAsync(s.state.ptr, in, sizeof(float) * static_cast<size_t>(s.N), cudaMemcpyHostToDevice, s.stream));
  CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

int64_t CudaLearner::state_length() const { return impl_->N; }
const char* CudaLearner::last_memory() const { return impl_->memory; }
double CudaLearner::kernel_us() const { return impl_->kernel_us; }

}  // namespace maml::cuda
