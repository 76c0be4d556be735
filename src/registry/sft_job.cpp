#include "registry/sft_job.h"

#include "core/error.h"
#include "core/log.h"
#include "registry/job_lock.h"
#include "registry/version.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

namespace qaft {

namespace fs = std::filesystem;

namespace {

// The keys of configs/sft-tiny-qat-fp8.yaml with defaults for real runs. model.path, data.*,
// base_format, qat.enabled, lora.rank/alpha, optim.lr, steps, warmup, checkpoint.every and
// output.dir are set per job (build_sft_config).
constexpr std::string_view kTemplate = R"yaml(# qaft sftj: LoRA fine-tuning with FP8 quantization-aware training
mode: sft
base_format: bf16
precision: fp32
lora:
  rank: 8
  alpha: 16
  rslora: false
  dropout: 0
  targets: [all-linear]
  seed: 0
qat:
  enabled: true
  scale_format: fp32
  quantize_activations: true
data:
  seq_len: 2048
  batch_size: 1
  pack: true
  shuffle: true
  on_overflow: drop
optim:
  lr: 2.0e-4
  weight_decay: 0.0
  beta1: 0.9
  beta2: 0.95
  eps: 1.0e-8
  moments: fp32
  max_grad_norm: 1.0
  schedule:
    warmup_steps: 0
    decay: cosine
    min_ratio: 0.1
steps: 1
grad_accum: 1
seed: 0
recompute: false
balancing:
  bias_update_speed: 0.0
eval:
  every: 0
  batches: 0
checkpoint:
  every: 0
  keep: 2
output:
  metrics: metrics.jsonl
log:
  progress: on
)yaml";

// A YAML scalar for --set: JSON strings are valid YAML, so paths with any character survive.
std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }

// Keeps the newest checkpoint's step; 0 when none.
int64_t checkpoint_step(const std::string& dir) {
  const std::string latest = latest_checkpoint(dir);
  if (latest.empty()) return 0;
  return std::stoll(fs::path(latest).filename().string().substr(5));
}

// Takes the job's lock. A `qaft sftj list` may be testing it at this instant (it takes nothing, but
// a just-exited runner may still be closing), so a busy lock is retried for a moment.
std::optional<JobLock> take_job_lock(const fs::path& path) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (auto lock = JobLock::try_acquire(path)) return lock;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return std::nullopt;
}

// Records a job's failure; a failure to record it (the disk is full) is logged, not thrown, so
// that the original error is the one reported.
void record_failure(Workspace& ws, int64_t id, const nlohmann::json& metrics, const std::exception& e) {
  const auto* qe = dynamic_cast<const Error*>(&e);
  try {
    ws.mark_job_ended(id, JobStatus::kFailed, metrics, qe ? qe->message() : std::string(e.what()));
  } catch (const std::exception& e2) {
    QAFT_LOG(kWarn, "job {}: could not record the failure: {}", id, e2.what());
  }
}

// Records the end of a run that returned: completed (metrics and the output model with its
// lineage, in one transaction) or interrupted.
void record_end(Workspace& ws, const JobRecord& job, const TrainConfig& cfg, bool completed, const nlohmann::json& metrics) {
  if (!completed) {
    ws.mark_job_ended(job.id, JobStatus::kInterrupted, metrics, "");
    return;
  }
  ModelRecord m;
  m.name = job.output_model;
  m.kind = ModelKind::kTuned;
  m.path = cfg.output.dir.string();
  m.base_model = job.base_model;
  m.format = "lora";
  m.config = job.config;
  m.source_job = job.id;
  m.dataset = job.dataset;
  m.dataset_sha256 = job.dataset_sha256;
  m.qaft_version = std::string(qaft_version());
  ws.complete_job(job.id, metrics, m);
}

}  // namespace

std::string_view sft_job_template() { return kTemplate; }

TrainConfig build_sft_config(const SftJobRequest& q, const ModelRecord& base, const DatasetRecord& train,
                             const DatasetRecord* eval, const fs::path& output_dir) {
  QAFT_CHECK(q.seq_len > 0 && q.batch_size > 0 && q.rank > 0, "seq_len, batch_size and rank must be positive");
  const BaseFormat format = q.base_format.value_or(base.format == "fp8" ? BaseFormat::kFp8 : BaseFormat::kBf16);
  // Default length: one epoch of packed rows.
  const int64_t row_tokens = q.seq_len * q.batch_size;
  const int64_t steps = q.steps.value_or(std::max<int64_t>(1, (train.tokens + row_tokens - 1) / row_tokens));
  std::vector<std::string> o = {
      "model.path=" + quoted(base.path),
      "data.train=" + quoted(train.path),
      "output.dir=" + quoted(output_dir.string()),
      fmt::format("base_format={}", base_format_name(format)),
      fmt::format("qat.enabled={}", q.qat ? "true" : "false"),
      fmt::format("lora.rank={}", q.rank),
      fmt::format("lora.alpha={}", 2 * q.rank),
      fmt::format("optim.lr={}", q.lr),
      fmt::format("steps={}", steps),
      fmt::format("data.seq_len={}", q.seq_len),
      fmt::format("data.batch_size={}", q.batch_size),
      fmt::format("optim.schedule.warmup_steps={}", steps / 20),
      fmt::format("checkpoint.every={}", std::max<int64_t>(1, steps / 10)),
  };
  if (eval) o.push_back("data.eval=" + quoted(eval->path));
  o.insert(o.end(), q.overrides.begin(), q.overrides.end());
  return parse_train_config(kTemplate, o, {}, "sftj template");
}

