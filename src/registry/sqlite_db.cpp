#include "registry/sqlite_db.h"

#include "core/error.h"

#include <sqlite3.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace qaft::sqlite {

namespace {

// The URI of a file for sqlite3_open_v2 with SQLITE_OPEN_URI: '%', '?' and '#' are escaped.
std::string file_uri(const std::filesystem::path& path, bool immutable) {
  std::string uri = "file:";
  for (char c : path.string()) {
    if (c == '%' || c == '?' || c == '#') uri += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    else uri += c;
  }
  if (immutable) uri += "?immutable=1";
  return uri;
}

// What a statement does, for messages: "inserting into models", "reading jobs", or its start.
std::string describe(const std::string& sql) {
  // The word after `keyword` (a table name), or "".
  auto after = [&](const char* keyword) {
    const size_t k = sql.find(keyword);
    if (k == std::string::npos) return std::string();
    const size_t start = k + std::strlen(keyword);
    const size_t end = sql.find_first_of(" (\n;", start);
    return sql.substr(start, end == std::string::npos ? std::string::npos : end - start);
  };
  if (sql.rfind("INSERT INTO ", 0) == 0) return "inserting into " + after("INSERT INTO ");
  if (sql.rfind("UPDATE ", 0) == 0) return "updating " + after("UPDATE ");
  if (sql.rfind("DELETE FROM ", 0) == 0) return "deleting from " + after("DELETE FROM ");
  if (sql.rfind("SELECT ", 0) == 0 && !after(" FROM ").empty()) return "reading " + after(" FROM ");
  return sql.size() > 40 ? sql.substr(0, 40) + "..." : sql;
}

}  // namespace

Db::Db(sqlite3* db, std::filesystem::path path, bool read_only)
    : db_(db), path_(std::move(path)), read_only_(read_only) {}

Db::Db(Db&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), path_(std::move(other.path_)), read_only_(other.read_only_) {}

Db& Db::operator=(Db&& other) noexcept {
  if (this != &other) {
    if (db_) sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
    read_only_ = other.read_only_;
  }
  return *this;
}

Db::~Db() {
  if (db_) sqlite3_close_v2(db_);
}

Db Db::open(const std::filesystem::path& path, const OpenOptions& options) {
  sqlite3* raw = nullptr;
  const int flags = SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX |
                    (options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  const int rc = sqlite3_open_v2(file_uri(path, options.read_only && options.immutable).c_str(), &raw, flags, nullptr);
  Db db(raw, path, options.read_only);  // closes the handle on every path (sqlite3 allocates one even on failure)
  if (rc != SQLITE_OK) db.fail(rc, "opening the registry");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  return db;
}

void Db::fail(int rc, std::string_view what) const {
  const std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  const std::string file = path_.string();
  // An I/O error's cause, when the OS gave one: a full or read-only disk reads as such.
  int primary = rc & 0xff;
  const int os_error = db_ ? sqlite3_system_errno(db_) : 0;
  if (primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN) {
    if (os_error == ENOSPC || os_error == EDQUOT) primary = SQLITE_FULL;
    if (os_error == EROFS) primary = SQLITE_READONLY;
  }
  switch (primary) {
    case SQLITE_FULL:
      QAFT_FAIL(ErrorKind::kIo, "free space on the disk that holds the workspace, or point QAFT_HOME elsewhere",
                "the disk holding the workspace registry {} is full ({}: {}); nothing was changed", file, what, detail);
    case SQLITE_READONLY:
    case SQLITE_PERM:
      QAFT_FAIL(ErrorKind::kIo, "use a writable workspace directory (set QAFT_HOME)",
                "the workspace registry {} is read-only ({}: {}); nothing was changed", file, what, detail);
    case SQLITE_CANTOPEN:
      QAFT_FAIL(ErrorKind::kIo, "check that the workspace directory exists and is writable (set QAFT_HOME)",
                "cannot open the workspace registry {} ({}: {})", file, what, detail);
    case SQLITE_IOERR:
      QAFT_FAIL(ErrorKind::kIo, "check the disk that holds the workspace (space, permissions, errors)",
                "I/O error on the workspace registry {} ({}: {}); the transaction was rolled back", file, what, detail);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      QAFT_FAIL(ErrorKind::kIo, "another qaft process holds the registry's write lock; retry",
                "the workspace registry {} is busy ({}: {})", file, what, detail);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      QAFT_FAIL(ErrorKind::kInvalidFile, "restore registry.db from a backup or move the workspace aside",
                "the workspace registry {} is damaged or not a SQLite database ({}: {})", file, what, detail);
    case SQLITE_CONSTRAINT:
      QAFT_FAIL(ErrorKind::kInvalidArgument, "", "{}: {} (registry {})", what, detail, file);
    default:
      QAFT_FAIL(ErrorKind::kInternal, "", "SQLite error {} on {} ({}: {})", rc, file, what, detail);
  }
}

void Db::exec(std::string_view sql) {
  const std::string s(sql);
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);  // the same text is available from sqlite3_errmsg
  if (rc != SQLITE_OK) fail(rc, describe(s));
}

std::string Db::query_text(std::string_view sql) {
  Stmt st(*this, sql);
  return st.step() ? st.text(0) : std::string();
}

int64_t Db::query_int(std::string_view sql) {
  Stmt st(*this, sql);
  return st.step() ? st.int64(0) : 0;
}

int64_t Db::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
int Db::changes() const { return sqlite3_changes(db_); }

Stmt::Stmt(Db& db, std::string_view sql) : db_(db), sql_(sql) {
  const int rc = sqlite3_prepare_v2(db.handle(), sql_.data(), static_cast<int>(sql_.size()), &stmt_, nullptr);
  if (rc != SQLITE_OK) db_.fail(rc, describe(sql_));
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

Stmt& Stmt::bind(int index, int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a parameter");
  return *this;
}

Stmt& Stmt::bind(int index, double value) {
  const int rc = sqlite3_bind_double(stmt_, index, value);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a parameter");
  return *this;
}

Stmt& Stmt::bind(int index, std::string_view value) {
  const int rc = sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a parameter");
  return *this;
}

Stmt& Stmt::bind(int index, std::nullopt_t) {
  const int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a parameter");
  return *this;
}

bool Stmt::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(stmt_);  // leaves the statement reusable; the error text stays on the connection
  db_.fail(rc, describe(sql_));
}

void Stmt::run() {
  while (step()) {
  }
}

void Stmt::reset() { sqlite3_reset(stmt_); }

bool Stmt::is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
int64_t Stmt::int64(int col) const { return sqlite3_column_int64(stmt_, col); }
double Stmt::real(int col) const { return sqlite3_column_double(stmt_, col); }

std::string Stmt::text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
}

std::optional<int64_t> Stmt::opt_int64(int col) const {
  if (is_null(col)) return std::nullopt;
  return int64(col);
}

Transaction::Transaction(Db& db) : db_(db) {
  db_.exec("BEGIN IMMEDIATE");
  open_ = true;
}

Transaction::~Transaction() {
  if (open_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");  // on failure (disk full at commit) the destructor rolls back
  open_ = false;
}

}  // namespace qaft::sqlite
