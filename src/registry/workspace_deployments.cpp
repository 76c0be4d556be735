// Workspace: the deployments table. A server is alive while it holds its lock
// (<workspace>/deployments/<name>.lock, registry/job_lock.h), as a job's process is; the lock file
// holds the server's pid (for `qaft deployment stop`).
#include "core/error.h"
#include "registry/job_lock.h"
#include "registry/workspace.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

namespace qaft {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSelect =
    "SELECT name, model, adapter, precision, live_merge, host, port, pid, status, created_at, error FROM deployments";

void insert_deployment_row(sqlite::Db& db, const DeploymentRecord& r) {
  sqlite::Stmt ins(db,
                   "INSERT INTO deployments (name, model, adapter, precision, live_merge, host, port, pid, status, "
                   "created_at, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  ins.bind_all(r.name, r.model, r.adapter.empty() ? std::nullopt : std::optional<std::string>(r.adapter), r.precision,
               int64_t{r.live_merge}, r.host, r.port, r.pid, deployment_status_name(r.status),
               r.created_at.empty() ? utc_now_iso8601() : r.created_at,
               r.error.empty() ? std::nullopt : std::optional<std::string>(r.error));
  ins.run();
}

void check_deployment_fields(const DeploymentRecord& r) {
  validate_registry_name(r.name, "deployment");
  QAFT_CHECK(r.port >= 0 && r.port <= 65535, "deployment '{}': port {} is outside 0..65535", r.name, r.port);
}

}  // namespace

fs::path Workspace::deployment_log_path(std::string_view name) const {
  return home_ / "deployments" / (std::string(name) + ".log");
}

std::optional<JobLock> Workspace::lock_deployment(std::string_view name) {
  validate_registry_name(name, "deployment");  // it becomes a file name
  require_writable();
  const fs::path path = deployment_lock_path(name);
  std::optional<JobLock> lock = JobLock::try_acquire(path);
  if (!lock) return std::nullopt;
  // Another descriptor of the file: writing (and closing) it leaves the open-file-description lock
  // of `lock` in place.
  const std::string pid = std::to_string(::getpid()) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  const bool ok = fd >= 0 && ::write(fd, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size());
  const int err = errno;
  if (fd >= 0) ::close(fd);
  QAFT_CHECK_HINT(ok, ErrorKind::kIo, "check that the workspace is writable", "cannot write the server's pid into {}: {}",
                  path.string(), std::strerror(err));
  return lock;
}

std::optional<int64_t> Workspace::deployment_server_pid(std::string_view name) const {
  const fs::path path = deployment_lock_path(name);
  if (!JobLock::is_held(path)) return std::nullopt;
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  int64_t pid = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
  return ec == std::errc() && end == text.data() + text.size() && pid > 0 ? pid : 0;
}

void Workspace::record_deployment_start(const DeploymentRecord& r) {
  check_deployment_fields(r);
  sqlite::Transaction tx(db_);
  model(r.model);  // unknown: the error lists the models
  sqlite::Stmt del(db_, "DELETE FROM deployments WHERE name = ?1");  // an ended deployment of that name
  del.bind(1, r.name);
  del.run();
  insert_deployment_row(db_, r);
  tx.commit();
}

void Workspace::mark_deployment_running(std::string_view name, int64_t pid, int64_t port) {
  QAFT_CHECK(port > 0 && port <= 65535, "deployment '{}': port {} is outside 1..65535", name, port);
  sqlite::Transaction tx(db_);
  sqlite::Stmt upd(db_, "UPDATE deployments SET status = ?1, pid = ?2, port = ?3, error = NULL WHERE name = ?4");
  upd.bind_all(deployment_status_name(DeploymentStatus::kRunning), pid, port, name);
  upd.run();
  QAFT_CHECK(db_.changes() == 1, "deployment '{}' is not in the registry", name);
  tx.commit();
}

