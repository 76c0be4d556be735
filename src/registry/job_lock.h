// The lock that says "this job's process is alive": the process running a job holds an exclusive
// open-file-description lock (fcntl F_OFD_SETLK — flock-like: owned by the open file, released by
// the kernel when the process exits or is killed, even with kill -9) on <job dir>/lock for as long
// as it runs. Any process can test it without taking it (F_OFD_GETLK), so a "running" registry row
// whose lock is free belongs to a dead process: the job reads as interrupted. Unlike a pid check,
// this cannot be fooled by pid reuse.
#pragma once

#include <filesystem>
#include <optional>

namespace qaft {

class JobLock {
 public:
  // Takes the lock on `path` (creating the file), or returns nullopt when another process (or
  // another open of the file) holds it. Throws kIo when the file cannot be created or opened.
  static std::optional<JobLock> try_acquire(const std::filesystem::path& path);
  // True when some open file description holds a lock on `path`; takes nothing. False when the
  // file does not exist.
  static bool is_held(const std::filesystem::path& path);

  JobLock(JobLock&& other) noexcept;
  JobLock& operator=(JobLock&& other) noexcept;
  JobLock(const JobLock&) = delete;
  JobLock& operator=(const JobLock&) = delete;
  ~JobLock();  // releases the lock

 private:
  explicit JobLock(int fd) : fd_(fd) {}
  int fd_ = -1;  // the locked file (O_CLOEXEC: never inherited by a child process)
};

}  // namespace qaft
