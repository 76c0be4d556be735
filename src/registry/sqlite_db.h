// A thin RAII layer over the SQLite C API for the workspace registry: a connection (Db), prepared
// statements (Stmt) and write transactions (Transaction). Every SQLite failure becomes a
// qaft::Error with the database path, SQLite's message and a hint: a full disk or a read-only
// workspace is kIo, a corrupt file kInvalidFile, a violated constraint kInvalidArgument.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace qaft::sqlite {

// How a database is opened.
struct OpenOptions {
  bool read_only = false;      // SQLITE_OPEN_READONLY (no write is possible)
  bool immutable = false;      // with read_only: the file cannot change (a read-only file system);
                               // SQLite then needs no -wal/-shm files and takes no locks
  int busy_timeout_ms = 30000; // how long a statement waits for another process's write lock
};

// One connection. Not thread-safe: one thread uses it (each process opens its own).
class Db {
 public:
  // Opens (creating when !read_only) the file. Throws kIo when it cannot be opened.
  static Db open(const std::filesystem::path& path, const OpenOptions& options = {});

  Db(Db&& other) noexcept;
  Db& operator=(Db&& other) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  // Runs one or more statements without results (DDL, PRAGMA assignments).
  void exec(std::string_view sql);
  // The first column of the first row of a query, as text ("" when there is no row).
  std::string query_text(std::string_view sql);
  int64_t query_int(std::string_view sql);

  int64_t last_insert_rowid() const;
  int changes() const;  // rows changed by the last INSERT/UPDATE/DELETE
  bool read_only() const { return read_only_; }
  const std::filesystem::path& path() const { return path_; }
  sqlite3* handle() const { return db_; }

  // Throws the qaft::Error for SQLite result code `rc` while doing `what` ("inserting dataset x").
  [[noreturn]] void fail(int rc, std::string_view what) const;

 private:
  Db(sqlite3* db, std::filesystem::path path, bool read_only);
  sqlite3* db_ = nullptr;         // the connection
  std::filesystem::path path_;    // the database file, for messages
  bool read_only_ = false;        // opened read-only
};

// A prepared statement. Parameters are 1-based (as in SQL "?1"), columns 0-based.
class Stmt {
 public:
  Stmt(Db& db, std::string_view sql);
  Stmt(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  ~Stmt();

  Stmt& bind(int index, int64_t value);
  Stmt& bind(int index, int value) { return bind(index, static_cast<int64_t>(value)); }
  Stmt& bind(int index, double value);
  Stmt& bind(int index, std::string_view value);
  Stmt& bind(int index, const std::string& value) { return bind(index, std::string_view(value)); }
  Stmt& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
  Stmt& bind(int index, std::nullopt_t);
  template <typename T>
  Stmt& bind(int index, const std::optional<T>& value) {
    return value ? bind(index, *value) : bind(index, std::nullopt);
  }
  // Binds every argument in order, from parameter 1.
  template <typename... A>
  Stmt& bind_all(const A&... args) {
    int i = 0;
    (bind(++i, args), ...);
    return *this;
  }

  bool step();  // true: a row is available; false: done. Throws on failure.
  void run();   // steps to completion (statements without results)
  void reset(); // ready to run again (bindings kept)

  bool is_null(int col) const;
  int64_t int64(int col) const;
  double real(int col) const;
  std::string text(int col) const;  // "" for NULL
  std::optional<int64_t> opt_int64(int col) const;

 private:
  Db& db_;                         // its connection
  sqlite3_stmt* stmt_ = nullptr;   // the compiled statement
  std::string sql_;                // for messages
};

// BEGIN IMMEDIATE … COMMIT: takes the write lock at the start (waiting up to the busy timeout for
// another process), so that checks made inside the transaction still hold when it commits. The
// destructor rolls back a transaction that was not committed (an exception left the scope): no
// partial write ever reaches the file.
class Transaction {
 public:
  explicit Transaction(Db& db);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  Db& db_;              // its connection
  bool open_ = false;   // BEGIN done, neither COMMIT nor ROLLBACK yet
};

}  // namespace qaft::sqlite
