// fast_meta.cc: the fast float32 meta-batch drivers.
//
// Parameters (and per-parameter rates) are converted once per meta-batch into the fast layout
// of fast_mlp.hpp, every task runs core/meta.hpp's algorithm on FastNet in that layout, and the
// mean gradient is converted back once. The per-task functions are compiled three times (GCC
// target_clones: x86-64-v4 with AVX-512, x86-64-v3 with AVX2 and FMA, baseline) and `flatten`
// inlines the whole task computation into each clone, so one portable binary runs vectorized
// code on every x86-64 machine. Elsewhere they are compiled once.
#include "fast.hpp"

#include "fast_mlp.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MAML_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#define MAML_HAVE_CLONES 1
#else
#define MAML_CLONES __attribute__((flatten))
#define MAML_HAVE_CLONES 0
#endif

namespace maml::cpu {

using FastTaskWork = TaskWork<float, FastNet>;

MAML_CLONES double fast_task(const ModelSpec& fs, const MetaConfig& cfg, const float* theta, const Rates<float>& rates,
                             const TaskData<float>& d, FastTaskWork& w, float* grad, float* rate_grad) {
  return task_meta_gradient(fs, cfg, theta, rates, d, w, grad, rate_grad);
}

MAML_CLONES void fast_inner(const ModelSpec& fs, const MetaConfig& cfg, const float* theta, const Rates<float>& rates,
                            const TaskData<float>& d, FastTaskWork& w) {
  w.reserve(fs.n_params, cfg.steps);
  inner_loop(fs, cfg, theta, rates, d.xs, d.ys, d.ns, w);
}

namespace {

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
  // (thread_local names inside the lambda would mean the worker's own: pass a pointer)
  const float* th = theta_f.data();
  const double loss = meta_gradient_batch_with(fs, cfg, fr.rates, batch, grad_f.data(), rate_grad_f.data(),
                                               [&](const TaskData<float>& d, float* g, float* rg) {
                                                 static thread_local FastTaskWork w;
                                                 return fast_task(fs, cfg, th, fr.rates, d, w, g, rg);
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
  adapt_batch_with(batch, s, [&](const TaskData<float>& d, float* out) {
    static thread_local FastTaskWork w;
    fast_inner(fs, cfg, theta_f.data(), fr.rates, d, w);
    f.from_fast(s, w.thetas.data() + static_cast<int64_t>(cfg.steps) * fs.n_params, out);
  }, adapted);
}

const char* fast_isa() {
#if MAML_HAVE_CLONES
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
#endif
  return "baseline";
}

}  // namespace maml::cpu
