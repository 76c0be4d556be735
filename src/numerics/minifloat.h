// The one scalar rounding routine behind every narrow float format qaft uses.
//
// A "minifloat" here is sign | exponent (E bits, bias B) | mantissa (M bits). Two families:
//   - IEEE-like (FP16, BF16, E5M2, E5M6): exponent all-ones = inf (mantissa 0) or NaN.
//   - "fn" finite-only (E4M3, OCP/NVIDIA float8_e4m3fn): no inf; only S.1111.111 is NaN, so
//     S.1111.110 (= 448) is the largest finite value.
// Encoding from fp32 is round-to-nearest-even for normal and subnormal results. Rules (these are
// the rules of NVIDIA's cuda_fp8.h host conversions, which the tests check bit for bit):
//   - NaN input            -> the canonical NaN: all bits one, sign cleared (0x7F, 0x7FFF, ...).
//   - |x| rounds to zero   -> signed zero (so -1e-9 -> 0x80 in E4M3).
//   - overflow (the rounded magnitude exceeds the largest finite, inf included):
//       kSatFinite -> ±max finite; kNoSat -> ±inf (IEEE-like) or the NaN code with sign (fn).
// Decoding is exact (every code is representable in fp32).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace qaft {

enum class Saturation : uint8_t {
  kSatFinite,  // clamp overflow to ±max finite (CUDA __NV_SATFINITE)
  kNoSat,      // overflow becomes inf, or NaN for formats without inf (CUDA __NV_NOSAT)
};

struct MinifloatSpec {
  int exp_bits;      // E
  int man_bits;      // M
  int bias;          // B
  bool finite_only;  // true for the "fn" layout (E4M3): no inf, only all-ones is NaN

  constexpr uint32_t sign_bit() const { return 1u << (exp_bits + man_bits); }
  constexpr uint32_t nan_code() const { return sign_bit() - 1; }  // all ones, sign cleared
  constexpr uint32_t inf_code() const { return ((1u << exp_bits) - 1) << man_bits; }
  constexpr uint32_t max_finite_code() const {
    return finite_only ? sign_bit() - 2 : inf_code() - 1;
  }
};

inline constexpr MinifloatSpec kE4M3Spec{4, 3, 7, true};
inline constexpr MinifloatSpec kE5M2Spec{5, 2, 15, false};
inline constexpr MinifloatSpec kE5M6Spec{5, 6, 15, false};
inline constexpr MinifloatSpec kFp16Spec{5, 10, 15, false};
inline constexpr MinifloatSpec kBf16Spec{8, 7, 127, false};

// fp32 -> code (low E+M+1 bits), round-to-nearest-even.
template <MinifloatSpec S>
inline uint32_t minifloat_encode(float x, Saturation sat) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (bits >> 31) ? S.sign_bit() : 0u;
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return S.nan_code();

  uint32_t mag;
  const int target_exp = static_cast<int>(abs >> 23) - 127 + S.bias;
  if (abs == 0x7F800000u) {
    mag = S.max_finite_code() + 1;  // overflow, handled below
  } else if (target_exp >= 1) {
    // Normal in the target: keep M mantissa bits, round the dropped 23-M bits to nearest even.
    // A carry out of the mantissa correctly bumps the exponent.
    constexpr int kDrop = 23 - S.man_bits;
    mag = (static_cast<uint32_t>(target_exp) << S.man_bits) | ((abs & 0x7FFFFFu) >> kDrop);
    const uint32_t rest = abs & ((1u << kDrop) - 1);
    constexpr uint32_t kHalf = 1u << (kDrop - 1);
    if (rest > kHalf || (rest == kHalf && (mag & 1u))) ++mag;
  } else {
    // Subnormal (or zero) in the target: the code is |x| / 2^(1-B-M) rounded to an integer.
    // The product is exact in double; nearbyint rounds half to even (default FP environment).
    // A result of 2^M is the smallest normal code, which is also correct.
    const double scaled = std::ldexp(static_cast<double>(std::bit_cast<float>(abs)),
                                     S.bias - 1 + S.man_bits);
    mag = static_cast<uint32_t>(std::nearbyint(scaled));
  }
  if (mag > S.max_finite_code()) {
    if (sat == Saturation::kSatFinite) return sign | S.max_finite_code();
    return sign | (S.finite_only ? S.nan_code() : S.inf_code());
  }
  return sign | mag;
}

// code -> fp32, exact. NaN codes decode to a quiet NaN with the code's sign.
template <MinifloatSpec S>
inline float minifloat_decode(uint32_t code) {
  const bool negative = code & S.sign_bit();
  const uint32_t mag = code & (S.sign_bit() - 1);
  const uint32_t exp = mag >> S.man_bits;
  const uint32_t man = mag & ((1u << S.man_bits) - 1);
  float v;
  if (S.finite_only ? mag == S.nan_code() : exp == (1u << S.exp_bits) - 1) {
    v = (!S.finite_only && man == 0) ? INFINITY : NAN;
  } else if (exp == 0) {
    v = std::ldexp(static_cast<float>(man), 1 - S.bias - S.man_bits);
  } else {
    v = std::ldexp(static_cast<float>(man | (1u << S.man_bits)),
                   static_cast<int>(exp) - S.bias - S.man_bits);
  }
  return negative ? -v : v;
}

}  // namespace qaft
