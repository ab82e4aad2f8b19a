// fewshot_ops.cc: Prototypical, Matching and Relation Networks (core/fewshot.hpp) for
// JavaScript, dispatched to float or double by the element type of `params` (or `state`).
//
// Arguments (checked by src/fewshot/*.ts; re-checked here only for memory safety):
//   fsAlgorithm 0 protonet | 1 matching | 2 relation; embLayers Int32Array, embActivation;
//   relLayers, relActivation, relSum, relNormalize (relation only; absent: false);
//   episodes: tasks, ways, supportOffsets, queryOffsets (Int32Array [tasks + 1]), xs, xq,
//   ysLabels, yqLabels (Int32Array, in [0, ways)); reference: the plain-loop core instead of
//   the fast float32 embedding kernels (float64 always runs the core).
// Synchronous functions read the typed arrays in place; asynchronous ones copy the episodes
// (and, for evaluation, the parameters) into a baton and run in a JobWorker.
#include "fewshot_ops.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <type_traits>
#include <vector>

#include "args.hpp"
#include "core/fewshot_batch.hpp"
#include "core/optim.hpp"
#include "cpu/fast.hpp"
#include "cpu/fast_fewshot.hpp"
#include "promise_worker.hpp"

namespace maml::binding {
namespace {

std::vector<int64_t> dims_arg(const Napi::Object& o, const char* key) {
  const View<int32_t> v = view<int32_t>(o, key);
  MAML_CHECK(v.length >= 2 && v.length <= 1024, InvalidArgument, std::string(key) + ": expected 2 to 1024 widths");
  return std::vector<int64_t>(v.data, v.data + v.length);
}

FewShotSpec fewshot_spec_arg(const Napi::Object& o) {
  const int algo = static_cast<int>(integer(o, "fsAlgorithm", 0, 2));
  const std::vector<int64_t> emb = dims_arg(o, "embLayers");
  const int emb_act = static_cast<int>(integer(o, "embActivation", 0, 1));
  if (algo != static_cast<int>(FewShotAlgo::Relation)) return make_fewshot_spec(algo, emb, emb_act, {}, 0, false);
  return make_fewshot_spec(algo, emb, emb_act, dims_arg(o, "relLayers"), static_cast<int>(integer(o, "relActivation", 0, 1)),
                           boolean(o, "relSum", false), boolean(o, "relNormalize", false));
}

// The fast float32 embedding kernels unless `reference` asks for the plain core (always for double).
template <class T>
double batch_any(bool reference, const FewShotSpec& fs, const T* theta, const FewShotBatch<T>& b, T* grad,
                 double* task_loss, double* task_acc) {
  if constexpr (std::is_same_v<T, float>)
    if (!reference) return cpu::fast_fewshot_batch(fs, theta, b, grad, task_loss, task_acc);
  return fewshot_batch(fs, theta, b, grad, task_loss, task_acc);
}

void labels_in_range(const int32_t* y, int64_t n, int64_t ways, const char* key) {
  for (int64_t i = 0; i < n; ++i)
    MAML_CHECK(y[i] >= 0 && y[i] < ways, InvalidArgument,
               std::string(key) + ": labels must lie in [0, " + std::to_string(ways) + ")");
}

// The episodes, read in place; own() copies them into the baton.
template <class T>
struct EpisodeArgs {
  std::vector<int64_t> s_off, q_off;
  FewShotBatch<T> data;
  std::vector<T> xs, xq;
  std::vector<int32_t> ys, yq;

  void parse(const Napi::Object& o, const FewShotSpec& fs) {
    const int64_t B = integer(o, "tasks", 1, INT64_C(1) << 31);
    data.tasks = B;
    data.ways = integer(o, "ways", 1, kMaxWidth);
    s_off = offsets_arg(o, "supportOffsets", B);
    q_off = offsets_arg(o, "queryOffsets", B);
    const int64_t rs = s_off[B], rq = q_off[B], d0 = fs.emb.in_dim();
    data.s_off = s_off.data();
    data.q_off = q_off.data();
    data.xs = view<T>(o, "xs", checked_mul(rs, d0, "xs")).data;
    data.xq = view<T>(o, "xq", checked_mul(rq, d0, "xq")).data;
    data.ys = view<int32_t>(o, "ysLabels", rs).data;
    data.yq = view<int32_t>(o, "yqLabels", rq).data;
    labels_in_range(data.ys, rs, data.ways, "ysLabels");
    labels_in_range(data.yq, rq, data.ways, "yqLabels");
    // every class of every task has a support row (the class centres divide by the count)
    std::vector<char> seen(static_cast<size_t>(data.ways));
    for (int64_t t = 0; t < B; ++t) {
      std::fill(seen.begin(), seen.end(), 0);
      for (int64_t i = s_off[t]; i < s_off[t + 1]; ++i) seen[static_cast<size_t>(data.ys[i])] = 1;
      for (char c : seen) MAML_CHECK(c, InvalidArgument, "every class needs a support example in every task");
    }
  }

