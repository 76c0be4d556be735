// The model: embedding → L × { RMSNorm → attention (MLA | GQA) → residual → RMSNorm → FFN (dense |
// MoE) → residual } → final RMSNorm → LM head with chunked cross-entropy.
//
// Explicit backward (no autograd tape): forward() keeps every layer's saved activations, and
// backward() walks the layers in reverse calling each layer's *_backward — the reverse loop is
// the tape. T is float (the engine) or double (finite-difference and parity tests).
#pragma once

#include "model/attention.h"
#include "model/moe.h"

#include <memory>
#include <vector>

namespace qaft {

// One training / evaluation batch of B sequences of T tokens.
struct Batch {
  int64_t B = 0;
  int64_t T = 0;
  const int32_t* ids = nullptr;        // [B, T] token ids
  const int32_t* targets = nullptr;    // [B, T] next-token targets, negative = no loss; may be nullptr
  const float* weights = nullptr;      // [B, T] per-token loss weights, or nullptr (= 1)
  const int32_t* positions = nullptr;  // [B, T] RoPE positions, or nullptr (= 0..T-1 per row)
  const int32_t* segment = nullptr;    // [B, T] packed-document ids, or nullptr
};

struct LossResult {
  double loss_sum = 0;     // Σ loss·weight over the target tokens
  double weight_sum = 0;   // Σ weight over the target tokens
  int64_t tokens = 0;      // target tokens
  double mean() const { return weight_sum > 0 ? loss_sum / weight_sum : 0.0; }
};

template <typename T>
class Transformer {
 public:
  // params must outlive the model; grads may be nullptr (inference only).
  Transformer(const ModelConfig& config, const ParamStore<T>* params, ParamStore<T>* grads);
  // A model whose weights are spread as `weights` says: a frozen base in BF16/FP8/NF4, LoRA
  // adapters, the numerics of every linear (QAT, FP8 training). Everything it points to must
  // outlive the model.
  Transformer(const ModelConfig& config, const WeightBinding<T>& weights);
  ~Transformer();

  // Runs the forward pass and keeps activations for backward(). targets may be nullptr
  // (then the returned loss is empty).
  LossResult forward(const Batch& batch);
  // Gradient of (Σ loss·weight) · grad_scale, accumulated into grads. Use grad_scale =
  // 1 / weight_sum for the mean loss.
  void backward(T grad_scale);
  // Logits of every position [B, T, V] (no activations kept).
  void logits(const Batch& batch, T* out);

  // Per-layer recompute (activation checkpointing): forward keeps only each layer's input; backward
  // re-runs the layer's forward just before its backward. Same gradients, bit for bit; the saved
  // activations of one layer instead of all of them.
  void set_recompute(bool on) { recompute_ = on; }
  // Bytes of activations currently held for backward (for the memory plan and its tests).
  int64_t saved_activation_bytes() const;

  const ModelConfig& config() const { return config_; }
  // Expert load of the last forward: [num_layers][E] tokens routed (empty for dense layers).
  std::vector<std::vector<int64_t>> expert_load() const;

 private:
  struct Layer;
  void run_layers(const Batch& batch, std::vector<T>& h);
  // One decoder block: h [N, C] in, h out; fills the layer's saved activations.
  void forward_layer(Layer& layer, const SequenceInfo& seq, std::vector<T>& h, std::vector<T>& scratch);
  static void release(Layer& layer);  // frees a layer's saved activations (keeps x_in)
  void check_batch(const Batch& batch) const;

  ModelConfig config_;
  const ParamStore<T>* params_;
  ParamStore<T>* grads_;
  bool has_lora_grads_ = false;      // backward() trains adapters even without base gradients
  std::vector<double> inv_freq_;
  std::vector<std::unique_ptr<Layer>> layers_;
  bool recompute_ = false;
  // Saved from the last forward.
  Batch batch_;
  std::vector<int32_t> positions_;   // [N]
  std::vector<T> final_in_;          // [N, C] input of the final norm
  std::vector<T> final_out_;         // [N, C] its output (LM head input)
  std::vector<T> final_rstd_;        // [N]
  std::vector<T> lse_;               // [N]
  std::vector<T> token_weights_;     // [N]
};

}  // namespace qaft
