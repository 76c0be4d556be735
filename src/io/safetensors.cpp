// safetensors reader (strict validation over mmap) and writer (deterministic, atomic).
// Format rules follow the reference implementation (huggingface/safetensors tensor.rs); see the
// notes in /work/shared/spec/formats.md §3 and the contract in safetensors.h.
#include "io/safetensors.h"

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_strict.h"

#include <fmt/ranges.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

namespace qaft {
namespace {

constexpr const char* kBadFileHint =
    "the file is corrupt, truncated or not a safetensors file; re-download or re-export it";
constexpr const char* kUnsupportedHint =
    "convert the tensor to a supported dtype (F32, BF16, F16, F8_E4M3, F8_E5M2, F8_E8M0, F64, "
    "I8..I64, U8, BOOL) before loading";

// One dtype string of the format.
struct FormatDType {
  std::string_view name;      // as written in headers
  int bits;                   // storage bits per element
  std::optional<DType> qaft;  // our dtype; nullopt = valid in the format but unsupported here
};

constexpr std::array<FormatDType, 22> kFormatDTypes = {{
    {"BOOL", 8, DType::kBool},
    {"F4", 4, std::nullopt},
    {"F6_E2M3", 6, std::nullopt},
    {"F6_E3M2", 6, std::nullopt},
    {"U8", 8, DType::kU8},
    {"I8", 8, DType::kI8},
    {"F8_E5M2", 8, DType::kE5M2},
    {"F8_E4M3", 8, DType::kE4M3},
    {"F8_E8M0", 8, DType::kE8M0},
    {"F8_E4M3FNUZ", 8, std::nullopt},
    {"F8_E5M2FNUZ", 8, std::nullopt},
    {"I16", 16, DType::kI16},
    {"U16", 16, std::nullopt},
    {"F16", 16, DType::kF16},
    {"BF16", 16, DType::kBF16},
    {"I32", 32, DType::kI32},
    {"U32", 32, std::nullopt},
    {"F32", 32, DType::kF32},
    {"C64", 64, std::nullopt},
    {"F64", 64, DType::kF64},
    {"I64", 64, DType::kI64},
    {"U64", 64, std::nullopt},
}};

const FormatDType* find_format_dtype(std::string_view s) {
  for (const auto& d : kFormatDTypes)
    if (d.name == s) return &d;
  return nullptr;
}

// A name for messages: quoted, and cut short if a hostile file made it huge.
std::string quote_name(std::string_view s) {
  constexpr size_t kMax = 200;
  if (s.size() <= kMax) return fmt::format("\"{}\"", s);
  return fmt::format("\"{}...\" ({} bytes)", s.substr(0, kMax), s.size());
}

// A JSON string literal (quoted and escaped); `s` must be valid UTF-8.
std::string json_string(const std::string& s) { return nlohmann::json(s).dump(); }

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A non-negative JSON integer that fits in uint64 (nlohmann stores "-0" as a signed 0).
std::optional<uint64_t> as_u64(const nlohmann::json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0)
    return static_cast<uint64_t>(j.get<int64_t>());
  return std::nullopt;
}

// Element count of a shape; nullopt when the product of the non-zero dimensions exceeds int64
// (so that no partial product anywhere downstream can overflow either).
std::optional<int64_t> checked_numel(std::span<const int64_t> shape) {
  bool zero = false;
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d == 0) {
      zero = true;
      continue;
    }
    if (n > std::numeric_limits<int64_t>::max() / d) return std::nullopt;
    n *= d;
  }
  return zero ? 0 : n;
}

}  // namespace

std::string_view safetensors_dtype_string(DType dtype) {
  for (const auto& d : kFormatDTypes)
    if (d.qaft == dtype) return d.name;
  QAFT_FAIL(ErrorKind::kUnsupported, "convert the tensor to a dtype safetensors can store",
            "dtype {} has no safetensors representation", dtype_name(dtype));
}

DType safetensors_dtype_from_string(std::string_view dtype, std::string_view tensor,
                                    std::string_view file) {
  const FormatDType* d = find_format_dtype(dtype);
  QAFT_CHECK_HINT(d != nullptr, ErrorKind::kInvalidFile, kBadFileHint,
                  "{}: tensor {}: unknown dtype {}", file, quote_name(tensor), quote_name(dtype));
  QAFT_CHECK_HINT(d->qaft.has_value(), ErrorKind::kUnsupported, kUnsupportedHint,
                  "{}: tensor {} has dtype {}, which qaft does not support", file,
                  quote_name(tensor), d->name);
  return *d->qaft;
}

