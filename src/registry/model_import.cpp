#include "registry/model_import.h"

#include "core/error.h"
#include "data/tokenizer.h"
#include "io/safetensors_index.h"
#include "model/config.h"
#include "registry/version.h"

#include <fstream>
#include <map>
#include <sstream>

namespace qaft {

namespace fs = std::filesystem;

std::string detect_weight_format(const ShardedCheckpoint& ck) {
  std::map<DType, uint64_t> bytes;
  for (const std::string& name : ck.names()) {
    const TensorInfo& info = ck.info(name);
    bytes[info.dtype] += info.nbytes;
  }
  if (bytes.count(DType::kE4M3)) return "fp8";
  if (bytes.count(DType::kNF4)) return "nf4";
  DType best = DType::kF32;
  uint64_t most = 0;
  for (const auto& [dtype, n] : bytes)
    if (dtype_is_float(dtype) && n > most) best = dtype, most = n;
  return std::string(dtype_name(best));
}

ModelRecord register_base_model(Workspace& ws, const std::string& name, const fs::path& dir_in) {
  validate_registry_name(name, "model");
  QAFT_CHECK_HINT(!ws.find_model(name), ErrorKind::kInvalidArgument,
                  fmt::format("choose another name, or `qaft model delete {}` first", name),
                  "a model named '{}' is already registered", name);
  std::error_code ec;
  const fs::path dir = fs::weakly_canonical(fs::absolute(dir_in), ec);
  QAFT_CHECK_HINT(!ec && fs::is_directory(dir), ErrorKind::kIo, "give a Hugging Face model directory",
                  "{} is not a directory", dir_in.string());

  const ModelConfig mc = model_config_load(dir.string());
  const Tokenizer tok = Tokenizer::load(dir);
  QAFT_CHECK_HINT(tok.vocab_size() <= mc.vocab_size, ErrorKind::kInvalidFile, "use the tokenizer of this model",
                  "the tokenizer in {} has {} tokens but the model's vocab_size is {}", dir.string(), tok.vocab_size(),
                  mc.vocab_size);
  const ShardedCheckpoint ck = ShardedCheckpoint::open(dir.string());
  QAFT_CHECK_HINT(!ck.names().empty(), ErrorKind::kInvalidFile, "give a model directory with its weights",
                  "{} holds no tensors", dir.string());

  std::ifstream in(dir / "config.json");
  std::stringstream text;
  text << in.rdbuf();
  ModelRecord r;
  r.name = name;
  r.kind = ModelKind::kBase;
  r.path = dir.string();
  r.format = detect_weight_format(ck);
  r.config = nlohmann::json::parse(text.str(), nullptr, false);
  r.created_at = utc_now_iso8601();
  r.qaft_version = std::string(qaft_version());
  ws.add_model(r);
  return r;
}

fs::path resolve_model_dir(Workspace& ws, const std::string& name_or_dir) {
  if (auto m = ws.find_model(name_or_dir)) {
    if (m->kind == ModelKind::kBase) return m->path;
    return ws.model(m->base_model).path;
  }
  std::error_code ec;
  if (fs::is_directory(name_or_dir, ec)) return fs::absolute(name_or_dir);
  std::vector<std::string> names;
  for (const ModelRecord& m : ws.models()) names.push_back(m.name);
  throw_unknown_name("model", name_or_dir, names,
                     "pass a registered model's name or a model directory (`qaft model register NAME DIR`)");
}

}  // namespace qaft
