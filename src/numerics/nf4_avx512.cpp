// AVX-512 (F + BW + VL) NF4 dequantization: 32 codes per step, nibbles split and interleaved back
// into element order with SSE byte shuffles, then looked up in a per-block table of the 16 possible
// outputs held in one zmm register (_mm512_permutexvar_ps for fp32, _mm512_permutexvar_epi16 for
// bf16). Each table entry is the same single fp32 multiply quant_map[k] * absmax as the scalar loop
// (bf16: the same integer round-to-nearest-even as bf16_from_float), so results are bit-identical.
// Compiled with a target attribute so the rest of the build stays portable; nf4.cpp calls it only
// on CPUs that have it.
#include "numerics/nf4.h"

// GCC 12's AVX-512 headers build vectors from _mm512_undefined_*(), which -Wmaybe-uninitialized
// flags inside target-attribute functions (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <type_traits>

#define QAFT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

namespace qaft::detail {
namespace {

// Elements handled per vector step; a 32-aligned run of 32 elements lies in one block because
// blocksize is a power of two >= 32.
constexpr int64_t kStep = 32;

// fp32 -> bf16 bit patterns, round to nearest even, NaN -> 0x7FFF (as bf16_from_float).
QAFT_AVX512 inline __m256i to_bf16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i abs = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7F800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
  r = _mm512_mask_mov_epi32(r, is_nan, _mm512_set1_epi32(0x7FFF));
  return _mm512_cvtepi32_epi16(r);
}

// The 32 4-bit indices in the 16 bytes at p, one per byte, in element order (even element = high
// nibble first).
QAFT_AVX512 inline __m256i indices32(const uint8_t* p) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i nibble = _mm_set1_epi8(0x0F);
  const __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble);  // even elements
  const __m128i low = _mm_and_si128(bytes, nibble);                      // odd elements
  return _mm256_set_m128i(_mm_unpackhi_epi8(high, low),                  // elements 16..31
                          _mm_unpacklo_epi8(high, low));                 // elements 0..15
}

// The scalar loop, for the head and tail of a range.
inline void scalar_range(const uint8_t* packed, const float* absmax, int64_t begin, int64_t end,
                         int blocksize, const float* quant_map, float* out) {
  nf4_dequantize_range_scalar(packed, absmax, begin, end, blocksize, quant_map, out);
}
inline void scalar_range(const uint8_t* packed, const float* absmax, int64_t begin, int64_t end,
                         int blocksize, const float* quant_map, uint16_t* out) {
  nf4_dequantize_range_bf16_scalar(packed, absmax, begin, end, blocksize, quant_map, out);
}

// [begin, end) as a scalar head up to a multiple of kStep, a vector body and a scalar tail. Per
// block the 16 possible outputs (quant_map[k] * absmax, converted) are computed once into a table
// register; each step then is one permute per 16 (fp32) or 32 (bf16, vpermw) outputs. (No lambdas:
// they would not inherit the target attribute.)
template <typename Out>
QAFT_AVX512 void dequantize_range(const uint8_t* packed, const float* absmax, int64_t begin,
                                  int64_t end, int blocksize, const float* quant_map, Out* out) {
  const int shift = std::countr_zero(static_cast<unsigned>(blocksize));  // blocksize = 2^shift
  const int64_t block0 = begin >> shift;
  const int64_t head_end = std::min(end, (begin + kStep - 1) / kStep * kStep);
  if (begin < head_end) scalar_range(packed, absmax, begin, head_end, blocksize, quant_map, out);
  const __m512 codes = _mm512_loadu_ps(quant_map);
  int64_t table_block = -1;
  __m512 table32 = _mm512_setzero_ps();      // fp32 outputs of indices 0..15
  __m512i table16 = _mm512_setzero_si512();  // bf16 outputs of indices 0..15 (lanes 16..31 unused)
  int64_t i = head_end;
  for (; i + kStep <= end; i += kStep) {
    const int64_t block = i >> shift;
    if (block != table_block) {
      table_block = block;
      table32 = _mm512_mul_ps(codes, _mm512_set1_ps(absmax[block - block0]));
      if constexpr (!std::is_same_v<Out, float>) table16 = _mm512_zextsi256_si512(to_bf16(table32));
    }
    const __m256i idx = indices32(packed + i / 2);
    Out* dst = out + (i - begin);
    if constexpr (std::is_same_v<Out, float>) {
      const __m512i lo = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(idx));
      const __m512i hi = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(idx, 1));
      _mm512_storeu_ps(dst, _mm512_permutexvar_ps(lo, table32));
      _mm512_storeu_ps(dst + 16, _mm512_permutexvar_ps(hi, table32));
    } else {
      _mm512_storeu_si512(dst, _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(idx), table16));
    }
  }
  if (i < end) {
    scalar_range(packed, absmax + ((i >> shift) - block0), i, end, blocksize, quant_map,
                 out + (i - begin));
  }
}

}  // namespace

QAFT_AVX512 void nf4_dequantize_range_avx512(const uint8_t* packed, const float* absmax,
                                             int64_t begin, int64_t end, int blocksize,
                                             const float* quant_map, float* out) {
  dequantize_range(packed, absmax, begin, end, blocksize, quant_map, out);
}

QAFT_AVX512 void nf4_dequantize_range_bf16_avx512(const uint8_t* packed, const float* absmax,
                                                  int64_t begin, int64_t end, int blocksize,
                                                  const float* quant_map, uint16_t* out) {
  dequantize_range(packed, absmax, begin, end, blocksize, quant_map, out);
}

}  // namespace qaft::detail
