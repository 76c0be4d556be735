// A linear of the serving model — one weight [out, in] or a stack of G expert weights — in the
// deployment's precision, with its forward over a batch of token rows (plain) or over the permuted
// MoE layout (grouped).
//
//   kFp8  E4M3 codes + 128×128 scales (kernels/cpu/block_gemm.h); the input is quantized per token in 1×128
//         tiles when ServingNumerics::quantize_activations (W8A8, DeepSeek's fp8_gemm), else it
//         multiplies the codes in fp32 (W8A16) — both with FP32 accumulation per 128-wide K block;
//   kBf16 BF16 weights, fp32 activations, FP32 accumulation (the same kernel, scales 1);
//   kF32  fp32 weights and the training path's GEMMs (oneDNN gemm / grouped_gemm): for tests and
//         as the reference deployment without any quantization.
#pragma once

#include "kernels/cpu/block_gemm.h"

#include <string_view>
#include <vector>

namespace qaft {

enum class Precision : uint8_t { kFp8, kBf16, kF32 };
std::string_view precision_name(Precision p);  // "fp8", "bf16", "f32"
// Parses a name; throws kInvalidArgument listing the valid ones.
Precision parse_precision(std::string_view name);

// How every linear of a serving model computes.
struct ServingNumerics {
  Precision precision = Precision::kFp8;
  ScaleFormat scale_format = ScaleFormat::kFp32;  // block scales of weights and activations (kFp8)
  bool quantize_activations = true;               // kFp8: W8A8 (1×128 E4M3 tiles) or W8A16

  bool quantizes_inputs() const { return precision == Precision::kFp8 && quantize_activations; }
};

class InferLinear {
 public:
  InferLinear() = default;
  // An empty linear of `groups` (0: a plain one) weights [out, in]; set_weight fills group g.
  InferLinear(Precision precision, int64_t groups, int64_t out, int64_t in);

  // Group g's weight from fp32 values [out, in]: kFp8 quantizes them (128×128, `scale_format`),
  // kBf16 rounds them, kF32 copies them.
  void set_weight(int64_t g, const float* w, ScaleFormat scale_format);
  // Group g's weight from a quantized serving weight (kFp8 only; e.g. a checkpoint's codes).
  void set_weight(int64_t g, BlockWeight w);
  void set_bias(const float* b);  // [out] (plain linears)

  Precision precision() const { return precision_; }
  int64_t groups() const { return groups_; }
  int64_t out() const { return out_; }
  int64_t in() const { return in_; }
  bool empty() const { return out_ == 0; }
  // The values group g computes with [out, in] (dequantized codes · scales, BF16 widened, or f32).
  std::vector<float> weight_values(int64_t g) const;
  const BlockWeight& block(int64_t g) const { return blocks_[static_cast<size_t>(g)]; }
  const std::vector<float>& bias() const { return bias_; }  // [out], or empty
  int64_t bytes() const;

  // y [N, out] = x [N, in] · Wᵀ (+ b), overwritten. A plain linear only.
  void forward(const float* x, int64_t N, float* y, const ServingNumerics& numerics) const;
  // Grouped: rows [offsets[g], offsets[g+1]) of x [rows, in] through weight g; y [rows, out].
  void grouped_forward(const int64_t* offsets, const float* x, float* y, const ServingNumerics& numerics) const;

 private:
  void prepare_input(const float* x, int64_t rows, const ServingNumerics& numerics, BlockActivations& a) const;

  Precision precision_ = Precision::kF32;
  int64_t groups_ = 0;
  int64_t out_ = 0, in_ = 0;
  std::vector<float> f32_;           // kF32: [G, out, in]
  std::vector<BlockWeight> blocks_;  // kFp8 / kBf16: one per group
  std::vector<float> bias_;          // [out] or empty
};

}  // namespace qaft
