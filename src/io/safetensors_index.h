// Sharded safetensors checkpoints: model.safetensors.index.json, a multi-shard reader and writer.
//
// Large checkpoints (DeepSeek-V3: 163 shards) are split into several safetensors files plus an
// index, `{"metadata": {"total_size": N}, "weight_map": {tensor: shard file}}`, all in one
// directory (formats.md §3). ShardedCheckpoint gives one name -> tensor view over either layout
// (index + shards, or a lone model.safetensors), opening each shard once, on first use.
// ShardedWriter splits tensors into shards by a byte budget and writes the index last, so a crash
// never leaves an index that points at a shard not yet written.
#pragma once

#include "io/safetensors.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

inline constexpr const char* kSafetensorsIndexName = "model.safetensors.index.json";
inline constexpr const char* kSafetensorsSingleName = "model.safetensors";

// The content of model.safetensors.index.json.
struct SafetensorsIndex {
  std::optional<uint64_t> total_size;             // metadata.total_size; absent in some writers
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file (a bare file name)

  // Distinct shard file names, sorted.
  std::vector<std::string> shards() const;
};

// A shard name must be a bare file name: non-empty, no '/', not "." or "..", no NUL.
bool is_valid_shard_name(std::string_view name);

// Parses index JSON without touching the file system. `label` names the source in errors.
// Throws kInvalidFile on malformed JSON, duplicate keys, a missing or non-object weight_map, a
// non-string shard, an invalid shard name, or a metadata.total_size that is not a non-negative
// integer. `"metadata": {}` and a missing "metadata" are accepted.
SafetensorsIndex parse_safetensors_index(std::string_view json, const std::string& label);

// Reads `path`, parses it, and checks that every shard exists in the index's directory; one
// kInvalidFile error lists all missing shards. Throws kIo when the index cannot be read.
SafetensorsIndex read_safetensors_index(const std::string& path);

// Writes the index atomically (sorted, 2-space indented JSON). Throws kInvalidArgument for an
// invalid shard name, kIo when the file cannot be written.
void write_safetensors_index(const std::string& path, const SafetensorsIndex& index);

// Read access to a checkpoint directory. Thread-safe: lookups may race to open a shard.
class ShardedCheckpoint {
 public:
  // Opens `dir`/model.safetensors.index.json when present, else `dir`/model.safetensors.
  // Throws kIo when neither exists; the errors of read_safetensors_index / SafetensorsFile::open.
  static ShardedCheckpoint open(const std::string& dir);

  ShardedCheckpoint(ShardedCheckpoint&&) noexcept;
  ShardedCheckpoint& operator=(ShardedCheckpoint&&) noexcept;
  ~ShardedCheckpoint();

  const std::string& dir() const;
  // True for an index + shards, false for a lone model.safetensors.
  bool is_sharded() const;
  // All tensor names, sorted.
  const std::vector<std::string>& names() const;
  bool contains(std::string_view name) const;
  // The shard file holding `name` (a bare file name inside dir()).
  const std::string& shard_of(std::string_view name) const;

  // Lookups open the tensor's shard on first use and validate it (see SafetensorsFile::open);
  // a shard lacking a tensor the index assigns to it is kInvalidFile. A name not in the
  // checkpoint is kInvalidArgument. Returned references and views live as long as this object.
  const SafetensorsFile& file_of(std::string_view name) const;
  const TensorInfo& info(std::string_view name) const;
  Tensor tensor(std::string_view name) const;
  std::span<const uint8_t> bytes(std::string_view name) const;

  // Throws kInvalidFile listing every one of `names` the checkpoint lacks (none: no-op).
  void require(std::span<const std::string> names) const;
  // Opens and validates every shard now; warns when metadata.total_size disagrees with the data.
  void open_all() const;

 private:
  struct Impl;
  explicit ShardedCheckpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;  // state behind a pointer: holds a mutex, stays movable
};

// Writes a sharded checkpoint: tensors are assigned to shards greedily in insertion order, a new
// shard starting when the next tensor would push the current one past max_shard_bytes (a tensor
// larger than the budget gets a shard to itself). Nothing is copied: data must stay valid until
// write() returns. Metadata set here goes into every shard's "__metadata__" (HF transformers
// expects {"format": "pt"}; set it when the output is meant for it).
class ShardedWriter {
 public:
  explicit ShardedWriter(uint64_t max_shard_bytes);

  // Same contract as SafetensorsWriter::add (duplicate names across all shards are rejected).
  void add(std::string name, DType dtype, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  void add(std::string name, const Tensor& tensor);
  void set_metadata(std::string key, std::string value);

  // Tensor names per shard, in insertion order (what write() will produce).
  std::vector<std::vector<std::string>> plan() const;
  // File name of shard `index` (0-based) of `count`: shard_name(0, 3) is
  // "model-00001-of-00003.safetensors" (1-based, 5 digits, HF style).
  static std::string shard_name(size_t index, size_t count);
  // Writes every shard, then model.safetensors.index.json, each atomically, into the existing
  // directory `dir`. Returns the shard file names. Files from an earlier write with a different
  // shard count are left alone (the new index does not reference them).
  std::vector<std::string> write(const std::string& dir) const;

 private:
  struct Entry {
    std::string name;            // tensor name
    DType dtype;                 // element type
    std::vector<int64_t> shape;  // dimensions
    const void* data;            // caller-owned bytes
    size_t nbytes;               // byte count of data
  };
  uint64_t max_shard_bytes_;                     // shard budget
  std::vector<Entry> entries_;                   // insertion order
  SafetensorsWriter checker_;                    // validates every add() (names, sizes, dtypes)
  std::map<std::string, std::string> metadata_;  // copied into every shard
};

}  // namespace qaft
