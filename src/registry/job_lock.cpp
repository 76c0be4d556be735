#include "registry/job_lock.h"

#include "core/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace qaft {

namespace {

struct flock whole_file(short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // to the end, however long
  fl.l_pid = 0;  // required by the OFD commands
  return fl;
}

}  // namespace

std::optional<JobLock> JobLock::try_acquire(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  QAFT_CHECK_HINT(fd >= 0, ErrorKind::kIo, "check that the workspace is writable", "cannot open the job lock {}: {}",
                  path.string(), std::strerror(errno));
  struct flock fl = whole_file(F_WRLCK);
  if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return JobLock(fd);
  const int err = errno;
  ::close(fd);
  QAFT_CHECK_HINT(err == EAGAIN || err == EACCES, ErrorKind::kIo, "", "cannot lock {}: {}", path.string(),
                  std::strerror(err));
  return std::nullopt;
}

bool JobLock::is_held(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock fl = whole_file(F_WRLCK);
  const int rc = ::fcntl(fd, F_OFD_GETLK, &fl);
  ::close(fd);
  return rc == 0 && fl.l_type != F_UNLCK;
}

JobLock::JobLock(JobLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

JobLock& JobLock::operator=(JobLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

JobLock::~JobLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace qaft
