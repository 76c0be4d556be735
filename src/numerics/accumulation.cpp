#include "numerics/accumulation.h"

#include "core/error.h"

#include <bit>
#include <cmath>

namespace qaft {

float round_to_mantissa_bits(float x, int mantissa_bits, AccumulatorRounding rounding) {
  QAFT_CHECK(mantissa_bits >= 0 && mantissa_bits <= 23, "mantissa_bits must be in [0, 23], got {}",
             mantissa_bits);
  if (mantissa_bits == 23 || !std::isfinite(x)) return x;
  uint32_t bits = std::bit_cast<uint32_t>(x);
  const int drop = 23 - mantissa_bits;
  const uint32_t mask = (1u << drop) - 1;
  if (rounding == AccumulatorRounding::kNearestEven) {
    const uint32_t half = 1u << (drop - 1);
    const uint32_t rest = bits & mask;
    bits &= ~mask;
    if (rest > half || (rest == half && (bits & (1u << drop)))) bits += 1u << drop;
  } else {
    bits &= ~mask;
  }
  return std::bit_cast<float>(bits);
}

float dot_accumulate(const float* a, const float* b, int64_t k, const AccumulatorModel& model) {
  QAFT_CHECK(model.promote_interval >= 0, "promote_interval must be >= 0, got {}", model.promote_interval);
  float total = 0.0f;    // FP32 register on the CUDA cores
  float partial = 0.0f;  // limited-precision tensor-core accumulator
  int64_t in_partial = 0;
  for (int64_t i = 0; i < k; ++i) {
    partial = round_to_mantissa_bits(partial + a[i] * b[i], model.mantissa_bits, model.rounding);
    if (model.promote_interval > 0 && ++in_partial == model.promote_interval) {
      total += partial;
      partial = 0.0f;
      in_partial = 0;
    }
  }
  return total + partial;
}

}  // namespace qaft
