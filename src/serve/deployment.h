// A deployment: what the server serves — a model directory (weights, config.json, tokenizer) with
// an optional LoRA adapter merged live into the serving weights, in FP8 or BF16.
//
// Loading checks everything before serving: config.json, the tokenizer, the adapter against the
// base (load_peft_adapter: unknown keys, shapes of another base, missing halves → kInvalidFile
// naming the key) and the checkpoint (load_base_model: truncated or corrupt safetensors →
// kInvalidFile naming the file). The base model is dropped once the serving weights are built.
#pragma once

#include "data/chat_template.h"
#include "infer/engine.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qaft {

struct DeploymentOptions {
  std::string model_dir;                    // HF model directory
  std::string adapter_dir;                  // PEFT adapter directory ("" = the base alone)
  Precision precision = Precision::kFp8;    // kFp8: FP8 base (E4M3 + 128×128 scales); kBf16; kF32 (tests)
  // FP8 block scales; default: the adapter's training, else config.json's quantization_config.scale_fmt
  // ("ue8m0"), else fp32. Activation quantization (W8A8 / W8A16) follows the adapter's training, else
  // the "qaft_serving" record of an exported checkpoint (infer/export_checkpoint.h), else W8A8.
  std::optional<ScaleFormat> scale_format;
  std::string model_name;                   // the "model" clients name; default: the directory's name
};

class Deployment {
 public:
  // Loads, live-merges and logs the merge time. Throws qaft::Error (see above).
  static std::unique_ptr<Deployment> load(const DeploymentOptions& options);

  // From parts (tests, benchmarks). The chat template is the tokenizer's when qaft knows it.
  Deployment(std::string name, Tokenizer tokenizer, InferenceModel model);
  Deployment(const Deployment&) = delete;
  Deployment& operator=(const Deployment&) = delete;

  const std::string& name() const { return name_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  // nullptr when the tokenizer has no chat template qaft renders; chat_template_problem() says why.
  const ChatTemplate* chat_template() const { return chat_template_ ? &*chat_template_ : nullptr; }
  const std::string& chat_template_problem() const { return chat_template_problem_; }
  InferenceModel& model() { return model_; }
  const InferenceModel& model() const { return model_; }
  const ModelConfig& config() const { return model_.config(); }
  int64_t context_length() const { return model_.config().max_position_embeddings; }
  // Token ids that end a generation: the tokenizer's EOS (and the chat format's end of turn).
  const std::vector<int32_t>& stop_token_ids() const { return stop_token_ids_; }
  // Seconds of loading (checkpoint, adapter, tokenizer) and of the live merge.
  double load_seconds() const { return load_seconds_; }

 private:
  std::string name_;
  Tokenizer tokenizer_;
  InferenceModel model_;
  std::optional<ChatTemplate> chat_template_;  // refers to tokenizer_: a Deployment never moves
  std::string chat_template_problem_;
  std::vector<int32_t> stop_token_ids_;
  double load_seconds_ = 0;
};

}  // namespace qaft
