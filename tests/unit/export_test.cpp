// `qaft export` (serve/export.h, infer/export_checkpoint.h): a deployment's live-merged weights
// written as an HF checkpoint reload as exactly what was served.
//   - FP8 export of a FP8 base + random LoRA on every linear (DeepSeek-V3 shape with several and
//     partial 128-blocks per weight, MoE), with fp32 and UE8M0 scales, W8A8 and W8A16: reloaded
//     with no adapter, every served code and scale is the same byte, every other served tensor the
//     same bits, and the logits of a prefill and of decode steps are bit-identical;
//   - BF16 export likewise (served with --precision bf16);
//   - the FP8 directory meets what vLLM/SGLang require of a block-FP8 DeepSeek checkpoint
//     (formats.md §1.7, §6): quantization_config fields, tensor names per expert, dtypes, scale
//     shapes, BF16 norms/router/embedding/head, F32 e_score_correction_bias, the index, the tokenizer;
//   - a base whose norms are not BF16 values is exported with them in F32 and still reloads bit for bit;
//   - the PEFT export copies the adapter byte for byte; bad inputs (no adapter, an adapter of another
//     base, an existing output, --scale-format for bf16, the model directory as output) are clear
//     errors and leave no output and no staging directory behind; --force replaces.
#include "core/error.h"
#include "infer_fixtures.h"
#include "io/safetensors_index.h"
#include "model/checkpoint.h"
#include "serve/deployment.h"
#include "serve/export.h"
#include "temp_dir.h"
#include "tiny_chat_tokenizer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

