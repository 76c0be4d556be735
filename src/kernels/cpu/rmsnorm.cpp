// RMSNorm forward/backward. Rows are independent (parallel over rows); the weight gradient is
// reduced over rows per column block, so it is deterministic for any thread count.
#include "kernels/ops.h"

#include "core/error.h"
#include "kernels/cpu/simd.h"

#include <algorithm>
#include <cmath>

namespace qaft {

template <typename T>
void rmsnorm_forward(const T* x, const T* w, int64_t rows, int64_t C, int64_t ld, T eps, T* y,
                     T* rstd) {
  QAFT_CHECK(rows >= 0 && C > 0 && ld >= C, "rmsnorm_forward: rows={} C={} ld={}", rows, C, ld);
#pragma omp parallel for schedule(static) if (rows * C > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * ld;
    T* yr = y + r * ld;
    const T rs = T(1) / std::sqrt(detail::dot(xr, xr, C) / static_cast<T>(C) + eps);
    for (int64_t j = 0; j < C; ++j) yr[j] = w[j] * (xr[j] * rs);
    if (rstd) rstd[r] = rs;
  }
}

template <typename T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const T* rstd, int64_t rows, int64_t C,
                      int64_t ld, T* dx, T* dw) {
  QAFT_CHECK(rows >= 0 && C > 0 && ld >= C, "rmsnorm_backward: rows={} C={} ld={}", rows, C, ld);
  // y = w ⊙ x · r, r = (Σx²/C + eps)^(-1/2):  dx = r·(w ⊙ dy) − r³/C · x · Σ(w ⊙ dy ⊙ x).
  if (dx) {
#pragma omp parallel for schedule(static) if (rows * C > (1 << 15))
    for (int64_t r = 0; r < rows; ++r) {
      const T* dyr = dy + r * ld;
      const T* xr = x + r * ld;
      T* dxr = dx + r * ld;
      T gx[16] = {};  // Σ w·dy·x in 16 lanes (fixed order)
      int64_t j = 0;
      for (; j + 16 <= C; j += 16)
        for (int l = 0; l < 16; ++l) gx[l] += w[j + l] * dyr[j + l] * xr[j + l];
      for (int l = 0; j + l < C; ++l) gx[l] += w[j + l] * dyr[j + l] * xr[j + l];
      for (int s = 8; s > 0; s /= 2)
        for (int l = 0; l < s; ++l) gx[l] += gx[l + s];
      const T rs = rstd[r];
      const T c2 = rs * rs * rs * gx[0] / static_cast<T>(C);
      for (int64_t k = 0; k < C; ++k) dxr[k] = rs * (w[k] * dyr[k]) - c2 * xr[k];
    }
  }
  if (dw) {
    constexpr int64_t kBlock = 256;
    const int64_t blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * C > (1 << 15))
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t j0 = b * kBlock, n = std::min(kBlock, C - j0);
      T acc[kBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const T* dyr = dy + r * ld + j0;
        const T* xr = x + r * ld + j0;
        const T rs = rstd[r];
        for (int64_t j = 0; j < n; ++j) acc[j] += dyr[j] * (xr[j] * rs);
      }
      for (int64_t j = 0; j < n; ++j) dw[j0 + j] += acc[j];
    }
  }
}

#define QAFT_INSTANTIATE(T)                                                                        \
  template void rmsnorm_forward<T>(const T*, const T*, int64_t, int64_t, int64_t, T, T*, T*);      \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t,      \
                                    int64_t, T*, T*);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)

}  // namespace qaft
