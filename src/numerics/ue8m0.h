// UE8M0: an unsigned 8-bit power of two, value 2^(e - 127), e = 0..254; 0xFF is NaN; no zero.
// The scale format of OCP MX and of DeepSeek-V3.1's "ue8m0" power-of-two scales.
//
// Encoding follows NVIDIA's cuda_fp8.h (__nv_cvt_float_to_e8m0) bit for bit:
//   kTowardZero:   the fp32 exponent field of |x| (truncation; subnormals and zero -> 0x00).
//   kTowardPosInf: rounds |x| up to the next power of two unless it is one (DeepSeek's
//                  2^ceil(log2 s) for a positive normal s).
//   NaN -> 0xFF. Overflow (inf, or rounding above 2^127): kSatFinite -> 0xFE, kNoSat -> 0xFF.
// The sign of x is ignored.
#pragma once

#include <cstdint>

#include "numerics/minifloat.h"

namespace qaft {

enum class E8m0Rounding : uint8_t { kTowardZero, kTowardPosInf };

uint8_t ue8m0_from_float(float x, Saturation sat, E8m0Rounding rounding);
// 2^(code - 127); NaN for 0xFF. Code 0 is 2^-127, a subnormal fp32.
float ue8m0_to_float(uint8_t code);
// The smallest power of two >= s for a positive finite s (DeepSeek's scale rounding), as fp32.
float pow2_ceil(float s);

}  // namespace qaft
