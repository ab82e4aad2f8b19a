// lanes.hpp: the meta-gradients of up to 16 tasks at once, one task per lane of a vector.
//
// For small networks the per-task kernels of fast_mlp.hpp waste much of each vector: a layer
// of 40 units is padded to 48, a layer of one output (the sinusoid net's) is all padding, and
// short rows (K = 10 shots) leave blocks half full. Here a vector holds the SAME quantity of
// L tasks (L = lanes(V): 16 with AVX-512), so every lane does useful work whatever the widths:
// parameters are stored [P_fast][L] (fast_mlp.hpp's fast layout, one vector per entry),
// activations and deltas [rows][dp_l][L]. Every algorithm runs this way: the first-order ones
// (inner loop, query gradients) and the second-order ones (each inner step's passes kept for
// its Hessian-vector product, the R-operator passes of core/mlp.hpp in the reverse pass, the
// rate gradients). A group's result per parameter is the sum over its tasks, a fixed tree over
// the lanes in use, so it depends only on how tasks are grouped (fixed per batch: see
// fast_meta.cc's lane_leaves), never on the thread count.
//
// The group's tasks must have the same support size (and query size): the batch driver
// groups only runs of such tasks and runs the others one by one on the per-task kernels.
//
// Blocks: forward z = a WT + b in kRows x kCols vector accumulators over the inputs; input
// gradients dz W as kRows x kIn over the outputs; weight gradients a^T dz as kWi x kWj over the
// rows, fused with out -= coef * g (coef = the inner rate, or -w for a gradient accumulated into
// v). The R-operator passes use the same blocks with a second product added (R(a) W + a uW,
// R(dz) W + dz uW, R(dz)^T a + dz^T R(a)). Rows are padded to kRows (padded rows carry zero
// deltas and are never summed), columns are the fast layout's padded widths.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/batch.hpp"
#include "core/loss.hpp"
#include "fast_mlp.hpp"

namespace maml::cpu {

template <class V>
struct LaneKernels;
template <>
struct LaneKernels<vf16> {  // 32 zmm registers: 5 x 4 forward and input-gradient blocks, 3 x 8 weight blocks
  static constexpr int kRows = 5, kCols = 4, kIn = 4, kWi = 3, kWj = 8;
};
template <>
struct LaneKernels<vf> {  // 16 ymm registers: 5 x 2 forward and input-gradient blocks, 3 x 4 weight blocks
  static constexpr int kRows = 5, kCols = 2, kIn = 2, kWi = 3, kWj = 4;
};

// Zeroed vectors aligned to their size (std::vector<V> does not guarantee it: GCC drops the
// vector type's alignment in template arguments, and aligned loads of its data then fault).
template <class V>
class LaneBuf {
 public:
  void assign(int64_t count) {
    constexpr int64_t W = lanes<V>();
    raw_.assign(static_cast<size_t>((count + 1) * W), 0.0f);
    const uintptr_t a = reinterpret_cast<uintptr_t>(raw_.data()), align = sizeof(V);
    data_ = reinterpret_cast<V*>((a + align - 1) / align * align);
    size_ = count;
  }
  void resize(int64_t count) {
    if (count != size_) assign(count);
  }
  V* data() { return data_; }
  const V* data() const { return data_; }
  V* begin() { return data_; }
  V* end() { return data_ + size_; }

 private:
  std::vector<float> raw_;
  V* data_ = nullptr;
  int64_t size_ = -1;
};

// Activations, deltas and (tanh) input gradients before the activation derivative of one
// pass over a group, per layer l = 1..L: [rows_cap][dp_l] each (act[L]: the outputs).
template <class V>
struct LanePass {
  std::vector<LaneBuf<V>> act, delta, da;
  void reserve(const FastLayout& f, int64_t rows, bool with_da) {
    const int L = f.spec.layers();
    act.assign(L + 1, {});
    delta.assign(L + 1, {});
    da.assign(L + 1, {});
    for (int l = 1; l <= L; ++l) {
      act[l].assign(rows * f.dp[l]);
      delta[l].assign(rows * f.dp[l]);  // padded columns stay zero
      if (with_da) da[l].assign(rows * f.dp[l]);
    }
  }
};

// Scratch memory of one worker's lane groups, sized once per model, row count and step count.
template <class V>
struct LaneWork {
  std::vector<LaneBuf<V>> thetas;  // [S + 1] x [P_fast]: theta_0..theta_S (first order: thetas[0] only)
  std::vector<LaneBuf<V>> grads;   // [S] x [P_fast]: the inner gradients (for rate gradients)
  LaneBuf<V> v, u;                 // [P_fast] the backward vector (the meta-gradient) and H's direction
  std::vector<LanePass<V>> steps;  // each inner step's passes (second order)
  LanePass<V> scratch;             // query passes, and every pass of the first-order algorithms
  std::vector<LaneBuf<V>> rz, ra, rdz;  // R-operator: R(z_l), R(a_l), R(dz_l) per layer [rows_cap][dp_l]
  LaneBuf<V> xs, xq;               // the support and query inputs [rows][d0]
  std::vector<float> out, rout, dout;  // one lane's outputs, R(outputs) and loss gradient [n, dL]
  std::vector<int64_t> dims;
  Activation act_kind = Activation::ReLU;  // tanh keeps the step passes' da, ReLU does not
  int64_t rows_cap = -1;
  int steps_cap = -1;
  bool second = false, rates = false;

