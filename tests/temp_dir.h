// TempDir — a fresh, uniquely named directory under the system temp dir, removed with its
// contents when the object goes out of scope. For tests that write files (checkpoints, indexes).
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

namespace qaft::test {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("qaft_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // path()/name as a string.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;  // the directory (absolute)
};

}  // namespace qaft::test
