// fast_mlp.hpp: the MLP's forward, backward and R-operator passes of core/mlp.hpp, rewritten
// for speed. Same math, other summation order (float rounding differs, nothing else).
//
// What makes it fast (DESIGN.md §8):
// - The fast layout: each layer's weights are stored TRANSPOSED and padded, WT [d_{l-1}, dp_l]
//   (input-major, dp = d rounded up to kV), followed by the bias padded to dp_l. In it, the
//   forward and R-forward products and the weight gradients all have the form
//   Y[r, :] (+)= sum_q A[r, q] M[q, :], vectorized over contiguous output columns with no
//   horizontal reduction (gemm). The input-gradient products dz W use a dot-product kernel
//   on the same layout (gemm_nt), so no transposed copy is ever made.
// - The meta-learning loop (core/meta.hpp) runs entirely in the fast layout: parameters,
//   gradients, Hessian-vector products and per-parameter rates are converted once per
//   meta-batch (FastLayout), not once per pass. Padded entries are zero and stay zero.
// - Register-blocked kernels (up to 5 rows x 3 vectors of accumulators with AVX-512, 4 x 2 with
//   AVX2; the rows are cut into blocks of nearly equal height).
// - Scratch memory is sized once per model and reused (no allocation in the hot loop).
//
// Accumulation rule: as in core/mlp.hpp, loss_and_grad and loss_grad_hvp OVERWRITE grad and hv.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/loss.hpp"
#include "core/mlp.hpp"
#include "core/model.hpp"

