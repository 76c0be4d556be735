// The rows of the workspace registry (docs/workspace.md): datasets, models, fine-tuning jobs and
// deployments, with their lineage. Plain values; Workspace (registry/workspace.h) reads and writes
// them. Every record prints itself as JSON (`qaft … get --json`).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qaft {

// A registered JSONL dataset: a copy of the user's file inside the workspace, with its statistics.
struct DatasetRecord {
  std::string name;        // registry name ([a-z0-9][a-z0-9._-]{0,63})
  std::string path;        // the copy: <workspace>/datasets/<name>.jsonl (absolute)
  std::string source;      // the file it was copied from (absolute), for reference only
  std::string sha256;      // hex SHA-256 of the copy's bytes (lineage of tuned models)
  int64_t rows = 0;        // non-blank lines
  int64_t tokens = 0;      // tokens of the valid examples, with the validating tokenizer
  std::string created_at;  // UTC, ISO 8601 ("2025-01-31T12:00:00Z")
  nlohmann::json stats;    // the full statistics (valid rows, errors, histogram, tokenizer used)
  nlohmann::json to_json() const;
};

// What a model row is.
enum class ModelKind : uint8_t {
  kBase,   // "base": a Hugging Face model directory registered by the user (not copied)
  kTuned,  // "tuned": a LoRA adapter produced by a fine-tuning job, on a base model
};
std::string_view model_kind_name(ModelKind k);
ModelKind parse_model_kind(std::string_view name);

// A registered model. A tuned model carries its lineage: the base model, the dataset (name and
// SHA-256), the full training configuration, the job and the qaft version that made it.
struct ModelRecord {
  std::string name;                  // registry name
  ModelKind kind = ModelKind::kBase; // base | tuned
  std::string path;                  // base: the model directory (absolute, the user's; never
                                     // deleted by qaft); tuned: the job's output directory, the
                                     // adapter in <path>/adapter
  std::string base_model;            // tuned: the base model's name ("" for a base model)
  std::string format;                // base: weight storage ("fp8", "bf16", "f32", ...);
                                     // tuned: "lora" (a PEFT adapter)
  nlohmann::json config;             // base: its config.json; tuned: the full training config
  std::string created_at;            // UTC, ISO 8601
  std::optional<int64_t> source_job; // tuned: the job that produced it (null once deleted)
  std::string dataset;               // tuned: the training dataset's name
  std::string dataset_sha256;        // tuned: the SHA-256 of the data it was trained on
  std::string qaft_version;          // the qaft version that registered / trained it
  nlohmann::json to_json() const;
  std::string adapter_dir() const;   // tuned: path/adapter; "" for a base model
};

// A fine-tuning job's state.
enum class JobStatus : uint8_t {
  kQueued,       // "queued": recorded, its process has not started yet
  kRunning,      // "running": its process holds the job's lock
  kCompleted,    // "completed": trained; the output model is registered
  kFailed,       // "failed": ended by an error (see `error`)
  kInterrupted,  // "interrupted": stopped (Ctrl-C) or killed; `qaft sftj resume` continues it
};
std::string_view job_status_name(JobStatus s);
JobStatus parse_job_status(std::string_view name);

// A fine-tuning job (`qaft sftj create`).
struct JobRecord {
  int64_t id = 0;                  // 1, 2, ... (never reused)
  std::string output_model;        // the tuned model it registers on success (unique over jobs)
  std::string base_model;          // the base model's name
  std::string dataset;             // the training dataset's name
  std::string dataset_sha256;      // its SHA-256 when the job was created
  JobStatus status = JobStatus::kQueued;  // as read: a "running" row whose process is gone reads
                                          // as kInterrupted (see Workspace::job)
  int64_t pid = 0;                 // the process running (or that last ran) it; 0 = none yet
  nlohmann::json config;           // the full resolved TrainConfig (TrainConfig::to_json)
  std::string qaft_version;        // the qaft version that created it
  std::string created_at;          // UTC, ISO 8601
  std::string started_at;          // the last start or resume ("" before)
  std::string finished_at;         // completion, failure or a clean stop ("" while running)
  nlohmann::json metrics;          // final metrics: steps_done, final_loss, eval, tokens_per_second…
  std::string error;               // why it failed ("" otherwise)
  std::string dir;                 // its directory <workspace>/jobs/<id> (= output.dir)
  nlohmann::json to_json() const;
};

// A deployment's state (the server process is `qaft deployment create`, docs/workspace.md).
enum class DeploymentStatus : uint8_t {
  kStarting,  // "starting": the server is loading the model
  kRunning,   // "running": serving on host:port
  kStopped,   // "stopped": shut down cleanly
  kFailed,    // "failed": could not start, or its process is gone
};
std::string_view deployment_status_name(DeploymentStatus s);
DeploymentStatus parse_deployment_status(std::string_view name);

// A served model.
struct DeploymentRecord {
  std::string name;            // registry name (default: the model's name)
  std::string model;           // the served model's name (a models row)
  std::string adapter;         // the LoRA adapter directory applied (tuned models), or ""
  std::string precision;       // serving weights: "fp8" | "bf16"
  bool live_merge = false;     // LoRA merged into the FP8 weights at load (else applied at run time)
  std::string host;            // listening address
  int64_t port = 0;            // listening port
  int64_t pid = 0;             // the server process
  DeploymentStatus status = DeploymentStatus::kStarting;  // as read: a starting/running row whose
                                                          // process is gone reads as kFailed
  std::string created_at;      // UTC, ISO 8601
  std::string error;           // why it failed ("" otherwise)
  nlohmann::json to_json() const;
};

// Throws kInvalidArgument unless `name` matches [a-z0-9][a-z0-9._-]{0,63}; `what` names the kind
// of object in the message ("dataset", "model", "deployment").
void validate_registry_name(std::string_view name, std::string_view what);

// The current time, UTC, ISO 8601 with seconds ("2025-01-31T12:00:00Z").
std::string utc_now_iso8601();

}  // namespace qaft
