// LoRA adapters in PEFT's format (formats.md §5.3, §6.1): what save_peft_adapter writes (the
// adapter_config.json fields PEFT and vLLM read, per-expert F32 tensors under
// "base_model.model.<module>.lora_A.weight"), the bit-exact round trip, and every error
// load_peft_adapter reports for a damaged or foreign adapter (each made by editing a good one).
#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "model_configs.h"
#include "numerics/bf16.h"
#include "numerics/fp16.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

using namespace qaft;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

ModelConfig tiny(const std::string& family) {
  for (auto& [name, text] : test::tiny_model_configs())
    if (name == family) return model_config_from_json(text, family);
  ADD_FAILURE() << "no tiny config " << family;
  return {};
}

// A trained-looking adapter: PEFT init, then B filled with random values (B = 0 would make a
// round trip of B trivially exact).
struct Adapter {
  ModelConfig model;
  LoraConfig config;
  std::vector<LoraTarget> targets;
  ParamStore<float> params;

  Adapter(const std::string& family, LoraConfig c) : model(tiny(family)), config(std::move(c)) {
    targets = resolve_lora_targets(model, config);
    params = ParamStore<float>(lora_param_specs(targets));
    init_lora_params(params, targets, config.seed);
    for (const LoraTarget& t : targets) {
      const ParamSpec& b = params.spec(t.b_name());
      CounterRng(config.seed + 1, 0).fill_normal(params.get(b.name), b.numel(), 0.0f, 0.02f);
    }
  }
  void save(const std::string& dir) const { save_peft_adapter(dir, model, config, targets, params, "tiny/deepseek"); }
};

LoraConfig v3_config() {
  LoraConfig c;
  c.rank = 4;
  c.alpha = 32;
  c.rslora = true;
  c.dropout = 0.05;
  c.seed = 7;
  return c;  // all-linear
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

json read_json(const std::string& path) { return json::parse(read_text(path)); }
void write_json(const std::string& path, const json& j) { std::ofstream(path, std::ios::binary) << j.dump(2); }

// The tensors of a safetensors file, copied out, for editing.
struct StoredTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
using TensorMap = std::map<std::string, StoredTensor>;

TensorMap read_tensors(const std::string& path) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  TensorMap out;
  for (const TensorInfo& info : f.infos()) {
    const auto b = f.bytes(info.name);
    out[info.name] = StoredTensor{info.dtype, info.shape, std::vector<uint8_t>(b.begin(), b.end())};
  }
  return out;
}

void write_tensors(const std::string& path, const TensorMap& tensors) {
  SafetensorsWriter w;
  for (const auto& [name, t] : tensors) w.add(name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
  w.write(path);
}

std::vector<float> floats_of(const StoredTensor& t) {
  std::vector<float> out(t.bytes.size() / 4);
  std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
  return out;
}

// Expects kInvalidFile whose message contains every needle.
void expect_invalid_file(const std::function<void()>& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing " << *needles.begin();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidFile) << e.what();
    for (const auto& n : needles) EXPECT_NE(e.message().find(n), std::string::npos) << "missing '" << n << "' in\n" << e.message();
  }
}

void expect_same(const PeftAdapter& loaded, const Adapter& saved) {
  ASSERT_EQ(loaded.targets.size(), saved.targets.size());
  for (size_t i = 0; i < saved.targets.size(); ++i) {
    const LoraTarget &a = loaded.targets[i], &b = saved.targets[i];
    EXPECT_EQ(a.module, b.module);
    EXPECT_EQ(a.base_param, b.base_param);
    EXPECT_EQ(a.experts, b.experts);
    EXPECT_EQ(a.out, b.out);
    EXPECT_EQ(a.in, b.in);
    EXPECT_EQ(a.rank, b.rank);
  }
  ASSERT_EQ(loaded.params.size(), saved.params.size());
  EXPECT_EQ(std::memcmp(loaded.params.data(), saved.params.data(), static_cast<size_t>(saved.params.size()) * 4), 0);
}

// A saved v3 adapter in a temporary directory, with the paths of its two files.
struct SavedV3 {
  test::TempDir tmp;
  Adapter adapter{"deepseek_v3", v3_config()};
  std::string dir = tmp.file("adapter");
  std::string config_path = dir + "/adapter_config.json";
  std::string tensors_path = dir + "/adapter_model.safetensors";
  SavedV3() { adapter.save(dir); }
  PeftAdapter load() const { return load_peft_adapter(dir, adapter.model); }
  void edit_config(const std::function<void(json&)>& edit) const {
    json j = read_json(config_path);
    edit(j);
    write_json(config_path, j);
  }
  void edit_tensors(const std::function<void(TensorMap&)>& edit) const {
    TensorMap t = read_tensors(tensors_path);
    edit(t);
    write_tensors(tensors_path, t);
  }
};

