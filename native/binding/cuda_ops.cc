// cuda_ops.cc: Node-API glue of the CUDA learner (native/cuda/cuda_learner.hpp). Compiled by
// both builds, but empty unless MAML_WITH_CUDA (the CUDA-enabled binary, CMakeLists.txt).
//
// A learner is an External handle that owns a CudaLearner, freed by cudaLearnerDispose or else
// by the garbage collector's finalizer. Arguments come checked from TypeScript
// (src/backend-cuda.ts); this layer re-checks array kinds, lengths and offsets (args.hpp), as
// ops.cc does. float32 only.
//
// cudaLearnerStepAsync and cudaLearnerAdaptAsync copy the batch into a baton on the main thread
// and run the step or the adaptation on the JobWorker's thread (promise_worker.hpp). While it runs the learner is busy: every other
// entry on the same handle throws BUSY (TypeScript's SerialQueue never lets that happen; this
// is the memory-safety re-check). The baton shares ownership of the device state, so neither
// dispose nor the garbage collector can free it under a running step.
#ifdef MAML_WITH_CUDA
#include "cuda_ops.hpp"

#include <atomic>
#include <memory>
#include <vector>

#include "args.hpp"
#include "cuda/cuda_learner.hpp"
#include "promise_worker.hpp"

namespace maml::binding {
namespace {

// The device side of a handle: shared by the handle and a running asynchronous step.
struct DeviceLearner {
  std::unique_ptr<cuda::CudaLearner> learner;
  std::atomic<bool> busy{false};  // an asynchronous step or adaptation is running on a worker thread
};

struct LearnerHandle {
  ModelSpec spec;
  MetaConfig cfg;
  std::shared_ptr<DeviceLearner> dev = std::make_shared<DeviceLearner>();
  cuda::CudaLearner* operator->() const { return dev->learner.get(); }
};

LearnerHandle* raw_handle(const Napi::CallbackInfo& info) {
  MAML_CHECK(info.Length() >= 1 && info[0].IsExternal(), InvalidArgument, "expected a CUDA learner handle");
  LearnerHandle* h = info[0].As<Napi::External<LearnerHandle>>().Data();
  MAML_CHECK(h && h->dev, InvalidArgument, "the CUDA learner handle is empty");
  return h;
}

// A handle that can be used now: not disposed, no asynchronous step running.
LearnerHandle& handle_arg(const Napi::CallbackInfo& info) {
  LearnerHandle* h = raw_handle(info);
  MAML_CHECK(h->dev->learner, Disposed, "the CUDA learner was disposed");
  MAML_CHECK(!h->dev->busy.load(std::memory_order_acquire), Busy,
             "the CUDA learner is running an asynchronous step or adaptation; await it first");
  return *h;
}

void check_float32(const Napi::Object& o, const char* key) {
  MAML_CHECK(!is_float64(o, key), Unsupported, "the CUDA backend computes in float32; got a Float64Array");
}

cuda::HostBatch host_batch(const BatchArgs<float>& b) {
  cuda::HostBatch h;
  h.tasks = b.data.tasks;
  h.s_off = b.s_off.data();
  h.q_off = b.q_off.data();
  h.xs = b.data.xs;
  h.ys = b.data.ys.y;
  h.ys_lab = b.data.ys.labels;
  h.xq = b.data.xq;
  h.yq = b.data.yq.y;
  h.yq_lab = b.data.yq.labels;
  return h;
}

// The learner's settings from options shaped as metaStep's (spec, inner, optimizer).
cuda::LearnerConfig learner_config(const Napi::Object& o, const ModelSpec& s, const float* state, int64_t state_len,
                                   bool learn_rates, const View<float>& fixed, const OptimConfig& opt) {
  cuda::LearnerConfig c;
  c.spec = s;
  c.cfg = meta_config_arg(o);
  c.cfg.want_rate_grad = learn_rates && c.cfg.second_order();
  c.opt = opt;
  const int64_t P = s.n_params;
  Rates<float> r;
  if (learn_rates) {
    MAML_CHECK(state_len > P, ShapeMismatch, "state: learned rates missing after the parameters");
    r = rates_arg<float>(o, state + P, state_len - P, c.cfg.steps, P);
  } else {
    MAML_CHECK(state_len == P, ShapeMismatch, "state: expected exactly the parameters when rates are fixed");
    r = rates_arg<float>(o, fixed.data, fixed.length, c.cfg.steps, P);
    c.fixed_rates.assign(fixed.data, fixed.data + fixed.length);
  }
  c.rate_step_stride = r.step_stride;
  c.rate_param_stride = r.param_stride;
  c.state.assign(state, state + state_len);
  return c;
}

}  // namespace

Napi::Value CudaLearnerCreate(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const Napi::Object o = object_arg(info, 0);
    check_float32(o, "state");
    auto h = std::make_unique<LearnerHandle>();
    h->spec = spec_arg(o);
    const View<float> st = view<float>(o, "state");
    const bool learn = boolean(o, "learnRates", false);
    const View<float> fixed = learn ? View<float>{} : view<float>(o, "rates");
    const cuda::LearnerConfig c = learner_config(o, h->spec, st.data, st.length, learn, fixed, optim_config_arg(o));
    h->cfg = c.cfg;
    h->dev->learner = std::make_unique<cuda::CudaLearner>(c);
    return Napi::External<LearnerHandle>::New(info.Env(), h.release(),
                                              [](Napi::Env, LearnerHandle* p) { delete p; });
  });
}

