#include "numerics/fp8.h"

#include "core/cpu_features.h"
#include "numerics/ue8m0.h"

#include <cmath>

namespace qaft {

std::string_view fp8_format_name(Fp8Format f) { return f == Fp8Format::kE4M3 ? "e4m3" : "e5m2"; }

namespace detail {

void fp8_encode_scaled_scalar(const float* x, int64_t n, float scale, Fp8Format f, Saturation sat,
                              uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = fp8_encode(x[i] / scale, f, sat);
}

void fp8_decode_scaled_scalar(const uint8_t* codes, int64_t n, float scale, Fp8Format f, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = fp8_decode(codes[i], f) * scale;
}

float fp8_tile_scale(float amax_value, float amax_floor, bool pow2, Fp8Format f) {
  if (!std::isfinite(amax_value)) return NAN;
  const float a = amax_value > amax_floor ? amax_value : amax_floor;
  if (a == 0.0f) return 1.0f;
  const float s = a / fp8_max(f);
  return pow2 ? pow2_ceil(s) : s;
}

int64_t fp8_quantize_tiles_scalar(const float* x, int64_t n, int64_t tile, float amax_floor, bool pow2,
                                  Fp8Format f, uint8_t* codes, float* scales) {
  int64_t bad = 0;
  for (int64_t t = 0, i = 0; i < n; ++t, i += tile) {
    const int64_t w = n - i < tile ? n - i : tile;
    const float s = fp8_tile_scale(amax_scalar(x + i, w), amax_floor, pow2, f);
    bad += std::isnan(s);
    scales[t] = s;
    fp8_encode_scaled_scalar(x + i, w, s, f, Saturation::kSatFinite, codes + i);
  }
  return bad;
}

float amax_scalar(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    float a = std::fabs(x[i]);
    if (std::isnan(a)) return NAN;
    m = a > m ? a : m;
  }
  return m;
}

}  // namespace detail

void fp8_encode_scaled(const float* x, int64_t n, float scale, Fp8Format f, Saturation sat,
                       uint8_t* out) {
  if (cpu_features().has_avx512_codecs()) return detail::fp8_encode_scaled_avx512(x, n, scale, f, sat, out);
  detail::fp8_encode_scaled_scalar(x, n, scale, f, sat, out);
}

void fp8_decode_scaled(const uint8_t* codes, int64_t n, float scale, Fp8Format f, float* out) {
  if (cpu_features().has_avx512_codecs()) return detail::fp8_decode_scaled_avx512(codes, n, scale, f, out);
  detail::fp8_decode_scaled_scalar(codes, n, scale, f, out);
}

int64_t fp8_quantize_tiles(const float* x, int64_t n, int64_t tile, float amax_floor, bool pow2, Fp8Format f,
                           uint8_t* codes, float* scales) {
  if (cpu_features().has_avx512_codecs())
    return detail::fp8_quantize_tiles_avx512(x, n, tile, amax_floor, pow2, f, codes, scales);
  return detail::fp8_quantize_tiles_scalar(x, n, tile, amax_floor, pow2, f, codes, scales);
}

float amax(const float* x, int64_t n) {
  if (cpu_features().has_avx512_codecs()) return detail::amax_avx512(x, n);
  return detail::amax_scalar(x, n);
}

}  // namespace qaft
