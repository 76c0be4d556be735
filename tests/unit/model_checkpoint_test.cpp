// Config parsing, checkpoint loading (F32 / BF16 / DeepSeek block FP8, sharded), and the errors a
// user gets for a checkpoint that does not match its config.
#include "core/error.h"
#include "io/safetensors_index.h"
#include "model/checkpoint.h"
#include "model/transformer.h"
#include "model_configs.h"
#include "numerics/bf16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace qaft;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("qaft_ckpt_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string str() const { return path.string(); }
};

std::string config_of(const std::string& family) {
  for (auto& [name, json] : test::tiny_model_configs())
    if (name == family) return json;
  return {};
}

std::vector<float> logits_of(const std::string& dir) {
  const ModelConfig c = model_config_load(dir);
  ParamStore<float> p = load_params<float>(ShardedCheckpoint::open(dir), c);
  Transformer<float> m(c, &p, nullptr);
  std::vector<int32_t> ids = {1, 5, 9, 2, 7, 3, 8, 4};
  std::vector<float> out(ids.size() * static_cast<size_t>(c.vocab_size));
  Batch b{1, static_cast<int64_t>(ids.size()), ids.data(), nullptr, nullptr, nullptr, nullptr};
  m.logits(b, out.data());
  return out;
}

}  // namespace

TEST(ModelConfig, ReadsEveryFamily) {
  for (auto& [name, json] : test::tiny_model_configs()) {
    ModelConfig c = model_config_from_json(json, name);
    EXPECT_GT(parameter_count(c), 0) << name;
    EXPECT_LE(active_parameter_count(c), parameter_count(c)) << name;
  }
  ModelConfig v3 = model_config_from_json(config_of("deepseek_v3"), "v3");
  EXPECT_EQ(v3.attention, AttentionKind::kMla);
  EXPECT_EQ(v3.topk_method, TopkMethod::kNoauxTc);
  EXPECT_FALSE(v3.is_moe_layer(0));
  EXPECT_TRUE(v3.is_moe_layer(1));
  // mscale = 0.1·1·ln(4) + 1; scale = (8 + 4)^-0.5 · mscale².
  const double mscale = 0.1 * std::log(4.0) + 1.0;
  EXPECT_NEAR(v3.softmax_scale(), mscale * mscale / std::sqrt(12.0), 1e-15);
  ModelConfig lite = model_config_from_json(config_of("deepseek_v2_lite"), "lite");
  EXPECT_EQ(lite.q_lora_rank, 0);
  EXPECT_EQ(lite.shared_intermediate_size, 24);
  ModelConfig qm = model_config_from_json(config_of("qwen2_moe"), "qm");
  EXPECT_FALSE(qm.is_moe_layer(0));  // mlp_only_layers
  EXPECT_TRUE(qm.shared_expert_gate);
  EXPECT_TRUE(qm.qkv_bias);
}

TEST(ModelConfig, DeepSeekV3RealShapesGiveTheKnownParameterCount) {
  // The published DeepSeek-V3 config (formats.md §1.7): 671B parameters without the MTP module
  // (≈ 37B active per token).
  const std::string json = R"({"model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
    "num_attention_heads": 128, "num_key_value_heads": 128, "n_routed_experts": 256, "n_shared_experts": 1,
    "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "first_k_dense_replace": 3, "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "max_position_embeddings": 163840, "rope_scaling": {"type": "yarn", "factor": 40,
    "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
    "weight_block_size": [128, 128]}})";
  ModelConfig c = model_config_from_json(json, "v3");
  EXPECT_TRUE(c.fp8_checkpoint);
  EXPECT_NEAR(static_cast<double>(parameter_count(c)) / 1e9, 671.0, 1.0);
  EXPECT_NEAR(static_cast<double>(active_parameter_count(c)) / 1e9, 37.5, 1.0);
  EXPECT_NEAR(c.softmax_scale(), 0.1352338, 1e-6);  // formats.md §1.2
  // YaRN correction range for V3 is [10, 23] (formats.md §1.3): frequencies below 10 unchanged,
  // above 23 divided by the factor.
  auto f = c.rope_inv_freq();
  EXPECT_DOUBLE_EQ(f[9], std::pow(10000.0, -18.0 / 64));
  EXPECT_DOUBLE_EQ(f[24], std::pow(10000.0, -48.0 / 64) / 40);
}

