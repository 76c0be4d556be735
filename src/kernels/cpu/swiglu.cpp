// SwiGLU h = silu(g) ⊙ u, silu(g) = g·σ(g). Elementwise, parallel over chunks; the float path uses
// the vectorizable exp of simd.h.
#include "kernels/ops.h"

#include "core/error.h"
#include "kernels/cpu/simd.h"

namespace qaft {

template <typename T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* h) {
  QAFT_CHECK(n >= 0, "swiglu_forward: n={}", n);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const T s = T(1) / (T(1) + detail::vexp(-g[i]));
    h[i] = g[i] * s * u[i];
  }
}

template <typename T>
void swiglu_backward(const T* dh, const T* g, const T* u, int64_t n, T* dg, T* du) {
  QAFT_CHECK(n >= 0, "swiglu_backward: n={}", n);
  // d silu/dg = σ(g)·(1 + g·(1 − σ(g))).
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i], ui = u[i], d = dh[i];
    const T s = T(1) / (T(1) + detail::vexp(-gi));
    dg[i] = d * ui * (s * (T(1) + gi * (T(1) - s)));
    du[i] = d * (gi * s);
  }
}

template void swiglu_forward<float>(const float*, const float*, int64_t, float*);
template void swiglu_forward<double>(const double*, const double*, int64_t, double*);
template void swiglu_backward<float>(const float*, const float*, const float*, int64_t, float*, float*);
template void swiglu_backward<double>(const double*, const double*, const double*, int64_t, double*,
                                      double*);

}  // namespace qaft
