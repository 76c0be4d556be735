// safetensors files: a strict, zero-copy reader over mmap and an atomic, deterministic writer.
//
// Checkpoints (DeepSeek-V3 FP8 weights, LoRA adapters, our own training state) arrive as
// safetensors: u64 little-endian header length N, N bytes of UTF-8 JSON, then one byte buffer
// (layout notes: /work/shared/spec/formats.md §3). Files come from the network and from other
// tools, so the reader validates everything before exposing a single tensor: a file that opens
// is structurally sound, and every tensor's bytes lie inside the mapping. Every problem is a
// qaft::Error naming the file and the tensor or field at fault.
//
// Read-only: tensors are views into a MAP_PRIVATE, PROT_READ mapping; writing through them
// crashes (SIGSEGV). Truncating a file while it is mapped makes reads SIGBUS — do not rewrite a
// checkpoint in place while it is open (SafetensorsWriter never does: it renames a new file over).
//
// Alignment: the format does not promise it. Files from this writer and from the reference Rust
// writer pad the header to a multiple of 8 and order tensors by descending element size, so every
// tensor is naturally aligned; files from other writers may not be. tensor() checks and refuses a
// misaligned view (kUnsupported); bytes() always works and is what a copying loader should use.
#pragma once

#include "core/dtype.h"
#include "core/tensor.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qaft {

// The safetensors dtype string for a qaft dtype ("F8_E4M3", "BF16", ...). Throws kUnsupported for
// dtypes the format cannot express (NF4, E5M6).
std::string_view safetensors_dtype_string(DType dtype);

// The qaft dtype for a safetensors dtype string. `tensor` and `file` only feed the error message.
// Throws kUnsupported for strings that are valid in the format but have no qaft dtype (F4, F6_*,
// *_FNUZ, U16, U32, U64, C64) and kInvalidFile ("unknown dtype") for anything else.
DType safetensors_dtype_from_string(std::string_view dtype, std::string_view tensor,
                                    std::string_view file);

// The header's description of one tensor, validated.
struct TensorInfo {
  std::string name;            // key in the header
  DType dtype = DType::kF32;   // element type
  std::vector<int64_t> shape;  // dimensions, outermost first; empty for a 0-rank scalar
  uint64_t data_offset = 0;    // data_offsets[0]: bytes from the start of the data buffer
  uint64_t file_offset = 0;    // the same position counted from the start of the file
  uint64_t nbytes = 0;         // data_offsets[1] - data_offsets[0] == numel * element size

  int64_t numel() const;  // product of shape (1 for a scalar); validated not to overflow
};

class SafetensorsFile {
 public:
  // Largest header the reader accepts (the reference implementation's MAX_HEADER_SIZE).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  // Maps `path` read-only and validates it. Throws kIo when the file cannot be opened or mapped,
  // kInvalidFile when it is malformed, kUnsupported when it is valid but holds a dtype qaft lacks.
  static SafetensorsFile open(const std::string& path);

  // Validates an in-memory image of a file, exactly as open() does. Nothing is copied: `bytes`
  // must outlive the returned object and every view taken from it. `label` stands in for the path
  // in error messages.
  static SafetensorsFile parse(std::span<const uint8_t> bytes, std::string label = "<memory>");

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  // Tensor names in data order (ascending data offset; ties by name).
  const std::vector<std::string>& names() const { return names_; }
  // Every tensor's info, in the same order as names().
  const std::vector<TensorInfo>& infos() const { return infos_; }
  size_t size() const { return infos_.size(); }
  bool contains(std::string_view name) const;
  // Throws kInvalidArgument naming the file when `name` is absent.
  const TensorInfo& info(std::string_view name) const;
  // A read-only CPU view of the tensor's data (see the file comment). Throws kUnsupported when the
  // rank exceeds kMaxDims or the data is not aligned to the element size.
  Tensor tensor(std::string_view name) const;
  // The tensor's raw little-endian bytes; no alignment guarantee.
  std::span<const uint8_t> bytes(std::string_view name) const;
  // Whether the tensor's data address is a multiple of its element size (what tensor() needs).
  bool is_aligned(std::string_view name) const;

  // The optional "__metadata__" object (string -> string); empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The path given to open(), or parse()'s label.
  const std::string& path() const { return path_; }
  // Bytes of the JSON header, padding included (the N of the format).
  uint64_t header_bytes() const { return header_bytes_; }
  // Bytes of the whole file: 8 + header_bytes() + the data buffer.
  uint64_t file_bytes() const { return file_bytes_; }

 private:
  struct Storage;
  SafetensorsFile() = default;
  void validate();  // fills the members below from storage_, throwing on any problem
  size_t index_of(std::string_view name) const;

  std::unique_ptr<Storage> storage_;  // the bytes (an owned mmap, or borrowed memory)
  std::string path_;                  // file path or label, for messages
  uint64_t header_bytes_ = 0;         // N
  uint64_t file_bytes_ = 0;           // total bytes
  std::vector<TensorInfo> infos_;     // in data order
  std::vector<std::string> names_;    // infos_[i].name
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in infos_
  std::map<std::string, std::string> metadata_;       // "__metadata__"
};

// Builds a safetensors file from tensors that live elsewhere. Nothing is copied: every data
// pointer passed to add() must stay valid until write()/serialize() returns.
//
// Output is deterministic: "__metadata__" first, then tensors sorted by descending element size,
// then by name; data in the same order (so every tensor is naturally aligned); header padded with
// spaces so that 8 + N is a multiple of 8.
class SafetensorsWriter {
 public:
  // Throws kInvalidArgument for an empty name, "__metadata__", a name already added, invalid
  // UTF-8, a negative dimension, or nbytes != numel * element size; kUnsupported for a dtype the
  // format cannot express.
  void add(std::string name, DType dtype, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  void add(std::string name, DType dtype, std::vector<int64_t> shape,
           std::span<const uint8_t> bytes);
  // A contiguous CPU tensor.
  void add(std::string name, const Tensor& tensor);
  // One "__metadata__" entry; a later call with the same key replaces the value.
  void set_metadata(std::string key, std::string value);

  size_t size() const { return entries_.size(); }
  bool contains(std::string_view name) const;
  // Sum of all tensors' bytes.
  uint64_t data_bytes() const { return data_bytes_; }

  // The whole file in memory (tests, fuzz corpora, small files). Throws kInvalidArgument when
  // the header would exceed SafetensorsFile::kMaxHeaderBytes (readers would refuse the file).
  std::vector<uint8_t> serialize() const;
  // Writes atomically: `path + ".tmp.<pid>"`, fsync, rename. Throws kIo (with the errno text) on
  // failure, leaving `path` as it was and no temporary behind; kInvalidArgument as serialize().
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;            // tensor name
    DType dtype;                 // element type
    std::vector<int64_t> shape;  // dimensions
    const uint8_t* data;         // caller-owned bytes
    size_t nbytes;               // byte count of data
  };
  // The "8-byte length + padded JSON" prefix, and the entries in file order.
  std::vector<uint8_t> header(std::vector<const Entry*>& order) const;

  std::vector<Entry> entries_;                        // in add() order
  std::map<std::string, size_t, std::less<>> names_;  // name -> position in entries_
  std::map<std::string, std::string> metadata_;       // "__metadata__"
  uint64_t data_bytes_ = 0;                           // sum of nbytes
};

}  // namespace qaft