const std::string kExpert3GateA = "base_model.model.model.layers.1.mlp.experts.3.gate_proj.lora_A.weight";
const std::string kQaA = "base_model.model.model.layers.0.self_attn.q_a_proj.lora_A.weight";
const std::string kQaB = "base_model.model.model.layers.0.self_attn.q_a_proj.lora_B.weight";

}  // namespace

// ---------------------------------------------------------------------------------------------
// What is written

TEST(PeftSave, ConfigHasThePeftFields) {
  const SavedV3 s;
  const json j = read_json(s.config_path);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 4);
  EXPECT_TRUE(j["lora_alpha"].is_number_integer());  // 32, as PEFT writes an int alpha
  EXPECT_EQ(j["lora_alpha"], 32);
  EXPECT_EQ(j["lora_dropout"], 0.05);
  EXPECT_EQ(j["use_rslora"], true);
  // Sorted distinct leaf names: PEFT with the same base resolves the same modules.
  EXPECT_EQ(j["target_modules"], json({"down_proj", "gate_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "q_a_proj",
                                       "q_b_proj", "up_proj"}));
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["base_model_name_or_path"], "tiny/deepseek");
  EXPECT_EQ(j["fan_in_fan_out"], false);
  EXPECT_EQ(j["init_lora_weights"], true);
  EXPECT_TRUE(j["modules_to_save"].is_null());
  EXPECT_EQ(j["use_dora"], false);
  // What PEFT has no field for: the targets as given and the init seed.
  EXPECT_EQ(j["qaft"]["targets"], json({"all-linear"}));
  EXPECT_EQ(j["qaft"]["seed"], 7);
  // Only the two files: both were written to temporaries and renamed.
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(s.dir)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors"}));
}

TEST(PeftSave, TensorsAreF32WithPerExpertKeys) {
  const SavedV3 s;
  const SafetensorsFile f = SafetensorsFile::open(s.tensors_path);
  // 24 plain modules + 2 MoE layers x 3 projections x 8 experts, A and B each.
  EXPECT_EQ(f.size(), 2u * (24 + 48));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  for (const TensorInfo& info : f.infos()) EXPECT_EQ(info.dtype, DType::kF32) << info.name;

  ASSERT_TRUE(f.contains(kExpert3GateA));
  EXPECT_EQ(f.info(kExpert3GateA).shape, (std::vector<int64_t>{4, 32}));  // [r, C]
  const std::string b3 = "base_model.model.model.layers.1.mlp.experts.3.gate_proj.lora_B.weight";
  EXPECT_EQ(f.info(b3).shape, (std::vector<int64_t>{16, 4}));  // [I, r]
  EXPECT_EQ(f.info("base_model.model.model.layers.2.mlp.experts.7.down_proj.lora_A.weight").shape,
            (std::vector<int64_t>{4, 16}));  // [r, I]
  EXPECT_EQ(f.info(kQaA).shape, (std::vector<int64_t>{4, 32}));
  EXPECT_EQ(f.info(kQaB).shape, (std::vector<int64_t>{24, 4}));
  EXPECT_EQ(f.info("base_model.model.model.layers.2.mlp.shared_experts.down_proj.lora_B.weight").shape,
            (std::vector<int64_t>{32, 4}));
  EXPECT_FALSE(f.contains("base_model.model.model.layers.1.mlp.experts.gate_proj.lora_A.weight"));  // no stacked keys
  for (const std::string& n : f.names()) EXPECT_EQ(n.find("mlp.gate."), std::string::npos) << "router adapted: " << n;

  // Expert 3's tensor is slice [3] of the stacked parameter [E, r, in].
  const float* stacked = s.adapter.params.get("model.layers.1.mlp.experts.gate_proj.lora_A");
  EXPECT_EQ(std::memcmp(f.bytes(kExpert3GateA).data(), stacked + 3 * 4 * 32, 4 * 32 * 4), 0);
}

