// FP8 codecs: OCP E4M3 ("fn", max 448) and E5M2 (max 57344), fp32 <-> 8-bit codes.
//
// Scalar functions are the reference (see minifloat.h for the exact rules; they agree bit for bit
// with NVIDIA's cuda_fp8.h host conversions). The bulk functions are vectorized with AVX-512 when
// the CPU has it (chosen at run time) and give identical results to the scalar ones.
#pragma once

#include "numerics/minifloat.h"

#include <cstdint>
#include <string_view>

namespace qaft {

enum class Fp8Format : uint8_t { kE4M3, kE5M2 };

inline constexpr float kE4M3Max = 448.0f;
inline constexpr float kE5M2Max = 57344.0f;

inline float fp8_max(Fp8Format f) { return f == Fp8Format::kE4M3 ? kE4M3Max : kE5M2Max; }
std::string_view fp8_format_name(Fp8Format f);  // "e4m3", "e5m2"

inline uint8_t fp8_encode(float x, Fp8Format f, Saturation sat = Saturation::kSatFinite) {
  return static_cast<uint8_t>(f == Fp8Format::kE4M3 ? minifloat_encode<kE4M3Spec>(x, sat)
                                                    : minifloat_encode<kE5M2Spec>(x, sat));
}

inline float fp8_decode(uint8_t code, Fp8Format f) {
  return f == Fp8Format::kE4M3 ? minifloat_decode<kE4M3Spec>(code) : minifloat_decode<kE5M2Spec>(code);
}

// out[i] = encode(x[i] / scale). Dividing (not multiplying by 1/scale) is what DeepSeek's
// act_quant does; for power-of-two scales the two are identical. scale = 1 encodes x itself.
void fp8_encode_scaled(const float* x, int64_t n, float scale, Fp8Format f, Saturation sat,
                       uint8_t* out);
// out[i] = decode(codes[i]) * scale (exact product of two fp32 numbers, rounded once).
void fp8_decode_scaled(const uint8_t* codes, int64_t n, float scale, Fp8Format f, float* out);
// max |x[i]| over n elements; NaN if any element is NaN.
float amax(const float* x, int64_t n);

// Quantizes a row of n elements in consecutive tiles of `tile` elements (the last may be partial),
// each with its own scale σ = scale_of(amax(tile)) (see ScaleRecipe): codes[i] = encode(x[i] / σ),
// scales[t] = σ. One fused pass per tile (the tile stays in L1 between its amax and its encode).
// scale_of: σ = max(amax, amax_floor) / fmax, rounded up to a power of two when pow2; NaN for a
// non-finite amax; 1 for amax = floor = 0. Returns the number of tiles with a non-finite value.
int64_t fp8_quantize_tiles(const float* x, int64_t n, int64_t tile, float amax_floor, bool pow2, Fp8Format f,
                           uint8_t* codes, float* scales);

namespace detail {
int64_t fp8_quantize_tiles_scalar(const float* x, int64_t n, int64_t tile, float amax_floor, bool pow2,
                                  Fp8Format f, uint8_t* codes, float* scales);
int64_t fp8_quantize_tiles_avx512(const float* x, int64_t n, int64_t tile, float amax_floor, bool pow2,
                                  Fp8Format f, uint8_t* codes, float* scales);
// σ for one tile (shared by both implementations, and by ScaleRecipe's compute_scale).
float fp8_tile_scale(float amax, float amax_floor, bool pow2, Fp8Format f);
// The portable loops, exposed so tests can compare them with the vectorized ones.
void fp8_encode_scaled_scalar(const float* x, int64_t n, float scale, Fp8Format f, Saturation sat,
                              uint8_t* out);
void fp8_decode_scaled_scalar(const uint8_t* codes, int64_t n, float scale, Fp8Format f, float* out);
float amax_scalar(const float* x, int64_t n);
// AVX-512 (F+BW+VL) versions; call only when cpu_features().has_avx512_codecs().
void fp8_encode_scaled_avx512(const float* x, int64_t n, float scale, Fp8Format f, Saturation sat,
                              uint8_t* out);
void fp8_decode_scaled_avx512(const uint8_t* codes, int64_t n, float scale, Fp8Format f, float* out);
float amax_avx512(const float* x, int64_t n);
}  // namespace detail

}  // namespace qaft
