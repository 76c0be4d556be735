#include "kernels/cpu/block_gemm.h"

#include "core/cpu_features.h"
#include "core/error.h"
#include "kernels/cpu/simd.h"
#include "numerics/bf16.h"

// GCC 12's vectorized code inside target-attribute functions trips -Wmaybe-uninitialized on the
// zero-initialized accumulator arrays (a known false positive, as in kernels/cpu/grouped_gemm.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

namespace qaft {

namespace {

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return cdiv(a, b) * b; }

}  // namespace

// ---- BlockWeight ---------------------------------------------------------------------------------

void BlockWeight::allocate(WeightElement element, int64_t out, int64_t in) {
  QAFT_CHECK(out > 0 && in > 0, "serving weight shape [{}, {}] must be positive", out, in);
  element_ = element;
  out_ = out;
  in_ = in;
  k_padded_ = round_up(in, kKPad);
  const size_t packed = sz(panels() * k_padded_ * kPanelRows);
  if (element == WeightElement::kE4M3) {
    e4m3_.assign(packed, 0);  // code 0 = +0: padding contributes nothing
    scales_.assign(sz(cdiv(out, kScaleBlock) * cdiv(in, kScaleBlock)), 1.0f);
  } else {
    bf16_.assign(packed, 0);
  }
}

template <typename E>
void BlockWeight::pack(const E* rows, E* packed) const {
  // Panel p, row j of it: its `in` elements go to every 32nd slot from p·k_padded·32 + j.
  const int64_t P = panels();
#pragma omp parallel for schedule(static) if (out_ * in_ > (1 << 18))
  for (int64_t p = 0; p < P; ++p)
    for (int64_t j = 0; j < std::min(kPanelRows, out_ - p * kPanelRows); ++j) {
      const E* src = rows + (p * kPanelRows + j) * in_;
      E* dst = packed + p * k_padded_ * kPanelRows + j;
      for (int64_t i = 0; i < in_; ++i) dst[i * kPanelRows] = src[i];
    }
}

template <typename E>
void BlockWeight::unpack(const E* packed, E* rows) const {
  for (int64_t o = 0; o < out_; ++o) {
    const E* src = packed + (o / kPanelRows) * k_padded_ * kPanelRows + o % kPanelRows;
    for (int64_t i = 0; i < in_; ++i) rows[o * in_ + i] = src[i * kPanelRows];
  }
}

BlockWeight BlockWeight::from_e4m3(const uint8_t* codes, const float* scales, int64_t out, int64_t in,
                                   ScaleFormat scale_format) {
  BlockWeight w;
  w.allocate(WeightElement::kE4M3, out, in);
  w.scale_format_ = scale_format;
  std::memcpy(w.scales_.data(), scales, sizeof(float) * w.scales_.size());
  w.pack(codes, w.e4m3_.data());
  return w;
}

BlockWeight BlockWeight::quantize_e4m3(const float* x, int64_t out, int64_t in, ScaleFormat scale_format) {
  const QTensor q = QTensor::from_float(x, out, in, ScaleRecipe::deepseek_weight(scale_format));
  return from_e4m3(q.codes.data(), q.scales.data(), out, in, scale_format);
}

BlockWeight BlockWeight::from_bf16(const float* x, int64_t out, int64_t in) {
  BlockWeight w;
  w.allocate(WeightElement::kBf16, out, in);
  std::vector<uint16_t> rounded(sz(out * in));
  bf16_from_float_n(x, out * in, rounded.data());
  w.pack(rounded.data(), w.bf16_.data());
  return w;
}

std::vector<uint8_t> BlockWeight::codes() const {
  QAFT_CHECK(element_ == WeightElement::kE4M3, "codes() of a BF16 serving weight");
  std::vector<uint8_t> c(sz(out_ * in_));
  unpack(e4m3_.data(), c.data());
  return c;
}

std::vector<float> BlockWeight::to_float() const {
  std::vector<float> v(sz(out_ * in_));
  if (element_ == WeightElement::kBf16) {
    std::vector<uint16_t> h(v.size());
    unpack(bf16_.data(), h.data());
    bf16_to_float_n(h.data(), out_ * in_, v.data());
    return v;
  }
  // decode(code) · σ, one fp32 rounding: numerics' dequantize() of the unpacked codes.
  const std::vector<uint8_t> c = codes();
  dequantize(c.data(), scales_.data(), out_, in_, ScaleRecipe::deepseek_weight(scale_format_), v.data());
  return v;
}

