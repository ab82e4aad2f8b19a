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

#include <cmath>
#include <cstdlib>

#include "fast_batch.hpp"
#include "fast_mlp.hpp"
#include "lanes.hpp"
#include "target.hpp"


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
template <>
MAML_TARGET_NOINLINE("arch=x86-64-v4") void gemm_nt<Kernels512>(MAML_GEMM_NT_ARGS) { gemm_nt_body<Kernels512>(MAML_GEMM_NT_CALL); }
template <>
MAML_TARGET_NOINLINE("arch=x86-64-v3") void gemm_nt<Kernels256>(MAML_GEMM_NT_ARGS) { gemm_nt_body<Kernels256>(MAML_GEMM_NT_CALL); }
template <>
__attribute__((noinline, flatten)) void gemm_nt<KernelsBase>(MAML_GEMM_NT_ARGS) { gemm_nt_body<KernelsBase>(MAML_GEMM_NT_CALL); }

// The elementwise passes, once per level (see fast_mlp.hpp: not inlined into the task functions).
template <>
MAML_TARGET_NOINLINE("arch=x86-64-v4") void sub_scaled<Kernels512>(float* __restrict o, const float* __restrict x, float a, const float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] - a * y[i];
}
template <>
MAML_TARGET_NOINLINE("arch=x86-64-v3") void sub_scaled<Kernels256>(float* __restrict o, const float* __restrict x, float a, const float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] - a * y[i];
}
template <>
MAML_TARGET_NOINLINE("arch=x86-64-v4") void scale<Kernels512>(float* __restrict o, float a, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = a * x[i];
}
template <>
MAML_TARGET_NOINLINE("arch=x86-64-v3") void scale<Kernels256>(float* __restrict o, float a, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = a * x[i];
}

template <>
MAML_TARGET_NOINLINE("arch=x86-64-v4") void col_sums<Kernels512>(MAML_COL_SUMS_ARGS) { col_sums_body<vf16>(d, n, dpl, b, accumulate); }
template <>
MAML_TARGET_NOINLINE("arch=x86-64-v3") void col_sums<Kernels256>(MAML_COL_SUMS_ARGS) { col_sums_body<vf>(d, n, dpl, b, accumulate); }

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

