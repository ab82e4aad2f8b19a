// args.cc: see args.hpp.
#include "args.hpp"

#include <cmath>
#include <new>

namespace maml::binding {

Napi::Error make_error(const Napi::Env& env, Code code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code_name(code)));
  return err;
}

Napi::Value guard(const Napi::Env& env, const std::function<Napi::Value()>& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    throw make_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, Code::OutOfMemory, "out of memory: a native allocation failed");
  } catch (const std::length_error&) {
    throw make_error(env, Code::TooLarge, "a native buffer would exceed the maximum size");
  } catch (const std::exception& e) {
    throw make_error(env, Code::Internal, std::string("internal error: ") + e.what());
  }
}

Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i) {
  MAML_CHECK(info.Length() > i && info[i].IsObject(), InvalidArgument, "expected an options object");
  return info[i].As<Napi::Object>();
}

bool has(const Napi::Object& o, const char* key) {
  if (!o.Has(key)) return false;
  const Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

double number(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  MAML_CHECK(v.IsNumber(), InvalidArgument, std::string(key) + ": expected a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t integer(const Napi::Object& o, const char* key, int64_t lo, int64_t hi) {
  const double d = number(o, key);
  MAML_CHECK(std::isfinite(d) && d == std::floor(d) && d >= static_cast<double>(lo) && d <= static_cast<double>(hi),
             InvalidArgument,
             std::string(key) + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int64_t>(d);
}

bool boolean(const Napi::Object& o, const char* key, bool fallback) {
  if (!has(o, key)) return fallback;
  const Napi::Value v = o.Get(key);
  MAML_CHECK(v.IsBoolean(), InvalidArgument, std::string(key) + ": expected a boolean");
  return v.As<Napi::Boolean>().Value();
}

template <>
napi_typedarray_type typed_kind<float>() { return napi_float32_array; }
template <>
napi_typedarray_type typed_kind<double>() { return napi_float64_array; }
template <>
napi_typedarray_type typed_kind<int32_t>() { return napi_int32_array; }

static const char* kind_name(napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_int32_array: return "Int32Array";
    default: return "another typed array";
  }
}

template <class T>
View<T> view(const Napi::Object& o, const char* key, int64_t expected) {
  const Napi::Value v = o.Get(key);
  MAML_CHECK(v.IsTypedArray(), InvalidArgument,
             std::string(key) + ": expected a " + kind_name(typed_kind<T>()));
  const Napi::TypedArray ta = v.As<Napi::TypedArray>();
  MAML_CHECK(ta.TypedArrayType() == typed_kind<T>(), InvalidArgument,
             std::string(key) + ": expected a " + kind_name(typed_kind<T>()) + ", got a " +
                 kind_name(ta.TypedArrayType()));
  View<T> out;
  out.length = static_cast<int64_t>(ta.ElementLength());
  MAML_CHECK(expected < 0 || out.length == expected, ShapeMismatch,
             std::string(key) + ": expected length " + std::to_string(expected) + ", got " +
                 std::to_string(out.length));
  out.data = reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  return out;
}
template View<float> view<float>(const Napi::Object&, const char*, int64_t);
template View<double> view<double>(const Napi::Object&, const char*, int64_t);
template View<int32_t> view<int32_t>(const Napi::Object&, const char*, int64_t);

bool is_float64(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  MAML_CHECK(v.IsTypedArray(), InvalidArgument, std::string(key) + ": expected a Float32Array or Float64Array");
  const auto t = v.As<Napi::TypedArray>().TypedArrayType();
  MAML_CHECK(t == napi_float32_array || t == napi_float64_array, InvalidArgument,
             std::string(key) + ": expected a Float32Array or Float64Array");
  return t == napi_float64_array;
}

ModelSpec spec_arg(const Napi::Object& o) {
  const View<int32_t> layers = view<int32_t>(o, "layers");
  MAML_CHECK(layers.length >= 2 && layers.length <= 1024, InvalidArgument, "layers: expected 2 to 1024 widths");
  std::vector<int64_t> dims(layers.data, layers.data + layers.length);
  return make_spec(dims, static_cast<int>(integer(o, "activation", 0, 1)), static_cast<int>(integer(o, "loss", 0, 2)));
}

MetaConfig meta_config_arg(const Napi::Object& o) {
  MetaConfig c;
  c.algo = static_cast<Algorithm>(integer(o, "algorithm", 0, 4));
  c.steps = static_cast<int>(integer(o, "steps", 0, 100000));
  const View<double> w = view<double>(o, "weights", c.steps + 1);
  c.weights.assign(w.data, w.data + w.length);
  for (double x : c.weights) MAML_CHECK(std::isfinite(x), NonFinite, "weights: expected finite step weights");
  c.want_rate_grad = boolean(o, "wantRateGrad", false) && c.second_order();
  return c;
}

OptimConfig optim_config_arg(const Napi::Object& o) {
  OptimConfig c;
  c.kind = static_cast<int>(integer(o, "optKind", 0, 1));
  c.lr = number(o, "lr");
  c.beta1 = number(o, "beta1");
  c.beta2 = number(o, "beta2");
  c.eps = number(o, "eps");
  c.weight_decay = number(o, "weightDecay");
  c.momentum = number(o, "momentum");
  c.dampening = number(o, "dampening");
  c.nesterov = boolean(o, "nesterov", false);
  c.clip_norm = number(o, "clipNorm");
  return c;
}

std::vector<int64_t> offsets_arg(const Napi::Object& o, const char* key, int64_t tasks) {
  const View<int32_t> v = view<int32_t>(o, key, tasks + 1);
  std::vector<int64_t> off(v.data, v.data + v.length);
  MAML_CHECK(off[0] == 0, InvalidArgument, std::string(key) + ": offsets must start at 0");
  for (int64_t t = 0; t < tasks; ++t)
    MAML_CHECK(off[t + 1] >= off[t], InvalidArgument, std::string(key) + ": offsets must not decrease");
  return off;
}

template <class T>
static void targets_arg(const Napi::Object& o, const char* key, const char* label_key, const ModelSpec& s,
                        int64_t rows, Targets<T>& out) {
  if (s.loss == Loss::CrossEntropy) {
    const View<int32_t> y = view<int32_t>(o, label_key, rows);
    for (int64_t i = 0; i < rows; ++i)
      MAML_CHECK(y.data[i] >= 0 && y.data[i] < s.out_dim(), InvalidArgument,
                 std::string(label_key) + ": labels must lie in [0, " + std::to_string(s.out_dim()) + ")");
    out.labels = y.data;
  } else {
    out.y = view<T>(o, key, checked_mul(rows, s.out_dim(), key)).data;
  }
}

template <class T>
void batch_arg(const Napi::Object& o, const ModelSpec& s, bool need_query, BatchArgs<T>& out) {
  const int64_t B = integer(o, "tasks", 1, INT64_C(1) << 31);
  out.s_off = offsets_arg(o, "supportOffsets", B);
  out.data.tasks = B;
  out.data.s_off = out.s_off.data();
  const int64_t rs = out.s_off[B];
  out.data.xs = view<T>(o, "xs", checked_mul(rs, s.in_dim(), "xs")).data;
  targets_arg<T>(o, "ys", "ysLabels", s, rs, out.data.ys);
  if (need_query) {
    out.q_off = offsets_arg(o, "queryOffsets", B);
    const int64_t rq = out.q_off[B];
    out.data.xq = view<T>(o, "xq", checked_mul(rq, s.in_dim(), "xq")).data;
    targets_arg<T>(o, "yq", "yqLabels", s, rq, out.data.yq);
  } else {
    out.q_off.assign(static_cast<size_t>(B + 1), 0);
  }
  out.data.q_off = out.q_off.data();
}
template void batch_arg<float>(const Napi::Object&, const ModelSpec&, bool, BatchArgs<float>&);
template void batch_arg<double>(const Napi::Object&, const ModelSpec&, bool, BatchArgs<double>&);

template <class T>
Rates<T> rates_arg(const Napi::Object& o, const T* data, int64_t length, int steps, int64_t P) {
  Rates<T> r;
  r.data = data;
  r.length = length;
  r.step_stride = integer(o, "rateStepStride", 0, INT64_C(1) << 40);
  r.param_stride = integer(o, "rateParamStride", 0, 1);
  // the largest index used must lie inside the array
  const int64_t last = (steps > 0 ? (steps - 1) : 0) * r.step_stride + (P - 1) * r.param_stride;
  MAML_CHECK(length >= 1 && last < length, ShapeMismatch,
             "rates: " + std::to_string(length) + " entries do not cover " + std::to_string(steps) +
                 " steps of " + std::to_string(P) + " parameters");
  return r;
}
template Rates<float> rates_arg<float>(const Napi::Object&, const float*, int64_t, int, int64_t);
template Rates<double> rates_arg<double>(const Napi::Object&, const double*, int64_t, int, int64_t);

}  // namespace maml::binding
