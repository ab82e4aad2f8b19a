// fewshot.hpp: the metric-based few-shot learners (Prototypical, Matching and Relation
// Networks): the spec, and each head's forward and backward passes side by side. Plain
// loops, templated on float and double: this is the reference. One task's loss and gradient
// and the meta-batch over the thread pool are in fewshot_batch.hpp.
//
// Parameters: theta = [phi (the embedding MLP, P_e) | psi (the relation MLP, P_r; relation
// only)], each in the layout of model.hpp. The MLPs run through mlp.hpp (forward, backward).
//
// Shapes of one task (N ways, D = embedding width, ns support and nq query rows):
//   xs [ns, d0]  ys [ns] in [0, N)   es = f(xs) [ns, D]
//   xq [nq, d0]  yq [nq] in [0, N)   eq = f(xq) [nq, D]      logits [nq, N]
// Heads (every class has >= 1 support row; cnt_k = its count):
//   protonet:  c_k = mean_{i: ys_i = k} es_i;  logits_qk = -|eq_q - c_k|^2;
//              loss = mean_q cross-entropy(logits_q, yq_q)
//   matching:  cos_qi = <eq_q, es_i> / (nrm(eq_q) nrm(es_i)), nrm(u) = max(|u|, 1e-8) (as
//              torch.nn.functional.cosine_similarity), no temperature;
//              a_qi = softmax_i cos_qi;  p_qk = sum_{i: ys_i = k} a_qi;
//              logits_qk = log p_qk = lse_{i: ys_i = k} cos_qi - lse_i cos_qi (log space, no clamp);
//              loss = mean_q -log p_{q, yq_q}
//   relation:  with episode normalization (rel_norm; the default of the TypeScript API), es
//              and eq are first standardized together, per dimension, over the task's
//              ns + nq rows (fewshot_norm.hpp: training-mode BatchNorm1d without affine
//              parameters, eps 1e-5); then (on the standardized rows when rel_norm)
//              c_k = mean (or sum, the paper's K-shot choice) of es_i over class k;
//              pairs [nq * N, 2D], row q*N + k = [eq_q, c_k];  r_qk = sigmoid(g_psi(pair_qk));
//              logits_qk = r_qk;  loss = mean_{q,k} (r_qk - [yq_q = k])^2
// Backward: dlogits -> (des [ns, D], deq [nq, D], dpsi); then (fewshot_batch.hpp) the
// embedding's backward pass once for the support rows and once for the query rows.
//
// Accumulation rule: every function here OVERWRITES its outputs (logits, des, deq, dpsi).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fewshot_norm.hpp"
#include "loss.hpp"
#include "mlp.hpp"

