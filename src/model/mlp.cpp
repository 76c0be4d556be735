#include "model/mlp.h"

#include "kernels/ops.h"

namespace qaft {

template <typename T>
MlpRef<T> bind_mlp(const WeightBinding<T>& wb, const std::string& prefix) {
  return {bind_linear(wb, prefix + ".gate_proj"), bind_linear(wb, prefix + ".up_proj"), bind_linear(wb, prefix + ".down_proj")};
}

template <typename T>
void mlp_forward(const MlpRef<T>& m, const T* x, int64_t N, T* y, MlpSaved<T>& s) {
  const int64_t I = m.gate.out;
  s.g.resize(static_cast<size_t>(N * I));
  s.u.resize(static_cast<size_t>(N * I));
  s.h.resize(static_cast<size_t>(N * I));
  linear_forward(m.gate, x, N, s.g.data());
  linear_forward(m.up, x, N, s.u.data());
  swiglu_forward(s.g.data(), s.u.data(), N * I, s.h.data());
  linear_forward(m.down, s.h.data(), N, y);
}

template <typename T>
void mlp_backward(const MlpRef<T>& m, const T* dy, const T* x, int64_t N, const MlpSaved<T>& s, T* dx,
                  bool accumulate_dx) {
  const int64_t I = m.gate.out;
  std::vector<T> dh(static_cast<size_t>(N * I)), dg(dh.size()), du(dh.size());
  linear_backward(m.down, dy, s.h.data(), N, dh.data(), false);
  swiglu_backward(dh.data(), s.g.data(), s.u.data(), N * I, dg.data(), du.data());
  linear_backward(m.gate, dg.data(), x, N, dx, accumulate_dx);
  linear_backward(m.up, du.data(), x, N, dx, true);
}

#define QAFT_INSTANTIATE(T)                                                                          \
  template MlpRef<T> bind_mlp<T>(const WeightBinding<T>&, const std::string&);               \
  template void mlp_forward<T>(const MlpRef<T>&, const T*, int64_t, T*, MlpSaved<T>&);               \
  template void mlp_backward<T>(const MlpRef<T>&, const T*, const T*, int64_t, const MlpSaved<T>&, T*, bool);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)
#undef QAFT_INSTANTIATE

}  // namespace qaft
