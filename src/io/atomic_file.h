// Atomic file replacement: write to a temporary sibling, fsync, rename over the destination.
//
// Checkpoints are large and written while training runs; a crash or a full disk must never leave
// a half-written file under the real name. Readers see either the old file or the complete new
// one. The temporary is `path + ".tmp.<pid>"` in the same directory (rename is atomic only within
// one file system) and is removed on every failure.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace qaft {

// Writes the concatenation of `pieces` to `path` atomically. Throws kIo (with the errno text and
// the path) when the temporary cannot be created, written, synced or renamed; the destination is
// then untouched and the temporary is gone.
void write_file_atomic(const std::string& path, std::span<const std::span<const uint8_t>> pieces);

// Convenience for one piece of text (JSON indexes).
void write_file_atomic(const std::string& path, std::string_view text);

}  // namespace qaft
