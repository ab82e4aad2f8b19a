// fast_meta.cc: the fast float32 meta-batch drivers.
//
// Parameters (and per-parameter rates) are converted once per meta-batch into the fast layout
// of fast_mlp.hpp, every task runs core/meta.hpp's algorithm on FastNet in that layout, and the
// mean gradient is converted back once.
//
// Instruction sets: the per-task functions exist in three versions, each compiled with a GCC
// `target` attribute and `flatten` (which inlines the whole task computation into it): AVX-512
// (x86-64-v4) with 16-float vectors, AVX2 + FMA (x86-64-v3) with 8-float vectors, and baseline.
// The version is chosen once at run time from the CPU (fast_level). Each instantiates FastNet
// with its own kernel type, so no code compiled for one instruction set is shared with another.
// Elsewhere (not GCC on x86-64 Linux) one portable version is compiled.
#include "fast.hpp"

#include <cstdlib>

#include "fast_batch.hpp"
#include "fast_mlp.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MAML_X86_LEVELS 1
#define MAML_TARGET(t) __attribute__((target(t), flatten))
#define MAML_TARGET_NOINLINE(t) __attribute__((target(t), noinline, flatten))
#else
#define MAML_X86_LEVELS 0
#define MAML_TARGET(t) __attribute__((flatten))
#define MAML_TARGET_NOINLINE(t) __attribute__((noinline, flatten))
#endif

namespace maml::cpu {

namespace {

template <class K>
using Work = TaskWork<float, FastNet<K>>;
// Distinct kernel types per level, so that every level has its own instantiations.
struct KernelsBase : Kernels256 {};

}  // namespace

// The matrix kernel, once per level (not inlined into its many call sites: compile time).
#define MAML_GEMM_ARGS                                                                                        \
  const float *A, int64_t sr, int64_t sq, int64_t nrows, int64_t nred, const float *M, int64_t ldm, int64_t width, \
      float *Y, int64_t ldy, const float *init, bool accumulate
#define MAML_GEMM_CALL A, sr, sq, nrows, nred, M, ldm, width, Y, ldy, init, accumulate
template <>
MAML_TARGET_NOINLINE("arch=x86-64-v4") void gemm<Kernels512>(MAML_GEMM_ARGS) { gemm_body<Kernels512>(MAML_GEMM_CALL); }
template <>
MAML_TARGET_NOINLINE("arch=x86-64-v3") void gemm<Kernels256>(MAML_GEMM_ARGS) { gemm_body<Kernels256>(MAML_GEMM_CALL); }
template <>
__attribute__((noinline, flatten)) void gemm<KernelsBase>(MAML_GEMM_ARGS) { gemm_body<KernelsBase>(MAML_GEMM_CALL); }

namespace {

MAML_TARGET("arch=x86-64-v4")
double task_v4(const ModelSpec& fs, const MetaConfig& cfg, const float* theta, const Rates<float>& rates,
               const TaskData<float>& d, Work<Kernels512>& w, float* grad, float* rate_grad) {
  return task_meta_gradient(fs, cfg, theta, rates, d, w, grad, rate_grad);
}
MAML_TARGET("arch=x86-64-v3")
double task_v3(const ModelSpec& fs, const MetaConfig& cfg, const float* theta, const Rates<float>& rates,
               const TaskData<float>& d, Work<Kernels256>& w, float* grad, float* rate_grad) {
  return task_meta_gradient(fs, cfg, theta, rates, d, w, grad, rate_grad);
}
__attribute__((flatten)) double task_base(const ModelSpec& fs, const MetaConfig& cfg, const float* theta,
                                          const Rates<float>& rates, const TaskData<float>& d, Work<KernelsBase>& w,
                                          float* grad, float* rate_grad) {
  return task_meta_gradient(fs, cfg, theta, rates, d, w, grad, rate_grad);
}

MAML_TARGET("arch=x86-64-v4")
void inner_v4(const ModelSpec& fs, const MetaConfig& cfg, const float* theta, const Rates<float>& rates,
              const TaskData<float>& d, Work<Kernels512>& w) {
  w.reserve(fs.n_params, cfg.steps);
  inner_loop(fs, cfg, theta, rates, d.xs, d.ys, d.ns, w);
}
MAML_TARGET("arch=x86-64-v3")
void inner_v3(const ModelSpec& fs, const MetaConfig& cfg, const float* theta, const Rates<float>& rates,
              const TaskData<float>& d, Work<Kernels256>& w) {
  w.reserve(fs.n_params, cfg.steps);
  inner_loop(fs, cfg, theta, rates, d.xs, d.ys, d.ns, w);
}
__attribute__((flatten)) void inner_base(const ModelSpec& fs, const MetaConfig& cfg, const float* theta,
                                         const Rates<float>& rates, const TaskData<float>& d, Work<KernelsBase>& w) {
  w.reserve(fs.n_params, cfg.steps);
  inner_loop(fs, cfg, theta, rates, d.xs, d.ys, d.ns, w);
}

// dst += src, for the batch driver's reduction tree.
__attribute__((noinline)) MAML_TARGET("arch=x86-64-v4") void add_v4(float* __restrict d, const float* __restrict a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] += a[i];
}
__attribute__((noinline)) MAML_TARGET("arch=x86-64-v3") void add_v3(float* __restrict d, const float* __restrict a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] += a[i];
}
__attribute__((noinline)) void add_base(float* __restrict d, const float* __restrict a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] += a[i];
}

