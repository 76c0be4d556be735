// The serving linear y = x · Wᵀ with a weight held in its deployment format — real E4M3 codes with
// fp32 128×128 block scales (DeepSeek's `weight` + `weight_scale_inv`), or BF16 — and the
// block-scaled GEMM of DeepSeek's inference/kernel.py (formats.md §1.6):
//
//   act_quant:  the input x [rows, K] is quantized per token in 1×128 tiles at run time
//               (E4M3, σ_a = max(amax, 1e-4)/448, optionally rounded up to a power of two);
//   fp8_gemm:   y[r, o] = Σ_kb ( Σ_{k ∈ kb} code_a[r, k] · code_w[o, k] ) · σ_a[r, kb] · σ_w[o/128, kb]
//               — per 128-wide K block a partial dot of codes in fp32, times both scales, summed
//               over the K blocks in fp32.
//
// Relation to the training-time QAT forward (model/linear.h), which computes Q_a(x) · Q_w(M)ᵀ as an
// fp32 GEMM over the *dequantized* operands Q_a(x) = fl(code_a · σ_a), Q_w(M) = fl(code_w · σ_w):
// both use the same codes and scales, so every product is mathematically the same number
// (code_a·σ_a)·(code_w·σ_w). They differ only in rounding: training rounds each dequantized operand
// to fp32 once (≤ 2⁻²⁴ relative; exact for UE8M0 power-of-two scales) and sums all K products in
// oneDNN's order, while here the code products are exact in fp32 (4 significant bits each), the
// partial sums run per 128-block and the scales multiply once per block. The results agree to a few
// fp32 ulps of Σ|products| (tests/unit/infer_fp8_linear_test.cpp states the bound).
//
// Layout: the weight is packed once, at build time, into panels of 32 output rows, each a k-major
// [K↑16][32] tile (element (o, k) at panel o/32, offset k·32 + o%32), zero-padded past `out` and
// `in`, so that 32 consecutive outputs load as two vectors. A run decodes one panel's K block
// (≤ 128 × 32 codes) to fp32 once into an L1 buffer and multiplies every row of the work item with
// it; OpenMP runs over (group, panel, row chunk) work items.
#pragma once

#include "numerics/scale_recipe.h"

#include <cstdint>
#include <span>
#include <vector>

namespace qaft {

// How a serving weight's elements are stored.
enum class WeightElement : uint8_t {
  kE4M3,  // 1 byte per element + fp32 scales per 128×128 block
  kBf16,  // 2 bytes per element, no scales
};

inline constexpr int64_t kPanelRows = 32;   // output rows per packed panel
inline constexpr int64_t kScaleBlock = 128;  // K (and weight row) block of the scales
inline constexpr int64_t kKPad = 16;        // the packed K dimension is padded to a multiple of this

// One weight W [out, in] in its serving format, packed for block_gemm.
class BlockWeight {
 public:
  BlockWeight() = default;
  // From E4M3 codes [out, in] (row-major, HF layout) and scales [cdiv(out,128), cdiv(in,128)] as
  // stored in a DeepSeek checkpoint (copied bit for bit). `scale_format` says what the scales are
  // (kUe8m0: powers of two) and is carried for the activation quantization of matching format.
  static BlockWeight from_e4m3(const uint8_t* codes, const float* scales, int64_t out, int64_t in,
                               ScaleFormat scale_format);
  // Quantizes w [out, in] with ScaleRecipe::deepseek_weight(scale_format) (QTensor::from_float).
  static BlockWeight quantize_e4m3(const float* w, int64_t out, int64_t in, ScaleFormat scale_format);
  // Rounds w [out, in] to BF16 (round to nearest even).
  static BlockWeight from_bf16(const float* w, int64_t out, int64_t in);

  WeightElement element() const { return element_; }
  int64_t out() const { return out_; }
  int64_t in() const { return in_; }
  int64_t k_padded() const { return k_padded_; }  // in ↑ 16
  ScaleFormat scale_format() const { return scale_format_; }
  // E4M3: [cdiv(out,128), cdiv(in,128)] dequant multipliers; BF16: empty.
  const std::vector<float>& scales() const { return scales_; }
  // E4M3 codes [out, in] row-major (unpacked), as from_e4m3 received them.
  std::vector<uint8_t> codes() const;
  // The weight's values [out, in]: decode(code) · σ (one fp32 rounding, as numerics' dequantize())
  // or the BF16 values widened.
  std::vector<float> to_float() const;
  // Bytes held (elements + scales).
  int64_t bytes() const;

