// Sharded safetensors checkpoints: index parsing/writing, the lazy multi-shard reader, the
// budgeted shard writer. Contract in safetensors_index.h.
#include "io/safetensors_index.h"

#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "io/json_strict.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

namespace qaft {
namespace fs = std::filesystem;
namespace {

constexpr const char* kBadIndexHint =
    "the index is corrupt or hand-edited; re-download it or regenerate it from the shards";

// "a, b, c" for at most `limit` items, then "... and N more".
std::string join_limited(const std::vector<std::string>& items, size_t limit = 20) {
  std::string s;
  for (size_t i = 0; i < items.size() && i < limit; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > limit) s += fmt::format(" ... and {} more", items.size() - limit);
  return s;
}

std::string parent_dir(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

std::vector<std::string> SafetensorsIndex::shards() const {
  std::set<std::string> s;
  for (const auto& [name, shard] : weight_map) s.insert(shard);
  return {s.begin(), s.end()};
}

bool is_valid_shard_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

SafetensorsIndex parse_safetensors_index(std::string_view json, const std::string& label) {
  // Depth 8 leaves room for writers that put extra structured entries into "metadata".
  const nlohmann::json j = parse_json_strict(json, label, 8);
  QAFT_CHECK_HINT(j.is_object(), ErrorKind::kInvalidFile, kBadIndexHint,
                  "{}: index is a JSON {}, not an object", label, j.type_name());
  SafetensorsIndex index;
  if (j.contains("metadata")) {
    const auto& meta = j["metadata"];
    QAFT_CHECK_HINT(meta.is_object(), ErrorKind::kInvalidFile, kBadIndexHint,
                    "{}: \"metadata\" must be an object, not a JSON {}", label, meta.type_name());
    if (meta.contains("total_size")) {
      const auto& t = meta["total_size"];
      std::optional<uint64_t> v;
      if (t.is_number_unsigned()) {
        v = t.get<uint64_t>();
      } else if (t.is_number_integer() && t.get<int64_t>() >= 0) {
        v = static_cast<uint64_t>(t.get<int64_t>());
      } else if (t.is_number_float()) {
        // Some writers emit 1234.0; accept integral values that fit.
        double d = t.get<double>();
        if (d >= 0 && d < 0x1p64 && std::floor(d) == d) v = static_cast<uint64_t>(d);
      }
      QAFT_CHECK_HINT(v.has_value(), ErrorKind::kInvalidFile, kBadIndexHint,
                      "{}: metadata.total_size must be a non-negative integer, not {}", label,
                      t.dump());
      index.total_size = v;
    }
  }
  QAFT_CHECK_HINT(j.contains("weight_map"), ErrorKind::kInvalidFile, kBadIndexHint,
                  "{}: missing \"weight_map\"", label);
  const auto& wm = j["weight_map"];
  QAFT_CHECK_HINT(wm.is_object(), ErrorKind::kInvalidFile, kBadIndexHint,
                  "{}: \"weight_map\" must be an object, not a JSON {}", label, wm.type_name());
  for (const auto& [name, shard] : wm.items()) {
    QAFT_CHECK_HINT(shard.is_string(), ErrorKind::kInvalidFile, kBadIndexHint,
                    "{}: weight_map entry \"{}\" must be a shard file name, not a JSON {}", label,
                    name, shard.type_name());
    const auto& s = shard.get_ref<const std::string&>();
    QAFT_CHECK_HINT(is_valid_shard_name(s), ErrorKind::kInvalidFile,
                    "shards must be plain file names in the index's directory",
                    "{}: weight_map entry \"{}\" names shard \"{}\", which is not a bare file name "
                    "(no '/', '.' or '..' allowed)",
                    label, name, s);
    index.weight_map.emplace(name, s);
  }
  return index;
}

SafetensorsIndex read_safetensors_index(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    QAFT_FAIL(ErrorKind::kIo, "check the path and its permissions", "cannot open {}: {}", path,
              std::strerror(err));
  }
  std::ostringstream text;
  text << in.rdbuf();
  QAFT_CHECK_HINT(!in.bad(), ErrorKind::kIo, "", "cannot read {}", path);
  SafetensorsIndex index = parse_safetensors_index(text.str(), path);

  const std::string dir = parent_dir(path);
  std::vector<std::string> missing;
  for (const auto& shard : index.shards()) {
    std::error_code ec;
    if (!fs::is_regular_file(fs::path(dir) / shard, ec)) missing.push_back(shard);
  }
  QAFT_CHECK_HINT(missing.empty(), ErrorKind::kInvalidFile,
                  "download the missing shards into the same directory as the index",
                  "{}: {} of {} shards missing from {}: {}", path, missing.size(),
                  index.shards().size(), dir, join_limited(missing));
  return index;
}

void write_safetensors_index(const std::string& path, const SafetensorsIndex& index) {
  // Built by hand (like HF's json.dumps(indent=2)): ordered_json would be quadratic in tensors.
  auto quote = [](const std::string& s) { return nlohmann::json(s).dump(); };
  std::string text = "{\n  \"metadata\": {";
  if (index.total_size) text += fmt::format("\n    \"total_size\": {}\n  ", *index.total_size);
  text += "},\n  \"weight_map\": {";
  bool first = true;
  for (const auto& [name, shard] : index.weight_map) {
    QAFT_CHECK(is_valid_shard_name(shard), "index: tensor \"{}\" maps to invalid shard name \"{}\"",
               name, shard);
    QAFT_CHECK(is_valid_utf8(name) && is_valid_utf8(shard),
               "index: tensor name or shard name is not valid UTF-8");
    text += first ? "\n    " : ",\n    ";
    first = false;
    text += quote(name) + ": " + quote(shard);
  }
  text += first ? "}\n}\n" : "\n  }\n}\n";
  write_file_atomic(path, text);
}

// ------------------------------------------------------------------------------------------------
// ShardedCheckpoint

struct ShardedCheckpoint::Impl {
  std::string dir;                 // the checkpoint directory
  bool sharded = false;            // index + shards (true) or a lone model.safetensors
  SafetensorsIndex index;          // weight_map (for a lone file: every name -> model.safetensors)
  std::vector<std::string> names;  // sorted tensor names
  mutable std::mutex mutex;        // guards `open`
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> open;  // shard -> opened file

