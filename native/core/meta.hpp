// meta.hpp: the inner loop of one task and the exact reverse-mode meta-gradient through it.
//
// Inner loop (DESIGN.md §3), from theta_0 = theta, s = 0..S-1:
//   g_s = grad L_sup(theta_s)                   theta_{s+1} = theta_s - alpha_s * mask * g_s
// Outer loss of the task: sum_s w_s L_qry(theta_s). Reverse pass (H_s = Hessian of L_sup at theta_s):
//   v_S = w_S grad L_qry(theta_S)
//   for s = S-1..0:  dalpha_s += -mask * g_s * v_{s+1}
//                    v_s = v_{s+1} - H_s (alpha_s * mask * v_{s+1}) + w_s grad L_qry(theta_s)
//   grad_theta = v_0
// fomaml drops the H term; reptile returns theta - theta_S.
//
// Rates: alpha(s, i) = rates[s * step_stride + i * param_stride]; this one indexing covers a
// scalar per step (1, 0), a vector per parameter shared by the steps (0, 1), and a vector per
// step and parameter (P, 1). The rate gradient uses the same indexing.
//
// Accumulation rule: task_meta_gradient OVERWRITES grad [P] and ACCUMULATES into rate_grad
// (the caller zeroes it); it returns the task's outer loss.
#pragma once
#include <cstdint>
#include <vector>

#include "mlp.hpp"

namespace maml {

enum class Algorithm : int { MAML = 0, FOMAML = 1, Reptile = 2, MetaSGD = 3, ANIL = 4 };

template <class T>
struct Rates {
  const T* data = nullptr;
  int64_t step_stride = 0;
  int64_t param_stride = 0;
  int64_t length = 0;  // number of entries in data
  T at(int64_t s, int64_t i) const { return data[s * step_stride + i * param_stride]; }
  int64_t index(int64_t s, int64_t i) const { return s * step_stride + i * param_stride; }
};

struct MetaConfig {
  Algorithm algo = Algorithm::MAML;
  int steps = 1;                 // S
  std::vector<double> weights;   // w_0..w_S (S + 1 entries)
  bool want_rate_grad = false;   // second-order algorithms only
  bool head_only() const { return algo == Algorithm::ANIL; }
  bool second_order() const {
    return algo == Algorithm::MAML || algo == Algorithm::MetaSGD || algo == Algorithm::ANIL;
  }
};

template <class T>
struct TaskData {
  const T* xs = nullptr;
  Targets<T> ys;
  int64_t ns = 0;
  const T* xq = nullptr;
  Targets<T> yq;
  int64_t nq = 0;
};

// Scratch memory of one task, reused across tasks by one worker. Net is the network
// implementation: PlainNet (the plain-loop reference) or a faster one with the same members.
template <class T, class Net = PlainNet<T>>
struct TaskWork {
  typename Net::Work mlp;
  std::vector<T> thetas;  // [(S+1), P]: theta_0..theta_S
  std::vector<T> grads;   // [S, P]: g_0..g_{S-1}
  std::vector<T> u, hv, gq;  // (the backward vector v lives in the caller's grad)
  void reserve(int64_t P, int S) {
    thetas.resize(static_cast<size_t>(checked_mul(S + 1, P, "inner-loop parameters")));
    grads.resize(static_cast<size_t>(checked_mul(S > 0 ? S : 1, P, "inner-loop gradients")));
    u.resize(P);
    hv.resize(P);
    gq.resize(P);
  }
};

// <a, b> with 16 partial sums (a fixed summation order that vectorizes).
template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T part[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) part[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) part[i & 15] += a[i] * b[i];
  T sum = 0;
  for (int j = 0; j < 16; ++j) sum += part[j];
  return sum;
}

// The inner loop: fills work.thetas[1..S] (theta_0 = theta; thetas[0] only when S = 0) and
// work.grads[0..S-1].
template <class T, class Net>
void inner_loop(const ModelSpec& s, const MetaConfig& cfg, const T* theta, const Rates<T>& rates,
                const T* xs, const Targets<T>& ys, int64_t ns, TaskWork<T, Net>& w) {
  const int64_t P = s.n_params;
  const int S = cfg.steps;
  const int64_t begin = cfg.head_only() ? s.head_begin() : 0;
  T* th = w.thetas.data();  // theta_0 is theta itself; it is copied only when S = 0 (callers read theta_S)
  if (S == 0)
    for (int64_t i = 0; i < P; ++i) th[i] = theta[i];
  for (int st = 0; st < S; ++st) {
    const T* cur = st == 0 ? theta : th + st * P;
    T* next = th + (st + 1) * P;
    T* g = w.grads.data() + st * P;
    // (first-order algorithms have no Hessian-vector product to keep the step's passes for)
    bool cached = false;
    if constexpr (Net::caches_steps)
      if (cfg.second_order()) {
        Net::loss_and_grad_cached(s, cur, xs, ys, ns, w.mlp, g, st);
        cached = true;
      }
    if (!cached) Net::loss_and_grad(s, cur, xs, ys, ns, w.mlp, g);
    for (int64_t i = 0; i < begin; ++i) next[i] = cur[i];
    const T* a = rates.data + st * rates.step_stride;
    if (rates.param_stride == 0) {
      Net::sub_scaled(next + begin, cur + begin, a[0], g + begin, P - begin);
    } else {
      for (int64_t i = begin; i < P; ++i) next[i] = cur[i] - a[i] * g[i];
    }
  }
}