// The forward pass in chunks of rows (bounded scratch memory however many rows), per level.
template <class K>
inline void forward_rows(const ModelSpec& fs, const float* theta, const float* x, int64_t n, float* out) {
  constexpr int64_t kChunk = 256;
  static thread_local FastWork<float> w;
  const int64_t d0 = fs.in_dim(), dL = fs.out_dim();
  for (int64_t r = 0; r < n; r += kChunk) {
    const int64_t m = std::min(kChunk, n - r);
    w.reserve(fs, m);
    FastNet<K>::forward(fs, w, w.act, theta, x + r * d0, m);
    std::copy(w.out.begin(), w.out.begin() + m * dL, out + r * dL);
  }
}
MAML_TARGET("arch=x86-64-v4")
void forward_v4(const ModelSpec& fs, const float* theta, const float* x, int64_t n, float* out) {
  forward_rows<Kernels512>(fs, theta, x, n, out);
}
MAML_TARGET("arch=x86-64-v3")
void forward_v3(const ModelSpec& fs, const float* theta, const float* x, int64_t n, float* out) {
  forward_rows<Kernels256>(fs, theta, x, n, out);
}
__attribute__((flatten)) void forward_base(const ModelSpec& fs, const float* theta, const float* x, int64_t n, float* out) {
  forward_rows<KernelsBase>(fs, theta, x, n, out);
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
// dst = src / b, for the batch driver's mean.
__attribute__((noinline)) MAML_TARGET("arch=x86-64-v4") void div_v4(float* __restrict d, const float* __restrict a, float b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = a[i] / b;
}
__attribute__((noinline)) MAML_TARGET("arch=x86-64-v3") void div_v3(float* __restrict d, const float* __restrict a, float b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = a[i] / b;
}
__attribute__((noinline)) void div_base(float* __restrict d, const float* __restrict a, float b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = a[i] / b;
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

// Which tasks run in lanes (fast_lanes.cc: 16 with AVX-512, 8 with AVX2). A lane group costs
// about as much whatever the number of its lanes in use, so a run of fewer than 3/8 of the
// lanes (6 of 16) with equal support and query sizes runs one task at a time instead; models
// above kMaxLaneParams fast-layout parameters (16 copies of them would no longer sit in a
// core's L2 cache) never use lanes, nor do groups whose working memory (lane_work_bytes:
// S + 1 parameter copies and S steps' passes, one per lane) would exceed kMaxLaneBytes.
// MAML_LANES=0 turns the lanes off (for comparisons).
constexpr int64_t kMaxLaneParams = 16384;
constexpr int64_t kMaxLaneBytes = INT64_C(32) << 20;  // kept per thread (thread_local) once used

// Tasks per lane group on this machine, or 0 (no lanes).
int lanes_for(const ModelSpec& fast_spec) {
  static const bool enabled = [] {
    const char* e = std::getenv("MAML_LANES");
    return !(e && e[0] == '0');
  }();
  if (!enabled || fast_spec.n_params > kMaxLaneParams) return 0;
  return lane_width(fast_level());
}

// The leaves of a batch whose tasks may run in lanes: runs of up to `lanes` consecutive tasks
// with the same support and query sizes. Depends on the batch only (determinism).
std::vector<Leaf> lane_leaves(const FastLayout& f, const MetaConfig& cfg, const BatchData<float>& batch, int64_t slot,
                              int lanes) {
  const int64_t B = batch.tasks, min_tasks = std::max(3, lanes * 3 / 8);
  const auto ns = [&](int64_t t) { return batch.s_off[t + 1] - batch.s_off[t]; };
  const auto nq = [&](int64_t t) { return batch.q_off[t + 1] - batch.q_off[t]; };
  std::vector<Leaf> leaves;
  for (int64_t t = 0; t < B;) {
    int64_t e = t + 1;
    while (e < B && e - t < lanes && ns(e) == ns(t) && nq(e) == nq(t)) ++e;
    const int64_t rows = std::max(ns(t), nq(t)) + lanes;  // (rounded up to a block: at most this)
    if (e - t >= min_tasks && lane_work_bytes(f, rows, cfg.steps, cfg.second_order(), lanes) <= kMaxLaneBytes) {
      leaves.push_back({t, e - t, true});
    } else {
      for (int64_t i = t; i < e; ++i) leaves.push_back({i, 1, false});
    }
    t = e;
  }
  if (static_cast<int64_t>(leaves.size()) > (INT64_C(32) << 20) / slot) return task_leaves(B, slot);  // memory: as core
  return leaves;
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
  const DivFn divide = level == 4 ? div_v4 : level == 3 ? div_v3 : div_base;
  const auto task_fn = [&](const TaskData<float>& d, float* g, float* rg) {
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
  };
  double loss;
  if (const int lanes = lanes_for(fs)) {
    const int64_t slot = fs.n_params + (cfg.want_rate_grad ? fr.rates.length : 0);
    loss = fast_batch_leaves(fs, cfg, fr.rates, batch.tasks, lane_leaves(f, cfg, batch, slot, lanes), grad_f.data(),
                             rate_grad_f.data(), add, divide, [&](const Leaf& leaf, float* out, float* rate_out) {
                               if (!leaf.lanes) return sum_tasks(fs, batch, leaf, out, rate_out, add, task_fn);
                               return lane_group_at(level, f, s, cfg, th, fr.rates, batch, leaf.begin,
                                                    static_cast<int>(leaf.count), out, rate_out);
                             });
  } else {
    loss = fast_batch_with(fs, cfg, fr.rates, batch, grad_f.data(), rate_grad_f.data(), add, divide, task_fn);
  }
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

void fast_forward(const ModelSpec& s, const float* theta, const float* x, int64_t n, float* out) {
  if (n <= 0) return;
  const FastLayout f(s);
  static thread_local std::vector<float> theta_f;
  theta_f.resize(static_cast<size_t>(f.spec.n_params));
  f.to_fast(s, theta, theta_f.data());
  const int level = fast_level();
  if (level == 4) forward_v4(f.spec, theta_f.data(), x, n, out);
  else if (level == 3) forward_v3(f.spec, theta_f.data(), x, n, out);
  else forward_base(f.spec, theta_f.data(), x, n, out);
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

// ---- the meta-optimizer (MetaLearner.step) ------------------------------------------------
// core/optim.hpp's clipping and Adam update, vectorized. Unvectorized, they took a fifth of a
// one-task step: Adam's loop could alias (p, m, v, grad) and ran 4-wide SSE divisions, and the
// norm was one serial chain of double additions. The norm here sums 8 interleaved partial sums
// (double, so the order changes it by ~1e-16 relative); Adam does the same operations per
// element (the compiler may fuse a multiply and an add: float32 rounding only).

namespace {

inline double sum_squares_body(const float* g, int64_t n) {
  double part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) part[j] += static_cast<double>(g[i + j]) * static_cast<double>(g[i + j]);
  for (; i < n; ++i) part[i & 7] += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

struct AdamArgs {
  float one_minus_b1, b2, one_minus_b2, step_size, bc2_sqrt, eps;
};

inline void adam_body(const AdamArgs& a, float* __restrict p, const float* __restrict grad, float* __restrict m,
                      float* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float mi = m[i] + a.one_minus_b1 * (g - m[i]);
    const float vi = v[i] * a.b2 + a.one_minus_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / a.bc2_sqrt + a.eps;
    p[i] -= a.step_size * (mi / denom);
  }
}

MAML_TARGET("arch=x86-64-v4") double sum_squares_v4(const float* g, int64_t n) { return sum_squares_body(g, n); }
MAML_TARGET("arch=x86-64-v3") double sum_squares_v3(const float* g, int64_t n) { return sum_squares_body(g, n); }
MAML_TARGET("arch=x86-64-v4")
void adam_v4(const AdamArgs& a, float* p, const float* g, float* m, float* v, int64_t n) { adam_body(a, p, g, m, v, n); }
MAML_TARGET("arch=x86-64-v3")
void adam_v3(const AdamArgs& a, float* p, const float* g, float* m, float* v, int64_t n) { adam_body(a, p, g, m, v, n); }

}  // namespace

double fast_clip_grad_norm(float* grad, int64_t n, double max_norm) {
  const int level = fast_level();
  const double sq = level == 4 ? sum_squares_v4(grad, n) : level == 3 ? sum_squares_v3(grad, n) : sum_squares_body(grad, n);
  const double norm = std::sqrt(sq);
  if (max_norm > 0.0) {
    double coef = max_norm / (norm + 1e-6);
    if (coef > 1.0) coef = 1.0;
    const float c = static_cast<float>(coef);
    for (int64_t i = 0; i < n; ++i) grad[i] *= c;
  }
  return norm;
}

void fast_optimizer_step(const OptimConfig& c, float* p, float* grad, float* m, float* v, int64_t n, int64_t t) {
  // distinct arrays are required below (restrict); weight decay and SGD take core's loops
  if (c.kind != 0 || c.weight_decay != 0.0 || p == m || p == v || m == v || grad == p || grad == m || grad == v)
    return optimizer_step(c, p, grad, m, v, n, t);
  MAML_ASSERT(t >= 1);
  AdamArgs a;  // the same constants as core's
  a.one_minus_b1 = static_cast<float>(1.0 - c.beta1);
  a.b2 = static_cast<float>(c.beta2);
  a.one_minus_b2 = static_cast<float>(1.0 - c.beta2);
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
  a.step_size = static_cast<float>(c.lr / bc1);
  a.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  a.eps = static_cast<float>(c.eps);
  const int level = fast_level();
  if (level == 4) adam_v4(a, p, grad, m, v, n);
  else if (level == 3) adam_v3(a, p, grad, m, v, n);
  else adam_body(a, p, grad, m, v, n);
}

const char* fast_isa() {
  const int level = fast_level();
  return level == 4 ? "avx512" : level == 3 ? "avx2" : "baseline";
}

}  // namespace maml::cpu