  // Packed storage (block_gemm's view): panel p holds rows [32p, 32p + 32) as [k_padded][32].
  const uint8_t* e4m3_panel(int64_t p) const { return e4m3_.data() + p * k_padded_ * kPanelRows; }
  const uint16_t* bf16_panel(int64_t p) const { return bf16_.data() + p * k_padded_ * kPanelRows; }
  int64_t panels() const { return (out_ + kPanelRows - 1) / kPanelRows; }

 private:
  void allocate(WeightElement element, int64_t out, int64_t in);
  // Row-major [out, in] elements ↔ the panel layout.
  template <typename E>
  void pack(const E* rows, E* packed) const;
  template <typename E>
  void unpack(const E* packed, E* rows) const;

  WeightElement element_ = WeightElement::kE4M3;
  ScaleFormat scale_format_ = ScaleFormat::kFp32;
  int64_t out_ = 0, in_ = 0, k_padded_ = 0;
  std::vector<uint8_t> e4m3_;   // [panels, k_padded, 32]
  std::vector<uint16_t> bf16_;  // [panels, k_padded, 32]
  std::vector<float> scales_;   // [cdiv(out,128), cdiv(in,128)]
};

// The GEMM's left operand: rows of fp32 values with one scale per (row, 128-column block).
//   quantized: values are the E4M3 code values of act_quant (exact in fp32, unscaled) and scales
//              the σ_a of each 1×128 tile — what numerics' fake_quantize computes, kept apart;
//   plain:     values = x and every scale 1 (W8A16 / BF16 weights with fp32 activations).
// Columns past `cols` (up to ld = cols ↑ 16) are zero.
struct BlockActivations {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;
  bool quantized = false;
  std::vector<float> values;  // [rows, ld]
  std::vector<float> scales;  // [rows, cdiv(cols, 128)]
};

// act_quant: x [rows, cols] → out, with ScaleRecipe::deepseek_activation(scale_format) (the same
// codes and scales as fake_quantize of that recipe).
void quantize_activations(const float* x, int64_t rows, int64_t cols, ScaleFormat scale_format,
                          BlockActivations& out);
// x [rows, cols] as it is (scales 1).
void plain_activations(const float* x, int64_t rows, int64_t cols, BlockActivations& out);
// The values the GEMM multiplies: code · σ_a [rows, cols] (equal to fake_quantize's output), or x.
std::vector<float> dequantize_activations(const BlockActivations& a);

// y [a.rows, w.out()] (dense, overwritten) = the block-scaled product described at the top.
// a.cols must equal w.in().
void block_gemm(const BlockActivations& a, const BlockWeight& w, float* y);

// Grouped (stacked experts over the permuted token layout): rows [offsets[g], offsets[g+1]) of `a`
// go through weights[g]; y [a.rows, out] with every weight of the same shape. One parallel pass
// over every (group, panel, row chunk); groups without rows are skipped. offsets has
// weights.size() + 1 entries, offsets[0] = 0, offsets.back() = a.rows.
void block_grouped_gemm(const BlockActivations& a, std::span<const BlockWeight> weights, const int64_t* offsets,
                        float* y);

// E4M3 code → fp32 with bit operations only (vectorizable); equals fp8_decode(code, kE4M3) for
// every code (NaN for 0x7F / 0xFF).
inline float e4m3_to_float_fast(uint8_t code) {
  const uint32_t mag = code & 0x7Fu;
  // Normal codes: exponent field e (4 bits) and mantissa m (3 bits) shifted into fp32 position,
  // rebiased by 120 (= 127 − 7). Subnormal codes (e = 0) come out as 2⁻⁷·(1 + m/8); their value
  // m·2⁻⁹ is (that − 2⁻⁷)·2, computed exactly.
  const uint32_t bits = (mag << 20) + (120u << 23);
  float v;
  __builtin_memcpy(&v, &bits, sizeof v);
  const float sub = (v - 0.0078125f) * 2.0f;
  v = mag < 8 ? sub : v;
  v = mag == 0x7F ? __builtin_nanf("") : v;
  return (code & 0x80u) ? -v : v;
}

}  // namespace qaft
