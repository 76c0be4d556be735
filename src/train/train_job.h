// A whole training run from a TrainConfig — what `qaft train CONFIG.yaml` (and a fine-tuning job of
// the workspace) executes:
//   1. check the configuration's files; load the tokenizer, chat template and datasets (every
//      invalid line reported; an empty dataset is an error);
//   2. build the model: sft — the base loaded in its storage format (F32/BF16/FP8/NF4) and fresh
//      LoRA adapters on the chosen targets (the census of adapted modules is logged); pretrain —
//      random init from a config.json, or the weights of a model directory;
//   3. train: per-step metrics appended to output.dir/metrics.jsonl (flushed every line), a
//      progress line (step, loss, tokens/s, ETA), evaluation every eval.every steps, atomic
//      checkpoints every checkpoint.every steps (the last checkpoint.keep kept), a stop request
//      (Ctrl-C) ends after the current step with a checkpoint;
//   4. write the results: sft — the PEFT adapter (output.dir/adapter) and the expert census
//      (output.dir/census.json); pretrain — the model in the HF layout (output.dir/model: config,
//      weights in F32 and, for precision fp8, also the DeepSeek block-FP8 layout in
//      output.dir/model-fp8), with the tokenizer files; and output.dir/summary.json.
// Resume (`resume = true`) continues from the newest checkpoint of checkpoint.dir bit for bit
// (metrics.jsonl is cut back to that step); without it, an output whose checkpoint directory
// already holds checkpoints is refused rather than overwritten.
#pragma once

#include "train/train_config.h"
#include "train/trainer.h"

#include <atomic>
#include <functional>
#include <optional>

namespace qaft {

struct TrainJobHooks {
  std::function<void(const StepMetrics&)> on_step;  // after every step (after its metrics line)
  const std::atomic<bool>* stop = nullptr;          // set to end the run after the current step
  int64_t max_steps_now = 0;                        // > 0: stop after this many steps in this call
                                                    // (time-boxed jobs); the run stays resumable
};

struct TrainJobResult {
  int64_t steps_done = 0;
  bool completed = false;            // false: stopped early (a checkpoint was written)
  double final_loss = 0;             // loss of the last step
  std::optional<EvalMetrics> eval;   // last evaluation, when data.eval is set
  double tokens_per_second = 0;      // processed tokens / training seconds (this process)
  int64_t skipped_steps = 0;
  int64_t peak_rss_bytes = 0;        // VmHWM of the process
  std::string output_dir;
  std::string adapter_dir;           // sft
  std::string model_dir;             // pretrain
  nlohmann::json to_json() const;
};

TrainJobResult run_train_job(const TrainConfig& config, bool resume, const TrainJobHooks& hooks = {});

// The newest checkpoint ("step-NNNNNNNN") in `dir`, or "" when there is none.
std::string latest_checkpoint(const std::string& dir);

}  // namespace qaft
