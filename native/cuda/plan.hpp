// plan.hpp: host-side translation of the core's model and settings into the plain structs of
// task_kernel.hpp, with the size checks the kernels rely on (32-bit indices inside a layer).
// Host code only; used by the host test entry (binding/cuda_host.cc) and the CUDA learner.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/meta.hpp"
#include "core/model.hpp"
#include "task_kernel.hpp"

namespace maml::cuda {

inline KModel make_kmodel(const ModelSpec& s) {
  const int L = s.layers();
  MAML_CHECK(L <= kMaxLayers, Unsupported,
             "the CUDA kernels support at most " + std::to_string(kMaxLayers) + " layers, got " + std::to_string(L));
  MAML_CHECK(s.n_params < (INT64_C(1) << 31), TooLarge, "the CUDA kernels need fewer than 2^31 parameters");
  KModel m;
  m.L = L;
  m.act = static_cast<int>(s.act);
  m.loss = static_cast<int>(s.loss);
  m.P = static_cast<int>(s.n_params);
  m.head_begin = static_cast<int>(s.head_begin());
  m.max_width = static_cast<int>(s.max_width);
  for (int l = 0; l <= L; ++l) m.dims[l] = static_cast<int>(s.dims[l]);
  for (int l = 1; l <= L; ++l) {
    m.w_off[l] = static_cast<int>(s.w_off[l]);
    m.b_off[l] = static_cast<int>(s.b_off[l]);
    m.sum_width += m.dims[l];
  }
  return m;
}

template <class T>
KConfig make_kconfig(const MetaConfig& cfg, const Rates<T>& rates) {
  KConfig c;
  c.algo = static_cast<int>(cfg.algo);
  c.steps = cfg.steps;
  c.want_rate_grad = cfg.want_rate_grad ? 1 : 0;
  MAML_CHECK(!cfg.want_rate_grad || rates.length < (INT64_C(1) << 31), TooLarge, "too many learned rates");
  c.R = cfg.want_rate_grad ? static_cast<int>(rates.length) : 0;
  c.rate_step_stride = rates.step_stride;
  c.rate_param_stride = rates.param_stride;
  return c;
}

// The largest support or query set of a batch. Checks that the kernels' int32 indices cannot
// overflow: a pass's n * width, and backward_pass's loop over a layer's parameters and then its
// input deltas (n_par + n * d_in, with n_par <= P).
inline int max_rows(const KModel& m, const int64_t* s_off, const int64_t* q_off, int64_t tasks) {
  int64_t n = 0;
  for (int64_t t = 0; t < tasks; ++t) n = std::max({n, s_off[t + 1] - s_off[t], q_off[t + 1] - q_off[t]});
  const int64_t widest = std::max<int64_t>(m.sum_width, static_cast<int64_t>(m.dims[0]) * m.max_width);
  MAML_CHECK(n < (INT64_C(1) << 31) && n * std::max<int64_t>(widest, 1) + m.P < (INT64_C(1) << 31), TooLarge,
             "a task has too many samples for the CUDA kernels (" + std::to_string(n) + ")");
  return static_cast<int>(n);
}

}  // namespace maml::cuda