namespace maml::cpu {

constexpr int64_t kV = 8;  // padding granule and vector width, in elements
inline int64_t padded(int64_t d) { return (d + kV - 1) / kV * kV; }

// Vectors of 8 and 16 floats (GCC/Clang vector extensions): AVX or AVX-512 registers where the
// calling function is compiled for them, pairs or quadruples of SSE registers otherwise.
typedef float vf __attribute__((vector_size(8 * sizeof(float))));
typedef float vf_unaligned __attribute__((vector_size(8 * sizeof(float)), aligned(4)));
typedef float vf16 __attribute__((vector_size(16 * sizeof(float))));
typedef float vf16_unaligned __attribute__((vector_size(16 * sizeof(float)), aligned(4)));
static_assert(kV == 8, "the layout granule is one vf");
#define MAML_INLINE inline __attribute__((always_inline))
MAML_INLINE vf load(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
MAML_INLINE void store(float* p, vf v) { *reinterpret_cast<vf_unaligned*>(p) = v; }
MAML_INLINE vf16 load(const float* p, vf16) { return *reinterpret_cast<const vf16_unaligned*>(p); }
MAML_INLINE void store(float* p, vf16 v) { *reinterpret_cast<vf16_unaligned*>(p) = v; }
MAML_INLINE vf load(const float* p, vf) { return load(p); }
template <class V>
constexpr int64_t lanes() { return static_cast<int64_t>(sizeof(V) / sizeof(float)); }

// Kernel shapes per instruction set: the vector of the main blocks and the blocking.
struct Kernels512 {  // AVX-512: up to 5 rows x 3 vectors of 16 = 15 of the 32 zmm registers
  using V = vf16;
  static constexpr int R = 5, C = 3;
};
struct Kernels256 {  // AVX2 (and baseline): up to 4 rows x 2 vectors of 8 = 8 of the 16 ymm registers
  using V = vf;
  static constexpr int R = 4, C = 2;
};

// Y[r, c] = (accumulate ? Y[r, c] : init[c] or 0) + sum_{q < nred} A[r*sr + q*sq] * M[q*ldm + c]
// for r < R, c < C * lanes(V): R x C vector accumulators stay in registers across the
// reduction; each row of M is loaded once per q and used by all R rows.
template <class V, int R, int C>
inline void gemm_block(const float* __restrict A, int64_t sr, int64_t sq, int64_t nred, const float* __restrict M,
                       int64_t ldm, float* __restrict Y, int64_t ldy, const float* __restrict init, bool accumulate) {
  constexpr int64_t W = lanes<V>();
  V acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      acc[r][c] = accumulate ? load(Y + r * ldy + c * W, V{}) : init ? load(init + c * W, V{}) : V{};
  for (int64_t q = 0; q < nred; ++q) {
    V m[C];
    for (int c = 0; c < C; ++c) m[c] = load(M + q * ldm + c * W, V{});
    for (int r = 0; r < R; ++r) {
      const float a = A[r * sr + q * sq];
      for (int c = 0; c < C; ++c) acc[r][c] += a * m[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) store(Y + r * ldy + c * W, acc[r][c]);
}

// One block of `rows` rows (1 <= rows <= R): the block's height is a template argument, so
// that its accumulators stay in registers; the recursion picks it at run time.
template <class V, int R, int C>
inline void gemm_rows(int rows, const float* A, int64_t sr, int64_t sq, int64_t nred, const float* M, int64_t ldm,
                      float* Y, int64_t ldy, const float* init, bool accumulate) {
  if constexpr (R > 1)
    if (rows < R) return gemm_rows<V, R - 1, C>(rows, A, sr, sq, nred, M, ldm, Y, ldy, init, accumulate);
  gemm_block<V, R, C>(A, sr, sq, nred, M, ldm, Y, ldy, init, accumulate);
}

// All rows for the columns [c, c + C * lanes(V)), in blocks of nearly equal height (at most R):
// 10 rows (K = 10 shots) run as 5 + 5 or 4 + 3 + 3, not as 4 + 4 + 1 + 1, whose one-row blocks
// were latency-bound (C chains of dependent FMAs over the whole reduction).
template <class V, int R, int C>
inline void gemm_columns(const float* A, int64_t sr, int64_t sq, int64_t nrows, int64_t nred, const float* M,
                         int64_t ldm, float* Y, int64_t ldy, const float* init, bool accumulate) {
  if (nrows <= 0) return;
  const int64_t blocks = (nrows + R - 1) / R, base = nrows / blocks, taller = nrows % blocks;
  int64_t r = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    const int rows = static_cast<int>(base + (b < taller ? 1 : 0));
    gemm_rows<V, R, C>(rows, A + r * sr, sr, sq, nred, M, ldm, Y + r * ldy, ldy, init, accumulate);
    r += rows;
  }
}

// Y [nrows, width] (+)= A M over nred, with A(r, q) = A[r*sr + q*sq]; width is a multiple of kV.
// gemm<K> is defined once per kernel type (fast_meta.cc), each compiled for its instruction
// set around this inline body, so that the many call sites do not each inline all of it.
// Columns go C vectors at a time, then the remaining whole vectors, then an 8-float tail.
template <class K>
inline void gemm_body(const float* A, int64_t sr, int64_t sq, int64_t nrows, int64_t nred, const float* M, int64_t ldm,
                      int64_t width, float* Y, int64_t ldy, const float* init, bool accumulate) {
  using V = typename K::V;
  constexpr int64_t W = lanes<V>();
  const auto at = [&](int64_t c) { return init ? init + c : nullptr; };
  int64_t c = 0;
  for (; c + K::C * W <= width; c += K::C * W)
    gemm_columns<V, K::R, K::C>(A, sr, sq, nrows, nred, M + c, ldm, Y + c, ldy, at(c), accumulate);
  if constexpr (K::C > 2) {
    if (c + 2 * W <= width) {
      gemm_columns<V, K::R, 2>(A, sr, sq, nrows, nred, M + c, ldm, Y + c, ldy, at(c), accumulate);
      c += 2 * W;
    }
  }
  if constexpr (K::C > 1) {
    if (c + W <= width) {
      gemm_columns<V, K::R, 1>(A, sr, sq, nrows, nred, M + c, ldm, Y + c, ldy, at(c), accumulate);
      c += W;
    }
  }
  for (; c < width; c += kV) gemm_columns<vf, K::R, 1>(A, sr, sq, nrows, nred, M + c, ldm, Y + c, ldy, at(c), accumulate);
}

template <class K>
void gemm(const float* A, int64_t sr, int64_t sq, int64_t nrows, int64_t nred, const float* M, int64_t ldm,
          int64_t width, float* Y, int64_t ldy, const float* init, bool accumulate);

// Horizontal sums by halving (log2 of the width in dependent steps, not one chain of adds per
// lane: the chains made the dot-product kernel latency-bound).
typedef float vf4 __attribute__((vector_size(4 * sizeof(float))));
MAML_INLINE float hsum(vf4 v) {
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1);
  v += __builtin_shufflevector(v, v, 1, 0, 3, 2);
  return v[0];
}
MAML_INLINE float hsum(vf v) { return hsum(__builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7)); }
MAML_INLINE float hsum(vf16 v) {
  return hsum(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));
}

