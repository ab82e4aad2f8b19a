// fewshot_batch.hpp: one few-shot task's episode loss and exact gradient, and a meta-batch of
// tasks over the thread pool (the heads are in fewshot.hpp).
//
// The embedding network is a policy (Emb), so that the fast float32 path (native/cpu/
// fast_fewshot.cc) runs the same task code with its own MLP kernels:
//   int64_t n_params()                                         its parameter count (its layout)
//   const T* forward(int which, const T* x, int64_t n)         f(x) [n, D]; which = 0 support,
//                                                              1 query (kept apart for backward)
//   void backward(int which, const T* x, int64_t n, const T* de, T* grad)
//                                                              grad (OVERWRITTEN) = d<de, f(x)>/dphi
// PlainEmbedding is the plain-loop reference (core/mlp.hpp). The relation module is a policy
// too (Rel, see fewshot.hpp: PlainRelation).
//
// Accumulation rule: fewshot_task OVERWRITES grad_emb and grad_rel; fewshot_batch_with
// OVERWRITES grad [slot] with the MEAN over tasks and writes one loss and one accuracy per task.
//
// Determinism: as batch.hpp, tasks are cut into groups whose size depends only on B and the
// slot size; a group sums its tasks in order and the groups are summed in order, so results do
// not depend on the number of threads.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "../cpu/thread_pool.hpp"
#include "batch.hpp"
#include "fewshot.hpp"

namespace maml {

template <class T>
struct PlainEmbedding {
  const ModelSpec* spec = nullptr;
  const T* phi = nullptr;
  MlpWork<T> work[2];

  void bind(const ModelSpec& s, const T* p) {
    spec = &s;
    phi = p;
  }
  int64_t n_params() const { return spec->n_params; }
  const T* forward(int which, const T* x, int64_t n) { return mlp_forward(*spec, phi, x, n, work[which]); }
  void backward(int which, const T* x, int64_t n, const T* de, T* grad) {
    MlpWork<T>& w = work[which];
    std::memcpy(w.dz.data(), de, sizeof(T) * static_cast<size_t>(n * spec->out_dim()));
    mlp_backward<T>(*spec, phi, x, n, w, grad, nullptr, nullptr);
  }
};

// One task's query loss and accuracy. When grad_emb != nullptr: the embedding's gradient
// (Emb's layout) into grad_emb and, for relation, the relation module's (Rel's layout) into
// grad_rel.
template <class T, class Emb, class Rel>
double fewshot_task(const FewShotSpec& fs, const FewShotTask<T>& t, Emb& emb, Rel& rel, FewShotWork<T>& w,
                    T* grad_emb, T* grad_rel, double* accuracy) {
  const int64_t N = t.ways, D = fs.dim();
  const T* es = emb.forward(0, t.xs, t.ns);  // [ns, D]
  const T* eq = emb.forward(1, t.xq, t.nq);  // [nq, D]
  head_forward(fs, rel, es, t.ys, t.ns, eq, t.nq, N, w);
  *accuracy = accuracy_of(w.logits.data(), t.yq, t.nq, N);
  const bool want = grad_emb != nullptr;
  double loss = 0.0;
  switch (fs.algo) {
    case FewShotAlgo::ProtoNet: {
      Targets<T> tg;
      tg.labels = t.yq;
      loss = loss_grad(Loss::CrossEntropy, w.logits.data(), tg, t.nq, N, want ? w.dlogits.data() : nullptr);
      if (want) proto_backward(t.ys, t.ns, eq, t.nq, N, D, w);
      break;
    }
    case FewShotAlgo::Matching: loss = matching_loss_backward(es, t.ys, t.ns, eq, t.yq, t.nq, N, D, w, want); break;
    case FewShotAlgo::Relation:
      loss = relation_loss_backward(fs, rel, t.ys, t.ns, t.yq, t.nq, N, w, want ? grad_rel : nullptr);
      break;
  }
  if (!want) return loss;
  // the embedding's gradient: support rows into grad_emb, query rows into gq, summed
  const int64_t Pe = emb.n_params();
  fit(w.gq, Pe);
  emb.backward(0, t.xs, t.ns, w.des.data(), grad_emb);
  emb.backward(1, t.xq, t.nq, w.deq.data(), w.gq.data());
  for (int64_t i = 0; i < Pe; ++i) grad_emb[i] += w.gq[i];
  return loss;
}

template <class T>
struct FewShotBatch {
  int64_t tasks = 0, ways = 0;
  const int64_t* s_off = nullptr;  // [tasks + 1]
  const int64_t* q_off = nullptr;  // [tasks + 1]
  const T* xs = nullptr;           // [s_off[tasks], d0]
  const int32_t* ys = nullptr;     // [s_off[tasks]]
  const T* xq = nullptr;
  const int32_t* yq = nullptr;