TEST(ModelConfig, RejectsUnsupportedAndInconsistentConfigs) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {R"({"model_type": "gpt2"})", "model_type"},
      {R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 3, "intermediate_size": 8})", "not a multiple"},
      {R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 3, "intermediate_size": 8})", "num_key_value_heads"},
      {R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 8, "rope_scaling": {"type": "dynamic", "factor": 2}})",
       "rope_scaling.type"},
      {R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 8, "hidden_act": "gelu"})", "hidden_act"},
      {R"({"model_type": "qwen3_moe", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_experts": 4, "num_experts_per_tok": 5, "moe_intermediate_size": 4})",
       "num_experts_per_tok"},
      {R"({"model_type": "llama", "vocab_size": 10})", "hidden_size"},
      {R"({"model_type": "llama", "vocab_size": "ten", "hidden_size": 8})", "wrong type"},
      {R"(not json)", "config.json"},
  };
  for (const Case& c : cases) {
    try {
      model_config_from_json(c.json, "config.json");
      ADD_FAILURE() << "accepted: " << c.json;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.message()).find(c.message), std::string::npos) << e.message();
    }
  }
}

TEST(Checkpoint, Fp8LayoutGivesTheLogitsOfDequantizeThenBf16) {
  const std::string json = config_of("deepseek_v3");
  const ModelConfig c = model_config_from_json(json, "v3");
  ParamStore<float> p(model_param_specs(c));
  init_params_random(p, 3, 0.3, true);
  for (ScaleFormat sf : {ScaleFormat::kUe8m0, ScaleFormat::kFp32}) {
    TempDir fp8, bf16;
    save_checkpoint(p, json, fp8.str(), {CheckpointFormat::kFp8Block, sf, 0});
    // The FP8 files are in DeepSeek's layout.
    ShardedCheckpoint ck = ShardedCheckpoint::open(fp8.str());
    EXPECT_EQ(ck.info("model.layers.1.mlp.experts.3.down_proj.weight").dtype, DType::kE4M3);
    EXPECT_EQ(ck.info("model.layers.1.mlp.experts.3.down_proj.weight_scale_inv").dtype, DType::kF32);
    EXPECT_EQ(ck.info("model.layers.0.self_attn.q_a_proj.weight_scale_inv").shape, (std::vector<int64_t>{1, 1}));
    EXPECT_EQ(ck.info("model.layers.1.mlp.gate.weight").dtype, DType::kBF16);
    EXPECT_EQ(ck.info("model.layers.1.mlp.gate.e_score_correction_bias").dtype, DType::kF32);
    EXPECT_EQ(ck.info("model.norm.weight").dtype, DType::kBF16);
    EXPECT_TRUE(model_config_load(fp8.str()).fp8_checkpoint);
    // dequantize-then-BF16: what DeepSeek's fp8_cast_bf16 produces.
    ParamStore<float> deq = load_params<float>(ck, model_config_load(fp8.str()));
    save_checkpoint(deq, json, bf16.str(), {CheckpointFormat::kBF16, ScaleFormat::kFp32, 0});
    const std::vector<float> a = logits_of(fp8.str()), b = logits_of(bf16.str());
    ASSERT_EQ(a.size(), b.size());
    double worst = 0, diff2 = 0, ref2 = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
      diff2 += static_cast<double>(a[i] - b[i]) * (a[i] - b[i]);
      ref2 += static_cast<double>(b[i]) * b[i];
    }
    if (sf == ScaleFormat::kUe8m0) {
      // code · 2^k has at most 4 significant bits: exactly representable in BF16.
      EXPECT_EQ(worst, 0.0);
    } else {
      // fp32 scales: BF16 keeps 8 significant bits of each dequantized weight (relative error
      // ≤ 2^-9 ≈ 0.2 %); through three layers the logits move by about that much.
      const double rel = std::sqrt(diff2 / ref2);
      std::printf("fp32-scale FP8 vs dequantize-then-BF16: relative L2 of logits %.2e (max abs %.3g)\n", rel, worst);
      EXPECT_LT(rel, 1e-2);
      EXPECT_GT(rel, 0.0);
    }
  }
}

