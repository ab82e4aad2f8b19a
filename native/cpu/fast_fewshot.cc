// fast_fewshot.cc: the few-shot learners' meta-batch with the embedding on the fast kernels.
//
// The embedding's parameters are converted once per meta-batch into fast_mlp.hpp's layout;
// every task runs core/fewshot_batch.hpp's fewshot_task with FastEmbedding (FastNet passes)
// and accumulates the embedding's gradient in the fast layout, converted back once. The
// relation module's parameters and gradient stay in PyTorch's layout (the core's plain code).
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

template <class K>
using Emb = FastEmbedding<K>;

MAML_FS_TARGET("arch=x86-64-v4")
double task_v4(const FewShotSpec& fs, const float* theta, const FewShotTask<float>& t, Emb<Kernels512>& e,
               FewShotWork<float>& w, float* ge, float* gr, double* acc) {
  return fewshot_task(fs, theta, t, e, w, ge, gr, acc);
}
MAML_FS_TARGET("arch=x86-64-v3")
double task_v3(const FewShotSpec& fs, const float* theta, const FewShotTask<float>& t, Emb<Kernels256>& e,
               FewShotWork<float>& w, float* ge, float* gr, double* acc) {
  return fewshot_task(fs, theta, t, e, w, ge, gr, acc);
}
__attribute__((flatten)) double task_base(const FewShotSpec& fs, const float* theta, const FewShotTask<float>& t,
                                          Emb<FewShotKernelsBase>& e, FewShotWork<float>& w, float* ge, float* gr,
                                          double* acc) {
  return fewshot_task(fs, theta, t, e, w, ge, gr, acc);
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
  const FastLayout f(fs.emb);
  const ModelSpec& es = f.spec;
  const int64_t Pf = es.n_params, Pe = fs.emb.n_params, Pr = fs.n_params - Pe;
  static thread_local std::vector<float> phi_f, grad_f;  // reused across calls
  phi_f.resize(static_cast<size_t>(Pf));
  f.to_fast(fs.emb, theta, phi_f.data());
  grad_f.resize(static_cast<size_t>(Pf + Pr));
  const float* phi = phi_f.data();  // (thread_local names inside the lambda would be the worker's)
  const int lv = level();
  const double loss = fewshot_batch_with(
      fs, b, Pf + Pr, grad ? grad_f.data() : nullptr, task_loss, task_acc,
      [&](const FewShotTask<float>& t, float* g, double* acc) {
        static thread_local FewShotWork<float> w;
        float* gr = g ? g + Pf : nullptr;
        if (lv == 4) {
          static thread_local Emb<Kernels512> e;
          e.bind(es, phi);
          return task_v4(fs, theta, t, e, w, g, gr, acc);
        }
        if (lv == 3) {
          static thread_local Emb<Kernels256> e;
          e.bind(es, phi);
          return task_v3(fs, theta, t, e, w, g, gr, acc);
        }
        static thread_local Emb<FewShotKernelsBase> e;
        e.bind(es, phi);
        return task_base(fs, theta, t, e, w, g, gr, acc);
      });
  if (grad) {
    f.from_fast(fs.emb, grad_f.data(), grad);
    std::copy(grad_f.begin() + Pf, grad_f.begin() + Pf + Pr, grad + Pe);
  }
  return loss;
}

}  // namespace maml::cpu
