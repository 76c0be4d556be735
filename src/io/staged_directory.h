// A directory written as a whole or not at all: files go into a hidden staging sibling
// (".NAME.staging.<pid>" next to NAME), and commit() renames it to NAME. A crash or an error before
// commit() leaves NAME as it was (absent, empty, or — with replace — the previous content); the
// destructor removes an uncommitted staging directory. Files inside are written with
// write_file_atomic as usual (io/atomic_file.h); this adds the all-or-nothing for the directory.
//
//   StagedDirectory out("exports/my-model", /*replace=*/false);   // refuses a non-empty one
//   write_file_atomic(out.path() + "/config.json", json);
//   out.commit();                                                   // exports/my-model appears
#pragma once

#include <string>

namespace qaft {

class StagedDirectory {
 public:
  // Checks `target` and creates the staging directory (and target's parent directories).
  // Throws kInvalidArgument when target is a file, or a non-empty directory and !replace (naming it,
  // with the hint to pass --force or choose another directory); kIo when a directory cannot be made.
  StagedDirectory(std::string target, bool replace);
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  const std::string& target() const { return target_; }
  // The staging directory to write into (absolute).
  const std::string& path() const { return staging_; }

  // Makes the staged content the target: an empty target is removed, a non-empty one (replace) is
  // renamed aside and removed after the new one is in place; the parent directory is fsynced.
  // Throws kIo naming the path when a rename fails (the target is then as before).
  void commit();

 private:
  std::string target_;   // absolute, normalized
  std::string staging_;  // absolute
  bool replace_ = false;
  bool committed_ = false;
};

}  // namespace qaft
