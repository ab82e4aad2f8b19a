// ops.cc: the exported numerical operations, each dispatched to the float or double
// instantiation of native/core by the element type of `params`.
//
// Synchronous functions read the caller's typed arrays in place (no copies). Asynchronous ones
// copy the batch into a baton of plain C++ values, keep the learner's state arrays alive with a
// reference, and make no Node-API call off the main thread.
#include "ops.hpp"

#include <cmath>
#include <cstring>
#include <memory>

#include "args.hpp"
#include "promise_worker.hpp"
#include "core/batch.hpp"
#include "core/mlp.hpp"
#include "core/optim.hpp"
#include "cpu/fast.hpp"
#include "cpu/thread_pool.hpp"

#include <type_traits>

namespace maml::binding {
namespace {

// The fast float32 kernels unless `reference` asks for the plain-loop core (always for double).
template <class T>
double meta_batch(bool reference, const ModelSpec& s, const MetaConfig& cfg, const T* theta, const Rates<T>& rates,
                  const BatchData<T>& batch, T* grad, T* rate_grad) {
  if constexpr (std::is_same_v<T, float>)
    if (!reference) return cpu::fast_meta_gradient_batch(s, cfg, theta, rates, batch, grad, rate_grad);
  return meta_gradient_batch(s, cfg, theta, rates, batch, grad, rate_grad);
}

template <class T>
void adapt_batch_any(bool reference, const ModelSpec& s, const MetaConfig& cfg, const T* theta, const Rates<T>& rates,
                     const BatchData<T>& batch, T* adapted) {
  if constexpr (std::is_same_v<T, float>)
    if (!reference) return cpu::fast_adapt_batch(s, cfg, theta, rates, batch, adapted);
  adapt_batch(s, cfg, theta, rates, batch, adapted);
}

// The fast path's clipping and optimizer update (float only; never called for double).
template <class T>
double clip_norm_any(T* grad, int64_t n, double max_norm) {
  if constexpr (std::is_same_v<T, float>) return cpu::fast_clip_grad_norm(grad, n, max_norm);
  return clip_grad_norm(grad, n, max_norm);
}
template <class T>
void optimizer_step_any(const OptimConfig& c, T* p, T* grad, T* m, T* v, int64_t n, int64_t t) {
  if constexpr (std::is_same_v<T, float>) return cpu::fast_optimizer_step(c, p, grad, m, v, n, t);
  optimizer_step(c, p, grad, m, v, n, t);
}

template <class T>
Napi::TypedArrayOf<T> new_array(const Napi::Env& env, int64_t n) {
  return Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(n));
}

template <class T>
Targets<T> targets_of(const Napi::Object& o, const ModelSpec& s, int64_t n) {
  Targets<T> tg;
  if (s.loss == Loss::CrossEntropy) {
    const View<int32_t> y = view<int32_t>(o, "labels", n);
    for (int64_t i = 0; i < n; ++i)
      MAML_CHECK(y.data[i] >= 0 && y.data[i] < s.out_dim(), InvalidArgument, "labels: out of range");
    tg.labels = y.data;
  } else {
    tg.y = view<T>(o, "y", checked_mul(n, s.out_dim(), "y")).data;
  }
  return tg;
}

// ---- forward, gradient, Hessian-vector product -------------------------------------------

template <class T>
Napi::Value forward_t(const Napi::Env& env, const Napi::Object& o, const ModelSpec& s) {
  const T* theta = view<T>(o, "params", s.n_params).data;
  const int64_t n = integer(o, "n", 0, INT64_C(1) << 40);
  const T* x = view<T>(o, "x", checked_mul(n, s.in_dim(), "x")).data;
  auto out = new_array<T>(env, checked_mul(n, s.out_dim(), "outputs"));
  if constexpr (std::is_same_v<T, float>) {
    if (!boolean(o, "reference", false)) {  // the fast kernels (the plain core on request)
      cpu::fast_forward(s, theta, x, n, out.Data());
      return out;
    }
  }
  if (n > 0) {
    static thread_local MlpWork<T> work;
    const T* y = mlp_forward(s, theta, x, n, work);
    std::memcpy(out.Data(), y, sizeof(T) * static_cast<size_t>(n * s.out_dim()));
  }
  return out;
}

template <class T>
Napi::Value grad_t(const Napi::Env& env, const Napi::Object& o, const ModelSpec& s, bool with_hvp) {
  const T* theta = view<T>(o, "params", s.n_params).data;
  const int64_t n = integer(o, "n", 0, INT64_C(1) << 40);
  const T* x = view<T>(o, "x", checked_mul(n, s.in_dim(), "x")).data;
  const Targets<T> tg = targets_of<T>(o, s, n);
  auto grad = new_array<T>(env, s.n_params);
  Napi::Object result = Napi::Object::New(env);
  static thread_local MlpWork<T> work;
  double loss;
  if (with_hvp) {
    const T* u = view<T>(o, "v", s.n_params).data;
    auto hv = new_array<T>(env, s.n_params);
    loss = loss_grad_hvp(s, theta, x, tg, n, u, work, grad.Data(), hv.Data());
    result.Set("hvp", hv);
  } else {
    loss = loss_and_grad(s, theta, x, tg, n, work, grad.Data());
  }
  result.Set("loss", Napi::Number::New(env, loss));
  result.Set("grad", grad);
  return result;
}

// ---- meta-gradient ------------------------------------------------------------------------

template <class T>
Napi::Value meta_gradient_t(const Napi::Env& env, const Napi::Object& o, const ModelSpec& s) {
  MetaCallArgs<T> call;
  meta_call_arg<T>(o, s, true, call);
  const MetaConfig& cfg = call.cfg;
  const T* theta = call.theta;
  const Rates<T>& rates = call.rates;
  BatchArgs<T>& b = call.batch;
  auto grad = new_array<T>(env, s.n_params);
  auto rate_grad = new_array<T>(env, cfg.want_rate_grad ? rates.length : 0);
  const double loss =
      meta_batch(boolean(o, "reference", false), s, cfg, theta, rates, b.data, grad.Data(), rate_grad.Data());
  Napi::Object result = Napi::Object::New(env);
  result.Set("loss", Napi::Number::New(env, loss));
  result.Set("grad", grad);
  if (cfg.want_rate_grad) result.Set("rateGrad", rate_grad);
  return result;
}

// ---- meta-step: meta-gradient, clipping and optimizer update, in place -------------------

template <class T>
struct OwnedBatch {
  BatchArgs<T> args;
  std::vector<T> xs, ys, xq, yq;
  std::vector<int32_t> ysl, yql;

