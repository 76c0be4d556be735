// ScaleRecipe — how a [rows, cols] fp32 matrix becomes FP8 codes plus scales — and the quantize,
// dequantize and fake-quantize (quantize-dequantize, straight-through backward) operations.
//
// Every granularity is a block of (block_rows × block_cols) elements sharing one scale; the scale
// grid is [cdiv(rows, br), cdiv(cols, bc)], row-major. Edge blocks may be partial: their amax is
// taken over the valid elements only, which equals DeepSeek's "zero-pad to 128, then drop".
//
//   granularity      block           used for
//   kPerTensor       rows × cols     classic FP8 (one scale)
//   kPerChannel      1 × cols        one scale per row: per output channel of a weight [out, in],
//                                    per token of an activation [tokens, channels]
//   kTile1x128       1 × 128         DeepSeek-V3 activations and gradients (per token per 128 ch.)
//   kBlock128x128    128 × 128       DeepSeek-V3 weights (weight_scale_inv)
//   kMx1x32          1 × 32          OCP MX block
//
// Scale σ of a block (the dequant multiplier: x ≈ code · σ, DeepSeek's weight_scale_inv):
//   amax = max|x| over the block;  σ = max(amax, amax_floor) / max_finite(element format);
//   kUe8m0 scale format: σ = 2^ceil(log2 σ) (DeepSeek's ue8m0, cuBLAS "RCEIL"), clamped to the
//   UE8M0 range. Codes: encode(x / σ) with round-to-nearest-even, saturating.
// amax_floor is 1e-4 in DeepSeek (keeps all-zero blocks finite). With a floor of 0 an all-zero
// block gets σ = 1 (fp32) or 2^0 (UE8M0) and zero codes.
//
// Non-finite input (documented result, tested): a block that contains NaN or ±inf gets σ = NaN and
// every code in it is the NaN code (0x7F for E4M3; 0x7F for E5M2), so dequantization returns NaN for
// the whole block — a non-finite value poisons exactly its block, as it would in a block-scaled
// GEMM — and QuantizeStats counts such blocks so callers can report them.
#pragma once

#include "numerics/fp8.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qaft {

enum class Granularity : uint8_t { kPerTensor, kPerChannel, kTile1x128, kBlock128x128, kMx1x32 };
enum class ScaleFormat : uint8_t {
  kFp32,   // σ = amax / max_finite, any fp32 value
  kUe8m0,  // σ rounded up to a power of two (exact scaling: no rounding error from σ itself)
};

std::string_view granularity_name(Granularity g);  // "per-tensor", "1x128", ...
std::string_view scale_format_name(ScaleFormat s);  // "fp32", "ue8m0"

struct ScaleRecipe {
  Granularity granularity = Granularity::kTile1x128;  // block shape sharing one scale
  ScaleFormat scale_format = ScaleFormat::kFp32;       // how σ is represented
  Fp8Format element = Fp8Format::kE4M3;                // element code format
  float amax_floor = 1e-4f;                            // DeepSeek's clamp of amax

  // DeepSeek-V3 activations / gradients: 1×128 tiles, E4M3, fp32 scales, floor 1e-4.
  static ScaleRecipe deepseek_activation(ScaleFormat fmt = ScaleFormat::kFp32);
  // DeepSeek-V3 weights: 128×128 blocks, E4M3, fp32 scales.
  static ScaleRecipe deepseek_weight(ScaleFormat fmt = ScaleFormat::kFp32);

  // Block shape for a matrix of this size (per-tensor and per-channel depend on it).
  int64_t block_rows(int64_t rows) const;
  int64_t block_cols(int64_t cols) const;
  // Scale grid shape: {cdiv(rows, br), cdiv(cols, bc)}.
  int64_t scale_rows(int64_t rows) const;
  int64_t scale_cols(int64_t cols) const;
  std::string str() const;  // "1x128 e4m3 fp32-scale floor=0.0001"

  bool operator==(const ScaleRecipe&) const = default;
};

// What a quantization pass saw.
struct QuantizeStats {
  int64_t blocks = 0;            // scale blocks processed
  int64_t nonfinite_blocks = 0;  // blocks containing NaN or inf (their σ and codes are NaN)
};

// The scale for one block with absolute maximum `amax` (NaN if amax is not finite).
float compute_scale(float amax, const ScaleRecipe& recipe);

// x: [rows, cols] row-major fp32 (row stride ld >= cols; pass cols for dense).
// codes: [rows, cols] dense; scales: [scale_rows, scale_cols] dense (fp32 values; for kUe8m0 they
// are exact powers of two). Parallel over row blocks with OpenMP.
QuantizeStats quantize(const float* x, int64_t rows, int64_t cols, int64_t ld,
                       const ScaleRecipe& recipe, uint8_t* codes, float* scales);
// out[r, c] = decode(codes[r, c]) · scales[r / br, c / bc]; out dense [rows, cols].
void dequantize(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols,
                const ScaleRecipe& recipe, float* out);
// out = dequantize(quantize(x)) without storing codes; out may alias x.
QuantizeStats fake_quantize(const float* x, int64_t rows, int64_t cols, const ScaleRecipe& recipe,
                            float* out);
// Straight-through backward of fake_quantize with σ detached: grad_x = grad_out. Amax scaling
// never clips (|x/σ| ≤ max by construction, up to one fp32 rounding that encode saturates), so the
// STE mask is all ones; this is formats.md §7.2/§7.3's unmasked STE. grad_x may alias grad_out.
void fake_quantize_backward(const float* grad_out, int64_t n, float* grad_x);

// An owning quantized matrix: codes + scales + the recipe that made them.
struct QTensor {
  int64_t rows = 0;             // logical rows
  int64_t cols = 0;             // logical cols
  ScaleRecipe recipe;           // how codes/scales were produced
  std::vector<uint8_t> codes;   // [rows, cols]
  std::vector<float> scales;    // [scale_rows, scale_cols]
  QuantizeStats stats;          // from the quantization pass

  static QTensor from_float(const float* x, int64_t rows, int64_t cols, const ScaleRecipe& recipe);
  std::vector<float> to_float() const;
};

}  // namespace qaft