  void reserve(const FastLayout& f, int64_t rows, int S, bool second_order, bool rate_grads) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    const bool tanh_act = s.act == Activation::Tanh;
    const bool grow = dims != s.dims || s.act != act_kind || rows > rows_cap;
    if (grow) {
      dims = s.dims;
      act_kind = s.act;
      rows_cap = std::max(rows, rows_cap);
      scratch.reserve(f, rows_cap, false);
      xs.assign(rows_cap * s.dims[0]);
      xq.assign(rows_cap * s.dims[0]);
      out.assign(static_cast<size_t>(rows_cap * s.out_dim()), 0.0f);
      rout.assign(out.size(), 0.0f);
      dout.assign(out.size(), 0.0f);
      v.assign(s.n_params);
      u.assign(s.n_params);
      steps_cap = -1;
    }
    const int want = second_order ? S : 0;
    if (grow || want > steps_cap || second_order != second || rate_grads != rates) {
      steps_cap = std::max(want, steps_cap);
      second = second_order;
      rates = rate_grads;
      thetas.assign(second_order ? steps_cap + 1 : 1, {});
      for (auto& t : thetas) t.assign(s.n_params);
      grads.assign(rate_grads ? steps_cap : 0, {});
      for (auto& g : grads) g.assign(s.n_params);
      steps.assign(second_order ? steps_cap : 0, {});
      for (auto& p : steps) p.reserve(f, rows_cap, tanh_act);
      rz.assign(L + 1, {});
      ra.assign(L + 1, {});
      rdz.assign(L + 1, {});
      if (second_order)
        for (int l = 1; l <= L; ++l) {
          rz[l].assign(rows_cap * f.dp[l]);
          ra[l].assign(rows_cap * f.dp[l]);
          rdz[l].assign(rows_cap * f.dp[l]);
        }
    }
  }
};

// Bytes of LaneWork for a group (the batch driver keeps lanes below a budget).
inline int64_t lane_work_bytes(const FastLayout& f, int64_t rows, int S, bool second_order, int lanes_n) {
  int64_t widths = 0;
  for (int l = 1; l <= f.spec.layers(); ++l) widths += f.dp[l];
  const int64_t steps = second_order ? S : 0;
  const int64_t floats = (steps + 3) * f.spec.n_params + (steps * 3 + 2 + 3) * rows * widths;
  return floats * lanes_n * static_cast<int64_t>(sizeof(float));
}

template <class V>
inline int64_t lane_rows(int64_t n) {
  constexpr int R = LaneKernels<V>::kRows;
  return (n + R - 1) / R * R;
}

// Z[r, c] = b[c] + sum_{i < din} A[r, i] WT[i, c] (+ sum_i A2[r, i] W2[i, c] when TWO), ReLU'd
// when relu, for a kRows x NC block.
template <class V, int NC, bool TWO>
MAML_INLINE void lane_forward_block(const V* __restrict A, int64_t lda, int64_t din, const V* __restrict WT, int64_t ldw,
                                    const V* __restrict A2, int64_t lda2, int64_t din2, const V* __restrict W2,
                                    const V* __restrict b, V* __restrict Z, int64_t ldz, bool relu) {
  constexpr int R = LaneKernels<V>::kRows;
  V acc[R][NC];
  for (int c = 0; c < NC; ++c)
    for (int r = 0; r < R; ++r) acc[r][c] = b[c];
  for (int64_t i = 0; i < din; ++i) {
    V w[NC];
    for (int c = 0; c < NC; ++c) w[c] = WT[i * ldw + c];
    for (int r = 0; r < R; ++r) {
      const V a = A[r * lda + i];
      for (int c = 0; c < NC; ++c) acc[r][c] += a * w[c];
    }
  }
  if constexpr (TWO)
    for (int64_t i = 0; i < din2; ++i) {
      V w[NC];
      for (int c = 0; c < NC; ++c) w[c] = W2[i * ldw + c];
      for (int r = 0; r < R; ++r) {
        const V a = A2[r * lda2 + i];
        for (int c = 0; c < NC; ++c) acc[r][c] += a * w[c];
      }
    }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) Z[r * ldz + c] = relu ? (acc[r][c] > V{} ? acc[r][c] : V{}) : acc[r][c];
}