// 4 = x86-64-v4 (AVX-512), 3 = x86-64-v3 (AVX2 + FMA), 1 = baseline. MAML_CPU_LEVEL=1|3|4 caps it.
int fast_level() {
  static const int level = [] {
    int l = 1;
#if MAML_X86_LEVELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) l = 4;
    else if (__builtin_cpu_supports("x86-64-v3")) l = 3;
#endif
    if (const char* cap = std::getenv("MAML_CPU_LEVEL")) {
      const int c = std::atoi(cap);
      if (c >= 1 && c < l) l = c >= 3 ? 3 : 1;
    }
    return l;
  }();
  return level;
}

// Rates in the fast layout: per-parameter vectors are converted step by step.
struct FastRates {
  std::vector<float> data;
  Rates<float> rates;
  FastRates(const FastLayout& f, const ModelSpec& s, const Rates<float>& r, int steps) {
    rates = r;
    if (r.param_stride == 0) return;  // one rate per step: no layout
    const int64_t Pf = f.spec.n_params;
    const int64_t vectors = r.step_stride == 0 ? 1 : steps;
    data.assign(static_cast<size_t>(vectors * Pf), 0.0f);
    for (int64_t v = 0; v < vectors; ++v) f.to_fast(s, r.data + v * r.step_stride, data.data() + v * Pf);
    rates.data = data.data();
    rates.length = static_cast<int64_t>(data.size());
    rates.step_stride = r.step_stride == 0 ? 0 : Pf;
  }
};

}  // namespace

double fast_meta_gradient_batch(const ModelSpec& s, const MetaConfig& cfg, const float* theta,
                                const Rates<float>& rates, const BatchData<float>& batch, float* grad,
                                float* rate_grad) {
  const FastLayout f(s);
  const ModelSpec& fs = f.spec;
  static thread_local std::vector<float> theta_f, grad_f, rate_grad_f;  // reused across calls
  theta_f.resize(static_cast<size_t>(fs.n_params));
  f.to_fast(s, theta, theta_f.data());
  const FastRates fr(f, s, rates, cfg.steps);
  grad_f.resize(static_cast<size_t>(fs.n_params));
  rate_grad_f.assign(static_cast<size_t>(cfg.want_rate_grad ? fr.rates.length : 0), 0.0f);
  // (thread_local names inside the lambdas would mean the worker's own: pass a pointer)
  const float* th = theta_f.data();
  const int level = fast_level();
  const AddFn add = level == 4 ? add_v4 : level == 3 ? add_v3 : add_base;
  const double loss = fast_batch_with(
      fs, cfg, fr.rates, batch, grad_f.data(), rate_grad_f.data(), add, [&](const TaskData<float>& d, float* g, float* rg) {
        if (level == 4) {
          static thread_local Work<Kernels512> w;
          return task_v4(fs, cfg, th, fr.rates, d, w, g, rg);
        }
        if (level == 3) {
          static thread_local Work<Kernels256> w;
          return task_v3(fs, cfg, th, fr.rates, d, w, g, rg);
        }
        static thread_local Work<KernelsBase> w;
        return task_base(fs, cfg, th, fr.rates, d, w, g, rg);
      });
  f.from_fast(s, grad_f.data(), grad);
  if (cfg.want_rate_grad) {
    if (rates.param_stride == 0) {
      std::copy(rate_grad_f.begin(), rate_grad_f.end(), rate_grad);
    } else {
      const int64_t vectors = rates.step_stride == 0 ? 1 : cfg.steps;
      for (int64_t v = 0; v < vectors; ++v)
        f.from_fast(s, rate_grad_f.data() + v * fs.n_params, rate_grad + v * rates.step_stride);
    }
  }
  return loss;
}

void fast_adapt_batch(const ModelSpec& s, const MetaConfig& cfg, const float* theta, const Rates<float>& rates,
                      const BatchData<float>& batch, float* adapted) {
  const FastLayout f(s);
  const ModelSpec& fs = f.spec;
  std::vector<float> theta_f(static_cast<size_t>(fs.n_params));
  f.to_fast(s, theta, theta_f.data());
  const FastRates fr(f, s, rates, cfg.steps);
  const float* th = theta_f.data();
  const int64_t last = static_cast<int64_t>(cfg.steps) * fs.n_params;
  const int level = fast_level();
  adapt_batch_with(batch, s, [&](const TaskData<float>& d, float* out) {
    if (level == 4) {
      static thread_local Work<Kernels512> w;
      inner_v4(fs, cfg, th, fr.rates, d, w);
      f.from_fast(s, w.thetas.data() + last, out);
    } else if (level == 3) {
      static thread_local Work<Kernels256> w;
      inner_v3(fs, cfg, th, fr.rates, d, w);
      f.from_fast(s, w.thetas.data() + last, out);
    } else {
      static thread_local Work<KernelsBase> w;
      inner_base(fs, cfg, th, fr.rates, d, w);
      f.from_fast(s, w.thetas.data() + last, out);
    }
  }, adapted);
}

const char* fast_isa() {
  const int level = fast_level();
  return level == 4 ? "avx512" : level == 3 ? "avx2" : "baseline";
}

}  // namespace maml::cpu
