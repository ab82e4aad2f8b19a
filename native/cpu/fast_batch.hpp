// fast_batch.hpp: the fast path's meta-batch driver: tasks over the thread pool, their
// gradients summed by a pairwise tree that the workers compute as they finish.
//
// Same contract as core/batch.hpp's meta_gradient_batch_with (which the reference keeps):
// task_fn(task, grad [P], OVERWRITTEN; rate_grad [R], ACCUMULATED) -> loss; the driver
// OVERWRITES grad [P] and rate_grad [R] with the MEAN over tasks and returns the mean loss.
//
// Why a tree: with one slot per task, summing B slots in order on the calling thread after
// the parallel part was serial work (B·P additions, half of them on slots the other core had
// just written) that took a tenth of a small meta-step. Here leaf g is task group g (G tasks
// summed in order, G from core's group_size: 1 unless memory is short); at level k the node
// with left leaf i (a multiple of 2^(k+1)) is sum[i] += sum[i + 2^k] when that leaf exists.
// Whichever job completes a node's second child adds it, so the additions are spread over the
// threads and mostly read a slot still in the adding core's cache; but every node adds the
// same two operands in the same order, so the result depends on B and P only, never on the
// number of threads or on which thread finished first.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/batch.hpp"

namespace maml::cpu {

// The tree of one call: arrival counters of its nodes [levels, leaves], and which buffer holds
// each subtree's sum. Buffers come from a stack of free ones and go back to it as soon as
// they are added into their sibling's, so a call touches about log2(B) buffers per thread,
// the most recently freed first, instead of one per task: with B = 25 one buffer per task
// was 240 KB of fresh cache lines per call (a fifth of the time of Reptile's per-task work
// went to the first writes of its gradient into them). Which buffer holds a sum never
// changes the sum.
class ReductionTree {
 public:
  void reset(int64_t leaves) {
    levels_ = 0;
    while ((INT64_C(1) << levels_) < leaves) ++levels_;
    const int64_t n = levels_ * leaves;
    if (n > cap_) {
      arrived_.reset(new std::atomic<uint8_t>[static_cast<size_t>(n)]);
      cap_ = n;
    }
    for (int64_t i = 0; i < n; ++i) arrived_[i].store(0, std::memory_order_relaxed);
    leaves_ = leaves;
    holder_.assign(static_cast<size_t>(leaves), -1);
    free_.clear();
    for (int64_t i = leaves - 1; i >= 0; --i) free_.push_back(i);
  }

  // A free buffer for a leaf.
  int64_t take() {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t b = free_.back();
    free_.pop_back();
    return b;
  }

  // Called by the job that has just written leaf `leaf` into buffer `buf`: adds every node
  // whose other child is already complete, going up, and stops at the first node whose other
  // child is not (that child's finisher continues from there). add(dst, src) must do
  // buffer[dst] += buffer[src] (left child += right child: fixed operands, fixed order).
  template <class Add>
  void finish(int64_t leaf, int64_t buf, const Add& add) {
    holder_[static_cast<size_t>(leaf)] = buf;
    int64_t i = leaf;
    for (int k = 0; k < levels_; ++k) {
      const int64_t span = INT64_C(1) << k;
      const int64_t left = i & ~(2 * span - 1), right = left + span;
      if (right < leaves_) {
        // acq_rel: the first arrival publishes its subtree's buffer, the second one reads it
        if (arrived_[k * leaves_ + left].fetch_add(1, std::memory_order_acq_rel) == 0) return;
        const int64_t src = holder_[static_cast<size_t>(right)];
        add(holder_[static_cast<size_t>(left)], src);
        std::lock_guard<std::mutex> lock(mutex_);
        free_.push_back(src);
      }
      i = left;
    }
  }

  // The buffer holding the whole sum, once every leaf is finished.
  int64_t root() const { return holder_[0]; }