// Y[r, k] (+)= sum_{j < len} A[r*lda + j] * B[k*ldb + j] for r < R, k < K (dot products of
// contiguous rows; len is a multiple of lanes(V)).
template <class V, int R, int K>
inline void gemm_nt_block(const float* __restrict A, int64_t lda, const float* __restrict B, int64_t ldb, int64_t len,
                          float* __restrict Y, int64_t ldy, bool accumulate) {
  constexpr int64_t W = lanes<V>();
  V acc[R][K] = {};
  for (int64_t j = 0; j < len; j += W) {
    V b[K];
    for (int k = 0; k < K; ++k) b[k] = load(B + k * ldb + j, V{});
    for (int r = 0; r < R; ++r) {
      const V a = load(A + r * lda + j, V{});
      for (int k = 0; k < K; ++k) acc[r][k] += a * b[k];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < K; ++k) Y[r * ldy + k] = (accumulate ? Y[r * ldy + k] : 0.0f) + hsum(acc[r][k]);
}

// Rows [r, r + rows) (1 <= rows <= R) against all B rows, K at a time.
template <class V, int R, int K>
inline void gemm_nt_rows(int rows, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t ncols, int64_t len,
                         float* Y, int64_t ldy, bool accumulate) {
  if constexpr (R > 1)
    if (rows < R) return gemm_nt_rows<V, R - 1, K>(rows, A, lda, B, ldb, ncols, len, Y, ldy, accumulate);
  int64_t k = 0;
  for (; k + K <= ncols; k += K) gemm_nt_block<V, R, K>(A, lda, B + k * ldb, ldb, len, Y + k, ldy, accumulate);
  for (; k < ncols; ++k) gemm_nt_block<V, R, 1>(A, lda, B + k * ldb, ldb, len, Y + k, ldy, accumulate);
}

// The rows in blocks of nearly equal height, as in gemm_columns.
template <class V, int R, int K>
inline void gemm_nt_with(const float* A, int64_t lda, int64_t nrows, const float* B, int64_t ldb, int64_t ncols,
                         int64_t len, float* Y, int64_t ldy, bool accumulate) {
  if (nrows <= 0) return;
  const int64_t blocks = (nrows + R - 1) / R, base = nrows / blocks, taller = nrows % blocks;
  int64_t r = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    const int rows = static_cast<int>(base + (b < taller ? 1 : 0));
    gemm_nt_rows<V, R, K>(rows, A + r * lda, lda, B, ldb, ncols, len, Y + r * ldy, ldy, accumulate);
    r += rows;
  }
}

// Y [nrows, ncols] (+)= A B^T: A [nrows, len] and B [ncols, len] row-major (strides lda, ldb);
// len is a multiple of kV. With AVX-512, 16-float vectors when len allows them.
template <class KS>
inline void gemm_nt_body(const float* A, int64_t lda, int64_t nrows, const float* B, int64_t ldb, int64_t ncols,
                         int64_t len, float* Y, int64_t ldy, bool accumulate) {
  using V = typename KS::V;
  if (len % lanes<V>() == 0)
    return gemm_nt_with<V, KS::R, KS::C>(A, lda, nrows, B, ldb, ncols, len, Y, ldy, accumulate);
  gemm_nt_with<vf, KS::R, KS::C>(A, lda, nrows, B, ldb, ncols, len, Y, ldy, accumulate);
}
// Like gemm<K>: one non-inlined version per level (fast_meta.cc) for the AVX-512 and AVX2
// kernel types, so that its many block shapes are not compiled again at every call site of
// the flattened task functions (compile time); other kernel types inline the body.
#define MAML_GEMM_NT_ARGS                                                                                     \
  const float *A, int64_t lda, int64_t nrows, const float *B, int64_t ldb, int64_t ncols, int64_t len, float *Y, \
      int64_t ldy, bool accumulate
#define MAML_GEMM_NT_CALL A, lda, nrows, B, ldb, ncols, len, Y, ldy, accumulate
template <class KS>
inline void gemm_nt(MAML_GEMM_NT_ARGS) { gemm_nt_body<KS>(MAML_GEMM_NT_CALL); }
template <>
void gemm_nt<Kernels512>(MAML_GEMM_NT_ARGS);
template <>
void gemm_nt<Kernels256>(MAML_GEMM_NT_ARGS);

