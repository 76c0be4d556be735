// `qaft eval`: a model (optionally with a LoRA adapter) evaluated the way it is served, on a JSONL
// set of chat (or prompt/completion) records whose last assistant turn is the reference answer:
//   - accuracy of greedy generation against the reference (exact match after normalisation:
//     lower case, trimmed, inner whitespace collapsed, trailing punctuation removed), with a
//     per-class confusion table (the classes are the distinct references);
//   - perplexity of the reference answers (mean token NLL, ± standard error over tokens);
//   - the parity report: per-token KL(training-time eval numerics ∥ served) — mean, p99, max —
//     and top-1 agreement, over every position of every record, against the served precision and
//     against a BF16 deployment. The training-time numerics are the Transformer's forward with the
//     adapter unmerged and QAT as the adapter was trained (model/linear.h).
#pragma once

#include "eval/parity.h"
#include "infer/infer_linear.h"
#include "model/frozen_weights.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace qaft {

struct EvalOptions {
  std::string model_dir;                  // HF model directory (weights, config, tokenizer)
  std::string adapter_dir;                // PEFT adapter directory, or "" for the base alone
  std::string dataset;                    // JSONL
  Precision precision = Precision::kFp8;  // how it is served
  ScaleFormat scale_format = ScaleFormat::kFp32;   // FP8 block scales of the deployment
  std::optional<BaseFormat> base_format;  // base storage; default: the adapter's training base, else
                                          // fp8 for an FP8 checkpoint (its codes as stored), else bf16
  std::optional<bool> reference_qat;      // training-time numerics: QAT on/off; default: the adapter's
  int64_t max_examples = 0;               // 0 = all
  int64_t max_new_tokens = 16;            // generation budget per example
  int64_t batch = 16;                     // sequences decoded together
  bool generation = true;                 // accuracy by generation
  bool parity = true;                     // the parity report (costs two more forwards per record)
};

struct EvalReport {
  int64_t examples = 0;
  // Accuracy by generation.
  int64_t correct = 0;
  std::vector<std::string> classes;               // distinct normalised references, sorted
  std::vector<std::vector<int64_t>> confusion;    // [reference class][predicted class or "other" = last]
  double majority_share = 0;                      // share of the most frequent reference
  double generation_seconds = 0;
  int64_t generated_tokens = 0;
  // Perplexity of the reference answers under the served model.
  int64_t answer_tokens = 0;
  double nll_mean = 0;
  double nll_se = 0;
  // Parity.
  TokenDivergence vs_served;   // training-time numerics vs the deployment evaluated
  TokenDivergence vs_bf16;     // training-time numerics vs a BF16 deployment
  std::string served;          // "fp8 (fp32 scales)" | "bf16"
  std::string reference;       // "QAT fp8 (fp32 scales, activations 1x128)" | "exact"
  std::string base_format;

  double accuracy() const { return examples > 0 ? static_cast<double>(correct) / static_cast<double>(examples) : 0.0; }
  double perplexity() const;
  nlohmann::json to_json() const;
  std::string to_text() const;  // the terminal tables
};

// Normalisation used for the exact match.
std::string normalize_answer(const std::string& s);

EvalReport evaluate_model(const EvalOptions& options);

}  // namespace qaft