// The input gradient of a block of kRows x NI: g[r, i] = sum_{j < dout} dZ[r, j] W[j, i]
// (+ dZ2[r, j] U[j, i] when TWO), with WT[i, j] = W[j, i]; then D = g f'(A) (+ DA f''(A) RZ
// when RZ: the R-pass's tanh term), and DAout = g when DAout (tanh: kept for the R-pass).
template <class V, int NI, bool TWO>
MAML_INLINE void lane_input_grad_block(const V* __restrict dZ, int64_t ldd, int64_t dout, const V* __restrict WT,
                                       const V* __restrict dZ2, const V* __restrict U, int64_t ldw, const V* __restrict A,
                                       int64_t lda, V* __restrict D, bool relu, V* __restrict DAout, const V* __restrict DA,
                                       const V* __restrict RZ) {
  constexpr int R = LaneKernels<V>::kRows;
  V acc[R][NI] = {};
  for (int64_t j = 0; j < dout; ++j) {
    V w[NI];
    for (int c = 0; c < NI; ++c) w[c] = WT[c * ldw + j];
    for (int r = 0; r < R; ++r) {
      const V d = dZ[r * ldd + j];
      for (int c = 0; c < NI; ++c) acc[r][c] += d * w[c];
    }
  }
  if constexpr (TWO)
    for (int64_t j = 0; j < dout; ++j) {
      V w[NI];
      for (int c = 0; c < NI; ++c) w[c] = U[c * ldw + j];
      for (int r = 0; r < R; ++r) {
        const V d = dZ2[r * ldd + j];
        for (int c = 0; c < NI; ++c) acc[r][c] += d * w[c];
      }
    }
  const V one = V{} + 1.0f, minus_two = V{} - 2.0f;
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NI; ++c) {
      const int64_t e = r * lda + c;
      const V a = A[e];
      if (DAout) DAout[e] = acc[r][c];
      if (relu) {
        D[e] = a > V{} ? acc[r][c] : V{};
      } else {
        const V d1 = one - a * a;
        D[e] = RZ ? acc[r][c] * d1 + DA[e] * (minus_two * a * d1) * RZ[e] : acc[r][c] * d1;
      }
    }
}

// OUT[i, j] -= coef[i, j] * (sum_{r < n} A[r, i] dZ[r, j] (+ A2[r, i] dZ2[r, j] when TWO)) for an
// NI x NJ block; coef is one scalar (stride 0) or per parameter (the fast layout's rates).
template <class V, int NI, int NJ, bool TWO>
MAML_INLINE void lane_weight_block(const V* __restrict A, const V* __restrict A2, int64_t lda, const V* __restrict dZ,
                                   const V* __restrict dZ2, int64_t ldd, int64_t n, V* __restrict OUT, int64_t ldw,
                                   const float* __restrict coef, int64_t cstride) {
  V acc[NI][NJ] = {};
  for (int64_t r = 0; r < n; ++r) {
    V d[NJ];
    for (int c = 0; c < NJ; ++c) d[c] = dZ[r * ldd + c];
    for (int i = 0; i < NI; ++i) {
      const V a = A[r * lda + i];
      for (int c = 0; c < NJ; ++c) acc[i][c] += a * d[c];
    }
    if constexpr (TWO) {
      for (int c = 0; c < NJ; ++c) d[c] = dZ2[r * ldd + c];
      for (int i = 0; i < NI; ++i) {
        const V a = A2[r * lda + i];
        for (int c = 0; c < NJ; ++c) acc[i][c] += a * d[c];
      }
    }
  }
  for (int i = 0; i < NI; ++i)
    for (int c = 0; c < NJ; ++c) OUT[i * ldw + c] -= coef[(i * ldw + c) * cstride] * acc[i][c];
}