TEST(PeftSave, RegexTargetsAreWrittenAsTheRegexString) {
  test::TempDir tmp;
  LoraConfig c;
  c.rank = 2;
  c.target_regex = R"(model\.layers\.[12]\.mlp\.experts\.\d+\.(gate|up)_proj)";
  const Adapter a("deepseek_v3", c);
  a.save(tmp.file("a"));
  EXPECT_EQ(read_json(tmp.file("a/adapter_config.json"))["target_modules"], c.target_regex);
  const PeftAdapter loaded = load_peft_adapter(tmp.file("a"), a.model);
  EXPECT_EQ(loaded.config.target_regex, c.target_regex);
  expect_same(loaded, a);
}

TEST(PeftSave, RefusesTargetsOfAnotherModelAndParamsThatDoNotMatch) {
  test::TempDir tmp;
  const Adapter llama("llama", LoraConfig{});
  const ModelConfig v3 = tiny("deepseek_v3");
  EXPECT_THROW(save_peft_adapter(tmp.file("x"), v3, llama.config, llama.targets, llama.params, ""), Error);
  ParamStore<float> empty;
  EXPECT_THROW(save_peft_adapter(tmp.file("x"), llama.model, llama.config, llama.targets, empty, ""), Error);
  LoraConfig other_rank = llama.config;
  other_rank.rank = 2;
  EXPECT_THROW(save_peft_adapter(tmp.file("x"), llama.model, other_rank, llama.targets, llama.params, ""), Error);
  EXPECT_FALSE(fs::exists(tmp.file("x/adapter_config.json")));
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(PeftLoad, RoundTripIsBitExactForEveryFamily) {
  for (const auto& [family, text] : test::tiny_model_configs()) {
    test::TempDir tmp;
    LoraConfig c;
    c.rank = 3;
    c.alpha = 6.5;
    c.seed = 11;
    const Adapter a(family, c);
    a.save(tmp.file("a"));
    const PeftAdapter loaded = load_peft_adapter(tmp.file("a"), a.model);
    SCOPED_TRACE(family);
    expect_same(loaded, a);
    EXPECT_EQ(loaded.config.rank, 3);
    EXPECT_EQ(loaded.config.alpha, 6.5);
    EXPECT_EQ(loaded.config.targets, std::vector<std::string>{"all-linear"});
    EXPECT_EQ(loaded.config.seed, 11u);
    EXPECT_EQ(loaded.base_model, "tiny/deepseek");
  }
}

TEST(PeftLoad, ReadsTheConfigBack) {
  const SavedV3 s;
  const PeftAdapter loaded = s.load();
  expect_same(loaded, s.adapter);
  EXPECT_EQ(loaded.config.rank, 4);
  EXPECT_EQ(loaded.config.alpha, 32);
  EXPECT_TRUE(loaded.config.rslora);
  EXPECT_EQ(loaded.config.dropout, 0.05);
  EXPECT_DOUBLE_EQ(loaded.config.scale(), 32 / 2.0);  // alpha / sqrt(r)
}

TEST(PeftLoad, AcceptsAPeftWrittenConfigWithoutTheQaftObject) {
  const SavedV3 s;
  s.edit_config([](json& j) { j.erase("qaft"); });
  const PeftAdapter loaded = s.load();
  expect_same(loaded, s.adapter);
  EXPECT_EQ(loaded.config.targets, (std::vector<std::string>{"down_proj", "gate_proj", "kv_a_proj_with_mqa", "kv_b_proj",
                                                              "o_proj", "q_a_proj", "q_b_proj", "up_proj"}));
  // target_modules "all-linear" (a PEFT string) and no target_modules at all also load.
  s.edit_config([](json& j) { j["target_modules"] = "all-linear"; });
  EXPECT_EQ(s.load().config.targets, std::vector<std::string>{"all-linear"});
  s.edit_config([](json& j) { j.erase("target_modules"); });
  EXPECT_EQ(s.load().targets.size(), s.adapter.targets.size());
}

TEST(PeftLoad, AcceptsBf16AndF16Tensors) {
  for (const DType dtype : {DType::kBF16, DType::kF16}) {
    const SavedV3 s;
    const TensorMap original = read_tensors(s.tensors_path);
    s.edit_tensors([&](TensorMap& tensors) {
      for (auto& [name, t] : tensors) {
        std::vector<uint8_t> half(t.bytes.size() / 2);
        const std::vector<float> f = floats_of(t);
        for (size_t i = 0; i < f.size(); ++i) {
          const uint16_t h = dtype == DType::kBF16 ? bf16_from_float(f[i]) : fp16_from_float(f[i]);
          std::memcpy(&half[2 * i], &h, 2);
        }
        t = StoredTensor{dtype, t.shape, half};
      }
    });
    const PeftAdapter loaded = s.load();
    const float* a = loaded.params.get("model.layers.1.mlp.experts.gate_proj.lora_A") + 3 * 4 * 32;  // expert 3
    const std::vector<float> want = floats_of(original.at(kExpert3GateA));
    for (size_t i = 0; i < want.size(); ++i) {
      const float rounded = dtype == DType::kBF16 ? bf16_to_float(bf16_from_float(want[i]))
                                                  : fp16_to_float(fp16_from_float(want[i]));
      ASSERT_EQ(a[i], rounded) << dtype_name(dtype) << " at " << i;
    }
  }
}

// The keys are the truth: an adapter whose tensors cover fewer modules than target_modules implies
// (here: layer 2 dropped) loads those modules, keeps target_modules as written, and logs a warning.
TEST(PeftLoad, TheKeysDecideWhichModulesAreAdapted) {
  const SavedV3 s;
  s.edit_tensors([](TensorMap& t) { std::erase_if(t, [](const auto& kv) { return kv.first.find(".layers.2.") != std::string::npos; }); });
  const PeftAdapter loaded = s.load();
  EXPECT_EQ(loaded.targets.size(), 8u + 11u);  // layers 0 and 1
  for (const LoraTarget& t : loaded.targets) EXPECT_EQ(t.module.find(".layers.2."), std::string::npos);
  EXPECT_EQ(loaded.config.targets, std::vector<std::string>{"all-linear"});
  // Names this model lacks in target_modules do not matter either (k_proj is a llama module).
  s.edit_config([](json& j) {
    j.erase("qaft");
    j["target_modules"] = {"q_a_proj", "k_proj"};
  });
  EXPECT_EQ(s.load().targets.size(), 19u);
}

// ---------------------------------------------------------------------------------------------
// Errors (peft_io.h lists them; each is made here by editing a good adapter)

TEST(PeftLoadErrors, MissingFiles) {
  {
    const SavedV3 s;
    fs::remove(s.config_path);
    expect_invalid_file([&] { s.load(); }, {"missing adapter_config.json"});
  }
  {
    const SavedV3 s;
    fs::remove(s.tensors_path);
    expect_invalid_file([&] { s.load(); }, {"missing adapter_model.safetensors"});
  }
}

TEST(PeftLoadErrors, MalformedJson) {
  const SavedV3 s;
  std::ofstream(s.config_path) << "{\"r\": 4,";
  expect_invalid_file([&] { s.load(); }, {"adapter_config.json"});
}

TEST(PeftLoadErrors, RankAndAlphaMissingOrInvalid) {
  const SavedV3 s;
  const json good = read_json(s.config_path);
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = good;
    edit(j);
    write_json(s.config_path, j);
  };
  with([](json& j) { j.erase("r"); });
  expect_invalid_file([&] { s.load(); }, {"adapter_config.json: \"r\" is missing, expected a positive integer"});
  with([](json& j) { j["r"] = 0; });
  expect_invalid_file([&] { s.load(); }, {"\"r\" is 0"});
  with([](json& j) { j["r"] = "4"; });
  expect_invalid_file([&] { s.load(); }, {"\"r\" is \"4\""});
  with([](json& j) { j["r"] = 2.5; });
  expect_invalid_file([&] { s.load(); }, {"\"r\" is 2.5"});
  with([](json& j) { j.erase("lora_alpha"); });
  expect_invalid_file([&] { s.load(); }, {"\"lora_alpha\" is missing, expected a positive number"});
  with([](json& j) { j["lora_alpha"] = -16; });
  expect_invalid_file([&] { s.load(); }, {"\"lora_alpha\" is -16"});
  with([](json& j) { j["lora_dropout"] = 1.5; });
  expect_invalid_file([&] { s.load(); }, {"\"lora_dropout\" is 1.5"});
  with([](json& j) { j["peft_type"] = "IA3"; });
  expect_invalid_file([&] { s.load(); }, {"\"peft_type\" is \"IA3\""});
  with([](json& j) {
    j.erase("qaft");  // qaft's own target record takes precedence over target_modules
    j["target_modules"] = 3;
  });
  expect_invalid_file([&] { s.load(); }, {"\"target_modules\" is 3"});
}

