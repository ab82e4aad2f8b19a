// lanes.hpp: the inner loops of up to 16 tasks at once, one task per lane of a vector.
//
// For small networks the per-task kernels of fast_mlp.hpp waste much of each vector: a layer
// of 40 units is padded to 48, a layer of one output (the sinusoid net's) is all padding, and
// short rows (K = 10 shots) leave blocks half full. Here a vector holds the SAME quantity of
// L tasks (L = lanes(V): 16 with AVX-512), so every lane does useful work whatever the widths:
// parameters are stored [P_fast][L] (fast_mlp.hpp's fast layout, one vector per entry),
// activations and deltas [rows][dp_l][L]. The first-order algorithms (FOMAML, Reptile) and
// adaptation run their inner loops this way; a group's result per parameter is the sum over
// its tasks in lane order, so it depends only on how tasks are grouped (fixed per batch:
// see lane_groups), never on the thread count.
//
// The group's tasks must have the same support size (and query size): the batch driver
// groups only runs of such tasks and runs the others one by one on the per-task kernels.
//
// Blocks: forward z = a WT + b in kRows x kCols vector accumulators over the inputs; input
// gradients dz W as kRows x kIn over the outputs; weight gradients a^T dz as kWi x kWj over the
// rows, fused with the update theta -= coef * g (coef = the inner rate, or -w for a query
// gradient accumulated into a separate vector). Rows are padded to kRows (padded rows carry
// zero deltas and are never summed), columns are the fast layout's padded widths.
#pragma once
#include <algorithm>
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
struct LaneKernels<vf> {  // 16 ymm registers
  static constexpr int kRows = 3, kCols = 2, kIn = 2, kWi = 2, kWj = 4;
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

// Scratch memory of one worker's lane groups, sized once per model and row count.
template <class V>
struct LaneWork {
  LaneBuf<V> theta, grad;                 // [P_fast] the group's parameters; FOMAML's query gradient
  std::vector<LaneBuf<V>> act, delta;     // per layer l = 1..L: [rows_cap][dp_l]
  LaneBuf<V> xs, xq;                      // the support and query inputs [rows][d0]
  std::vector<float> out, dout;           // one lane's outputs and loss gradient [n, dL]
  std::vector<int64_t> dims;
  int64_t rows_cap = -1;

  void reserve(const FastLayout& f, int64_t rows) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    if (dims != s.dims || rows > rows_cap) {
      dims = s.dims;
      rows_cap = std::max(rows, rows_cap);
      act.assign(L + 1, {});
      delta.assign(L + 1, {});
      for (int l = 1; l <= L; ++l) {
        act[l].assign(rows_cap * f.dp[l]);
        delta[l].assign(rows_cap * f.dp[l]);  // padded columns stay zero
      }
      xs.assign(rows_cap * s.dims[0]);
      xq.assign(rows_cap * s.dims[0]);
      out.assign(static_cast<size_t>(rows_cap * s.out_dim()), 0.0f);
      dout.assign(static_cast<size_t>(rows_cap * s.out_dim()), 0.0f);
    }
    theta.resize(s.n_params);
    grad.resize(s.n_params);
  }
};

template <class V>
inline int64_t lane_rows(int64_t n) {
  constexpr int R = LaneKernels<V>::kRows;
  return (n + R - 1) / R * R;
}

// Z[r, c] = act(b[c] + sum_{i < din} A[r, i] WT[i, c]) for a kRows x NC block.
template <class V, int NC>
MAML_INLINE void lane_forward_block(const V* __restrict A, int64_t lda, int64_t din, const V* __restrict WT, int64_t ldw,
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
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) Z[r * ldz + c] = relu ? (acc[r][c] > V{} ? acc[r][c] : V{}) : acc[r][c];
}

// D[r, i] = f'(A[r, i]) * sum_{j < dout} dZ[r, j] W[j, i] for a kRows x NI block (WT[i, j] = W[j, i]).
template <class V, int NI>
MAML_INLINE void lane_input_grad_block(const V* __restrict dZ, int64_t ldd, int64_t dout, const V* __restrict WT,
                                       int64_t ldw, const V* __restrict A, int64_t lda, V* __restrict D, bool relu) {
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
  const V one = V{} + 1.0f;
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NI; ++c) {
      const V a = A[r * lda + c];
      D[r * lda + c] = relu ? (a > V{} ? acc[r][c] : V{}) : acc[r][c] * (one - a * a);
    }
}