template <class T, class Net>
double task_meta_gradient(const ModelSpec& s, const MetaConfig& cfg, const T* theta, const Rates<T>& rates,
                          const TaskData<T>& task, TaskWork<T, Net>& w, T* grad, T* rate_grad) {
  const int64_t P = s.n_params;
  const int S = cfg.steps;
  w.reserve(P, S);
  inner_loop(s, cfg, theta, rates, task.xs, task.ys, task.ns, w);
  const T* th = w.thetas.data();
  const auto theta_at = [&](int st) { return st == 0 ? theta : th + static_cast<int64_t>(st) * P; };
  const T* thS = theta_at(S);

  if (cfg.algo == Algorithm::Reptile) {
    Net::sub_scaled(grad, theta, T(1), thS, P);  // theta - theta_S (1 * x is exact)
    if (task.nq > 0) return Net::loss_and_grad(s, thS, task.xq, task.yq, task.nq, w.mlp, nullptr);
    return Net::loss_and_grad(s, thS, task.xs, task.ys, task.ns, w.mlp, nullptr);
  }

  // v_S = w_S grad L_qry(theta_S). v lives in grad (the result), and a weight of 1 needs no
  // scaling pass: both skip copies only, the arithmetic is the same.
  double loss = 0.0;
  T* v = grad;
  const double wS = cfg.weights[S];
  if (wS == 1.0) {
    loss += Net::loss_and_grad(s, thS, task.xq, task.yq, task.nq, w.mlp, v);
  } else if (wS != 0.0) {
    loss += wS * Net::loss_and_grad(s, thS, task.xq, task.yq, task.nq, w.mlp, w.gq.data());
    for (int64_t i = 0; i < P; ++i) v[i] = T(wS) * w.gq[i];
  } else {
    for (int64_t i = 0; i < P; ++i) v[i] = 0;
  }
  const int64_t begin = cfg.head_only() ? s.head_begin() : 0;
  for (int st = S - 1; st >= 0; --st) {
    const T* cur = theta_at(st);
    if (cfg.second_order()) {
      const T* g = w.grads.data() + static_cast<int64_t>(st) * P;
      T* u = w.u.data();
      for (int64_t i = 0; i < begin; ++i) u[i] = 0;
      const T* a = rates.data + st * rates.step_stride;
      // A network that caches steps adds H u into v itself: it gets u = -alpha mask v (sign -1).
      constexpr T sign = Net::caches_steps ? T(-1) : T(1);
      if (rates.param_stride == 0) {  // one rate for the step: dalpha_s = -<g_s, v_{s+1}> over the adapted part
        Net::scale(u + begin, sign * a[0], v + begin, P - begin);
        if (cfg.want_rate_grad) rate_grad[st * rates.step_stride] -= dot(g + begin, v + begin, P - begin);
      } else {
        for (int64_t i = begin; i < P; ++i) u[i] = (sign * a[i]) * v[i];
        if (cfg.want_rate_grad) {
          T* dr = rate_grad + st * rates.step_stride;
          for (int64_t i = begin; i < P; ++i) dr[i] -= g[i] * v[i];
        }
      }
      if constexpr (Net::caches_steps) {  // reuses the inner step's forward pass and deltas; v += H u
        Net::hvp_cached_add(s, cur, task.xs, task.ys, task.ns, u, w.mlp, v, st);
      } else {
        Net::loss_grad_hvp(s, cur, task.xs, task.ys, task.ns, u, w.mlp, nullptr, w.hv.data());
        for (int64_t i = 0; i < P; ++i) v[i] -= w.hv[i];
      }
    }
    const double ws = cfg.weights[st];
    if (ws != 0.0) {
      loss += ws * Net::loss_and_grad(s, cur, task.xq, task.yq, task.nq, w.mlp, w.gq.data());
      for (int64_t i = 0; i < P; ++i) v[i] += T(ws) * w.gq[i];
    }
  }
  return loss;
}

}  // namespace maml