using namespace qaft;
using namespace qaft::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A base model directory (random weights of parity_config, saved in `format`, with the tiny chat
// tokenizer) and a random rank-8 adapter on every linear trained with `training` numerics.
struct Sources {
  TempDir tmp;
  std::string model, adapter;

  explicit Sources(CheckpointFormat format = CheckpointFormat::kFp8Block, const json& training = nullptr) {
    model = tmp.file("base");
    adapter = tmp.file("adapter");
    const ModelConfig c = parity_config();
    CheckpointOptions co;
    co.format = format;
    save_checkpoint(random_params(c, 5, 0.05), parity_config_json(), model, co);
    const TinyChatTokenizerFiles files = tiny_chat_tokenizer_files();
    std::ofstream(model + "/tokenizer.json") << files.tokenizer_json;
    std::ofstream(model + "/tokenizer_config.json") << files.config_json;
    const PeftAdapter a = random_adapter(c, 8, 16, 7, 0.05f, 0.05f);
    save_peft_adapter(adapter, c, a.config, a.targets, a.params, model, training);
  }
};

json qat_training(const char* scale_format, bool quantize_activations) {
  return {{"qat", true}, {"scale_format", scale_format}, {"quantize_activations", quantize_activations}};
}

std::unique_ptr<Deployment> load(const std::string& model, const std::string& adapter = "",
                                 Precision precision = Precision::kFp8) {
  DeploymentOptions o;
  o.model_dir = model;
  o.adapter_dir = adapter;
  o.precision = precision;
  return Deployment::load(o);
}

ExportReport export_to(const Sources& s, const std::string& out, ExportFormat format, bool adapter = true) {
  ExportOptions o;
  o.model_dir = s.model;
  o.adapter_dir = adapter ? s.adapter : "";
  o.format = format;
  o.output_dir = out;
  return export_model(o);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Every group of two served linears: the same codes and scales (FP8), or the same values (BF16).
void expect_same_linear(const InferLinear& a, const InferLinear& b, const std::string& what) {
  ASSERT_EQ(a.precision(), b.precision()) << what;
  ASSERT_EQ(a.groups(), b.groups()) << what;
  EXPECT_TRUE(same_bits(a.bias(), b.bias())) << what;
  for (int64_t g = 0; g < std::max<int64_t>(a.groups(), 1); ++g) {
    if (a.precision() == Precision::kFp8) {
      EXPECT_EQ(a.block(g).codes(), b.block(g).codes()) << what << " group " << g;
      EXPECT_TRUE(same_bits(a.block(g).scales(), b.block(g).scales())) << what << " group " << g;
      EXPECT_EQ(a.block(g).scale_format(), b.block(g).scale_format()) << what;
    } else {
      EXPECT_TRUE(same_bits(a.weight_values(g), b.weight_values(g))) << what << " group " << g;
    }
  }
}

void expect_same_weights(const ServingWeights& a, const ServingWeights& b) {
  EXPECT_TRUE(same_bits(a.embed, b.embed));
  EXPECT_TRUE(same_bits(a.head, b.head));
  EXPECT_TRUE(same_bits(a.final_norm, b.final_norm));
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const ServingLayer &x = a.layers[l], &y = b.layers[l];
    const std::string at = "layer " + std::to_string(l);
    EXPECT_TRUE(same_bits(x.norm1, y.norm1) && same_bits(x.norm2, y.norm2)) << at;
    expect_same_linear(x.mla.q_a, y.mla.q_a, at + " q_a");
    expect_same_linear(x.mla.q_b, y.mla.q_b, at + " q_b");
    expect_same_linear(x.mla.kv_a, y.mla.kv_a, at + " kv_a");
    expect_same_linear(x.mla.kv_b, y.mla.kv_b, at + " kv_b");
    expect_same_linear(x.mla.o, y.mla.o, at + " o");
    EXPECT_TRUE(same_bits(x.mla.q_a_norm, y.mla.q_a_norm) && same_bits(x.mla.kv_norm, y.mla.kv_norm)) << at;
    ASSERT_EQ(x.moe, y.moe) << at;
    if (!x.moe) {
      expect_same_linear(x.mlp.gate, y.mlp.gate, at + " gate");
      expect_same_linear(x.mlp.up, y.mlp.up, at + " up");
      expect_same_linear(x.mlp.down, y.mlp.down, at + " down");
      continue;
    }
    const ServingMoe &e = x.moe_ffn, &f = y.moe_ffn;
    EXPECT_TRUE(same_bits(e.router, f.router) && same_bits(e.bias, f.bias)) << at;
    expect_same_linear(e.gate, f.gate, at + " experts.gate");
    expect_same_linear(e.up, f.up, at + " experts.up");
    expect_same_linear(e.down, f.down, at + " experts.down");
    expect_same_linear(e.shared.gate, f.shared.gate, at + " shared.gate");
    expect_same_linear(e.shared.up, f.shared.up, at + " shared.up");
    expect_same_linear(e.shared.down, f.shared.down, at + " shared.down");
  }
}

// The logits of a 24-token prefill (every position) and of 4 greedy decode steps.
std::vector<float> run_logits(InferenceModel& m) {
  Sequence seq = m.new_sequence();
  std::vector<float> all = m.prefill(seq, random_tokens(24, m.config().vocab_size, 3), true);
  std::vector<float> last(all.end() - m.config().vocab_size, all.end());
  for (int step = 0; step < 4; ++step) {
    const auto next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    last = m.decode(seq, next);
    all.insert(all.end(), last.begin(), last.end());
  }
  return all;
}

// Export → reload (no adapter) → the same served model, bit for bit.
void expect_reload_serves_the_same(const Deployment& live, const std::string& exported, Precision precision) {
  const auto reloaded = load(exported, "", precision);
  const InferenceOptions &a = live.model().options(), &b = reloaded->model().options();
  EXPECT_EQ(a.precision, b.precision);
  EXPECT_EQ(a.scale_format, b.scale_format) << "the scale format must come back from config.json";
  EXPECT_EQ(a.quantize_activations, b.quantize_activations) << "W8A8/W8A16 must come back from qaft_serving";
  EXPECT_EQ(reloaded->model().merge_report().merged, 0);
  if (precision == Precision::kFp8) {  // every FP8 linear is taken as stored: nothing is re-quantized
    EXPECT_EQ(reloaded->model().merge_report().kept_fp8, live.model().merge_report().linears);
  }
  expect_same_weights(live.model().weights(), reloaded->model().weights());
  const std::vector<float> x = run_logits(const_cast<Deployment&>(live).model());
  const std::vector<float> y = run_logits(reloaded->model());
  ASSERT_EQ(x.size(), y.size());
  EXPECT_TRUE(same_bits(x, y)) << "logits differ: max relative error " << relative_max_error(y, x);
}

struct Case {
  const char* scale_format;
  bool quantize_activations;
};

class ExportFp8 : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(ExportFp8, ReloadServesTheLiveMergedModelBitForBit) {
  const Case c = GetParam();
  Sources s(CheckpointFormat::kFp8Block, qat_training(c.scale_format, c.quantize_activations));
  const auto live = load(s.model, s.adapter);
  ASSERT_GT(live->model().merge_report().merged, 0);
  ASSERT_EQ(scale_format_name(live->model().options().scale_format), c.scale_format);
  ASSERT_EQ(live->model().options().quantize_activations, c.quantize_activations);

  const ExportReport r = export_to(s, s.tmp.file("out"), ExportFormat::kFp8);
  EXPECT_EQ(r.fp8_weights, live->model().merge_report().linears);  // every served linear, each expert
  EXPECT_EQ(r.f32_not_bf16, 0) << "an FP8 checkpoint's norms are BF16 values";
  ASSERT_TRUE(r.serving.has_value());
  EXPECT_EQ(r.serving->quantize_activations, c.quantize_activations);
  expect_reload_serves_the_same(*live, r.output_dir, Precision::kFp8);

  const json cfg = json::parse(read_text(r.output_dir + "/config.json"));
  EXPECT_EQ(cfg["quantization_config"].contains("scale_fmt"), std::string(c.scale_format) == "ue8m0") << cfg.dump();
  EXPECT_EQ(cfg[kServingRecordKey]["quantize_activations"], c.quantize_activations);
  EXPECT_EQ(cfg[kServingRecordKey]["source"]["adapter"], fs::absolute(s.adapter).string());
}

INSTANTIATE_TEST_SUITE_P(ScalesAndActivations, ExportFp8,
                         ::testing::Values(Case{"fp32", true}, Case{"ue8m0", true}, Case{"fp32", false}),
                         [](const auto& info) {
                           return std::string(info.param.scale_format) + (info.param.quantize_activations ? "_W8A8" : "_W8A16");
                         });

TEST(Export, Bf16ReloadServesTheMergedBf16ModelBitForBit) {
  Sources s(CheckpointFormat::kBF16);
  const auto live = load(s.model, s.adapter, Precision::kBf16);
  const ExportReport r = export_to(s, s.tmp.file("out"), ExportFormat::kBf16);
  EXPECT_EQ(r.fp8_weights, 0);
  const json cfg = json::parse(read_text(r.output_dir + "/config.json"));
  EXPECT_FALSE(cfg.contains("quantization_config"));
  EXPECT_EQ(cfg["torch_dtype"], "bfloat16");
  EXPECT_EQ(cfg[kServingRecordKey]["precision"], "bf16");
  expect_reload_serves_the_same(*live, r.output_dir, Precision::kBf16);
  // Every weight in the files is BF16 (the served values are BF16; norms of a BF16 base too),
  // except the router's correction bias (F32).
  const ShardedCheckpoint ck = ShardedCheckpoint::open(r.output_dir);
  for (const std::string& name : ck.names())
    EXPECT_EQ(ck.info(name).dtype, name.ends_with("e_score_correction_bias") ? DType::kF32 : DType::kBF16) << name;
}

TEST(Export, Fp8DirectoryMeetsTheVllmSglangBlockFp8Requirements) {
  Sources s;
  const ExportReport r = export_to(s, s.tmp.file("out"), ExportFormat::kFp8);
  const ModelConfig c = parity_config();

  // config.json: what Fp8Config.from_config reads (both loaders), and the model's own fields kept.
  const json cfg = json::parse(read_text(r.output_dir + "/config.json"));
  const json& q = cfg["quantization_config"];
  EXPECT_EQ(q["quant_method"], "fp8");
  EXPECT_EQ(q["activation_scheme"], "dynamic");  // required with weight_block_size
  EXPECT_EQ(q["fmt"], "e4m3");
  EXPECT_EQ(q["weight_block_size"], json::array({128, 128}));
  EXPECT_EQ(cfg["model_type"], "deepseek_v3");
  EXPECT_EQ(cfg["architectures"], json::array({"DeepseekV3ForCausalLM"}));  // absent in the source: added
  EXPECT_FALSE(cfg.contains("num_nextn_predict_layers") && cfg["num_nextn_predict_layers"] != 0);
  EXPECT_EQ(cfg["hidden_size"], c.hidden_size);
  EXPECT_EQ(model_config_load(r.output_dir).fp8_checkpoint, true);

  // Tensors: exactly the model's, each linear F8_E4M3 [out, in] with F32 [cdiv(out,128), cdiv(in,128)].
  const ShardedCheckpoint ck = ShardedCheckpoint::open(r.output_dir);
  std::set<std::string> expected;
  for (const ParamSpec& spec : model_param_specs(c))
    for (int64_t e = 0; e < std::max<int64_t>(spec.experts, 1); ++e) {
      const std::string name = spec.hf_name(e);
      expected.insert(name);
      ASSERT_TRUE(ck.contains(name)) << name;
      const TensorInfo& t = ck.info(name);
      if (spec.fp8_in_checkpoint) {
        const std::vector<int64_t> shape(spec.shape.end() - 2, spec.shape.end());
        EXPECT_EQ(t.dtype, DType::kE4M3) << name;
        EXPECT_EQ(t.shape, shape) << name;
        ASSERT_TRUE(ck.contains(name + "_scale_inv")) << name;
        const TensorInfo& sc = ck.info(name + "_scale_inv");
        EXPECT_EQ(sc.dtype, DType::kF32) << name;
        EXPECT_EQ(sc.shape, (std::vector<int64_t>{(shape[0] + 127) / 128, (shape[1] + 127) / 128})) << name;
        expected.insert(name + "_scale_inv");
      } else {
        EXPECT_EQ(t.dtype, name.ends_with("e_score_correction_bias") ? DType::kF32 : DType::kBF16) << name;
        EXPECT_EQ(t.shape, spec.shape) << name;
      }
    }
  EXPECT_TRUE(ck.contains("model.layers.1.mlp.experts.7.down_proj.weight"));  // per expert, HF names
  EXPECT_EQ(ck.info("model.layers.0.self_attn.kv_b_proj.weight_scale_inv").shape, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(std::set<std::string>(ck.names().begin(), ck.names().end()), expected) << "no other tensors";

  // The index totals the tensors; every shard says {"format": "pt"}; the tokenizer came along.
  const SafetensorsIndex index = read_safetensors_index(r.output_dir + "/" + kSafetensorsIndexName);
  uint64_t total = 0;
  for (const std::string& name : ck.names()) total += ck.info(name).nbytes;
  EXPECT_EQ(index.total_size, total);
  for (const std::string& shard : index.shards())
    EXPECT_EQ(SafetensorsFile::open(r.output_dir + "/" + shard).metadata().at("format"), "pt");
  EXPECT_EQ(read_text(r.output_dir + "/tokenizer.json"), read_text(s.model + "/tokenizer.json"));
  EXPECT_EQ(read_text(r.output_dir + "/tokenizer_config.json"), read_text(s.model + "/tokenizer_config.json"));
  EXPECT_EQ(r.files, (std::vector<std::string>{"config.json", "model-00001-of-00001.safetensors", "model.safetensors.index.json",
                                               "tokenizer.json", "tokenizer_config.json"}));
  EXPECT_GT(r.bytes, total);
}

TEST(Export, SmallShardsSplitTheCheckpointAndReloadTheSame) {
  Sources s;
  const auto live = load(s.model, s.adapter);
  ExportOptions o;
  o.model_dir = s.model;
  o.adapter_dir = s.adapter;
  o.output_dir = s.tmp.file("out");
  o.max_shard_bytes = 256 << 10;
  const ExportReport r = export_model(o);
  EXPECT_GT(read_safetensors_index(r.output_dir + "/" + kSafetensorsIndexName).shards().size(), 3u);
  expect_reload_serves_the_same(*live, r.output_dir, Precision::kFp8);
}

TEST(Export, NormsThatAreNotBf16ValuesAreWrittenF32AndStillReloadBitForBit) {
  Sources s(CheckpointFormat::kF32);  // fp32 norms, router, embedding, head
  const auto live = load(s.model, s.adapter);
  const ExportReport r = export_to(s, s.tmp.file("out"), ExportFormat::kFp8);
  EXPECT_GT(r.f32_not_bf16, 0);
  const ShardedCheckpoint ck = ShardedCheckpoint::open(r.output_dir);
  EXPECT_EQ(ck.info("model.embed_tokens.weight").dtype, DType::kF32);
  EXPECT_EQ(ck.info("model.layers.0.self_attn.q_a_proj.weight").dtype, DType::kE4M3);
  expect_reload_serves_the_same(*live, r.output_dir, Precision::kFp8);
}

TEST(Export, BaseWithoutAdapterKeepsTheCheckpointsCodes) {
  Sources s;
  const ExportReport r = export_to(s, s.tmp.file("out"), ExportFormat::kFp8, /*adapter=*/false);
  EXPECT_EQ(r.merge.merged, 0);
  EXPECT_EQ(r.merge.kept_fp8, r.merge.linears);
  const ShardedCheckpoint a = ShardedCheckpoint::open(s.model), b = ShardedCheckpoint::open(r.output_dir);
  for (const std::string& name : a.names()) {
    const auto x = a.bytes(name), y = b.bytes(name);
    EXPECT_TRUE(std::equal(x.begin(), x.end(), y.begin(), y.end())) << name << " differs from the base checkpoint";
  }
}

TEST(Export, PeftCopiesTheCheckedAdapterByteForByte) {
  Sources s;
  const ExportReport r = export_to(s, s.tmp.file("out"), ExportFormat::kPeft);
  EXPECT_EQ(r.files, (std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors"}));
  EXPECT_GT(r.tensors, 0);
  for (const std::string& f : r.files) EXPECT_EQ(read_text(r.output_dir + "/" + f), read_text(s.adapter + "/" + f)) << f;
  EXPECT_FALSE(r.serving.has_value());
}

TEST(Export, BadInputsAreClearErrorsThatLeaveNothingBehind) {
  Sources s;
  auto error = [&](ExportOptions o) -> Error {
    try {
      export_model(o);
    } catch (const Error& e) {
      return e;
    }
    ADD_FAILURE() << "export succeeded";
    return Error(ErrorKind::kInternal, "", "");
  };
  ExportOptions o;
  o.model_dir = s.model;
  o.output_dir = s.tmp.file("out");

  o.format = ExportFormat::kPeft;  // no adapter to export
  Error e = error(o);
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(e.message().find("--adapter"), std::string::npos) << e.message();

  o.format = ExportFormat::kBf16;  // scales only exist in FP8
  o.scale_format = ScaleFormat::kUe8m0;
  e = error(o);
  EXPECT_NE(e.message().find("--scale-format"), std::string::npos) << e.message();
  o.scale_format.reset();

  // An adapter of another base (a wider model: shapes differ) names the key and both shapes.
  json wider = json::parse(parity_config_json());
  wider["hidden_size"] = 384;
  const ModelConfig w = model_config_from_json(wider.dump(), "wider");
  const PeftAdapter other = random_adapter(w, 4, 8, 1, 0.01f, 0.01f);
  save_peft_adapter(s.tmp.file("other"), w, other.config, other.targets, other.params, "another-model");
  for (ExportFormat f : {ExportFormat::kFp8, ExportFormat::kPeft}) {
    o.format = f;
    o.adapter_dir = s.tmp.file("other");
    e = error(o);
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidFile) << e.message();
    EXPECT_NE(e.message().find("has shape"), std::string::npos) << e.message();
  }
  EXPECT_FALSE(fs::exists(o.output_dir)) << "a failed export left its output";
  for (const auto& entry : fs::directory_iterator(s.tmp.path()))
    EXPECT_EQ(entry.path().filename().string().find(".staging."), std::string::npos) << entry.path();

  // An existing non-empty output is refused and left alone; --force replaces it; an empty one is fine.
  o.format = ExportFormat::kPeft;
  o.adapter_dir = s.adapter;
  fs::create_directories(o.output_dir);
  std::ofstream(o.output_dir + "/keep.txt") << "mine";
  e = error(o);
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(e.message().find("not empty"), std::string::npos) << e.message();
  EXPECT_NE(e.hint().find("--force"), std::string::npos) << e.hint();
  EXPECT_EQ(read_text(o.output_dir + "/keep.txt"), "mine");
  o.force = true;
  EXPECT_EQ(export_model(o).files.size(), 2u);
  EXPECT_FALSE(fs::exists(o.output_dir + "/keep.txt"));
  o.force = false;
  o.output_dir = s.tmp.file("empty");
  fs::create_directories(o.output_dir);
  EXPECT_EQ(export_model(o).files.size(), 2u);

  // A malformed serving record in an exported config.json names the field.
  const ExportReport fp8 = export_to(s, s.tmp.file("fp8"), ExportFormat::kFp8);
  json cfg = json::parse(read_text(fp8.output_dir + "/config.json"));
  cfg[kServingRecordKey]["quantize_activations"] = "yes";
  std::ofstream(fp8.output_dir + "/config.json") << cfg.dump();
  try {
    load(fp8.output_dir);
    ADD_FAILURE() << "a malformed qaft_serving record was accepted";
  } catch (const Error& bad) {
    EXPECT_EQ(bad.kind(), ErrorKind::kInvalidFile);
    EXPECT_NE(bad.message().find("\"qaft_serving\".\"quantize_activations\" must be true or false"), std::string::npos)
        << bad.message();
  }

  // The model directory itself as output, even with --force: refused before anything is touched.
  o.output_dir = s.model + "/";
  o.force = true;
  e = error(o);
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(e.message().find("is or contains the model directory"), std::string::npos) << e.message();
  EXPECT_TRUE(fs::exists(s.model + "/config.json"));
}