// Elementwise passes of the meta-learning loop over the parameters (out never aliases the
// inputs): out = x - a y and out = a x. Inlined into the flattened per-task function they ran
// 3-4 times slower than they should (its register pressure made these loops reload their
// pointers and spill a vector every iteration), so the AVX-512 and AVX2 kernel types get
// non-inlined versions (fast_meta.cc, like gemm<K>); other kernel types use the inline body.
template <class K>
inline void sub_scaled(float* __restrict out, const float* __restrict x, float a, const float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] - a * y[i];
}
template <class K>
inline void scale(float* __restrict out, float a, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a * x[i];
}
// b [dpl] (+)= column sums of d [n, dpl] (bias gradients; dpl a multiple of kV), likewise. Each
// vector of sums stays in a register over the rows (a loop that added row by row into b
// waited on its own stores), and the rows are added in order, as before.
template <class V>
MAML_INLINE void col_sums_body(const float* __restrict d, int64_t n, int64_t dpl, float* __restrict b, bool accumulate) {
  constexpr int64_t W = lanes<V>();
  int64_t j = 0;
  for (; j + W <= dpl; j += W) {
    V acc = accumulate ? load(b + j, V{}) : V{};
    for (int64_t i = 0; i < n; ++i) acc += load(d + i * dpl + j, V{});
    store(b + j, acc);
  }
  for (; j < dpl; j += kV) {
    vf acc = accumulate ? load(b + j) : vf{};
    for (int64_t i = 0; i < n; ++i) acc += load(d + i * dpl + j);
    store(b + j, acc);
  }
}
#define MAML_COL_SUMS_ARGS const float *d, int64_t n, int64_t dpl, float *b, bool accumulate
template <class K>
inline void col_sums(MAML_COL_SUMS_ARGS) { col_sums_body<typename K::V>(d, n, dpl, b, accumulate); }
template <>
void col_sums<Kernels512>(MAML_COL_SUMS_ARGS);
template <>
void col_sums<Kernels256>(MAML_COL_SUMS_ARGS);
template <>
void sub_scaled<Kernels512>(float* out, const float* x, float a, const float* y, int64_t n);
template <>
void sub_scaled<Kernels256>(float* out, const float* x, float a, const float* y, int64_t n);
template <>
void scale<Kernels512>(float* out, float a, const float* x, int64_t n);
template <>
void scale<Kernels256>(float* out, float a, const float* x, int64_t n);

// The fast parameter layout of a model, and conversions from and to PyTorch's layout.
struct FastLayout {
  ModelSpec spec;  // the same dims; n_params, w_off and b_off describe the fast layout
  std::vector<int64_t> dp;

  explicit FastLayout(const ModelSpec& s) : spec(s) {
    const int L = s.layers();
    dp.assign(L + 1, 0);
    dp[0] = s.dims[0];
    int64_t off = 0;
    for (int l = 1; l <= L; ++l) {
      dp[l] = padded(s.dims[l]);
      spec.w_off[l] = off;
      off += checked_mul(s.dims[l - 1], dp[l], "weights");
      spec.b_off[l] = off;
      off += dp[l];
    }
    spec.n_params = off;
  }

  template <class T>
  void to_fast(const ModelSpec& s, const T* theta, T* out) const {
    std::fill(out, out + spec.n_params, T(0));
    for (int l = 1; l <= s.layers(); ++l) {
      const int64_t din = s.dims[l - 1], dout = s.dims[l];
      const T* W = theta + s.w_off[l];
      T* t = out + spec.w_off[l];
      for (int64_t j = 0; j < dout; ++j)
        for (int64_t k = 0; k < din; ++k) t[k * dp[l] + j] = W[j * din + k];
      for (int64_t j = 0; j < dout; ++j) out[spec.b_off[l] + j] = theta[s.b_off[l] + j];
    }
  }

  template <class T>
  void from_fast(const ModelSpec& s, const T* f, T* theta) const {
    for (int l = 1; l <= s.layers(); ++l) {
      const int64_t din = s.dims[l - 1], dout = s.dims[l];
      T* W = theta + s.w_off[l];
      const T* t = f + spec.w_off[l];
      for (int64_t j = 0; j < dout; ++j)
        for (int64_t k = 0; k < din; ++k) W[j * din + k] = t[k * dp[l] + j];
      for (int64_t j = 0; j < dout; ++j) theta[s.b_off[l] + j] = f[spec.b_off[l] + j];
    }
  }
};

// The input-gradient product dz W of a layer with dp outputs runs on a row-major copy of W
// (made by transposing WT once per pass) when the layer is narrow, and as dot products
// (gemm_nt) when it is wide enough for the horizontal sums to be cheap beside the copy.
inline bool transpose_for_input_grad(int64_t dp_out) { return dp_out < 128; }