// One step's arguments. For the asynchronous entry the batch is copied into the baton (own());
// the synchronous one reads the JavaScript arrays in place.
struct StepJob {
  std::shared_ptr<DeviceLearner> dev;
  BatchArgs<float> b;
  int64_t t = 1;
  bool new_weights = false;
  std::vector<double> weights;
  std::vector<float> xs, ys, xq, yq;
  std::vector<int32_t> ys_lab, yq_lab;
  cuda::StepResult r;
  const char* memory = "none";

  void parse(const LearnerHandle& h, const Napi::Object& o) {
    dev = h.dev;
    batch_arg<float>(o, h.spec, h.cfg.algo != Algorithm::Reptile || has(o, "queryOffsets"), b);
    t = integer(o, "t", 1, INT64_C(1) << 52);
    new_weights = has(o, "weights");  // sent when the multi-step loss weights changed
    if (new_weights) {
      const View<double> w = view<double>(o, "weights", h.cfg.steps + 1);
      weights.assign(w.data, w.data + w.length);
    }
  }

  // Copies the arrays b points to (lengths checked by batch_arg) and points b at the copies.
  void own(const ModelSpec& s) {
    BatchData<float>& d = b.data;
    const int64_t rs = b.s_off.back(), rq = b.q_off.back(), d0 = s.in_dim(), dL = s.out_dim();
    const auto copy = [](auto& into, const auto* from, int64_t n) {
      if (!from) return static_cast<decltype(from)>(nullptr);
      into.assign(from, from + n);
      return static_cast<decltype(from)>(into.data());
    };
    d.xs = copy(xs, d.xs, rs * d0);
    d.ys.y = copy(ys, d.ys.y, rs * dL);
    d.ys.labels = copy(ys_lab, d.ys.labels, rs);
    d.xq = copy(xq, d.xq, rq * d0);
    d.yq.y = copy(yq, d.yq.y, rq * dL);
    d.yq.labels = copy(yq_lab, d.yq.labels, rq);
  }

  void run() {
    cuda::CudaLearner& l = *dev->learner;
    if (new_weights) l.set_weights(weights);
    r = l.step(host_batch(b), t);
    memory = l.last_memory();
  }

  Napi::Value result(const Napi::Env& env) const {
    Napi::Object out = Napi::Object::New(env);
    out.Set("loss", Napi::Number::New(env, r.loss));
    out.Set("gradNorm", Napi::Number::New(env, r.grad_norm));
    out.Set("memory", Napi::String::New(env, memory));
    return out;
  }
};

