// mlp.hpp: the MLP's forward pass, backward pass and Pearlmutter R-operator, in plain loops.
// This is the specification every faster kernel is tested against.
//
// Shapes: n samples; x: [n, d0]; W_l: [d_l, d_{l-1}] row-major; b_l: [d_l];
//   z_l = a_{l-1} W_l^T + b_l        a_0 = x
//   a_l = f(z_l) for l < L           out = z_L (linear)
// Backward, from dz_L = dL/dout:
//   dW_l = dz_l^T a_{l-1}   db_l = sum_rows dz_l   dz_{l-1} = (dz_l W_l) * f'(z_{l-1})
// R-operator along a direction u = (uW_l, ub_l), with R(a_0) = 0:
//   R(z_l) = R(a_{l-1}) W_l^T + a_{l-1} uW_l^T + ub_l        R(a_l) = f'(z_l) * R(z_l)
//   R(dz_L) = (d^2 L / d out^2) R(out)
//   R(dz_{l-1}) = (R(dz_l) W_l + dz_l uW_l) * f'(z_{l-1}) + (dz_l W_l) * f''(z_{l-1}) * R(z_{l-1})
//   R(dW_l) = R(dz_l)^T a_{l-1} + dz_l^T R(a_{l-1})           R(db_l) = sum_rows R(dz_l)
// so that (R(dW), R(db)) = H u, the exact Hessian-vector product of the loss.
//
// f' and f'' are computed from the activation's output a: ReLU f' = [a > 0] (0 at z = 0, as
// PyTorch), f'' = 0; tanh f' = 1 - a^2, f'' = -2 a (1 - a^2).
//
// Accumulation rule: every gradient, Hessian-vector product and output array is OVERWRITTEN.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "loss.hpp"
#include "model.hpp"

namespace maml {

// Scratch memory for one pass over n samples, sized by reserve() and reused.
template <class T>
struct MlpWork {
  std::vector<std::vector<T>> act;    // act[l]: a_l [n, d_l] for l = 1..L-1; act[L]: out [n, dL]
  std::vector<std::vector<T>> r_pre;  // r_pre[l]: R(z_l) [n, d_l]; r_pre[L]: R(out)
  std::vector<std::vector<T>> r_act;  // r_act[l]: R(a_l) [n, d_l], l = 1..L-1
  std::vector<T> dz, dz_next, rdz, rdz_next;  // [n, max_width] each, backward ping-pong
  int64_t capacity = -1;
  std::vector<int64_t> dims;  // the widths the buffers are sized for

