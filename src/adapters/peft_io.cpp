// PEFT adapter directories: adapter_config.json + adapter_model.safetensors (formats.md §5.3).
//
// Saving writes what PEFT's save_pretrained writes for a LoRA adapter (sorted keys, F32 tensors,
// routed experts split per expert), plus a "qaft" object holding what PEFT has no field for: the
// target list as given ("all-linear", "shared_experts.down_proj", ...) and the init seed.
//
// Loading: the tensor keys are the truth. Every key must be lora_A/lora_B of a module of the model
// with the right shape, each A needs its B, and a layer's routed experts come all or none; the
// adapted modules are exactly those the keys name. The config's target list (from "qaft", else
// target_modules) is kept as written and only cross-checked: when it would select other modules
// (or names modules this model lacks) a warning is logged and the keys win.
#include "adapters/peft_io.h"

#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "io/json_strict.h"
#include "io/safetensors.h"
#include "numerics/bf16.h"
#include "numerics/fp16.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

namespace qaft {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kKeyPrefix = "base_model.model.";
constexpr const char* kConfigFile = "adapter_config.json";
constexpr const char* kWeightsFile = "adapter_model.safetensors";

// "model.layers.1.mlp.experts.gate_proj" -> {"model.layers.1.mlp.experts", "gate_proj"}.
std::pair<std::string, std::string> split_last(const std::string& module) {
  const size_t dot = module.rfind('.');
  if (dot == std::string::npos) return {"", module};
  return {module.substr(0, dot), module.substr(dot + 1)};
}

// The HF module path of expert e of a stacked target ("...experts.3.gate_proj"), or the module.
std::string module_path(const LoraTarget& t, int64_t e) {
  if (t.experts == 0) return t.module;
  const auto [prefix, proj] = split_last(t.module);
  return fmt::format("{}.{}.{}", prefix, e, proj);
}

// "base_model.model.<module path>.lora_A.weight".
std::string peft_key(const LoraTarget& t, int64_t e, char a_or_b) {
  return fmt::format("{}{}.lora_{}.weight", kKeyPrefix, module_path(t, e), a_or_b);
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// Every module of the model LoRA may adapt, with its shape (rank 1, rank set by the caller).
std::vector<LoraTarget> all_modules(const ModelConfig& model) {
  LoraConfig every;
  every.rank = 1;
  every.targets = {"all-linear"};
  return resolve_lora_targets(model, every);
}

// 16 -> 16, 0.5 -> 0.5 (PEFT writes integral alphas as ints).
json number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15) return static_cast<int64_t>(v);
  return v;
}

