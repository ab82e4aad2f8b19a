// cuda_host.cc: the CUDA task kernel (native/cuda/task_kernel.hpp) compiled for the host with
// a block of host threads, exposed for tests: metaGradientCudaHost and adaptBatchCudaHost take
// the same options as metaGradient and adaptBatch (float32 or float64 by the type of params)
// and run the GPU's per-task code path and its task-ordered reduction on the CPU. This is how
// a machine without a GPU checks the kernels' logic (test/cuda-host.test.ts).
//
// Option tiled (default false): the wide layers' forward-type products go through the tiles of
// the global-memory kernel (forward_layer_tiled), as on the GPU for wide networks.
// Option blockThreads (default 1): 1 runs each task on a SerialBlock; n > 1 runs it on n
// std::threads that meet at a barrier in every sync(), the GPU block's decomposition of the
// work, so that a missing sync() or two threads writing one element shows up as a wrong or
// irreproducible result. Option tiled: the global-memory kernel's tile scratch; option
// kernelVariant (metaGradientCudaHost): 3 runs the experimental variant of the meta-step; option
// cluster c (metaGradientCudaHost, 1 to 8): the cluster kernel (native/cuda/task_cluster.hpp) on
// an emulated cluster of c blocks of blockThreads threads, every block's memory filled with NaN.
#include "cuda_host.hpp"

#include <algorithm>
#include <limits>
#include <vector>

#include "args.hpp"
#include "host_block.hpp"
#include "cuda/plan.hpp"
#include "cuda/task_cluster.hpp"

namespace maml::binding {
namespace {

template <class T>
cuda::KArgs<T> kargs_of(const BatchArgs<T>& b, const T* theta, const T* rates, const std::vector<T>& weights) {
  cuda::KArgs<T> a;
  a.theta = theta;
  a.rates = rates;
  a.weights = weights.data();
  a.s_off = b.s_off.data();
  a.q_off = b.q_off.data();
  a.xs = b.data.xs;
  a.ys = b.data.ys.y;
  a.ys_lab = b.data.ys.labels;
  a.xq = b.data.xq;
  a.yq = b.data.yq.y;
  a.yq_lab = b.data.yq.labels;
  return a;
}

// Everything one host run of the task kernel needs, read from o: the call's arguments, the
// kernel's model and config, the block size (o.blockThreads), the global-memory tiles
// (o.tiled), the working-memory layout and buffer. Pointers refer to the JavaScript arrays.
template <class T>
struct HostRun {
  MetaCallArgs<T> call;
  cuda::KModel m;
  cuda::KConfig c;
  int64_t B = 0;
  int threads = 1;
  std::vector<T> tile, weights, work;
  cuda::Layout lay;
  cuda::KArgs<T> a;

