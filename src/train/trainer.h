// The training loop for full-parameter training (pretraining) in FP32: batches from the data
// layer's Batcher, the model's explicit forward/backward, gradient accumulation, global-norm
// clipping, AdamW with a warmup + decay schedule, skipped steps on non-finite loss or gradients,
// per-step metrics, and atomic checkpoints from which a resumed run continues bit for bit.
//
// Checkpoint = a directory with state.safetensors (every parameter under its qaft name, and the
// AdamW moments "optimizer.m" / "optimizer.v") and trainer.json (step, data cursor, counters and
// the settings a resume must share). It is written to DIR.tmp-<pid> and renamed over DIR, so a
// crash leaves the previous checkpoint intact: a kill loses at most the steps since it.
#pragma once

#include "data/batcher.h"
#include "model/transformer.h"
#include "optim/adamw.h"

#include <functional>
#include <memory>
#include <string>

namespace qaft {

struct TrainerOptions {
  int64_t steps = 100;             // optimizer updates in total
  int64_t grad_accum = 1;          // micro-batches per update
  LrSchedule lr;                   // peak, warmup, decay
  AdamWConfig adamw;               // betas, eps, weight decay, moment precision
  double max_grad_norm = 1.0;      // global L2 clipping (0 = off)
  bool recompute = false;          // per-layer activation recompute
};

struct StepMetrics {
  int64_t step = 0;          // 1-based update number
  double loss = 0;           // mean loss over the update's target tokens
  double grad_norm = 0;      // before clipping
  double lr = 0;             // learning rate used
  int64_t tokens = 0;        // target tokens in the update
  double seconds = 0;        // wall time of the update
  bool skipped = false;      // non-finite loss or gradients: no update made
};

class Trainer {
 public:
  // `params` is the starting point (random init or a loaded checkpoint).
  Trainer(ModelConfig config, ParamStore<float> params, std::shared_ptr<const std::vector<Example>> examples,
          BatcherOptions batching, TrainerOptions options);

  StepMetrics step();  // one optimizer update (grad_accum micro-batches)
  int64_t steps_done() const { return steps_done_; }
  int64_t skipped_steps() const { return skipped_; }
  const ParamStore<float>& params() const { return params_; }
  const BatchCursor& cursor() const { return batcher_.cursor(); }

  void save_checkpoint(const std::string& dir) const;
  // Restores parameters, optimizer, step and data cursor. Throws kInvalidArgument naming the
  // setting when the checkpoint was made with another model or trainer configuration.
  void load_checkpoint(const std::string& dir);

 private:
  nlohmann::json identity() const;  // settings that a resume must share

  ModelConfig config_;
  ParamStore<float> params_;
  ParamStore<float> grads_;
  std::unique_ptr<Transformer<float>> model_;
  Batcher batcher_;
  BatcherOptions batching_;
  TrainerOptions options_;
  std::vector<uint8_t> trainable_;  // [params] 1 where the optimizer may move the value (before optimizer_:
                                    // the constructor fills it while building the optimizer)
  AdamW optimizer_;
  int64_t steps_done_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace qaft