DeploymentStatus Workspace::effective_deployment_status(std::string_view name, DeploymentStatus stored) {
  const bool live = stored == DeploymentStatus::kStarting || stored == DeploymentStatus::kRunning;
  if (live && !JobLock::is_held(deployment_lock_path(name))) return DeploymentStatus::kFailed;
  return stored;
}

void Workspace::add_deployment(const DeploymentRecord& r) {
  check_deployment_fields(r);
  sqlite::Transaction tx(db_);
  QAFT_CHECK_HINT(!find_deployment(r.name), ErrorKind::kInvalidArgument,
                  fmt::format("choose another --name, or `qaft deployment delete {}` first", r.name),
                  "a deployment named '{}' is already registered", r.name);
  model(r.model);  // unknown: the error lists the models
  insert_deployment_row(db_, r);
  tx.commit();
}

std::optional<DeploymentRecord> Workspace::find_deployment(std::string_view name) {
  sqlite::Stmt st(db_, std::string(kSelect) + " WHERE name = ?1");
  st.bind(1, name);
  if (!st.step()) return std::nullopt;
  DeploymentRecord r;
  r.name = st.text(0);
  r.model = st.text(1);
  r.adapter = st.text(2);
  r.precision = st.text(3);
  r.live_merge = st.int64(4) != 0;
  r.host = st.text(5);
  r.port = st.int64(6);
  r.pid = st.int64(7);
  r.status = effective_deployment_status(r.name, parse_deployment_status(st.text(8)));
  r.created_at = st.text(9);
  r.error = st.text(10);
  if (r.status == DeploymentStatus::kFailed && r.error.empty()) r.error = "the server process is gone";
  return r;
}

std::vector<DeploymentRecord> Workspace::deployments() {
  std::vector<std::string> names;
  {
    sqlite::Stmt st(db_, "SELECT name FROM deployments ORDER BY name");
    while (st.step()) names.push_back(st.text(0));
  }
  std::vector<DeploymentRecord> out;
  for (const std::string& n : names)
    if (auto r = find_deployment(n)) out.push_back(std::move(*r));
  return out;
}

DeploymentRecord Workspace::deployment(std::string_view name) {
  if (auto r = find_deployment(name)) return *r;
  std::vector<std::string> names;
  for (const DeploymentRecord& d : deployments()) names.push_back(d.name);
  throw_unknown_name("deployment", name, names, "`qaft deployment create MODEL --live-merge` starts one");
}

void Workspace::update_deployment(std::string_view name, DeploymentStatus status, int64_t pid, const std::string& error) {
  sqlite::Transaction tx(db_);
  sqlite::Stmt upd(db_, "UPDATE deployments SET status = ?1, pid = ?2, error = ?3 WHERE name = ?4");
  upd.bind_all(deployment_status_name(status), pid, error.empty() ? std::nullopt : std::optional<std::string>(error), name);
  upd.run();
  QAFT_CHECK(db_.changes() == 1, "deployment '{}' is not in the registry", name);
  tx.commit();
}

void Workspace::delete_deployment(std::string_view name, bool force) {
  sqlite::Transaction tx(db_);
  const DeploymentRecord d = deployment(name);
  const bool live = d.status == DeploymentStatus::kRunning || d.status == DeploymentStatus::kStarting;
  QAFT_CHECK_HINT(!live || force, ErrorKind::kInvalidArgument,
                  fmt::format("stop it first (`qaft deployment stop {}`), or pass --force to forget it", name),
                  "deployment '{}' is {} (pid {}, {}:{})", name, deployment_status_name(d.status), d.pid, d.host, d.port);
  sqlite::Stmt del(db_, "DELETE FROM deployments WHERE name = ?1");
  del.bind(1, name);
  del.run();
  tx.commit();
  std::error_code ec;
  fs::remove(deployment_log_path(name), ec);  // after the commit: a failed delete keeps its log
}

}  // namespace qaft
