// fast_fewshot.cc: the few-shot learners' meta-batch with the embedding on the fast kernels.
//
// The embedding's and the relation module's parameters are converted once per meta-batch into
// fast_mlp.hpp's layout; every task runs core/fewshot_batch.hpp's fewshot_task with
// FastEmbedding and FastRelation (FastNet passes) and accumulates the gradient in the fast
// layout, converted back once. The heads run the core's code.
//
// Instruction sets, as fast_meta.cc: the per-task function exists in three versions compiled
// with GCC `target` and `flatten` (AVX-512 with 16-float vectors, AVX2 + FMA, baseline), the
// level chosen once from the CPU (fast_isa(), capped by MAML_CPU_LEVEL). The AVX-512 and AVX2
// matrix kernels are fast_meta.cc's gemm<Kernels512> and gemm<Kernels256>; the baseline one
// is this file's own kernel type, so that no code is shared across levels.
#include "fast_fewshot.hpp"

#include <algorithm>
#include <cstring>

#include "fast.hpp"
#include "fast_mlp.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MAML_FS_TARGET(t) __attribute__((target(t), flatten))
#else
#define MAML_FS_TARGET(t) __attribute__((flatten))
#endif

namespace maml::cpu {

namespace {
struct FewShotKernelsBase : Kernels256 {};
}  // namespace

#define MAML_FS_GEMM_ARGS                                                                                      \
  const float *A, int64_t sr, int64_t sq, int64_t nrows, int64_t nred, const float *M, int64_t ldm, int64_t width, \
      float *Y, int64_t ldy, const float *init, bool accumulate
// defined in fast_meta.cc
template <>
void gemm<Kernels512>(MAML_FS_GEMM_ARGS);
template <>
void gemm<Kernels256>(MAML_FS_GEMM_ARGS);
template <>
__attribute__((noinline, flatten)) void gemm<FewShotKernelsBase>(MAML_FS_GEMM_ARGS) {
  gemm_body<FewShotKernelsBase>(A, sr, sq, nrows, nred, M, ldm, width, Y, ldy, init, accumulate);
}

namespace {

// The embedding policy of fewshot_task on FastNet: parameters and gradients in the fast layout.
template <class K>
struct FastEmbedding {
  const ModelSpec* spec = nullptr;  // FastLayout::spec
  const float* phi = nullptr;
  FastWork<float> work[2];

  void bind(const ModelSpec& s, const float* p) {
    spec = &s;
    phi = p;
  }
  int64_t n_params() const { return spec->n_params; }
  const float* forward(int which, const float* x, int64_t n) {
    FastWork<float>& w = work[which];
    w.reserve(*spec, n);
    FastNet<K>::forward(*spec, w, w.act, phi, x, n);
    return w.out.data();  // [n, D] compact
  }
  void backward(int which, const float* x, int64_t n, const float* de, float* grad) {
    FastWork<float>& w = work[which];
    std::copy(de, de + n * spec->out_dim(), w.dout.data());
    FastNet<K>::backward(*spec, w, w.act, phi, nullptr, x, n, grad, nullptr, nullptr, nullptr);
  }
};

// The relation module on FastNet; its input gradient dx = dz_1 W_1 from the dz_1 that
// FastNet::backward leaves in w.dz (padded [n, dp_1]) and WT_1 [d0, dp_1], by dot products.
template <class K>
struct FastRelation {
  const ModelSpec* spec = nullptr;  // FastLayout::spec
  const float* psi = nullptr;
  FastWork<float> work;