// OUT[i, j] -= coef[i, j] * sum_{r < n} A[r, i] dZ[r, j] for an NI x NJ block; coef is one
// scalar (stride 0) or per parameter (the fast layout's rates, row stride ldw).
template <class V, int NI, int NJ>
MAML_INLINE void lane_weight_block(const V* __restrict A, int64_t lda, const V* __restrict dZ, int64_t ldd, int64_t n,
                                   V* __restrict OUT, int64_t ldw, const float* __restrict coef, int64_t cstride) {
  V acc[NI][NJ] = {};
  for (int64_t r = 0; r < n; ++r) {
    V d[NJ];
    for (int c = 0; c < NJ; ++c) d[c] = dZ[r * ldd + c];
    for (int i = 0; i < NI; ++i) {
      const V a = A[r * lda + i];
      for (int c = 0; c < NJ; ++c) acc[i][c] += a * d[c];
    }
  }
  for (int i = 0; i < NI; ++i)
    for (int c = 0; c < NJ; ++c) OUT[i * ldw + c] -= coef[(i * ldw + c) * cstride] * acc[i][c];
}

template <class V, int NI>
MAML_INLINE void lane_input_grad_rows(int ni, const V* dZ, int64_t ldd, int64_t dout, const V* WT, int64_t ldw, const V* A,
                                      int64_t lda, V* D, bool relu) {
  if constexpr (NI > 1)
    if (ni < NI) return lane_input_grad_rows<V, NI - 1>(ni, dZ, ldd, dout, WT, ldw, A, lda, D, relu);
  lane_input_grad_block<V, NI>(dZ, ldd, dout, WT, ldw, A, lda, D, relu);
}

template <class V, int NI>
MAML_INLINE void lane_weight_rows(int ni, int nj, const V* A, int64_t lda, const V* dZ, int64_t ldd, int64_t n, V* OUT,
                                  int64_t ldw, const float* coef, int64_t cstride) {
  constexpr int J = LaneKernels<V>::kWj;
  if constexpr (NI > 1)
    if (ni < NI) return lane_weight_rows<V, NI - 1>(ni, nj, A, lda, dZ, ldd, n, OUT, ldw, coef, cstride);
  if (nj == J) return lane_weight_block<V, NI, J>(A, lda, dZ, ldd, n, OUT, ldw, coef, cstride);
  lane_weight_block<V, NI, J / 2>(A, lda, dZ, ldd, n, OUT, ldw, coef, cstride);
}

// One group's network passes. s: the fast layout's spec; dp: its padded widths.
template <class V>
struct LaneNet {
  using KS = LaneKernels<V>;
  static constexpr int kL = static_cast<int>(lanes<V>());

