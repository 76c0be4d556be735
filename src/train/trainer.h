// The training loop, for both kinds of run:
//   - full-parameter training (pretraining): every parameter trained, FP32 master weights and
//     gradients, GEMM operands in FP32, or E4M3 as DeepSeek-V3 trains (GemmPrecision::kFp8; BF16 as
//     the baseline of the loss gap), aux-loss-free balancing of the MoE routers' correction bias;
//   - LoRA fine-tuning: a frozen base (F32/BF16/FP8/NF4 storage), adapters on the chosen linears
//     including every routed expert, optional FP8 quantization-aware training (model/linear.h).
// Both: batches from the data layer's Batcher, the model's explicit forward/backward, gradient
// accumulation (= one large batch), global-norm clipping, AdamW with warmup + decay, skipped steps
// on a non-finite loss or gradient, held-out evaluation, an expert census, and atomic checkpoints
// from which a resumed run continues bit for bit.
//
// Checkpoint = a directory with state.safetensors (the trained parameters under their qaft names —
// every model parameter in full training, the adapters in LoRA — and the AdamW moments
// "optimizer.m" / "optimizer.v") and trainer.json (step, data cursor, counters, census and the
// settings a resume must share). It is written to DIR.tmp-<pid> and renamed over DIR, so a crash
// leaves the previous checkpoint intact: a kill loses at most the steps since it.
#pragma once

#include "adapters/lora_targets.h"
#include "data/batcher.h"
#include "model/frozen_weights.h"
#include "model/transformer.h"
#include "optim/adamw.h"

#include <memory>
#include <optional>
#include <string>

namespace qaft {

struct TrainerOptions {
  int64_t steps = 100;             // optimizer updates in total
  int64_t grad_accum = 1;          // micro-batches per update
  LrSchedule lr;                   // peak, warmup, decay
  AdamWConfig adamw;               // betas, eps, weight decay, moment precision
  double max_grad_norm = 1.0;      // global L2 clipping (0 = off)
  bool recompute = false;          // per-layer activation recompute
  GemmPrecision precision = GemmPrecision::kExact;    // GEMM operands of every linear
  ScaleFormat fp8_scale_format = ScaleFormat::kFp32;  // their scales when kFp8
  QatConfig qat;                   // LoRA-QAT (fine-tuning)
  double bias_update_speed = 0;    // γ of aux-loss-free balancing (0 = off; full training only)
  uint64_t seed = 0;               // dropout stream
  nlohmann::json identity_extra;   // more settings a resume must share (the CLI's resolved config)
};

struct StepMetrics {
  int64_t step = 0;            // 1-based update number
  double loss = 0;             // mean loss over the update's target tokens
  double grad_norm = 0;        // before clipping
  double lr = 0;               // learning rate used
  int64_t tokens = 0;          // target tokens in the update
  int64_t processed_tokens = 0;  // all tokens of its batches (padding included)
  double seconds = 0;          // wall time of the update
  bool skipped = false;        // non-finite loss or gradients: no update made
  double max_load_ratio = 0;   // max over MoE layers of (max expert load / mean load); 0 without MoE
};

struct EvalMetrics {
  double loss = 0;       // mean over target tokens
  double loss_sum = 0;   // Σ loss·weight
  double weight_sum = 0;
  int64_t tokens = 0;
  int64_t batches = 0;
  double perplexity() const;
};

// Per routed expert of every MoE layer, over the training steps so far.
struct ExpertCensus {
  std::vector<int64_t> layers;                      // MoE layer indices
  std::vector<std::vector<int64_t>> tokens;         // [layer][E] tokens routed to the expert while training
  std::vector<std::vector<uint8_t>> adapter_grad;   // [layer][E] 1 once its adapter got a nonzero gradient;
                                                    // empty rows where the layer's experts carry no adapter
  nlohmann::json to_json() const;
  static ExpertCensus from_json(const nlohmann::json& j);
  // Experts that saw no token, and adapted experts whose adapter never received a gradient.
  int64_t experts_without_tokens() const;
  int64_t adapters_without_gradient() const;
};

// A LoRA run's adapters: their configuration, the modules they sit on, and their values.
struct LoraSetup {
  LoraConfig config;
  std::vector<LoraTarget> targets;
  ParamStore<float> params;   // over lora_param_specs(targets)
};

class Trainer {
 public:
  // Full-parameter training from `params` (random init or a loaded checkpoint).
  Trainer(ModelConfig config, ParamStore<float> params, std::shared_ptr<const std::vector<Example>> examples,
          BatcherOptions batching, TrainerOptions options);
  // LoRA fine-tuning of a frozen base.
  Trainer(ModelConfig config, BaseModel base, LoraSetup lora, std::shared_ptr<const std::vector<Example>> examples,
          BatcherOptions batching, TrainerOptions options);
  ~Trainer();

  StepMetrics step();  // one optimizer update (grad_accum micro-batches)
  // Mean loss over (at most max_batches, 0 = all) batches of `examples`, in order, without dropout;
  // the numerics are the training run's (QAT included): the server's numerics under QAT.
  EvalMetrics evaluate(std::shared_ptr<const std::vector<Example>> examples, int64_t max_batches);

  int64_t steps_done() const { return steps_done_; }
  int64_t skipped_steps() const { return skipped_; }
  bool is_lora() const { return lora_.has_value(); }
  const ModelConfig& config() const { return config_; }
  const ParamStore<float>& params() const { return base_.params; }  // full training: the trained ones
  const BaseModel& base() const { return base_; }
  const LoraSetup* lora() const { return lora_ ? &*lora_ : nullptr; }
  const ParamStore<float>& trainable() const;
  const ExpertCensus& census() const { return census_; }
  const BatchCursor& cursor() const { return batcher_.cursor(); }
  const TrainerOptions& options() const { return options_; }
  // Bytes of parameters, gradients and optimizer state held (the memory plan's static part).
  int64_t state_bytes() const;
  // Bytes of activations the model holds for backward (after a step: those of its last forward).
  int64_t activation_bytes() const;

  void save_checkpoint(const std::string& dir) const;
  // Restores trained parameters, optimizer, step, census and data cursor. Throws kInvalidArgument
  // naming the setting when the checkpoint was made with another model or configuration.
  void load_checkpoint(const std::string& dir);

 private:
  void init(BatcherOptions batching);
  nlohmann::json identity() const;  // settings that a resume must share
  void update_census(const std::vector<std::vector<int64_t>>& load);
  void balance_router_bias(const std::vector<std::vector<int64_t>>& load);

  ModelConfig config_;
  BaseModel base_;
  std::optional<LoraSetup> lora_;
  ParamStore<float> grads_;         // gradients of trainable()
  LinearNumerics numerics_;
  std::unique_ptr<Transformer<float>> model_;
  Batcher batcher_;
  BatcherOptions batching_;
  TrainerOptions options_;
  std::vector<uint8_t> trainable_mask_;  // [trainable size] 1 where the optimizer may move the value
  std::unique_ptr<AdamW> optimizer_;
  ExpertCensus census_;
  int64_t steps_done_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace qaft
