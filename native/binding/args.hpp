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
bool has(const Napi::Object& o, const char* key);
double number(const Napi::Object& o, const char* key);
int64_t integer(const Napi::Object& o, const char* key, int64_t lo, int64_t hi);
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
View<T> view(const Napi::Object& o, const char* key, int64_t expected = -1);
bool is_float64(const Napi::Object& o, const char* key);

// model spec from o.layers (Int32Array), o.activation, o.loss.
ModelSpec spec_arg(const Napi::Object& o);
// inner-loop config from o.algorithm, o.steps, o.weights (Float64Array [S+1]), o.wantRateGrad.
MetaConfig meta_config_arg(const Napi::Object& o);
OptimConfig optim_config_arg(const Napi::Object& o);

// Offsets [tasks + 1] from o[key] (Int32Array), checked: starts at 0, non-decreasing.
std::vector<int64_t> offsets_arg(const Napi::Object& o, const char* key, int64_t tasks);

// The batch arrays read from o: xs, ys | ysLabels, xq, yq | yqLabels, with CSR offsets.
// Pointers refer to the JavaScript arrays (valid while the call lasts).
template <class T>
struct BatchArgs {
  std::vector<int64_t> s_off, q_off;
  BatchData<T> data;
};
template <class T>
void batch_arg(const Napi::Object& o, const ModelSpec& s, bool need_query, BatchArgs<T>& out);

// Rates from o.rates with o.rateStepStride / o.rateParamStride, checked against S and P.
template <class T>
Rates<T> rates_arg(const Napi::Object& o, const T* data, int64_t length, int steps, int64_t P);

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