  // Copies the arrays `args` points to, and points args at the copies.
  void own(const ModelSpec& s) {
    BatchData<T>& d = args.data;
    const int64_t rs = args.s_off.back(), rq = args.q_off.back();
    const int64_t d0 = s.in_dim(), dL = s.out_dim();
    xs.assign(d.xs, d.xs + rs * d0);
    d.xs = xs.data();
    if (d.ys.labels) {
      ysl.assign(d.ys.labels, d.ys.labels + rs);
      d.ys.labels = ysl.data();
    } else {
      ys.assign(d.ys.y, d.ys.y + rs * dL);
      d.ys.y = ys.data();
    }
    if (d.xq) {
      xq.assign(d.xq, d.xq + rq * d0);
      d.xq = xq.data();
      if (d.yq.labels) {
        yql.assign(d.yq.labels, d.yq.labels + rq);
        d.yq.labels = yql.data();
      } else if (d.yq.y) {
        yq.assign(d.yq.y, d.yq.y + rq * dL);
        d.yq.y = yq.data();
      }
    }
    d.s_off = args.s_off.data();
    d.q_off = args.q_off.data();
  }
};

template <class T>
struct StepJob {
  ModelSpec spec;
  MetaConfig cfg;
  OptimConfig opt;
  T* state = nullptr;  // [P + R]: parameters, then learned rates (R = 0 when rates are fixed)
  int64_t state_len = 0;
  T* m = nullptr;
  T* v = nullptr;
  int64_t t = 1;
  bool learn_rates = false;
  std::vector<T> fixed_rates;  // async: a copy of the fixed rates
  Rates<T> rates;
  OwnedBatch<T> batch;
  bool reference = false;
  double loss = 0, grad_norm = 0;