// Runs Job::run (a StepJob or an AdaptJob) on the JobWorker's thread and clears the learner's
// busy flag when it ends, also when it throws (the JobWorker turns the exception into the
// promise's rejection).
namespace {

template <class Job>
struct BusyJob {
  Job job;
  void run() {
    struct Idle {
      DeviceLearner& d;
      ~Idle() { d.busy.store(false, std::memory_order_release); }
    } idle{*job.dev};
    job.run();
  }
};

// Marks the learner busy and starts a's job on the JobWorker (keep: what the baton keeps alive;
// finish: the promise's value). If it cannot be queued, the learner is idle again.
template <class Job>
Napi::Promise start_busy(const Napi::Env& env, LearnerHandle& h, std::unique_ptr<BusyJob<Job>> a,
                         const Napi::Object& keep, typename JobWorker<BusyJob<Job>>::Finish finish) {
  h.dev->busy.store(true, std::memory_order_release);  // cleared by BusyJob::run on the worker
  try {
    return JobWorker<BusyJob<Job>>::start(env, std::move(a), keep, std::move(finish));
  } catch (...) {
    h.dev->busy.store(false, std::memory_order_release);  // not queued
    throw;
  }
}

}  // namespace

Napi::Value CudaLearnerStep(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    LearnerHandle& h = handle_arg(info);
    StepJob job;
    job.parse(h, object_arg(info, 1));
    job.run();
    return job.result(info.Env());
  });
}

Napi::Value CudaLearnerStepAsync(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    LearnerHandle& h = handle_arg(info);
    const Napi::Object o = object_arg(info, 1);
    auto a = std::make_unique<BusyJob<StepJob>>();
    a->job.parse(h, o);
    a->job.own(h.spec);
    Napi::Object keep = Napi::Object::New(info.Env());
    keep.Set("handle", info[0]);
    return start_busy<StepJob>(info.Env(), h, std::move(a), keep,
                               [](const Napi::Env& env, BusyJob<StepJob>& j, const Napi::Object&) { return j.job.result(env); });
  });
}

Napi::Value CudaLearnerDispose(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    LearnerHandle* h = raw_handle(info);
    if (!h->dev->learner) return info.Env().Undefined();  // disposed already: nothing to do
    MAML_CHECK(!h->dev->busy.load(std::memory_order_acquire), Busy,
               "the CUDA learner is running an asynchronous step; await it before dispose()");
    h->dev->learner.reset();  // frees the device memory, the pinned buffers and the stream now
    return info.Env().Undefined();
  });
}

Napi::Value CudaLearnerGetState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    LearnerHandle& h = handle_arg(info);
    auto out = Napi::Float32Array::New(info.Env(), static_cast<size_t>(h->state_length()));
    h->get_state(out.Data());
    return out;
  });
}

Napi::Value CudaLearnerSetState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    LearnerHandle& h = handle_arg(info);
    MAML_CHECK(info.Length() >= 2 && info[1].IsTypedArray() &&
                   info[1].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array,
               InvalidArgument, "state: expected a Float32Array");
    const Napi::Float32Array st = info[1].As<Napi::Float32Array>();
    MAML_CHECK(static_cast<int64_t>(st.ElementLength()) == h->state_length(), ShapeMismatch,
               "state: expected " + std::to_string(h->state_length()) + " values");
    h->set_state(st.Data());
    return info.Env().Undefined();
  });
}

// One adaptation's arguments: the support sets, the step count and the rates. For the
// asynchronous entry the batch and the rates are copied into the baton (own()).
struct AdaptJob {
  std::shared_ptr<DeviceLearner> dev;
  BatchArgs<float> b;
  int steps = 0;
  std::vector<float> rates, xs, ys;
  std::vector<int32_t> ys_lab;
  Rates<float> r;
  float* out = nullptr;  // [B, P], a JavaScript array the caller keeps alive

