// Workspace: opening (layout, connection settings, schema) and shared helpers. The tables' reads
// and writes are in workspace_{datasets,models,jobs,deployments}.cpp.
#include "registry/workspace.h"

#include "core/error.h"
#include "registry/schema.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>

namespace qaft {

namespace fs = std::filesystem;

namespace {

bool on_read_only_file_system(const fs::path& dir) {
  struct statvfs st {};
  return ::statvfs(dir.c_str(), &st) == 0 && (st.f_flag & ST_RDONLY) != 0;
}

}  // namespace

fs::path Workspace::default_home() {
  if (const char* h = std::getenv("QAFT_HOME"); h && *h) return fs::absolute(h).lexically_normal();
  const char* home = std::getenv("HOME");
  QAFT_CHECK_HINT(home && *home, ErrorKind::kInvalidArgument, "set QAFT_HOME to the workspace directory",
                  "neither QAFT_HOME nor HOME is set: no default workspace");
  return fs::path(home) / ".qaft";
}

fs::path Workspace::deployment_lock_path(std::string_view name) const {
  return home_ / "deployments" / (std::string(name) + ".lock");
}

Workspace Workspace::open(const fs::path& home_in) {
  QAFT_CHECK(!home_in.empty(), "the workspace path is empty");
  const fs::path home = fs::absolute(home_in).lexically_normal();
  const std::string hint = "set QAFT_HOME to a writable directory (the default workspace is ~/.qaft)";
  std::error_code ec;
  QAFT_CHECK_HINT(!fs::exists(home, ec) || fs::is_directory(home, ec), ErrorKind::kIo, hint,
                  "the workspace {} exists but is not a directory", home.string());
  fs::create_directories(home, ec);
  QAFT_CHECK_HINT(!ec, ErrorKind::kIo, hint, "cannot create the workspace {}: {}", home.string(), ec.message());

  // A workspace that cannot be written opens read-only (listing works; writes are kIo). On a
  // read-only file system nobody can change the file, so SQLite may read it as immutable (without
  // the -wal/-shm files it could not create there).
  sqlite::OpenOptions options;
  options.immutable = on_read_only_file_system(home);
  options.read_only = options.immutable || ::access(home.c_str(), W_OK) != 0;
  const fs::path db_path = home / "registry.db";
  if (options.read_only) {
    QAFT_CHECK_HINT(fs::exists(db_path, ec), ErrorKind::kIo, hint,
                    "the workspace {} is read-only and holds no registry.db", home.string());
  } else {
    for (const char* sub : {"datasets", "models", "jobs", "deployments"}) {
      fs::create_directories(home / sub, ec);
      QAFT_CHECK_HINT(!ec, ErrorKind::kIo, hint, "cannot create {}: {}", (home / sub).string(), ec.message());
    }
  }

  sqlite::Db db = sqlite::Db::open(db_path, options);
  if (!options.read_only) {
    // WAL: readers never block the writer and a crash leaves the database consistent. Switching
    // needs a moment of exclusive access; the busy timeout waits for other openers.
    const std::string mode = db.query_text("PRAGMA journal_mode = WAL");
    QAFT_CHECK_HINT(mode == "wal", ErrorKind::kIo, "put the workspace on a local file system",
                    "the workspace registry {} cannot use write-ahead logging (journal mode '{}')", db_path.string(), mode);
    db.exec("PRAGMA synchronous = FULL");  // a committed write survives a power loss
  }
  db.exec("PRAGMA foreign_keys = ON");
  migrate_registry(db);
  return Workspace(home, std::move(db));
}

void Workspace::require_writable() const {
  QAFT_CHECK_HINT(!read_only(), ErrorKind::kIo, "use a writable workspace directory (set QAFT_HOME)",
                  "the workspace {} is read-only{}; nothing was changed", home_.string(),
                  on_read_only_file_system(home_) ? " (a read-only file system)" : "");
}

void throw_unknown_name(std::string_view what, std::string_view name, const std::vector<std::string>& known,
                        const std::string& hint) {
  std::string list;
  for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
  QAFT_FAIL(ErrorKind::kInvalidArgument, hint, "unknown {} '{}'; {}", what, name,
            known.empty() ? fmt::format("no {} is registered yet", what) : "registered: " + list);
}

}  // namespace qaft