  // From an options object (ObjectArgs) or the packed form (PackedArgs, args.hpp). The fixed
  // rates are copied only when the job outlives the call (async): otherwise they are read in place.
  template <class A>
  void parse(const A& a, const ModelSpec& s, bool copy_rates) {
    spec = s;
    cfg = meta_config_of(a);
    opt = optim_config_of(a);
    learn_rates = a.flag("learnRates", slot::learnRates, false);
    reference = a.flag("reference", slot::reference, false);
    cfg.want_rate_grad = learn_rates && cfg.second_order();
    const View<T> st = view_value<T>(a.val("state", pos::state), "state");
    state = st.data;
    state_len = st.length;
    MAML_CHECK(state_len >= s.n_params, ShapeMismatch, "state: shorter than the parameter vector");
    m = view_value<T>(a.val("m", pos::m), "m", state_len).data;
    v = view_value<T>(a.val("v", pos::v), "v", state_len).data;
    t = int_of(a, "t", slot::t, 1, INT64_C(1) << 52);
    const int64_t P = s.n_params;
    Rates<T> r;
    if (learn_rates) {
      MAML_CHECK(state_len > P, ShapeMismatch, "state: learned rates missing after the parameters");
      r = rates_of<T>(a, state + P, state_len - P, cfg.steps, P);
    } else {
      MAML_CHECK(state_len == P, ShapeMismatch, "state: expected exactly the parameters when rates are fixed");
      const View<T> rv = view_value<T>(a.val("rates", pos::rates), "rates");
      r = rates_of<T>(a, rv.data, rv.length, cfg.steps, P);
      if (copy_rates) {
        fixed_rates.assign(rv.data, rv.data + rv.length);
        r.data = fixed_rates.data();
      }
    }
    rates = r;
    batch_of<T>(a, s, cfg.algo != Algorithm::Reptile || a.present("queryOffsets", pos::queryOffsets), batch.args);
  }

  void run() {
    const int64_t P = spec.n_params;
    static thread_local std::vector<T> grad;  // [P + R], reused by this thread's steps
    grad.assign(static_cast<size_t>(state_len), T(0));
    loss = meta_batch(reference, spec, cfg, state, rates, batch.args.data, grad.data(), grad.data() + P);
    const bool fast = std::is_same_v<T, float> && !reference;  // the fast path's vectorized optimizer
    grad_norm = fast ? clip_norm_any(grad.data(), state_len, opt.clip_norm)
                     : clip_grad_norm(grad.data(), state_len, opt.clip_norm);
    MAML_CHECK(std::isfinite(grad_norm) && std::isfinite(loss), NonFinite,
               "the meta-gradient is not finite (loss " + std::to_string(loss) +
                   "); the parameters were left unchanged. Lower the learning rates or clip the gradient.");
    if (fast) optimizer_step_any(opt, state, grad.data(), m, v, state_len, t);
    else optimizer_step(opt, state, grad.data(), m, v, state_len, t);
  }

  Napi::Value result(const Napi::Env& env) const {
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", Napi::Number::New(env, loss));
    r.Set("gradNorm", Napi::Number::New(env, grad_norm));
    return r;
  }
};

// ---- adaptation -------------------------------------------------------------------------

template <class T>
struct AdaptJob {
  ModelSpec spec;
  MetaConfig cfg;
  std::vector<T> theta, rates_data;
  int64_t step_stride = 0, param_stride = 0;
  OwnedBatch<T> batch;
  bool reference = false;
  T* out = nullptr;  // [B, P]

  void parse(const Napi::Object& o, const ModelSpec& s, bool copy) {
    spec = s;
    cfg = meta_config_arg(o);
    const View<T> p = view<T>(o, "params", s.n_params);
    const View<T> rv = view<T>(o, "rates");
    const Rates<T> r = rates_arg<T>(o, rv.data, rv.length, cfg.steps, s.n_params);
    step_stride = r.step_stride;
    param_stride = r.param_stride;
    reference = boolean(o, "reference", false);
    theta.assign(p.data, p.data + p.length);
    rates_data.assign(rv.data, rv.data + rv.length);
    batch_arg<T>(o, s, false, batch.args);
    if (copy) batch.own(s);
  }

