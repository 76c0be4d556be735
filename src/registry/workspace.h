// The local workspace: a directory ($QAFT_HOME, default ~/.qaft) holding
//
//   registry.db    SQLite database (WAL mode) of datasets, models, jobs and deployments
//   datasets/      copies of the registered JSONL files (<name>.jsonl)
//   models/        reserved for models the workspace owns (base models stay where the user keeps them)
//   jobs/<id>/     a fine-tuning job: its output (adapter/, metrics.jsonl, checkpoints/, summary.json),
//                  log.txt (detached runs) and `lock` (held while its process runs, registry/job_lock.h)
//   deployments/   `<name>.lock`, held by a deployment's server while it runs (its pid inside), and
//                  `<name>.log`, the output of a detached server
//
// docs/workspace.md is the user's reference. Every write is one SQLite transaction (BEGIN
// IMMEDIATE): checks and writes are atomic across processes, and a failure (full disk, read-only
// disk, a constraint) rolls everything back — the registry never holds a partial row. Several
// processes may use one workspace at once (WAL; writers wait up to 30 s for each other).
//
// Names are validated ([a-z0-9][a-z0-9._-]{0,63}). An unknown name is kInvalidArgument listing the
// registered ones. A workspace on a read-only file system opens read-only: reading works, writing
// is kIo.
#pragma once

#include "registry/job_lock.h"
#include "registry/records.h"
#include "registry/sqlite_db.h"

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

class Workspace {
 public:
  // $QAFT_HOME when set (and non-empty), else $HOME/.qaft. Throws kInvalidArgument when neither
  // QAFT_HOME nor HOME is set.
  static std::filesystem::path default_home();
  // Opens the workspace at `home`, creating the directory layout and the registry (schema
  // migrated, WAL, busy timeout, foreign keys) when missing. Throws kIo when it cannot be created.
  static Workspace open(const std::filesystem::path& home);

  const std::filesystem::path& home() const { return home_; }
  std::filesystem::path db_path() const { return home_ / "registry.db"; }
  std::filesystem::path datasets_dir() const { return home_ / "datasets"; }
  std::filesystem::path models_dir() const { return home_ / "models"; }
  std::filesystem::path jobs_dir() const { return home_ / "jobs"; }
  std::filesystem::path job_dir(int64_t id) const { return jobs_dir() / std::to_string(id); }
  std::filesystem::path job_lock_path(int64_t id) const { return job_dir(id) / "lock"; }
  std::filesystem::path deployment_lock_path(std::string_view name) const;
  bool read_only() const { return db_.read_only(); }
  // Throws kIo when the workspace opened read-only (before file work that precedes a write).
  void require_writable() const;
  sqlite::Db& db() { return db_; }  // for tests and maintenance

  // ---- datasets (registry/workspace_datasets.cpp)
  // Inserts the row. kInvalidArgument when the name is invalid or taken. `before_commit` runs
  // inside the transaction after the insert (it moves the file into place: if it throws, no row).
  void add_dataset(const DatasetRecord& record, const std::function<void()>& before_commit = {});
  std::optional<DatasetRecord> find_dataset(std::string_view name);
  DatasetRecord dataset(std::string_view name);  // unknown: kInvalidArgument listing the names
  std::vector<DatasetRecord> datasets();         // by name
  // Removes the row and the copy. Refused (kInvalidArgument) while an unfinished job (queued,
  // running, interrupted, failed: it may still be resumed) trains on it, unless `force`.
  void delete_dataset(std::string_view name, bool force);

  // ---- models (registry/workspace_models.cpp)
  void add_model(const ModelRecord& record);  // kInvalidArgument when the name is invalid or taken
  std::optional<ModelRecord> find_model(std::string_view name);
  ModelRecord model(std::string_view name);   // unknown: kInvalidArgument listing the names
  std::vector<ModelRecord> models();          // by name
  // What uses the model: tuned models on it, deployments of it, unfinished jobs on it (one line
  // each, for messages).
  std::vector<std::string> model_users(std::string_view name);
  // Removes the row (never the user's files of a base model; a tuned model's files stay with its
  // job). Refused while model_users is not empty, unless `force`: then the deployments of it are
  // removed too (refused while one is running), and tuned models keep naming it in their lineage.
  void delete_model(std::string_view name, bool force);

