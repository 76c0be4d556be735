// Workspace: the models table.
#include "core/error.h"
#include "registry/version.h"
#include "registry/workspace.h"

namespace qaft {

namespace {

constexpr const char* kSelect =
    "SELECT name, kind, path, base_model, format, config, created_at, source_job, dataset, dataset_sha256, "
    "qaft_version FROM models";

ModelRecord read_model(const sqlite::Stmt& st) {
  ModelRecord r;
  r.name = st.text(0);
  r.kind = parse_model_kind(st.text(1));
  r.path = st.text(2);
  r.base_model = st.text(3);
  r.format = st.text(4);
  r.config = nlohmann::json::parse(st.text(5), nullptr, false);
  r.created_at = st.text(6);
  r.source_job = st.opt_int64(7);
  r.dataset = st.text(8);
  r.dataset_sha256 = st.text(9);
  r.qaft_version = st.text(10);
  return r;
}

std::optional<std::string> non_empty(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

}  // namespace

void Workspace::insert_model_row(const ModelRecord& r) {
  validate_registry_name(r.name, "model");
  QAFT_CHECK(r.kind == ModelKind::kBase || !r.base_model.empty(), "tuned model '{}' has no base model", r.name);
  {
    sqlite::Stmt exists(db_, "SELECT kind FROM models WHERE name = ?1");
    exists.bind(1, r.name);
    QAFT_CHECK_HINT(!exists.step(), ErrorKind::kInvalidArgument,
                    fmt::format("choose another name, or `qaft model delete {}` first", r.name),
                    "a model named '{}' is already registered", r.name);
  }
  {
    // A job's output name is reserved for that job's model from the job's creation on.
    sqlite::Stmt job(db_, "SELECT id FROM jobs WHERE output_model = ?1 AND id IS NOT ?2");
    job.bind_all(r.name, r.source_job);
    QAFT_CHECK_HINT(!job.step(), ErrorKind::kInvalidArgument, "choose another name",
                    "the name '{}' is reserved for the output of job {}", r.name, job.int64(0));
  }
  sqlite::Stmt ins(db_,
                   "INSERT INTO models (name, kind, path, base_model, format, config, created_at, source_job, dataset, "
                   "dataset_sha256, qaft_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  ins.bind_all(r.name, model_kind_name(r.kind), r.path, non_empty(r.base_model), r.format, r.config.dump(),
               r.created_at.empty() ? utc_now_iso8601() : r.created_at, r.source_job, non_empty(r.dataset),
               non_empty(r.dataset_sha256), r.qaft_version.empty() ? std::string(qaft_version()) : r.qaft_version);
  ins.run();
}

void Workspace::add_model(const ModelRecord& r) {
  sqlite::Transaction tx(db_);
  insert_model_row(r);
  tx.commit();
}

std::optional<ModelRecord> Workspace::find_model(std::string_view name) {
  sqlite::Stmt st(db_, std::string(kSelect) + " WHERE name = ?1");
  st.bind(1, name);
  if (!st.step()) return std::nullopt;
  return read_model(st);
}

std::vector<ModelRecord> Workspace::models() {
  sqlite::Stmt st(db_, std::string(kSelect) + " ORDER BY name");
  std::vector<ModelRecord> out;
  while (st.step()) out.push_back(read_model(st));
  return out;
}

ModelRecord Workspace::model(std::string_view name) {
  if (auto r = find_model(name)) return *r;
  std::vector<std::string> names;
  for (const ModelRecord& m : models()) names.push_back(m.name);
  throw_unknown_name("model", name, names, "register a base model with `qaft model register NAME MODEL_DIR`");
}

std::vector<std::string> Workspace::model_users(std::string_view name) {
  std::vector<std::string> out;
  sqlite::Stmt tuned(db_, "SELECT name FROM models WHERE base_model = ?1 ORDER BY name");
  tuned.bind(1, name);
  while (tuned.step()) out.push_back(fmt::format("tuned model '{}'", tuned.text(0)));
  sqlite::Stmt deps(db_, "SELECT name FROM deployments WHERE model = ?1 ORDER BY name");
  deps.bind(1, name);
  while (deps.step()) out.push_back(fmt::format("deployment '{}'", deps.text(0)));
  sqlite::Stmt jobs(db_, "SELECT id, status FROM jobs WHERE base_model = ?1 AND status != 'completed' ORDER BY id");
  jobs.bind(1, name);
  while (jobs.step()) out.push_back(fmt::format("job {} ({})", jobs.int64(0), jobs.text(1)));
  return out;
}

void Workspace::delete_model_rows(std::string_view name, bool force) {
  const ModelRecord m = model(name);
  const std::vector<std::string> users = model_users(name);
  if (!users.empty() && !force) {
    std::string list;
    for (const std::string& u : users) list += (list.empty() ? "" : ", ") + u;
    QAFT_FAIL(ErrorKind::kInvalidArgument, "delete those first, or pass --force", "model '{}' is used by {}", name, list);
  }
  // --force: its deployments go with it (a running server must be stopped first).
  std::vector<std::string> deployments;
  {
    sqlite::Stmt deps(db_, "SELECT name, status FROM deployments WHERE model = ?1");
    deps.bind(1, name);
    while (deps.step()) {
      const std::string d = deps.text(0);
      const DeploymentStatus s = effective_deployment_status(d, parse_deployment_status(deps.text(1)));
      QAFT_CHECK_HINT(s != DeploymentStatus::kRunning && s != DeploymentStatus::kStarting, ErrorKind::kInvalidArgument,
                      "stop the server first", "model '{}' is served by deployment '{}', which is {}", name, d,
                      deployment_status_name(s));
      deployments.push_back(d);
    }
  }
  for (const std::string& d : deployments) {
    sqlite::Stmt del(db_, "DELETE FROM deployments WHERE name = ?1");
    del.bind(1, d);
    del.run();
  }
  sqlite::Stmt del(db_, "DELETE FROM models WHERE name = ?1");
  del.bind(1, m.name);
  del.run();
}

void Workspace::delete_model(std::string_view name, bool force) {
  sqlite::Transaction tx(db_);
  delete_model_rows(name, force);
  tx.commit();
}

}  // namespace qaft
