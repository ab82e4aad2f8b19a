// fast.hpp: the fast float32 CPU path. Same contract as the plain-loop drivers of
// core/batch.hpp (which stay the reference); per-task work runs in native/cpu/fast_mlp.hpp
// kernels compiled for AVX-512, AVX2 and baseline x86-64, chosen at run time.
#pragma once
#include "core/batch.hpp"

namespace maml::cpu {

// Mean meta-gradient of a batch: as core meta_gradient_batch<float>.
double fast_meta_gradient_batch(const ModelSpec& s, const MetaConfig& cfg, const float* theta,
                                const Rates<float>& rates, const BatchData<float>& batch, float* grad,
                                float* rate_grad);

// Adapted parameters [B, P]: as core adapt_batch<float>.
void fast_adapt_batch(const ModelSpec& s, const MetaConfig& cfg, const float* theta, const Rates<float>& rates,
                      const BatchData<float>& batch, float* adapted);

// The instruction set the fast kernels run with on this machine: "avx512", "avx2" or "baseline".
const char* fast_isa();

}  // namespace maml::cpu
