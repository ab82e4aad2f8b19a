// fewshot_norm.hpp: episode normalization of the Relation Networks' embeddings (fewshot.hpp):
// per embedding dimension, the task's support and query rows are standardized together, as
// training-mode torch.nn.BatchNorm1d(D, affine=False) over the n = ns + nq rows:
//   mu_d = (1/n) sum_i e_id;  var_d = (1/n) sum_i (e_id - mu_d)^2 (biased);
//   inv_d = 1 / sqrt(var_d + eps), eps = 1e-5;  x_id = (e_id - mu_d) inv_d.
// No learned scale and shift: the relation module's first layer is linear and would absorb
// them (it can scale and shift the query and class halves separately).
// Backward (the standard one), from g_i = d loss / d x_i:
//   d loss / d e_id = inv_d (g_id - (1/n) sum_j g_jd - x_id (1/n) sum_j g_jd x_jd).
// The variance takes two passes (mean first), for float32 accuracy. Plain loops on T.
#pragma once
#include <cmath>
#include <cstdint>

namespace maml {

constexpr double kEpisodeNormEps = 1e-5;

// xs [ns, D], xq [nq, D] (OVERWRITTEN) = the standardized rows of es [ns, D] and eq [nq, D];
// mean [D] and inv [D] (OVERWRITTEN) the statistics. ns + nq >= 1.
template <class T>
void episode_norm_forward(const T* es, int64_t ns, const T* eq, int64_t nq, int64_t D, T* xs, T* xq, T* mean,
                          T* inv) {
  const T inv_n = T(1) / T(static_cast<double>(ns + nq));
  for (int64_t d = 0; d < D; ++d) mean[d] = 0;
  for (int64_t i = 0; i < ns; ++i)
    for (int64_t d = 0; d < D; ++d) mean[d] += es[i * D + d];
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t d = 0; d < D; ++d) mean[d] += eq[i * D + d];
  for (int64_t d = 0; d < D; ++d) {
    mean[d] *= inv_n;
    inv[d] = 0;  // the sum of squared deviations first
  }
  for (int64_t i = 0; i < ns; ++i)
    for (int64_t d = 0; d < D; ++d) {
      const T c = es[i * D + d] - mean[d];
      xs[i * D + d] = c;
      inv[d] += c * c;
    }
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t d = 0; d < D; ++d) {
      const T c = eq[i * D + d] - mean[d];
      xq[i * D + d] = c;
      inv[d] += c * c;
    }
  for (int64_t d = 0; d < D; ++d) inv[d] = T(1) / std::sqrt(inv[d] * inv_n + T(kEpisodeNormEps));
  for (int64_t i = 0; i < ns; ++i)
    for (int64_t d = 0; d < D; ++d) xs[i * D + d] *= inv[d];
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t d = 0; d < D; ++d) xq[i * D + d] *= inv[d];
}

// In place: gs [ns, D], gq [nq, D] hold d loss / d(standardized rows) and become d loss /
// d(es, eq). xs, xq, inv: the forward pass's outputs; sum_g, sum_gx [D]: scratch.
template <class T>
void episode_norm_backward(const T* xs, int64_t ns, const T* xq, int64_t nq, int64_t D, const T* inv, T* gs, T* gq,
                           T* sum_g, T* sum_gx) {
  const T inv_n = T(1) / T(static_cast<double>(ns + nq));
  for (int64_t d = 0; d < D; ++d) sum_g[d] = sum_gx[d] = 0;
  for (int64_t i = 0; i < ns; ++i)
    for (int64_t d = 0; d < D; ++d) {
      sum_g[d] += gs[i * D + d];
      sum_gx[d] += gs[i * D + d] * xs[i * D + d];
    }
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t d = 0; d < D; ++d) {
      sum_g[d] += gq[i * D + d];
      sum_gx[d] += gq[i * D + d] * xq[i * D + d];
    }
  for (int64_t d = 0; d < D; ++d) {
    sum_g[d] *= inv_n;
    sum_gx[d] *= inv_n;
  }
  for (int64_t i = 0; i < ns; ++i)
    for (int64_t d = 0; d < D; ++d)
      gs[i * D + d] = inv[d] * (gs[i * D + d] - sum_g[d] - xs[i * D + d] * sum_gx[d]);
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t d = 0; d < D; ++d)
      gq[i * D + d] = inv[d] * (gq[i * D + d] - sum_g[d] - xq[i * D + d] * sum_gx[d]);
}

}  // namespace maml