  void parse(const LearnerHandle& h, const Napi::Object& o) {
    dev = h.dev;
    check_float32(o, "rates");
    steps = static_cast<int>(integer(o, "steps", 0, 100000));
    const View<float> rv = view<float>(o, "rates");
    r = rates_arg<float>(o, rv.data, rv.length, steps, h.spec.n_params);
    rates.assign(rv.data, rv.data + rv.length);
    batch_arg<float>(o, h.spec, false, b);
  }

  void own(const ModelSpec& s) {
    BatchData<float>& d = b.data;
    const int64_t rs = b.s_off.back();
    if (d.xs) xs.assign(d.xs, d.xs + rs * s.in_dim()), d.xs = xs.data();
    if (d.ys.y) ys.assign(d.ys.y, d.ys.y + rs * s.out_dim()), d.ys.y = ys.data();
    if (d.ys.labels) ys_lab.assign(d.ys.labels, d.ys.labels + rs), d.ys.labels = ys_lab.data();
  }

  int64_t tasks() const { return b.data.tasks; }

  void run() {
    dev->learner->adapt(host_batch(b), steps, rates.data(), static_cast<int64_t>(rates.size()), r.step_stride,
                        r.param_stride, out);
  }
};

Napi::Value CudaLearnerAdapt(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    LearnerHandle& h = handle_arg(info);
    AdaptJob job;
    job.parse(h, object_arg(info, 1));
    auto out = Napi::Float32Array::New(info.Env(), static_cast<size_t>(checked_mul(job.tasks(), h.spec.n_params, "adapted")));
    job.out = out.Data();
    job.run();
    return out;
  });
}

Napi::Value CudaLearnerAdaptAsync(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    LearnerHandle& h = handle_arg(info);
    auto a = std::make_unique<BusyJob<AdaptJob>>();
    a->job.parse(h, object_arg(info, 1));
    a->job.own(h.spec);
    auto out = Napi::Float32Array::New(info.Env(), static_cast<size_t>(checked_mul(a->job.tasks(), h.spec.n_params, "adapted")));
    a->job.out = out.Data();
    Napi::Object keep = Napi::Object::New(info.Env());
    keep.Set("handle", info[0]);
    keep.Set("out", out);
    return start_busy<AdaptJob>(info.Env(), h, std::move(a), keep,
                                [](const Napi::Env&, BusyJob<AdaptJob>&, const Napi::Object& k) -> Napi::Value { return k.Get("out"); });
  });
}

Napi::Value CudaMetaGradient(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const Napi::Object o = object_arg(info, 0);
    check_float32(o, "params");
    const ModelSpec s = spec_arg(o);
    const MetaConfig cfg = meta_config_arg(o);  // wantRateGrad read here
    const View<float> p = view<float>(o, "params", s.n_params);
    const View<float> rv = view<float>(o, "rates");
    std::vector<float> state(p.data, p.data + p.length);
    if (cfg.want_rate_grad) state.insert(state.end(), rv.data, rv.data + rv.length);
    const cuda::LearnerConfig c = learner_config(o, s, state.data(), static_cast<int64_t>(state.size()),
                                                 cfg.want_rate_grad, rv, OptimConfig{});
    cuda::CudaLearner learner(c);
    BatchArgs<float> b;
    batch_arg<float>(o, s, true, b);
    auto grad = Napi::Float32Array::New(info.Env(), static_cast<size_t>(s.n_params));
    auto rate_grad = Napi::Float32Array::New(info.Env(), cfg.want_rate_grad ? static_cast<size_t>(rv.length) : 0);
    const double loss = learner.meta_gradient(host_batch(b), grad.Data(), rate_grad.Data());
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("loss", Napi::Number::New(info.Env(), loss));
    r.Set("grad", grad);
    if (cfg.want_rate_grad) r.Set("rateGrad", rate_grad);
    r.Set("memory", Napi::String::New(info.Env(), learner.last_memory()));
    return r;
  });
}

}  // namespace maml::binding
#endif  // MAML_WITH_CUDA