// What one inner step's gradient pass leaves for that step's Hessian-vector product in the
// reverse pass (same parameters, same support set): the activations, the loss outputs, the
// deltas of every layer and (tanh) the input gradients before the activation derivative.
template <class T>
struct StepCache {
  std::vector<std::vector<T>> act, dz, da;  // per layer: [n, dp_l]
  std::vector<T> out;                       // [n, dL]
};

template <class T>
struct FastWork {
  std::vector<int64_t> dims;  // the model widths the buffers are sized for
  std::vector<int64_t> dp;    // dp[l] = padded(d_l) for l >= 1; dp[0] = d0 (inputs are not padded)
  std::vector<std::vector<T>> act, rz, ract;  // per layer: [n, dp_l]
  std::vector<T> dz, dzn, rdz, rdzn;          // [n, max dp]
  std::vector<T> out, dout, rout, rdout;      // compact outputs [n, dL]
  std::vector<std::vector<T>> wr, uwr;        // per layer: W and uW row-major [dp_l, dp_{l-1}] (narrow layers)
  std::vector<StepCache<T>> steps;            // one per inner step (see StepCache)
  int64_t capacity = -1;

  // The cache of inner step i, sized for n rows of this model.
  StepCache<T>& step_cache(const ModelSpec& s, int64_t i, int64_t n) {
    if (static_cast<int64_t>(steps.size()) <= i) steps.resize(static_cast<size_t>(i + 1));
    StepCache<T>& c = steps[static_cast<size_t>(i)];
    const int L = s.layers();
    c.act.resize(L + 1);
    c.dz.resize(L + 1);
    c.da.resize(L + 1);
    for (int l = 1; l <= L; ++l) {
      const size_t sz = static_cast<size_t>(checked_mul(n, dp[l], "activations"));
      for (auto* v : {&c.act[l], &c.dz[l], &c.da[l]})
        if (v->size() < sz) v->assign(sz, T(0));
    }
    const size_t o = static_cast<size_t>(checked_mul(n, s.out_dim(), "outputs"));
    if (c.out.size() < o) c.out.assign(o, T(0));
    return c;
  }

  void reserve(const ModelSpec& s, int64_t n) {
    const int L = s.layers();
    if (dims != s.dims) {
      dims = s.dims;
      dp.assign(L + 1, 0);
      dp[0] = s.dims[0];
      for (int l = 1; l <= L; ++l) dp[l] = padded(s.dims[l]);
      for (auto* v : {&act, &rz, &ract, &wr, &uwr}) v->assign(L + 1, {});
      steps.clear();
      for (int l = 2; l <= L; ++l) {
        if (!transpose_for_input_grad(dp[l])) continue;
        wr[l].assign(static_cast<size_t>(checked_mul(dp[l], dp[l - 1], "weights")), T(0));
        uwr[l].assign(wr[l].size(), T(0));
      }
      capacity = -1;
    }
    if (n <= capacity) return;
    int64_t maxdp = 0;
    for (int l = 1; l <= L; ++l) {
      const size_t sz = static_cast<size_t>(checked_mul(n, dp[l], "activations"));
      act[l].assign(sz, T(0));
      rz[l].assign(sz, T(0));
      ract[l].assign(sz, T(0));
      maxdp = std::max(maxdp, dp[l]);
    }
    const size_t w = static_cast<size_t>(checked_mul(n, maxdp, "deltas"));
    for (auto* v : {&dz, &dzn, &rdz, &rdzn}) v->assign(w, T(0));
    const size_t o = static_cast<size_t>(checked_mul(n, s.out_dim(), "outputs"));
    for (auto* v : {&out, &dout, &rout, &rdout}) v->assign(o, T(0));
    capacity = n;
  }
};

// The network on parameters in the fast layout: `s` is FastLayout::spec (w_off and b_off
// locate WT_l and the padded b_l). float only. K: the kernel shapes (Kernels512 or Kernels256).
template <class K>
struct FastNet {
  using Work = FastWork<float>;
  using T = float;

  using Acts = std::vector<std::vector<T>>;