TEST(PeftLoadErrors, DoraAndModulesToSave) {
  const SavedV3 s;
  s.edit_config([](json& j) { j["use_dora"] = true; });
  expect_invalid_file([&] { s.load(); }, {"\"use_dora\" is true"});
  s.edit_config([](json& j) {
    j["use_dora"] = false;
    j["modules_to_save"] = {"lm_head"};
  });
  expect_invalid_file([&] { s.load(); }, {"\"modules_to_save\" is [\"lm_head\"]"});
}

TEST(PeftLoadErrors, KeysThatAreNotAModuleOfThisModel) {
  const SavedV3 s;
  const TensorMap good = read_tensors(s.tensors_path);
  auto add = [&](const std::string& key) {
    TensorMap t = good;
    t[key] = t.at(kQaA);
    write_tensors(s.tensors_path, t);
  };
  // A llama module, the router, a module beyond the last layer, PEFT's unsaved adapter name.
  for (const std::string key : {"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight",
                                "base_model.model.model.layers.1.mlp.gate.lora_A.weight",
                                "base_model.model.model.layers.3.self_attn.q_a_proj.lora_A.weight",
                                "base_model.model.model.layers.0.self_attn.q_a_proj.lora_A.default.weight",
                                "model.layers.0.self_attn.q_a_proj.lora_A.weight",
                                "base_model.model.model.layers.1.mlp.experts.8.gate_proj.lora_A.weight"}) {
    add(key);
    expect_invalid_file([&] { s.load(); },
                        {"key '" + key + "' is not lora_A/lora_B of a module of this deepseek_v3 model",
                         "keys look like base_model.model.model.layers.0.self_attn.q_a_proj.lora_A.weight"});
  }
}

