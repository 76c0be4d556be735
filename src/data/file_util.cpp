// read_file / write_file_atomic (see file_util.h).
#include "data/file_util.h"

#include "core/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace qaft::data {

std::string read_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    QAFT_FAIL(ErrorKind::kIo, "check the path and its permissions", "cannot open {}: {}",
              path.string(), std::strerror(err));
  }
  std::string out;
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      QAFT_FAIL(ErrorKind::kIo, "", "cannot read {}: {}", path.string(), std::strerror(err));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
  const std::string tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    QAFT_FAIL(ErrorKind::kIo, "check that the output directory exists and is writable",
              "cannot create {}: {}", tmp, std::strerror(err));
  }
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    QAFT_FAIL(ErrorKind::kIo, "check the free space and permissions of the output directory",
              "cannot {} {}: {}", what, tmp, std::strerror(err));
  };
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    QAFT_FAIL(ErrorKind::kIo, "", "cannot close {}: {}", tmp, std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    QAFT_FAIL(ErrorKind::kIo, "", "cannot rename {} to {}: {}", tmp, path.string(), std::strerror(err));
  }
}

}  // namespace qaft::data