template <class V, int NI, bool TWO>
MAML_INLINE void lane_input_grad_rows(int ni, const V* dZ, int64_t ldd, int64_t dout, const V* WT, const V* dZ2,
                                      const V* U, int64_t ldw, const V* A, int64_t lda, V* D, bool relu, V* DAout,
                                      const V* DA, const V* RZ) {
  if constexpr (NI > 1)
    if (ni < NI)
      return lane_input_grad_rows<V, NI - 1, TWO>(ni, dZ, ldd, dout, WT, dZ2, U, ldw, A, lda, D, relu, DAout, DA, RZ);
  lane_input_grad_block<V, NI, TWO>(dZ, ldd, dout, WT, dZ2, U, ldw, A, lda, D, relu, DAout, DA, RZ);
}

template <class V, int NI, bool TWO>
MAML_INLINE void lane_weight_rows(int ni, int nj, const V* A, const V* A2, int64_t lda, const V* dZ, const V* dZ2,
                                  int64_t ldd, int64_t n, V* OUT, int64_t ldw, const float* coef, int64_t cstride) {
  constexpr int J = LaneKernels<V>::kWj;
  if constexpr (NI > 1)
    if (ni < NI) return lane_weight_rows<V, NI - 1, TWO>(ni, nj, A, A2, lda, dZ, dZ2, ldd, n, OUT, ldw, coef, cstride);
  if (nj == J) return lane_weight_block<V, NI, J, TWO>(A, A2, lda, dZ, dZ2, ldd, n, OUT, ldw, coef, cstride);
  lane_weight_block<V, NI, J / 2, TWO>(A, A2, lda, dZ, dZ2, ldd, n, OUT, ldw, coef, cstride);
}

// One group's network passes (core/mlp.hpp's, in lanes). f: the fast layout.
template <class V>
struct LaneNet {
  using KS = LaneKernels<V>;
  using Bufs = std::vector<LaneBuf<V>>;
  static constexpr int kL = static_cast<int>(lanes<V>());

  static int64_t ld_in(const FastLayout& f, int l) { return l == 1 ? f.spec.dims[0] : f.dp[l - 1]; }

  // Z_l = A_{l-1} WT_l + b_l (+ A2_{l-1} W2_l), all rows of the pass, the columns a layer needs.
  template <bool TWO>
  static void layer_forward(const FastLayout& f, int l, int64_t rows, const V* A, const V* WT, const V* A2,
                            const V* W2, const V* b, V* Z, bool relu) {
    const ModelSpec& s = f.spec;
    const int64_t din = s.dims[l - 1], lda = ld_in(f, l), ldz = f.dp[l];
    // the output layer needs its real columns only (rounded to a block); hidden layers all of dp
    const int64_t cols = l == s.layers() ? (s.dims[l] + KS::kCols - 1) / KS::kCols * KS::kCols : ldz;
    for (int64_t r = 0; r < rows; r += KS::kRows)
      for (int64_t c = 0; c < cols; c += KS::kCols)
        lane_forward_block<V, KS::kCols, TWO>(A + r * lda, lda, din, WT + c, ldz, TWO ? A2 + r * lda : nullptr, lda,
                                              TWO ? din : 0, TWO ? W2 + c : nullptr, b + c, Z + r * ldz + c, ldz, relu);
  }