  // The shard file, opened and checked against the index on first use.
  const SafetensorsFile& shard(const std::string& shard_name) const {
    std::lock_guard lock(mutex);
    auto it = open.find(shard_name);
    if (it != open.end()) return *it->second;
    const std::string path = (fs::path(dir) / shard_name).string();
    auto file = std::make_unique<SafetensorsFile>(SafetensorsFile::open(path));
    std::vector<std::string> absent;
    for (const auto& [name, s] : index.weight_map)
      if (s == shard_name && !file->contains(name)) absent.push_back(name);
    QAFT_CHECK_HINT(absent.empty(), ErrorKind::kInvalidFile,
                    "the index does not match the shards; re-download both",
                    "{}: the index assigns {} tensors to this shard that it does not hold: {}",
                    path, absent.size(), join_limited(absent));
    return *open.emplace(shard_name, std::move(file)).first->second;
  }
};

ShardedCheckpoint::ShardedCheckpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ShardedCheckpoint::ShardedCheckpoint(ShardedCheckpoint&&) noexcept = default;
ShardedCheckpoint& ShardedCheckpoint::operator=(ShardedCheckpoint&&) noexcept = default;
ShardedCheckpoint::~ShardedCheckpoint() = default;

ShardedCheckpoint ShardedCheckpoint::open(const std::string& dir) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  std::error_code ec;
  QAFT_CHECK_HINT(fs::is_directory(dir, ec), ErrorKind::kIo, "pass the checkpoint directory",
                  "checkpoint directory {} does not exist or is not a directory", dir);
  const fs::path index_path = fs::path(dir) / kSafetensorsIndexName;
  const fs::path single_path = fs::path(dir) / kSafetensorsSingleName;
  if (fs::exists(index_path, ec)) {
    impl->sharded = true;
    impl->index = read_safetensors_index(index_path.string());
  } else if (fs::exists(single_path, ec)) {
    auto file = std::make_unique<SafetensorsFile>(SafetensorsFile::open(single_path.string()));
    for (const auto& name : file->names())
      impl->index.weight_map.emplace(name, kSafetensorsSingleName);
    impl->index.total_size = file->file_bytes() - 8 - file->header_bytes();
    impl->open.emplace(kSafetensorsSingleName, std::move(file));
  } else {
    QAFT_FAIL(ErrorKind::kIo, "a checkpoint directory holds model.safetensors or an index + shards",
              "{}: neither {} nor {} found", dir, kSafetensorsIndexName, kSafetensorsSingleName);
  }
  for (const auto& [name, shard] : impl->index.weight_map) impl->names.push_back(name);
  return ShardedCheckpoint(std::move(impl));
}

const std::string& ShardedCheckpoint::dir() const { return impl_->dir; }
bool ShardedCheckpoint::is_sharded() const { return impl_->sharded; }
const std::vector<std::string>& ShardedCheckpoint::names() const { return impl_->names; }

bool ShardedCheckpoint::contains(std::string_view name) const {
  return impl_->index.weight_map.contains(std::string(name));
}

const std::string& ShardedCheckpoint::shard_of(std::string_view name) const {
  auto it = impl_->index.weight_map.find(std::string(name));
  QAFT_CHECK_HINT(it != impl_->index.weight_map.end(), ErrorKind::kInvalidArgument,
                  "names() lists the checkpoint's tensors", "checkpoint {}: no tensor named \"{}\"",
                  impl_->dir, name);
  return it->second;
}

const SafetensorsFile& ShardedCheckpoint::file_of(std::string_view name) const {
  return impl_->shard(shard_of(name));
}

const TensorInfo& ShardedCheckpoint::info(std::string_view name) const {
  return file_of(name).info(name);
}

Tensor ShardedCheckpoint::tensor(std::string_view name) const { return file_of(name).tensor(name); }

std::span<const uint8_t> ShardedCheckpoint::bytes(std::string_view name) const {
  return file_of(name).bytes(name);
}

void ShardedCheckpoint::require(std::span<const std::string> names) const {
  std::vector<std::string> absent;
  for (const auto& n : names)
    if (!contains(n)) absent.push_back(n);
  QAFT_CHECK_HINT(absent.empty(), ErrorKind::kInvalidFile,
                  "check that the checkpoint matches the model configuration",
                  "checkpoint {} lacks {} of {} required tensors: {}", impl_->dir, absent.size(),
                  names.size(), join_limited(absent));
}

void ShardedCheckpoint::open_all() const {
  uint64_t total = 0;
  for (const auto& shard : impl_->index.shards()) (void)impl_->shard(shard);
  for (const auto& [name, shard] : impl_->index.weight_map)
    total += impl_->shard(shard).info(name).nbytes;
  if (impl_->index.total_size && *impl_->index.total_size != total)
    QAFT_LOG(kWarn, "{}: index metadata.total_size is {} but the tensors hold {} bytes", impl_->dir,
             *impl_->index.total_size, total);
}

// ------------------------------------------------------------------------------------------------
// ShardedWriter

ShardedWriter::ShardedWriter(uint64_t max_shard_bytes) : max_shard_bytes_(max_shard_bytes) {
  QAFT_CHECK(max_shard_bytes > 0, "sharded writer: max_shard_bytes must be positive");
}

void ShardedWriter::add(std::string name, DType dtype, std::vector<int64_t> shape, const void* data,
                        size_t nbytes) {
  checker_.add(name, dtype, shape, data, nbytes);  // throws on any problem
  entries_.push_back({std::move(name), dtype, std::move(shape), data, nbytes});
}

void ShardedWriter::add(std::string name, const Tensor& tensor) {
  QAFT_CHECK(tensor.device() == Device::kCpu && tensor.is_contiguous(),
             "sharded writer: tensor \"{}\" must be a contiguous CPU tensor", name);
  std::vector<int64_t> shape(tensor.shape().dims.begin(),
                             tensor.shape().dims.begin() + tensor.rank());
  add(std::move(name), tensor.dtype(), std::move(shape), tensor.raw(), tensor.nbytes());
}

void ShardedWriter::set_metadata(std::string key, std::string value) {
  checker_.set_metadata(key, value);  // validates UTF-8
  metadata_[std::move(key)] = std::move(value);
}

std::vector<std::vector<std::string>> ShardedWriter::plan() const {
  std::vector<std::vector<std::string>> shards;
  uint64_t current = 0;
  for (const auto& e : entries_) {
    if (shards.empty() || (!shards.back().empty() && current + e.nbytes > max_shard_bytes_)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(e.name);
    current += e.nbytes;
  }
  return shards;
}

std::string ShardedWriter::shard_name(size_t index, size_t count) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

std::vector<std::string> ShardedWriter::write(const std::string& dir) const {
  std::error_code ec;
  QAFT_CHECK_HINT(fs::is_directory(dir, ec), ErrorKind::kIo, "create the directory first",
                  "sharded writer: {} is not an existing directory", dir);
  std::map<std::string_view, const Entry*> by_name;
  for (const auto& e : entries_) by_name.emplace(e.name, &e);

  const auto plan = this->plan();
  std::vector<std::string> files;
  SafetensorsIndex index;
  index.total_size = 0;
  for (size_t s = 0; s < plan.size(); ++s) {
    const std::string file = shard_name(s, plan.size());
    SafetensorsWriter w;
    for (const auto& [k, v] : metadata_) w.set_metadata(k, v);
    for (const auto& name : plan[s]) {
      const Entry* e = by_name.at(name);
      w.add(e->name, e->dtype, e->shape, e->data, e->nbytes);
      index.weight_map.emplace(e->name, file);
      *index.total_size += e->nbytes;
    }
    w.write((fs::path(dir) / file).string());
    files.push_back(file);
  }
  write_safetensors_index((fs::path(dir) / kSafetensorsIndexName).string(), index);
  return files;
}

}  // namespace qaft