  // ---- fine-tuning jobs (registry/workspace_jobs.cpp)
  // Inserts a queued job in one transaction with its checks: the output model name is valid and
  // not the output of another job nor a registered model (kInvalidArgument naming the existing
  // job); the base model and the dataset exist. `make_config(id, dir)` gives the job's full
  // configuration once its id (and so its directory) is known; if it throws, nothing is recorded.
  // Fills id, status, created_at, qaft_version and dir; returns the id.
  int64_t add_job(JobRecord job, const std::function<nlohmann::json(int64_t id, const std::filesystem::path& dir)>& make_config);
  std::optional<JobRecord> find_job(int64_t id);
  JobRecord job(int64_t id);  // unknown: kInvalidArgument listing the ids
  std::vector<JobRecord> jobs();  // by id
  // The job's process started (or resumed) it: status running, its pid, started_at; clears
  // finished_at and error. Call while holding the job's lock.
  void mark_job_running(int64_t id, int64_t pid);
  // It ended without completing: kFailed (with `error`) or kInterrupted (a clean stop).
  void mark_job_ended(int64_t id, JobStatus status, const nlohmann::json& metrics, const std::string& error);
  // It completed: status, metrics and the output model's row, in one transaction.
  void complete_job(int64_t id, const nlohmann::json& metrics, const ModelRecord& output);
  // Removes the row and the job's directory. Refused while it runs; refused while its output
  // model is registered, unless `force` (which deletes that model, as delete_model(force)).
  void delete_job(int64_t id, bool force);

  // ---- deployments (registry/workspace_deployments.cpp)
  // A deployment's server holds deployment_lock_path(name) for its whole life (lock_deployment),
  // and only the lock holder writes the row: record_deployment_start, mark_deployment_running,
  // update_deployment.
  void add_deployment(const DeploymentRecord& record);  // kInvalidArgument: bad/taken name, unknown model
  std::optional<DeploymentRecord> find_deployment(std::string_view name);
  DeploymentRecord deployment(std::string_view name);  // unknown: kInvalidArgument listing the names
  std::vector<DeploymentRecord> deployments();         // by name
  std::filesystem::path deployment_log_path(std::string_view name) const;  // deployments/<name>.log
  // Takes the deployment's lock for this process and writes this process's pid into the lock file;
  // nullopt when another server holds it. Throws kInvalidArgument for an invalid name, kIo when the
  // file cannot be created.
  std::optional<JobLock> lock_deployment(std::string_view name);
  // The pid of the server holding the deployment's lock (as written by lock_deployment); nullopt
  // when no process holds it; 0 when one does but its pid cannot be read.
  std::optional<int64_t> deployment_server_pid(std::string_view name) const;
  // Records a starting server (`record` with status starting and the server's pid), in one
  // transaction: inserts the row, or replaces the row of an earlier deployment of that name — which
  // has ended (stopped, failed or gone), since the caller holds the lock. Re-creating a name
  // therefore needs no delete. Call while holding lock_deployment(record.name). kInvalidArgument:
  // bad name, unknown model, a port outside 0..65535.
  void record_deployment_start(const DeploymentRecord& record);
  // The server listens: status running, its pid and the port it bound (the actual one for --port 0).
  void mark_deployment_running(std::string_view name, int64_t pid, int64_t port);
  // Records the server's progress (status, pid, error).
  void update_deployment(std::string_view name, DeploymentStatus status, int64_t pid, const std::string& error);
  // Removes the row and the deployment's log. Refused while its server runs (its lock is held),
  // unless `force`. The lock file stays (removing it could let two servers lock two different files).
  void delete_deployment(std::string_view name, bool force);

  Workspace(Workspace&&) noexcept = default;
  Workspace& operator=(Workspace&&) noexcept = default;

 private:
  Workspace(std::filesystem::path home, sqlite::Db db) : home_(std::move(home)), db_(std::move(db)) {}
  // Steps of the public writes, run inside their caller's transaction.
  void insert_model_row(const ModelRecord& r);                // checks, then INSERT
  void delete_model_rows(std::string_view name, bool force);  // checks, deployments, DELETE
  // A jobs row (the columns of the SELECT in workspace_jobs.cpp), with its effective status.
  JobRecord read_job(sqlite::Stmt& st);
  // The status as read: a live status whose lock is free means the process is gone.
  JobStatus effective_job_status(int64_t id, JobStatus stored);
  DeploymentStatus effective_deployment_status(std::string_view name, DeploymentStatus stored);

  std::filesystem::path home_;  // the workspace directory (absolute)
  sqlite::Db db_;               // the registry connection of this process
};

// "unknown dataset 'x'; registered: a, b" (or "none is registered yet"), kInvalidArgument with
// `hint`.
[[noreturn]] void throw_unknown_name(std::string_view what, std::string_view name,
                                     const std::vector<std::string>& known, const std::string& hint);

}  // namespace qaft
