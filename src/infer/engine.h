// The serving engine: a model built for inference from a base (BaseModel with its frozen
// BF16/FP8/NF4 linears, or a plain fp32 ParamStore) and an optional LoRA adapter merged live into
// every linear (serving_weights.h), run over requests that each keep a KV cache (kv_cache.h).
//
//   InferenceModel model(config, base, &adapter, {Precision::kFp8});
//   Sequence seq = model.new_sequence();
//   std::vector<float> logits = model.prefill(seq, prompt);   // [V] of the last prompt token
//   logits = model.decode(seq, next_token);                   // [V]
//
// Continuous batching: step() takes any set of requests, each with a prefill chunk or one decode
// token, and runs them together — every linear, the router and the experts over the rows of all
// requests at once, the attention per request over its own cache.
//
// Numerics (InferenceOptions): kFp8 serves E4M3 weights with 128×128 scales and (by default)
// activations quantized per token in 1×128 tiles with FP32 accumulation per K block (kernels/cpu/block_gemm.h);
// with the adapter merged live it computes what the training-time QAT forward (Transformer with
// QatConfig{enabled}) computes, up to rounding — which, with fp32 scales, can occasionally move an
// activation sitting on an E4M3 rounding boundary to the next code (docs/infer.md has the parity
// figures). kBf16 serves BF16 weights; kF32 the exact fp32 model (tests). Embedding, norms, router,
// attention core and LM head are fp32 in every mode, as in training. Not thread-safe: one step() at a
// time (the weights are read-only; sequences belong to the caller).
#pragma once

#include "infer/serving_layers.h"

#include <memory>
#include <span>

namespace qaft {

struct InferenceOptions {
  Precision precision = Precision::kFp8;
  ScaleFormat scale_format = ScaleFormat::kFp32;  // FP8 block scales: fp32 or UE8M0 (powers of two)
  bool quantize_activations = true;               // FP8: W8A8 (else W8A16)
  MlaAttention mla_attention = MlaAttention::kAuto;
};

// One request of a step: its sequence and the tokens it adds (a prefill chunk, or one decode token).
struct StepRequest {
  Sequence* sequence = nullptr;
  std::span<const int32_t> tokens;
  bool all_logits = false;  // logits of every new token, else only of the last
};

class InferenceModel {
 public:
  // From a base model with its frozen linears. `adapter` (may be nullptr) must match `config`.
  InferenceModel(const ModelConfig& config, const BaseModel& base, const PeftAdapter* adapter,
                 const InferenceOptions& options);
  // From plain fp32 parameters (every linear in the store).
  InferenceModel(const ModelConfig& config, const ParamStore<float>& params, const PeftAdapter* adapter,
                 const InferenceOptions& options);
  ~InferenceModel();
  InferenceModel(InferenceModel&&) noexcept;

  const ModelConfig& config() const { return config_; }
  const InferenceOptions& options() const { return options_; }
  // Time and counts of the live merge that built the weights.
  const MergeReport& merge_report() const { return report_; }
  const ServingWeights& weights() const { return *weights_; }

  // An empty request (position 0).
  Sequence new_sequence() const { return Sequence(config_.num_layers); }

  // Runs the requests' new tokens through the model, appends them to each sequence (tokens and KV
  // cache) and returns per request the logits [n, V] (all_logits) or [V] (its last token), in
  // request order. A sequence may appear once per step. Errors (kInvalidArgument): an empty token
  // list, a token outside the vocabulary, a position past max_position_embeddings, a sequence of
  // another model; they are checked before anything changes.
  std::vector<std::vector<float>> step(std::span<const StepRequest> requests);

  // One request: prefill(seq, prompt) → logits [V] of its last token ([n, V] with all_logits).
  std::vector<float> prefill(Sequence& sequence, std::span<const int32_t> tokens, bool all_logits = false);
  // One token → logits [V].
  std::vector<float> decode(Sequence& sequence, int32_t token);

 private:
  void check(std::span<const StepRequest> requests) const;

  ModelConfig config_;
  InferenceOptions options_;
  ServingNumerics numerics_;
  MergeReport report_;
  std::unique_ptr<ServingWeights> weights_;
  std::vector<double> inv_freq_;
};

}  // namespace qaft
