// SwiGLU MLP: down(silu(gate(x)) ⊙ up(x)) — the dense FFN layers and the shared experts.
#pragma once

#include "model/linear.h"

#include <vector>

namespace qaft {

template <typename T>
struct MlpRef {
  LinearRef<T> gate, up, down;  // gate/up [I, C], down [C, I]
};

template <typename T>
MlpRef<T> bind_mlp(const WeightBinding<T>& wb, const std::string& prefix);

// What the forward keeps for the backward.
template <typename T>
struct MlpSaved {
  std::vector<T> g, u, h;  // [N, I] gate and up projections, h = silu(g) ⊙ u
};

// y [N, C] = MLP(x [N, C]); y is overwritten.
template <typename T>
void mlp_forward(const MlpRef<T>& m, const T* x, int64_t N, T* y, MlpSaved<T>& saved);
// dx [N, C]: overwritten, or added to when accumulate_dx.
template <typename T>
void mlp_backward(const MlpRef<T>& m, const T* dy, const T* x, int64_t N, const MlpSaved<T>& saved, T* dx,
                  bool accumulate_dx);

}  // namespace qaft