int64_t create_sft_job(Workspace& ws, const SftJobRequest& q) {
  // Names are checked (and listed when unknown) before the transaction too, so that the common
  // mistakes fail without waiting for the write lock; add_job checks again atomically.
  const ModelRecord base = ws.model(q.base_model);
  const DatasetRecord train = ws.dataset(q.dataset);
  std::optional<DatasetRecord> eval;
  if (!q.eval_dataset.empty()) eval = ws.dataset(q.eval_dataset);
  // The whole configuration is validated before anything is recorded.
  build_sft_config(q, base, train, eval ? &*eval : nullptr, ws.jobs_dir() / "new");

  JobRecord job;
  job.output_model = q.output_model;
  job.base_model = q.base_model;
  job.dataset = q.dataset;
  return ws.add_job(job, [&](int64_t, const fs::path& dir) {
    return build_sft_config(q, base, train, eval ? &*eval : nullptr, dir).to_json();
  });
}

TrainConfig job_train_config(const JobRecord& job) {
  return parse_train_config(job.config.dump(), {}, {}, fmt::format("job {} configuration", job.id));
}

SftRunResult run_sft_job(Workspace& ws, int64_t id, const SftRunOptions& options) {
  JobRecord job = ws.job(id);
  const TrainConfig cfg = job_train_config(job);
  auto lock = take_job_lock(ws.job_lock_path(id));
  QAFT_CHECK_HINT(lock.has_value(), ErrorKind::kInvalidArgument, "wait for it, or stop it (Ctrl-C / kill) first",
                  "job {} is already running (pid {})", id, job.pid);
  job = ws.job(id);  // re-read under the lock: its status is now final
  // "running" under our own lock: the process that recorded it is gone.
  const JobStatus s = job.status == JobStatus::kRunning ? JobStatus::kInterrupted : job.status;
  if (options.resume) {
    QAFT_CHECK_HINT(s == JobStatus::kInterrupted || s == JobStatus::kFailed || s == JobStatus::kQueued,
                    ErrorKind::kInvalidArgument, s == JobStatus::kCompleted ? "it produced model '" + job.output_model + "'" : "",
                    "job {} is {}; only an interrupted, failed or queued job can be resumed", id, job_status_name(s));
  } else {
    QAFT_CHECK_HINT(s == JobStatus::kQueued, ErrorKind::kInvalidArgument,
                    fmt::format("continue it with `qaft sftj resume {}`", id), "job {} is {}, not queued", id,
                    job_status_name(s));
  }
  // The dataset must still be the one recorded (a deleted and re-created dataset is not).
  const auto data = ws.find_dataset(job.dataset);
  QAFT_CHECK_HINT(data && data->sha256 == job.dataset_sha256, ErrorKind::kInvalidArgument,
                  "create a new job on the dataset as it is now",
                  "dataset '{}' of job {} was deleted or replaced since the job was created", job.dataset, id);

  ws.mark_job_running(id, ::getpid());
  const int64_t from = options.resume ? checkpoint_step(cfg.checkpoint.dir.string()) : 0;
  QAFT_LOG(kInfo, "job {}: {} '{}' on '{}' -> '{}' ({} steps{})", id, options.resume ? "resuming" : "fine-tuning",
           job.base_model, job.dataset, job.output_model, cfg.steps,
           from > 0 ? fmt::format(", from the checkpoint at step {}", from) : std::string());
  SftRunResult out;
  try {
    TrainJobHooks hooks;
    hooks.stop = options.stop;
    hooks.max_steps_now = options.max_steps_now;
    out.train = run_train_job(cfg, options.resume, hooks);
  } catch (const std::exception& e) {
    record_failure(ws, id, nlohmann::json::object(), e);
    throw;
  }
  nlohmann::json metrics = out.train.to_json();
  metrics["steps"] = cfg.steps;
  try {
    record_end(ws, job, cfg, out.train.completed, metrics);
  } catch (const std::exception& e) {  // e.g. the disk filled up: resuming registers the model
    record_failure(ws, id, metrics, e);
    throw;
  }
  out.job = ws.job(id);
  return out;
}

}  // namespace qaft
