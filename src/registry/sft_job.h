// Fine-tuning jobs of the workspace (`qaft sftj create`, `run-job`, `resume`): a job is a LoRA
// (+ FP8 QAT) training run of a registered base model on a registered dataset, whose output is
// registered as a tuned model with its lineage.
//
// Creating a job builds its full TrainConfig from an embedded template (the settings of
// configs/sft-tiny-qat-fp8.yaml with defaults fit for real runs) plus the request's fields and
// --set overrides, output.dir = <workspace>/jobs/<id>, and records it as queued (every error —
// unknown names, a taken output name, an invalid setting — comes before anything is recorded).
// Running it takes the job's lock, marks it running, calls run_train_job and records the end.
#pragma once

#include "model/frozen_weights.h"
#include "registry/workspace.h"
#include "train/train_job.h"

#include <atomic>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

// What `qaft sftj create` asks for.
struct SftJobRequest {
  std::string base_model;                 // a registered base model
  std::string dataset;                    // a registered dataset (data.train)
  std::string output_model;               // the tuned model's name (unique)
  std::string eval_dataset;               // a registered dataset for evaluation at the end; "" = none
  bool qat = true;                        // --qat fp8 (true) | none: FP8 quantization-aware training
  std::optional<BaseFormat> base_format;  // frozen base storage; default fp8 for an FP8 checkpoint, else bf16
  std::optional<int64_t> steps;           // optimizer updates; default: one epoch of the dataset
  double lr = 2e-4;                       // peak learning rate
  int64_t rank = 8;                       // LoRA rank (alpha = 2·rank)
  int64_t seq_len = 2048;                 // tokens per row
  int64_t batch_size = 1;                 // rows per micro-batch
  std::vector<std::string> overrides;     // --set key=value, applied last (they win)
};

// The embedded YAML template of every job's configuration (docs/workspace.md lists its values).
std::string_view sft_job_template();

// The job's configuration: the template, the request's fields, output.dir = `output_dir`, then the
// request's overrides. `eval` may be null. Throws the configuration's kInvalidArgument errors.
TrainConfig build_sft_config(const SftJobRequest& request, const ModelRecord& base, const DatasetRecord& train,
                             const DatasetRecord* eval, const std::filesystem::path& output_dir);

// Records a queued job; returns its id.
int64_t create_sft_job(Workspace& ws, const SftJobRequest& request);

// The configuration recorded for a job.
TrainConfig job_train_config(const JobRecord& job);

struct SftRunOptions {
  bool resume = false;                      // continue from the job's newest checkpoint
  const std::atomic<bool>* stop = nullptr;  // set (Ctrl-C) to stop after the current step
  int64_t max_steps_now = 0;                // > 0: run at most this many steps now, then stop
};

struct SftRunResult {
  JobRecord job;          // the job's row after the run
  TrainJobResult train;   // what run_train_job returned
};

// Runs job `id` in this process. Without resume the job must be queued; with it, interrupted,
// failed or queued (a running or completed job is kInvalidArgument). Holds the job's lock for the
// whole run (another process running it: kInvalidArgument), records status running with this
// process's pid, trains, and records the end — completed (final metrics and the output model, in
// one transaction), interrupted (stopped), or failed (the error, which is rethrown).
SftRunResult run_sft_job(Workspace& ws, int64_t id, const SftRunOptions& options = {});

}  // namespace qaft
