// AVX-512 (F + BW + VL) versions of the FP8 bulk codecs, 16 lanes at a time. They implement the
// same steps as minifloat_encode/minifloat_decode with integer lane arithmetic and are tested to be
// bit-identical to the scalar loops. Compiled with a target attribute so that the rest of the build
// stays portable; fp8.cpp calls them only when the CPU has these extensions.
#include "numerics/fp8.h"

// NOTE: GCC 12's AVX-512 headers build vectors from _mm512_undefined_*(), which -Wmaybe-uninitialized
// flags inside target-attribute functions (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define QAFT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

namespace qaft::detail {

QAFT_AVX512 float amax_avx512(const float* x, int64_t n);

namespace {

template <MinifloatSpec S>
QAFT_AVX512 inline __m128i encode16(__m512 v, Saturation sat) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i sign = _mm512_srli_epi32(_mm512_and_si512(bits, _mm512_set1_epi32(INT32_MIN)), 24);
  const __m512i abs = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7F800000));

  // Normal results (|x| ≥ 2^(1-B)): round the fp32 bits to nearest even at the code's last
  // mantissa bit by adding (half − 1) + that bit, shift, and re-bias the exponent. A carry out of
  // the mantissa bumps the exponent, and anything above max finite (inf included) is caught below.
  constexpr int kDrop = 23 - S.man_bits;
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(abs, kDrop), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(abs, _mm512_add_epi32(lsb, _mm512_set1_epi32((1 << (kDrop - 1)) - 1)));
  const __m512i mag_n = _mm512_sub_epi32(_mm512_srli_epi32(rounded, kDrop),
                                         _mm512_set1_epi32((127 - S.bias) << S.man_bits));
  const __mmask16 is_normal = _mm512_cmpge_epi32_mask(abs, _mm512_set1_epi32((128 - S.bias) << 23));

  // Subnormal results: |x| · 2^(B-1+M) (exact) rounded half-to-even to an integer.
  const __m512 scaled = _mm512_mul_ps(_mm512_castsi512_ps(abs),
                                      _mm512_set1_ps(static_cast<float>(1 << (S.bias - 1 + S.man_bits))));
  const __m512i mag_s = _mm512_cvt_roundps_epi32(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);

  __m512i mag = _mm512_mask_blend_epi32(is_normal, mag_s, mag_n);
  const __mmask16 over = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(S.max_finite_code()));
  const uint32_t over_code = sat == Saturation::kSatFinite ? S.max_finite_code()
                             : S.finite_only                ? S.nan_code()
                                                            : S.inf_code();
  mag = _mm512_mask_mov_epi32(mag, over, _mm512_set1_epi32(static_cast<int>(over_code)));
  __m512i code = _mm512_or_si512(mag, sign);
  code = _mm512_mask_mov_epi32(code, is_nan, _mm512_set1_epi32(S.nan_code()));
  return _mm512_cvtepi32_epi8(code);
}

template <MinifloatSpec S>
QAFT_AVX512 void encode_loop(const float* x, int64_t n, float scale, Saturation sat, uint8_t* out) {
  const __m512 s = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i c = encode16<S>(_mm512_div_ps(_mm512_loadu_ps(x + i), s), sat);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), c);
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m128i c = encode16<S>(_mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), s), sat);
    _mm_mask_storeu_epi8(out + i, m, c);
  }
}

// Decode by placing the code's exponent and mantissa at the top of an fp32 exponent/mantissa
// field and multiplying by 2^(127-B): exact for normal and subnormal codes alike.
template <MinifloatSpec S>
QAFT_AVX512 inline __m512 decode16(__m128i codes8, __m512 scale) {
  const __m512i c = _mm512_cvtepu8_epi32(codes8);
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
  const __m512i mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7F));
  __m512 v = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_slli_epi32(mag, 23 - S.man_bits)));
  v = _mm512_mul_ps(v, _mm512_castsi512_ps(_mm512_set1_epi32((254 - S.bias) << 23))  /* 2^(127-B) */);
  if constexpr (S.finite_only) {
    const __mmask16 nan = _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(S.nan_code()));
    v = _mm512_mask_mov_ps(v, nan, _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_set1_epi32(0x7FC00000))));
  } else {
    const __mmask16 special = _mm512_cmpge_epi32_mask(mag, _mm512_set1_epi32(S.inf_code()));
    const __mmask16 inf = _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(S.inf_code()));
    v = _mm512_mask_mov_ps(v, special, _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_set1_epi32(0x7FC00000))));
    v = _mm512_mask_mov_ps(v, inf, _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_set1_epi32(0x7F800000))));
  }
  return _mm512_mul_ps(v, scale);
}

template <MinifloatSpec S>
QAFT_AVX512 void decode_loop(const uint8_t* codes, int64_t n, float scale, float* out) {
  const __m512 s = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, decode16<S>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)), s));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(out + i, m, decode16<S>(_mm_maskz_loadu_epi8(m, codes + i), s));
  }
}

}  // namespace

QAFT_AVX512 void fp8_encode_scaled_avx512(const float* x, int64_t n, float scale, Fp8Format f,
                                          Saturation sat, uint8_t* out) {
  if (f == Fp8Format::kE4M3) encode_loop<kE4M3Spec>(x, n, scale, sat, out);
  else encode_loop<kE5M2Spec>(x, n, scale, sat, out);
}

QAFT_AVX512 void fp8_decode_scaled_avx512(const uint8_t* codes, int64_t n, float scale, Fp8Format f,
                                          float* out) {
  if (f == Fp8Format::kE4M3) decode_loop<kE4M3Spec>(codes, n, scale, out);
  else decode_loop<kE5M2Spec>(codes, n, scale, out);
}

template <MinifloatSpec S>
QAFT_AVX512 int64_t quantize_tiles(const float* x, int64_t n, int64_t tile, float amax_floor, bool pow2,
                                   Fp8Format f, uint8_t* codes, float* scales) {
  int64_t bad = 0;
  for (int64_t t = 0, i = 0; i < n; ++t, i += tile) {
    const int64_t w = n - i < tile ? n - i : tile;
    const float s = fp8_tile_scale(amax_avx512(x + i, w), amax_floor, pow2, f);
    bad += s != s;
    scales[t] = s;
    encode_loop<S>(x + i, w, s, Saturation::kSatFinite, codes + i);
  }
  return bad;
}

QAFT_AVX512 int64_t fp8_quantize_tiles_avx512(const float* x, int64_t n, int64_t tile, float amax_floor, bool pow2,
                                              Fp8Format f, uint8_t* codes, float* scales) {
  if (f == Fp8Format::kE4M3) return quantize_tiles<kE4M3Spec>(x, n, tile, amax_floor, pow2, f, codes, scales);
  return quantize_tiles<kE5M2Spec>(x, n, tile, amax_floor, pow2, f, codes, scales);
}

QAFT_AVX512 float amax_avx512(const float* x, int64_t n) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  __m512 m = _mm512_setzero_ps();
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(x + i)), abs_mask));
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    m = _mm512_max_ps(m, v);
  }
  if (i < n) {
    const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 v = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_maskz_loadu_ps(k, x + i)), abs_mask));
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    m = _mm512_max_ps(m, v);
  }
  if (nan) return __builtin_nanf("");
  return _mm512_reduce_max_ps(m);
}

}  // namespace qaft::detail
