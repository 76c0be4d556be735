// `qaft export`: a tuned model in the form another server (or qaft itself) loads.
//
//   kFp8  the deployment's merged FP8 weights as DeepSeek's block-FP8 HF checkpoint: exactly the
//         codes and scales `qaft serve MODEL --adapter ADAPTER` serves (Deployment::load, the live
//         merge), written by write_serving_checkpoint (infer/export_checkpoint.h) with config.json
//         and the tokenizer files. `qaft serve OUT` (no adapter) serves the same codes, scales and
//         logits, bit for bit; vLLM/SGLang load it as a block-FP8 DeepSeek checkpoint.
//   kBf16 the same with BF16 weights (the merged weights BF16(W0 + s·B·A), as `--precision bf16`
//         serves them); serve it with `--precision bf16` to reproduce them bit for bit.
//   kPeft the adapter itself (adapter_config.json + adapter_model.safetensors, copied byte for byte)
//         after checking it against the base (load_peft_adapter), for servers that apply LoRA at
//         run time (not numerically the QAT-merged model: formats.md §7.3).
//
// The output appears whole or not at all (io/staged_directory.h); an existing non-empty output is
// refused unless `force`. The tokenizer files copied: tokenizer.json and, when present,
// tokenizer_config.json, special_tokens_map.json, generation_config.json and the model's own code
// (configuration_*.py, modeling_*.py) that config.json's auto_map may name.
#pragma once

#include "infer/export_checkpoint.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

enum class ExportFormat : uint8_t { kFp8, kBf16, kPeft };
std::string_view export_format_name(ExportFormat f);  // "fp8", "bf16", "peft"
// Parses a name; throws kInvalidArgument listing the valid ones.
ExportFormat parse_export_format(std::string_view name);

struct ExportOptions {
  std::string model_dir;                    // the base: HF model directory
  std::string adapter_dir;                  // PEFT adapter ("" = the base alone; required for kPeft)
  ExportFormat format = ExportFormat::kFp8;
  std::optional<ScaleFormat> scale_format;  // kFp8 only; default as Deployment::load picks it
  std::string output_dir;
  bool force = false;                       // replace an existing non-empty output_dir
  uint64_t max_shard_bytes = 5'000'000'000;
};

// What export_model wrote.
struct ExportReport {
  ExportFormat format = ExportFormat::kFp8;
  std::string output_dir;          // absolute
  std::vector<std::string> files;  // file names in output_dir, sorted
  int64_t tensors = 0;             // safetensors tensors written
  uint64_t bytes = 0;              // Σ bytes of the files
  double seconds = 0;              // the whole export (loading and merging included)
  // kFp8 / kBf16:
  std::optional<ServingRecord> serving;  // the numerics recorded (and served)
  MergeReport merge;                     // the live merge the weights come from
  int64_t fp8_weights = 0;               // F8_E4M3 weights (each with weight_scale_inv)
  int64_t f32_not_bf16 = 0;              // non-linear tensors kept F32 (values not exactly BF16)

  nlohmann::json to_json() const;
  std::string to_text() const;
};

// Exports as described above. Throws kInvalidArgument for a bad request (kPeft without an adapter,
// --scale-format with another format than fp8, an output that exists and is not empty, an output
// that is or contains the model or adapter directory); the errors of Deployment::load and
// load_peft_adapter (adapter of another base: kInvalidFile naming the key); kIo when writing fails.
ExportReport export_model(const ExportOptions& options);

}  // namespace qaft
