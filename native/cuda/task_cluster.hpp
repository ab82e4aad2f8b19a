// task_cluster.hpp: one task's meta-step on a CLUSTER of c thread blocks (kernel variant 4:
// Hopper's thread-block clusters and distributed shared memory), for networks too wide for one
// block's shared memory: the 1-256-256-1 net's parameters (267 KB) and its vector v do not fit
// one multiprocessor (227 KB), so the one-block kernel keeps them in global memory and reads
// every weight from there in every pass (~16 MB per task per meta-step, bench/NOTES.md 25). Here
// the task's parameters and v stay in the shared memory of c blocks for the whole meta-step.
//
// The same mathematics as task_kernel.hpp's task_meta_step (its header has the formulas), with
// the work split by output rows:
//   - block r of c owns, in every layer l, the output rows [row_lo(d_l, r), row_lo(d_l, r + 1))
//     of W_l and b_l: its slice of θ_s, of v and of every parameter-sized update;
//   - forward: block r computes its own columns of z_l (and R(z_l)) and stores a_l (and R(a_l))
//     into every block's copy of the layer's activations (distributed shared memory), then the
//     cluster syncs: every block holds all the activations of every layer;
//   - backward: block r computes its weights' and biases' gradients from its own columns of the
//     deltas and the full activations, and the partial deltas of the layer below summed over its
//     own rows (dz_l W_l restricted to its rows), which it stores into the block that owns each
//     input column; after a cluster barrier (whose latency the gradients hide: arrive, compute,
//     wait) every block adds up the c partials of its own columns in rank order
//     (deterministic) and applies f' (and f'' for the R part);
//   - u = α_s ⊙ mask ⊙ v is never stored: the R passes read v and the rate where they use u
//     (the backward's deltas read u of a layer before its own v is updated, a phase later);
//   - θ_1 .. θ_{S−1} (and g_s, for rate gradients) go to the task's global scratch in the inner
//     loop and come back one at a time in the reverse loop; θ_S and v never leave the chip;
//   - the second-order algorithms also keep, per inner step, each block's copy of the support
//     set's activations and its own columns of the deltas' products (dz_l W_l summed, before f')
//     in the global scratch: the R pass at θ_s (v −= H_s u) takes them from there and computes
//     only its R products (the same values the inner loop computed at θ_s: the results are the
//     bits of recomputing them; a third fewer FMAs in the forward and delta phases of R passes);
//   - the loss, whose inputs every block holds after the forward, is computed by every block
//     (the same values in the same order); only rank 0 writes the task's loss.
//
// Cluster interface (a class with rank(), sync(), its two halves arrive() and wait(), and
// peer(p, q), the address of the object at p in block q's shared memory): DeviceCluster
// (meta_kernels.cu) on the GPU; on the host, binding/host_block.hpp emulates a cluster with one
// buffer per block and a barrier of all the cluster's threads, so test/cuda-host.test.ts and
// test/cluster-race.test.ts (ThreadSanitizer) check this code without a GPU. sync() is a
// barrier of all the cluster's threads (it also orders their shared-memory writes); every
// control flow that reaches a sync() depends only on the task and the layer, never on the rank.
// A block never leaves before the last access of its shared memory by a peer (the last sync).
//
// Accumulation rule: as task_meta_step, OVERWRITES out[0, P + R) and *loss_out.
#pragma once
#include "task_kernel.hpp"

