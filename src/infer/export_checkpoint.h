// Writing a served model — an InferenceModel's serving weights, i.e. what a deployment computes
// with after the live merge — as a Hugging Face checkpoint directory that reloads bit for bit:
//
//   kFp8 (DeepSeek's block-FP8 layout, formats.md §1.7 / §6):
//     every served linear  <name>.weight            F8_E4M3 [out, in]   the served codes, as they are
//                          <name>.weight_scale_inv  F32 [cdiv(out,128), cdiv(in,128)]  the served scales
//     routed experts one by one under their HF names (model.layers.L.mlp.experts.E.gate_proj.weight, …);
//     norms, router, embedding, LM head: BF16 when every value is exactly a BF16 (true for an FP8 or
//     BF16 base), else F32 (logged: the export must not round what is served);
//     e_score_correction_bias and linear biases: F32;
//     config.json: quantization_config {quant_method "fp8", fmt "e4m3", activation_scheme "dynamic",
//     weight_block_size [128, 128]} (+ scale_fmt "ue8m0" for power-of-two scales).
//   kBf16: the served BF16 weights, the rest as above, no quantization_config.
//   kF32:  every tensor F32 (tests).
//
// config.json also records how the model was served, under "qaft_serving" (ServingRecord): vLLM,
// SGLang and transformers ignore the key; Deployment::load reads it, so that an export of a W8A16
// deployment (no activation quantization: not expressible in quantization_config, whose
// activation_scheme vLLM requires to be "dynamic") is served W8A16 by qaft again.
// The MTP module is not served by qaft and not written: num_nextn_predict_layers becomes 0. A
// config.json without "architectures" gets the transformers class of its model_type
// (DeepseekV3ForCausalLM, …), which vLLM and SGLang select the model implementation by.
//
// Shards of at most max_shard_bytes (model-0000i-of-0000n.safetensors, {"format": "pt"} metadata)
// and model.safetensors.index.json, as save_checkpoint writes them; each file atomically. Only one
// shard's bytes are materialized at a time.
#pragma once

#include "infer/engine.h"
#include "model/checkpoint.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace qaft {

inline constexpr const char* kServingRecordKey = "qaft_serving";

// config.json "qaft_serving": how the exported weights were served.
struct ServingRecord {
  Precision precision = Precision::kFp8;
  ScaleFormat scale_format = ScaleFormat::kFp32;  // kFp8: weight and activation scales
  bool quantize_activations = true;               // kFp8: W8A8 (true) or W8A16
  nlohmann::json source;                          // provenance: {"model": dir, "adapter": dir or null}

  nlohmann::json to_json() const;
};

// The record of MODEL_DIR/config.json; nullopt when it has none (not a qaft export). Throws
// kInvalidFile naming the field when the record is malformed, kIo when config.json cannot be read.
std::optional<ServingRecord> read_serving_record(const std::string& model_dir);

struct ServingCheckpointOptions {
  uint64_t max_shard_bytes = 5'000'000'000;  // HF's default shard size
  nlohmann::json source;                     // ServingRecord::source
};

// What write_serving_checkpoint wrote.
struct ServingCheckpointReport {
  CheckpointFormat format = CheckpointFormat::kFp8Block;
  int64_t tensors = 0;                // tensors written (weights, scales, norms, … each expert's own)
  int64_t fp8_weights = 0;            // of which F8_E4M3 weights (each with its weight_scale_inv)
  int64_t f32_not_bf16 = 0;           // norms/router/embedding/head written F32: not exactly BF16
  uint64_t tensor_bytes = 0;          // Σ tensor bytes
  std::vector<std::string> files;     // file names written into the directory
};

// Writes `model`'s serving weights into the existing directory `dir`, with config.json made from
// `config_json` (the source model's, see above). The format follows the model's precision (kFp8 →
// block FP8, kBf16 → BF16, kF32 → F32). Throws kIo when a file cannot be written.
ServingCheckpointReport write_serving_checkpoint(const InferenceModel& model, const std::string& config_json,
                                                 const std::string& dir, const ServingCheckpointOptions& options = {});

}  // namespace qaft