  HostRun(const Napi::Object& o, const ModelSpec& s, bool need_query) {
    meta_call_arg<T>(o, s, need_query, call);
    const BatchArgs<T>& b = call.batch;
    m = cuda::make_kmodel(s);
    c = cuda::make_kconfig(call.cfg, call.rates);
    B = b.data.tasks;
    threads = static_cast<int>(has(o, "blockThreads") ? integer(o, "blockThreads", 1, 256) : 1);
    // the global-memory kernel's tiles (variant 3 has more)
    tile.resize(boolean(o, "tiled", false) ? std::max(cuda::kTileFloats, cuda::kTileFloatsV3) : 0);
    const int n_max = cuda::max_rows(m, b.s_off.data(), b.q_off.data(), B);
    // a meta-gradient's layout, or an adaptation's (no query set: the adaptation entry)
    lay = need_query ? cuda::plan_layout(m, c, n_max, threads) : cuda::plan_adapt_layout(m, n_max, threads);
    weights.assign(call.cfg.weights.begin(), call.cfg.weights.end());
    a = kargs_of(b, call.theta, call.rates.data, weights);
    work.resize(static_cast<size_t>(lay.total));
  }
  T* tiles() { return tile.empty() ? nullptr : tile.data(); }
  // Runs fn(block, task) for every task, one block of `threads` host threads at a time.
  template <class Fn>
  void each_task(const Fn& fn) {
    for (int64_t t = 0; t < B; ++t) run_block(threads, [&](const auto& blk) { fn(blk, static_cast<int>(t)); });
  }
};

template <class T>
Napi::Value meta_gradient_host_t(const Napi::Env& env, const Napi::Object& o, const ModelSpec& s) {
  HostRun<T> h(o, s, true);
  const int64_t B = h.B, P = h.m.P, slot = P + h.c.R;
  std::vector<T> slots(static_cast<size_t>(checked_mul(B, slot, "slots"))), losses(static_cast<size_t>(B));
  // kernelVariant 3: the experimental kernel variant (task_kernel.hpp); cluster c: the cluster
  // kernel (task_cluster.hpp, variant 4) on c emulated blocks of blockThreads threads
  const bool v3 = has(o, "kernelVariant") && integer(o, "kernelVariant", 1, 3) == 3;
  const int cluster = has(o, "cluster") ? static_cast<int>(integer(o, "cluster", 1, cuda::kMaxCluster)) : 0;
  int64_t cluster_floats = 0;  // shared memory per block of the cluster kernel (floats)
  if (cluster > 0) {
    const cuda::KCluster kc = cuda::plan_cluster(h.m, h.c, h.lay.n_max, h.threads, cluster);
    cluster_floats = kc.total;
    std::vector<std::vector<T>> mem(static_cast<size_t>(cluster));
    std::vector<T> gw(static_cast<size_t>(kc.g_total));
    for (int64_t t = 0; t < B; ++t) {
      // fresh garbage in the working memory of every task: nothing may depend on what an earlier task left
      for (std::vector<T>& b : mem) b.assign(static_cast<size_t>(kc.total), std::numeric_limits<T>::quiet_NaN());
      std::fill(gw.begin(), gw.end(), std::numeric_limits<T>::quiet_NaN());
      run_cluster<T>(cluster, h.threads, mem, [&](const auto& blk, const auto& cl) {
        cuda::task_meta_step_cluster(blk, cl, h.m, h.c, kc, h.a, static_cast<int>(t), mem[static_cast<size_t>(cl.rank())].data(),
                                     gw.data(), slots.data() + t * slot, losses.data() + t);
      });
    }
  } else {
    h.each_task([&](const auto& blk, int t) {
      T* out = slots.data() + t * slot;
      T* loss = losses.data() + t;
      if (v3) cuda::task_meta_step<3>(blk, h.m, h.c, h.a, t, h.work.data(), h.lay, out, loss, h.tiles());
      else cuda::task_meta_step(blk, h.m, h.c, h.a, t, h.work.data(), h.lay, out, loss, h.tiles());
    });
  }
  auto grad = Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(P));
  auto rate_grad = Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(h.c.R));
  for (int64_t i = 0; i < slot; ++i) {
    const T mean = cuda::mean_over_tasks(slots.data(), slot, B, i);
    if (i < P) grad[static_cast<size_t>(i)] = mean;
    else rate_grad[static_cast<size_t>(i - P)] = mean;
  }
  double loss = 0;
  for (int64_t t = 0; t < B; ++t) loss += static_cast<double>(losses[static_cast<size_t>(t)]);
  Napi::Object r = Napi::Object::New(env);
  r.Set("loss", Napi::Number::New(env, loss / static_cast<double>(B)));
  r.Set("grad", grad);
  if (h.c.want_rate_grad) r.Set("rateGrad", rate_grad);
  // the cluster kernel's shared memory per block as the GPU's float32 kernel would need it
  if (cluster > 0) r.Set("clusterSharedBytes", Napi::Number::New(env, static_cast<double>(cluster_floats * 4)));
  return r;
}

template <class T>
Napi::Value adapt_host_t(const Napi::Env& env, const Napi::Object& o, const ModelSpec& s) {
  HostRun<T> h(o, s, false);
  const int64_t P = h.m.P;
  auto out = Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(checked_mul(h.B, P, "adapted parameters")));
  T* adapted = out.Data();
  h.each_task([&](const auto& blk, int t) {
    cuda::task_adapt(blk, h.m, h.c, h.a, t, h.work.data(), h.lay, adapted + t * P, h.tiles());
  });
  return out;
}

}  // namespace

Napi::Value MetaGradientCudaHost(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const Napi::Object o = object_arg(info, 0);
    const ModelSpec s = spec_arg(o);
    return is_float64(o, "params") ? meta_gradient_host_t<double>(info.Env(), o, s)
                                   : meta_gradient_host_t<float>(info.Env(), o, s);
  });
}

Napi::Value AdaptBatchCudaHost(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const Napi::Object o = object_arg(info, 0);
    const ModelSpec s = spec_arg(o);
    return is_float64(o, "params") ? adapt_host_t<double>(info.Env(), o, s) : adapt_host_t<float>(info.Env(), o, s);
  });
}

}  // namespace maml::binding