int64_t BlockWeight::bytes() const {
  return static_cast<int64_t>(e4m3_.size() + 2 * bf16_.size() + sizeof(float) * scales_.size());
}

// ---- Activations ---------------------------------------------------------------------------------

void quantize_activations(const float* x, int64_t rows, int64_t cols, ScaleFormat scale_format,
                          BlockActivations& out) {
  const ScaleRecipe recipe = ScaleRecipe::deepseek_activation(scale_format);
  const bool pow2 = scale_format == ScaleFormat::kUe8m0;
  const int64_t kb = cdiv(cols, kScaleBlock);
  out.rows = rows;
  out.cols = cols;
  out.ld = round_up(cols, kKPad);
  out.quantized = true;
  out.values.resize(sz(rows * out.ld));
  out.scales.resize(sz(rows * kb));
#pragma omp parallel if (rows * cols > (1 << 15))
  {
    std::vector<uint8_t> codes(sz(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      fp8_quantize_tiles(x + r * cols, cols, kScaleBlock, recipe.amax_floor, pow2, recipe.element, codes.data(),
                         out.scales.data() + r * kb);
      float* v = out.values.data() + r * out.ld;
      fp8_decode_scaled(codes.data(), cols, 1.0f, recipe.element, v);  // the code values, exactly
      std::fill(v + cols, v + out.ld, 0.0f);
    }
  }
}

void plain_activations(const float* x, int64_t rows, int64_t cols, BlockActivations& out) {
  out.rows = rows;
  out.cols = cols;
  out.ld = round_up(cols, kKPad);
  out.quantized = false;
  out.values.resize(sz(rows * out.ld));
  out.scales.assign(sz(rows * cdiv(cols, kScaleBlock)), 1.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* v = out.values.data() + r * out.ld;
    std::memcpy(v, x + r * cols, sizeof(float) * sz(cols));
    std::fill(v + cols, v + out.ld, 0.0f);
  }
}

std::vector<float> dequantize_activations(const BlockActivations& a) {
  std::vector<float> x(sz(a.rows * a.cols));
  const int64_t kb = cdiv(a.cols, kScaleBlock);
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t c = 0; c < a.cols; ++c)
      x[sz(r * a.cols + c)] = a.values[sz(r * a.ld + c)] * a.scales[sz(r * kb + c / kScaleBlock)];
  return x;
}

// ---- The block-scaled GEMM -----------------------------------------------------------------------

namespace {

constexpr int64_t kRowChunk = 96;  // rows of one work item (the decoded weight tile is reused for them)
constexpr int kMr512 = 12, kMrPortable = 2;  // rows of the register tile (× 32 outputs)

struct Item {
  int64_t g, panel, r0, r1;
};

// E4M3 → fp32 for 32 codes at a time (n a multiple of 32): each code widened to 16 bits and moved
// into FP16 position (sign to bit 15, exponent and mantissa shifted up by 7) is the FP16 number
// value·2⁻⁸ — normal and subnormal codes alike, since both formats' subnormals line up — which
// vcvtph2ps widens exactly; ×256 restores the value. 0x7F / 0xFF become NaN.
QAFT_AVX512_KERNEL inline void decode_e4m3_avx512(const uint8_t* __restrict src, int64_t n, float* __restrict dst) {
  const __m512i mag_mask = _mm512_set1_epi16(0x7F), sign_mask = _mm512_set1_epi16(0x80);
  const __m512 k256 = _mm512_set1_ps(256.0f), nan = _mm512_set1_ps(__builtin_nanf(""));
  for (int64_t i = 0; i < n; i += 32) {
    const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    const __m512i mag = _mm512_and_si512(w, mag_mask);
    const __m512i h = _mm512_or_si512(_mm512_slli_epi16(mag, 7), _mm512_slli_epi16(_mm512_and_si512(w, sign_mask), 8));
    const __mmask32 is_nan = _mm512_cmpeq_epi16_mask(mag, mag_mask);
    const __m512 lo = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), k256);
    const __m512 hi = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), k256);
    _mm512_storeu_ps(dst + i, _mm512_mask_mov_ps(lo, static_cast<__mmask16>(is_nan), nan));
    _mm512_storeu_ps(dst + i + 16, _mm512_mask_mov_ps(hi, static_cast<__mmask16>(is_nan >> 16), nan));
  }
}

