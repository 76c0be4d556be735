// Workspace: the datasets table.
#include "core/error.h"
#include "core/log.h"
#include "registry/workspace.h"

namespace qaft {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSelect = "SELECT name, path, source, sha256, rows, tokens, created_at, stats FROM datasets";

DatasetRecord read_dataset(const sqlite::Stmt& st) {
  DatasetRecord r;
  r.name = st.text(0);
  r.path = st.text(1);
  r.source = st.text(2);
  r.sha256 = st.text(3);
  r.rows = st.int64(4);
  r.tokens = st.int64(5);
  r.created_at = st.text(6);
  r.stats = nlohmann::json::parse(st.text(7), nullptr, false);
  return r;
}

}  // namespace

void Workspace::add_dataset(const DatasetRecord& r, const std::function<void()>& before_commit) {
  validate_registry_name(r.name, "dataset");
  sqlite::Transaction tx(db_);
  {
    sqlite::Stmt exists(db_, "SELECT 1 FROM datasets WHERE name = ?1");
    exists.bind(1, r.name);
    QAFT_CHECK_HINT(!exists.step(), ErrorKind::kInvalidArgument,
                    fmt::format("choose another name, or `qaft dataset delete {}` first", r.name),
                    "a dataset named '{}' is already registered", r.name);
  }
  sqlite::Stmt ins(db_,
                   "INSERT INTO datasets (name, path, source, sha256, rows, tokens, created_at, stats) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  ins.bind_all(r.name, r.path, r.source, r.sha256, r.rows, r.tokens,
               r.created_at.empty() ? utc_now_iso8601() : r.created_at, r.stats.dump());
  ins.run();
  if (before_commit) before_commit();
  tx.commit();
}

std::optional<DatasetRecord> Workspace::find_dataset(std::string_view name) {
  sqlite::Stmt st(db_, std::string(kSelect) + " WHERE name = ?1");
  st.bind(1, name);
  if (!st.step()) return std::nullopt;
  return read_dataset(st);
}

std::vector<DatasetRecord> Workspace::datasets() {
  sqlite::Stmt st(db_, std::string(kSelect) + " ORDER BY name");
  std::vector<DatasetRecord> out;
  while (st.step()) out.push_back(read_dataset(st));
  return out;
}

DatasetRecord Workspace::dataset(std::string_view name) {
  if (auto r = find_dataset(name)) return *r;
  std::vector<std::string> names;
  for (const DatasetRecord& d : datasets()) names.push_back(d.name);
  throw_unknown_name("dataset", name, names, "register it with `qaft dataset create NAME FILE --model MODEL`");
}

void Workspace::delete_dataset(std::string_view name, bool force) {
  std::string path;
  {
    sqlite::Transaction tx(db_);
    const DatasetRecord r = dataset(name);
    path = r.path;
    if (!force) {
      sqlite::Stmt users(db_, "SELECT id, status FROM jobs WHERE dataset = ?1 AND status != 'completed' ORDER BY id");
      users.bind(1, name);
      std::string list;
      while (users.step()) list += fmt::format("{}job {} ({})", list.empty() ? "" : ", ", users.int64(0), users.text(1));
      QAFT_CHECK_HINT(list.empty(), ErrorKind::kInvalidArgument,
                      "delete those jobs first, or pass --force (they can then no longer be resumed)",
                      "dataset '{}' is used by unfinished jobs: {}", name, list);
    }
    sqlite::Stmt del(db_, "DELETE FROM datasets WHERE name = ?1");
    del.bind(1, name);
    del.run();
    tx.commit();
  }
  // The copy goes after the row: a failure here leaves a stray file, never a row without its file.
  std::error_code ec;
  if (fs::path(path).parent_path() == datasets_dir()) fs::remove(path, ec);
  if (ec) QAFT_LOG(kWarn, "dataset '{}' deleted, but its file {} could not be removed: {}", name, path, ec.message());
}

}  // namespace qaft