  // act[l] for l = 1..L from x (rows padded to kRows).
  static void forward(const FastLayout& f, const V* theta, const V* x, int64_t n, Bufs& act) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    const int64_t rows = lane_rows<V>(n);
    const bool relu = s.act == Activation::ReLU;
    for (int l = 1; l <= L; ++l) {
      V* Z = act[l].data();
      layer_forward<false>(f, l, rows, l == 1 ? x : act[l - 1].data(), theta + s.w_off[l], nullptr, nullptr,
                           theta + s.b_off[l], Z, l < L && relu);
      if (l < L && !relu)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < s.dims[l]; ++c) {
            V& z = Z[r * f.dp[l] + c];
            for (int k = 0; k < kL; ++k) z[k] = std::tanh(z[k]);
          }
    }
  }

  // Each lane's loss (into losses[k] when losses) and, when D, its output gradient into D
  // (rows [n, rows) zeroed). tasks[k]: the targets of lane k's task.
  static void loss(const FastLayout& f, const Targets<float>* tasks, int64_t n, const Bufs& act, LaneWork<V>& w,
                   double* losses, V* D) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    const int64_t m = s.out_dim(), ld = f.dp[L], rows = lane_rows<V>(n);
    const V* Z = act[L].data();
    for (int k = 0; k < kL; ++k) {
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < m; ++j) w.out[r * m + j] = Z[r * ld + j][k];
      const double lk = loss_grad(s.loss, w.out.data(), tasks[k], n, m, D ? w.dout.data() : nullptr);
      if (losses) losses[k] = lk;
      if (D)
        for (int64_t r = 0; r < n; ++r)
          for (int64_t j = 0; j < m; ++j) D[r * ld + j][k] = w.dout[r * m + j];
    }
    if (D)
      for (int64_t r = n; r < rows; ++r)
        for (int64_t j = 0; j < m; ++j) D[r * ld + j] = V{};
  }

  // The weight gradient of layer l (rows < n) applied as out -= coef * g, and the bias's; with
  // TWO, g = A^T dZ + A2^T dZ2 (the R-pass's R(dW)).
  template <bool TWO>
  static void layer_weights(const FastLayout& f, int l, int64_t n, const V* A, const V* A2, const V* dZ, const V* dZ2,
                            V* out, const float* coef, int64_t cstride) {
    const ModelSpec& s = f.spec;
    const int64_t din = s.dims[l - 1], dout = s.dims[l], ldd = f.dp[l], lda = ld_in(f, l);
    // columns up to the real width rounded to half a block (the rest is zero)
    const int64_t cols = (dout + KS::kWj / 2 - 1) / (KS::kWj / 2) * (KS::kWj / 2);
    V* OW = out + s.w_off[l];
    const float* cw = coef + s.w_off[l] * cstride;
    for (int64_t i = 0; i < din; i += KS::kWi)
      for (int64_t c = 0; c < cols; c += KS::kWj)
        lane_weight_rows<V, KS::kWi, TWO>(static_cast<int>(std::min<int64_t>(KS::kWi, din - i)),
                                          static_cast<int>(std::min<int64_t>(KS::kWj, cols - c)), A + i,
                                          TWO ? A2 + i : nullptr, lda, dZ + c, TWO ? dZ2 + c : nullptr, ldd, n,
                                          OW + i * ldd + c, ldd, cw + (i * ldd + c) * cstride, cstride);
    V* ob = out + s.b_off[l];
    const float* cb = coef + s.b_off[l] * cstride;
    for (int64_t c = 0; c < dout; ++c) {
      V acc{};
      for (int64_t r = 0; r < n; ++r) acc += dZ[r * ldd + c];
      ob[c] -= cb[c * cstride] * acc;
    }
  }

  // The backward pass from delta[L]: layer l's weight gradient g is applied as out -= coef * g
  // for l >= update_first, after the layer's input gradient has used theta (out may be theta).
  // Deltas go down to layer `first`; da (tanh, when non-null) keeps the input gradients
  // before the activation derivative.
  static void backward(const FastLayout& f, const V* theta, const V* x, int64_t n, const Bufs& act, Bufs& delta,
                       Bufs* da, V* out, const float* coef, int64_t cstride, int first, int update_first) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    const int64_t rows = lane_rows<V>(n);
    const bool relu = s.act == Activation::ReLU;
    for (int l = L; l >= first; --l) {
      const int64_t din = s.dims[l - 1], dout = s.dims[l], ldd = f.dp[l], lda = ld_in(f, l);
      const V* A = l == 1 ? x : act[l - 1].data();
      const V* dZ = delta[l].data();
      if (l > first) {  // delta[l-1] = (dZ W) * f'(a_{l-1})
        V* D = delta[l - 1].data();
        V* DA = da && !relu ? (*da)[l - 1].data() : nullptr;
        const V* WT = theta + s.w_off[l];
        for (int64_t r = 0; r < rows; r += KS::kRows)
          for (int64_t i = 0; i < din; i += KS::kIn)
            lane_input_grad_rows<V, KS::kIn, false>(static_cast<int>(std::min<int64_t>(KS::kIn, din - i)), dZ + r * ldd,
                                                    ldd, dout, WT + i * ldd, nullptr, nullptr, ldd, A + r * lda + i, lda,
                                                    D + r * lda + i, relu, DA ? DA + r * lda + i : nullptr, nullptr, nullptr);
      }
      if (l >= update_first) layer_weights<false>(f, l, n, A, nullptr, dZ, nullptr, out, coef, cstride);
    }
  }

  // R-forward along u at the point of a cached pass (act): rz[l] = R(z_l), ra[l] = R(a_l).
  static void r_forward(const FastLayout& f, const V* theta, const V* u, const V* x, int64_t n, const Bufs& act,
                        LaneWork<V>& w) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    const int64_t rows = lane_rows<V>(n);
    const bool relu = s.act == Activation::ReLU;
    const V one = V{} + 1.0f;
    for (int l = 1; l <= L; ++l) {
      V* RZ = w.rz[l].data();
      const V* A = l == 1 ? x : act[l - 1].data();
      if (l == 1)
        layer_forward<false>(f, l, rows, A, u + s.w_off[l], nullptr, nullptr, u + s.b_off[l], RZ, false);
      else
        layer_forward<true>(f, l, rows, A, u + s.w_off[l], w.ra[l - 1].data(), theta + s.w_off[l], u + s.b_off[l], RZ, false);
      if (l < L) {
        const V* a = act[l].data();
        V* RA = w.ra[l].data();
        const int64_t ld = f.dp[l];
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < s.dims[l]; ++c) {
            const int64_t e = r * ld + c;
            RA[e] = relu ? (a[e] > V{} ? RZ[e] : V{}) : (one - a[e] * a[e]) * RZ[e];
          }
      }
    }
  }

  // v += H u at the cached pass of an inner step (act, delta, da on the support set):
  // R(dz_L) from the loss curvature, then the R-backward pass.
  static void hvp_add(const FastLayout& f, const V* theta, const V* u, const V* x, const Targets<float>* tasks,
                      int64_t n, const LanePass<V>& c, LaneWork<V>& w, V* v) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    const int64_t m = s.out_dim(), ld = f.dp[L], rows = lane_rows<V>(n);
    const bool relu = s.act == Activation::ReLU;
    r_forward(f, theta, u, x, n, c.act, w);
    {  // R(dz_L) = (d^2 L / d out^2) R(out), lane by lane
      const V* Z = c.act[L].data();
      const V* RZ = w.rz[L].data();
      V* RD = w.rdz[L].data();
      for (int k = 0; k < kL; ++k) {
        for (int64_t r = 0; r < n; ++r)
          for (int64_t j = 0; j < m; ++j) {
            w.out[r * m + j] = Z[r * ld + j][k];
            w.rout[r * m + j] = RZ[r * ld + j][k];
          }
        loss_hess_vec(s.loss, w.out.data(), tasks[k], n, m, w.rout.data(), w.dout.data());
        for (int64_t r = 0; r < n; ++r)
          for (int64_t j = 0; j < m; ++j) RD[r * ld + j][k] = w.dout[r * m + j];
      }
      for (int64_t r = n; r < rows; ++r)
        for (int64_t j = 0; j < m; ++j) RD[r * ld + j] = V{};
    }
    const float minus_one = -1.0f;
    for (int l = L; l >= 1; --l) {
      const int64_t din = s.dims[l - 1], dout = s.dims[l], ldd = f.dp[l], lda = ld_in(f, l);
      const V* A = l == 1 ? x : c.act[l - 1].data();
      const V* dZ = c.delta[l].data();
      const V* RdZ = w.rdz[l].data();
      if (l > 1) {  // R(dz_{l-1}) = (R(dz_l) W + dz_l uW) f'(a) + (tanh) da f''(a) R(z_{l-1})
        V* D = w.rdz[l - 1].data();
        const V* DA = relu ? nullptr : c.da[l - 1].data();
        const V* RZ = relu ? nullptr : w.rz[l - 1].data();
        for (int64_t r = 0; r < rows; r += KS::kRows)
          for (int64_t i = 0; i < din; i += KS::kIn)
            lane_input_grad_rows<V, KS::kIn, true>(static_cast<int>(std::min<int64_t>(KS::kIn, din - i)), RdZ + r * ldd,
                                                   ldd, dout, theta + s.w_off[l] + i * ldd, dZ + r * ldd,
                                                   u + s.w_off[l] + i * ldd, ldd, A + r * lda + i, lda, D + r * lda + i,
                                                   relu, nullptr, DA ? DA + r * lda + i : nullptr,
                                                   RZ ? RZ + r * lda + i : nullptr);
      }
      // R(dW_l) = R(dz_l)^T a_{l-1} + dz_l^T R(a_{l-1}); R(db_l) = sum_rows R(dz_l); v += them
      if (l == 1)
        layer_weights<false>(f, l, n, A, nullptr, RdZ, nullptr, v, &minus_one, 0);
      else
        layer_weights<true>(f, l, n, A, w.ra[l - 1].data(), RdZ, dZ, v, &minus_one, 0);
    }
  }
};

