// task_kernel.hpp: one task's whole meta-step (inner loop, query pass, exact reverse pass with
// Hessian-vector products) written once for a block of threads, over the scalar type T.
//
// nvcc compiles it with DeviceBlock inside the fused kernel (meta_kernels.cu: one block per
// task, working memory in shared memory, or in global memory for wide networks); g++ compiles
// it with SerialBlock and with blocks of host threads into the CPU addon, where
// test/cuda-host.test.ts checks it against native/core/meta.hpp task_meta_gradient, which is
// the specification (DESIGN.md §3):
//   inner loop   g_s = ∇L_sup(θ_s)      θ_{s+1} = θ_s − α_s ⊙ mask ⊙ g_s
//   reverse      v_S = w_S ∇L_q(θ_S)
//                v_s = v_{s+1} − H_s(α_s ⊙ mask ⊙ v_{s+1}) + w_s ∇L_q(θ_s)    (H term: second order only)
//                dα_s −= mask ⊙ g_s ⊙ v_{s+1}                                (learned rates only)
//   reptile      θ − θ_S
// H_s u comes from Pearlmutter's R-operator: forward and R-forward in one sweep, then backward
// and R-backward in one sweep (native/core/mlp.hpp has the same formulas in plain loops).
//
// Parallel form: every phase is a loop strided by (tid, nthreads) in which each output element
// is computed by exactly one thread, in an order that does not depend on the block size;
// phases are separated by sync(). Only the loss value and the scalar-rate gradient use a block
// reduction (a tree over the threads: deterministic for a fixed block size). Small layers read
// their weights from the work area row by row (a thread may take 8 rows at once, kRows); wide
// layers in the global-memory kernel go through shared-memory tiles (forward_layer_tiled).
//
// Memory: the caller hands a work area of Layout::total elements (shared memory on the GPU):
//   thetas [(S+1), P]  grads [S, P] (only for rate gradients)  v [P]  u [P]
//   act, rpre, ract [n_max, Σ d_l] (activations, R(z), R(a) of one pass)
//   dz, dz2, rdz, rdz2 [n_max, max width] (backward ping-pong)   red [nthreads]
//
// Accumulation rule: task_meta_step OVERWRITES out[0, P + R) (meta-gradient, then the rate
// gradient when cfg.want_rate_grad) and *loss; task_adapt OVERWRITES adapted [P].
#pragma once
#include "hd.hpp"

