#include "numerics/bf16.h"

namespace qaft {

void bf16_from_float_n(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_from_float(x[i]);
}

void bf16_to_float_n(const uint16_t* h, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(h[i]);
}

}  // namespace qaft