int64_t TensorInfo::numel() const { return checked_numel(shape).value_or(0); }

// ------------------------------------------------------------------------------------------------
// Reader

struct SafetensorsFile::Storage {
  const uint8_t* base = nullptr;  // first byte of the file image
  size_t size = 0;                // bytes in the image
  bool owns_mapping = false;      // munmap on destruction (open()) or borrowed (parse())

  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (owns_mapping && base) ::munmap(const_cast<uint8_t*>(base), size);
  }
};

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.storage_ = std::make_unique<Storage>();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    QAFT_FAIL(ErrorKind::kIo, "check the path and its permissions", "cannot open {}: {}", path,
              std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    QAFT_FAIL(ErrorKind::kIo, "", "cannot stat {}: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    QAFT_FAIL(ErrorKind::kIo, "pass the path of a .safetensors file", "{} is not a regular file",
              path);
  }
  const auto size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    QAFT_FAIL(ErrorKind::kInvalidFile, kBadFileHint,
              "{}: file is only {} bytes; a safetensors file starts with an 8-byte header length",
              path, size);
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED)
    QAFT_FAIL(ErrorKind::kIo, "", "cannot mmap {} ({} bytes): {}", path, size, std::strerror(err));
  f.storage_->base = static_cast<const uint8_t*>(p);
  f.storage_->size = size;
  f.storage_->owns_mapping = true;
  f.validate();
  return f;
}

SafetensorsFile SafetensorsFile::parse(std::span<const uint8_t> bytes, std::string label) {
  SafetensorsFile f;
  f.path_ = std::move(label);
  f.storage_ = std::make_unique<Storage>();
  f.storage_->base = bytes.data();
  f.storage_->size = bytes.size();
  f.validate();
  return f;
}