  FewShotTask<T> task(const FewShotSpec& fs, int64_t t) const {
    FewShotTask<T> d;
    const int64_t d0 = fs.emb.in_dim();
    d.ways = ways;
    d.ns = s_off[t + 1] - s_off[t];
    d.nq = q_off[t + 1] - q_off[t];
    d.xs = xs + s_off[t] * d0;
    d.ys = ys + s_off[t];
    d.xq = xq + q_off[t] * d0;
    d.yq = yq + q_off[t];
    return d;
  }
};

// The driver, for any per-task function (run on pool threads, scratch in thread_local):
//   task_fn(const FewShotTask<T>&, T* grad /*[slot], OVERWRITTEN; nullptr: no gradient*/, double* acc) -> loss
// grad [slot] (may be nullptr) = the mean over tasks; task_loss, task_acc [B] (may be nullptr).
template <class T, class TaskFn>
double fewshot_batch_with(const FewShotSpec& fs, const FewShotBatch<T>& b, int64_t slot, T* grad, double* task_loss,
                          double* task_acc, const TaskFn& task_fn) {
  const int64_t B = b.tasks;
  MAML_CHECK(B >= 1, InvalidArgument, "a meta-batch needs at least one task");
  for (int64_t t = 0; t < B; ++t)
    MAML_CHECK(b.q_off[t + 1] > b.q_off[t] && b.s_off[t + 1] > b.s_off[t], ShapeMismatch,
               "every task needs support and query rows");
  const int64_t G = grad ? group_size(B, slot) : 1;
  const int64_t groups = (B + G - 1) / G;
  std::vector<double> losses(static_cast<size_t>(B)), accs(static_cast<size_t>(B));
  // every slot is overwritten by its group; small buffers are kept per calling thread
  static thread_local std::vector<T> kept;
  std::vector<T> once;
  const size_t n_sums = grad ? static_cast<size_t>(checked_mul(groups, slot, "gradient slots")) : 0;
  std::vector<T>& sums = n_sums * sizeof(T) <= (size_t(16) << 20) ? kept : once;
  if (grad) sums.resize(n_sums);

  parallel_for(groups, [&](int64_t g, int) {
    static thread_local std::vector<T> tg;
    T* out = grad ? sums.data() + g * slot : nullptr;
    if (grad) {
      fit(tg, slot);
      for (int64_t i = 0; i < slot; ++i) out[i] = 0;
    }
    for (int64_t t = g * G; t < B && t < (g + 1) * G; ++t) {
      double acc = 0.0;
      losses[static_cast<size_t>(t)] = task_fn(b.task(fs, t), grad ? tg.data() : nullptr, &acc);
      accs[static_cast<size_t>(t)] = acc;
      if (grad)
        for (int64_t i = 0; i < slot; ++i) out[i] += tg[i];
    }
  });

  if (grad) {
    for (int64_t i = 0; i < slot; ++i) grad[i] = sums[static_cast<size_t>(i)];
    for (int64_t g = 1; g < groups; ++g)
      for (int64_t i = 0; i < slot; ++i) grad[i] += sums[static_cast<size_t>(g * slot + i)];
    for (int64_t i = 0; i < slot; ++i) grad[i] /= T(static_cast<double>(B));
  }
  double loss = 0.0;
  for (int64_t t = 0; t < B; ++t) {
    loss += losses[static_cast<size_t>(t)];
    if (task_loss) task_loss[t] = losses[static_cast<size_t>(t)];
    if (task_acc) task_acc[t] = accs[static_cast<size_t>(t)];
  }
  return loss / static_cast<double>(B);
}

// The plain-loop reference: grad [P] in PyTorch's layout.
template <class T>
double fewshot_batch(const FewShotSpec& fs, const T* theta, const FewShotBatch<T>& b, T* grad, double* task_loss,
                     double* task_acc) {
  return fewshot_batch_with(fs, b, fs.n_params, grad, task_loss, task_acc,
                            [&](const FewShotTask<T>& t, T* g, double* acc) {
                              static thread_local FewShotWork<T> w;
                              static thread_local PlainEmbedding<T> e;
                              static thread_local PlainRelation<T> r;
                              e.bind(fs.emb, theta);
                              r.bind(fs.rel, theta + fs.emb.n_params);
                              return fewshot_task(fs, t, e, r, w, g, g ? g + fs.emb.n_params : nullptr, acc);
                            });
}

// Logits [nq, N] (OVERWRITTEN) of query inputs xq [nq, d0] against stored support embeddings
// es [ns, D] with labels ys: the classifier's forward pass.
template <class T>
void fewshot_logits(const FewShotSpec& fs, const T* theta, const T* es, const int32_t* ys, int64_t ns, int64_t N,
                    const T* xq, int64_t nq, T* logits, const T* eq_given = nullptr) {
  static thread_local FewShotWork<T> w;
  static thread_local PlainRelation<T> r;
  if (nq == 0) return;
  // the query embeddings: computed here, or given (eq_given [nq, D], e.g. by the fast kernels)
  const T* eq = eq_given ? eq_given : mlp_forward(fs.emb, theta, xq, nq, w.wq);
  r.bind(fs.rel, theta + fs.emb.n_params);
  head_forward(fs, r, es, ys, ns, eq, nq, N, w);
  std::memcpy(logits, w.logits.data(), sizeof(T) * static_cast<size_t>(nq * N));
}

}  // namespace maml
