// Workspace: the jobs table. A job's liveness is its lock (registry/job_lock.h), not its pid.
#include "core/error.h"
#include "core/log.h"
#include "registry/job_lock.h"
#include "registry/version.h"
#include "registry/workspace.h"

namespace qaft {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSelect =
    "SELECT id, output_model, base_model, dataset, dataset_sha256, status, pid, config, qaft_version, created_at, "
    "started_at, finished_at, metrics, error FROM jobs";

}  // namespace

JobStatus Workspace::effective_job_status(int64_t id, JobStatus stored) {
  // A running job whose lock is free has lost its process (killed, crashed, machine rebooted).
  if (stored == JobStatus::kRunning && !JobLock::is_held(job_lock_path(id))) return JobStatus::kInterrupted;
  return stored;
}

JobRecord Workspace::read_job(sqlite::Stmt& st) {
  JobRecord r;
  r.id = st.int64(0);
  r.output_model = st.text(1);
  r.base_model = st.text(2);
  r.dataset = st.text(3);
  r.dataset_sha256 = st.text(4);
  r.status = effective_job_status(r.id, parse_job_status(st.text(5)));
  r.pid = st.int64(6);
  r.config = nlohmann::json::parse(st.text(7), nullptr, false);
  r.qaft_version = st.text(8);
  r.created_at = st.text(9);
  r.started_at = st.text(10);
  r.finished_at = st.text(11);
  r.metrics = nlohmann::json::parse(st.text(12), nullptr, false);
  r.error = st.text(13);
  r.dir = job_dir(r.id).string();
  return r;
}

int64_t Workspace::add_job(JobRecord job, const std::function<nlohmann::json(int64_t, const fs::path&)>& make_config) {
  validate_registry_name(job.output_model, "output model");
  sqlite::Transaction tx(db_);
  {
    sqlite::Stmt other(db_, "SELECT id, status FROM jobs WHERE output_model = ?1");
    other.bind(1, job.output_model);
    if (other.step()) {
      const int64_t id = other.int64(0);
      const JobStatus s = effective_job_status(id, parse_job_status(other.text(1)));
      const bool resumable = s == JobStatus::kInterrupted || s == JobStatus::kFailed || s == JobStatus::kQueued;
      QAFT_FAIL(ErrorKind::kInvalidArgument,
                resumable              ? fmt::format("choose another --output-model, continue it with `qaft sftj "
                                                         "resume {0}`, or delete it with `qaft sftj delete {0}`", id)
                : s == JobStatus::kRunning ? std::string("choose another --output-model")
                                           : fmt::format("choose another --output-model, or delete that job and its "
                                                         "model with `qaft sftj delete {} --force`", id),
                "output model '{}' is already the output of job {} ({})", job.output_model, id, job_status_name(s));
    }
  }
  QAFT_CHECK_HINT(!find_model(job.output_model), ErrorKind::kInvalidArgument, "choose another --output-model",
                  "a model named '{}' is already registered", job.output_model);
  const ModelRecord base = model(job.base_model);
  QAFT_CHECK_HINT(base.kind == ModelKind::kBase, ErrorKind::kInvalidArgument, "fine-tune a base model",
                  "model '{}' is a tuned model (a LoRA adapter on '{}'), not a base model", base.name, base.base_model);
  const DatasetRecord data = dataset(job.dataset);
  job.dataset_sha256 = data.sha256;
  job.status = JobStatus::kQueued;
  job.created_at = utc_now_iso8601();
  job.qaft_version = std::string(qaft_version());

  sqlite::Stmt ins(db_,
                   "INSERT INTO jobs (output_model, base_model, dataset, dataset_sha256, status, pid, config, qaft_version, "
                   "created_at) VALUES (?1, ?2, ?3, ?4, 'queued', 0, '{}', ?5, ?6)");
  ins.bind_all(job.output_model, job.base_model, job.dataset, job.dataset_sha256, job.qaft_version, job.created_at);
  ins.run();
  job.id = db_.last_insert_rowid();
  job.dir = job_dir(job.id).string();
  job.config = make_config(job.id, job.dir);
  sqlite::Stmt upd(db_, "UPDATE jobs SET config = ?1 WHERE id = ?2");
  upd.bind_all(job.config.dump(), job.id);
  upd.run();
  // The directory before the commit: a job row always has its directory.
  std::error_code ec;
  fs::remove_all(job.dir, ec);  // a leftover of a rolled-back attempt that got the same id
  fs::create_directories(job.dir, ec);
  QAFT_CHECK_HINT(!ec, ErrorKind::kIo, "check the disk that holds the workspace", "cannot create the job directory {}: {}",
                  job.dir, ec.message());
  try {
    tx.commit();
  } catch (...) {
    fs::remove_all(job.dir, ec);
    throw;
  }
  return job.id;
}

