// loss.hpp: the three losses, their gradients and their curvature, side by side.
//
// out: [n, m] network outputs (logits for the cross-entropies).
// Targets: y [n, m] real values (mse; binary-cross-entropy with 0/1 targets) or labels [n] in
// [0, m) (cross-entropy). Every loss is a mean, as PyTorch defines it: mse and
// binary-cross-entropy over all n*m elements, cross-entropy over the n samples.
//
// Accumulation rule: every function here OVERWRITES its output array. n = 0 gives loss 0 and a
// zero gradient (a task with no support samples does not move).
#pragma once
#include <cmath>
#include <cstdint>

#include "model.hpp"

namespace maml {

template <class T>
struct Targets {
  const T* y = nullptr;             // [n, m] for mse and binary-cross-entropy
  const int32_t* labels = nullptr;  // [n] for cross-entropy
};

template <class T>
inline Targets<T> offset_targets(const Targets<T>& t, int64_t row, int64_t m) {
  Targets<T> r;
  if (t.y) r.y = t.y + row * m;
  if (t.labels) r.labels = t.labels + row;
  return r;
}

template <class T>
inline T sigmoid(T z) {
  return z >= 0 ? T(1) / (T(1) + std::exp(-z)) : std::exp(z) / (T(1) + std::exp(z));
}

// Loss value; if dout != nullptr also dL/dout [n, m].
template <class T>
double loss_grad(Loss kind, const T* out, const Targets<T>& tg, int64_t n, int64_t m, T* dout) {
  if (n == 0) return 0.0;
  double total = 0.0;
  switch (kind) {
    case Loss::MSE: {
      const T scale = T(2) / T(static_cast<double>(n * m));
      for (int64_t i = 0; i < n * m; ++i) {
        const T e = out[i] - tg.y[i];
        total += static_cast<double>(e) * static_cast<double>(e);
        if (dout) dout[i] = scale * e;
      }
      return total / static_cast<double>(n * m);
    }
    case Loss::CrossEntropy: {
      const T inv_n = T(1) / T(static_cast<double>(n));
      for (int64_t i = 0; i < n; ++i) {
        const T* z = out + i * m;
        T zmax = z[0];
        for (int64_t j = 1; j < m; ++j) zmax = z[j] > zmax ? z[j] : zmax;
        T sum = 0;
        for (int64_t j = 0; j < m; ++j) sum += std::exp(z[j] - zmax);
        const T lse = zmax + std::log(sum);
        const int32_t y = tg.labels[i];
        total += static_cast<double>(lse - z[y]);
        if (dout) {
          T* d = dout + i * m;
          for (int64_t j = 0; j < m; ++j) d[j] = std::exp(z[j] - lse) * inv_n;
          d[y] -= inv_n;
        }
      }
      return total / static_cast<double>(n);
    }
    case Loss::BinaryCrossEntropy: {
      const T inv = T(1) / T(static_cast<double>(n * m));
      for (int64_t i = 0; i < n * m; ++i) {
        const T z = out[i], y = tg.y[i];
        // max(z, 0) - z*y + log(1 + exp(-|z|)), stable for any z
        total += static_cast<double>((z > 0 ? z : T(0)) - z * y + std::log1p(std::exp(-std::fabs(z))));
        if (dout) dout[i] = (sigmoid(z) - y) * inv;
      }
      return total / static_cast<double>(n * m);
    }
  }
  return total;
}

// rdout = (d^2 L / d out^2) r, the loss curvature applied to a tangent r [n, m] of the outputs.
template <class T>
void loss_hess_vec(Loss kind, const T* out, const Targets<T>& tg, int64_t n, int64_t m, const T* r, T* rdout) {
  if (n == 0) return;
  switch (kind) {
    case Loss::MSE: {
      const T scale = T(2) / T(static_cast<double>(n * m));
      for (int64_t i = 0; i < n * m; ++i) rdout[i] = scale * r[i];
      return;
    }
    case Loss::CrossEntropy: {
      // per row, H = (diag(p) - p p^T) / n
      const T inv_n = T(1) / T(static_cast<double>(n));
      for (int64_t i = 0; i < n; ++i) {
        const T* z = out + i * m;
        const T* ri = r + i * m;
        T* d = rdout + i * m;
        T zmax = z[0];
        for (int64_t j = 1; j < m; ++j) zmax = z[j] > zmax ? z[j] : zmax;
        T sum = 0;
        for (int64_t j = 0; j < m; ++j) sum += std::exp(z[j] - zmax);
        T pr = 0;
        for (int64_t j = 0; j < m; ++j) {
          d[j] = std::exp(z[j] - zmax) / sum;  // p_j
          pr += d[j] * ri[j];
        }
        for (int64_t j = 0; j < m; ++j) d[j] = d[j] * (ri[j] - pr) * inv_n;
      }
      return;
    }
    case Loss::BinaryCrossEntropy: {
      const T inv = T(1) / T(static_cast<double>(n * m));
      for (int64_t i = 0; i < n * m; ++i) {
        const T s = sigmoid(out[i]);
        rdout[i] = s * (T(1) - s) * r[i] * inv;
      }
      return;
    }
  }
}

}  // namespace maml
