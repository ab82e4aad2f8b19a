// optim.hpp: meta-optimizers on the flat parameter vector, with PyTorch's semantics.
//
// Adam (torch.optim.Adam, foreach=False, amsgrad=False, L2 weight decay added to the gradient):
//   g += wd p;  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// SGD (torch.optim.SGD): g += wd p; buf = g at t = 1, else momentum buf + (1 - dampening) g;
//   d = nesterov ? g + momentum buf : buf (or g without momentum);  p -= lr d
// Clipping (torch.nn.utils.clip_grad_norm_): g *= min(1, max_norm / (||g||_2 + 1e-6)).
//
// Accumulation rule: params and the state vectors are updated IN PLACE; grad may be modified.
#pragma once
#include <cmath>
#include <cstdint>

#include "status.hpp"

namespace maml {

struct OptimConfig {
  int kind = 0;  // 0 = adam, 1 = sgd
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0, dampening = 0.0;
  bool nesterov = false;
  double clip_norm = 0.0;  // 0 = no clipping
};

// Returns the gradient's L2 norm before clipping.
template <class T>
double clip_grad_norm(T* grad, int64_t n, double max_norm) {
  double sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sq += static_cast<double>(grad[i]) * static_cast<double>(grad[i]);
  const double norm = std::sqrt(sq);
  if (max_norm > 0.0) {
    double coef = max_norm / (norm + 1e-6);
    if (coef > 1.0) coef = 1.0;
    const T c = static_cast<T>(coef);
    for (int64_t i = 0; i < n; ++i) grad[i] *= c;
  }
  return norm;
}

// One update at step t (1-based: the first update is t = 1).
template <class T>
void optimizer_step(const OptimConfig& c, T* p, T* grad, T* m, T* v, int64_t n, int64_t t) {
  MAML_ASSERT(t >= 1);
  if (c.weight_decay != 0.0) {
    const T wd = static_cast<T>(c.weight_decay);
    for (int64_t i = 0; i < n; ++i) grad[i] += wd * p[i];
  }
  if (c.kind == 0) {
    const T one_minus_b1 = static_cast<T>(1.0 - c.beta1);
    const T b2 = static_cast<T>(c.beta2), one_minus_b2 = static_cast<T>(1.0 - c.beta2);
    const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
    const T step_size = static_cast<T>(c.lr / bc1);
    const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
    const T eps = static_cast<T>(c.eps);
    for (int64_t i = 0; i < n; ++i) {
      const T g = grad[i];
      m[i] += one_minus_b1 * (g - m[i]);
      v[i] = v[i] * b2 + one_minus_b2 * g * g;
      const T denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      p[i] -= step_size * (m[i] / denom);
    }
  } else {
    const T lr = static_cast<T>(c.lr);
    const T mom = static_cast<T>(c.momentum), damp = static_cast<T>(1.0 - c.dampening);
    for (int64_t i = 0; i < n; ++i) {
      T d = grad[i];
      if (c.momentum != 0.0) {
        m[i] = t == 1 ? d : mom * m[i] + damp * d;
        d = c.nesterov ? d + mom * m[i] : m[i];
      }
      p[i] -= lr * d;
    }
  }
}

}  // namespace maml