  void run() {
    Rates<T> r;
    r.data = rates_data.data();
    r.length = static_cast<int64_t>(rates_data.size());
    r.step_stride = step_stride;
    r.param_stride = param_stride;
    adapt_batch_any(reference, spec, cfg, theta.data(), r, batch.args.data, out);
  }
};

template <class T>
Napi::Value meta_step_t(const Napi::Env& env, const Napi::Object& o, const ModelSpec& s, bool async) {
  auto job = std::make_unique<StepJob<T>>();
  job->parse(ObjectArgs{o}, s, async);
  if (!async) {
    job->run();
    return job->result(env);
  }
  job->batch.own(s);
  return JobWorker<StepJob<T>>::start(env, std::move(job), o,
                                      [](const Napi::Env& e, StepJob<T>& j, const Napi::Object&) { return j.result(e); });
}

// The packed form (args.hpp): loss and gradient norm are written into the Float64Array
// result [2]; nothing is allocated for the caller.
template <class T>
Napi::Value meta_step_packed_t(const Napi::Env& env, const PackedArgs& a, const ModelSpec& s) {
  const View<double> out = view_value<double>(a.val("result", pos::result), "result", 2);
  StepJob<T> job;
  job.parse(a, s, false);
  job.run();
  out.data[0] = job.loss;
  out.data[1] = job.grad_norm;
  return env.Undefined();
}

template <class T>
Napi::Value adapt_t(const Napi::Env& env, const Napi::Object& o, const ModelSpec& s, bool async) {
  auto job = std::make_unique<AdaptJob<T>>();
  job->parse(o, s, async);
  const int64_t B = job->batch.args.data.tasks;
  auto out = new_array<T>(env, checked_mul(B, s.n_params, "adapted parameters"));
  job->out = out.Data();
  if (!async) {
    job->run();
    return out;
  }
  Napi::Object keep = Napi::Object::New(env);
  keep.Set("out", out);
  return JobWorker<AdaptJob<T>>::start(
      env, std::move(job), keep,
      [](const Napi::Env&, AdaptJob<T>&, const Napi::Object& k) -> Napi::Value { return k.Get("out"); });
}

}  // namespace

// Runs fn<float> or fn<double> by the element type of o.params (or o.state for meta-steps).
#define MAML_DISPATCH(fn, ...)                                                    \
  [&]() -> Napi::Value {                                                          \
    const Napi::Object o = object_arg(info, 0);                                   \
    const ModelSpec s = spec_arg(o);                                              \
    return is_float64(o, has(o, "params") ? "params" : "state")                   \
               ? fn<double>(info.Env(), o, s, ##__VA_ARGS__)                      \
               : fn<float>(info.Env(), o, s, ##__VA_ARGS__);                      \
  }

Napi::Value Forward(const Napi::CallbackInfo& info) { return guard(info.Env(), MAML_DISPATCH(forward_t)); }
Napi::Value LossGrad(const Napi::CallbackInfo& info) { return guard(info.Env(), MAML_DISPATCH(grad_t, false)); }
Napi::Value Hvp(const Napi::CallbackInfo& info) { return guard(info.Env(), MAML_DISPATCH(grad_t, true)); }
Napi::Value MetaGradient(const Napi::CallbackInfo& info) {
  return guard(info.Env(), MAML_DISPATCH(meta_gradient_t));
}
Napi::Value MetaStep(const Napi::CallbackInfo& info) { return guard(info.Env(), MAML_DISPATCH(meta_step_t, false)); }
Napi::Value MetaStepPacked(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const View<double> nums = view_value<double>(info[pos::numbers], "numbers", slot::count);
    const PackedArgs a{nums.data, &info};
    const ModelSpec s = spec_of(a);
    const Napi::Value st = info[pos::state];
    const bool f64 = st.IsTypedArray() && st.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array;
    return f64 ? meta_step_packed_t<double>(info.Env(), a, s) : meta_step_packed_t<float>(info.Env(), a, s);
  });
}
Napi::Value MetaStepAsync(const Napi::CallbackInfo& info) {
  return guard(info.Env(), MAML_DISPATCH(meta_step_t, true));
}
Napi::Value AdaptBatch(const Napi::CallbackInfo& info) { return guard(info.Env(), MAML_DISPATCH(adapt_t, false)); }
Napi::Value AdaptBatchAsync(const Napi::CallbackInfo& info) {
  return guard(info.Env(), MAML_DISPATCH(adapt_t, true));
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    MAML_CHECK(info.Length() >= 1 && info[0].IsNumber(), InvalidArgument, "setThreads: expected a number");
    const double n = info[0].As<Napi::Number>().DoubleValue();
    MAML_CHECK(n >= 1 && n <= 1024 && n == std::floor(n), InvalidArgument,
               "setThreads: expected an integer in [1, 1024]");
    set_thread_count(static_cast<int>(n));
    return info.Env().Undefined();
  });
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), thread_count()); }

}  // namespace maml::binding