  // Forward pass into act (w.act, or a step cache's); compact outputs into w.out.
  static void forward(const ModelSpec& s, Work& w, Acts& act, const T* theta, const T* x, int64_t n) {
    const int L = s.layers();
    for (int l = 1; l <= L; ++l) {
      const T* in = l == 1 ? x : act[l - 1].data();
      const int64_t ldin = w.dp[l - 1], dpl = w.dp[l];
      T* z = act[l].data();
      gemm<K>(in, ldin, 1, n, s.dims[l - 1], theta + s.w_off[l], dpl, dpl, z, dpl, theta + s.b_off[l], false);
      if (l < L)
        for (int64_t i = 0; i < n * dpl; ++i) z[i] = act_f(s.act, z[i]);
    }
    const int64_t dL = s.out_dim();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < dL; ++j) w.out[i * dL + j] = act[L][i * w.dp[L] + j];
  }

  static void r_forward(const ModelSpec& s, Work& w, const Acts& act, const T* theta, const T* u, const T* x, int64_t n) {
    const int L = s.layers();
    for (int l = 1; l <= L; ++l) {
      const T* in = l == 1 ? x : act[l - 1].data();
      const int64_t ldin = w.dp[l - 1], dpl = w.dp[l];
      T* rz = w.rz[l].data();
      gemm<K>(in, ldin, 1, n, s.dims[l - 1], u + s.w_off[l], dpl, dpl, rz, dpl, u + s.b_off[l], false);
      if (l >= 2) gemm<K>(w.ract[l - 1].data(), ldin, 1, n, s.dims[l - 1], theta + s.w_off[l], dpl, dpl, rz, dpl, nullptr, true);
      if (l < L) {
        const T* a = act[l].data();
        T* ra = w.ract[l].data();
        for (int64_t i = 0; i < n * dpl; ++i) ra[i] = act_d1(s.act, a[i]) * rz[i];
      }
    }
    const int64_t dL = s.out_dim();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < dL; ++j) w.rout[i * dL + j] = w.rz[L][i * w.dp[L] + j];
  }

  // wr [ldt, ldr] = the transpose of wt [din, ldt] (ldt, a multiple of kV, covers the padded
  // columns; columns k >= din of wr are left as they are: zero). 8 x 8 blocks are transposed
  // in registers.
  static void transpose(const T* wt, int64_t din, int64_t dout, int64_t ldt, T* wr, int64_t ldr) {
    int64_t k0 = 0;
    if constexpr (kV == 8) {
      typedef int vi __attribute__((vector_size(32)));
      for (; k0 + 8 <= din; k0 += 8)
        for (int64_t j0 = 0; j0 < ldt; j0 += 8) {
          vf r[8];
          for (int i = 0; i < 8; ++i) r[i] = load(wt + (k0 + i) * ldt + j0);
          const vi lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
          const vi plo = {0, 1, 8, 9, 4, 5, 12, 13}, phi = {2, 3, 10, 11, 6, 7, 14, 15};
          const vi qlo = {0, 1, 2, 3, 8, 9, 10, 11}, qhi = {4, 5, 6, 7, 12, 13, 14, 15};
          vf t[8], u[8];
          for (int i = 0; i < 4; ++i) {
            t[2 * i] = __builtin_shuffle(r[2 * i], r[2 * i + 1], lo);
            t[2 * i + 1] = __builtin_shuffle(r[2 * i], r[2 * i + 1], hi);
          }
          for (int h = 0; h < 2; ++h) {  // rows 0-3 (h = 0) and 4-7 (h = 1)
            u[4 * h + 0] = __builtin_shuffle(t[4 * h + 0], t[4 * h + 2], plo);
            u[4 * h + 1] = __builtin_shuffle(t[4 * h + 0], t[4 * h + 2], phi);
            u[4 * h + 2] = __builtin_shuffle(t[4 * h + 1], t[4 * h + 3], plo);
            u[4 * h + 3] = __builtin_shuffle(t[4 * h + 1], t[4 * h + 3], phi);
          }
          for (int j = 0; j < 4; ++j) {
            store(wr + (j0 + j) * ldr + k0, __builtin_shuffle(u[j], u[4 + j], qlo));
            store(wr + (j0 + 4 + j) * ldr + k0, __builtin_shuffle(u[j], u[4 + j], qhi));
          }
        }
    }
    for (int64_t k = k0; k < din; ++k)
      for (int64_t j = 0; j < dout; ++j) wr[j * ldr + k] = wt[k * ldt + j];
  }

  static void zero_padding(T* y, int64_t n, int64_t d, int64_t ld) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = d; k < ld; ++k) y[i * ld + k] = 0;
  }

  // b (+)= column sums of d [n, dpl].
  static void bias_grad(const T* d, int64_t n, int64_t dpl, T* b, bool accumulate = false) {
    col_sums<K>(d, n, dpl, b, accumulate);
  }

  // From w.dout (and w.rdout when hv): grad (nullable) and hv (nullable), in the fast layout.
  // store: keep this pass's deltas for a later Hessian-vector product at the same point.
  // reuse: take the deltas from such a cache instead of computing them (then grad is null).
  // hv_add: hv += H u instead of hv = H u.
  static void backward(const ModelSpec& s, Work& w, const Acts& act, const T* theta, const T* u, const T* x, int64_t n,
                       T* grad, T* hv, StepCache<T>* store, const StepCache<T>* reuse, bool hv_add = false) {
    const int L = s.layers();
    const int64_t dL = s.out_dim();
    const bool tanh_act = s.act == Activation::Tanh;
    {
      const int64_t dpL = w.dp[L];
      if (!reuse) {
        for (int64_t i = 0; i < n * dpL; ++i) w.dz[i] = 0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < dL; ++j) w.dz[i * dpL + j] = w.dout[i * dL + j];
      }
      if (hv) {
        for (int64_t i = 0; i < n * dpL; ++i) w.rdz[i] = 0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < dL; ++j) w.rdz[i * dpL + j] = w.rdout[i * dL + j];
      }
    }
    for (int l = L; l >= 1; --l) {
      const int64_t din = s.dims[l - 1], dpl = w.dp[l], ldin = w.dp[l - 1];
      const T* in = l == 1 ? x : act[l - 1].data();
      const T* dz = reuse ? reuse->dz[l].data() : w.dz.data();
      const T* rdz = w.rdz.data();
      if (store) std::copy(dz, dz + n * dpl, store->dz[l].data());
      if (grad) {  // dWT [din, dp_l] = in^T dz; db = column sums of dz
        gemm<K>(in, 1, ldin, din, n, dz, dpl, dpl, grad + s.w_off[l], dpl, nullptr, false);
        bias_grad(dz, n, dpl, grad + s.b_off[l]);
      }
      if (hv) {  // R(dWT) = in^T R(dz) + R(in)^T dz
        gemm<K>(in, 1, ldin, din, n, rdz, dpl, dpl, hv + s.w_off[l], dpl, nullptr, hv_add);
        if (l >= 2) gemm<K>(w.ract[l - 1].data(), 1, ldin, din, n, dz, dpl, dpl, hv + s.w_off[l], dpl, nullptr, true);
        bias_grad(rdz, n, dpl, hv + s.b_off[l], hv_add);
      }
      if (l == 1) break;
      const int64_t dout = s.dims[l];
      const bool rowmajor = transpose_for_input_grad(dpl);
      if (rowmajor) transpose(theta + s.w_off[l], din, dout, dpl, w.wr[l].data(), ldin);
      // da [n, din] = dz W (padded columns of da stay zero), before the activation derivative
      T* dn = w.dzn.data();
      if (!reuse) {
        if (rowmajor) {
          gemm<K>(dz, dpl, 1, n, dout, w.wr[l].data(), ldin, ldin, dn, ldin, nullptr, false);
        } else {
          gemm_nt<K>(dz, dpl, n, theta + s.w_off[l], dpl, din, dpl, dn, ldin, false);
          zero_padding(dn, n, din, ldin);
        }
        if (store && tanh_act) std::copy(dn, dn + n * ldin, store->da[l - 1].data());
      }
      const T* da = reuse ? reuse->da[l - 1].data() : dn;
      const T* a = act[l - 1].data();
      if (hv) {
        T* rdn = w.rdzn.data();
        if (rowmajor) {
          transpose(u + s.w_off[l], din, dout, dpl, w.uwr[l].data(), ldin);
          gemm<K>(rdz, dpl, 1, n, dout, w.wr[l].data(), ldin, ldin, rdn, ldin, nullptr, false);
          gemm<K>(dz, dpl, 1, n, dout, w.uwr[l].data(), ldin, ldin, rdn, ldin, nullptr, true);
        } else {
          gemm_nt<K>(rdz, dpl, n, theta + s.w_off[l], dpl, din, dpl, rdn, ldin, false);
          gemm_nt<K>(dz, dpl, n, u + s.w_off[l], dpl, din, dpl, rdn, ldin, true);
          zero_padding(rdn, n, din, ldin);
        }
        const T* rzp = w.rz[l - 1].data();
        if (tanh_act) {
          for (int64_t i = 0; i < n; ++i)
            for (int64_t k = 0; k < din; ++k) {
              const int64_t e = i * ldin + k;
              rdn[e] = rdn[e] * act_d1(s.act, a[e]) + da[e] * act_d2(s.act, a[e]) * rzp[e];
            }
        } else {
          for (int64_t i = 0; i < n; ++i)
            for (int64_t k = 0; k < din; ++k) rdn[i * ldin + k] *= act_d1(s.act, a[i * ldin + k]);
        }
        w.rdz.swap(w.rdzn);
      }
      if (!reuse) {
        for (int64_t i = 0; i < n; ++i)
          for (int64_t k = 0; k < din; ++k) dn[i * ldin + k] *= act_d1(s.act, a[i * ldin + k]);
        w.dz.swap(w.dzn);
      }
    }
  }

  static double loss_and_grad(const ModelSpec& s, const T* theta, const T* x, const Targets<T>& tg, int64_t n,
                              Work& w, T* grad) {
    if (n == 0) {
      if (grad) std::fill(grad, grad + s.n_params, T(0));
      return 0.0;
    }
    w.reserve(s, n);
    forward(s, w, w.act, theta, x, n);
    const double loss = loss_grad(s.loss, w.out.data(), tg, n, s.out_dim(), grad ? w.dout.data() : nullptr);
    if (grad) backward(s, w, w.act, theta, nullptr, x, n, grad, nullptr, nullptr, nullptr);
    return loss;
  }

  static double loss_grad_hvp(const ModelSpec& s, const T* theta, const T* x, const Targets<T>& tg, int64_t n,
                              const T* u, Work& w, T* grad, T* hv) {
    if (n == 0) {
      if (grad) std::fill(grad, grad + s.n_params, T(0));
      std::fill(hv, hv + s.n_params, T(0));
      return 0.0;
    }
    w.reserve(s, n);
    forward(s, w, w.act, theta, x, n);
    r_forward(s, w, w.act, theta, u, x, n);
    const double loss = loss_grad(s.loss, w.out.data(), tg, n, s.out_dim(), w.dout.data());
    loss_hess_vec(s.loss, w.out.data(), tg, n, s.out_dim(), w.rout.data(), w.rdout.data());
    backward(s, w, w.act, theta, u, x, n, grad, hv, nullptr, nullptr);
    return loss;
  }

  static void sub_scaled(T* out, const T* x, T a, const T* y, int64_t n) { cpu::sub_scaled<K>(out, x, a, y, n); }
  static void scale(T* out, T a, const T* x, int64_t n) { cpu::scale<K>(out, a, x, n); }

  // The inner loop's gradient at step `step`, keeping what that step's Hessian-vector
  // product needs (hvp_cached_add): the forward pass and the deltas are not computed twice.
  static constexpr bool caches_steps = true;
  static double loss_and_grad_cached(const ModelSpec& s, const T* theta, const T* x, const Targets<T>& tg, int64_t n,
                                     Work& w, T* grad, int step) {
    if (n == 0) return loss_and_grad(s, theta, x, tg, n, w, grad);
    w.reserve(s, n);
    StepCache<T>& c = w.step_cache(s, step, n);
    forward(s, w, c.act, theta, x, n);
    std::copy(w.out.begin(), w.out.begin() + n * s.out_dim(), c.out.begin());
    const double loss = loss_grad(s.loss, w.out.data(), tg, n, s.out_dim(), w.dout.data());
    backward(s, w, c.act, theta, nullptr, x, n, grad, nullptr, &c, nullptr);
    return loss;
  }

  // v += H u at the point and on the data of loss_and_grad_cached(..., step): the reverse pass's
  // products accumulate into v, so no separate H u vector is written and subtracted (the
  // caller passes u = -alpha v; the R-pass is linear in u, and negation is exact).
  static void hvp_cached_add(const ModelSpec& s, const T* theta, const T* x, const Targets<T>& tg, int64_t n,
                             const T* u, Work& w, T* v, int step) {
    if (n == 0) return;
    const StepCache<T>& c = w.steps[static_cast<size_t>(step)];
    r_forward(s, w, c.act, theta, u, x, n);
    loss_hess_vec(s.loss, c.out.data(), tg, n, s.out_dim(), w.rout.data(), w.rdout.data());
    backward(s, w, c.act, theta, u, x, n, nullptr, v, nullptr, &c, true);
  }
};

}  // namespace maml::cpu