json config_json(const LoraConfig& config, const std::vector<LoraTarget>& targets, const std::string& base_model,
                 const json& training) {
  json target_modules;
  if (!config.target_regex.empty()) {
    target_modules = config.target_regex;  // PEFT: a string is a regex (re.fullmatch)
  } else {
    std::vector<std::string> leaves;
    for (const LoraTarget& t : targets) leaves.push_back(split_last(t.module).second);
    std::sort(leaves.begin(), leaves.end());
    leaves.erase(std::unique(leaves.begin(), leaves.end()), leaves.end());
    target_modules = leaves;
  }
  json qaft = {{"format_version", 1}, {"seed", config.seed}};
  if (config.target_regex.empty()) qaft["targets"] = config.targets;
  else qaft["target_regex"] = config.target_regex;
  if (!training.is_null()) qaft["training"] = training;
  // nlohmann::json objects are sorted by key, as PEFT's json.dumps(sort_keys=True).
  return json{{"alpha_pattern", json::object()},
              {"base_model_name_or_path", base_model.empty() ? json(nullptr) : json(base_model)},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"inference_mode", true},
              {"init_lora_weights", true},
              {"layers_pattern", nullptr},
              {"layers_to_transform", nullptr},
              {"lora_alpha", number(config.alpha)},
              {"lora_dropout", number(config.dropout)},
              {"modules_to_save", nullptr},
              {"peft_type", "LORA"},
              {"qaft", qaft},
              {"r", config.rank},
              {"rank_pattern", json::object()},
              {"revision", nullptr},
              {"target_modules", target_modules},
              {"task_type", "CAUSAL_LM"},
              {"use_dora", false},
              {"use_rslora", config.rslora}};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QAFT_CHECK_HINT(in.good(), ErrorKind::kIo, "check the path and its permissions", "cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The fields of adapter_config.json qaft uses, validated, into `out`.
void read_config(const json& j, const std::string& path, PeftAdapter& out) {
  const char* const hint = "adapter_config.json must be a PEFT LoRA config (r, lora_alpha, target_modules)";
  QAFT_CHECK_HINT(j.is_object(), ErrorKind::kInvalidFile, hint, "{}: expected a JSON object, got {}", path, j.type_name());
  auto field = [&](const char* key) { return j.contains(key) ? j.at(key) : json(nullptr); };
  auto shown = [&](const char* key) { return j.contains(key) ? j.at(key).dump() : std::string("missing"); };
  LoraConfig& c = out.config;

  const json peft_type = field("peft_type");
  QAFT_CHECK_HINT(peft_type.is_null() || peft_type == "LORA", ErrorKind::kInvalidFile, hint,
                  "{}: \"peft_type\" is {}, qaft loads only LORA adapters", path, peft_type.dump());
  const json r = field("r");
  QAFT_CHECK_HINT(r.is_number() && r.get<double>() >= 1 && r.get<double>() == std::floor(r.get<double>()),
                  ErrorKind::kInvalidFile, hint, "{}: \"r\" is {}, expected a positive integer", path, shown("r"));
  c.rank = static_cast<int64_t>(r.get<double>());
  const json alpha = field("lora_alpha");
  QAFT_CHECK_HINT(alpha.is_number() && std::isfinite(alpha.get<double>()) && alpha.get<double>() > 0,
                  ErrorKind::kInvalidFile, hint, "{}: \"lora_alpha\" is {}, expected a positive number", path,
                  shown("lora_alpha"));
  c.alpha = alpha.get<double>();
  const json dropout = field("lora_dropout");
  QAFT_CHECK_HINT(dropout.is_null() || (dropout.is_number() && dropout.get<double>() >= 0 && dropout.get<double>() < 1),
                  ErrorKind::kInvalidFile, hint, "{}: \"lora_dropout\" is {}, expected a number in [0, 1)", path,
                  dropout.dump());
  c.dropout = dropout.is_null() ? 0.0 : dropout.get<double>();
  const json rslora = field("use_rslora");
  QAFT_CHECK_HINT(rslora.is_null() || rslora.is_boolean(), ErrorKind::kInvalidFile, hint,
                  "{}: \"use_rslora\" is {}, expected true or false", path, rslora.dump());
  c.rslora = rslora.is_boolean() && rslora.get<bool>();

  const json dora = field("use_dora");
  QAFT_CHECK_HINT(!(dora.is_boolean() && dora.get<bool>()), ErrorKind::kInvalidFile,
                  "DoRA adds a magnitude vector qaft does not model; merge the adapter or retrain without DoRA",
                  "{}: \"use_dora\" is true; qaft loads plain LoRA adapters only", path);
  const json to_save = field("modules_to_save");
  QAFT_CHECK_HINT(to_save.is_null() || (to_save.is_array() && to_save.empty()), ErrorKind::kInvalidFile,
                  "modules_to_save stores full copies of modules (as vLLM, qaft refuses them); save without them",
                  "{}: \"modules_to_save\" is {}; adapters with fully trained modules are not supported", path,
                  to_save.dump());

  const json base = field("base_model_name_or_path");
  out.base_model = base.is_string() ? base.get<std::string>() : "";

  // Targets: qaft's own record when present (it keeps "all-linear" and dotted names), else PEFT's.
  const json qaft = field("qaft");
  if (qaft.is_object() && qaft.contains("training")) out.training = qaft.at("training");
  const json tm = qaft.is_object() && (qaft.contains("targets") || qaft.contains("target_regex"))
                      ? (qaft.contains("target_regex") ? qaft.at("target_regex") : qaft.at("targets"))
                      : field("target_modules");
  c.targets.clear();
  if (tm.is_string()) {
    if (tm == "all-linear") c.targets = {"all-linear"};
    else c.target_regex = tm.get<std::string>();
  } else if (tm.is_array()) {
    for (const json& name : tm) {
      QAFT_CHECK_HINT(name.is_string(), ErrorKind::kInvalidFile, hint,
                      "{}: \"target_modules\" holds {}, expected module names", path, name.dump());
      c.targets.push_back(name.get<std::string>());
    }
  } else {
    QAFT_CHECK_HINT(tm.is_null(), ErrorKind::kInvalidFile, hint,
                    "{}: \"target_modules\" is {}, expected a list of names or a regex string", path, tm.dump());
  }
  if (qaft.is_object() && qaft.contains("seed") && qaft.at("seed").is_number_unsigned())
    c.seed = qaft.at("seed").get<uint64_t>();
}

// One adapter tensor of the file, converted to float.
void read_tensor(const SafetensorsFile& f, const std::string& key, float* out) {
  const TensorInfo& info = f.info(key);
  const uint8_t* p = f.bytes(key).data();
  const int64_t n = info.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (info.dtype == DType::kF32) {
      std::memcpy(&out[i], p + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = info.dtype == DType::kBF16 ? bf16_to_float(h) : fp16_to_float(h);
    }
    QAFT_CHECK_HINT(std::isfinite(out[i]), ErrorKind::kInvalidFile, "the adapter is damaged (training diverged?)",
                    "{}: {} holds a non-finite value {} at flat index {}", f.path(), key, out[i], i);
  }
}

// Where a key points: a module of the model, one of its experts, A or B.
struct KeySlot {
  size_t module = 0;  // index into all_modules()
  int64_t expert = 0;
};

}  // namespace

