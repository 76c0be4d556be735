// Whole-file reads and atomic writes for the data layer (tokenizer files, trained vocabularies).
//
// The data layer sits above io/ in docs/architecture.md, so it carries these two small helpers
// itself rather than depending on io/atomic_file.h.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace qaft::data {

// The file's bytes. Throws kIo naming the path and the OS error when it cannot be read.
std::string read_file(const std::filesystem::path& path);

// Writes `text` to `path + ".tmp.<pid>"`, fsyncs it and renames it over `path`, so that readers see
// the old file or the complete new one. Throws kIo (the temporary is removed) on any failure.
void write_file_atomic(const std::filesystem::path& path, std::string_view text);

}  // namespace qaft::data