namespace maml {

enum class FewShotAlgo : int { ProtoNet = 0, Matching = 1, Relation = 2 };

struct FewShotSpec {
  FewShotAlgo algo = FewShotAlgo::ProtoNet;
  ModelSpec emb;         // embedding MLP [d0, ..., D]
  ModelSpec rel;         // relation MLP [2D, ..., 1] (relation only)
  bool rel_sum = false;  // relation: class embedding = sum (paper) instead of mean
  bool rel_norm = false; // relation: episode normalization of the embeddings (fewshot_norm.hpp)
  int64_t n_params = 0;  // P = P_e + P_r
  int64_t dim() const { return emb.out_dim(); }
  bool relation() const { return algo == FewShotAlgo::Relation; }
};

inline FewShotSpec make_fewshot_spec(int algo, const std::vector<int64_t>& emb_dims, int emb_act,
                                     const std::vector<int64_t>& rel_dims, int rel_act, bool rel_sum,
                                     bool rel_norm = false) {
  MAML_CHECK(algo >= 0 && algo <= 2, InvalidArgument, "algorithm must be 'protonet', 'matching' or 'relation'");
  FewShotSpec f;
  f.algo = static_cast<FewShotAlgo>(algo);
  f.emb = make_spec(emb_dims, emb_act, 0);
  f.n_params = f.emb.n_params;
  if (f.relation()) {
    f.rel = make_spec(rel_dims, rel_act, 0);
    MAML_CHECK(f.rel.in_dim() == 2 * f.dim() && f.rel.out_dim() == 1, ShapeMismatch,
               "relation.layers must go from 2 * embedDim to 1");
    f.rel_sum = rel_sum;
    f.rel_norm = rel_norm;
    f.n_params += f.rel.n_params;
    MAML_CHECK(f.n_params <= kMaxParams, TooLarge, "the learner has more than 2^31 parameters");
  }
  return f;
}

// One task's arrays. yq may be nullptr when only logits are wanted.
template <class T>
struct FewShotTask {
  int64_t ways = 0, ns = 0, nq = 0;
  const T* xs = nullptr;
  const int32_t* ys = nullptr;
  const T* xq = nullptr;
  const int32_t* yq = nullptr;
};

// Scratch of one worker, sized on use and reused across tasks (no allocation once warm).
template <class T>
struct FewShotWork {
  MlpWork<T> wq;                   // the classifier's query pass
  std::vector<T> logits, dlogits;  // [nq, N]
  std::vector<T> cent, dcent;      // [N, D] class centres (protonet, relation)
  std::vector<T> cnt;              // [N] support rows per class
  std::vector<T> cos, lse;         // matching: [nq, ns] cosines, [nq] lse_i cos_qi
  std::vector<T> nrm_s, nrm_q;     // matching: [ns], [nq] clamped norms
  std::vector<T> pairs, dpairs;    // relation: [nq * N, 2D]
  std::vector<T> dout;             // relation: [nq * N] d loss / d g_psi
  std::vector<T> norm_s, norm_q;   // relation, rel_norm: standardized es [ns, D], eq [nq, D]
  std::vector<T> nmean, ninv;      // relation, rel_norm: [D] mean and 1 / sqrt(var + eps)
  std::vector<T> nsum_g, nsum_gx;  // relation, rel_norm: [D] backward sums
  std::vector<T> des, deq;         // [ns, D], [nq, D]
  std::vector<T> gq;               // the query rows' embedding gradient
};

template <class T>
inline void fit(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
}

// dx [n, d0] = dz_1 W_1: the gradient with respect to the MLP's input. Call right after
// mlp_backward on the same work: its loop ends at layer 1 with work.dz holding dz_1 [n, d1].
template <class T>
void mlp_input_grad(const ModelSpec& s, const T* theta, int64_t n, const MlpWork<T>& work, T* dx) {
  const int64_t d0 = s.dims[0], d1 = s.dims[1];
  const T* W = theta + s.w_off[1];  // [d1, d0]
  const T* dz = work.dz.data();     // [n, d1]
  for (int64_t i = 0; i < n; ++i) {
    T* dxi = dx + i * d0;
    for (int64_t k = 0; k < d0; ++k) dxi[k] = 0;
    for (int64_t j = 0; j < d1; ++j) {
      const T g = dz[i * d1 + j];
      const T* wj = W + j * d0;
      for (int64_t k = 0; k < d0; ++k) dxi[k] += g * wj[k];
    }
  }
}

// Class centres c [N, D] = (mean or sum) of es over each class; cnt [N] the counts.
template <class T>
void centres_forward(const T* es, const int32_t* ys, int64_t ns, int64_t N, int64_t D, bool sum, T* c, T* cnt) {
  for (int64_t i = 0; i < N * D; ++i) c[i] = 0;
  for (int64_t k = 0; k < N; ++k) cnt[k] = 0;
  for (int64_t i = 0; i < ns; ++i) {
    const int32_t k = ys[i];
    cnt[k] += T(1);
    for (int64_t d = 0; d < D; ++d) c[k * D + d] += es[i * D + d];
  }
  for (int64_t k = 0; k < N; ++k) {
    MAML_CHECK(cnt[k] > T(0), InvalidArgument, "every class needs at least one support example");
    if (!sum)
      for (int64_t d = 0; d < D; ++d) c[k * D + d] /= cnt[k];
  }
}
// des [ns, D] (OVERWRITTEN) from dc [N, D]: des_i = dc_{ys_i} (/ cnt for the mean).
template <class T>
void centres_backward(const int32_t* ys, int64_t ns, int64_t D, bool sum, const T* cnt, const T* dc, T* des) {
  for (int64_t i = 0; i < ns; ++i) {
    const int32_t k = ys[i];
    const T scale = sum ? T(1) : T(1) / cnt[k];
    for (int64_t d = 0; d < D; ++d) des[i * D + d] = scale * dc[k * D + d];
  }
}

// ---- Prototypical Networks ---------------------------------------------------------------
// logits [nq, N] = -|eq_q - c_k|^2 (c, cnt filled).
template <class T>
void proto_forward(const T* es, const int32_t* ys, int64_t ns, const T* eq, int64_t nq, int64_t N, int64_t D,
                   FewShotWork<T>& w) {
  centres_forward(es, ys, ns, N, D, false, w.cent.data(), w.cnt.data());
  for (int64_t q = 0; q < nq; ++q)
    for (int64_t k = 0; k < N; ++k) {
      T acc = 0;
      for (int64_t d = 0; d < D; ++d) {
        const T e = eq[q * D + d] - w.cent[k * D + d];
        acc += e * e;
      }
      w.logits[q * N + k] = -acc;
    }
}
// From dlogits [nq, N]: deq_q = sum_k -2 dl_qk (eq_q - c_k); dc_k = sum_q 2 dl_qk (eq_q - c_k).
template <class T>
void proto_backward(const int32_t* ys, int64_t ns, const T* eq, int64_t nq, int64_t N, int64_t D, FewShotWork<T>& w) {
  T* dc = w.dcent.data();
  for (int64_t i = 0; i < N * D; ++i) dc[i] = 0;
  for (int64_t q = 0; q < nq; ++q) {
    T* dq = w.deq.data() + q * D;
    for (int64_t d = 0; d < D; ++d) dq[d] = 0;
    for (int64_t k = 0; k < N; ++k) {
      const T g = T(2) * w.dlogits[q * N + k];
      for (int64_t d = 0; d < D; ++d) {
        const T e = g * (eq[q * D + d] - w.cent[k * D + d]);
        dq[d] -= e;
        dc[k * D + d] += e;
      }
    }
  }
  centres_backward(ys, ns, D, false, w.cnt.data(), dc, w.des.data());
}

// ---- Matching Networks (no full-context embeddings) --------------------------------------
constexpr double kCosEps = 1e-8;

template <class T>
T clamped_norm(const T* u, int64_t D) {
  T s = 0;
  for (int64_t d = 0; d < D; ++d) s += u[d] * u[d];
  const T n = std::sqrt(s);
  return n > T(kCosEps) ? n : T(kCosEps);
}

// logits [nq, N] = log p_qk; keeps cos [nq, ns], lse [nq], norms.
template <class T>
void matching_forward(const T* es, const int32_t* ys, int64_t ns, const T* eq, int64_t nq, int64_t N, int64_t D,
                      FewShotWork<T>& w) {
  for (int64_t i = 0; i < ns; ++i) w.nrm_s[i] = clamped_norm(es + i * D, D);
  for (int64_t q = 0; q < nq; ++q) {
    w.nrm_q[q] = clamped_norm(eq + q * D, D);
    T* c = w.cos.data() + q * ns;
    T cmax = -INFINITY;
    for (int64_t i = 0; i < ns; ++i) {
      T acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += eq[q * D + d] * es[i * D + d];
      c[i] = acc / (w.nrm_q[q] * w.nrm_s[i]);
      cmax = c[i] > cmax ? c[i] : cmax;
    }
    // per class: sum_{i in k} exp(cos - cmax); the total is their sum
    T* lg = w.logits.data() + q * N;
    for (int64_t k = 0; k < N; ++k) lg[k] = 0;
    for (int64_t i = 0; i < ns; ++i) lg[ys[i]] += std::exp(c[i] - cmax);
    T total = 0;
    for (int64_t k = 0; k < N; ++k) total += lg[k];
    w.lse[q] = cmax + std::log(total);
    for (int64_t k = 0; k < N; ++k) lg[k] = std::log(lg[k]) + cmax - w.lse[q];
  }
}
// Loss mean_q -log p_{q,yq} and deq, des. dcos_qi = (a_qi - [ys_i = yq] a_qi / p_{q,yq}) / nq,
// then through the cosine: dcos/du = v / (|u||v|) - cos u / |u|^2 (no second term where the
// norm is clamped), and likewise for v.
template <class T>
double matching_loss_backward(const T* es, const int32_t* ys, int64_t ns, const T* eq, const int32_t* yq, int64_t nq,
                              int64_t N, int64_t D, FewShotWork<T>& w, bool want_grad) {
  double loss = 0.0;
  if (want_grad) {
    for (int64_t i = 0; i < ns * D; ++i) w.des[i] = 0;
    for (int64_t i = 0; i < nq * D; ++i) w.deq[i] = 0;
  }
  const T inv_nq = T(1) / T(static_cast<double>(nq));
  for (int64_t q = 0; q < nq; ++q) {
    const int32_t y = yq[q];
    const T logp = w.logits[q * N + y];
    loss -= static_cast<double>(logp);
    if (!want_grad) continue;
    const T* c = w.cos.data() + q * ns;
    const T* u = eq + q * D;
    const T nu = w.nrm_q[q];
    const bool u_free = nu > T(kCosEps);
    T* du = w.deq.data() + q * D;
    for (int64_t i = 0; i < ns; ++i) {
      const T a = std::exp(c[i] - w.lse[q]);
      T g = a;
      if (ys[i] == y) g -= std::exp(c[i] - w.lse[q] - logp);  // a_qi / p_{q,y}
      g *= inv_nq;
      if (g == T(0)) continue;
      const T* v = es + i * D;
      const T nv = w.nrm_s[i];
      const bool v_free = nv > T(kCosEps);
      const T inv = T(1) / (nu * nv);
      const T cu = u_free ? c[i] / (nu * nu) : T(0);
      const T cv = v_free ? c[i] / (nv * nv) : T(0);
      T* dv = w.des.data() + i * D;
      for (int64_t d = 0; d < D; ++d) {
        du[d] += g * (v[d] * inv - cu * u[d]);
        dv[d] += g * (u[d] * inv - cv * v[d]);
      }
    }
  }
  return loss / static_cast<double>(nq);
}

// ---- Relation Networks -------------------------------------------------------------------
// The relation module g_psi is a policy (Rel), so that the fast path runs it on its kernels:
//   const T* forward(const T* x, int64_t n)       g(x) [n, 1]
//   void backward(const T* x, int64_t n, const T* dout, T* dpsi, T* dx)
//        dpsi (Rel's layout) and dx [n, 2D] = d<dout, g(x)>/d(psi, x), both OVERWRITTEN
// PlainRelation is the reference: mlp.hpp's passes, and dx = dz_1 W_1 (mlp_input_grad).
template <class T>
struct PlainRelation {
  const ModelSpec* spec = nullptr;
  const T* psi = nullptr;
  MlpWork<T> work;
  void bind(const ModelSpec& s, const T* p) {
    spec = &s;
    psi = p;
  }
  int64_t n_params() const { return spec->n_params; }
  const T* forward(const T* x, int64_t n) { return mlp_forward(*spec, psi, x, n, work); }
  void backward(const T* x, int64_t n, const T* dout, T* dpsi, T* dx) {
    std::memcpy(work.dz.data(), dout, sizeof(T) * static_cast<size_t>(n));
    mlp_backward<T>(*spec, psi, x, n, work, dpsi, nullptr, nullptr);
    mlp_input_grad(*spec, psi, n, work, dx);
  }
};

// pairs [nq * N, 2D] = [eq_q, c_k];  logits [nq, N] = sigmoid(g_psi(pairs)). With rel_norm,
// es and eq are standardized first (into norm_s, norm_q; statistics in nmean, ninv).
template <class T, class Rel>
void relation_forward(const FewShotSpec& fs, Rel& rel, const T* es, const int32_t* ys, int64_t ns, const T* eq,
                      int64_t nq, int64_t N, FewShotWork<T>& w) {
  const int64_t D = fs.dim();
  if (fs.rel_norm) {
    episode_norm_forward(es, ns, eq, nq, D, w.norm_s.data(), w.norm_q.data(), w.nmean.data(), w.ninv.data());
    es = w.norm_s.data();
    eq = w.norm_q.data();
  }
  centres_forward(es, ys, ns, N, D, fs.rel_sum, w.cent.data(), w.cnt.data());
  for (int64_t q = 0; q < nq; ++q)
    for (int64_t k = 0; k < N; ++k) {
      T* row = w.pairs.data() + (q * N + k) * 2 * D;
      std::memcpy(row, eq + q * D, sizeof(T) * static_cast<size_t>(D));
      std::memcpy(row + D, w.cent.data() + k * D, sizeof(T) * static_cast<size_t>(D));
    }
  const T* out = rel.forward(w.pairs.data(), nq * N);  // [nq * N, 1]
  for (int64_t j = 0; j < nq * N; ++j) w.logits[j] = sigmoid(out[j]);
}
// Loss mean (r - t)^2; dout = 2 (r - t) r (1 - r) / (nq N); dpsi (OVERWRITTEN) and dpairs by
// the module's backward pass; dpairs split into deq_q (sum over k) and dc_k (sum over q);
// with rel_norm, des and deq then go back through the standardization.
template <class T, class Rel>
double relation_loss_backward(const FewShotSpec& fs, Rel& rel, const int32_t* ys, int64_t ns, const int32_t* yq,
                              int64_t nq, int64_t N, FewShotWork<T>& w, T* dpsi) {
  const int64_t D = fs.dim(), M = nq * N;
  const T scale = T(2) / T(static_cast<double>(M));
  double loss = 0.0;
  for (int64_t q = 0; q < nq; ++q)
    for (int64_t k = 0; k < N; ++k) {
      const T r = w.logits[q * N + k];
      const T e = r - (yq[q] == k ? T(1) : T(0));
      loss += static_cast<double>(e) * static_cast<double>(e);
      w.dout[q * N + k] = scale * e * r * (T(1) - r);
    }
  if (!dpsi) return loss / static_cast<double>(M);
  rel.backward(w.pairs.data(), M, w.dout.data(), dpsi, w.dpairs.data());
  T* dc = w.dcent.data();
  for (int64_t i = 0; i < N * D; ++i) dc[i] = 0;
  for (int64_t q = 0; q < nq; ++q) {
    T* dq = w.deq.data() + q * D;
    for (int64_t d = 0; d < D; ++d) dq[d] = 0;
    for (int64_t k = 0; k < N; ++k) {
      const T* row = w.dpairs.data() + (q * N + k) * 2 * D;
      for (int64_t d = 0; d < D; ++d) {
        dq[d] += row[d];
        dc[k * D + d] += row[D + d];
      }
    }
  }
  centres_backward(ys, ns, D, fs.rel_sum, w.cnt.data(), dc, w.des.data());
  if (fs.rel_norm)
    episode_norm_backward(w.norm_s.data(), ns, w.norm_q.data(), nq, D, w.ninv.data(), w.des.data(), w.deq.data(),
                          w.nsum_g.data(), w.nsum_gx.data());
  return loss / static_cast<double>(M);
}

// ---- one task ----------------------------------------------------------------------------

template <class T>
void reserve_work(const FewShotSpec& fs, int64_t ns, int64_t nq, int64_t N, FewShotWork<T>& w) {
  const int64_t D = fs.dim();
  fit(w.logits, checked_mul(nq, N, "logits"));
  fit(w.dlogits, nq * N);
  fit(w.cent, checked_mul(N, D, "class centres"));
  fit(w.dcent, N * D);
  fit(w.cnt, N);
  fit(w.des, checked_mul(ns, D, "support embeddings"));
  fit(w.deq, checked_mul(nq, D, "query embeddings"));
  if (fs.algo == FewShotAlgo::Matching) {
    fit(w.cos, checked_mul(nq, ns, "cosines"));
    fit(w.lse, nq);
    fit(w.nrm_s, ns);
    fit(w.nrm_q, nq);
  }
  if (fs.relation()) {
    const int64_t rows = checked_mul(nq, N, "relation pairs");
    fit(w.pairs, checked_mul(rows, 2 * D, "relation pairs"));
    fit(w.dpairs, rows * 2 * D);
    fit(w.dout, rows);
    if (fs.rel_norm) {
      fit(w.norm_s, ns * D);
      fit(w.norm_q, nq * D);
      fit(w.nmean, D);
      fit(w.ninv, D);
      fit(w.nsum_g, D);
      fit(w.nsum_gx, D);
    }
  }
}

// The head's logits [nq, N] into w.logits, from support embeddings es [ns, D] and query
// embeddings eq [nq, D] (rel: the relation module; unused by the other heads).
template <class T, class Rel>
void head_forward(const FewShotSpec& fs, Rel& rel, const T* es, const int32_t* ys, int64_t ns, const T* eq,
                  int64_t nq, int64_t N, FewShotWork<T>& w) {
  reserve_work(fs, ns, nq, N, w);
  const int64_t D = fs.dim();
  switch (fs.algo) {
    case FewShotAlgo::ProtoNet: proto_forward(es, ys, ns, eq, nq, N, D, w); break;
    case FewShotAlgo::Matching: matching_forward(es, ys, ns, eq, nq, N, D, w); break;
    case FewShotAlgo::Relation: relation_forward(fs, rel, es, ys, ns, eq, nq, N, w); break;
  }
}

// Fraction of query rows whose largest logit (first one on ties) is the label.
template <class T>
double accuracy_of(const T* logits, const int32_t* yq, int64_t nq, int64_t N) {
  int64_t right = 0;
  for (int64_t q = 0; q < nq; ++q) {
    int64_t best = 0;
    for (int64_t k = 1; k < N; ++k)
      if (logits[q * N + k] > logits[q * N + best]) best = k;
    right += best == yq[q];
  }
  return static_cast<double>(right) / static_cast<double>(nq);
}

}  // namespace maml