// lanes[k] = src[rows of task k] for the L lanes, rows [n, rows) zero.
template <class V>
void gather_inputs(const float* const* xs, int64_t n, int64_t d0, V* dst) {
  constexpr int L = static_cast<int>(lanes<V>());
  const int64_t rows = lane_rows<V>(n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d0; ++c) {
      V v{};
      if (r < n)
        for (int k = 0; k < L; ++k) v[k] = xs[k][r * d0 + c];
      dst[r * d0 + c] = v;
    }
}

// The sum over a group's tasks of one vector's lanes: the lanes in use (mask), added by halving.
template <class V>
struct LaneSum {
  using VI = decltype(V{} > V{});  // the integer vector of a comparison's result
  VI mask;
  explicit LaneSum(int count) {
    for (int k = 0; k < static_cast<int>(lanes<V>()); ++k) mask[k] = k < count ? -1 : 0;
  }
  float operator()(V x) const { return hsum(reinterpret_cast<V>(reinterpret_cast<VI>(x) & mask)); }
};

// Tasks t0 .. t0 + count - 1 (count <= L, all with the same support size n and query size nq)
// from theta (fast layout), for any algorithm, or plain adaptation (`grad` == nullptr:
// w.thetas[0] holds every lane's adapted parameters at the end). Otherwise grad [P_fast] is
// OVERWRITTEN with the sum over the tasks of each task's meta-gradient (core/meta.hpp's
// definitions), rate_grad [rates.length] ACCUMULATES the sum of their rate gradients (when
// cfg.want_rate_grad), and the return value is the sum of their outer losses. Unused lanes
// repeat the last task.
template <class V>
double lane_group(const FastLayout& f, const ModelSpec& user, const MetaConfig& cfg, const float* theta,
                  const Rates<float>& rates, const BatchData<float>& batch, int64_t t0, int count, LaneWork<V>& w,
                  float* grad, float* rate_grad) {
  using Net = LaneNet<V>;
  constexpr int L = static_cast<int>(lanes<V>());
  const ModelSpec& s = f.spec;
  const int64_t P = s.n_params, d0 = s.in_dim();
  const int S = cfg.steps, layers = s.layers();
  const bool second = grad && cfg.second_order();
  const bool want_rates = second && cfg.want_rate_grad;
  const TaskData<float> first = batch.task(user, t0);
  const int64_t n = first.ns, nq = first.nq;
  w.reserve(f, lane_rows<V>(std::max(n, nq)), S, second, want_rates);
  Targets<float> ts[L], tq[L];
  const float* xs[L];
  const float* xq[L];
  for (int k = 0; k < L; ++k) {
    const TaskData<float> d = batch.task(user, t0 + std::min(k, count - 1));
    ts[k] = d.ys;
    tq[k] = d.yq;
    xs[k] = d.xs;
    xq[k] = d.xq;
  }
  gather_inputs<V>(xs, n, d0, w.xs.data());
  if (nq > 0) gather_inputs<V>(xq, nq, d0, w.xq.data());
  // ANIL adapts the head only: the inner loop updates (and, first order, differentiates) the last layer
  const int head = cfg.head_only() ? layers : 1;
  const int64_t begin = cfg.head_only() ? s.head_begin() : 0;
  const int64_t cstride = rates.param_stride == 0 ? 0 : 1;
  double loss[L] = {}, lk[L];
  V* v = w.v.data();
  if (grad && !second && cfg.algo == Algorithm::FOMAML) std::fill(w.v.begin(), w.v.end(), V{});
  // v += weight * grad L_qry(th) (the query passes)
  const auto query_grad = [&](const V* th, double weight) {
    Net::forward(f, th, w.xq.data(), nq, w.scratch.act);
    Net::loss(f, tq, nq, w.scratch.act, w, lk, w.scratch.delta[layers].data());
    for (int k = 0; k < L; ++k) loss[k] += weight * lk[k];
    const float c = static_cast<float>(-weight);
    Net::backward(f, th, w.xq.data(), nq, w.scratch.act, w.scratch.delta, nullptr, v, &c, 0, 1, 1);
  };

  // The inner loop: second order keeps theta_0..theta_S and each step's passes; otherwise
  // theta is updated in place in thetas[0].
  V* th0 = w.thetas[0].data();
  for (int64_t p = 0; p < P; ++p) th0[p] = V{} + theta[p];
  for (int st = 0; st < S; ++st) {
    V* cur = second ? w.thetas[st].data() : th0;
    if (grad && !second && cfg.algo == Algorithm::FOMAML && cfg.weights[st] != 0.0) query_grad(cur, cfg.weights[st]);
    const float* a = rates.data + st * rates.step_stride;
    if (!second) {
      if (n == 0) continue;  // no support: theta does not move
      Net::forward(f, cur, w.xs.data(), n, w.scratch.act);
      Net::loss(f, ts, n, w.scratch.act, w, nullptr, w.scratch.delta[layers].data());
      Net::backward(f, cur, w.xs.data(), n, w.scratch.act, w.scratch.delta, nullptr, cur, a, cstride, head, head);
      continue;
    }
    V* next = w.thetas[st + 1].data();
    std::copy(cur, cur + P, next);
    if (n == 0) {
      if (want_rates) std::fill(w.grads[st].begin(), w.grads[st].end(), V{});
      continue;
    }
    LanePass<V>& c = w.steps[st];
    Net::forward(f, cur, w.xs.data(), n, c.act);
    Net::loss(f, ts, n, c.act, w, nullptr, c.delta[layers].data());
    if (want_rates) {  // g_s kept for the rate gradients, then theta_{s+1} = theta_s - alpha g_s
      V* g = w.grads[st].data();
      std::fill(g, g + P, V{});
      const float minus_one = -1.0f;
      Net::backward(f, cur, w.xs.data(), n, c.act, c.delta, &c.da, g, &minus_one, 0, 1, head);
      for (int64_t p = begin; p < P; ++p) next[p] = cur[p] - a[p * cstride] * g[p];
    } else {
      Net::backward(f, cur, w.xs.data(), n, c.act, c.delta, &c.da, next, a, cstride, 1, head);
    }
  }
  if (!grad) return 0.0;

  const LaneSum<V> sum(count);
  const V* thS = w.thetas[second ? S : 0].data();
  if (cfg.algo == Algorithm::Reptile) {  // theta - theta_S; the loss at theta_S on the query set (the support set without one)
    for (int64_t p = 0; p < P; ++p) grad[p] = sum(theta[p] - thS[p]);
    const bool q = nq > 0;
    Net::forward(f, thS, q ? w.xq.data() : w.xs.data(), q ? nq : n, w.scratch.act);
    Net::loss(f, q ? tq : ts, q ? nq : n, w.scratch.act, w, loss, nullptr);
  } else if (!second) {  // FOMAML
    if (cfg.weights[S] != 0.0) query_grad(thS, cfg.weights[S]);
    for (int64_t p = 0; p < P; ++p) grad[p] = sum(v[p]);
  } else {  // the reverse pass (core/meta.hpp): v_S = w_S grad L_qry(theta_S), then back through the steps
    std::fill(w.v.begin(), w.v.end(), V{});
    if (cfg.weights[S] != 0.0) query_grad(thS, cfg.weights[S]);
    V* u = w.u.data();
    for (int st = S - 1; st >= 0; --st) {
      const V* cur = w.thetas[st].data();
      const float* a = rates.data + st * rates.step_stride;
      if (n > 0) {
        // u = -alpha mask v (v += H u below); the rate gradient -<g_s, v_{s+1}> first
        for (int64_t p = 0; p < begin; ++p) u[p] = V{};
        for (int64_t p = begin; p < P; ++p) u[p] = -a[p * cstride] * v[p];
        if (want_rates) {
          const V* g = w.grads[st].data();
          float* dr = rate_grad + st * rates.step_stride;
          if (cstride == 0) {
            V acc{};
            for (int64_t p = begin; p < P; ++p) acc += g[p] * v[p];
            dr[0] -= sum(acc);
          } else {
            for (int64_t p = begin; p < P; ++p) dr[p] -= sum(g[p] * v[p]);
          }
        }
        Net::hvp_add(f, cur, u, w.xs.data(), ts, n, w.steps[st], w, v);
      }
      if (cfg.weights[st] != 0.0) query_grad(cur, cfg.weights[st]);
    }
    for (int64_t p = 0; p < P; ++p) grad[p] = sum(v[p]);
  }
  double total = 0.0;
  for (int k = 0; k < count; ++k) total += loss[k];
  return total;
}

// Compiled once per instruction set in fast_lanes.cc (level: fast_meta.cc's fast_level):
// the lanes of a group there (16 with AVX-512, 8 with AVX2, 0: no lanes), and lane_group on
// the calling thread's own LaneWork.
int lane_width(int level);
double lane_group_at(int level, const FastLayout& f, const ModelSpec& user, const MetaConfig& cfg, const float* theta,
                     const Rates<float>& rates, const BatchData<float>& batch, int64_t t0, int count, float* grad,
                     float* rate_grad);

}  // namespace maml::cpu
