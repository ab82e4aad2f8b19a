// model.hpp: the model spec and the flat parameter layout.
//
// An MLP with layer widths d0..dL (L linear layers). Hidden layers apply the activation; the
// last layer is linear. Parameters are one flat vector theta of length
//   P = sum_l d_l * (d_{l-1} + 1)
// holding, for each layer l = 1..L in order, W_l as [d_l, d_{l-1}] row-major (PyTorch's
// nn.Linear.weight) followed by b_l [d_l]. Gradients, Adam moments, per-parameter rates and
// masks all use this layout.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "status.hpp"

namespace maml {

enum class Activation : int { ReLU = 0, Tanh = 1 };
enum class Loss : int { MSE = 0, CrossEntropy = 1, BinaryCrossEntropy = 2 };

struct ModelSpec {
  std::vector<int64_t> dims;  // d0..dL
  Activation act = Activation::ReLU;
  Loss loss = Loss::MSE;
  std::vector<int64_t> w_off;  // w_off[l]: offset of W_l, l = 1..L (index 0 unused)
  std::vector<int64_t> b_off;  // b_off[l]: offset of b_l
  int64_t n_params = 0;
  int64_t max_width = 0;  // max over d1..dL (hidden and output widths)

  int layers() const { return static_cast<int>(dims.size()) - 1; }
  int64_t in_dim() const { return dims.front(); }
  int64_t out_dim() const { return dims.back(); }
  // First parameter of the last layer: ANIL adapts [head_begin(), n_params).
  int64_t head_begin() const { return w_off[layers()]; }
};

// Widths above this are refused: a single layer would not fit any sane memory.
constexpr int64_t kMaxWidth = INT64_C(1) << 24;
// Parameter vectors above this are refused (2^31 floats = 8 GiB).
constexpr int64_t kMaxParams = INT64_C(1) << 31;

inline ModelSpec make_spec(const std::vector<int64_t>& dims, int activation, int loss) {
  MAML_CHECK(dims.size() >= 2, InvalidArgument, "model.layers must list at least two widths (input and output)");
  MAML_CHECK(activation == 0 || activation == 1, InvalidArgument, "model.activation must be 'relu' or 'tanh'");
  MAML_CHECK(loss >= 0 && loss <= 2, InvalidArgument,
             "model.loss must be 'mse', 'cross-entropy' or 'binary-cross-entropy'");
  ModelSpec s;
  s.dims = dims;
  s.act = static_cast<Activation>(activation);
  s.loss = static_cast<Loss>(loss);
  const int L = s.layers();
  s.w_off.assign(L + 1, 0);
  s.b_off.assign(L + 1, 0);
  int64_t off = 0;
  for (int l = 0; l <= L; ++l) {
    MAML_CHECK(dims[l] >= 1 && dims[l] <= kMaxWidth, InvalidArgument,
               "model.layers[" + std::to_string(l) + "] must be an integer in [1, 2^24], got " +
                   std::to_string(dims[l]));
  }
  for (int l = 1; l <= L; ++l) {
    s.w_off[l] = off;
    off += checked_mul(dims[l], dims[l - 1], "layer weights");
    s.b_off[l] = off;
    off += dims[l];
    MAML_CHECK(off <= kMaxParams, TooLarge, "the model has more than 2^31 parameters");
    if (dims[l] > s.max_width) s.max_width = dims[l];
  }
  if (s.loss == Loss::CrossEntropy)
    MAML_CHECK(s.out_dim() >= 2, InvalidArgument, "cross-entropy needs at least two outputs (classes)");
  s.n_params = off;
  return s;
}

}  // namespace maml
