// BF16 (1 sign, 8 exponent, 7 mantissa): round-to-nearest-even and stochastic rounding.
//
// RNE: overflow rounds to ±inf (IEEE), NaN becomes the canonical 0x7FFF (as CUDA's
// __float2bfloat16_rn; the tests check every fp32 pattern in the long suite). Stochastic rounding
// adds 16 random bits below the kept mantissa and truncates, so E[bf16_sr(x)] = x for finite x
// (the rounding DeepSeek-style optimizers use for BF16 states); NaN -> 0x7FFF, inf stays inf.
#pragma once

#include <bit>
#include <cstdint>

namespace qaft {

inline uint16_t bf16_from_float(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFF;
  const uint32_t rounding_bias = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

// random: 32 random bits (only the low 16 are used), e.g. CounterRng::u32(index).
inline uint16_t bf16_from_float_stochastic(float x, uint32_t random) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return 0x7FFF;
  if (abs == 0x7F800000u) return static_cast<uint16_t>(bits >> 16);
  return static_cast<uint16_t>((bits + (random & 0xFFFFu)) >> 16);
}

inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// Bulk conversions (auto-vectorized loops).
void bf16_from_float_n(const float* x, int64_t n, uint16_t* out);
void bf16_to_float_n(const uint16_t* h, int64_t n, float* out);

}  // namespace qaft