 private:
  std::unique_ptr<std::atomic<uint8_t>[]> arrived_;
  int64_t cap_ = 0, leaves_ = 0;
  int levels_ = 0;
  std::vector<int64_t> holder_;  // [leaves]: the buffer of the subtree whose leftmost leaf is i
  std::vector<int64_t> free_;
  std::mutex mutex_;
};

// dst[i] += src[i], i < n: the caller passes a version compiled for its instruction set.
using AddFn = void (*)(float* dst, const float* src, int64_t n);
// dst[i] = src[i] / b, i < n (the mean, divided as in core: x / B, not x * (1 / B)); likewise.
using DivFn = void (*)(float* dst, const float* src, float b, int64_t n);

// A leaf of the reduction tree: tasks [begin, begin + count), summed by one job, either one
// task after the other (lanes = false) or all at once in the lanes of a vector (lanes.hpp).
struct Leaf {
  int64_t begin = 0, count = 0;
  bool lanes = false;
};

// leaf_fn(leaf, grad [P], OVERWRITTEN with the sum of the leaf's task gradients; rate_grad [R],
// ACCUMULATED) -> the sum of their losses. The leaves must cover the batch's tasks in order.
template <class LeafFn>
double fast_batch_leaves(const ModelSpec& s, const MetaConfig& cfg, const Rates<float>& rates, int64_t B,
                         const std::vector<Leaf>& leaves, float* grad, float* rate_grad, AddFn add_into,
                         DivFn divide, const LeafFn& leaf_fn) {
  const int64_t P = s.n_params;
  const int64_t R = cfg.want_rate_grad ? rates.length : 0;
  const int64_t slot = P + R;
  MAML_CHECK(B >= 1, InvalidArgument, "a meta-batch needs at least one task");
  const int64_t groups = static_cast<int64_t>(leaves.size());
  // Small buffers (up to 16 MB) are kept per calling thread across calls; larger ones are freed.
  const size_t n_sums = static_cast<size_t>(checked_mul(groups, slot, "meta-gradient slots"));
  static thread_local std::vector<float> kept;
  static thread_local ReductionTree tree_kept;
  ReductionTree& tree = tree_kept;  // (inside the lambda, the thread_local's name would mean the worker's own)
  std::vector<float> once;
  std::vector<float>& sums = n_sums * sizeof(float) <= (size_t(16) << 20) ? kept : once;
  sums.resize(n_sums);
  static thread_local std::vector<double> losses_kept;
  std::vector<double>& losses = losses_kept;  // (likewise)
  losses.resize(static_cast<size_t>(groups));
  tree.reset(groups);

  parallel_for(groups, [&](int64_t g, int) {
    const int64_t buf = tree.take();
    float* out = sums.data() + buf * slot;
    for (int64_t i = P; i < slot; ++i) out[i] = 0;  // rate gradients accumulate
    losses[static_cast<size_t>(g)] = leaf_fn(leaves[static_cast<size_t>(g)], out, out + P);
    tree.finish(g, buf, [&](int64_t dst, int64_t src) { add_into(sums.data() + dst * slot, sums.data() + src * slot, slot); });
  });

  const float* sum = sums.data() + tree.root() * slot;  // the tree's root
  const float b = static_cast<float>(static_cast<double>(B));
  divide(grad, sum, b, P);
  divide(rate_grad, sum + P, b, R);
  double loss = 0.0;
  for (int64_t g = 0; g < groups; ++g) loss += losses[static_cast<size_t>(g)];
  return loss / static_cast<double>(B);
}

// The leaves of G tasks each (core's group_size: 1 unless memory is short), run one by one.
inline std::vector<Leaf> task_leaves(int64_t B, int64_t slot) {
  const int64_t G = group_size(B, slot);
  std::vector<Leaf> leaves;
  for (int64_t t = 0; t < B; t += G) leaves.push_back({t, std::min(G, B - t), false});
  return leaves;
}

// The sum of a leaf's tasks one after the other: the first task writes out, the others are added.
template <class TaskFn>
double sum_tasks(const ModelSpec& s, const BatchData<float>& batch, const Leaf& leaf, float* out, float* rate_out,
                 AddFn add_into, const TaskFn& task_fn) {
  double loss = task_fn(batch.task(s, leaf.begin), out, rate_out);
  if (leaf.count > 1) {
    static thread_local std::vector<float> tg;
    tg.resize(static_cast<size_t>(s.n_params));
    for (int64_t t = leaf.begin + 1; t < leaf.begin + leaf.count; ++t) {
      loss += task_fn(batch.task(s, t), tg.data(), rate_out);
      add_into(out, tg.data(), s.n_params);
    }
  }
  return loss;
}

template <class TaskFn>
double fast_batch_with(const ModelSpec& s, const MetaConfig& cfg, const Rates<float>& rates,
                       const BatchData<float>& batch, float* grad, float* rate_grad, AddFn add_into,
                       DivFn divide, const TaskFn& task_fn) {
  MAML_CHECK(batch.tasks >= 1, InvalidArgument, "a meta-batch needs at least one task");
  const int64_t slot = s.n_params + (cfg.want_rate_grad ? rates.length : 0);
  return fast_batch_leaves(s, cfg, rates, batch.tasks, task_leaves(batch.tasks, slot), grad, rate_grad, add_into, divide,
                           [&](const Leaf& leaf, float* out, float* rate_out) {
                             return sum_tasks(s, batch, leaf, out, rate_out, add_into, task_fn);
                           });
}

}  // namespace maml::cpu
