// fast_fewshot.hpp: the fast float32 path of the few-shot learners. Same contract as the
// plain-loop core fewshot_batch<float> (core/fewshot_batch.hpp, the reference): the embedding
// and relation MLPs run on fast_mlp.hpp's kernels (AVX-512, AVX2 or baseline, chosen at run
// time); the heads run the core's code.
#pragma once
#include "core/fewshot_batch.hpp"

namespace maml::cpu {

// Mean loss over tasks; grad [P] (PyTorch layout, OVERWRITTEN, may be nullptr) = the mean
// gradient; task_loss, task_acc [B] (may be nullptr).
double fast_fewshot_batch(const FewShotSpec& fs, const float* theta, const FewShotBatch<float>& b, float* grad,
                          double* task_loss, double* task_acc);

}  // namespace maml::cpu