  // act[l] for l = 1..L from act[0] = x (rows padded to kRows).
  static void forward(const FastLayout& f, const V* theta, const V* x, int64_t n, LaneWork<V>& w) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    const int64_t rows = lane_rows<V>(n);
    const bool relu = s.act == Activation::ReLU;
    for (int l = 1; l <= L; ++l) {
      const int64_t din = s.dims[l - 1], lda = l == 1 ? din : f.dp[l - 1], ldz = f.dp[l];
      // the output layer only needs its real columns (rounded to a block); hidden layers all of dp
      const int64_t cols = l == L ? (s.dims[l] + KS::kCols - 1) / KS::kCols * KS::kCols : ldz;
      const V* A = l == 1 ? x : w.act[l - 1].data();
      const V* WT = theta + s.w_off[l];
      const V* b = theta + s.b_off[l];
      V* Z = w.act[l].data();
      const bool act_relu = l < L && relu;
      for (int64_t r = 0; r < rows; r += KS::kRows)
        for (int64_t c = 0; c < cols; c += KS::kCols)
          lane_forward_block<V, KS::kCols>(A + r * lda, lda, din, WT + c, ldz, b + c, Z + r * ldz + c, ldz, act_relu);
      if (l < L && !relu)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < s.dims[l]; ++c) {
            V& z = Z[r * ldz + c];
            for (int k = 0; k < kL; ++k) z[k] = std::tanh(z[k]);
          }
    }
  }

  // Each lane's loss (into losses[k] when losses) and, when with_grad, its output gradient
  // into delta[L] (rows [n, rows) zeroed). tasks[k]: the targets of lane k's task.
  static void loss(const FastLayout& f, const Targets<float>* tasks, int64_t n, LaneWork<V>& w, double* losses,
                   bool with_grad) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    const int64_t m = s.out_dim(), ld = f.dp[L], rows = lane_rows<V>(n);
    const V* Z = w.act[L].data();
    V* D = w.delta[L].data();
    for (int k = 0; k < kL; ++k) {
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < m; ++j) w.out[r * m + j] = Z[r * ld + j][k];
      const double lk = loss_grad(s.loss, w.out.data(), tasks[k], n, m, with_grad ? w.dout.data() : nullptr);
      if (losses) losses[k] = lk;
      if (with_grad)
        for (int64_t r = 0; r < n; ++r)
          for (int64_t j = 0; j < m; ++j) D[r * ld + j][k] = w.dout[r * m + j];
    }
    if (with_grad)
      for (int64_t r = n; r < rows; ++r)
        for (int64_t j = 0; j < m; ++j) D[r * ld + j] = V{};
  }

  // The backward pass from delta[L], each layer's weight gradient g applied as
  // out -= coef * g as soon as it is complete (after the layer's input gradient has used
  // theta: out may be theta itself). Layers below `first` (ANIL's head) are skipped.
  static void backward(const FastLayout& f, const V* theta, const V* x, int64_t n, LaneWork<V>& w, V* out,
                       const float* coef, int64_t cstride, int first) {
    const ModelSpec& s = f.spec;
    const int L = s.layers();
    const int64_t rows = lane_rows<V>(n);
    const bool relu = s.act == Activation::ReLU;
    for (int l = L; l >= first; --l) {
      const int64_t din = s.dims[l - 1], dout = s.dims[l], ldd = f.dp[l];
      const int64_t lda = l == 1 ? din : f.dp[l - 1];
      const V* A = l == 1 ? x : w.act[l - 1].data();
      const V* dZ = w.delta[l].data();
      const V* WT = theta + s.w_off[l];
      if (l > first) {  // delta[l-1] = (dZ W) * f'(a_{l-1})
        V* D = w.delta[l - 1].data();
        for (int64_t r = 0; r < rows; r += KS::kRows)
          for (int64_t i = 0; i < din; i += KS::kIn)
            lane_input_grad_rows<V, KS::kIn>(static_cast<int>(std::min<int64_t>(KS::kIn, din - i)), dZ + r * ldd, ldd, dout,
                                             WT + i * ldd, ldd, A + r * lda + i, lda, D + r * lda + i, relu);
      }
      // weights: columns up to the real width rounded to half a block (the rest is zero)
      const int64_t cols = (dout + KS::kWj / 2 - 1) / (KS::kWj / 2) * (KS::kWj / 2);
      V* OW = out + s.w_off[l];
      const float* cw = coef + s.w_off[l] * cstride;
      for (int64_t i = 0; i < din; i += KS::kWi)
        for (int64_t c = 0; c < cols; c += KS::kWj)
          lane_weight_rows<V, KS::kWi>(static_cast<int>(std::min<int64_t>(KS::kWi, din - i)),
                                       static_cast<int>(std::min<int64_t>(KS::kWj, cols - c)), A + i, lda, dZ + c, ldd, n,
                                       OW + i * ldd + c, ldd, cw + (i * ldd + c) * cstride, cstride);
      V* ob = out + s.b_off[l];
      const float* cb = coef + s.b_off[l] * cstride;
      for (int64_t c = 0; c < dout; ++c) {
        V acc{};
        for (int64_t r = 0; r < n; ++r) acc += dZ[r * ldd + c];
        ob[c] -= cb[c * cstride] * acc;
      }
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

// The inner loop of tasks t0 .. t0 + count - 1 (count <= L, all with the same support size n
// and query size nq) from theta (fast layout), for FOMAML, Reptile or plain adaptation
// (`grad` == nullptr: w.theta holds every lane's adapted parameters at the end). Otherwise
// grad [P_fast] is OVERWRITTEN with the sum over the tasks, in lane order, of each task's
// meta-gradient (FOMAML: sum_s w_s grad L_qry(theta_s); Reptile: theta - theta_S), and the
// return value is the sum of their outer losses. Unused lanes repeat the last task.
template <class V>
double lane_group(const FastLayout& f, const ModelSpec& user, const MetaConfig& cfg, const float* theta,
                  const Rates<float>& rates, const BatchData<float>& batch, int64_t t0, int count, LaneWork<V>& w,
                  float* grad) {
  constexpr int L = static_cast<int>(lanes<V>());
  const ModelSpec& s = f.spec;
  const int64_t P = s.n_params, d0 = s.in_dim();
  const TaskData<float> first = batch.task(user, t0);
  const int64_t n = first.ns, nq = first.nq;
  w.reserve(f, lane_rows<V>(std::max(n, nq)));
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
  V* th = w.theta.data();
  for (int64_t p = 0; p < P; ++p) th[p] = V{} + theta[p];
  const bool fomaml = grad && cfg.algo == Algorithm::FOMAML;
  if (fomaml) std::fill(w.grad.begin(), w.grad.end(), V{});
  const int first_layer = cfg.head_only() ? s.layers() : 1;
  double loss[L] = {}, lk[L];
  // FOMAML's query term at the current parameters: grad += weight * grad L_qry
  const auto query_grad = [&](double weight) {
    LaneNet<V>::forward(f, th, w.xq.data(), nq, w);
    LaneNet<V>::loss(f, tq, nq, w, lk, true);
    for (int k = 0; k < L; ++k) loss[k] += weight * lk[k];
    const float c = static_cast<float>(-weight);
    LaneNet<V>::backward(f, th, w.xq.data(), nq, w, w.grad.data(), &c, 0, 1);
  };
  for (int st = 0; st < cfg.steps; ++st) {
    if (fomaml && cfg.weights[st] != 0.0) query_grad(cfg.weights[st]);
    if (n == 0) continue;  // no support: theta does not move
    LaneNet<V>::forward(f, th, w.xs.data(), n, w);
    LaneNet<V>::loss(f, ts, n, w, nullptr, true);
    const float* a = rates.data + st * rates.step_stride;
    LaneNet<V>::backward(f, th, w.xs.data(), n, w, th, a, rates.param_stride == 0 ? 0 : 1, first_layer);
  }
  if (!grad) return 0.0;
  // the sum over the group's tasks: each vector's lanes in use, added by halving (hsum)
  using VI = decltype(V{} > V{});  // the integer vector of a comparison's result
  VI mask;
  for (int k = 0; k < L; ++k) mask[k] = k < count ? -1 : 0;
  if (fomaml) {
    if (cfg.weights[cfg.steps] != 0.0) query_grad(cfg.weights[cfg.steps]);
    const V* g = w.grad.data();
    for (int64_t p = 0; p < P; ++p) grad[p] = hsum(reinterpret_cast<V>(reinterpret_cast<VI>(g[p]) & mask));
  } else {  // Reptile: theta - theta_S; the loss at theta_S on the query set (the support set without one)
    for (int64_t p = 0; p < P; ++p) grad[p] = hsum(reinterpret_cast<V>(reinterpret_cast<VI>(theta[p] - th[p]) & mask));
    const bool q = nq > 0;
    LaneNet<V>::forward(f, th, q ? w.xq.data() : w.xs.data(), q ? nq : n, w);
    LaneNet<V>::loss(f, q ? tq : ts, q ? nq : n, w, loss, false);
  }
  double total = 0.0;
  for (int k = 0; k < count; ++k) total += loss[k];
  return total;
}

}  // namespace maml::cpu