  void own(const FewShotSpec& fs) {
    const int64_t rs = s_off.back(), rq = q_off.back(), d0 = fs.emb.in_dim();
    xs.assign(data.xs, data.xs + rs * d0);
    xq.assign(data.xq, data.xq + rq * d0);
    ys.assign(data.ys, data.ys + rs);
    yq.assign(data.yq, data.yq + rq);
    data.xs = xs.data();
    data.xq = xq.data();
    data.ys = ys.data();
    data.yq = yq.data();
    data.s_off = s_off.data();
    data.q_off = q_off.data();
  }
};

Napi::Float64Array doubles(const Napi::Env& env, const std::vector<double>& v) {
  auto a = Napi::Float64Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = v[i];
  return a;
}

// Loss, accuracy and (for gradients) the mean gradient of a meta-batch, per-task figures.
template <class T>
struct EvalJob {
  FewShotSpec spec;
  std::vector<T> theta_copy;
  const T* theta = nullptr;
  EpisodeArgs<T> ep;
  bool want_grad = false, reference = false;
  std::vector<T> grad;
  std::vector<double> losses, accs;
  double loss = 0;

  void parse(const Napi::Object& o, const FewShotSpec& s, bool copy) {
    spec = s;
    const View<T> p = view<T>(o, "params", s.n_params);
    theta = p.data;
    reference = boolean(o, "reference", false);
    ep.parse(o, s);
    if (copy) {
      theta_copy.assign(p.data, p.data + p.length);
      theta = theta_copy.data();
      ep.own(s);
    }
  }
  void run() {
    const size_t B = static_cast<size_t>(ep.data.tasks);
    losses.assign(B, 0.0);
    accs.assign(B, 0.0);
    if (want_grad) grad.assign(static_cast<size_t>(spec.n_params), T(0));
    loss = batch_any(reference, spec, theta, ep.data, want_grad ? grad.data() : nullptr, losses.data(), accs.data());
  }
  Napi::Value result(const Napi::Env& env) const {
    Napi::Object r = Napi::Object::New(env);
    double acc = 0;
    for (double a : accs) acc += a;
    r.Set("loss", Napi::Number::New(env, loss));
    r.Set("accuracy", Napi::Number::New(env, acc / static_cast<double>(accs.size())));
    r.Set("losses", doubles(env, losses));
    r.Set("accuracies", doubles(env, accs));
    if (want_grad) {
      auto g = Napi::TypedArrayOf<T>::New(env, grad.size());
      std::copy(grad.begin(), grad.end(), g.Data());
      r.Set("grad", g);
    }
    return r;
  }
};

// One optimizer step on the learner's state [P] (updated in place), with the Adam moments.
template <class T>
struct StepJob {
  FewShotSpec spec;
  OptimConfig opt;
  T *state = nullptr, *m = nullptr, *v = nullptr;
  int64_t t = 1;
  bool reference = false;
  EpisodeArgs<T> ep;
  double loss = 0, accuracy = 0, grad_norm = 0;

