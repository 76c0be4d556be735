// Frozen base weights in their storage format, for LoRA fine-tuning: every linear weight of the
// decoder layers (attention projections, dense MLPs, shared experts, stacked routed experts) is
// held as BF16, as DeepSeek block-FP8 (E4M3 codes + 128×128 fp32 `weight_scale_inv`, 1 byte per
// parameter) or as NF4 with double quantization (QLoRA, ≈ 0.5 byte per parameter), and
// dequantized to the compute type one linear (one expert) at a time, on use. Everything else —
// embedding, norms, router, biases, LM head — stays in the float ParamStore.
#pragma once

#include "model/weights.h"
#include "numerics/nf4.h"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

class ShardedCheckpoint;

enum class BaseFormat : uint8_t {
  kF32,   // the float ParamStore itself (full precision; no frozen store)
  kBf16,  // 2 bytes per parameter, round-to-nearest-even from fp32
  kFp8,   // E4M3 codes + fp32 scales per 128×128 block (DeepSeek's checkpoint format)
  kNf4,   // NF4, blocksize 64, double-quantized statistics (QLoRA)
};
std::string_view base_format_name(BaseFormat f);  // "f32", "bf16", "fp8", "nf4"
// Parses a name; throws kInvalidArgument listing the valid names.
BaseFormat parse_base_format(std::string_view name);

// True for the parameters a frozen store holds: the 2-D linear weights of the decoder layers and
// the stacked expert weights — not the embedding, the LM head, norms, biases, the router gate, the
// qwen2_moe shared_expert_gate nor the e_score_correction_bias.
bool is_frozen_linear(const ParamSpec& spec);

// One linear weight [out, in], or a stack of `groups` expert weights [groups, out, in].
struct FrozenTensor {
  BaseFormat format = BaseFormat::kBf16;
  int64_t groups = 0;  // 0: a plain linear; > 0: stacked experts
  int64_t out = 0;
  int64_t in = 0;
  std::vector<uint16_t> bf16;       // kBf16: [G, out, in]
  std::vector<uint8_t> fp8_codes;   // kFp8: [G, out, in] E4M3 codes
  std::vector<float> fp8_scales;    // kFp8: [G, cdiv(out,128), cdiv(in,128)] dequant multipliers
  std::vector<Nf4Tensor> nf4;       // kNf4: one [out, in] tensor per group

  int64_t num_groups() const { return groups > 0 ? groups : 1; }
  // Bytes held (codes + scales / statistics).
  int64_t bytes() const;
  // Dequantizes group g (0 for a plain linear) into out [out, in].
  void dequantize(int64_t group, float* out) const;
  void dequantize(int64_t group, double* out) const;
};

class FrozenStore {
 public:
  // nullptr when `name` (a qaft parameter name) is not held here.
  const FrozenTensor* find(std::string_view name) const;
  void insert(const std::string& name, FrozenTensor t);
  int64_t bytes() const;  // Σ bytes of every tensor
  size_t size() const { return tensors_.size(); }
  const std::map<std::string, FrozenTensor, std::less<>>& tensors() const { return tensors_; }

 private:
  std::map<std::string, FrozenTensor, std::less<>> tensors_;
};

// Quantizes one fp32 weight [groups?, out, in] to `format` (not kF32).
FrozenTensor freeze_tensor(const float* w, int64_t groups, int64_t out, int64_t in, BaseFormat format);

// A model whose frozen linears live in `frozen` and whose other parameters live in `params`
// (a ParamStore over the remaining specs, in model_param_specs order). format == kF32 keeps
// everything in `params` and leaves `frozen` empty.
struct BaseModel {
  BaseFormat format = BaseFormat::kF32;
  ParamStore<float> params;
  FrozenStore frozen;
};

// From a full fp32 store (random init, a trained model): moves the frozen linears into the store.
BaseModel freeze_base_model(ParamStore<float> all, BaseFormat format);
// From a checkpoint. With kFp8 and a DeepSeek block-FP8 checkpoint, the E4M3 codes and scales of
// the file are kept as they are (no dequantize-requantize); other sources are quantized. Never
// holds a full fp32 copy of the frozen linears (one tensor at a time). Errors as load_params.
BaseModel load_base_model(const ShardedCheckpoint& checkpoint, const ModelConfig& config, BaseFormat format);

}  // namespace qaft