  void reserve(const ModelSpec& s, int64_t n, bool with_r) {
    const int L = s.layers();
    if (dims != s.dims) {
      dims = s.dims;
      act.assign(L + 1, {});
      r_pre.assign(L + 1, {});
      r_act.assign(L + 1, {});
      capacity = -1;
    }
    const bool need_r = with_r && (r_pre[L].size() < static_cast<size_t>(n * s.dims[L]));
    if (n <= capacity && !need_r) return;
    const int64_t cap = n > capacity ? n : capacity;
    for (int l = 1; l <= L; ++l) {
      const size_t sz = static_cast<size_t>(checked_mul(cap, s.dims[l], "activations"));
      act[l].resize(sz);
      if (with_r) {
        r_pre[l].resize(sz);
        if (l < L) r_act[l].resize(sz);
      }
    }
    const size_t w = static_cast<size_t>(checked_mul(cap, s.max_width > s.in_dim() ? s.max_width : s.in_dim(), "deltas"));
    dz.resize(w);
    dz_next.resize(w);
    if (with_r) {
      rdz.resize(w);
      rdz_next.resize(w);
    }
    capacity = cap;
  }
};

template <class T>
inline T act_f(Activation a, T z) {
  return a == Activation::ReLU ? (z > T(0) ? z : T(0)) : std::tanh(z);
}
template <class T>
inline T act_d1(Activation a, T y) {  // f' from the output y = f(z)
  return a == Activation::ReLU ? (y > T(0) ? T(1) : T(0)) : T(1) - y * y;
}
template <class T>
inline T act_d2(Activation a, T y) {  // f'' from the output y = f(z)
  return a == Activation::ReLU ? T(0) : T(-2) * y * (T(1) - y * y);
}

// Forward pass: fills work.act[1..L]; returns a pointer to out [n, dL].
template <class T>
const T* mlp_forward(const ModelSpec& s, const T* theta, const T* x, int64_t n, MlpWork<T>& work) {
  const int L = s.layers();
  work.reserve(s, n, false);
  const T* in = x;
  for (int l = 1; l <= L; ++l) {
    const int64_t din = s.dims[l - 1], dout = s.dims[l];
    const T* W = theta + s.w_off[l];
    const T* b = theta + s.b_off[l];
    T* z = work.act[l].data();
    for (int64_t i = 0; i < n; ++i) {
      const T* xi = in + i * din;
      for (int64_t j = 0; j < dout; ++j) {
        const T* wj = W + j * din;
        T acc = b[j];
        for (int64_t k = 0; k < din; ++k) acc += xi[k] * wj[k];
        z[i * dout + j] = l < L ? act_f(s.act, acc) : acc;
      }
    }
    in = z;
  }
  return work.act[L].data();
}

// R-forward pass along u (after mlp_forward on the same inputs): fills r_pre and r_act.
template <class T>
void mlp_r_forward(const ModelSpec& s, const T* theta, const T* u, const T* x, int64_t n, MlpWork<T>& work) {
  const int L = s.layers();
  work.reserve(s, n, true);
  const T* in = x;
  const T* r_in = nullptr;  // R(a_0) = 0
  for (int l = 1; l <= L; ++l) {
    const int64_t din = s.dims[l - 1], dout = s.dims[l];
    const T* W = theta + s.w_off[l];
    const T* uW = u + s.w_off[l];
    const T* ub = u + s.b_off[l];
    T* rz = work.r_pre[l].data();
    for (int64_t i = 0; i < n; ++i) {
      const T* xi = in + i * din;
      const T* rxi = r_in ? r_in + i * din : nullptr;
      for (int64_t j = 0; j < dout; ++j) {
        const T* wj = W + j * din;
        const T* uwj = uW + j * din;
        T acc = ub[j];
        for (int64_t k = 0; k < din; ++k) acc += xi[k] * uwj[k];
        if (rxi)
          for (int64_t k = 0; k < din; ++k) acc += rxi[k] * wj[k];
        rz[i * dout + j] = acc;
      }
    }
    if (l < L) {
      const T* a = work.act[l].data();
      T* ra = work.r_act[l].data();
      for (int64_t i = 0; i < n * dout; ++i) ra[i] = act_d1(s.act, a[i]) * rz[i];
      r_in = ra;
    }
    in = work.act[l].data();
  }
}

// Backward pass from dz = dL/dout held in work.dz [n, dL] (after mlp_forward). Writes grad [P].
// If u != nullptr, also runs the R-backward pass from work.rdz = R(dL/dout) (after
// mlp_r_forward along u) and writes hv = H u [P]. grad may be nullptr when only hv is wanted.
template <class T>
void mlp_backward(const ModelSpec& s, const T* theta, const T* x, int64_t n, MlpWork<T>& work, T* grad,
                  const T* u, T* hv) {
  const int L = s.layers();
  for (int l = L; l >= 1; --l) {
    const int64_t din = s.dims[l - 1], dout = s.dims[l];
    const T* W = theta + s.w_off[l];
    const T* in = l > 1 ? work.act[l - 1].data() : x;
    const T* r_in = (u && l > 1) ? work.r_act[l - 1].data() : nullptr;
    const T* dz = work.dz.data();
    const T* rdz = work.rdz.data();
    // weight and bias gradients
    if (grad) {
      T* dW = grad + s.w_off[l];
      T* db = grad + s.b_off[l];
      for (int64_t j = 0; j < dout * din; ++j) dW[j] = 0;
      for (int64_t j = 0; j < dout; ++j) db[j] = 0;
      for (int64_t i = 0; i < n; ++i) {
        const T* xi = in + i * din;
        for (int64_t j = 0; j < dout; ++j) {
          const T g = dz[i * dout + j];
          T* dWj = dW + j * din;
          for (int64_t k = 0; k < din; ++k) dWj[k] += g * xi[k];
          db[j] += g;
        }
      }
    }
    if (u) {
      T* rdW = hv + s.w_off[l];
      T* rdb = hv + s.b_off[l];
      for (int64_t j = 0; j < dout * din; ++j) rdW[j] = 0;
      for (int64_t j = 0; j < dout; ++j) rdb[j] = 0;
      for (int64_t i = 0; i < n; ++i) {
        const T* xi = in + i * din;
        const T* rxi = r_in ? r_in + i * din : nullptr;
        for (int64_t j = 0; j < dout; ++j) {
          const T rg = rdz[i * dout + j];
          const T g = dz[i * dout + j];
          T* rdWj = rdW + j * din;
          for (int64_t k = 0; k < din; ++k) rdWj[k] += rg * xi[k];
          if (rxi)
            for (int64_t k = 0; k < din; ++k) rdWj[k] += g * rxi[k];
          rdb[j] += rg;
        }
      }
    }
    if (l == 1) break;
    // deltas of the layer below
    const T* a = work.act[l - 1].data();
    T* dn = work.dz_next.data();
    for (int64_t i = 0; i < n; ++i) {
      T* dni = dn + i * din;
      for (int64_t k = 0; k < din; ++k) dni[k] = 0;
      for (int64_t j = 0; j < dout; ++j) {
        const T g = dz[i * dout + j];
        const T* wj = W + j * din;
        for (int64_t k = 0; k < din; ++k) dni[k] += g * wj[k];
      }
    }
    if (u) {
      const T* uW = u + s.w_off[l];
      const T* rz = work.r_pre[l - 1].data();
      T* rdn = work.rdz_next.data();
      for (int64_t i = 0; i < n; ++i) {
        T* rdni = rdn + i * din;
        for (int64_t k = 0; k < din; ++k) rdni[k] = 0;
        for (int64_t j = 0; j < dout; ++j) {
          const T rg = rdz[i * dout + j];
          const T g = dz[i * dout + j];
          const T* wj = W + j * din;
          const T* uwj = uW + j * din;
          for (int64_t k = 0; k < din; ++k) rdni[k] += rg * wj[k] + g * uwj[k];
        }
        // R(dz_{l-1}) = R(da) f' + da f'' R(z), with da = dn before the f' product
        const T* ai = a + i * din;
        const T* rzi = rz + i * din;
        const T* dni = dn + i * din;
        for (int64_t k = 0; k < din; ++k)
          rdni[k] = rdni[k] * act_d1(s.act, ai[k]) + dni[k] * act_d2(s.act, ai[k]) * rzi[k];
      }
      work.rdz.swap(work.rdz_next);
    }
    for (int64_t i = 0; i < n * din; ++i) dn[i] *= act_d1(s.act, a[i]);
    work.dz.swap(work.dz_next);
  }
}

// Loss and its gradient at theta on (x, targets): forward, loss, backward. grad may be nullptr.
template <class T>
double loss_and_grad(const ModelSpec& s, const T* theta, const T* x, const Targets<T>& tg, int64_t n,
                     MlpWork<T>& work, T* grad) {
  if (n == 0) {
    if (grad)
      for (int64_t i = 0; i < s.n_params; ++i) grad[i] = 0;
    return 0.0;
  }
  const T* out = mlp_forward(s, theta, x, n, work);
  const double loss = loss_grad(s.loss, out, tg, n, s.out_dim(), grad ? work.dz.data() : nullptr);
  if (grad) mlp_backward<T>(s, theta, x, n, work, grad, nullptr, nullptr);
  return loss;
}

// Loss, gradient (if grad != nullptr) and Hessian-vector product hv = H u at theta.
template <class T>
double loss_grad_hvp(const ModelSpec& s, const T* theta, const T* x, const Targets<T>& tg, int64_t n,
                     const T* u, MlpWork<T>& work, T* grad, T* hv) {
  if (n == 0) {
    for (int64_t i = 0; i < s.n_params; ++i) {
      if (grad) grad[i] = 0;
      hv[i] = 0;
    }
    return 0.0;
  }
  const T* out = mlp_forward(s, theta, x, n, work);
  mlp_r_forward(s, theta, u, x, n, work);
  const int L = s.layers();
  const double loss = loss_grad(s.loss, out, tg, n, s.out_dim(), work.dz.data());
  loss_hess_vec(s.loss, out, tg, n, s.out_dim(), work.r_pre[L].data(), work.rdz.data());
  mlp_backward(s, theta, x, n, work, grad, u, hv);
  return loss;
}

// The plain-loop network as a policy for the meta-learning templates (meta.hpp): a faster
// implementation (native/cpu/fast_mlp.hpp) provides the same three members.
template <class T>
struct PlainNet {
  using Work = MlpWork<T>;
  // The reference recomputes each inner step's forward pass in its Hessian-vector product.
  static constexpr bool caches_steps = false;
  static double loss_and_grad(const ModelSpec& s, const T* theta, const T* x, const Targets<T>& tg, int64_t n,
                              Work& w, T* grad) {
    return maml::loss_and_grad(s, theta, x, tg, n, w, grad);
  }
  static double loss_grad_hvp(const ModelSpec& s, const T* theta, const T* x, const Targets<T>& tg, int64_t n,
                              const T* u, Work& w, T* grad, T* hv) {
    return maml::loss_grad_hvp(s, theta, x, tg, n, u, w, grad, hv);
  }
  // Elementwise passes of the meta-learning loop (out never aliases the inputs).
  static void sub_scaled(T* out, const T* x, T a, const T* y, int64_t n) {  // out = x - a y
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] - a * y[i];
  }
  static void scale(T* out, T a, const T* x, int64_t n) {  // out = a x
    for (int64_t i = 0; i < n; ++i) out[i] = a * x[i];
  }
};

}  // namespace maml
