// args.hpp: reading checked arguments out of the options object a TypeScript wrapper passes.
//
// TypeScript validates every argument and explains mistakes in the user's terms. This layer
// re-checks only what memory safety depends on (array kinds, byte lengths, offsets, overflow
// of size products) and throws maml::Error, which guard() turns into a JavaScript Error with a
// `code` property.
#pragma once
#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/batch.hpp"
#include "core/model.hpp"
#include "core/optim.hpp"
#include "core/status.hpp"

namespace maml::binding {

// Runs body and converts any C++ exception into a pending JavaScript exception.
Napi::Value guard(const Napi::Env& env, const std::function<Napi::Value()>& body);
// A JavaScript Error with .code set from a maml::Error (for async rejections).
Napi::Error make_error(const Napi::Env& env, Code code, const std::string& message);

Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i);
// o[name] (undefined when absent).
Napi::Value get(const Napi::Object& o, const char* name);
bool has(const Napi::Object& o, const char* key);
double number(const Napi::Object& o, const char* key);
int64_t integer(const Napi::Object& o, const char* key, int64_t lo, int64_t hi);
// d as an integer in [lo, hi], or an InvalidArgument error naming key.
int64_t integer_value(double d, const char* key, int64_t lo, int64_t hi);
bool boolean(const Napi::Object& o, const char* key, bool fallback);

template <class T>
napi_typedarray_type typed_kind();

// A typed array view of o[key] of element type T. expected < 0: any length.
template <class T>
struct View {
  T* data = nullptr;
  int64_t length = 0;
};
template <class T>
View<T> view_value(const Napi::Value& v, const char* key, int64_t expected = -1);
template <class T>
View<T> view(const Napi::Object& o, const char* key, int64_t expected = -1);
bool is_float64(const Napi::Object& o, const char* key);

// model spec from o.layers (Int32Array), o.activation, o.loss.
ModelSpec spec_arg(const Napi::Object& o);
// inner-loop config from o.algorithm, o.steps, o.weights (Float64Array [S+1]), o.wantRateGrad.
MetaConfig meta_config_arg(const Napi::Object& o);
OptimConfig optim_config_arg(const Napi::Object& o);

// Offsets [tasks + 1] from o[key] (Int32Array), checked: starts at 0, non-decreasing.
std::vector<int64_t> offsets_arg(const Napi::Object& o, const char* key, int64_t tasks);
std::vector<int64_t> offsets_value(const Napi::Value& v, const char* key, int64_t tasks);

// The batch arrays read from o: xs, ys | ysLabels, xq, yq | yqLabels, with CSR offsets.
// Pointers refer to the JavaScript arrays (valid while the call lasts).
template <class T>
struct BatchArgs {
  std::vector<int64_t> s_off, q_off;
  BatchData<T> data;
};
template <class T>
void batch_arg(const Napi::Object& o, const ModelSpec& s, bool need_query, BatchArgs<T>& out);
// The same from the values themselves (labels for cross-entropy in ys / yq); the query ones
// are read only when need_query.
struct BatchValues {
  Napi::Value s_off, q_off, xs, ys, xq, yq;
};
template <class T>
void batch_values(const ModelSpec& s, int64_t tasks, const BatchValues& v, bool need_query, BatchArgs<T>& out);

// Rates from o.rates with o.rateStepStride / o.rateParamStride, checked against S and P.
template <class T>
Rates<T> rates_arg(const Napi::Object& o, const T* data, int64_t length, int steps, int64_t P);
template <class T>
Rates<T> rates_checked(const T* data, int64_t length, int64_t step_stride, int64_t param_stride, int steps, int64_t P);

// ---- packed arguments (the meta-step's fast protocol) ---------------------------------------
// A meta-step reads about 40 properties from its options object, and each Node-API property
// read costs ~0.1 µs: a fifth of a small meta-step. MetaLearner.step therefore passes its
// numbers packed in one Float64Array and its arrays as positional arguments (the order below,
// mirrored in src/native-types.ts). The readers below take either form through Args: a.num
// (a number), a.flag (a boolean), a.val (an array or value) and a.present, by key for an
// options object and by slot or position for the packed form.
namespace slot {  // numbers[slot] of the packed form
enum : int {
  algorithm, steps, activation, loss, optKind, lr, beta1, beta2, eps, weightDecay, momentum, dampening, nesterov,
  clipNorm, learnRates, reference, rateStepStride, rateParamStride, t, tasks, wantRateGrad, count
};
}
namespace pos {  // positional arguments of the packed form
enum : int { numbers, layers, weights, rates, state, m, v, supportOffsets, queryOffsets, xs, ys, xq, yq, result, count };
}

struct ObjectArgs {
  Napi::Object o;
  double num(const char* key, int) const { return number(o, key); }
  bool flag(const char* key, int, bool fallback) const { return boolean(o, key, fallback); }
  Napi::Value val(const char* key, int) const { return get(o, key); }
  bool present(const char* key, int) const { return has(o, key); }
};