void SafetensorsFile::validate() {
  const uint8_t* base = storage_->base;
  const uint64_t size = storage_->size;
  const std::string& file = path_;
  file_bytes_ = size;

  // --- framing: length prefix and header bounds
  QAFT_CHECK_HINT(size >= 8, ErrorKind::kInvalidFile, kBadFileHint,
                  "{}: file is only {} bytes; a safetensors file starts with an 8-byte header "
                  "length",
                  file, size);
  const uint64_t n = read_le64(base);
  QAFT_CHECK_HINT(n <= kMaxHeaderBytes, ErrorKind::kInvalidFile, kBadFileHint,
                  "{}: header length {} exceeds the limit of {} bytes", file, n, kMaxHeaderBytes);
  QAFT_CHECK_HINT(8 + n <= size, ErrorKind::kInvalidFile, kBadFileHint,
                  "{}: header length {} runs past the end of the file ({} bytes): truncated file",
                  file, n, size);
  header_bytes_ = n;
  QAFT_CHECK_HINT(n > 0 && base[8] == '{', ErrorKind::kInvalidFile, kBadFileHint,
                  "{}: header does not start with '{{'", file);
  const std::string_view text(reinterpret_cast<const char*>(base + 8), n);
  // Depth 3 = root object > tensor entry > shape array; anything deeper is invalid anyway.
  const nlohmann::json header = parse_json_strict(text, file + " header", 3);
  QAFT_CHECK_HINT(header.is_object(), ErrorKind::kInvalidFile, kBadFileHint,
                  "{}: header is a JSON {}, not an object", file, header.type_name());

  // --- entries
  struct Pending {
    size_t info;               // index into infos_
    uint64_t begin;            // data_offsets[0]
    uint64_t end;              // data_offsets[1]
    const FormatDType* dtype;  // format dtype (maybe unsupported)
  };
  std::vector<Pending> pending;
  infos_.clear();
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      QAFT_CHECK_HINT(value.is_object(), ErrorKind::kInvalidFile, kBadFileHint,
                      "{}: \"__metadata__\" must be an object of strings, not a JSON {}", file,
                      value.type_name());
      for (const auto& [mk, mv] : value.items()) {
        QAFT_CHECK_HINT(mv.is_string(), ErrorKind::kInvalidFile, kBadFileHint,
                        "{}: \"__metadata__\" value for key {} must be a string, not a JSON {}",
                        file, quote_name(mk), mv.type_name());
        metadata_.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    const std::string where = fmt::format("{}: tensor {}", file, quote_name(key));
    QAFT_CHECK_HINT(value.is_object(), ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: entry must be an object with dtype, shape and data_offsets, not a JSON {}",
                    where, value.type_name());
    for (const auto& [field, unused] : value.items()) {
      (void)unused;
      QAFT_CHECK_HINT(field == "dtype" || field == "shape" || field == "data_offsets",
                      ErrorKind::kInvalidFile, kBadFileHint,
                      "{}: unexpected field {} (allowed: dtype, shape, data_offsets)", where,
                      quote_name(field));
    }
    for (const char* field : {"dtype", "shape", "data_offsets"})
      QAFT_CHECK_HINT(value.contains(field), ErrorKind::kInvalidFile, kBadFileHint,
                      "{}: missing field \"{}\"", where, field);

    const auto& jdtype = value["dtype"];
    QAFT_CHECK_HINT(jdtype.is_string(), ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: field \"dtype\" must be a string, not a JSON {}", where,
                    jdtype.type_name());
    const auto& dtype_str = jdtype.get_ref<const std::string&>();
    const FormatDType* fdt = find_format_dtype(dtype_str);
    QAFT_CHECK_HINT(fdt != nullptr, ErrorKind::kInvalidFile, kBadFileHint, "{}: unknown dtype {}",
                    where, quote_name(dtype_str));

    const auto& jshape = value["shape"];
    QAFT_CHECK_HINT(jshape.is_array(), ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: field \"shape\" must be an array of non-negative integers, not a JSON {}",
                    where, jshape.type_name());
    TensorInfo info;
    info.name = key;
    info.shape.reserve(jshape.size());
    for (const auto& d : jshape) {
      auto v = as_u64(d);
      QAFT_CHECK_HINT(v && *v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                      ErrorKind::kInvalidFile, kBadFileHint,
                      "{}: field \"shape\" holds {}, not a non-negative integer below 2^63", where,
                      d.dump());
      info.shape.push_back(static_cast<int64_t>(*v));
    }
    auto numel = checked_numel(info.shape);
    QAFT_CHECK_HINT(numel.has_value(), ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: element count of shape {} overflows", where, jshape.dump());

    const auto& joff = value["data_offsets"];
    QAFT_CHECK_HINT(
        joff.is_array() && joff.size() == 2, ErrorKind::kInvalidFile, kBadFileHint,
        "{}: field \"data_offsets\" must be an array [begin, end], not {}", where,
        joff.is_array() ? fmt::format("an array of {}", joff.size()) : joff.type_name());
    auto begin = as_u64(joff[0]);
    auto end = as_u64(joff[1]);
    QAFT_CHECK_HINT(begin && end, ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: field \"data_offsets\" {} must hold two non-negative integers", where,
                    joff.dump());
    QAFT_CHECK_HINT(*begin <= *end, ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: data_offsets begin {} > end {}", where, *begin, *end);

    // (end - begin) * 8 == numel * bits, and the bit count must be whole bytes.
    const auto un = static_cast<uint64_t>(*numel);
    const auto bits = static_cast<uint64_t>(fdt->bits);
    QAFT_CHECK_HINT(un <= std::numeric_limits<uint64_t>::max() / bits, ErrorKind::kInvalidFile,
                    kBadFileHint, "{}: shape {} is too large for dtype {}", where, jshape.dump(),
                    fdt->name);
    QAFT_CHECK_HINT(un * bits % 8 == 0, ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: {} elements of {} ({} bits each) are not a whole number of bytes", where,
                    un, fdt->name, bits);
    const uint64_t expected = un * bits / 8;
    QAFT_CHECK_HINT(*end - *begin == expected, ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: data_offsets [{}, {}] span {} bytes but shape {} of {} needs {} bytes "
                    "(size != numel * element size)",
                    where, *begin, *end, *end - *begin, jshape.dump(), fdt->name, expected);

    info.dtype = fdt->qaft.value_or(DType::kU8);  // placeholder; unsupported ones throw below
    info.data_offset = *begin;
    info.file_offset = 8 + n + *begin;
    info.nbytes = expected;
    pending.push_back({infos_.size(), *begin, *end, fdt});
    infos_.push_back(std::move(info));
  }

  // --- the buffer: entries sorted by offset must tile [0, buffer) exactly
  const uint64_t buffer = size - 8 - n;
  std::sort(pending.begin(), pending.end(), [&](const Pending& a, const Pending& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return infos_[a.info].name < infos_[b.info].name;
  });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const auto& p : pending) {
    const std::string& name = infos_[p.info].name;
    QAFT_CHECK_HINT(p.begin <= covered, ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: hole of {} bytes in the data buffer before tensor {} (offset {})", file,
                    p.begin - covered, quote_name(name), p.begin);
    QAFT_CHECK_HINT(p.begin == covered, ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: tensor {} at data_offsets [{}, {}] overlaps tensor {}, which ends at {}",
                    file, quote_name(name), p.begin, p.end, previous ? quote_name(*previous) : "?",
                    covered);
    QAFT_CHECK_HINT(p.end <= buffer, ErrorKind::kInvalidFile, kBadFileHint,
                    "{}: tensor {} ends at data offset {} but the data buffer has only {} bytes: "
                    "truncated file",
                    file, quote_name(name), p.end, buffer);
    covered = p.end;
    previous = &name;
  }
  QAFT_CHECK_HINT(covered == buffer, ErrorKind::kInvalidFile, kBadFileHint,
                  "{}: data buffer has {} bytes but the tensors cover only {}: {} trailing bytes "
                  "belong to no tensor (8 + header {} + buffer must equal the file size)",
                  file, buffer, covered, buffer - covered, n);

  // --- structurally sound; now refuse what we cannot represent
  for (const auto& p : pending)
    QAFT_CHECK_HINT(p.dtype->qaft.has_value(), ErrorKind::kUnsupported, kUnsupportedHint,
                    "{}: tensor {} has dtype {}, which qaft does not support", file,
                    quote_name(infos_[p.info].name), p.dtype->name);

  // --- publish in data order
  std::vector<TensorInfo> ordered;
  ordered.reserve(pending.size());
  for (const auto& p : pending) ordered.push_back(std::move(infos_[p.info]));
  infos_ = std::move(ordered);
  names_.clear();
  index_.clear();
  for (size_t i = 0; i < infos_.size(); ++i) {
    names_.push_back(infos_[i].name);
    index_.emplace(infos_[i].name, i);
  }
}

size_t SafetensorsFile::index_of(std::string_view name) const {
  auto it = index_.find(name);
  QAFT_CHECK_HINT(it != index_.end(), ErrorKind::kInvalidArgument,
                  "list the file's tensors with names()", "{}: no tensor named {}", path_,
                  quote_name(name));
  return it->second;
}

bool SafetensorsFile::contains(std::string_view name) const { return index_.contains(name); }

const TensorInfo& SafetensorsFile::info(std::string_view name) const {
  return infos_[index_of(name)];
}

std::span<const uint8_t> SafetensorsFile::bytes(std::string_view name) const {
  const TensorInfo& i = info(name);
  return {storage_->base + i.file_offset, static_cast<size_t>(i.nbytes)};
}

bool SafetensorsFile::is_aligned(std::string_view name) const {
  const TensorInfo& i = info(name);
  const auto element = static_cast<uintptr_t>(std::max(1, dtype_bits(i.dtype) / 8));
  return reinterpret_cast<uintptr_t>(storage_->base + i.file_offset) % element == 0;
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  const TensorInfo& i = info(name);
  QAFT_CHECK_HINT(i.shape.size() <= static_cast<size_t>(kMaxDims), ErrorKind::kUnsupported,
                  "use bytes() for the raw data",
                  "{}: tensor {} has rank {}; qaft tensors have at most {} dimensions", path_,
                  quote_name(name), i.shape.size(), kMaxDims);
  QAFT_CHECK_HINT(is_aligned(name), ErrorKind::kUnsupported,
                  "copy bytes() into aligned memory, or re-save the file with an aligning writer",
                  "{}: tensor {} ({}) is not aligned to its {}-byte element size in the file",
                  path_, quote_name(name), dtype_name(i.dtype), dtype_bits(i.dtype) / 8);
  Shape shape;
  shape.rank = static_cast<int>(i.shape.size());
  for (size_t d = 0; d < i.shape.size(); ++d) shape.dims[d] = i.shape[d];
  // The mapping is PROT_READ: the const_cast only satisfies Tensor's signature (see the header).
  return Tensor(const_cast<uint8_t*>(storage_->base + i.file_offset), i.dtype, shape);
}

// ------------------------------------------------------------------------------------------------
// Writer

void SafetensorsWriter::add(std::string name, DType dtype, std::vector<int64_t> shape,
                            const void* data, size_t nbytes) {
  QAFT_CHECK(!name.empty(), "safetensors: tensor name must not be empty");
  QAFT_CHECK(name != "__metadata__",
             "safetensors: \"__metadata__\" is reserved, not a tensor name");
  QAFT_CHECK(is_valid_utf8(name), "safetensors: tensor name {} is not valid UTF-8",
             quote_name(name));
  QAFT_CHECK(!names_.contains(name), "safetensors: tensor {} added twice", quote_name(name));
  (void)safetensors_dtype_string(dtype);  // throws kUnsupported for NF4 / E5M6
  for (int64_t d : shape)
    QAFT_CHECK(d >= 0, "safetensors: tensor {} has negative dimension {}", quote_name(name), d);
  auto numel = checked_numel(shape);
  QAFT_CHECK(numel.has_value(), "safetensors: tensor {}: element count overflows",
             quote_name(name));
  const size_t expected = dtype_bytes(dtype, static_cast<size_t>(*numel));
  QAFT_CHECK(nbytes == expected,
             "safetensors: tensor {} ({} of {} elements) needs {} bytes, got {}", quote_name(name),
             dtype_name(dtype), *numel, expected, nbytes);
  QAFT_CHECK(data != nullptr || nbytes == 0, "safetensors: tensor {} has null data",
             quote_name(name));
  names_.emplace(name, entries_.size());
  entries_.push_back(
      {std::move(name), dtype, std::move(shape), static_cast<const uint8_t*>(data), nbytes});
  data_bytes_ += nbytes;
}

void SafetensorsWriter::add(std::string name, DType dtype, std::vector<int64_t> shape,
                            std::span<const uint8_t> bytes) {
  add(std::move(name), dtype, std::move(shape), bytes.data(), bytes.size());
}

void SafetensorsWriter::add(std::string name, const Tensor& tensor) {
  QAFT_CHECK(tensor.device() == Device::kCpu, "safetensors: tensor {} is not on the CPU",
             quote_name(name));
  QAFT_CHECK(tensor.is_contiguous(), "safetensors: tensor {} is not contiguous", quote_name(name));
  std::vector<int64_t> shape(tensor.shape().dims.begin(),
                             tensor.shape().dims.begin() + tensor.rank());
  add(std::move(name), tensor.dtype(), std::move(shape), tensor.raw(), tensor.nbytes());
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  QAFT_CHECK(is_valid_utf8(key) && is_valid_utf8(value),
             "safetensors: metadata key {} or its value is not valid UTF-8", quote_name(key));
  metadata_[std::move(key)] = std::move(value);
}

bool SafetensorsWriter::contains(std::string_view name) const { return names_.contains(name); }

std::vector<uint8_t> SafetensorsWriter::header(std::vector<const Entry*>& order) const {
  order.clear();
  for (const auto& e : entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    int ba = dtype_bits(a->dtype), bb = dtype_bits(b->dtype);
    if (ba != bb) return ba > bb;
    return a->name < b->name;
  });
  // Built by hand: nlohmann::ordered_json looks keys up linearly, quadratic for 100k tensors.
  std::string text = "{";
  if (!metadata_.empty()) {
    text += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata_) {
      if (!first) text += ',';
      first = false;
      text += json_string(k) + ':' + json_string(v);
    }
    text += '}';
  }
  uint64_t offset = 0;
  for (const Entry* e : order) {
    if (text.size() > 1) text += ',';
    text += json_string(e->name);
    text += fmt::format(R"(:{{"dtype":"{}","shape":[{}],"data_offsets":[{},{}]}})",
                        safetensors_dtype_string(e->dtype), fmt::join(e->shape, ","), offset,
                        offset + e->nbytes);
    offset += e->nbytes;
  }
  text += '}';
  QAFT_CHECK(text.size() <= SafetensorsFile::kMaxHeaderBytes,
             "safetensors: header of {} bytes exceeds the format's limit of {}", text.size(),
             SafetensorsFile::kMaxHeaderBytes);
  text.append((8 - text.size() % 8) % 8, ' ');  // 8 + N stays a multiple of 8
  std::vector<uint8_t> out(8 + text.size());
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  return out;
}

std::vector<uint8_t> SafetensorsWriter::serialize() const {
  std::vector<const Entry*> order;
  std::vector<uint8_t> out = header(order);
  out.reserve(out.size() + data_bytes_);
  for (const Entry* e : order) out.insert(out.end(), e->data, e->data + e->nbytes);
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  std::vector<const Entry*> order;
  const std::vector<uint8_t> head = header(order);
  std::vector<std::span<const uint8_t>> pieces;
  pieces.reserve(order.size() + 1);
  pieces.emplace_back(head);
  for (const Entry* e : order) pieces.emplace_back(e->data, e->nbytes);
  write_file_atomic(path, pieces);
}

}  // namespace qaft
