#include "numerics/ue8m0.h"

#include <bit>
#include <cmath>

namespace qaft {

uint8_t ue8m0_from_float(float x, Saturation sat, E8m0Rounding rounding) {
  const uint32_t abs = std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return 0xFF;
  uint32_t e = abs >> 23;
  if (rounding == E8m0Rounding::kTowardPosInf) {
    // Round |x| up at the precision CUDA uses (bf16 first, then the exponent): any mantissa bit set
    // above the smallest normal rounds up to the next power of two.
    const bool is_power_of_two = (abs & 0x7FFFFFu) == 0;
    if (!is_power_of_two && abs > 0x00400000u && abs < 0x7F800000u) ++e;
  }
  if (e >= 0xFF) return sat == Saturation::kSatFinite ? 0xFE : 0xFF;
  return static_cast<uint8_t>(e);
}

float ue8m0_to_float(uint8_t code) {
  if (code == 0xFF) return NAN;
  if (code == 0) return std::bit_cast<float>(0x00400000u);  // 2^-127
  return std::bit_cast<float>(static_cast<uint32_t>(code) << 23);
}

float pow2_ceil(float s) {
  return ue8m0_to_float(ue8m0_from_float(s, Saturation::kSatFinite, E8m0Rounding::kTowardPosInf));
}

}  // namespace qaft
