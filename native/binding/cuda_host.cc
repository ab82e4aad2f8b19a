// cuda_host.cc: the CUDA task kernel (native/cuda/task_kernel.hpp) compiled for the host with
// a one-thread block, exposed for tests: metaGradientCudaHost and adaptBatchCudaHost take the
// same options as metaGradient and adaptBatch (float32 or float64 by the type of params) and
// run the GPU's per-task code path and its task-ordered reduction on the CPU. This is how a
// machine without a GPU checks the kernels' logic (test/cuda-host.test.ts).
#include "cuda_host.hpp"

#include <vector>

#include "args.hpp"
#include "cuda/plan.hpp"

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

template <class T>
Napi::Value meta_gradient_host_t(const Napi::Env& env, const Napi::Object& o, const ModelSpec& s) {
  const MetaConfig cfg = meta_config_arg(o);
  const T* theta = view<T>(o, "params", s.n_params).data;
  const View<T> rv = view<T>(o, "rates");
  const Rates<T> rates = rates_arg<T>(o, rv.data, rv.length, cfg.steps, s.n_params);
  BatchArgs<T> b;
  batch_arg<T>(o, s, true, b);
  const cuda::KModel m = cuda::make_kmodel(s);
  const cuda::KConfig c = cuda::make_kconfig(cfg, rates);
  const int64_t B = b.data.tasks, slot = static_cast<int64_t>(m.P) + c.R;
  const cuda::Layout lay = cuda::plan_layout(m, c.steps, cuda::max_rows(m, b.s_off.data(), b.q_off.data(), B), 1);
  const std::vector<T> weights(cfg.weights.begin(), cfg.weights.end());
  cuda::KArgs<T> a = kargs_of(b, theta, rates.data, weights);
  std::vector<T> work(static_cast<size_t>(lay.total)), slots(static_cast<size_t>(checked_mul(B, slot, "slots"))),
      losses(static_cast<size_t>(B));
  for (int64_t t = 0; t < B; ++t)
    cuda::task_meta_step(cuda::SerialBlock{}, m, c, a, static_cast<int>(t), work.data(), lay, slots.data() + t * slot,
                         losses.data() + t);
  auto grad = Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(m.P));
  auto rate_grad = Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(c.R));
  for (int64_t i = 0; i < slot; ++i) {
    const T mean = cuda::mean_over_tasks(slots.data(), slot, B, i);
    if (i < m.P) grad[static_cast<size_t>(i)] = mean;
    else rate_grad[static_cast<size_t>(i - m.P)] = mean;
  }
  double loss = 0;
  for (int64_t t = 0; t < B; ++t) loss += static_cast<double>(losses[static_cast<size_t>(t)]);
  Napi::Object r = Napi::Object::New(env);
  r.Set("loss", Napi::Number::New(env, loss / static_cast<double>(B)));
  r.Set("grad", grad);
  if (c.want_rate_grad) r.Set("rateGrad", rate_grad);
  return r;
}

template <class T>
Napi::Value adapt_host_t(const Napi::Env& env, const Napi::Object& o, const ModelSpec& s) {
  const MetaConfig cfg = meta_config_arg(o);
  const T* theta = view<T>(o, "params", s.n_params).data;
  const View<T> rv = view<T>(o, "rates");
  const Rates<T> rates = rates_arg<T>(o, rv.data, rv.length, cfg.steps, s.n_params);
  BatchArgs<T> b;
  batch_arg<T>(o, s, false, b);
  const cuda::KModel m = cuda::make_kmodel(s);
  const cuda::KConfig c = cuda::make_kconfig(cfg, rates);
  const int64_t B = b.data.tasks;
  const cuda::Layout lay = cuda::plan_layout(m, c.steps, cuda::max_rows(m, b.s_off.data(), b.q_off.data(), B), 1);
  const std::vector<T> weights(cfg.weights.begin(), cfg.weights.end());
  const cuda::KArgs<T> a = kargs_of(b, theta, rates.data, weights);
  std::vector<T> work(static_cast<size_t>(lay.total));
  auto out = Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(checked_mul(B, m.P, "adapted parameters")));
  for (int64_t t = 0; t < B; ++t)
    cuda::task_adapt(cuda::SerialBlock{}, m, c, a, static_cast<int>(t), work.data(), lay, out.Data() + t * m.P);
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
