// fast_lanes.cc: lanes.hpp's lane groups, compiled for AVX-512 (16 tasks per group) and AVX2 +
// FMA (8 tasks per group). Its own translation unit: each version is one large flattened
// function, and apart from fast_meta.cc they compile in parallel.
#include "lanes.hpp"
#include "target.hpp"

namespace maml::cpu {

namespace {

MAML_TARGET("arch=x86-64-v4")
double lanes_v4(const FastLayout& f, const ModelSpec& s, const MetaConfig& cfg, const float* theta,
                const Rates<float>& rates, const BatchData<float>& batch, int64_t t0, int count, LaneWork<vf16>& w,
                float* grad, float* rate_grad) {
  return lane_group<vf16>(f, s, cfg, theta, rates, batch, t0, count, w, grad, rate_grad);
}

MAML_TARGET("arch=x86-64-v3")
double lanes_v3(const FastLayout& f, const ModelSpec& s, const MetaConfig& cfg, const float* theta,
                const Rates<float>& rates, const BatchData<float>& batch, int64_t t0, int count, LaneWork<vf>& w,
                float* grad, float* rate_grad) {
  return lane_group<vf>(f, s, cfg, theta, rates, batch, t0, count, w, grad, rate_grad);
}

}  // namespace

int lane_width(int level) {
#if MAML_X86_LEVELS
  return level == 4 ? 16 : level == 3 ? 8 : 0;
#else
  (void)level;
  return 0;
#endif
}

double lane_group_at(int level, const FastLayout& f, const ModelSpec& s, const MetaConfig& cfg, const float* theta,
                     const Rates<float>& rates, const BatchData<float>& batch, int64_t t0, int count, float* grad,
                     float* rate_grad) {
  MAML_ASSERT(count >= 1 && count <= lane_width(level));
  if (level == 4) {
    static thread_local LaneWork<vf16> w;
    return lanes_v4(f, s, cfg, theta, rates, batch, t0, count, w, grad, rate_grad);
  }
  static thread_local LaneWork<vf> w;
  return lanes_v3(f, s, cfg, theta, rates, batch, t0, count, w, grad, rate_grad);
}

}  // namespace maml::cpu