TEST(PeftLoadErrors, ShapesThatDoNotMatchTheBase) {
  const SavedV3 s;
  s.edit_tensors([](TensorMap& t) {
    StoredTensor& a = t.at(kQaA);
    a.shape = {4, 31};
    a.bytes.resize(4 * 31 * 4);
  });
  expect_invalid_file([&] { s.load(); },
                      {kQaA + " has shape [4, 31], expected [4, 32] for r = 4 and base module "
                              "model.layers.0.self_attn.q_a_proj [24, 32]"});
  // r in the config disagreeing with the tensors is the same error.
  const SavedV3 r8;
  r8.edit_config([](json& j) { j["r"] = 8; });
  expect_invalid_file([&] { r8.load(); }, {"has shape [4, ", "expected [8, ", "for r = 8"});
}

TEST(PeftLoadErrors, SomeExpertsOfALayerMissing) {
  const SavedV3 s;
  s.edit_tensors([](TensorMap& t) {
    t.erase("base_model.model.model.layers.1.mlp.experts.5.gate_proj.lora_A.weight");
    t.erase("base_model.model.model.layers.1.mlp.experts.5.gate_proj.lora_B.weight");
    t.erase("base_model.model.model.layers.1.mlp.experts.6.gate_proj.lora_A.weight");
    t.erase("base_model.model.model.layers.1.mlp.experts.6.gate_proj.lora_B.weight");
  });
  expect_invalid_file([&] { s.load(); },
                      {"model.layers.1.mlp.experts.gate_proj has adapters for 6 of its 8 experts (missing experts 5, 6)"});
}

TEST(PeftLoadErrors, AnAWithoutItsBAndTheReverse) {
  {
    const SavedV3 s;
    s.edit_tensors([](TensorMap& t) { t.erase(kQaB); });
    expect_invalid_file([&] { s.load(); }, {kQaA + " has no matching " + kQaB});
  }
  {
    const SavedV3 s;
    s.edit_tensors([](TensorMap& t) { t.erase(kExpert3GateA); });
    expect_invalid_file([&] { s.load(); }, {"experts.3.gate_proj.lora_B.weight has no matching " + kExpert3GateA});
  }
}

TEST(PeftLoadErrors, UnsupportedDtypesEmptyFilesAndNonFiniteValues) {
  const SavedV3 s;
  const TensorMap good = read_tensors(s.tensors_path);
  TensorMap t = good;
  {
    StoredTensor& a = t.at(kQaA);
    std::vector<uint8_t> f64(a.bytes.size() * 2);
    a = StoredTensor{DType::kF64, a.shape, f64};
  }
  write_tensors(s.tensors_path, t);
  expect_invalid_file([&] { s.load(); }, {kQaA + " has dtype F64, expected F32, BF16 or F16"});

  write_tensors(s.tensors_path, TensorMap{});
  expect_invalid_file([&] { s.load(); }, {"no LoRA tensors"});

  t = good;
  const float nan = std::nanf("");
  std::memcpy(t.at(kQaB).bytes.data() + 4 * 5, &nan, 4);
  write_tensors(s.tensors_path, t);
  expect_invalid_file([&] { s.load(); }, {kQaB + " holds a non-finite value nan at flat index 5"});
}