// wbuf [kc][32] = the K block [k0, k0 + kc) of panel p, decoded to fp32 (unscaled code values).
template <bool kAvx512>
QAFT_INLINE void decode_tile(const BlockWeight& w, int64_t p, int64_t k0, int64_t kc, float* __restrict wbuf) {
  const int64_t n = kc * kPanelRows;
  if (w.element() == WeightElement::kE4M3) {
    const uint8_t* __restrict src = w.e4m3_panel(p) + k0 * kPanelRows;
    if constexpr (kAvx512) {
      decode_e4m3_avx512(src, n, wbuf);
    } else {
      for (int64_t i = 0; i < n; ++i) wbuf[i] = e4m3_to_float_fast(src[i]);
    }
  } else {
    const uint16_t* __restrict src = w.bf16_panel(p) + k0 * kPanelRows;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
      float f;
      std::memcpy(&f, &bits, sizeof f);
      wbuf[i] = f;
    }
  }
}

// acc[i][j] = Σ_{kk < kc} a[i·lda + kk] · wbuf[kk·32 + j] for MR rows: the partial dot of one K
// block, in fp32, in registers (the compiler unrolls i and vectorizes j).
template <int MR>
QAFT_INLINE void micro(int64_t kc, const float* __restrict a, int64_t lda, const float* __restrict wbuf,
                       float (&acc)[MR][kPanelRows]) {
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < kPanelRows; ++j) acc[i][j] = 0.0f;
  for (int64_t kk = 0; kk < kc; ++kk) {
    const float* wk = wbuf + kk * kPanelRows;
    for (int i = 0; i < MR; ++i) {
      const float ai = a[i * lda + kk];
      for (int j = 0; j < kPanelRows; ++j) acc[i][j] += ai * wk[j];
    }
  }
}

// ctile[i][j] += acc[i][j] · σ_a[row i] · σ_w (DeepSeek's `accumulator += dot(a, b) * a_s * b_s`).
template <int MR>
QAFT_INLINE void accumulate(const float (&acc)[MR][kPanelRows], int64_t rows, const float* a_scales, int64_t a_scale_ld,
                            float w_scale, float* __restrict ctile) {
  for (int64_t i = 0; i < rows; ++i) {
    const float as = a_scales[i * a_scale_ld];
    float* c = ctile + i * kPanelRows;
    for (int j = 0; j < kPanelRows; ++j) c[j] += acc[i][j] * as * w_scale;
  }
}

// One register tile of MR rows: the K block's partial dots, scaled into ctile.
template <int MR>
QAFT_INLINE void tile_rows(int64_t kc, const float* a, int64_t lda, const float* wbuf, const float* a_scales,
                           int64_t a_scale_ld, float w_scale, float* ctile) {
  float acc[MR][kPanelRows];
  micro<MR>(kc, a, lda, wbuf, acc);
  accumulate<MR>(acc, MR, a_scales, a_scale_ld, w_scale, ctile);
}

// The last `rows` < MR rows of an item in one register tile of exactly that height (so that a
// decode batch of 8 rows is one pass over the decoded weight tile, not 8).
template <int MR>
QAFT_INLINE void tail_rows(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* wbuf,
                           const float* a_scales, int64_t a_scale_ld, float w_scale, float* ctile) {
  if constexpr (MR > 0) {
    if (rows == MR) return tile_rows<MR>(kc, a, lda, wbuf, a_scales, a_scale_ld, w_scale, ctile);
    tail_rows<MR - 1>(rows, kc, a, lda, wbuf, a_scales, a_scale_ld, w_scale, ctile);
  }
}

