// Workspace: the deployments table. A server is alive while it holds its lock
// (<workspace>/deployments/<name>.lock, registry/job_lock.h), as a job's process is.
#include "core/error.h"
#include "registry/job_lock.h"
#include "registry/workspace.h"

namespace qaft {

namespace {

constexpr const char* kSelect =
    "SELECT name, model, adapter, precision, live_merge, host, port, pid, status, created_at, error FROM deployments";

}  // namespace

DeploymentStatus Workspace::effective_deployment_status(std::string_view name, DeploymentStatus stored) {
  const bool live = stored == DeploymentStatus::kStarting || stored == DeploymentStatus::kRunning;
  if (live && !JobLock::is_held(deployment_lock_path(name))) return DeploymentStatus::kFailed;
  return stored;
}

void Workspace::add_deployment(const DeploymentRecord& r) {
  validate_registry_name(r.name, "deployment");
  QAFT_CHECK(r.port >= 0 && r.port <= 65535, "deployment '{}': port {} is outside 0..65535", r.name, r.port);
  sqlite::Transaction tx(db_);
  QAFT_CHECK_HINT(!find_deployment(r.name), ErrorKind::kInvalidArgument,
                  fmt::format("choose another --name, or `qaft deployment delete {}` first", r.name),
                  "a deployment named '{}' is already registered", r.name);
  model(r.model);  // unknown: the error lists the models
  sqlite::Stmt ins(db_,
                   "INSERT INTO deployments (name, model, adapter, precision, live_merge, host, port, pid, status, "
                   "created_at, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  ins.bind_all(r.name, r.model, r.adapter.empty() ? std::nullopt : std::optional<std::string>(r.adapter), r.precision,
               int64_t{r.live_merge}, r.host, r.port, r.pid, deployment_status_name(r.status),
               r.created_at.empty() ? utc_now_iso8601() : r.created_at,
               r.error.empty() ? std::nullopt : std::optional<std::string>(r.error));
  ins.run();
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
  throw_unknown_name("deployment", name, names, "`qaft deployment create MODEL` starts one");
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
                  fmt::format("stop the server first (kill {}), or pass --force to forget it", d.pid),
                  "deployment '{}' is {} (pid {}, {}:{})", name, deployment_status_name(d.status), d.pid, d.host, d.port);
  sqlite::Stmt del(db_, "DELETE FROM deployments WHERE name = ?1");
  del.bind(1, name);
  del.run();
  tx.commit();
}

}  // namespace qaft