namespace maml::cuda {

constexpr int kMaxLayers = 16;

// The model, as plain values a kernel can take by value. Codes as native/core/model.hpp.
struct KModel {
  int L = 0;          // number of linear layers
  int act = 0;        // 0 relu, 1 tanh
  int loss = 0;       // 0 mse, 1 cross-entropy, 2 binary cross-entropy
  int P = 0;          // parameters
  int head_begin = 0; // first parameter of the last layer (ANIL)
  int max_width = 0;  // max over d1..dL
  int sum_width = 0;  // Σ_{l=1..L} d_l
  int dims[kMaxLayers + 1] = {};
  int w_off[kMaxLayers + 1] = {};
  int b_off[kMaxLayers + 1] = {};
};

// Codes as native/core/meta.hpp Algorithm.
enum KAlgo : int { kMAML = 0, kFOMAML = 1, kReptile = 2, kMetaSGD = 3, kANIL = 4 };

struct KConfig {
  int algo = 0;
  int steps = 0;               // S
  int want_rate_grad = 0;      // second-order algorithms with learned rates
  int R = 0;                   // rate-gradient entries per task (0 unless want_rate_grad)
  int64_t rate_step_stride = 0;
  int64_t rate_param_stride = 0;
  MAML_HD bool second_order() const { return algo == kMAML || algo == kMetaSGD || algo == kANIL; }
  MAML_HD bool head_only() const { return algo == kANIL; }
};

// Where one task's buffers start in the work area (element offsets), and its size.
struct Layout {
  int64_t thetas = 0, grads = 0, v = 0, u = 0, act = 0, rpre = 0, ract = 0;
  int64_t dz = 0, dz2 = 0, rdz = 0, rdz2 = 0, red = 0, total = 0;
  int n_max = 0;
  bool keep_grads = false;  // the inner gradients g_s are kept for the rate gradient
};

MAML_HD inline Layout plan_layout(const KModel& m, const KConfig& c, int n_max, int nthreads) {
  Layout l;
  const int steps = c.steps;
  l.keep_grads = c.want_rate_grad != 0;
  const int64_t P = m.P, pass = static_cast<int64_t>(n_max) * m.sum_width,
                delta = static_cast<int64_t>(n_max) * m.max_width;
  int64_t o = 0;
  l.thetas = o; o += (steps + 1) * P;
  l.grads = o;  o += l.keep_grads ? steps * P : 0;
  l.v = o;      o += P;
  l.u = o;      o += P;
  l.act = o;    o += pass;
  l.rpre = o;   o += pass;
  l.ract = o;   o += pass;
  l.dz = o;     o += delta;
  l.dz2 = o;    o += delta;
  l.rdz = o;    o += delta;
  l.rdz2 = o;   o += delta;
  l.red = o;    o += nthreads;
  l.total = o;
  l.n_max = n_max;
  return l;
}

// The working memory of an adaptation (task_adapt): two parameter vectors used in turn and one
// pass of activations and deltas, without the R pass's buffers (an adaptation has none; their
// pointers alias buffers that are then never written): 2P + n_max (Σ d_l + 2 max width) +
// nthreads elements, whatever the number of steps.
MAML_HD inline Layout plan_adapt_layout(const KModel& m, int n_max, int nthreads) {
  Layout l;
  const int64_t P = m.P, pass = static_cast<int64_t>(n_max) * m.sum_width,
                delta = static_cast<int64_t>(n_max) * m.max_width;
  int64_t o = 0;
  l.thetas = o; o += 2 * P;
  l.grads = l.v = l.u = o;  // none
  l.act = o;    o += pass;
  l.rpre = l.ract = l.act;
  l.dz = o;     o += delta;
  l.dz2 = o;    o += delta;
  l.rdz = l.dz;
  l.rdz2 = l.dz2;
  l.red = o;    o += nthreads;
  l.total = o;
  l.n_max = n_max;
  return l;
}

// The arrays of a meta-batch (CSR rows per task, as native/core/batch.hpp) and the outputs.
template <class T>
struct KArgs {
  const T* theta = nullptr;    // [P]
  const T* rates = nullptr;    // rates[s * step_stride + i * param_stride]
  const T* weights = nullptr;  // [S + 1] step loss weights
  const int64_t* s_off = nullptr;  // [B + 1]
  const int64_t* q_off = nullptr;  // [B + 1] (all zero: no query set)
  const T* xs = nullptr;       // [rows_s, d0]
  const T* ys = nullptr;       // [rows_s, dL] (mse, bce) ...
  const int32_t* ys_lab = nullptr;  // ... or [rows_s] labels (cross-entropy)
  const T* xq = nullptr;
  const T* yq = nullptr;
  const int32_t* yq_lab = nullptr;
  T* slots = nullptr;          // [B, P + R] per-task meta-gradients (task_meta_step)
  T* losses = nullptr;         // [B] per-task outer losses
  T* adapted = nullptr;        // [B, P] (task_adapt)
};

// One set of samples (support or query) of one task.
template <class T>
struct KSet {
  const T* x = nullptr;        // [n, d0]
  const T* y = nullptr;        // [n, dL]
  const int32_t* lab = nullptr;  // [n]
  int n = 0;
};

template <class T>
MAML_HD inline KSet<T> support_of(const KModel& m, const KArgs<T>& a, int t) {
  KSet<T> s;
  const int64_t r0 = a.s_off[t];
  s.n = static_cast<int>(a.s_off[t + 1] - r0);
  s.x = a.xs + r0 * m.dims[0];
  if (a.ys) s.y = a.ys + r0 * m.dims[m.L];
  if (a.ys_lab) s.lab = a.ys_lab + r0;
  return s;
}
template <class T>
MAML_HD inline KSet<T> query_of(const KModel& m, const KArgs<T>& a, int t) {
  KSet<T> s;
  const int64_t r0 = a.q_off[t];
  s.n = static_cast<int>(a.q_off[t + 1] - r0);
  s.x = a.xq ? a.xq + r0 * m.dims[0] : nullptr;
  if (a.yq) s.y = a.yq + r0 * m.dims[m.L];
  if (a.yq_lab) s.lab = a.yq_lab + r0;
  return s;
}

// ---- activation and its derivatives from the output y = f(z) (as mlp.hpp) ----------------
template <class T>
MAML_HD inline T k_act(int act, T z) { return act == 0 ? (z > T(0) ? z : T(0)) : k_tanh(z); }
template <class T>
MAML_HD inline T k_d1(int act, T y) { return act == 0 ? (y > T(0) ? T(1) : T(0)) : T(1) - y * y; }
template <class T>
MAML_HD inline T k_d2(int act, T y) { return act == 0 ? T(0) : T(-2) * y * (T(1) - y * y); }
template <class T>
MAML_HD inline T k_sigmoid(T z) {
  return z >= T(0) ? T(1) / (T(1) + k_exp(-z)) : k_exp(z) / (T(1) + k_exp(z));
}

// Sum of x over the block (every thread gets it). Tree order: deterministic per block size.
template <class T, class Block>
MAML_HD T block_sum(const Block& blk, T* red, T x) {
  const int t = blk.tid(), nt = blk.size();
  red[t] = x;
  blk.sync();
  int p = 1;
  while (p < nt) p <<= 1;
  for (int h = p >> 1; h > 0; h >>= 1) {
    if (t < h && t + h < nt) red[t] += red[t + h];
    blk.sync();
  }
  const T r = red[0];
  blk.sync();
  return r;
}

// The buffers of one pass, resolved from the layout.
template <class T>
struct Pass {
  T* act;   // per layer l: act + n * (Σ_{l'<l} d_l'), [n, d_l]; layer L holds the outputs
  T* rpre;  // R(z_l), same layout
  T* ract;  // R(a_l), same layout (l < L)
  T* dz; T* dz2; T* rdz; T* rdz2;
  T* red;
  T* tile;  // kTileFloats of block-shared scratch for the tiled products, or nullptr
};

// What the backward sweep does with each parameter's gradient g and curvature product hv.
template <class T>
struct Emit {
  T* g_out = nullptr;      // g_out[p] = g
  T* next = nullptr;       // next[p] = cur[p] − α(p) g for p ≥ begin, cur[p] otherwise
  const T* cur = nullptr;
  const T* rate = nullptr; // rates at this step: rate[p * param_stride]
  int64_t param_stride = 0;
  int begin = 0;
  T* vacc = nullptr;       // vacc[p] += scale g
  T scale = T(0);
  T* vsub = nullptr;       // vsub[p] −= hv (needs the R pass)
  MAML_HD bool wants_g() const { return g_out || next || vacc; }
};

// Rows i0..i0+nr−1 (nr ≤ R) of output column j of layer l: z (and R(z), R(a) when u). Each
// weight is read once for all R rows. Dot products start at k0 = j mod din and wrap around, so
// that neighbouring threads (neighbouring j) read different shared-memory banks of their
// weight rows (row stride din); the order per output does not depend on R.
template <int R, class T>
MAML_HD void forward_rows(const KModel& m, int l, const T* th, const T* u, const T* in, const T* rin, int i0, int nr,
                          int j, T* z, T* rpre, T* ract) {
  const int din = m.dims[l - 1], dout = m.dims[l];
  const T* wj = th + m.w_off[l] + static_cast<int64_t>(j) * din;
  const T* x0 = in + static_cast<int64_t>(i0) * din;
  const int k0 = j % din;
  T acc[R];
  for (int r = 0; r < R; ++r) acc[r] = th[m.b_off[l] + j];
  for (int k = k0, c = 0; c < din; ++c, k = k + 1 == din ? 0 : k + 1) {
    const T wk = wj[k];
MAML_UNROLL
    for (int r = 0; r < R; ++r)
      if (r < nr) acc[r] += x0[static_cast<int64_t>(r) * din + k] * wk;
  }
  T a[R];
  MAML_UNROLL
  for (int r = 0; r < R; ++r) {
    if (r >= nr) break;
    a[r] = l < m.L ? k_act(m.act, acc[r]) : acc[r];
    z[static_cast<int64_t>(i0 + r) * dout + j] = a[r];
  }
  if (!u) return;
  const T* uwj = u + m.w_off[l] + static_cast<int64_t>(j) * din;
  for (int r = 0; r < R; ++r) acc[r] = u[m.b_off[l] + j];
  for (int k = k0, c = 0; c < din; ++c, k = k + 1 == din ? 0 : k + 1) {
    const T uk = uwj[k];
MAML_UNROLL
    for (int r = 0; r < R; ++r)
      if (r < nr) acc[r] += x0[static_cast<int64_t>(r) * din + k] * uk;
  }
  if (rin) {
    const T* rx0 = rin + static_cast<int64_t>(i0) * din;
    for (int k = k0, c = 0; c < din; ++c, k = k + 1 == din ? 0 : k + 1) {
      const T wk = wj[k];
MAML_UNROLL
      for (int r = 0; r < R; ++r)
        if (r < nr) acc[r] += rx0[static_cast<int64_t>(r) * din + k] * wk;
    }
  }
  MAML_UNROLL
  for (int r = 0; r < R; ++r) {
    if (r >= nr) break;
    const int64_t o = static_cast<int64_t>(i0 + r) * dout + j;
    rpre[o] = acc[r];
    if (l < m.L) ract[o] = k_d1(m.act, a[r]) * acc[r];
  }
}

// Rows per thread in the matrix-product phases when there are at least 4 outputs per thread
// (wide layers: each weight is then read once per kRows rows), else 1 (small layers: shortest
// chain of dependent operations per thread).
constexpr int kRows = 8;

// Tiles of the forward-type products of wide layers, for the kernel whose working memory is
// in global memory (wide networks): weight tiles [kTileJ x kTileK] and input tiles
// [kTileI x kTileK] are loaded with consecutive threads on consecutive addresses into
// block-shared scratch (rows padded to kTileLd: no bank conflicts), then every output of the
// tile accumulates from there. Layers with din and dout >= kTileMin use them when the caller
// provides the scratch (Pass::tile). The sums of an output tile [kTileI x kTileJ] (and its R
// part) stay in the scratch across the k-tiles and go to the work area once.
constexpr int kTileJ = 64, kTileK = 32, kTileI = 32, kTileLd = kTileK + 1;
constexpr int kTileFloats = 2 * kTileJ * kTileLd + 2 * kTileI * kTileLd + 2 * kTileI * kTileJ;
constexpr int kTileMin = 32;

// Layer l's z = a W^T + b (and R(z) = R(a) W^T + a uW^T + ub when u), over tiles; then the
// activation and R(a). Sums per output: the bias, then each k-tile's partial sum in order.
template <int kU = -1, class T, class Block>
MAML_HD void forward_layer_tiled(const Block& blk, const KModel& m, int l, const T* th, const T* u, const T* in,
                                 const T* rin, int n, T* z, T* rpre, T* ract, T* tile) {
  const int din = m.dims[l - 1], dout = m.dims[l], tid = blk.tid(), nt = blk.size();
  // kU: −1, the R-forward decided at run time by u (variant 1); 0 or 1, fixed (variant 3's
  // fallback, whose plain passes also skip the R(a) tiles that variant 1 loads and never reads).
  // Spelled in place (macros) so that variant 1 compiles exactly as before.
#define MAML_WITH_U (kU < 0 ? u != nullptr : kU == 1)
#define MAML_WITH_RIN (kU < 0 ? rin != nullptr : (kU == 1 && rin != nullptr))
  const T* W = th + m.w_off[l];
  const T* uW = MAML_WITH_U ? u + m.w_off[l] : nullptr;
  T* Wt = tile;
  T* uWt = tile + kTileJ * kTileLd;
  T* Xt = tile + 2 * kTileJ * kTileLd;
  T* RXt = Xt + kTileI * kTileLd;
  T* Zt = RXt + kTileI * kTileLd;  // [ni, nj] sums of the output tile, then R(z)'s
  T* Rt = Zt + kTileI * kTileJ;
  for (int i0 = 0; i0 < n; i0 += kTileI) {
    const int ni = n - i0 < kTileI ? n - i0 : kTileI;
    for (int j0 = 0; j0 < dout; j0 += kTileJ) {
      const int nj = dout - j0 < kTileJ ? dout - j0 : kTileJ;
      for (int e = tid; e < ni * nj; e += nt) {
        const int jj = e % nj;
        Zt[e] = th[m.b_off[l] + j0 + jj];
        if (MAML_WITH_U) Rt[e] = u[m.b_off[l] + j0 + jj];
      }
      for (int k0 = 0; k0 < din; k0 += kTileK) {
        const int nk = din - k0 < kTileK ? din - k0 : kTileK;
        for (int e = tid; e < nj * nk; e += nt) {
          const int jj = e / nk, kk = e - jj * nk;
          const int64_t g = static_cast<int64_t>(j0 + jj) * din + k0 + kk;
          Wt[jj * kTileLd + kk] = W[g];
          if (MAML_WITH_U) uWt[jj * kTileLd + kk] = uW[g];
        }
        for (int e = tid; e < ni * nk; e += nt) {
          const int ii = e / nk, kk = e - ii * nk;
          const int64_t g = static_cast<int64_t>(i0 + ii) * din + k0 + kk;
          Xt[ii * kTileLd + kk] = in[g];
          if (MAML_WITH_RIN) RXt[ii * kTileLd + kk] = rin[g];
        }
        blk.sync();
        for (int e = tid; e < ni * nj; e += nt) {
          const int ii = e / nj, jj = e - ii * nj;
          const T* x = Xt + ii * kTileLd;
          const T* wr = Wt + jj * kTileLd;
          T acc = T(0);
          for (int kk = 0; kk < nk; ++kk) acc += x[kk] * wr[kk];
          Zt[e] += acc;
          if (MAML_WITH_U) {
            const T* ur = uWt + jj * kTileLd;
            T r = T(0);
            for (int kk = 0; kk < nk; ++kk) r += x[kk] * ur[kk];
            if (MAML_WITH_RIN) {
              const T* rx = RXt + ii * kTileLd;
              for (int kk = 0; kk < nk; ++kk) r += rx[kk] * wr[kk];
            }
            Rt[e] += r;
          }
        }
        blk.sync();
      }
      for (int e = tid; e < ni * nj; e += nt) {
        const int ii = e / nj, jj = e - ii * nj;
        const int64_t o = static_cast<int64_t>(i0 + ii) * dout + j0 + jj;
        z[o] = Zt[e];
        if (MAML_WITH_U) rpre[o] = Rt[e];
      }
      blk.sync();
    }
  }
  if (l < m.L) {
    for (int e = tid; e < n * dout; e += nt) {
      const T a = k_act(m.act, z[e]);
      z[e] = a;
      if (MAML_WITH_U) ract[e] = k_d1(m.act, a) * rpre[e];
    }
  }
  blk.sync();
#undef MAML_WITH_U
#undef MAML_WITH_RIN
}

// ---- Kernel variant 3 (MAML_CUDA_KERNEL=3): row-register products for wide layers ------------
// In the global-memory kernel, a wide layer's products give each thread one output column (the
// forward products: column j of z; the delta products: column k of the deltas below) and ALL the
// rows of the set (up to kV3Rows, padded to RP, a multiple of 4) in registers; the operand that
// every thread shares (the rows of x, or of the deltas) is staged in the block's scratch
// transposed, [k][RP], and read four rows per load by every thread at once (a broadcast). Each
// weight is loaded once per pass and used for RP rows, with no index arithmetic per product:
// variant 1 loads two shared-memory values per product (forward) or reloads every weight per 8
// rows (deltas). Sums per output: the forward from the bias over k ascending (R part: per k,
// x uW then R(x) W); the deltas over j ascending (R part: per j, R(dz) W then dz uW, two FMAs;
// delta_rows adds their sum). Variant 3 needs more scratch
// (kTileFloatsV3: 48 KB, the most a block may have without opting in) and computes the weight
// gradients with weight_tile_fixed (weight_tiles_v3). The layer functions are not inlined on the device (MAML_NOINLINE): each
// gets its own 128 registers (inlined into the task kernel, ptxas spilled 1.5 KB; as calls, the
// hot loops spill at most a few words; the calls run a few times per layer pass).
constexpr int kTileFloatsV3 = 12288;
constexpr int kV3K = 16;     // inputs per weight tile of the forward products (a power of 2)
constexpr int kV3Rows = 16;  // rows in registers, at most

// The padded row count for n rows: the multiple of 4 at or above n, at most kV3Rows.
MAML_HD inline int v3_rows(int n) { return n > 12 ? 16 : n > 8 ? 12 : n > 4 ? 8 : 4; }

// The layer's scratch need in floats: the forward's transposed weight tiles (and uW's) and the
// rows of x (and R(x)) of one tile.
MAML_HD inline int v3_forward_floats(int nt, int rp, bool with_u, bool with_rx) {
  return kV3K * (nt + 2) * (with_u ? 2 : 1) + kV3K * rp * (with_rx ? 2 : 1);
}

// RP staged rows p[0..RP) into registers o (four per load; p 16-byte aligned), and acc[r] += o[r] w.
template <int RP, class T>
MAML_HD inline void load_rows(const T* p, T* o) {
  MAML_UNROLL
  for (int r = 0; r < RP; r += 4) k_ld4(p + r, o + r);
}
template <int RP, class T>
MAML_HD inline void fma_rows(T* acc, const T* v, T w) {
  MAML_UNROLL
  for (int r = 0; r < RP; ++r) acc[r] += v[r] * w;
}

// Layer l's z = a Wᵀ + b (and R(z), R(a) when U) in chunks of RP rows and column blocks of the
// block's size: every k-tile of kV3K inputs, the block loads the weights [nj x kV3K] (coalesced:
// consecutive threads on consecutive inputs of a weight row) into Wt[kk][j] and the rows into
// xT[kk][r] (rows nr..RP−1 zero), then thread tid adds the tile's products to its column j0 + tid.
// In the plain forward (no uW) the weight tile is fetched into registers one tile ahead: its loads
// are issued before the current tile's products and run under them (a wide-net task has only ~16
// warps per SM to hide them with, and the plain pass has the least work per tile); with uW the
// two prefetch arrays made ptxas spill, so the R-forward loads each tile when it needs it. Ends
// with sync().
template <int RP, bool U, bool RX, class T, class Block>
MAML_NOINLINE MAML_HD void forward_layer_rows(const Block& blk, const KModel& m, int l, const T* th, const T* u, const T* in,
                                const T* rin, int n, T* z, T* rpre, T* ract, T* tile) {
  const int din = m.dims[l - 1], dout = m.dims[l], tid = blk.tid(), nt = blk.size();
  // row pitch of the transposed weight tile: a warp stores elements (jj, kk) and (jj + 1, kk),
  // kk < 16, at kk ldj + jj; with ldj ≡ 2 (mod 32) their 32 banks 2 kk + jj are distinct (with
  // nt + 1 they overlapped two ways), and a warp's reads (kk ldj + tid) stay consecutive
  const int ldj = nt + 2;
  T* Wt = tile;
  T* uWt = tile + kV3K * ldj;
  T* xT = tile + kV3K * ldj * (U ? 2 : 1);  // a multiple of 16 floats from the scratch's start
  T* rxT = xT + kV3K * RP;
  const T* W = th + m.w_off[l];
  const T* uW = U ? u + m.w_off[l] : nullptr;
  const bool hidden = l < m.L;
  for (int i0 = 0; i0 < n; i0 += RP) {
    const int nr = n - i0 < RP ? n - i0 : RP;
    for (int j0 = 0; j0 < dout; j0 += nt) {
      const int nj = dout - j0 < nt ? dout - j0 : nt;
      const bool mine = tid < nj;
      const int j = j0 + tid;
      T acc[RP], racc[RP];
      const T b = mine ? th[m.b_off[l] + j] : T(0);
      const T ub = U && mine ? u[m.b_off[l] + j] : T(0);
      MAML_UNROLL
      for (int r = 0; r < RP; ++r) {
        acc[r] = b;
        racc[r] = ub;
      }
      // the plain forward's prefetch: this thread's share of a weight tile, the elements
      // q = tid + i nt (i < kV3K, as nj ≤ nt)
      constexpr bool kPrefetch = !U;
      T pw[kV3K];
      auto fetch = [&](int k0) {
        const int nk = din - k0 < kV3K ? din - k0 : kV3K;
        MAML_UNROLL
        for (int i = 0; i < kV3K; ++i) {
          const int q = tid + i * nt, jj = q / kV3K, kk = q - jj * kV3K;
          pw[i] = jj < nj && kk < nk ? W[(j0 + jj) * din + k0 + kk] : T(0);
        }
      };
      if (kPrefetch) fetch(0);
      for (int k0 = 0; k0 < din; k0 += kV3K) {
        const int nk = din - k0 < kV3K ? din - k0 : kV3K;
        if (kPrefetch) {
          MAML_UNROLL
          for (int i = 0; i < kV3K; ++i) {
            const int q = tid + i * nt, jj = q / kV3K, kk = q - jj * kV3K;
            if (jj < nj) Wt[kk * ldj + jj] = pw[i];
          }
        } else {
          for (int q = tid; q < nj * kV3K; q += nt) {
            const int jj = q / kV3K, kk = q - jj * kV3K;
            if (kk < nk) {
              const int g = (j0 + jj) * din + k0 + kk;
              Wt[kk * ldj + jj] = W[g];
              if (U) uWt[kk * ldj + jj] = uW[g];
            }
          }
        }
        for (int q = tid; q < kV3K * RP; q += nt) {
          const int kk = q / RP, r = q - kk * RP;
          const bool ok = kk < nk && r < nr;
          const int g = (i0 + r) * din + k0 + kk;
          xT[q] = ok ? in[g] : T(0);
          if (RX) rxT[q] = ok ? rin[g] : T(0);
        }
        blk.sync();
        if (kPrefetch && k0 + kV3K < din) fetch(k0 + kV3K);  // in flight during the products below
        if (mine) {
          auto step = [&](int kk) {
            const T w = Wt[kk * ldj + tid];
            T x[RP];
            load_rows<RP>(xT + kk * RP, x);
            fma_rows<RP>(acc, x, w);
            if (U) {
              const T uw = uWt[kk * ldj + tid];
              T rx[RP];
              if (RX) load_rows<RP>(rxT + kk * RP, rx);
              MAML_UNROLL
              for (int r = 0; r < RP; ++r) {
                racc[r] += x[r] * uw;
                if (RX) racc[r] += rx[r] * w;
              }
            }
          };
          if (nk == kV3K) {  // 4 inputs at a time: enough loads in flight, a quarter of the code
            MAML_UNROLL4
            for (int kk = 0; kk < kV3K; ++kk) step(kk);
          } else {
            for (int kk = 0; kk < nk; ++kk) step(kk);
          }
        }
        blk.sync();
      }
      if (mine) {
        MAML_UNROLL
        for (int r = 0; r < RP; ++r) {
          if (r >= nr) break;
          const int64_t o = static_cast<int64_t>(i0 + r) * dout + j;
          const T a = hidden ? k_act(m.act, acc[r]) : acc[r];
          z[o] = a;
          if (U) {
            rpre[o] = racc[r];
            if (hidden) ract[o] = k_d1(m.act, a) * racc[r];
          }
        }
      }
    }
  }
  blk.sync();
}

template <int RP, class T, class Block>
MAML_HD void forward_layer_v3_rp(const Block& blk, const KModel& m, int l, const T* th, const T* u, const T* in,
                                 const T* rin, int n, T* z, T* rpre, T* ract, T* tile) {
  if (!u) forward_layer_rows<RP, false, false>(blk, m, l, th, u, in, rin, n, z, rpre, ract, tile);
  else if (!rin) forward_layer_rows<RP, true, false>(blk, m, l, th, u, in, rin, n, z, rpre, ract, tile);
  else forward_layer_rows<RP, true, true>(blk, m, l, th, u, in, rin, n, z, rpre, ract, tile);
}

// Variant 3's forward of a wide layer when the scratch holds its tiles (returns false, having done
// nothing, otherwise). Ends with sync().
template <class T, class Block>
MAML_HD bool forward_layer_v3(const Block& blk, const KModel& m, int l, const T* th, const T* u, const T* in,
                              const T* rin, int n, T* z, T* rpre, T* ract, T* tile) {
  const int rp = v3_rows(n);
  if (v3_forward_floats(blk.size(), rp, u != nullptr, u && rin) > kTileFloatsV3) return false;
  switch (rp) {
    case 4: forward_layer_v3_rp<4>(blk, m, l, th, u, in, rin, n, z, rpre, ract, tile); break;
    case 8: forward_layer_v3_rp<8>(blk, m, l, th, u, in, rin, n, z, rpre, ract, tile); break;
    case 12: forward_layer_v3_rp<12>(blk, m, l, th, u, in, rin, n, z, rpre, ract, tile); break;
    default: forward_layer_v3_rp<16>(blk, m, l, th, u, in, rin, n, z, rpre, ract, tile); break;
  }
  return true;
}

// Forward pass at th on set (and the R-forward along u when u != nullptr), layer by layer:
//   z_l = a_{l−1} W_lᵀ + b_l,  a_l = f(z_l) (l < L)
//   R(z_l) = R(a_{l−1}) W_lᵀ + a_{l−1} uW_lᵀ + ub_l,  R(a_l) = f'(z_l) R(z_l)
template <int kVariant = 1, class T, class Block>
MAML_HD void forward_pass(const Block& blk, const KModel& m, const T* th, const T* u, const KSet<T>& set,
                          const Pass<T>& w) {
  const int n = set.n;
  int64_t off = 0, prev_off = 0;
  for (int l = 1; l <= m.L; ++l) {
    const int dout = m.dims[l];
    const T* in = l > 1 ? w.act + prev_off : set.x;
    const T* rin = l > 1 ? w.ract + prev_off : nullptr;
    T *z = w.act + off, *rpre = w.rpre + off, *ract = w.ract + off;
    const bool tiled = w.tile && m.dims[l - 1] >= kTileMin && dout >= kTileMin;
    if constexpr (kVariant >= 3) {  // variant 3: the row-register products where the scratch holds them
      if (tiled && forward_layer_v3(blk, m, l, th, u, in, rin, n, z, rpre, ract, w.tile)) {
        prev_off = off;
        off += static_cast<int64_t>(n) * dout;
        continue;
      }
    }
    if (tiled) {
      if constexpr (kVariant >= 2) {  // ends with sync()
        if (u) forward_layer_tiled<1>(blk, m, l, th, u, in, rin, n, z, rpre, ract, w.tile);
        else forward_layer_tiled<0>(blk, m, l, th, u, in, rin, n, z, rpre, ract, w.tile);
      } else {
        forward_layer_tiled(blk, m, l, th, u, in, rin, n, z, rpre, ract, w.tile);  // ends with sync()
      }
    } else if (n * dout >= 4 * blk.size()) {
      const int chunks = (n + kRows - 1) / kRows;
      for (int idx = blk.tid(); idx < chunks * dout; idx += blk.size()) {
        const int ch = idx / dout, j = idx - ch * dout, i0 = ch * kRows;
        forward_rows<kRows>(m, l, th, u, in, rin, i0, n - i0 < kRows ? n - i0 : kRows, j, z, rpre, ract);
      }
    } else {
      for (int idx = blk.tid(); idx < n * dout; idx += blk.size()) {
        const int i = idx / dout, j = idx - i * dout;
        forward_rows<1>(m, l, th, u, in, rin, i, 1, j, z, rpre, ract);
      }
    }
    if (!tiled) blk.sync();
    prev_off = off;
    off += static_cast<int64_t>(n) * dout;
  }
}

// From the outputs out [n, dL] (and R(out) in rout when with_r): dL/dout into dz [n, dL] (and
// R(dL/dout) = (∂²L/∂out²) R(out) into rdz), one row per thread; returns the loss value
// (block-reduced in red) when want_loss, else 0. Ends with sync().
template <class T, class Block>
MAML_HD T loss_rows(const Block& blk, const KModel& m, const KSet<T>& set, const T* out, const T* rout, T* dz, T* rdz,
                    T* red, bool with_r, bool want_loss) {
  const int n = set.n, dL = m.dims[m.L];
  T part = T(0);
  if (n > 0) {
    for (int i = blk.tid(); i < n; i += blk.size()) {
      const T* z = out + static_cast<int64_t>(i) * dL;
      T* d = dz + static_cast<int64_t>(i) * dL;
      T* rd = rdz + static_cast<int64_t>(i) * dL;
      const T* r = rout + static_cast<int64_t>(i) * dL;
      if (m.loss == 0) {  // mse: mean over n * dL
        const T scale = T(2) / T(n * dL);
        for (int j = 0; j < dL; ++j) {
          const T e = z[j] - set.y[static_cast<int64_t>(i) * dL + j];
          part += e * e;
          d[j] = scale * e;
          if (with_r) rd[j] = scale * r[j];
        }
      } else if (m.loss == 1) {  // cross-entropy: mean over n; H = (diag p − p pᵀ) / n per row
        const T inv_n = T(1) / T(n);
        T zmax = z[0];
        for (int j = 1; j < dL; ++j) zmax = z[j] > zmax ? z[j] : zmax;
        T sum = T(0);
        for (int j = 0; j < dL; ++j) sum += k_exp(z[j] - zmax);
        const T lse = zmax + k_log(sum);
        const int y = set.lab[i];
        part += lse - z[y];
        for (int j = 0; j < dL; ++j) d[j] = k_exp(z[j] - lse) * inv_n;
        d[y] -= inv_n;
        if (with_r) {
          T pr = T(0);
          for (int j = 0; j < dL; ++j) {
            rd[j] = k_exp(z[j] - zmax) / sum;  // p_j
            pr += rd[j] * r[j];
          }
          for (int j = 0; j < dL; ++j) rd[j] = rd[j] * (r[j] - pr) * inv_n;
        }
      } else {  // binary cross-entropy with logits: mean over n * dL
        const T inv = T(1) / T(n * dL);
        for (int j = 0; j < dL; ++j) {
          const T zz = z[j], y = set.y[static_cast<int64_t>(i) * dL + j];
          part += (zz > T(0) ? zz : T(0)) - zz * y + k_log1p(k_exp(-k_abs(zz)));
          const T s = k_sigmoid(zz);
          d[j] = (s - y) * inv;
          if (with_r) rd[j] = s * (T(1) - s) * r[j] * inv;
        }
      }
    }
  }
  T loss = T(0);
  if (want_loss) {
    loss = block_sum(blk, red, part);
    if (n > 0) loss = m.loss == 1 ? loss / T(n) : loss / T(n * dL);
  } else {
    blk.sync();
  }
  return loss;
}

// The loss of a pass: its outputs are the last layer's rows of w.act (and R(out) of w.rpre).
template <class T, class Block>
MAML_HD T loss_pass(const Block& blk, const KModel& m, const KSet<T>& set, const Pass<T>& w, bool with_r,
                    bool want_loss) {
  const int64_t out_off = static_cast<int64_t>(set.n) * (m.sum_width - m.dims[m.L]);
  return loss_rows(blk, m, set, w.act + out_off, w.rpre + out_off, w.dz, w.rdz, w.red, with_r, want_loss);
}

// Rows i0..i0+nr−1 (nr ≤ R) of column k of the deltas of layer l−1 (from those of layer l):
//   dz_{l−1} = (dz_l W_l) ⊙ f'(a_{l−1})
//   R(dz_{l−1}) = (R(dz_l) W_l + dz_l uW_l) ⊙ f' + (dz_l W_l) ⊙ f'' ⊙ R(z_{l−1})
// Each weight W[j, k] is read once for all R rows. kWR: −1, the R part decided at run time by
// with_r (kernel variant 1); 0 or 1, fixed at compile time (variant 3's fallback).
template <int R, int kWR = -1, class T>
MAML_HD void delta_rows(const KModel& m, int l, const T* th, const T* u, const Pass<T>& w, const T* dz, const T* rdz,
                        int64_t prev_off, int i0, int nr, int k, bool with_r) {
  if constexpr (kWR >= 0) with_r = kWR == 1;
  const int din = m.dims[l - 1], dout = m.dims[l];
  const T* W = th + m.w_off[l];
  const T* uW = with_r ? u + m.w_off[l] : nullptr;
  const T* dz0 = dz + static_cast<int64_t>(i0) * dout;
  const T* rdz0 = rdz + static_cast<int64_t>(i0) * dout;
  T da[R], rda[R];
  for (int r = 0; r < R; ++r) da[r] = rda[r] = T(0);
  // unrolled: several weight loads in flight (each iteration's loads are independent)
MAML_UNROLL4
  for (int j = 0; j < dout; ++j) {
    const T wjk = W[static_cast<int64_t>(j) * din + k];
MAML_UNROLL
    for (int r = 0; r < R; ++r)
      if (r < nr) da[r] += dz0[static_cast<int64_t>(r) * dout + j] * wjk;
    if (with_r) {
      const T ujk = uW[static_cast<int64_t>(j) * din + k];
MAML_UNROLL
      for (int r = 0; r < R; ++r)
        if (r < nr)
          rda[r] += rdz0[static_cast<int64_t>(r) * dout + j] * wjk + dz0[static_cast<int64_t>(r) * dout + j] * ujk;
    }
  }
  MAML_UNROLL
  for (int r = 0; r < R; ++r) {
    if (r >= nr) break;
    const int64_t q = static_cast<int64_t>(i0 + r) * din + k;
    const T a = w.act[prev_off + q];
    if (with_r) w.rdz2[q] = rda[r] * k_d1(m.act, a) + da[r] * k_d2(m.act, a) * w.rpre[prev_off + q];
    w.dz2[q] = da[r] * k_d1(m.act, a);
  }
}

// Writes a parameter's gradient g (and curvature product hv) where e says: pl indexes the
// task's parameter-sized buffers (cur, next, vacc, vsub), pg the model's (rates, g_out). The two
// are the same index except in the cluster kernel (task_cluster.hpp), whose buffers hold a
// block's slice of the parameters.
template <class T>
MAML_HD inline void emit_param(const Emit<T>& e, int pl, int pg, T g, T hv, bool with_r) {
  if (e.g_out) e.g_out[pg] = g;
  if (e.next) e.next[pl] = pg >= e.begin ? e.cur[pl] - e.rate[pg * e.param_stride] * g : e.cur[pl];
  if (e.vacc) e.vacc[pl] += e.scale * g;
  if (with_r) e.vsub[pl] -= hv;
}
template <class T>
MAML_HD inline void emit_param(const Emit<T>& e, int p, T g, T hv, bool with_r) {
  emit_param(e, p, p, g, hv, with_r);
}

// Weight gradients of a wide layer in register tiles: rows j0..j0+TJ−1 and the columns
// kt, kt + tk, kt + 2 tk, ... (TK of them, those < din) from one pass over the rows, each row's
// TK inputs and TJ deltas loaded once for the TJ x TK products (the one-weight-per-thread loop
// loads two values per product). Neighbouring threads take neighbouring kt, so every load and
// store of the tile is coalesced. Per weight the sums run in the same order as there (rows
// ascending; with R, the R(dz) x term before the dz R(x) term), so both give the same bits.
constexpr int kTileGJ = 4, kTileGK = 4;

template <class T>
MAML_HD void weight_tile(const KModel& m, int l, const T* in, const T* rin, const T* dzs, const T* rdzs, int n, int j0,
                         int kt, int tk, const Emit<T>& e, bool want_g, bool with_r) {
  const int din = m.dims[l - 1], dout = m.dims[l];
  T g[kTileGJ][kTileGK], hv[kTileGJ][kTileGK];
  MAML_UNROLL
  for (int a = 0; a < kTileGJ; ++a)
    MAML_UNROLL
    for (int b = 0; b < kTileGK; ++b) g[a][b] = hv[a][b] = T(0);
  const int nj = dout - j0 < kTileGJ ? dout - j0 : kTileGJ;
  for (int i = 0; i < n; ++i) {
    T x[kTileGK], rx[kTileGK], dz[kTileGJ], rdz[kTileGJ];
    const T* xi = in + static_cast<int64_t>(i) * din + kt;
    const T* rxi = rin ? rin + static_cast<int64_t>(i) * din + kt : nullptr;
    const T* dzi = dzs + static_cast<int64_t>(i) * dout + j0;
    const T* rdzi = rdzs + static_cast<int64_t>(i) * dout + j0;
    MAML_UNROLL
    for (int b = 0; b < kTileGK; ++b) {
      const bool in_layer = kt + b * tk < din;
      x[b] = in_layer ? xi[b * tk] : T(0);
      rx[b] = rxi && in_layer ? rxi[b * tk] : T(0);
    }
    MAML_UNROLL
    for (int a = 0; a < kTileGJ; ++a) {
      dz[a] = a < nj ? dzi[a] : T(0);
      rdz[a] = with_r && a < nj ? rdzi[a] : T(0);
    }
    MAML_UNROLL
    for (int a = 0; a < kTileGJ; ++a)
      MAML_UNROLL
      for (int b = 0; b < kTileGK; ++b) {
        if (want_g) g[a][b] += dz[a] * x[b];
        if (with_r) {
          hv[a][b] += rdz[a] * x[b];
          if (rin) hv[a][b] += dz[a] * rx[b];
        }
      }
  }
  MAML_UNROLL
  for (int a = 0; a < kTileGJ; ++a)
    MAML_UNROLL
    for (int b = 0; b < kTileGK; ++b)
      if (a < nj && kt + b * tk < din) emit_param(e, m.w_off[l] + (j0 + a) * din + kt + b * tk, g[a][b], hv[a][b], with_r);
}

// Kernel variant 3's weight tiles (bench/NOTES.md entries 23 and 25; first an experiment of its
// own, "variant 2"): weight_tile with the pass's mode fixed at compile time (G: the gradient is wanted;
// R: the curvature product; RX: the input's R part exists) and no branch in the row loop: a
// column or row past the layer's edge reads column kt or row j0 instead (always inside) and is
// not written. The same sums in the same order as weight_tile, so the same bits. The deltas of
// row i, output j are dzs[i * drs + j * dcs] (the layer's [n, dout] rows: drs = dout, dcs = 1;
// variant 3's transposed staging: drs = 1, dcs = its row count).
template <bool G, bool R, bool RX, class T>
MAML_HD void weight_tile_fixed(const KModel& m, int l, const T* in, const T* rin, const T* dzs, const T* rdzs, int n,
                               int j0, int kt, int tk, const Emit<T> e, int drs, int dcs) {
  const int din = m.dims[l - 1], dout = m.dims[l];
  const int nj = dout - j0 < kTileGJ ? dout - j0 : kTileGJ;
  int col[kTileGK], row[kTileGJ];
  MAML_UNROLL
  for (int b = 0; b < kTileGK; ++b) col[b] = kt + b * tk < din ? b * tk : 0;
  MAML_UNROLL
  for (int a = 0; a < kTileGJ; ++a) row[a] = (a < nj ? a : 0) * dcs;
  T g[kTileGJ][kTileGK], hv[kTileGJ][kTileGK];
  MAML_UNROLL
  for (int a = 0; a < kTileGJ; ++a)
    MAML_UNROLL
    for (int b = 0; b < kTileGK; ++b) g[a][b] = hv[a][b] = T(0);
  // row pointers advanced by one row per iteration; the column and row offsets stay fixed
  const T* xi = in + kt;
  const T* rxi = RX ? rin + kt : nullptr;
  const T* dzi = dzs + j0 * dcs;
  const T* rdzi = R ? rdzs + j0 * dcs : nullptr;
  for (int i = 0; i < n; ++i, xi += din, dzi += drs) {
    T x[kTileGK], rx[kTileGK], dz[kTileGJ], rdz[kTileGJ];
    MAML_UNROLL
    for (int b = 0; b < kTileGK; ++b) {
      x[b] = xi[col[b]];
      if (RX) rx[b] = rxi[col[b]];
    }
    MAML_UNROLL
    for (int a = 0; a < kTileGJ; ++a) {
      dz[a] = dzi[row[a]];
      if (R) rdz[a] = rdzi[row[a]];
    }
    if (RX) rxi += din;
    if (R) rdzi += drs;
    MAML_UNROLL
    for (int a = 0; a < kTileGJ; ++a)
      MAML_UNROLL
      for (int b = 0; b < kTileGK; ++b) {
        if (G) g[a][b] += dz[a] * x[b];
        if (R) {
          hv[a][b] += rdz[a] * x[b];
          if (RX) hv[a][b] += dz[a] * rx[b];
        }
      }
  }
  MAML_UNROLL
  for (int a = 0; a < kTileGJ; ++a)
    MAML_UNROLL
    for (int b = 0; b < kTileGK; ++b)
      if (a < nj && kt + b * tk < din) emit_param(e, m.w_off[l] + (j0 + a) * din + kt + b * tk, g[a][b], hv[a][b], R);
}

// Variant 3's deltas of column k of layer l − 1, rows i0..i0+n−1 (n ≤ RP) at once (delta_rows' formulas,
// sums over j ascending; the R part adds R(dz) W then dz uW as two FMAs, where delta_rows adds
// their sum: a mul, an FMA and an add), the deltas of layer l read from the transposed staging
// dzT[j][RP] (and rdzT), four rows per load. Each weight W[j, k] is loaded once; the loop is
// unrolled by 8 so that 8 weight loads are in flight per thread.
template <int RP, int kWR, class T>
MAML_NOINLINE MAML_HD void delta_cols(const KModel& m, int l, const T* th, const T* u, const Pass<T>& w, const T* dzT,
                        const T* rdzT, int64_t prev_off, int i0, int n, int k) {
  constexpr bool with_r = kWR == 1;
  const int din = m.dims[l - 1], dout = m.dims[l];
  const T* Wk = th + m.w_off[l] + k;
  const T* uWk = with_r ? u + m.w_off[l] + k : nullptr;
  T da[RP], rda[RP];
  MAML_UNROLL
  for (int r = 0; r < RP; ++r) da[r] = rda[r] = T(0);
#ifdef __CUDACC__
#pragma unroll 8
#endif
  for (int j = 0; j < dout; ++j) {
    const T wjk = Wk[j * din];
    T d[RP];
    load_rows<RP>(dzT + j * RP, d);
    fma_rows<RP>(da, d, wjk);
    if (with_r) {
      const T ujk = uWk[j * din];
      T rd[RP];
      load_rows<RP>(rdzT + j * RP, rd);
      fma_rows<RP>(rda, rd, wjk);
      fma_rows<RP>(rda, d, ujk);
    }
  }
  const int64_t row0 = static_cast<int64_t>(i0) * din;  // this chunk's first row
  const T* act = w.act + prev_off + row0;
  const T* rpre = w.rpre + prev_off + row0;
  T* dz2 = w.dz2 + row0;
  T* rdz2 = w.rdz2 + row0;
  const int f = m.act;
  MAML_UNROLL
  for (int r = 0; r < RP; ++r) {
    if (r >= n) break;
    const int64_t q = static_cast<int64_t>(r) * din + k;
    const T a = act[q];
    if (with_r) rdz2[q] = rda[r] * k_d1(f, a) + da[r] * k_d2(f, a) * rpre[q];
    dz2[q] = da[r] * k_d1(f, a);
  }
}

// Variant 3's weight tiles of one thread (items t0, t0 + step, ... below n_w: tile (jt, kt) =
// (idx / tk, idx mod tk)) in one mode, and the dispatch on the mode: one call site in the
// backward phase, each mode a function of its own (inlined there, the tiles' registers made
// ptxas spill in the whole phase). backward_pass's fallback calls it for one tile at a time.
// The Emit by value: through a reference (the caller's local memory) every store of an emitted
// parameter made the tile reload its pointers (162 local loads per instance; now none).
template <bool G, bool R, bool RX, class T>
MAML_NOINLINE MAML_HD void weight_tiles_mode(int t0, int step, const KModel& m, int l, const T* in, const T* rin,
                                             const T* dzs, const T* rdzs, int n, int tk, int n_w, const Emit<T> e,
                                             int drs, int dcs) {
  for (int idx = t0; idx < n_w; idx += step) {
    const int jt = idx / tk, kt = idx - jt * tk;
    weight_tile_fixed<G, R, RX>(m, l, in, rin, dzs, rdzs, n, jt * kTileGJ, kt, tk, e, drs, dcs);
  }
}

template <class T>
MAML_NOINLINE MAML_HD void weight_tiles_v3(int t0, int step, const KModel& m, int l, const T* in, const T* rin,
                                           const T* dzs, const T* rdzs, int n, int tk, int n_w, const Emit<T>& e,
                                           bool want_g, bool with_r, int drs, int dcs) {
#define MAML_TILES(G, R, RX) weight_tiles_mode<G, R, RX>(t0, step, m, l, in, rin, dzs, rdzs, n, tk, n_w, e, drs, dcs)
  if (!with_r) MAML_TILES(true, false, false);
  else if (want_g && rin) MAML_TILES(true, true, true);
  else if (want_g) MAML_TILES(true, true, false);
  else if (rin) MAML_TILES(false, true, true);
  else MAML_TILES(false, true, false);
#undef MAML_TILES
}

// Variant 3's deltas of column k for rp (4, 8, 12 or 16) padded rows: one call site in the
// backward phase, and each delta_cols instance a function of its own (not inlined: compiled
// together, the largest instance's registers made ptxas spill in all of them).
template <class T>
MAML_NOINLINE MAML_HD void delta_cols_rp(int rp, const KModel& m, int l, const T* th, const T* u, const Pass<T>& w,
                                  const T* dzT, const T* rdzT, int64_t prev_off, int i0, int n, int k, bool with_r) {
#define MAML_DELTA_COLS(RP)                                                           \
  if (with_r) delta_cols<RP, 1>(m, l, th, u, w, dzT, rdzT, prev_off, i0, n, k);       \
  else delta_cols<RP, 0>(m, l, th, u, w, dzT, rdzT, prev_off, i0, n, k);
  switch (rp) {
    case 4: MAML_DELTA_COLS(4) break;
    case 8: MAML_DELTA_COLS(8) break;
    case 12: MAML_DELTA_COLS(12) break;
    default: MAML_DELTA_COLS(16) break;
  }
#undef MAML_DELTA_COLS
}

// Variant 3's backward phase of a wide layer (see backward_pass): the deltas of layer l staged
// transposed, dzT[j][rp] (rows past the set zero, and R(dz) beside them), the inputs [n, din]
// (and R parts) staged as they are where the scratch has room; then one phase of items: the
// weights in weight_tile_fixed's register tiles, the biases, the delta columns (delta_cols, the only
// part compiled per row count). A set of more than rp rows: the weights and biases read the
// deltas in place, the delta columns run once per chunk of rp rows (staged in turn, a phase
// each). Ends with sync().
template <class T, class Block>
MAML_NOINLINE MAML_HD void backward_layer_rows(const Block& blk, const KModel& m, int l, const T* th, const T* u,
                                               const Pass<T>& w, const T* in, const T* rin, int64_t prev_off, int n,
                                               int rp, const Emit<T>& e, bool want_g, bool with_r) {
  const int din = m.dims[l - 1], dout = m.dims[l], tid = blk.tid(), nt = blk.size();
  T* dzT = w.tile;
  T* rdzT = dzT + dout * rp;
  T* sx = dzT + dout * rp * (with_r ? 2 : 1);
  const int nx = n * din;
  const bool stage_x = dout * rp * (with_r ? 2 : 1) + nx * (rin ? 2 : 1) <= kTileFloatsV3;
  T* srx = sx + nx;
  // rows i0..i0+rp−1 of the deltas into dzT (rows past n zero); neighbouring threads read
  // neighbouring deltas of a row
  auto stage_deltas = [&](int i0) {
    const int nr = n - i0 < rp ? n - i0 : rp;
    for (int r = 0; r < rp; ++r) {
      const int64_t row = static_cast<int64_t>(i0 + r) * dout;
      for (int j = tid; j < dout; j += nt) {
        dzT[j * rp + r] = r < nr ? w.dz[row + j] : T(0);
        if (with_r) rdzT[j * rp + r] = r < nr ? w.rdz[row + j] : T(0);
      }
    }
  };
  stage_deltas(0);
  if (stage_x) {
    for (int q = tid; q < nx; q += nt) {
      sx[q] = in[q];
      if (rin) srx[q] = rin[q];
    }
  }
  blk.sync();
  const T* xs = stage_x ? sx : in;
  const T* rxs = rin ? (stage_x ? srx : rin) : nullptr;
  const int tj = (dout + kTileGJ - 1) / kTileGJ, tk = (din + kTileGK - 1) / kTileGK;
  const int n_w = tj * tk, n_par = n_w + dout, n_all = n_par + (l > 1 ? din : 0);
  // the weights and biases sum over all n rows: from dzT when it holds them all, else from the
  // deltas in place (their [n, dout] layout)
  const bool all = n <= rp;
  const T* dzs = all ? dzT : w.dz;
  const T* rdzs = all ? rdzT : w.rdz;
  const int drs = all ? 1 : dout, dcs = all ? rp : 1;
  const int n0 = all ? n : rp;  // the rows of the first chunk of deltas
  // this thread's items tid, tid + nt, ...: its weight tiles (in one call), then the others
  weight_tiles_v3(tid, nt, m, l, xs, rxs, dzs, rdzs, n, tk, n_w, e, want_g, with_r, drs, dcs);
  const int first = tid < n_w ? tid + (n_w - tid + nt - 1) / nt * nt : tid;
  for (int idx = first; idx < n_all; idx += nt) {
    if (idx < n_par) {  // bias j: the sums of backward_pass's bias items (x = 1)
      const int j = idx - n_w;
      T g = T(0), hv = T(0);
      for (int i = 0; i < n; ++i) {
        if (want_g) g += dzs[i * drs + j * dcs] * T(1);
        if (with_r) hv += rdzs[i * drs + j * dcs] * T(1);
      }
      emit_param(e, m.b_off[l] + j, g, hv, with_r);
    } else {
      delta_cols_rp(rp, m, l, th, u, w, dzT, rdzT, prev_off, 0, n0, idx - n_par, with_r);
    }
  }
  blk.sync();
  // the other chunks of deltas (sets of more than rp rows)
  if (l > 1) {
    for (int i0 = rp; i0 < n; i0 += rp) {
      stage_deltas(i0);
      blk.sync();
      const int nr = n - i0 < rp ? n - i0 : rp;
      for (int k = tid; k < din; k += nt) delta_cols_rp(rp, m, l, th, u, w, dzT, rdzT, prev_off, i0, nr, k, with_r);
      blk.sync();
    }
  }
}

// Variant 3's backward phase of layer l where it applies (a wide layer whose staged deltas fit
// the scratch, in chunks of 16, 12, 8 or 4 rows: the largest that fits); returns false, having
// done nothing, otherwise.
template <class T, class Block>
MAML_HD bool backward_layer_v3(const Block& blk, const KModel& m, int l, const T* th, const T* u, const Pass<T>& w,
                               const T* in, const T* rin, int64_t prev_off, int n, const Emit<T>& e, bool want_g,
                               bool with_r) {
  const int din = m.dims[l - 1], dout = m.dims[l];
  if (!w.tile || din < kTileMin || dout < kTileMin) return false;
  int rp = v3_rows(n);
  while (rp > 4 && dout * rp * (with_r ? 2 : 1) > kTileFloatsV3) rp -= 4;
  if (dout * rp * (with_r ? 2 : 1) > kTileFloatsV3) return false;
  backward_layer_rows(blk, m, l, th, u, w, in, rin, prev_off, n, rp, e, want_g, with_r);
  return true;
}

// Backward sweep (and R-backward when e.vsub, which needs forward_pass with u), per layer:
//   dW_l = dz_lᵀ a_{l−1}   db_l = Σ_rows dz_l   dz_{l−1} = (dz_l W_l) ⊙ f'(a_{l−1})
//   R(dW_l) = R(dz_l)ᵀ a_{l−1} + dz_lᵀ R(a_{l−1})   R(db_l) = Σ_rows R(dz_l)
//   R(dz_{l−1}) = (R(dz_l) W_l + dz_l uW_l) ⊙ f' + (dz_l W_l) ⊙ f'' ⊙ R(z_{l−1})
// One phase per layer: its parameters and the deltas of the layer below are independent. The
// items of a phase: the weights (one per thread, or register tiles where the layer has at least
// 4 tiles per thread: wide layers), the biases, then the deltas. Where the block has tile
// scratch (the global-memory kernel) and the layer's inputs and deltas fit in it, they are
// copied there first and every item reads them from block-shared memory.
template <int kVariant = 1, class T, class Block>
MAML_HD void backward_pass(const Block& blk, const KModel& m, const T* th, const T* u, const KSet<T>& set,
                           Pass<T> w, const Emit<T>& e) {
  const int n = set.n;
  const bool want_g = e.wants_g(), with_r = e.vsub != nullptr;
  int64_t off = static_cast<int64_t>(n) * (m.sum_width - m.dims[m.L]);  // layer L's offset
  for (int l = m.L; l >= 1; --l) {
    const int din = m.dims[l - 1], dout = m.dims[l];
    const int64_t prev_off = l > 1 ? off - static_cast<int64_t>(n) * din : 0;
    const T* in = l > 1 ? w.act + prev_off : set.x;
    const T* rin = (with_r && l > 1) ? w.ract + prev_off : nullptr;
    if constexpr (kVariant >= 3) {
      if (backward_layer_v3(blk, m, l, th, u, w, in, rin, prev_off, n, e, want_g, with_r)) {
        T* t = w.dz; w.dz = w.dz2; w.dz2 = t;
        t = w.rdz; w.rdz = w.rdz2; w.rdz2 = t;
        off = prev_off;
        continue;
      }
    }
    const T* dz = w.dz;
    const T* rdz = w.rdz;
    const int64_t nx = static_cast<int64_t>(n) * din, nd = static_cast<int64_t>(n) * dout;
    if (w.tile && nx * (rin ? 2 : 1) + nd * (with_r ? 2 : 1) <= kTileFloats) {
      T* sx = w.tile;
      T* srx = sx + nx;
      T* sdz = srx + (rin ? nx : 0);
      T* srdz = sdz + nd;
      for (int64_t q = blk.tid(); q < nx; q += blk.size()) {
        sx[q] = in[q];
        if (rin) srx[q] = rin[q];
      }
      for (int64_t q = blk.tid(); q < nd; q += blk.size()) {
        sdz[q] = w.dz[q];
        if (with_r) srdz[q] = w.rdz[q];
      }
      blk.sync();
      in = sx;
      rin = rin ? srx : nullptr;
      dz = sdz;
      rdz = with_r ? srdz : w.rdz;
    }
    const int tj = (dout + kTileGJ - 1) / kTileGJ, tk = (din + kTileGK - 1) / kTileGK;
    const bool tiled = tj * tk >= 4 * blk.size();
    const int n_w = tiled ? tj * tk : dout * din;  // weight items
    const int n_par = n_w + dout;                  // then the biases
    const bool chunked = n * din >= 4 * blk.size();
    const int n_all = n_par + (l > 1 ? (chunked ? (n + kRows - 1) / kRows : n) * din : 0);
    for (int idx = blk.tid(); idx < n_all; idx += blk.size()) {
      if (idx < n_w && tiled) {
        const int jt = idx / tk, kt = idx - jt * tk;
        if constexpr (kVariant >= 2) weight_tiles_v3(idx, 1, m, l, in, rin, dz, rdz, n, tk, idx + 1, e, want_g, with_r, dout, 1);
        else weight_tile(m, l, in, rin, dz, rdz, n, jt * kTileGJ, kt, tk, e, want_g, with_r);
      } else if (idx < n_par) {
        const bool bias = idx >= n_w;
        const int j = bias ? idx - n_w : idx / din, k = bias ? din : idx - j * din;
        const int p = bias ? m.b_off[l] + j : m.w_off[l] + j * din + k;
        T g = T(0), hv = T(0);
        for (int i = 0; i < n; ++i) {
          const T x = bias ? T(1) : in[static_cast<int64_t>(i) * din + k];
          const T dzij = dz[static_cast<int64_t>(i) * dout + j];
          if (want_g) g += dzij * x;
          if (with_r) {
            hv += rdz[static_cast<int64_t>(i) * dout + j] * x;
            if (rin && !bias) hv += dzij * rin[static_cast<int64_t>(i) * din + k];
          }
        }
        emit_param(e, p, g, hv, with_r);
      } else if (chunked) {
        const int q = idx - n_par;
        const int ch = q / din, k = q - ch * din, i0 = ch * kRows;
        const int nr = n - i0 < kRows ? n - i0 : kRows;
        if constexpr (kVariant >= 2) {
          if (with_r) delta_rows<kRows, 1>(m, l, th, u, w, dz, rdz, prev_off, i0, nr, k, true);
          else delta_rows<kRows, 0>(m, l, th, u, w, dz, rdz, prev_off, i0, nr, k, false);
        } else {
          delta_rows<kRows>(m, l, th, u, w, dz, rdz, prev_off, i0, nr, k, with_r);
        }
      } else {
        const int q = idx - n_par;
        const int i = q / din, k = q - i * din;
        delta_rows<1>(m, l, th, u, w, dz, rdz, prev_off, i, 1, k, with_r);
      }
    }
    blk.sync();
    T* t = w.dz; w.dz = w.dz2; w.dz2 = t;
    t = w.rdz; w.rdz = w.rdz2; w.rdz2 = t;
    off = prev_off;
  }
}

// Loss at th on set; its gradient goes where e says; with u, also H u into e.vsub.
template <int kVariant = 1, class T, class Block>
MAML_HD T grad_pass(const Block& blk, const KModel& m, const T* th, const T* u, const KSet<T>& set,
                    const Pass<T>& w, const Emit<T>& e, bool want_loss) {
  forward_pass<kVariant>(blk, m, th, u, set, w);
  const T loss = loss_pass(blk, m, set, w, u != nullptr, want_loss);
  if (e.wants_g() || e.vsub) backward_pass<kVariant>(blk, m, th, u, set, w, e);
  return loss;
}

template <class T>
MAML_HD inline Pass<T> pass_of(T* work, const Layout& lay, T* tile) {
  return Pass<T>{work + lay.act, work + lay.rpre, work + lay.ract, work + lay.dz, work + lay.dz2,
                 work + lay.rdz, work + lay.rdz2, work + lay.red, tile};
}

// Copies theta into thetas[0] and runs the S inner steps: thetas[1..S], grads[0..S−1].
template <int kVariant = 1, class T, class Block>
MAML_HD void inner_loop(const Block& blk, const KModel& m, const KConfig& c, const T* theta, const T* rates,
                        const KSet<T>& sup, T* work, const Layout& lay, T* tile) {
  const int64_t P = m.P;
  T* th = work + lay.thetas;
  for (int64_t i = blk.tid(); i < P; i += blk.size()) th[i] = theta[i];
  blk.sync();
  const Pass<T> w = pass_of(work, lay, tile);
  for (int s = 0; s < c.steps; ++s) {
    Emit<T> e;
    e.g_out = lay.keep_grads ? work + lay.grads + s * P : nullptr;
    e.cur = th + s * P;
    e.next = th + (s + 1) * P;
    e.rate = rates + s * c.rate_step_stride;
    e.param_stride = c.rate_param_stride;
    e.begin = c.head_only() ? m.head_begin : 0;
    grad_pass<kVariant>(blk, m, e.cur, static_cast<const T*>(nullptr), sup, w, e, false);
  }
}

// One task's meta-gradient (see the top of this file). out: [P + R]; *loss: the outer loss.
// tile: kTileFloats of block-shared scratch for wide layers (forward_layer_tiled), or nullptr.
// kVariant: the kernel variant (1; or 3, an experiment chosen at launch: the row-register products
// of wide layers and weight_tile_fixed, with the compile-time modes of the fallback paths; the code
// tests kVariant >= 2 for the latter, variant 2's part). tile: kTileFloats floats for variant 1,
// kTileFloatsV3 for variant 3.
template <int kVariant = 1, class T, class Block>
MAML_HD void task_meta_step(const Block& blk, const KModel& m, const KConfig& c, const KArgs<T>& a, int task,
                            T* work, const Layout& lay, T* out, T* loss_out, T* tile) {
  const int64_t P = m.P;
  const int S = c.steps;
  const KSet<T> sup = support_of(m, a, task), qry = query_of(m, a, task);
  inner_loop<kVariant>(blk, m, c, a.theta, a.rates, sup, work, lay, tile);
  const T* th = work + lay.thetas;
  const T* thS = th + S * P;
  const Pass<T> w = pass_of(work, lay, tile);

  if (c.algo == kReptile) {
    for (int64_t i = blk.tid(); i < P; i += blk.size()) out[i] = th[i] - thS[i];
    const T loss = grad_pass<kVariant>(blk, m, thS, static_cast<const T*>(nullptr), qry.n > 0 ? qry : sup, w, Emit<T>(), true);
    if (blk.tid() == 0) *loss_out = loss;
    blk.sync();
    return;
  }

  T* v = work + lay.v;
  T* u = work + lay.u;
  T* rate_out = out + P;
  for (int64_t i = blk.tid(); i < P; i += blk.size()) v[i] = T(0);
  for (int i = blk.tid(); i < c.R; i += blk.size()) rate_out[i] = T(0);
  blk.sync();
  T loss = T(0);
  Emit<T> eq;  // v += w_s ∇L_q(θ_s)
  eq.vacc = v;
  if (a.weights[S] != T(0)) {
    eq.scale = a.weights[S];
    loss += a.weights[S] * grad_pass<kVariant>(blk, m, thS, static_cast<const T*>(nullptr), qry, w, eq, true);
  }
  const int begin = c.head_only() ? m.head_begin : 0;
  for (int s = S - 1; s >= 0; --s) {
    const T* cur = th + s * P;
    if (c.second_order()) {
      // u = α_s ⊙ mask ⊙ v_{s+1};  dα_s −= mask ⊙ g_s ⊙ v_{s+1}
      const T* g = work + lay.grads + s * P;
      const T* rate = a.rates + s * c.rate_step_stride;
      const bool scalar = c.rate_param_stride == 0;
      T part = T(0);
      for (int64_t i = blk.tid(); i < P; i += blk.size()) {
        if (i < begin) {
          u[i] = T(0);
          continue;
        }
        u[i] = rate[i * c.rate_param_stride] * v[i];
        if (c.want_rate_grad) {
          if (scalar) part += g[i] * v[i];
          else rate_out[s * c.rate_step_stride + i] -= g[i] * v[i];
        }
      }
      if (c.want_rate_grad && scalar) {
        const T dot = block_sum(blk, w.red, part);
        if (blk.tid() == 0) rate_out[s * c.rate_step_stride] -= dot;
      }
      blk.sync();
      Emit<T> eh;  // v −= H_s u
      eh.vsub = v;
      grad_pass<kVariant>(blk, m, cur, static_cast<const T*>(u), sup, w, eh, false);
    }
    if (a.weights[s] != T(0)) {
      eq.scale = a.weights[s];
      loss += a.weights[s] * grad_pass<kVariant>(blk, m, cur, static_cast<const T*>(nullptr), qry, w, eq, true);
    }
  }
  for (int64_t i = blk.tid(); i < P; i += blk.size()) out[i] = v[i];
  if (blk.tid() == 0) *loss_out = loss;
  blk.sync();
}

// One task's adaptation: adapted [P] = θ_S, the inner loop's steps (the same arithmetic as
// inner_loop) with θ_s in two buffers used in turn (lay: plan_adapt_layout).
template <class T, class Block>
MAML_HD void task_adapt(const Block& blk, const KModel& m, const KConfig& c, const KArgs<T>& a, int task, T* work,
                        const Layout& lay, T* adapted, T* tile) {
  const int64_t P = m.P;
  T* cur = work + lay.thetas;  // θ_s
  T* next = cur + P;           // θ_{s+1}; the two swap after each step (a pointer swap, not an
                               // array indexed by s: that would put them in local memory)
  for (int64_t i = blk.tid(); i < P; i += blk.size()) cur[i] = a.theta[i];
  blk.sync();
  const KSet<T> sup = support_of(m, a, task);
  const Pass<T> w = pass_of(work, lay, tile);
  for (int s = 0; s < c.steps; ++s) {
    Emit<T> e;
    e.cur = cur;
    e.next = next;
    e.rate = a.rates + s * c.rate_step_stride;
    e.param_stride = c.rate_param_stride;
    e.begin = c.head_only() ? m.head_begin : 0;
    grad_pass(blk, m, e.cur, static_cast<const T*>(nullptr), sup, w, e, false);
    T* t = cur;
    cur = next;
    next = t;
  }
  for (int64_t i = blk.tid(); i < P; i += blk.size()) adapted[i] = cur[i];
  blk.sync();
}

// The reduction over tasks, in a fixed order (deterministic): tasks in chunks of
// kReduceChunk summed in index order, then the chunk sums in index order, divided by B. The
// device runs the two levels as two kernels (many threads per element for large B); the host
// test entry runs mean_over_tasks, the same order.
constexpr int kReduceChunk = 32;

template <class T>
MAML_HD inline T chunk_sum(const T* slots, int64_t slot, int64_t tasks, int64_t chunk, int64_t i) {
  T s = T(0);
  const int64_t end = (chunk + 1) * kReduceChunk < tasks ? (chunk + 1) * kReduceChunk : tasks;
  for (int64_t t = chunk * kReduceChunk; t < end; ++t) s += slots[t * slot + i];
  return s;
}

template <class T>
MAML_HD inline T mean_over_tasks(const T* slots, int64_t slot, int64_t tasks, int64_t i) {
  T s = T(0);
  for (int64_t c = 0; c * kReduceChunk < tasks; ++c) s += chunk_sum(slots, slot, tasks, c, i);
  return s / T(tasks);
}

}  // namespace maml::cuda
