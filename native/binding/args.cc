// args.cc: see args.hpp.
#include "args.hpp"

#include <cmath>
#include <new>
#include <string>

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

Napi::Value get(const Napi::Object& o, const char* name) { return o.Get(name); }

bool has(const Napi::Object& o, const char* key) {
  const Napi::Value v = get(o, key);
  return !v.IsUndefined() && !v.IsNull();
}

double number(const Napi::Object& o, const char* key) {
  const Napi::Value v = get(o, key);
  MAML_CHECK(v.IsNumber(), InvalidArgument, std::string(key) + ": expected a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t integer_value(double d, const char* key, int64_t lo, int64_t hi) {
  MAML_CHECK(std::isfinite(d) && d == std::floor(d) && d >= static_cast<double>(lo) && d <= static_cast<double>(hi),
             InvalidArgument,
             std::string(key) + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int64_t>(d);
}

int64_t integer(const Napi::Object& o, const char* key, int64_t lo, int64_t hi) {
  return integer_value(number(o, key), key, lo, hi);
}

bool boolean(const Napi::Object& o, const char* key, bool fallback) {
  const Napi::Value v = get(o, key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
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
View<T> view_value(const Napi::Value& v, const char* key, int64_t expected) {
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
template View<float> view_value<float>(const Napi::Value&, const char*, int64_t);
template View<double> view_value<double>(const Napi::Value&, const char*, int64_t);
template View<int32_t> view_value<int32_t>(const Napi::Value&, const char*, int64_t);

template <class T>
View<T> view(const Napi::Object& o, const char* key, int64_t expected) {
  return view_value<T>(get(o, key), key, expected);
}
template View<float> view<float>(const Napi::Object&, const char*, int64_t);
template View<double> view<double>(const Napi::Object&, const char*, int64_t);
template View<int32_t> view<int32_t>(const Napi::Object&, const char*, int64_t);

bool is_float64(const Napi::Object& o, const char* key) {
  const Napi::Value v = get(o, key);
  MAML_CHECK(v.IsTypedArray(), InvalidArgument, std::string(key) + ": expected a Float32Array or Float64Array");
  const auto t = v.As<Napi::TypedArray>().TypedArrayType();
  MAML_CHECK(t == napi_float32_array || t == napi_float64_array, InvalidArgument,
             std::string(key) + ": expected a Float32Array or Float64Array");
  return t == napi_float64_array;
}

ModelSpec spec_arg(const Napi::Object& o) { return spec_of(ObjectArgs{o}); }
MetaConfig meta_config_arg(const Napi::Object& o) { return meta_config_of(ObjectArgs{o}); }
OptimConfig optim_config_arg(const Napi::Object& o) { return optim_config_of(ObjectArgs{o}); }

std::vector<int64_t> offsets_value(const Napi::Value& v, const char* key, int64_t tasks) {
  const View<int32_t> o = view_value<int32_t>(v, key, tasks + 1);
  std::vector<int64_t> off(o.data, o.data + o.length);
  MAML_CHECK(off[0] == 0, InvalidArgument, std::string(key) + ": offsets must start at 0");
  for (int64_t t = 0; t < tasks; ++t)
    MAML_CHECK(off[t + 1] >= off[t], InvalidArgument, std::string(key) + ": offsets must not decrease");
  return off;
}

std::vector<int64_t> offsets_arg(const Napi::Object& o, const char* key, int64_t tasks) {
  return offsets_value(get(o, key), key, tasks);
}

// Targets of `rows` rows: class labels (Int32Array, checked) for cross-entropy, else values.
template <class T>
static void targets_value(const Napi::Value& v, const char* key, const ModelSpec& s, int64_t rows, Targets<T>& out) {
  if (s.loss == Loss::CrossEntropy) {
    const View<int32_t> y = view_value<int32_t>(v, key, rows);
    for (int64_t i = 0; i < rows; ++i)
      MAML_CHECK(y.data[i] >= 0 && y.data[i] < s.out_dim(), InvalidArgument,
                 std::string(key) + ": labels must lie in [0, " + std::to_string(s.out_dim()) + ")");
    out.labels = y.data;
  } else {
    out.y = view_value<T>(v, key, checked_mul(rows, s.out_dim(), key)).data;
  }
}

template <class T>
void batch_values(const ModelSpec& s, int64_t tasks, const BatchValues& v, bool need_query, BatchArgs<T>& out) {
  MAML_CHECK(tasks >= 1 && tasks <= (INT64_C(1) << 31), InvalidArgument, "tasks: expected an integer in [1, 2^31]");
  const bool ce = s.loss == Loss::CrossEntropy;
  out.s_off = offsets_value(v.s_off, "supportOffsets", tasks);
  out.data.tasks = tasks;
  out.data.s_off = out.s_off.data();
  const int64_t rs = out.s_off[tasks];
  out.data.xs = view_value<T>(v.xs, "xs", checked_mul(rs, s.in_dim(), "xs")).data;
  targets_value<T>(v.ys, ce ? "ysLabels" : "ys", s, rs, out.data.ys);
  if (need_query) {
    out.q_off = offsets_value(v.q_off, "queryOffsets", tasks);
    const int64_t rq = out.q_off[tasks];
    out.data.xq = view_value<T>(v.xq, "xq", checked_mul(rq, s.in_dim(), "xq")).data;
    targets_value<T>(v.yq, ce ? "yqLabels" : "yq", s, rq, out.data.yq);
  } else {
    out.q_off.assign(static_cast<size_t>(tasks + 1), 0);
  }
  out.data.q_off = out.q_off.data();
}
template void batch_values<float>(const ModelSpec&, int64_t, const BatchValues&, bool, BatchArgs<float>&);
template void batch_values<double>(const ModelSpec&, int64_t, const BatchValues&, bool, BatchArgs<double>&);

template <class T>
void batch_arg(const Napi::Object& o, const ModelSpec& s, bool need_query, BatchArgs<T>& out) {
  batch_of<T>(ObjectArgs{o}, s, need_query, out);
}
template void batch_arg<float>(const Napi::Object&, const ModelSpec&, bool, BatchArgs<float>&);
template void batch_arg<double>(const Napi::Object&, const ModelSpec&, bool, BatchArgs<double>&);

template <class T>
Rates<T> rates_checked(const T* data, int64_t length, int64_t step_stride, int64_t param_stride, int steps, int64_t P) {
  MAML_CHECK(step_stride >= 0 && step_stride <= (INT64_C(1) << 40) && (param_stride == 0 || param_stride == 1),
             InvalidArgument, "rates: step stride in [0, 2^40] and parameter stride 0 or 1 expected");
  Rates<T> r;
  r.data = data;
  r.length = length;
  r.step_stride = step_stride;
  r.param_stride = param_stride;
  // the largest index used must lie inside the array
  const int64_t last = (steps > 0 ? (steps - 1) : 0) * r.step_stride + (P - 1) * r.param_stride;
  MAML_CHECK(length >= 1 && last < length, ShapeMismatch,
             "rates: " + std::to_string(length) + " entries do not cover " + std::to_string(steps) +
                 " steps of " + std::to_string(P) + " parameters");
  return r;
}
template Rates<float> rates_checked<float>(const float*, int64_t, int64_t, int64_t, int, int64_t);
template Rates<double> rates_checked<double>(const double*, int64_t, int64_t, int64_t, int, int64_t);

template <class T>
Rates<T> rates_arg(const Napi::Object& o, const T* data, int64_t length, int steps, int64_t P) {
  return rates_of<T>(ObjectArgs{o}, data, length, steps, P);
}
template Rates<float> rates_arg<float>(const Napi::Object&, const float*, int64_t, int, int64_t);
template Rates<double> rates_arg<double>(const Napi::Object&, const double*, int64_t, int, int64_t);

}  // namespace maml::binding