void save_peft_adapter(const std::string& dir, const ModelConfig& model, const LoraConfig& config,
                       const std::vector<LoraTarget>& targets, const ParamStore<float>& params,
                       const std::string& base_model, const json& training) {
  QAFT_CHECK(!targets.empty(), "no LoRA targets to save to {}", dir);
  // The targets must be modules of `model` with its shapes, at the config's rank (PEFT has one r).
  std::unordered_map<std::string, LoraTarget> known;
  for (LoraTarget& t : all_modules(model)) known.emplace(t.module, std::move(t));
  for (const LoraTarget& t : targets) {
    auto it = known.find(t.module);
    QAFT_CHECK(it != known.end() && it->second.out == t.out && it->second.in == t.in && it->second.experts == t.experts,
               "LoRA target {} [{}x{}] is not a module of this {} model", t.module, t.out, t.in, model.model_type);
    QAFT_CHECK(t.rank == config.rank, "LoRA target {} has rank {}, the config {}; PEFT adapters have one rank",
               t.module, t.rank, config.rank);
  }
  for (const ParamSpec& s : lora_param_specs(targets)) {
    const float* p = params.find(s.name);
    QAFT_CHECK_HINT(p != nullptr && params.spec(s.name).shape == s.shape, ErrorKind::kInternal, "",
                    "LoRA parameter {} {} is missing from the parameters to save, or has another shape", s.name,
                    shape_str(s.shape));
  }

  std::error_code ec;
  fs::create_directories(dir, ec);
  QAFT_CHECK_HINT(!ec && fs::is_directory(dir), ErrorKind::kIo, "choose a writable output directory",
                  "cannot create adapter directory {}: {}", dir, ec ? ec.message() : "not a directory");

  SafetensorsWriter w;
  w.set_metadata("format", "pt");  // what PEFT's save_pretrained writes
  for (const LoraTarget& t : targets) {
    const int64_t copies = std::max<int64_t>(t.experts, 1);
    const int64_t na = t.rank * t.in, nb = t.out * t.rank;
    const float* a = params.get(t.a_name());  // [E?, r, in]
    const float* b = params.get(t.b_name());  // [E?, out, r]
    for (int64_t e = 0; e < copies; ++e) {
      w.add(peft_key(t, e, 'A'), DType::kF32, {t.rank, t.in}, a + e * na, static_cast<size_t>(na) * sizeof(float));
      w.add(peft_key(t, e, 'B'), DType::kF32, {t.out, t.rank}, b + e * nb, static_cast<size_t>(nb) * sizeof(float));
    }
  }
  // Tensors first: a directory with a config is a complete adapter.
  w.write(dir + "/" + kWeightsFile);
  write_file_atomic(dir + "/" + kConfigFile, config_json(config, targets, base_model, training).dump(2) + "\n");
}