template <int MR, bool kAvx512>
QAFT_INLINE void run_item(const BlockActivations& a, const BlockWeight& w, const Item& it, float* y, float* wbuf,
                          float* ctile) {
  const int64_t m = it.r1 - it.r0, kblocks = cdiv(w.in(), kScaleBlock);
  const int64_t w_scale_row = (it.panel * kPanelRows / kScaleBlock) * kblocks;
  std::fill(ctile, ctile + m * kPanelRows, 0.0f);
  for (int64_t kb = 0; kb < kblocks; ++kb) {
    const int64_t k0 = kb * kScaleBlock, kc = std::min(kScaleBlock, w.k_padded() - k0);
    decode_tile<kAvx512>(w, it.panel, k0, kc, wbuf);
    const float ws = w.element() == WeightElement::kE4M3 ? w.scales()[sz(w_scale_row + kb)] : 1.0f;
    int64_t i0 = 0;
    for (; i0 + MR <= m; i0 += MR) {
      const int64_t r = it.r0 + i0;
      tile_rows<MR>(kc, a.values.data() + r * a.ld + k0, a.ld, wbuf, a.scales.data() + r * kblocks + kb, kblocks, ws,
                    ctile + i0 * kPanelRows);
    }
    if (i0 < m) {
      const int64_t r = it.r0 + i0;
      tail_rows<MR - 1>(m - i0, kc, a.values.data() + r * a.ld + k0, a.ld, wbuf, a.scales.data() + r * kblocks + kb,
                        kblocks, ws, ctile + i0 * kPanelRows);
    }
  }
  const int64_t out = w.out(), o0 = it.panel * kPanelRows, width = std::min(kPanelRows, out - o0);
  for (int64_t i = 0; i < m; ++i)
    std::memcpy(y + (it.r0 + i) * out + o0, ctile + i * kPanelRows, sizeof(float) * sz(width));
}

QAFT_AVX512_KERNEL void run_item_avx512(const BlockActivations& a, const BlockWeight& w, const Item& it, float* y,
                                        float* wbuf, float* ctile) {
  run_item<kMr512, true>(a, w, it, y, wbuf, ctile);
}
void run_item_portable(const BlockActivations& a, const BlockWeight& w, const Item& it, float* y, float* wbuf,
                       float* ctile) {
  run_item<kMrPortable, false>(a, w, it, y, wbuf, ctile);
}

void run_items(const BlockActivations& a, std::span<const BlockWeight> weights, const std::vector<Item>& items,
               int64_t work, float* y) {
  const bool avx512 = cpu_features().has_avx512_codecs();
  const int64_t n = static_cast<int64_t>(items.size());
#pragma omp parallel if (n > 1 && work > (1 << 16) && !omp_in_parallel())
  {
    std::vector<float> wbuf(sz(kScaleBlock * kPanelRows)), ctile(sz(kRowChunk * kPanelRows));
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) {
      const Item& it = items[sz(i)];
      const BlockWeight& w = weights[sz(it.g)];
      if (avx512)
        run_item_avx512(a, w, it, y, wbuf.data(), ctile.data());
      else
        run_item_portable(a, w, it, y, wbuf.data(), ctile.data());
    }
  }
}

void add_items(int64_t g, int64_t r0, int64_t r1, int64_t panels, std::vector<Item>& items) {
  if (r1 <= r0) return;
  const int64_t chunks = cdiv(r1 - r0, kRowChunk), chunk = cdiv(r1 - r0, chunks);
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t r = r0; r < r1; r += chunk) items.push_back({g, p, r, std::min(r1, r + chunk)});
}

}  // namespace

void block_gemm(const BlockActivations& a, const BlockWeight& w, float* y) {
  QAFT_CHECK(a.cols == w.in(), "block_gemm: activations have {} columns, the weight [{}, {}] needs {}", a.cols, w.out(),
             w.in(), w.in());
  std::vector<Item> items;
  add_items(0, 0, a.rows, w.panels(), items);
  run_items(a, std::span<const BlockWeight>(&w, 1), items, a.rows * w.out() * w.in(), y);
}

void block_grouped_gemm(const BlockActivations& a, std::span<const BlockWeight> weights, const int64_t* offsets,
                        float* y) {
  const int64_t groups = static_cast<int64_t>(weights.size());
  QAFT_CHECK(groups > 0 && offsets[0] == 0 && offsets[groups] == a.rows,
             "block_grouped_gemm: offsets must run from 0 to the {} rows over {} groups", a.rows, groups);
  std::vector<Item> items;
  for (int64_t g = 0; g < groups; ++g) {
    const BlockWeight& w = weights[sz(g)];
    QAFT_CHECK(w.in() == a.cols && w.out() == weights[0].out(),
               "block_grouped_gemm: group {} weight [{}, {}] does not match [{}, {}]", g, w.out(), w.in(),
               weights[0].out(), a.cols);
    QAFT_CHECK(offsets[g + 1] >= offsets[g], "block_grouped_gemm: offsets decrease at group {}", g);
    add_items(g, offsets[g], offsets[g + 1], w.panels(), items);
  }
  run_items(a, weights, items, a.rows * weights[0].out() * a.cols, y);
}

}  // namespace qaft
