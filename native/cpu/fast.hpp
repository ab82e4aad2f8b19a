// fast.hpp: the fast float32 CPU path. Same contract as the plain-loop drivers of
// core/batch.hpp (which stay the reference); per-task work runs in native/cpu/fast_mlp.hpp
// kernels compiled for AVX-512, AVX2 and baseline x86-64, chosen at run time.
#pragma once
#include "core/batch.hpp"
#include "core/optim.hpp"

namespace maml::cpu {

// Mean meta-gradient of a batch: as core meta_gradient_batch<float>.
double fast_meta_gradient_batch(const ModelSpec& s, const MetaConfig& cfg, const float* theta,
                                const Rates<float>& rates, const BatchData<float>& batch, float* grad,
                                float* rate_grad);

// Adapted parameters [B, P]: as core adapt_batch<float>.
void fast_adapt_batch(const ModelSpec& s, const MetaConfig& cfg, const float* theta, const Rates<float>& rates,
                      const BatchData<float>& batch, float* adapted);

// Outputs [n, dL] of the network at theta (PyTorch layout) for x [n, d0]: as core mlp_forward,
// in row chunks on the fast kernels. A row's outputs do not depend on the other rows.
void fast_forward(const ModelSpec& s, const float* theta, const float* x, int64_t n, float* out);

// MetaLearner.step's clipping and update: as core clip_grad_norm and optimizer_step<float>, vectorized.
double fast_clip_grad_norm(float* grad, int64_t n, double max_norm);
void fast_optimizer_step(const OptimConfig& c, float* p, float* grad, float* m, float* v, int64_t n, int64_t t);

// The instruction set the fast kernels run with on this machine: "avx512", "avx2" or "baseline".
const char* fast_isa();

}  // namespace maml::cpu
