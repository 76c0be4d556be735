// Atomic file replacement (see atomic_file.h): tmp file + write loop + fsync + rename + dir fsync.
#include "io/atomic_file.h"

#include "core/error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

namespace qaft {
namespace {

constexpr const char* kHint = "check that the directory exists, is writable and has free space";

// Closes the descriptor and unlinks the temporary unless release() was called.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string tmp_path) : tmp_path_(std::move(tmp_path)) {}
  ~TempFileGuard() {
    if (fd_ >= 0) ::close(fd_);
    if (armed_) ::unlink(tmp_path_.c_str());
  }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

  void set_fd(int fd) { fd_ = fd; }
  // Closes now, reporting the error (close can surface a deferred write error on NFS).
  int close_fd() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void release() { armed_ = false; }

 private:
  std::string tmp_path_;  // the temporary to remove on failure
  int fd_ = -1;           // open descriptor of the temporary, -1 once closed
  bool armed_ = true;     // false once renamed into place
};

[[noreturn]] void fail_io(const std::string& what, const std::string& path, int err) {
  QAFT_FAIL(ErrorKind::kIo, kHint, "{} {}: {}", what, path, std::strerror(err));
}

// Best effort: makes the rename itself durable. Failure is not reported (some file systems
// refuse fsync on directories) because the data is already safely in place.
void sync_parent_directory(const std::string& path) {
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomic(const std::string& path, std::span<const std::span<const uint8_t>> pieces) {
  QAFT_CHECK(!path.empty(), "write_file_atomic: empty path");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  TempFileGuard guard(tmp);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    guard.release();  // nothing was created
    fail_io("cannot create", tmp, errno);
  }
  guard.set_fd(fd);

  constexpr size_t kMaxChunk = size_t{1} << 30;  // Linux caps one write() at ~2 GiB
  for (auto piece : pieces) {
    const uint8_t* p = piece.data();
    size_t left = piece.size();
    while (left > 0) {
      ssize_t n = ::write(fd, p, std::min(left, kMaxChunk));
      if (n < 0) {
        if (errno == EINTR) continue;
        fail_io("cannot write", tmp, errno);
      }
      if (n == 0) fail_io("cannot write", tmp, ENOSPC);
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  if (::fsync(fd) != 0) fail_io("cannot fsync", tmp, errno);
  if (guard.close_fd() != 0) fail_io("cannot close", tmp, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    QAFT_FAIL(ErrorKind::kIo, kHint, "cannot rename {} to {}: {}", tmp, path, std::strerror(err));
  }
  guard.release();
  sync_parent_directory(path);
}

void write_file_atomic(const std::string& path, std::string_view text) {
  std::span<const uint8_t> piece(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  write_file_atomic(path, std::span<const std::span<const uint8_t>>(&piece, 1));
}

}  // namespace qaft
