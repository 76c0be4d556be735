// IEEE binary16 (1 sign, 5 exponent, 10 mantissa) from fp32 with round-to-nearest-even; overflow
// rounds to ±inf, NaN becomes 0x7FFF (as CUDA's __float2half_rn). Decoding is exact.
#pragma once

#include "numerics/minifloat.h"

namespace qaft {

inline uint16_t fp16_from_float(float x) {
  return static_cast<uint16_t>(minifloat_encode<kFp16Spec>(x, Saturation::kNoSat));
}
inline float fp16_to_float(uint16_t h) { return minifloat_decode<kFp16Spec>(h); }

}  // namespace qaft
