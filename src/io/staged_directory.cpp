// A directory written as a whole or not at all (see staged_directory.h).
#include "io/staged_directory.h"

#include "core/error.h"
#include "core/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace fs = std::filesystem;

namespace qaft {
namespace {

// Best effort, as write_file_atomic: makes the renames durable.
void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

// A sibling of `target` named ".NAME.<what>.<pid>".
fs::path sibling(const fs::path& target, const char* what) {
  return target.parent_path() / ("." + target.filename().string() + "." + what + "." + std::to_string(::getpid()));
}

}  // namespace

StagedDirectory::StagedDirectory(std::string target, bool replace) : replace_(replace) {
  QAFT_CHECK_HINT(!target.empty(), ErrorKind::kInvalidArgument, "pass an output directory", "empty output directory");
  fs::path t = fs::absolute(fs::path(target)).lexically_normal();
  if (!t.has_filename()) t = t.parent_path();  // "out/" → "out"
  target_ = t.string();
  std::error_code ec;
  const fs::file_status st = fs::status(t, ec);
  if (fs::exists(st)) {
    QAFT_CHECK_HINT(fs::is_directory(st), ErrorKind::kInvalidArgument, "choose a directory path for the output",
                    "output {} exists and is not a directory", target_);
    QAFT_CHECK_HINT(replace || fs::is_empty(t, ec), ErrorKind::kInvalidArgument,
                    "choose another output directory, or pass --force to replace it",
                    "output directory {} exists and is not empty", target_);
  }
  fs::create_directories(t.parent_path(), ec);
  QAFT_CHECK_HINT(!ec, ErrorKind::kIo, "check that the parent directory can be created and written",
                  "cannot create {}: {}", t.parent_path().string(), ec.message());
  const fs::path s = sibling(t, "staging");
  fs::remove_all(s, ec);  // a leftover of a crashed run of this very pid
  fs::create_directory(s, ec);
  QAFT_CHECK_HINT(!ec, ErrorKind::kIo, "check that the output's parent directory is writable and has free space",
                  "cannot create the staging directory {}: {}", s.string(), ec.message());
  staging_ = s.string();
}

StagedDirectory::~StagedDirectory() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

void StagedDirectory::commit() {
  QAFT_CHECK_HINT(!committed_, ErrorKind::kInternal, "", "{} committed twice", target_);
  const fs::path t(target_);
  std::error_code ec;
  fs::path aside;
  if (fs::exists(t, ec)) {
    if (fs::is_empty(t, ec)) {
      fs::remove(t, ec);
    } else {
      QAFT_CHECK_HINT(replace_, ErrorKind::kInvalidArgument, "choose another output directory, or pass --force to replace it",
                      "output directory {} appeared while it was being written", target_);
      aside = sibling(t, "replaced");
      fs::remove_all(aside, ec);
      fs::rename(t, aside, ec);
      QAFT_CHECK_HINT(!ec, ErrorKind::kIo, "check the permissions of the output's parent directory",
                      "cannot move the existing {} aside: {}", target_, ec.message());
    }
  }
  fs::rename(staging_, t, ec);
  if (ec) {
    const std::string why = ec.message();
    if (!aside.empty()) fs::rename(aside, t, ec);  // put the old one back
    QAFT_FAIL(ErrorKind::kIo, "check the permissions of the output's parent directory", "cannot rename {} to {}: {}",
              staging_, target_, why);
  }
  committed_ = true;
  sync_directory(t.parent_path());
  if (!aside.empty()) {
    fs::remove_all(aside, ec);
    if (ec) QAFT_LOG(kWarn, "the replaced output was left at {}: {}", aside.string(), ec.message());
  }
}

}  // namespace qaft