  void bind(const ModelSpec& s, const float* p) {
    spec = &s;
    psi = p;
  }
  int64_t n_params() const { return spec->n_params; }
  const float* forward(const float* x, int64_t n) {
    work.reserve(*spec, n);
    FastNet<K>::forward(*spec, work, work.act, psi, x, n);
    return work.out.data();  // [n, 1]
  }
  void backward(const float* x, int64_t n, const float* dout, float* dpsi, float* dx) {
    std::copy(dout, dout + n, work.dout.data());
    FastNet<K>::backward(*spec, work, work.act, psi, nullptr, x, n, dpsi, nullptr, nullptr, nullptr);
    const int64_t dp1 = work.dp[1];
    gemm_nt<K>(work.dz.data(), dp1, n, psi + spec->w_off[1], dp1, spec->dims[0], dp1, dx, spec->dims[0], false);
  }
};

template <class K>
using Emb = FastEmbedding<K>;
template <class K>
using Rel = FastRelation<K>;

MAML_FS_TARGET("arch=x86-64-v4")
double task_v4(const FewShotSpec& fs, const FewShotTask<float>& t, Emb<Kernels512>& e, Rel<Kernels512>& r,
               FewShotWork<float>& w, float* ge, float* gr, double* acc) {
  return fewshot_task(fs, t, e, r, w, ge, gr, acc);
}
MAML_FS_TARGET("arch=x86-64-v3")
double task_v3(const FewShotSpec& fs, const FewShotTask<float>& t, Emb<Kernels256>& e, Rel<Kernels256>& r,
               FewShotWork<float>& w, float* ge, float* gr, double* acc) {
  return fewshot_task(fs, t, e, r, w, ge, gr, acc);
}
__attribute__((flatten)) double task_base(const FewShotSpec& fs, const FewShotTask<float>& t,
                                          Emb<FewShotKernelsBase>& e, Rel<FewShotKernelsBase>& r,
                                          FewShotWork<float>& w, float* ge, float* gr, double* acc) {
  return fewshot_task(fs, t, e, r, w, ge, gr, acc);
}

int level() {
  static const int l = [] {
    const char* isa = fast_isa();
    return std::strcmp(isa, "avx512") == 0 ? 4 : std::strcmp(isa, "avx2") == 0 ? 3 : 1;
  }();
  return l;
}

}  // namespace

double fast_fewshot_batch(const FewShotSpec& fs, const float* theta, const FewShotBatch<float>& b, float* grad,
                          double* task_loss, double* task_acc) {
  const FastLayout fe(fs.emb);
  const bool relation = fs.relation();
  const FastLayout fr(relation ? fs.rel : fs.emb);  // (a stand-in when there is no relation module)
  const ModelSpec& es = fe.spec;
  const ModelSpec& rs = fr.spec;
  const int64_t Pe = fs.emb.n_params, Pfe = es.n_params, Pfr = relation ? rs.n_params : 0;
  static thread_local std::vector<float> params_f, grad_f;  // reused across calls
  params_f.resize(static_cast<size_t>(Pfe + Pfr));
  fe.to_fast(fs.emb, theta, params_f.data());
  if (relation) fr.to_fast(fs.rel, theta + Pe, params_f.data() + Pfe);
  grad_f.resize(static_cast<size_t>(Pfe + Pfr));
  // (thread_local names inside the lambda would be the worker's own: pass pointers)
  const float* phi = params_f.data();
  const float* psi = params_f.data() + Pfe;
  const int lv = level();
  const double loss = fewshot_batch_with(
      fs, b, Pfe + Pfr, grad ? grad_f.data() : nullptr, task_loss, task_acc,
      [&](const FewShotTask<float>& t, float* g, double* acc) {
        static thread_local FewShotWork<float> w;
        float* gr = g ? g + Pfe : nullptr;
        if (lv == 4) {
          static thread_local Emb<Kernels512> e;
          static thread_local Rel<Kernels512> r;
          e.bind(es, phi);
          r.bind(rs, psi);
          return task_v4(fs, t, e, r, w, g, gr, acc);
        }
        if (lv == 3) {
          static thread_local Emb<Kernels256> e;
          static thread_local Rel<Kernels256> r;
          e.bind(es, phi);
          r.bind(rs, psi);
          return task_v3(fs, t, e, r, w, g, gr, acc);
        }
        static thread_local Emb<FewShotKernelsBase> e;
        static thread_local Rel<FewShotKernelsBase> r;
        e.bind(es, phi);
        r.bind(rs, psi);
        return task_base(fs, t, e, r, w, g, gr, acc);
      });
  if (grad) {
    fe.from_fast(fs.emb, grad_f.data(), grad);
    if (relation) fr.from_fast(fs.rel, grad_f.data() + Pfe, grad + Pe);
  }
  return loss;
}

}  // namespace maml::cpu