PeftAdapter load_peft_adapter(const std::string& dir, const ModelConfig& model) {
  const std::string cfg_path = dir + "/" + kConfigFile, st_path = dir + "/" + kWeightsFile;
  QAFT_CHECK_HINT(fs::is_regular_file(cfg_path), ErrorKind::kInvalidFile,
                  "a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors",
                  "{}: missing {}", dir, kConfigFile);
  QAFT_CHECK_HINT(fs::is_regular_file(st_path), ErrorKind::kInvalidFile,
                  fs::exists(dir + "/adapter_model.bin")
                      ? "convert adapter_model.bin to safetensors (PEFT: save_pretrained(..., safe_serialization=True))"
                      : "a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors",
                  "{}: missing {}", dir, kWeightsFile);
  PeftAdapter out;
  read_config(parse_json_strict(read_text(cfg_path), cfg_path, 16), cfg_path, out);
  const int64_t r = out.config.rank;

  // Every key names a module of the model (and an expert of it), A or B.
  std::vector<LoraTarget> modules = all_modules(model);
  std::unordered_map<std::string, KeySlot> by_path;
  for (size_t m = 0; m < modules.size(); ++m)
    for (int64_t e = 0; e < std::max<int64_t>(modules[m].experts, 1); ++e)
      by_path.emplace(module_path(modules[m], e), KeySlot{m, e});
  // seen[m][2e + (B ? 1 : 0)]: the key present for that slot.
  std::vector<std::vector<std::string>> seen(modules.size());
  for (size_t m = 0; m < modules.size(); ++m)
    seen[m].resize(2 * static_cast<size_t>(std::max<int64_t>(modules[m].experts, 1)));

  const SafetensorsFile f = SafetensorsFile::open(st_path);
  for (const std::string& key : f.names()) {
    const bool is_a = key.ends_with(".lora_A.weight"), is_b = key.ends_with(".lora_B.weight");
    const std::string path = key.starts_with(kKeyPrefix) && (is_a || is_b)
                                 ? key.substr(kKeyPrefix.size(), key.size() - kKeyPrefix.size() - 14)
                                 : std::string();
    auto it = by_path.find(path);
    if (it == by_path.end()) {
      std::vector<std::string> examples;
      for (const LoraTarget& t : modules)
        if (examples.size() < 2 || (t.experts > 0 && examples.size() < 3)) examples.push_back(peft_key(t, 0, 'A'));
      QAFT_FAIL(ErrorKind::kInvalidFile, "the adapter was made for another model, or is not a PEFT LoRA adapter",
                "{}: key '{}' is not lora_A/lora_B of a module of this {} model; keys look like {}", st_path, key,
                model.model_type, fmt::join(examples, ", "));
    }
    const TensorInfo& info = f.info(key);
    QAFT_CHECK_HINT(info.dtype == DType::kF32 || info.dtype == DType::kBF16 || info.dtype == DType::kF16,
                    ErrorKind::kInvalidFile, "save the adapter in F32, BF16 or F16", "{}: {} has dtype {}, expected F32, BF16 or F16",
                    st_path, key, safetensors_dtype_string(info.dtype));
    const LoraTarget& t = modules[it->second.module];
    const std::vector<int64_t> want = is_a ? std::vector<int64_t>{r, t.in} : std::vector<int64_t>{t.out, r};
    QAFT_CHECK_HINT(info.shape == want, ErrorKind::kInvalidFile,
                    "the adapter was made for another model, or its r does not match adapter_config.json",
                    "{}: {} has shape {}, expected {} for r = {} and base module {} {}", st_path, key,
                    shape_str(info.shape), shape_str(want), r, module_path(t, it->second.expert),
                    shape_str({t.out, t.in}));
    seen[it->second.module][2 * static_cast<size_t>(it->second.expert) + (is_b ? 1 : 0)] = key;
  }

  // Each A with its B; a layer's experts all or none.
  for (size_t m = 0; m < modules.size(); ++m) {
    const LoraTarget& t = modules[m];
    const auto& s = seen[m];
    const int64_t present = std::count_if(s.begin(), s.end(), [](const std::string& k) { return !k.empty(); });
    if (present == 0) continue;
    if (t.experts > 0 && present < static_cast<int64_t>(s.size())) {
      std::vector<int64_t> missing;
      for (int64_t e = 0; e < t.experts; ++e)
        if (s[2 * static_cast<size_t>(e)].empty() && s[2 * static_cast<size_t>(e) + 1].empty()) missing.push_back(e);
      if (!missing.empty())
        QAFT_FAIL(ErrorKind::kInvalidFile, "qaft adapts a layer's routed experts all or none",
                  "{}: {} has adapters for {} of its {} experts (missing experts {})", st_path, t.module,
                  t.experts - static_cast<int64_t>(missing.size()), t.experts, fmt::join(missing, ", "));
    }
    for (size_t i = 0; i < s.size(); i += 2) {
      const int64_t e = static_cast<int64_t>(i / 2);
      QAFT_CHECK_HINT(!s[i].empty() || s[i + 1].empty(), ErrorKind::kInvalidFile, "every lora_B needs its lora_A",
                      "{}: {} has no matching {}", st_path, s[i + 1], peft_key(t, e, 'A'));
      QAFT_CHECK_HINT(s[i].empty() || !s[i + 1].empty(), ErrorKind::kInvalidFile, "every lora_A needs its lora_B",
                      "{}: {} has no matching {}", st_path, s[i], peft_key(t, e, 'B'));
    }
    LoraTarget adapted = t;
    adapted.rank = r;
    out.targets.push_back(std::move(adapted));
  }
  QAFT_CHECK_HINT(!out.targets.empty(), ErrorKind::kInvalidFile, "", "{}: no LoRA tensors (lora_A / lora_B keys)", st_path);

  out.params = ParamStore<float>(lora_param_specs(out.targets));
  for (const LoraTarget& t : out.targets) {
    float* a = out.params.get(t.a_name());  // [E?, r, in]
    float* b = out.params.get(t.b_name());  // [E?, out, r]
    for (int64_t e = 0; e < std::max<int64_t>(t.experts, 1); ++e) {
      read_tensor(f, peft_key(t, e, 'A'), a + e * t.rank * t.in);
      read_tensor(f, peft_key(t, e, 'B'), b + e * t.out * t.rank);
    }
  }

  // The config's targets against the keys: informative only.
  if (out.config.targets.empty() && out.config.target_regex.empty()) {
    for (const LoraTarget& t : out.targets) out.config.targets.push_back(split_last(t.module).second);
    std::sort(out.config.targets.begin(), out.config.targets.end());
    out.config.targets.erase(std::unique(out.config.targets.begin(), out.config.targets.end()), out.config.targets.end());
    return out;
  }
  try {
    LoraConfig at_rank_one = out.config;  // the rank was checked against the shapes already
    at_rank_one.rank = 1;
    const std::vector<LoraTarget> implied = resolve_lora_targets(model, at_rank_one);
    bool same = implied.size() == out.targets.size();
    for (size_t i = 0; same && i < implied.size(); ++i) same = implied[i].module == out.targets[i].module;
    if (!same)
      QAFT_LOG(kWarn, "{}: the tensors adapt {} modules, target_modules would select {}; using the tensors", dir,
               out.targets.size(), implied.size());
  } catch (const Error& e) {
    QAFT_LOG(kWarn, "{}: target_modules do not resolve against this model ({}); using the modules the tensors name",
             dir, e.message());
  }
  return out;
}

}  // namespace qaft