std::optional<JobRecord> Workspace::find_job(int64_t id) {
  sqlite::Stmt st(db_, std::string(kSelect) + " WHERE id = ?1");
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return read_job(st);
}

std::vector<JobRecord> Workspace::jobs() {
  sqlite::Stmt st(db_, std::string(kSelect) + " ORDER BY id");
  std::vector<JobRecord> out;
  while (st.step()) out.push_back(read_job(st));
  return out;
}

JobRecord Workspace::job(int64_t id) {
  if (auto r = find_job(id)) return *r;
  std::vector<std::string> ids;
  for (const JobRecord& j : jobs()) ids.push_back(std::to_string(j.id));
  throw_unknown_name("job", std::to_string(id), ids, "`qaft sftj list` shows the jobs");
}

void Workspace::mark_job_running(int64_t id, int64_t pid) {
  sqlite::Transaction tx(db_);
  sqlite::Stmt upd(db_,
                   "UPDATE jobs SET status = 'running', pid = ?1, started_at = ?2, finished_at = NULL, error = NULL "
                   "WHERE id = ?3");
  upd.bind_all(pid, utc_now_iso8601(), id);
  upd.run();
  QAFT_CHECK_HINT(db_.changes() == 1, ErrorKind::kInvalidArgument, "", "job {} is not in the registry (deleted?)", id);
  tx.commit();
}

void Workspace::mark_job_ended(int64_t id, JobStatus status, const nlohmann::json& metrics, const std::string& error) {
  QAFT_CHECK(status == JobStatus::kFailed || status == JobStatus::kInterrupted, "mark_job_ended: status {}",
             job_status_name(status));
  sqlite::Transaction tx(db_);
  sqlite::Stmt upd(db_, "UPDATE jobs SET status = ?1, finished_at = ?2, metrics = ?3, error = ?4 WHERE id = ?5");
  upd.bind_all(job_status_name(status), utc_now_iso8601(), metrics.dump(),
               error.empty() ? std::nullopt : std::optional<std::string>(error), id);
  upd.run();
  tx.commit();
}

void Workspace::complete_job(int64_t id, const nlohmann::json& metrics, const ModelRecord& output) {
  sqlite::Transaction tx(db_);
  sqlite::Stmt upd(db_,
                   "UPDATE jobs SET status = 'completed', finished_at = ?1, metrics = ?2, error = NULL WHERE id = ?3");
  upd.bind_all(utc_now_iso8601(), metrics.dump(), id);
  upd.run();
  QAFT_CHECK_HINT(db_.changes() == 1, ErrorKind::kInvalidArgument, "", "job {} is not in the registry (deleted?)", id);
  insert_model_row(output);
  tx.commit();
}

void Workspace::delete_job(int64_t id, bool force) {
  std::string dir;
  {
    sqlite::Transaction tx(db_);
    const JobRecord j = job(id);
    dir = j.dir;
    QAFT_CHECK_HINT(j.status != JobStatus::kRunning && !JobLock::is_held(job_lock_path(id)), ErrorKind::kInvalidArgument,
                    fmt::format("stop it first (Ctrl-C, or kill {}), then delete it", j.pid),
                    "job {} is running (pid {})", id, j.pid);
    if (find_model(j.output_model)) {
      QAFT_CHECK_HINT(force, ErrorKind::kInvalidArgument,
                      fmt::format("delete the model first (`qaft model delete {}`), or pass --force to delete both",
                                  j.output_model),
                      "job {} produced model '{}', whose adapter lives in the job's directory", id, j.output_model);
      delete_model_rows(j.output_model, true);
    }
    sqlite::Stmt del(db_, "DELETE FROM jobs WHERE id = ?1");
    del.bind(1, id);
    del.run();
    tx.commit();
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) QAFT_LOG(kWarn, "job {} deleted, but its directory {} could not be removed: {}", id, dir, ec.message());
}

}  // namespace qaft