TEST(Checkpoint, RoundTripsF32ExactlyAndShards) {
  const std::string json = config_of("qwen3_moe");
  const ModelConfig c = model_config_from_json(json, "q");
  ParamStore<float> p(model_param_specs(c));
  init_params_random(p, 4, 0.1);
  TempDir dir;
  save_checkpoint(p, json, dir.str(), {CheckpointFormat::kF32, ScaleFormat::kFp32, 20000});
  ShardedCheckpoint ck = ShardedCheckpoint::open(dir.str());
  EXPECT_TRUE(ck.is_sharded());
  ParamStore<float> q = load_params<float>(ck, c);
  for (int64_t i = 0; i < p.size(); ++i) ASSERT_EQ(p.data()[i], q.data()[i]) << i;
}

TEST(Checkpoint, OneErrorListsEveryProblem) {
  const std::string json = config_of("llama");
  const ModelConfig c = model_config_from_json(json, "l");
  ParamStore<float> p(model_param_specs(c));
  init_params_random(p, 5, 0.1);
  p.get("model.layers.1.mlp.up_proj.weight")[7] = NAN;
  TempDir dir;
  save_checkpoint(p, json, dir.str(), {CheckpointFormat::kF32, ScaleFormat::kFp32, 0});
  // Rewrite the single shard without one tensor, with an extra one and a mis-shaped one, plus MTP.
  const std::string shard = dir.str() + "/" + ShardedWriter::shard_name(0, 1);
  SafetensorsFile f = SafetensorsFile::open(shard);
  SafetensorsWriter w;
  std::vector<float> small(4, 1.0f);
  for (const std::string& name : f.names()) {
    if (name == "model.layers.0.self_attn.k_proj.weight") continue;
    if (name == "model.norm.weight") {
      w.add(name, DType::kF32, {4}, small.data(), 16);
      continue;
    }
    const TensorInfo& info = f.info(name);
    w.add(name, info.dtype, info.shape, f.bytes(name).data(), info.nbytes);
  }
  w.add("model.layers.0.mlp.extra.weight", DType::kF32, {4}, small.data(), 16);
  w.add("model.layers.2.enorm.weight", DType::kF32, {4}, small.data(), 16);  // MTP layer: skipped
  w.write(shard + ".new");
  fs::rename(shard + ".new", shard);
  SafetensorsIndex index = read_safetensors_index(dir.str() + "/model.safetensors.index.json");
  index.weight_map.erase("model.layers.0.self_attn.k_proj.weight");
  index.weight_map["model.layers.0.mlp.extra.weight"] = ShardedWriter::shard_name(0, 1);
  index.weight_map["model.layers.2.enorm.weight"] = ShardedWriter::shard_name(0, 1);
  write_safetensors_index(dir.str() + "/model.safetensors.index.json", index);
  try {
    load_params<float>(ShardedCheckpoint::open(dir.str()), c);
    FAIL() << "loaded a broken checkpoint";
  } catch (const Error& e) {
    const std::string m = e.message();
    EXPECT_NE(m.find("4 problem(s)"), std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.0.self_attn.k_proj.weight: missing"), std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.0.mlp.extra.weight: unexpected"), std::string::npos) << m;
    EXPECT_NE(m.find("model.norm.weight: shape [4], expected [32]"), std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.1.mlp.up_proj.weight: non-finite"), std::string::npos) << m;
    EXPECT_EQ(m.find("enorm"), std::string::npos) << m;
  }
}

TEST(Model, RejectsBadBatches) {
  const ModelConfig c = model_config_from_json(config_of("llama"), "l");
  ParamStore<float> p(model_param_specs(c));
  init_params_random(p, 5, 0.1);
  Transformer<float> m(c, &p, nullptr);
  std::vector<int32_t> ids = {1, 2, 500};
  EXPECT_THROW(m.forward(Batch{1, 3, ids.data(), nullptr, nullptr, nullptr, nullptr}), Error);  // id ≥ V
  EXPECT_THROW(m.forward(Batch{0, 3, ids.data(), nullptr, nullptr, nullptr, nullptr}), Error);  // empty
  std::vector<int32_t> longer(600, 1);
  EXPECT_THROW(m.forward(Batch{1, 600, longer.data(), nullptr, nullptr, nullptr, nullptr}), Error);  // > max positions
}
