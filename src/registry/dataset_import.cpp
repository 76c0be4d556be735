#include "registry/dataset_import.h"

#include "core/error.h"
#include "data/chat_template.h"
#include "data/tokenizer.h"
#include "registry/sha256.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace qaft {

namespace fs = std::filesystem;

namespace {

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Copies `from` to `to` (created, must not exist), hashing the bytes; syncs `to`. Throws kIo with
// the OS's reason (ENOSPC: the disk is full).
std::string copy_and_hash(const fs::path& from, const fs::path& to) {
  Fd in{::open(from.c_str(), O_RDONLY | O_CLOEXEC)};
  QAFT_CHECK_HINT(in.fd >= 0, ErrorKind::kIo, "check the path", "cannot read {}: {}", from.string(), std::strerror(errno));
  Fd out{::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)};
  QAFT_CHECK_HINT(out.fd >= 0, ErrorKind::kIo, "check that the workspace is writable", "cannot create {}: {}",
                  to.string(), std::strerror(errno));
  const std::string hint = "free space on the disk that holds the workspace, or point QAFT_HOME elsewhere";
  Sha256 sha;
  std::vector<char> buf(size_t{1} << 20);
  for (;;) {
    const ssize_t n = ::read(in.fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    QAFT_CHECK_HINT(n >= 0, ErrorKind::kIo, "check the file", "cannot read {}: {}", from.string(), std::strerror(errno));
    if (n == 0) break;
    sha.update(buf.data(), static_cast<size_t>(n));
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(out.fd, buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      QAFT_CHECK_HINT(w > 0, ErrorKind::kIo, hint, "cannot write {}: {}", to.string(),
                      w < 0 ? std::strerror(errno) : "no progress");
      done += w;
    }
  }
  QAFT_CHECK_HINT(::fsync(out.fd) == 0, ErrorKind::kIo, hint, "cannot sync {}: {}", to.string(), std::strerror(errno));
  return sha.hex();
}

}  // namespace

DatasetImport import_dataset(Workspace& ws, const std::string& name, const fs::path& file, const fs::path& tokenizer_dir,
                             const std::string& tokenizer_label, const DatasetImportOptions& options) {
  validate_registry_name(name, "dataset");
  ws.require_writable();
  QAFT_CHECK_HINT(!ws.find_dataset(name), ErrorKind::kInvalidArgument,
                  fmt::format("choose another name, or `qaft dataset delete {}` first", name),
                  "a dataset named '{}' is already registered", name);
  std::error_code ec;
  QAFT_CHECK_HINT(fs::is_regular_file(file, ec), ErrorKind::kIo, "give a JSONL file", "{} is not a readable file",
                  file.string());
  const Tokenizer tok = Tokenizer::load(tokenizer_dir);
  const ChatTemplate tpl = ChatTemplate::from_tokenizer(tok, tokenizer_dir.string());

  const fs::path final_path = ws.datasets_dir() / (name + ".jsonl");
  const fs::path tmp = ws.datasets_dir() / fmt::format(".{}.jsonl.tmp.{}", name, ::getpid());
  fs::remove(tmp, ec);
  bool placed = false;  // the copy was renamed to final_path inside the transaction
  try {
    DatasetImport out;
    out.record.sha256 = copy_and_hash(file, tmp);
    out.stats = scan_dataset(tmp, tok, tpl, options.scan);
    const DatasetStats& s = out.stats;
    std::string first;
    for (size_t i = 0; i < std::min<size_t>(5, s.first_errors.size()); ++i)
      first += fmt::format("\n  {}:{}: {}: {}", file.string(), s.first_errors[i].line,
                           data_error_class_name(s.first_errors[i].kind), s.first_errors[i].message);
    QAFT_CHECK_HINT(s.valid_rows > 0, ErrorKind::kInvalidFile,
                    "give a JSONL file of chat ({\"messages\": [...]}) or prompt/completion records",
                    "{} has no valid example ({} lines, {} invalid){}", file.string(), s.rows, s.errors, first);
    QAFT_CHECK_HINT(s.errors == 0 || options.allow_errors, ErrorKind::kInvalidFile,
                    fmt::format("`qaft dataset validate {} --model {}` lists every error; fix them, or pass "
                                "--allow-errors to register it anyway (invalid lines are skipped in training)",
                                file.string(), tokenizer_label),
                    "{}: {} of {} lines are invalid{}", file.string(), s.errors, s.rows, first);

    DatasetRecord& r = out.record;
    r.name = name;
    r.path = final_path.string();
    r.source = fs::absolute(file).lexically_normal().string();
    r.rows = s.rows;
    r.tokens = s.tokens;
    r.created_at = utc_now_iso8601();
    r.stats = s.to_json();
    r.stats["tokenizer"] = tokenizer_label;
    r.stats["max_length"] = options.scan.max_length;
    r.stats["on_overflow"] = options.scan.on_overflow == OverflowPolicy::kTruncate ? "truncate" : "drop";
    ws.add_dataset(r, [&] {
      // Inside the write transaction, after the name was found free: no other process can be
      // placing a file under this name now.
      std::error_code rename_ec;
      fs::rename(tmp, final_path, rename_ec);
      QAFT_CHECK_HINT(!rename_ec, ErrorKind::kIo, "check the disk that holds the workspace", "cannot move {} to {}: {}",
                      tmp.string(), final_path.string(), rename_ec.message());
      placed = true;
    });
    return out;
  } catch (...) {
    fs::remove(tmp, ec);
    if (placed) fs::remove(final_path, ec);
    throw;
  }
}

}  // namespace qaft
