// Rotary position embedding, in place. Angles are computed in float64 (position · inv_freq) once
// per token and reused for all heads; the rotation itself runs in T. Parallel over tokens.
#include "kernels/ops.h"

#include "core/error.h"

#include <cmath>
#include <vector>

namespace qaft {

template <typename T>
void rope_apply(T* x, int64_t N, int64_t heads, int64_t ld, int64_t hs, int64_t offset,
                int64_t rot_dim, const int32_t* positions, const double* inv_freq, RopeLayout layout,
                bool inverse) {
  QAFT_CHECK(N >= 0 && heads >= 0 && offset >= 0, "rope_apply: N={} heads={} offset={}", N, heads, offset);
  QAFT_CHECK(rot_dim > 0 && rot_dim % 2 == 0, "rope_apply: rot_dim={} must be even and positive", rot_dim);
  if (N == 0 || heads == 0) return;
  const int64_t half = rot_dim / 2;
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel if (N * heads * rot_dim > (1 << 15))
  {
    std::vector<T> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const double pos = static_cast<double>(positions[n]);
      for (int64_t i = 0; i < half; ++i) {
        const double a = pos * inv_freq[i];
        cs[static_cast<size_t>(i)] = static_cast<T>(std::cos(a));
        sn[static_cast<size_t>(i)] = sign * static_cast<T>(std::sin(a));
      }
      for (int64_t h = 0; h < heads; ++h) {
        T* p = x + n * ld + h * hs + offset;
        if (layout == RopeLayout::kInterleaved) {
          for (int64_t i = 0; i < half; ++i) {
            const T a = p[2 * i], b = p[2 * i + 1], c = cs[static_cast<size_t>(i)], s = sn[static_cast<size_t>(i)];
            p[2 * i] = a * c - b * s;
            p[2 * i + 1] = a * s + b * c;
          }
        } else {
          for (int64_t i = 0; i < half; ++i) {
            const T a = p[i], b = p[i + half], c = cs[static_cast<size_t>(i)], s = sn[static_cast<size_t>(i)];
            p[i] = a * c - b * s;
            p[i + half] = a * s + b * c;
          }
        }
      }
    }
  }
}

template void rope_apply<float>(float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                const int32_t*, const double*, RopeLayout, bool);
template void rope_apply<double>(double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                 const int32_t*, const double*, RopeLayout, bool);

}  // namespace qaft