namespace maml::cuda {

constexpr int kMaxCluster = 8;  // the portable cluster size limit
constexpr int kSplitItems = 256;  // see k_splits

// Rows [row_lo(d, r, c), row_lo(d, r + 1, c)) of a layer with d outputs belong to block r of c.
MAML_HD inline int row_lo(int d, int r, int c) { return static_cast<int>(static_cast<int64_t>(d) * r / c); }
// The block that owns row k of a layer with d outputs.
MAML_HD inline int row_owner(int d, int k, int c) {
  return static_cast<int>((static_cast<int64_t>(c) * (k + 1) + d - 1) / d) - 1;
}
MAML_HD inline int64_t up4(int64_t x) { return (x + 3) / 4 * 4; }

// Where a block's data lie. Shared memory (element offsets, multiples of 4: 16-byte aligned):
//   thA, thB [Pr]       the block's slice of θ (and of θ_{s+1} in the inner loop, v in the reverse)
//   act, ract [n_max Σ d_l]  all activations (and R(a)) of one pass, every column (as Pass)
//   rout [n_max dL]     R(out) of the last layer, every column (the loss reads it)
//   rpre [n_max Σ own]  R(z) of the block's own columns, per layer at n ro[l], row pitch own rows
//   dz, rdz, dz2, rdz2 [n_max njmax]  own columns of the deltas (ping-pong between layers)
//   recv, rrecv [c n_max njmax]  the c partial deltas of the block's columns, [rank][row][col];
//                       the forward's transposed inputs xT, rxT [din][rp] reuse this space (no
//                       block writes a peer's recv during a forward: both sides are between the
//                       same two cluster syncs)
//   loc                 the forward's partial sums of split layers [kSplitItems][4], the
//                       backward's transposed own deltas dzT, rdzT [njmax][rp], and the
//                       loss's full-width deltas [n_max dL] (x2)
//   red [nthreads], cred [4]  block reduction, and the block's part of a cluster reduction
// A slice's layer l: W rows [own][ld[l]] at lw[l] (ld odd: consecutive rows start in different
// shared-memory banks), then b [own] at lb[l]. Global scratch per task (floats, model indexing):
// θ_s at g_thetas + s P (s = 1 .. S−1), g_s at g_grads + s P (rate gradients only); second order:
// block r's activations of inner step s at g_acts + (r S + s) n_max Σ d_l (as act), and its own
// columns of the delta products at g_das + (r S + s) n_max Σ own (as rpre).
struct KCluster {
  int c = 1;
  int n_max = 0, rp = 4;  // the largest set's rows; that, rounded up to a multiple of 4
  int Pr = 0, njmax = 0;
  int ld[kMaxLayers + 1] = {}, lw[kMaxLayers + 1] = {}, lb[kMaxLayers + 1] = {}, ro[kMaxLayers + 1] = {};
  int64_t thA = 0, thB = 0, act = 0, ract = 0, rout = 0, rpre = 0, dz = 0, rdz = 0, dz2 = 0, rdz2 = 0;
  int64_t recv = 0, rrecv = 0, loc = 0, red = 0, cred = 0, total = 0;
  int64_t g_thetas = 0, g_grads = 0, g_acts = 0, g_das = 0, g_total = 0;
  int64_t g_act_stride = 0, g_da_stride = 0;  // per (block, step)
};

MAML_HD inline KCluster plan_cluster(const KModel& m, const KConfig& cfg, int n_max, int nthreads, int c) {
  KCluster k;
  k.c = c;
  k.n_max = n_max;
  k.rp = static_cast<int>(up4(n_max > 0 ? n_max : 1));
  int64_t o = 0;
  int ro = 0, maxdin = 0;
  for (int l = 1; l <= m.L; ++l) {
    const int din = m.dims[l - 1], nj = (m.dims[l] + c - 1) / c;
    k.ld[l] = din | 1;
    k.lw[l] = static_cast<int>(o);
    o += static_cast<int64_t>(nj) * k.ld[l];
    k.lb[l] = static_cast<int>(o);
    o += nj;
    k.ro[l] = ro;
    ro += nj;
    k.njmax = nj > k.njmax ? nj : k.njmax;
    maxdin = din > maxdin ? din : maxdin;
  }
  k.Pr = static_cast<int>(up4(o));
  const int64_t n = n_max, dL = m.dims[m.L];
  const int64_t own = n * k.njmax, recv = up4(static_cast<int64_t>(c) * own);
  const int64_t xt = up4(static_cast<int64_t>(maxdin) * k.rp);
  const int64_t dzt = up4(static_cast<int64_t>(k.njmax) * k.rp), lossd = up4(n * dL);
  int64_t s = 0;
  k.thA = s;  s += k.Pr;
  k.thB = s;  s += k.Pr;
  k.act = s;  s += up4(n * m.sum_width);
  k.ract = s; s += up4(n * m.sum_width);
  k.rout = s; s += up4(n * dL);
  k.rpre = s; s += up4(n * ro);
  k.dz = s;   s += up4(own);
  k.rdz = s;  s += up4(own);
  k.dz2 = s;  s += up4(own);
  k.rdz2 = s; s += up4(own);
  k.recv = s;
  k.rrecv = s + recv;
  s += 2 * recv > 2 * xt ? 2 * recv : 2 * xt;
  int64_t loc = 2 * (dzt > lossd ? dzt : lossd);
  loc = loc > 4 * kSplitItems ? loc : 4 * kSplitItems;  // forward_items_cl's partial sums
  k.loc = s;  s += loc;
  k.red = s;  s += up4(nthreads);
  k.cred = s; s += 4;
  k.total = s;
  const int64_t P = m.P, S = cfg.steps;
  k.g_thetas = 0;
  k.g_grads = S * P;
  k.g_acts = (cfg.want_rate_grad ? 2 : 1) * S * P;
  if (cfg.second_order()) {
    k.g_act_stride = n * m.sum_width;
    k.g_da_stride = n * ro;
  }
  k.g_das = k.g_acts + c * S * k.g_act_stride;
  k.g_total = k.g_das + c * S * k.g_da_stride;
  return k;
}

// fn(local index, model index) for every parameter of block r's slice, strided over the block.
template <class Block, class Fn>
MAML_HD void for_slice(const Block& blk, const KModel& m, const KCluster& kc, int r, const Fn& fn) {
  for (int l = 1; l <= m.L; ++l) {
    const int din = m.dims[l - 1], dout = m.dims[l];
    const int j0 = row_lo(dout, r, kc.c), nj = row_lo(dout, r + 1, kc.c) - j0, nw = nj * din;
    for (int q = blk.tid(); q < nw + nj; q += blk.size()) {
      if (q < nw) {
        const int j = q / din, k = q - j * din;
        fn(kc.lw[l] + j * kc.ld[l] + k, m.w_off[l] + (j0 + j) * din + k);
      } else {
        fn(kc.lb[l] + q - nw, m.b_off[l] + j0 + q - nw);
      }
    }
  }
}

// The direction u = α_s ⊙ mask ⊙ v of an R pass, read where it is used (v == nullptr: no R pass).
template <class T>
struct UArg {
  const T* v = nullptr;     // the block's slice of v
  const T* rate = nullptr;  // this step's rates: rate[pg * ps]
  int64_t ps = 0;
  int begin = 0;            // u = 0 below this parameter (ANIL)
};

// How layer l reads u: 0 no R pass; 1 one scale for the whole layer (us, scalar rates: 0 where
// the mask covers the layer); 2 per parameter (learned per-parameter rates, or a mask inside it).
template <class T>
MAML_HD inline int u_mode(const UArg<T> u, const KModel& m, int l, T* us) {
  *us = T(0);
  if (!u.v) return 0;
  const int lo = m.w_off[l] < m.b_off[l] ? m.w_off[l] : m.b_off[l];
  const int hi_w = m.w_off[l] + m.dims[l] * m.dims[l - 1], hi_b = m.b_off[l] + m.dims[l];
  const int hi = hi_w > hi_b ? hi_w : hi_b;
  if (u.ps != 0 || (lo < u.begin && hi > u.begin)) return 2;
  *us = lo >= u.begin ? u.rate[0] : T(0);
  return 1;
}

template <int kU, class T>
MAML_HD inline T u_val(const UArg<T> u, T us, int pl, int pg) {
  if constexpr (kU == 1) return us * u.v[pl];
  else return pg >= u.begin ? u.rate[pg * u.ps] * u.v[pl] : T(0);
}

// A layer whose block owns too few outputs to occupy its threads (the 1-output layer of a
// regression net: one block, 3 row chunks) splits its inputs into ks ranges of at least 16, so
// that about kSplitItems items run at once; the partial sums then add up in range order. ks
// depends on the shapes only (never on the block size: the same bits for any block size).
MAML_HD inline int k_splits(int items, int din) {
  if (items <= 0) return 1;
  const int want = kSplitItems / items, most = din / 16;
  const int ks = want < most ? want : most;
  return ks > 1 ? ks : 1;
}

// Own columns j of layer l, rows 4 ch .. 4 ch + 3 (those < n). Plain passes (kU = 0): z from the
// bias over k ascending, a = f(z) into every block's act (the last layer: z). R passes: only R(z)
// (from ub, per k: x uW then R(x) W), with a already in act (kept from the inner loop), R(a) =
// f'(a) R(z) into every block's ract (the last layer: R(z) into rout), R(z) into the own rows'
// rpre. xT, rxT: [din][rp]; part: kc.loc's scratch for split layers' partial sums.
template <int kU, bool kRX, class T, class Block, class Cluster>
MAML_HD void forward_items_cl(const Block& blk, const Cluster& cl, const KModel& m, const KCluster& kc, int l,
                              const T* th, const UArg<T> u, T us, const T* xT, const T* rxT, int n, T* act_l,
                              T* ract_l, T* rpre_l, T* part) {
  const int din = m.dims[l - 1], dout = m.dims[l], r = cl.rank(), c = kc.c, rp = kc.rp;
  const int j0 = row_lo(dout, r, c), nj = row_lo(dout, r + 1, c) - j0;
  const int nch = (n + 3) / 4, ld = kc.ld[l], items = nj * nch;
  const int ks = k_splits(items, din), span = (din + ks - 1) / ks;
  const bool last = l == m.L;
  // the outputs of item it (column j, row chunk ch) from its sums acc (z, or R(z))
  auto finish = [&](int it, const T* acc) {
    const int ch = it / nj, j = it - ch * nj, jg = j0 + j;
    const int nr = n - 4 * ch < 4 ? n - 4 * ch : 4;
    MAML_UNROLL  // constant indices into acc: registers, not local memory
    for (int q = 0; q < 4; ++q) {
      if (q >= nr) break;
      const int64_t i = 4 * ch + q, at = i * dout + jg;
      if constexpr (kU == 0) {
        const T a = last ? acc[q] : k_act(m.act, acc[q]);
        for (int p = 0; p < c; ++p) cl.peer(act_l, p)[at] = a;
      } else if (last) {
        for (int p = 0; p < c; ++p) cl.peer(ract_l, p)[at] = acc[q];  // ract_l: rout for the last layer
      } else {
        const T ra = k_d1(m.act, act_l[at]) * acc[q];
        for (int p = 0; p < c; ++p) cl.peer(ract_l, p)[at] = ra;
        rpre_l[i * nj + j] = acc[q];
      }
    }
  };
  for (int idx = blk.tid(); idx < items * ks; idx += blk.size()) {
    const int sp = idx / items, it = idx - sp * items, ch = it / nj, j = it - ch * nj, jg = j0 + j;
    const int k0 = sp * span, k1 = k0 + span < din ? k0 + span : din;
    const T* w = th + kc.lw[l] + j * ld;
    T acc[4];
    T init = T(0);
    if (sp == 0) {
      if constexpr (kU == 0) init = th[kc.lb[l] + j];
      else init = u_val<kU>(u, us, kc.lb[l] + j, m.b_off[l] + jg);
    }
    MAML_UNROLL
    for (int q = 0; q < 4; ++q) acc[q] = init;
    const T* xc = xT + 4 * ch;
    const T* rxc = rxT + 4 * ch;
    const int pw = kc.lw[l] + j * ld, gw = m.w_off[l] + jg * din;
    MAML_UNROLL4
    for (int k = k0; k < k1; ++k) {
      const T wk = w[k];
      T x4[4];
      k_ld4(xc + k * rp, x4);
      if constexpr (kU == 0) {
        MAML_UNROLL
        for (int q = 0; q < 4; ++q) acc[q] += x4[q] * wk;
      } else {
        const T uk = u_val<kU>(u, us, pw + k, gw + k);
        MAML_UNROLL
        for (int q = 0; q < 4; ++q) acc[q] += x4[q] * uk;
        if constexpr (kRX) {
          T rx4[4];
          k_ld4(rxc + k * rp, rx4);
          MAML_UNROLL
          for (int q = 0; q < 4; ++q) acc[q] += rx4[q] * wk;
        }
      }
    }
    if (ks == 1) {
      finish(it, acc);
    } else {
      MAML_UNROLL
      for (int q = 0; q < 4; ++q) part[static_cast<int64_t>(idx) * 4 + q] = acc[q];
    }
  }
  if (ks > 1) {
    blk.sync();
    for (int it = blk.tid(); it < items; it += blk.size()) {
      T acc[4] = {T(0), T(0), T(0), T(0)};
      for (int sp = 0; sp < ks; ++sp)
        MAML_UNROLL
        for (int q = 0; q < 4; ++q) acc[q] += part[(static_cast<int64_t>(sp) * items + it) * 4 + q];
      finish(it, acc);
    }
  }
}

// Forward pass at th (the block's slice) on set, or the R-forward along u: every block ends with
// all the activations of every layer (and R(out) in rout). kept: the block's copy of this set's
// activations at th in global memory: written by a plain pass (the inner loop's, second order),
// read by an R pass (which needs it). Starts with a cluster sync (the pass overwrites what peers
// read in the last one) and ends with one.
template <class T, class Block, class Cluster>
MAML_HD void forward_cluster(const Block& blk, const Cluster& cl, const KModel& m, const KCluster& kc, const T* th,
                             const UArg<T> u, const KSet<T>& set, T* sm, T* kept) {
  const int n = set.n, rp = kc.rp;
  const int64_t nact = static_cast<int64_t>(n) * m.sum_width;
  T* act = sm + kc.act;
  T* ract = sm + kc.ract;
  cl.sync();
  if (u.v) {
    for (int64_t q = blk.tid(); q < nact; q += blk.size()) act[q] = kept[q];
    blk.sync();
  }
  int64_t off = 0, prev_off = 0;
  for (int l = 1; l <= m.L; ++l) {
    const int din = m.dims[l - 1];
    const T* in = l > 1 ? act + prev_off : set.x;
    const T* rin = u.v && l > 1 ? ract + prev_off : nullptr;
    T* xT = sm + kc.recv;
    T* rxT = xT + up4(static_cast<int64_t>(din) * rp);
    for (int q = blk.tid(); q < din * rp; q += blk.size()) {
      const int k = q / rp, i = q - k * rp;
      xT[q] = i < n ? in[static_cast<int64_t>(i) * din + k] : T(0);
      if (rin) rxT[q] = i < n ? rin[static_cast<int64_t>(i) * din + k] : T(0);
    }
    blk.sync();
    T us;
    const int mode = u_mode(u, m, l, &us);
    T* act_l = act + off;
    T* ract_l = l == m.L ? sm + kc.rout : ract + off;
    T* rpre_l = sm + kc.rpre + static_cast<int64_t>(n) * kc.ro[l];
    if (mode == 0) forward_items_cl<0, false>(blk, cl, m, kc, l, th, u, us, xT, rxT, n, act_l, ract_l, rpre_l, sm + kc.loc);
    else if (mode == 1 && rin) forward_items_cl<1, true>(blk, cl, m, kc, l, th, u, us, xT, rxT, n, act_l, ract_l, rpre_l, sm + kc.loc);
    else if (mode == 1) forward_items_cl<1, false>(blk, cl, m, kc, l, th, u, us, xT, rxT, n, act_l, ract_l, rpre_l, sm + kc.loc);
    else if (rin) forward_items_cl<2, true>(blk, cl, m, kc, l, th, u, us, xT, rxT, n, act_l, ract_l, rpre_l, sm + kc.loc);
    else forward_items_cl<2, false>(blk, cl, m, kc, l, th, u, us, xT, rxT, n, act_l, ract_l, rpre_l, sm + kc.loc);
    cl.sync();
    prev_off = off;
    off += static_cast<int64_t>(n) * m.dims[l];
  }
  if (!u.v && kept)
    for (int64_t q = blk.tid(); q < nact; q += blk.size()) kept[q] = act[q];
}

// The loss from the full outputs (every block, the same values), then the block's own columns of
// dL/dout (and R) into dz (and rdz), row pitch its own rows. Ends with sync().
template <class T, class Block, class Cluster>
MAML_HD T loss_cluster(const Block& blk, const Cluster& cl, const KModel& m, const KCluster& kc, const KSet<T>& set,
                       T* sm, bool with_r, bool want_loss) {
  const int n = set.n, dL = m.dims[m.L], c = kc.c, r = cl.rank();
  const int j0 = row_lo(dL, r, c), nj = row_lo(dL, r + 1, c) - j0;
  T* full = sm + kc.loc;
  T* rfull = full + up4(static_cast<int64_t>(kc.n_max) * dL);
  const T* out = sm + kc.act + static_cast<int64_t>(n) * (m.sum_width - dL);
  const T loss = loss_rows(blk, m, set, out, sm + kc.rout, full, rfull, sm + kc.red, with_r, want_loss);
  T* dz = sm + kc.dz;
  T* rdz = sm + kc.rdz;
  for (int q = blk.tid(); q < n * nj; q += blk.size()) {
    const int i = q / nj, j = q - i * nj;
    dz[q] = full[static_cast<int64_t>(i) * dL + j0 + j];
    if (with_r) rdz[q] = rfull[static_cast<int64_t>(i) * dL + j0 + j];
  }
  blk.sync();
  return loss;
}

// Partial deltas of layer l − 1 over the block's own rows of layer l, columns k, rows 4 ch ..:
//   plain passes: pd = dz_l W_l (own rows);  R passes: prd = R(dz_l) W_l + dz_l uW_l (per j: two
//   FMAs; pd is kept from the inner loop)
// stored into the owner of column k (recv or rrecv [rank][row][k − its first column]).
template <int kU, class T, class Block, class Cluster>
MAML_HD void delta_items_cl(const Block& blk, const Cluster& cl, const KModel& m, const KCluster& kc, int l,
                            const T* th, const UArg<T> u, T us, const T* dzT, const T* rdzT, int n, T* recv,
                            T* rrecv) {
  const int din = m.dims[l - 1], dout = m.dims[l], r = cl.rank(), c = kc.c, rp = kc.rp;
  const int j0 = row_lo(dout, r, c), nj = row_lo(dout, r + 1, c) - j0;
  const int nch = (n + 3) / 4, ld = kc.ld[l];
  const T* W = th + kc.lw[l];
  for (int idx = blk.tid(); idx < din * nch; idx += blk.size()) {
    const int ch = idx / din, k = idx - ch * din;
    T d[4] = {T(0), T(0), T(0), T(0)}, rd[4] = {T(0), T(0), T(0), T(0)};
    MAML_UNROLL4
    for (int j = 0; j < nj; ++j) {
      const T wk = W[j * ld + k];
      T d4[4];
      k_ld4(dzT + j * rp + 4 * ch, d4);
      if constexpr (kU == 0) {
        MAML_UNROLL
        for (int q = 0; q < 4; ++q) d[q] += d4[q] * wk;
      } else {
        const T uk = u_val<kU>(u, us, kc.lw[l] + j * ld + k, m.w_off[l] + (j0 + j) * din + k);
        T rd4[4];
        k_ld4(rdzT + j * rp + 4 * ch, rd4);
        MAML_UNROLL
        for (int q = 0; q < 4; ++q) {
          rd[q] += rd4[q] * wk;
          rd[q] += d4[q] * uk;
        }
      }
    }
    const int owner = row_owner(din, k, c), kk = k - row_lo(din, owner, c);
    const int64_t at = (static_cast<int64_t>(r) * kc.n_max + 4 * ch) * kc.njmax + kk;
    T* dst = cl.peer(recv, owner) + at;
    T* rdst = cl.peer(rrecv, owner) + at;
    const int nr = n - 4 * ch < 4 ? n - 4 * ch : 4;
    MAML_UNROLL
    for (int q = 0; q < 4; ++q) {
      if (q >= nr) break;
      if constexpr (kU == 0) dst[static_cast<int64_t>(q) * kc.njmax] = d[q];
      else rdst[static_cast<int64_t>(q) * kc.njmax] = rd[q];
    }
  }
}

// Weight gradients of the block's rows of layer l in 4 x 4 register tiles (rows j, j+1, .., of the
// slice; columns kt, kt + tk, ..), then its biases; emitted where e says. Sums over the rows in
// ascending order (R part: per row, R(dz) x then dz R(x)). kG: the pass wants the gradient (else
// only the curvature products: the R passes); kR: the curvature products; kRX: the layer's
// input has an R part.
template <bool kG, bool kR, bool kRX, class T, class Block>
MAML_HD void grad_items_cl(const Block& blk, const KModel& m, const KCluster& kc, int l, int r, const T* in,
                           const T* rin, const T* dz, const T* rdz, int n, const Emit<T> e) {
  constexpr bool with_r = kR;
  const int din = m.dims[l - 1], dout = m.dims[l];
  const int j0 = row_lo(dout, r, kc.c), nj = row_lo(dout, r + 1, kc.c) - j0;
  const int tj = (nj + 3) / 4, tk = (din + 3) / 4, nw = tj * tk;
  for (int idx = blk.tid(); idx < nw + nj; idx += blk.size()) {
    if (idx >= nw) {
      const int j = idx - nw;
      T g = T(0), hv = T(0);
      for (int i = 0; i < n; ++i) {
        if (kG) g += dz[i * nj + j];
        if (with_r) hv += rdz[i * nj + j];
      }
      emit_param(e, kc.lb[l] + j, m.b_off[l] + j0 + j, g, hv, with_r);
      continue;
    }
    const int jt = idx / tk, kt = idx - jt * tk, ja = 4 * jt;
    T g[4][4], hv[4][4];
    MAML_UNROLL
    for (int a = 0; a < 4; ++a)
      MAML_UNROLL
      for (int b = 0; b < 4; ++b) g[a][b] = hv[a][b] = T(0);
    for (int i = 0; i < n; ++i) {
      T x[4], rx[4], d[4], rd[4];
      MAML_UNROLL
      for (int b = 0; b < 4; ++b) {
        const int k = kt + b * tk;
        x[b] = k < din ? in[static_cast<int64_t>(i) * din + k] : T(0);
        rx[b] = kRX && k < din ? rin[static_cast<int64_t>(i) * din + k] : T(0);
      }
      MAML_UNROLL
      for (int a = 0; a < 4; ++a) {
        d[a] = ja + a < nj ? dz[i * nj + ja + a] : T(0);
        rd[a] = with_r && ja + a < nj ? rdz[i * nj + ja + a] : T(0);
      }
      MAML_UNROLL
      for (int a = 0; a < 4; ++a)
        MAML_UNROLL
        for (int b = 0; b < 4; ++b) {
          if (kG) g[a][b] += d[a] * x[b];
          if (with_r) {
            hv[a][b] += rd[a] * x[b];
            if (kRX) hv[a][b] += d[a] * rx[b];
          }
        }
    }
    MAML_UNROLL
    for (int a = 0; a < 4; ++a)
      MAML_UNROLL
      for (int b = 0; b < 4; ++b) {
        const int j = ja + a, k = kt + b * tk;
        if (j < nj && k < din)
          emit_param(e, kc.lw[l] + j * kc.ld[l] + k, m.w_off[l] + (j0 + j) * din + k, g[a][b], hv[a][b], with_r);
      }
  }
}

// Backward (or R-backward along u) from the own columns of dL/dout in dz (rdz), layer by layer:
// phase A, the partial deltas of the layer below into their owners, then the arrival at a cluster
// barrier; the layer's weight and bias gradients (local work, under the barrier's latency); the
// wait; phase B, the block's own deltas of the layer below (the c partials in rank order).
// kept: the block's own columns of the summed delta products (before f') in global memory, as
// rpre: written by a plain pass that has it (the inner loop's, second order), read by an R pass.
template <class T, class Block, class Cluster>
MAML_HD void backward_cluster(const Block& blk, const Cluster& cl, const KModel& m, const KCluster& kc, const T* th,
                              const UArg<T> u, const KSet<T>& set, T* sm, const Emit<T> e, T* kept) {
  const int n = set.n, r = cl.rank(), c = kc.c, rp = kc.rp;
  const bool with_r = e.vsub != nullptr;
  T* dz = sm + kc.dz;
  T* rdz = sm + kc.rdz;
  T* dz2 = sm + kc.dz2;
  T* rdz2 = sm + kc.rdz2;
  const T* recv = sm + kc.recv;
  const T* rrecv = sm + kc.rrecv;
  int64_t off = static_cast<int64_t>(n) * (m.sum_width - m.dims[m.L]);
  for (int l = m.L; l >= 1; --l) {
    const int din = m.dims[l - 1], dout = m.dims[l];
    const int nj = row_lo(dout, r + 1, c) - row_lo(dout, r, c);
    const int64_t prev_off = l > 1 ? off - static_cast<int64_t>(n) * din : 0;
    const T* in = l > 1 ? sm + kc.act + prev_off : set.x;
    const T* rin = with_r && l > 1 ? sm + kc.ract + prev_off : nullptr;
    if (l > 1) {
      T* dzT = sm + kc.loc;
      T* rdzT = dzT + up4(static_cast<int64_t>(kc.njmax) * rp);
      for (int q = blk.tid(); q < nj * rp; q += blk.size()) {
        const int j = q / rp, i = q - j * rp;
        dzT[q] = i < n ? dz[i * nj + j] : T(0);
        if (with_r) rdzT[q] = i < n ? rdz[i * nj + j] : T(0);
      }
      blk.sync();
      T us = T(0);
      const int mode = with_r ? u_mode(u, m, l, &us) : 0;
      T* rv = sm + kc.recv;
      T* rrv = sm + kc.rrecv;
      if (mode == 0) delta_items_cl<0>(blk, cl, m, kc, l, th, u, us, dzT, rdzT, n, rv, rrv);
      else if (mode == 1) delta_items_cl<1>(blk, cl, m, kc, l, th, u, us, dzT, rdzT, n, rv, rrv);
      else delta_items_cl<2>(blk, cl, m, kc, l, th, u, us, dzT, rdzT, n, rv, rrv);
      cl.arrive();  // the partials are out; the weight gradients below need none of the peers'
      blk.sync();   // but they update v, whose layer-l part the R pass's partials read as u
    }
    if (!with_r) grad_items_cl<true, false, false>(blk, m, kc, l, r, in, rin, dz, rdz, n, e);
    else if (e.wants_g() && rin) grad_items_cl<true, true, true>(blk, m, kc, l, r, in, rin, dz, rdz, n, e);
    else if (e.wants_g()) grad_items_cl<true, true, false>(blk, m, kc, l, r, in, rin, dz, rdz, n, e);
    else if (rin) grad_items_cl<false, true, true>(blk, m, kc, l, r, in, rin, dz, rdz, n, e);
    else grad_items_cl<false, true, false>(blk, m, kc, l, r, in, rin, dz, rdz, n, e);
    if (l > 1) {
      cl.wait();  // every block's partials of this block's columns have arrived
      // the block's columns of dz_{l−1} = (Σ partials) ⊙ f'(a_{l−1}), and R(dz_{l−1})
      const int k0 = row_lo(din, r, c), nj1 = row_lo(din, r + 1, c) - k0;
      const T* rpre = sm + kc.rpre + static_cast<int64_t>(n) * kc.ro[l - 1];
      T* kept_l = kept ? kept + static_cast<int64_t>(n) * kc.ro[l - 1] : nullptr;
      for (int q = blk.tid(); q < n * nj1; q += blk.size()) {
        const int i = q / nj1, kk = q - i * nj1;
        T da = T(0), rda = T(0);
        for (int b = 0; b < c; ++b) {
          const int64_t at = (static_cast<int64_t>(b) * kc.n_max + i) * kc.njmax + kk;
          if (with_r) rda += rrecv[at];
          else da += recv[at];
        }
        if (with_r) da = kept_l[q];
        else if (kept_l) kept_l[q] = da;
        const T a = in[static_cast<int64_t>(i) * din + k0 + kk];
        if (with_r) rdz2[q] = rda * k_d1(m.act, a) + da * k_d2(m.act, a) * rpre[q];
        dz2[q] = da * k_d1(m.act, a);
      }
    }
    // the next phase A stores into the peers' recv, which they may still be reading
    if (l > 2) cl.sync();
    else blk.sync();
    T* t = dz; dz = dz2; dz2 = t;
    t = rdz; rdz = rdz2; rdz2 = t;
    off = prev_off;
  }
}

// One pass. kept_act, kept_da: where a plain pass keeps (an R pass finds) the block's activations
// and delta products of the set at th (forward_cluster, backward_cluster), or nullptr.
template <class T, class Block, class Cluster>
MAML_HD T grad_pass_cluster(const Block& blk, const Cluster& cl, const KModel& m, const KCluster& kc, const T* th,
                            const UArg<T> u, const KSet<T>& set, T* sm, const Emit<T> e, bool want_loss,
                            T* kept_act = nullptr, T* kept_da = nullptr) {
  forward_cluster(blk, cl, m, kc, th, u, set, sm, kept_act);
  const T loss = loss_cluster(blk, cl, m, kc, set, sm, u.v != nullptr, want_loss);
  if (e.wants_g() || e.vsub) backward_cluster(blk, cl, m, kc, th, u, set, sm, e, kept_da);
  return loss;
}

// One task's meta-gradient on a cluster (see the top of this file). sm: the block's kc.total
// floats of shared memory; gw: the task's kc.g_total floats of global scratch; out [P + R].
template <class T, class Block, class Cluster>
MAML_HD void task_meta_step_cluster(const Block& blk, const Cluster& cl, const KModel& m, const KConfig& c,
                                    const KCluster& kc, const KArgs<T>& a, int task, T* sm, T* gw, T* out,
                                    T* loss_out) {
  const int64_t P = m.P;
  const int S = c.steps, r = cl.rank();
  const KSet<T> sup = support_of(m, a, task), qry = query_of(m, a, task);
  const int begin = c.head_only() ? m.head_begin : 0;
  const int64_t ps = c.rate_param_stride, rs = c.rate_step_stride;
  T* thA = sm + kc.thA;
  T* thB = sm + kc.thB;
  for_slice(blk, m, kc, r, [&](int pl, int pg) { thA[pl] = a.theta[pg]; });
  blk.sync();
  for (int s = 0; s < S; ++s) {
    Emit<T> e;
    e.g_out = c.want_rate_grad ? gw + kc.g_grads + s * P : nullptr;
    e.cur = thA;
    e.next = thB;
    e.rate = a.rates + s * rs;
    e.param_stride = ps;
    e.begin = begin;
    T* kept_act = c.second_order() ? gw + kc.g_acts + (r * S + s) * kc.g_act_stride : nullptr;
    T* kept_da = c.second_order() ? gw + kc.g_das + (r * S + s) * kc.g_da_stride : nullptr;
    grad_pass_cluster(blk, cl, m, kc, thA, UArg<T>(), sup, sm, e, false, kept_act, kept_da);
    if (s + 1 < S) {
      T* dst = gw + kc.g_thetas + (s + 1) * P;
      for_slice(blk, m, kc, r, [&](int pl, int pg) { dst[pg] = thB[pl]; });
    }
    T* t = thA; thA = thB; thB = t;
    blk.sync();
  }
  // thA: θ_S
  if (c.algo == kReptile) {
    for_slice(blk, m, kc, r, [&](int pl, int pg) { out[pg] = a.theta[pg] - thA[pl]; });
    const T loss = grad_pass_cluster(blk, cl, m, kc, thA, UArg<T>(), qry.n > 0 ? qry : sup, sm, Emit<T>(), true);
    if (r == 0 && blk.tid() == 0) *loss_out = loss;
    cl.sync();
    return;
  }
  T* v = thB;
  T* rate_out = out + P;
  for_slice(blk, m, kc, r, [&](int pl, int) { v[pl] = T(0); });
  if (c.want_rate_grad) {
    if (ps == 0) {
      if (r == 0)
        for (int i = blk.tid(); i < c.R; i += blk.size()) rate_out[i] = T(0);
    } else {
      for (int s = 0; s < S; ++s) for_slice(blk, m, kc, r, [&](int, int pg) { rate_out[s * rs + pg] = T(0); });
    }
  }
  blk.sync();
  T loss = T(0);
  Emit<T> eq;  // v += w_s ∇L_q(θ_s)
  eq.vacc = v;
  if (a.weights[S] != T(0)) {
    eq.scale = a.weights[S];
    loss += a.weights[S] * grad_pass_cluster(blk, cl, m, kc, thA, UArg<T>(), qry, sm, eq, true);
  }
  for (int s = S - 1; s >= 0; --s) {
    const T* src = s == 0 ? a.theta : gw + kc.g_thetas + s * P;
    blk.sync();  // the last pass's reads of thA are done
    for_slice(blk, m, kc, r, [&](int pl, int pg) { thA[pl] = src[pg]; });
    blk.sync();
    if (c.second_order()) {
      const T* rate = a.rates + s * rs;
      if (c.want_rate_grad) {  // dα_s −= mask ⊙ g_s ⊙ v_{s+1}
        const T* g = gw + kc.g_grads + s * P;
        if (ps == 0) {
          T part = T(0);
          for_slice(blk, m, kc, r, [&](int pl, int pg) {
            if (pg >= begin) part += g[pg] * v[pl];
          });
          const T dot = block_sum(blk, sm + kc.red, part);
          if (blk.tid() == 0) sm[kc.cred] = dot;
          cl.sync();
          if (r == 0 && blk.tid() == 0) {
            T total = T(0);
            for (int b = 0; b < kc.c; ++b) total += *cl.peer(sm + kc.cred, b);
            rate_out[s * rs] -= total;
          }
        } else {
          for_slice(blk, m, kc, r, [&](int pl, int pg) {
            if (pg >= begin) rate_out[s * rs + pg] -= g[pg] * v[pl];
          });
        }
      }
      UArg<T> u;  // v −= H_s (α_s ⊙ mask ⊙ v)
      u.v = v;
      u.rate = rate;
      u.ps = ps;
      u.begin = begin;
      Emit<T> eh;
      eh.vsub = v;
      grad_pass_cluster(blk, cl, m, kc, thA, u, sup, sm, eh, false, gw + kc.g_acts + (r * S + s) * kc.g_act_stride,
                        gw + kc.g_das + (r * S + s) * kc.g_da_stride);
    }
    if (a.weights[s] != T(0)) {
      eq.scale = a.weights[s];
      loss += a.weights[s] * grad_pass_cluster(blk, cl, m, kc, thA, UArg<T>(), qry, sm, eq, true);
    }
  }
  for_slice(blk, m, kc, r, [&](int pl, int pg) { out[pg] = v[pl]; });
  if (r == 0 && blk.tid() == 0) *loss_out = loss;
  cl.sync();  // no block leaves while a peer may still read its shared memory
}

}  // namespace maml::cuda