struct PackedArgs {
  const double* nums;  // [slot::count]
  const Napi::CallbackInfo* info;
  double num(const char*, int s) const { return nums[s]; }
  bool flag(const char* key, int s, bool) const {
    MAML_CHECK(nums[s] == 0.0 || nums[s] == 1.0, InvalidArgument, std::string(key) + ": expected 0 or 1");
    return nums[s] != 0.0;
  }
  Napi::Value val(const char*, int p) const { return (*info)[static_cast<size_t>(p)]; }
  bool present(const char*, int p) const {
    const Napi::Value v = val(nullptr, p);
    return !v.IsUndefined() && !v.IsNull();
  }
};

template <class A>
int64_t int_of(const A& a, const char* key, int s, int64_t lo, int64_t hi) {
  return integer_value(a.num(key, s), key, lo, hi);
}

template <class A>
ModelSpec spec_of(const A& a) {
  const View<int32_t> layers = view_value<int32_t>(a.val("layers", pos::layers), "layers");
  MAML_CHECK(layers.length >= 2 && layers.length <= 1024, InvalidArgument, "layers: expected 2 to 1024 widths");
  std::vector<int64_t> dims(layers.data, layers.data + layers.length);
  return make_spec(dims, static_cast<int>(int_of(a, "activation", slot::activation, 0, 1)),
                   static_cast<int>(int_of(a, "loss", slot::loss, 0, 2)));
}

template <class A>
MetaConfig meta_config_of(const A& a) {
  MetaConfig c;
  c.algo = static_cast<Algorithm>(int_of(a, "algorithm", slot::algorithm, 0, 4));
  c.steps = static_cast<int>(int_of(a, "steps", slot::steps, 0, 100000));
  const View<double> w = view_value<double>(a.val("weights", pos::weights), "weights", c.steps + 1);
  c.weights.assign(w.data, w.data + w.length);
  for (double x : c.weights) MAML_CHECK(std::isfinite(x), NonFinite, "weights: expected finite step weights");
  c.want_rate_grad = a.flag("wantRateGrad", slot::wantRateGrad, false) && c.second_order();
  return c;
}

template <class A>
OptimConfig optim_config_of(const A& a) {
  OptimConfig c;
  c.kind = static_cast<int>(int_of(a, "optKind", slot::optKind, 0, 1));
  c.lr = a.num("lr", slot::lr);
  c.beta1 = a.num("beta1", slot::beta1);
  c.beta2 = a.num("beta2", slot::beta2);
  c.eps = a.num("eps", slot::eps);
  c.weight_decay = a.num("weightDecay", slot::weightDecay);
  c.momentum = a.num("momentum", slot::momentum);
  c.dampening = a.num("dampening", slot::dampening);
  c.nesterov = a.flag("nesterov", slot::nesterov, false);
  c.clip_norm = a.num("clipNorm", slot::clipNorm);
  return c;
}

template <class T, class A>
void batch_of(const A& a, const ModelSpec& s, bool need_query, BatchArgs<T>& out) {
  const bool ce = s.loss == Loss::CrossEntropy;
  BatchValues v;
  v.s_off = a.val("supportOffsets", pos::supportOffsets);
  v.xs = a.val("xs", pos::xs);
  v.ys = a.val(ce ? "ysLabels" : "ys", pos::ys);
  if (need_query) {
    v.q_off = a.val("queryOffsets", pos::queryOffsets);
    v.xq = a.val("xq", pos::xq);
    v.yq = a.val(ce ? "yqLabels" : "yq", pos::yq);
  }
  batch_values<T>(s, int_of(a, "tasks", slot::tasks, 1, INT64_C(1) << 31), v, need_query, out);
}

template <class T, class A>
Rates<T> rates_of(const A& a, const T* data, int64_t length, int steps, int64_t P) {
  return rates_checked<T>(data, length, int_of(a, "rateStepStride", slot::rateStepStride, 0, INT64_C(1) << 40),
                          int_of(a, "rateParamStride", slot::rateParamStride, 0, 1), steps, P);
}

// The arguments of a meta-gradient or adaptation call: the inner-loop config, o.params [P],
// the rates (o.rates with its strides) and the batch. Pointers refer to the JavaScript arrays.
template <class T>
struct MetaCallArgs {
  MetaConfig cfg;
  const T* theta = nullptr;
  Rates<T> rates;
  BatchArgs<T> batch;
};
template <class T>
void meta_call_arg(const Napi::Object& o, const ModelSpec& s, bool need_query, MetaCallArgs<T>& out) {
  out.cfg = meta_config_arg(o);
  out.theta = view<T>(o, "params", s.n_params).data;
  const View<T> rv = view<T>(o, "rates");
  out.rates = rates_arg<T>(o, rv.data, rv.length, out.cfg.steps, s.n_params);
  batch_arg<T>(o, s, need_query, out.batch);
}

}  // namespace maml::binding
