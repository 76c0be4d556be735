// E5M6: the 12-bit float DeepSeek-V3 keeps selected activations in (the inputs of the linear
// after attention, cached for its backward), between BF16 and FP8 in cost.
//
// Bit layout (stored in the low 12 bits of a uint16; the top 4 bits are zero):
//   bit 11      sign
//   bits 10..6  exponent, bias 15 (as FP16)
//   bits 5..0   mantissa
// It is exactly FP16 with the 4 lowest mantissa bits dropped: e5m6 << 4 is the FP16 encoding of the
// same value (so decoding is exact), range ±65024 (max finite 0x7BF), min subnormal 2^-20,
// exponent all-ones = inf (mantissa 0) or NaN. Encoding from fp32 rounds to nearest even once
// (never through FP16, which would round twice); overflow gives ±inf (kNoSat) or ±65024
// (kSatFinite); NaN becomes 0x7FF.
#pragma once

#include "numerics/minifloat.h"

namespace qaft {

inline constexpr float kE5M6Max = 65024.0f;

inline uint16_t e5m6_from_float(float x, Saturation sat = Saturation::kNoSat) {
  return static_cast<uint16_t>(minifloat_encode<kE5M6Spec>(x, sat));
}
inline float e5m6_to_float(uint16_t code) { return minifloat_decode<kE5M6Spec>(code & 0xFFFu); }

}  // namespace qaft
