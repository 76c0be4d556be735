// LoRA adapters in PEFT's format (formats.md §5.3): a directory with adapter_config.json and
// adapter_model.safetensors whose keys are "base_model.model.<module>.lora_A.weight" /
// ".lora_B.weight", routed experts written per expert ("...mlp.experts.<e>.gate_proj.lora_A.weight"),
// F32 tensors. vLLM/SGLang and PEFT load it; qaft loads it back for serving and evaluation.
#pragma once

#include "adapters/lora_targets.h"

#include <nlohmann/json.hpp>

#include <string>

namespace qaft {

struct PeftAdapter {
  LoraConfig config;                 // rank, alpha, rslora, dropout, target list
  std::vector<LoraTarget> targets;   // resolved against the base model
  ParamStore<float> params;          // over lora_param_specs(targets)
  std::string base_model;            // base_model_name_or_path as written
  nlohmann::json training;           // how it was trained ("qaft"."training": QAT settings, base
                                     // format), or null for adapters from elsewhere
};

// Writes DIR/adapter_config.json and DIR/adapter_model.safetensors atomically (each file is
// written to a temporary name and renamed; DIR is created). target_modules in the config lists
// the distinct module leaf names adapted ("q_a_proj", "gate_proj", …), so that PEFT with the
// same base resolves the same modules.
// `training` (may be null) is stored as "qaft"."training": the numerics the adapter was trained
// with (QAT on/off, scale format, activation quantization, base format), so that evaluation and
// serving can reproduce them.
void save_peft_adapter(const std::string& dir, const ModelConfig& model, const LoraConfig& config,
                       const std::vector<LoraTarget>& targets, const ParamStore<float>& params,
                       const std::string& base_model, const nlohmann::json& training = nullptr);

// Reads an adapter for `model`. Errors (kInvalidFile, naming the file and key): missing files,
// malformed JSON, r / lora_alpha missing or invalid, DoRA or modules_to_save set, keys that are not
// lora_A/lora_B of a module of this model (listing a few that exist), shapes that do not match the
// base (naming both), some experts of a layer present and others missing, an A without its B.
PeftAdapter load_peft_adapter(const std::string& dir, const ModelConfig& model);

}  // namespace qaft
