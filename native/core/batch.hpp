// batch.hpp: a whole meta-batch in one call, tasks spread over the thread pool.
//
// Tasks are stored task-major with CSR offsets: task t's support rows are
// [s_off[t], s_off[t+1]) of xs [rows, d0] and ys ([rows, dL] values or [rows] labels); the
// same for the query set. Uniform batches have s_off[t] = t * support.
//
// Determinism: tasks are cut into fixed groups of G consecutive tasks (G depends only on the
// batch size and the parameter count, never on the thread count); a group's tasks are summed
// in order into the group's slot, and the slots are summed in order at the end. So the result
// is bit-identical whatever the number of threads.
//
// Accumulation rule: meta_gradient_batch OVERWRITES grad [P] and rate_grad [rates.length]
// with the MEAN over tasks, and returns the mean outer loss.
#pragma once
#include <cstdint>
#include <vector>

#include "../cpu/thread_pool.hpp"
#include "meta.hpp"

namespace maml {

template <class T>
struct BatchData {
  int64_t tasks = 0;
  const int64_t* s_off = nullptr;  // [tasks + 1]
  const int64_t* q_off = nullptr;  // [tasks + 1]
  const T* xs = nullptr;
  Targets<T> ys;
  const T* xq = nullptr;
  Targets<T> yq;

  TaskData<T> task(const ModelSpec& s, int64_t t) const {
    TaskData<T> d;
    const int64_t d0 = s.in_dim(), dL = s.out_dim();
    d.ns = s_off[t + 1] - s_off[t];
    d.xs = xs + s_off[t] * d0;
    d.ys = offset_targets(ys, s_off[t], dL);
    d.nq = q_off[t + 1] - q_off[t];
    d.xq = xq + q_off[t] * d0;
    d.yq = offset_targets(yq, q_off[t], dL);
    return d;
  }
};

// Tasks per reduction group: 1 unless B * P slots would take more than ~32M values.
inline int64_t group_size(int64_t tasks, int64_t slot) {
  const int64_t budget = INT64_C(32) << 20;
  int64_t g = 1;
  while (g < tasks && (tasks + g - 1) / g * slot > budget) g *= 2;
  return g;
}

// The driver, for any per-task function:
//   task_fn(const TaskData<T>& task, T* grad /*[P], overwritten*/, T* rate_grad /*accumulated*/) -> loss
// task_fn runs on pool threads; it keeps its scratch memory in thread_local storage.
template <class T, class TaskFn>
double meta_gradient_batch_with(const ModelSpec& s, const MetaConfig& cfg, const Rates<T>& rates,
                                const BatchData<T>& batch, T* grad, T* rate_grad, const TaskFn& task_fn) {
  const int64_t P = s.n_params;
  const int64_t R = cfg.want_rate_grad ? rates.length : 0;
  const int64_t slot = P + R;
  const int64_t B = batch.tasks;
  MAML_CHECK(B >= 1, InvalidArgument, "a meta-batch needs at least one task");
  const int64_t G = group_size(B, slot);
  const int64_t groups = (B + G - 1) / G;
  // Every slot is overwritten by its group, so the buffer is never cleared; small ones (up to
  // 16 MB) are kept per thread across calls, larger ones are freed after the call.
  const size_t n_sums = static_cast<size_t>(checked_mul(groups, slot, "meta-gradient slots"));
  static thread_local std::vector<T> kept;
  std::vector<T> once;
  std::vector<T>& sums = n_sums * sizeof(T) <= (size_t(16) << 20) ? kept : once;
  sums.resize(n_sums);
  std::vector<double> losses(static_cast<size_t>(groups));

  parallel_for(groups, [&](int64_t g, int) {
    static thread_local std::vector<T> tg;
    tg.resize(static_cast<size_t>(P));
    T* out = sums.data() + g * slot;
    for (int64_t i = 0; i < slot; ++i) out[i] = 0;
    double loss = 0.0;
    for (int64_t t = g * G; t < B && t < (g + 1) * G; ++t) {
      loss += task_fn(batch.task(s, t), tg.data(), out + P);
      for (int64_t i = 0; i < P; ++i) out[i] += tg[i];
    }
    losses[static_cast<size_t>(g)] = loss;
  });

  // groups summed in order (for each element: group 0, then 1, ...), then divided by B
  const T* first = sums.data();
  for (int64_t i = 0; i < slot; ++i) (i < P ? grad[i] : rate_grad[i - P]) = first[i];
  for (int64_t g = 1; g < groups; ++g) {
    const T* part = sums.data() + g * slot;
    for (int64_t i = 0; i < P; ++i) grad[i] += part[i];
    for (int64_t i = P; i < slot; ++i) rate_grad[i - P] += part[i];
  }
  for (int64_t i = 0; i < P; ++i) grad[i] /= T(static_cast<double>(B));
  for (int64_t i = P; i < slot; ++i) rate_grad[i - P] /= T(static_cast<double>(B));
  double loss = 0.0;
  for (int64_t g = 0; g < groups; ++g) loss += losses[static_cast<size_t>(g)];
  return loss / static_cast<double>(B);
}

// The plain-loop reference driver.
template <class T>
double meta_gradient_batch(const ModelSpec& s, const MetaConfig& cfg, const T* theta, const Rates<T>& rates,
                           const BatchData<T>& batch, T* grad, T* rate_grad) {
  return meta_gradient_batch_with(s, cfg, rates, batch, grad, rate_grad,
                                  [&](const TaskData<T>& d, T* g, T* rg) {
                                    static thread_local TaskWork<T> w;
                                    return task_meta_gradient(s, cfg, theta, rates, d, w, g, rg);
                                  });
}

// Adapts every task of a batch from theta on its support set: adapted [B, P] (OVERWRITTEN).
// Only the support part of `batch` is read. inner_fn(const TaskData<T>&, T* out [P]).
template <class T, class InnerFn>
void adapt_batch_with(const BatchData<T>& batch, const ModelSpec& s, const InnerFn& inner_fn, T* adapted) {
  parallel_for(batch.tasks, [&](int64_t t, int) { inner_fn(batch.task(s, t), adapted + t * s.n_params); });
}

template <class T>
void adapt_batch(const ModelSpec& s, const MetaConfig& cfg, const T* theta, const Rates<T>& rates,
                 const BatchData<T>& batch, T* adapted) {
  const int64_t P = s.n_params;
  adapt_batch_with(batch, s, [&](const TaskData<T>& d, T* out) {
    static thread_local TaskWork<T> w;
    w.reserve(P, cfg.steps);
    inner_loop(s, cfg, theta, rates, d.xs, d.ys, d.ns, w);
    const T* thS = w.thetas.data() + static_cast<int64_t>(cfg.steps) * P;
    for (int64_t i = 0; i < P; ++i) out[i] = thS[i];
  }, adapted);
}

}  // namespace maml
