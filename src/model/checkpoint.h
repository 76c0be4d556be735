// Writing a model's parameters as a Hugging Face checkpoint directory (config.json +
// model.safetensors or shards + index), in F32, BF16, or DeepSeek's block-FP8 layout:
// every linear weight that DeepSeek stores in FP8 becomes `X.weight` F8_E4M3 + `X.weight_scale_inv`
// F32 [cdiv(out,128), cdiv(in,128)] (the dequant multipliers); norms, router, embeddings and head
// stay BF16 and the router correction bias F32 (formats.md §1.7). Experts are written per expert
// under their HF names. Every file is written atomically.
#pragma once

#include "model/weights.h"
#include "numerics/scale_recipe.h"

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>

namespace qaft {

enum class CheckpointFormat : uint8_t { kF32, kBF16, kFp8Block };

struct CheckpointOptions {
  CheckpointFormat format = CheckpointFormat::kBF16;
  ScaleFormat fp8_scale_format = ScaleFormat::kFp32;  // kUe8m0: power-of-two weight_scale_inv
  uint64_t max_shard_bytes = 0;                       // 0 = no limit (one shard + index)
};

// Writes DIR/config.json (config_json with quantization_config added or removed to match the
// format) and the weights. Creates DIR if needed.
void save_checkpoint(const ParamStore<float>& params, const std::string& config_json, const std::string& dir,
                     const CheckpointOptions& options);

// The config.json of a checkpoint in `format` (shared by save_checkpoint and the serving export,
// infer/export_checkpoint.h): kFp8Block sets DeepSeek's quantization_config {quant_method "fp8",
// fmt "e4m3", activation_scheme "dynamic", weight_block_size [128, 128]} plus scale_fmt "ue8m0"
// for power-of-two scales (as DeepSeek-V3.1); other formats remove it. torch_dtype becomes
// "float32" (kF32) or "bfloat16".
void set_checkpoint_format(nlohmann::json& config, CheckpointFormat format, ScaleFormat fp8_scale_format);

// Tensors every checkpoint format keeps in F32: the router's e_score_correction_bias (formats.md
// §1.7: F32 in DeepSeek's checkpoints) and linear biases.
bool checkpoint_keeps_f32(std::string_view tensor_name);

}  // namespace qaft
