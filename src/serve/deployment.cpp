#include "serve/deployment.h"

#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "infer/export_checkpoint.h"
#include "io/safetensors_index.h"
#include "model/config.h"
#include "model/frozen_weights.h"

#include <algorithm>
#include <filesystem>

namespace qaft {

namespace {

// The directory's own name ("/models/tiny-dsv3/" → "tiny-dsv3").
std::string directory_name(const std::string& dir) {
  std::filesystem::path p(dir);
  if (!p.has_filename()) p = p.parent_path();
  const std::string name = std::filesystem::absolute(p).lexically_normal().filename().string();
  return name.empty() ? "model" : name;
}

// The structural token that ends an assistant turn in `format`.
const char* end_of_turn(ChatFormat format) {
  switch (format) {
    case ChatFormat::kDeepSeekV3: return "<｜end▁of▁sentence｜>";
    case ChatFormat::kLlama3: return "<|eot_id|>";
    case ChatFormat::kQwen3:
    case ChatFormat::kChatML: return "<|im_end|>";
  }
  return "";
}

}  // namespace

Deployment::Deployment(std::string name, Tokenizer tokenizer, InferenceModel model)
    : name_(std::move(name)), tokenizer_(std::move(tokenizer)), model_(std::move(model)) {
  try {
    chat_template_.emplace(ChatTemplate::from_tokenizer(tokenizer_, name_));
  } catch (const Error& e) {
    chat_template_problem_ = e.message();
  }
  if (const auto eos = tokenizer_.eos_id()) stop_token_ids_.push_back(*eos);
  if (chat_template_)
    if (const auto eot = tokenizer_.token_to_id(end_of_turn(chat_template_->format()));
        eot && std::find(stop_token_ids_.begin(), stop_token_ids_.end(), *eot) == stop_token_ids_.end())
      stop_token_ids_.push_back(*eot);
  if (tokenizer_.vocab_size() > model_.config().vocab_size)
    QAFT_LOG(kWarn, "the tokenizer has {} tokens, the model {}: prompts with the extra ids are refused",
             tokenizer_.vocab_size(), model_.config().vocab_size);
}

std::unique_ptr<Deployment> Deployment::load(const DeploymentOptions& o) {
  Timer timer;
  const ModelConfig config = model_config_load(o.model_dir);
  Tokenizer tokenizer = Tokenizer::load(o.model_dir);
  std::optional<PeftAdapter> adapter;
  if (!o.adapter_dir.empty()) adapter = load_peft_adapter(o.adapter_dir, config);

  // Defaults of the FP8 numerics, first found wins: the options; the adapter's training numerics
  // (peft_io.h "qaft"."training": what it was tuned for); the checkpoint's config.json — its
  // quantization_config.scale_fmt and, for a qaft export, the "qaft_serving" record of how it was
  // served (infer/export_checkpoint.h); else fp32 scales, W8A8.
  const nlohmann::json training = adapter ? adapter->training : nlohmann::json();
  auto trained = [&](const char* key) { return training.is_object() && training.contains(key); };
  const std::optional<ServingRecord> record = read_serving_record(o.model_dir);
  InferenceOptions io;
  io.precision = o.precision;
  const bool ue8m0 = trained("scale_format") ? training["scale_format"] == "ue8m0" : config.fp8_scale_ue8m0;
  io.scale_format = o.scale_format ? *o.scale_format : ue8m0 ? ScaleFormat::kUe8m0 : ScaleFormat::kFp32;
  if (trained("quantize_activations") && training["quantize_activations"].is_boolean())
    io.quantize_activations = training["quantize_activations"].get<bool>();
  else if (record)
    io.quantize_activations = record->quantize_activations;
  const BaseFormat base_format = o.precision == Precision::kFp8    ? BaseFormat::kFp8
                                 : o.precision == Precision::kBf16 ? BaseFormat::kBf16
                                                                   : BaseFormat::kF32;

  std::optional<InferenceModel> model;
  {
    const BaseModel base = load_base_model(ShardedCheckpoint::open(o.model_dir), config, base_format);
    model.emplace(config, base, adapter ? &*adapter : nullptr, io);
  }  // the base is dropped: the serving weights own everything
  const MergeReport& m = model->merge_report();
  QAFT_LOG(kInfo, "live merge ({}{}): {} serving linears, {} with the adapter merged, {} FP8 kept as stored, {:.1f} MiB, {:.3f} s",
           precision_name(o.precision),
           o.precision == Precision::kFp8 ? fmt::format(", {} scales", scale_format_name(io.scale_format)) : "", m.linears,
           m.merged, m.kept_fp8, static_cast<double>(m.weight_bytes) / (1 << 20), m.seconds);

  auto d = std::make_unique<Deployment>(o.model_name.empty() ? directory_name(o.model_dir) : o.model_name,
                                        std::move(tokenizer), std::move(*model));
  d->load_seconds_ = timer.seconds();
  if (!d->chat_template())
    QAFT_LOG(kWarn, "no chat template: /v1/chat/completions is refused ({})", d->chat_template_problem());
  return d;
}

}  // namespace qaft