  void parse(const Napi::Object& o, const FewShotSpec& s) {
    spec = s;
    opt = optim_config_arg(o);
    state = view<T>(o, "state", s.n_params).data;
    m = view<T>(o, "m", s.n_params).data;
    v = view<T>(o, "v", s.n_params).data;
    t = integer(o, "t", 1, INT64_C(1) << 52);
    reference = boolean(o, "reference", false);
    ep.parse(o, s);
  }
  void run() {
    const int64_t P = spec.n_params;
    std::vector<T> grad(static_cast<size_t>(P));
    std::vector<double> accs(static_cast<size_t>(ep.data.tasks));
    loss = batch_any(reference, spec, state, ep.data, grad.data(), nullptr, accs.data());
    accuracy = 0;
    for (double a : accs) accuracy += a;
    accuracy /= static_cast<double>(accs.size());
    grad_norm = clip_grad_norm(grad.data(), P, opt.clip_norm);
    MAML_CHECK(std::isfinite(grad_norm) && std::isfinite(loss), NonFinite,
               "the episode gradient is not finite (loss " + std::to_string(loss) +
                   "); the parameters were left unchanged. Lower the learning rate or clip the gradient.");
    optimizer_step(opt, state, grad.data(), m, v, P, t);
  }
  Napi::Value result(const Napi::Env& env) const {
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", Napi::Number::New(env, loss));
    r.Set("accuracy", Napi::Number::New(env, accuracy));
    r.Set("gradNorm", Napi::Number::New(env, grad_norm));
    return r;
  }
};

template <class T>
Napi::Value eval_t(const Napi::Env& env, const Napi::Object& o, const FewShotSpec& s, bool want_grad, bool async) {
  auto job = std::make_unique<EvalJob<T>>();
  job->want_grad = want_grad;
  job->parse(o, s, async);
  if (!async) {
    job->run();
    return job->result(env);
  }
  return JobWorker<EvalJob<T>>::start(env, std::move(job), o,
                                      [](const Napi::Env& e, EvalJob<T>& j, const Napi::Object&) { return j.result(e); });
}

template <class T>
Napi::Value step_t(const Napi::Env& env, const Napi::Object& o, const FewShotSpec& s, bool async) {
  auto job = std::make_unique<StepJob<T>>();
  job->parse(o, s);
  if (!async) {
    job->run();
    return job->result(env);
  }
  job->ep.own(s);
  return JobWorker<StepJob<T>>::start(env, std::move(job), o,
                                      [](const Napi::Env& e, StepJob<T>& j, const Napi::Object&) { return j.result(e); });
}

// Logits [n, ways] of x [n, d0] against support embeddings (supportEmb [ns, D], supportLabels).
template <class T>
Napi::Value logits_t(const Napi::Env& env, const Napi::Object& o, const FewShotSpec& s) {
  const T* theta = view<T>(o, "params", s.n_params).data;
  const int64_t ways = integer(o, "ways", 1, kMaxWidth);
  const int64_t ns = integer(o, "ns", 1, INT64_C(1) << 40);
  const T* es = view<T>(o, "supportEmb", checked_mul(ns, s.dim(), "supportEmb")).data;
  const int32_t* ys = view<int32_t>(o, "supportLabels", ns).data;
  labels_in_range(ys, ns, ways, "supportLabels");
  std::vector<char> seen(static_cast<size_t>(ways), 0);
  for (int64_t i = 0; i < ns; ++i) seen[static_cast<size_t>(ys[i])] = 1;
  for (char c : seen) MAML_CHECK(c, InvalidArgument, "every class needs a support example");
  const int64_t n = integer(o, "n", 0, INT64_C(1) << 40);
  const T* x = view<T>(o, "x", checked_mul(n, s.emb.in_dim(), "x")).data;
  auto out = Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(checked_mul(n, ways, "logits")));
  if constexpr (std::is_same_v<T, float>) {  // the query embeddings on the fast kernels
    static thread_local std::vector<float> eq;
    eq.resize(static_cast<size_t>(checked_mul(n, s.dim(), "query embeddings")));
    cpu::fast_forward(s.emb, theta, x, n, eq.data());
    fewshot_logits(s, theta, es, ys, ns, ways, x, n, out.Data(), eq.data());
    return out;
  }
  fewshot_logits(s, theta, es, ys, ns, ways, x, n, out.Data());
  return out;
}

}  // namespace

// Runs fn<float> or fn<double> by the element type of o.params (o.state for steps).
#define MAML_FS_DISPATCH(fn, ...)                                                \
  [&]() -> Napi::Value {                                                         \
    const Napi::Object o = object_arg(info, 0);                                  \
    const FewShotSpec s = fewshot_spec_arg(o);                                   \
    return is_float64(o, has(o, "params") ? "params" : "state")                  \
               ? fn<double>(info.Env(), o, s, ##__VA_ARGS__)                     \
               : fn<float>(info.Env(), o, s, ##__VA_ARGS__);                     \
  }

Napi::Value FewShotGradient(const Napi::CallbackInfo& info) {
  return guard(info.Env(), MAML_FS_DISPATCH(eval_t, true, false));
}
Napi::Value FewShotEvaluate(const Napi::CallbackInfo& info) {
  return guard(info.Env(), MAML_FS_DISPATCH(eval_t, false, false));
}
Napi::Value FewShotEvaluateAsync(const Napi::CallbackInfo& info) {
  return guard(info.Env(), MAML_FS_DISPATCH(eval_t, false, true));
}
Napi::Value FewShotStep(const Napi::CallbackInfo& info) { return guard(info.Env(), MAML_FS_DISPATCH(step_t, false)); }
Napi::Value FewShotStepAsync(const Napi::CallbackInfo& info) {
  return guard(info.Env(), MAML_FS_DISPATCH(step_t, true));
}
Napi::Value FewShotLogits(const Napi::CallbackInfo& info) { return guard(info.Env(), MAML_FS_DISPATCH(logits_t)); }

}  // namespace maml::binding
