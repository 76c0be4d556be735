// Which linears carry LoRA adapters (PEFT target_modules semantics, formats.md §5.3), the adapter
// parameters' names and shapes, PEFT's initialisation, and the start-of-run census.
//
// The tiny deepseek_v3 config (tests/model_configs.h) has 3 layers: layer 0 dense, layers 1-2 MoE
// with 8 routed experts and one shared expert. Shapes [out, in]: q_a_proj [24, 32],
// q_b_proj [48, 24], kv_a_proj_with_mqa [20, 32], kv_b_proj [56, 16], o_proj [32, 24],
// dense gate/up [48, 32], down [32, 48]; shared and routed gate/up [16, 32], down [32, 16].
#include "adapters/lora_targets.h"
#include "core/error.h"
#include "model_configs.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>

using namespace qaft;

namespace {

std::string config_json(const std::string& family) {
  for (auto& [name, json] : test::tiny_model_configs())
    if (name == family) return json;
  ADD_FAILURE() << "no tiny config " << family;
  return {};
}

ModelConfig tiny(const std::string& family) { return model_config_from_json(config_json(family), family); }

// deepseek_v3 without the q low-rank path: a plain q_proj as in V2-Lite.
ModelConfig tiny_v3_without_q_lora() {
  nlohmann::json j = nlohmann::json::parse(config_json("deepseek_v3"));
  j["q_lora_rank"] = nullptr;
  return model_config_from_json(j.dump(), "deepseek_v3 (q_lora_rank null)");
}

LoraConfig lora(std::vector<std::string> targets, int64_t rank = 8) {
  LoraConfig c;
  c.rank = rank;
  c.targets = std::move(targets);
  return c;
}

LoraConfig lora_regex(std::string regex, int64_t rank = 8) {
  LoraConfig c;
  c.rank = rank;
  c.target_regex = std::move(regex);
  return c;
}

std::vector<std::string> modules_of(const std::vector<LoraTarget>& targets) {
  std::vector<std::string> out;
  for (const LoraTarget& t : targets) out.push_back(t.module);
  return out;
}

// Runs fn, expecting kInvalidArgument whose message contains every needle; returns the message.
template <typename Fn>
std::string expect_invalid(Fn&& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing " << *needles.begin();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    for (const auto& n : needles) EXPECT_NE(e.message().find(n), std::string::npos) << "missing '" << n << "' in\n" << e.message();
    return e.message();
  }
  return {};
}

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Resolution per family

TEST(LoraTargets, AllLinearOnDeepSeekV3IsEveryDecoderLinearButTheRouter) {
  const auto targets = resolve_lora_targets(tiny("deepseek_v3"), lora({"all-linear"}));
  const std::vector<std::string> attention = {"self_attn.q_a_proj", "self_attn.q_b_proj",
                                              "self_attn.kv_a_proj_with_mqa", "self_attn.kv_b_proj",
                                              "self_attn.o_proj"};
  std::vector<std::string> want;
  for (int layer = 0; layer < 3; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    for (const auto& a : attention) want.push_back(p + a);
    const std::vector<std::string> mlp =
        layer == 0 ? std::vector<std::string>{"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
                   : std::vector<std::string>{"mlp.experts.gate_proj", "mlp.experts.up_proj", "mlp.experts.down_proj",
                                              "mlp.shared_experts.gate_proj", "mlp.shared_experts.up_proj",
                                              "mlp.shared_experts.down_proj"};
    for (const auto& m : mlp) want.push_back(p + m);
  }
  EXPECT_EQ(modules_of(targets), want);  // no mlp.gate (router), embed_tokens or lm_head

  const LoraTarget& q_a = targets[0];
  EXPECT_EQ(q_a.base_param, "model.layers.0.self_attn.q_a_proj.weight");
  EXPECT_EQ(q_a.experts, 0);
  EXPECT_EQ(q_a.out, 24);
  EXPECT_EQ(q_a.in, 32);
  EXPECT_EQ(q_a.rank, 8);
  EXPECT_EQ(q_a.a_name(), "model.layers.0.self_attn.q_a_proj.lora_A.weight");
  EXPECT_EQ(q_a.b_name(), "model.layers.0.self_attn.q_a_proj.lora_B.weight");

  const LoraTarget& down = targets[15];  // layer 1 routed experts down_proj [E, C, I]
  EXPECT_EQ(down.module, "model.layers.1.mlp.experts.down_proj");
  EXPECT_EQ(down.base_param, "model.layers.1.mlp.experts.down_proj");
  EXPECT_EQ(down.experts, 8);
  EXPECT_EQ(down.out, 32);
  EXPECT_EQ(down.in, 16);
  EXPECT_EQ(down.a_name(), "model.layers.1.mlp.experts.down_proj.lora_A");
}

TEST(LoraTargets, DeepSeekWithoutQLoraRankHasAPlainQProj) {
  const ModelConfig c = tiny_v3_without_q_lora();
  const auto targets = resolve_lora_targets(c, lora({"q_proj", "kv_b_proj"}));
  EXPECT_EQ(modules_of(targets),
            (std::vector<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.kv_b_proj",
                                      "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.kv_b_proj",
                                      "model.layers.2.self_attn.q_proj", "model.layers.2.self_attn.kv_b_proj"}));
  EXPECT_EQ(targets[0].out, 4 * 12);  // H · qk_head_dim
  EXPECT_EQ(targets[0].in, 32);
  expect_invalid([&] { resolve_lora_targets(c, lora({"q_a_proj"})); },
                 {"LoRA target 'q_a_proj' matches no module", "modules of this model: q_proj, kv_a_proj_with_mqa"});
}

TEST(LoraTargets, LlamaAndQwen2HaveQKVOAndADenseMlp) {
  for (const std::string family : {"llama", "qwen2"}) {
    const ModelConfig c = tiny(family);
    const auto all = resolve_lora_targets(c, lora({"all-linear"}));
    ASSERT_EQ(all.size(), 2u * 7u) << family;
    EXPECT_EQ(modules_of(all)[0], "model.layers.0.self_attn.q_proj");
    EXPECT_EQ(modules_of(all)[1], "model.layers.0.self_attn.k_proj");
    EXPECT_EQ(modules_of(all)[2], "model.layers.0.self_attn.v_proj");
    EXPECT_EQ(modules_of(all)[3], "model.layers.0.self_attn.o_proj");
    EXPECT_EQ(modules_of(all)[6], "model.layers.0.mlp.down_proj");
    // qwen2 ties lm_head to the embedding; neither is ever adapted.
    for (const LoraTarget& t : all) EXPECT_EQ(t.module.find("lm_head"), std::string::npos);

    const auto qv = resolve_lora_targets(c, lora({"q_proj", "v_proj"}, 4));
    EXPECT_EQ(modules_of(qv), (std::vector<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                                                        "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}))
        << family;
    EXPECT_EQ(qv[1].out, c.num_kv_heads * c.head_dim);  // GQA: v_proj [Hkv·D, C]
  }
}

TEST(LoraTargets, Qwen2MoeHasASharedExpertButItsGateAndTheRouterStayFrozen) {
  const ModelConfig c = tiny("qwen2_moe");  // layer 0 dense (mlp_only_layers), layer 1 MoE, 6 experts
  const auto all = resolve_lora_targets(c, lora({"all-linear"}));
  const auto m = modules_of(all);
  EXPECT_EQ(std::vector<std::string>(m.begin() + 7, m.end()),
            (std::vector<std::string>{"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj",
                                      "model.layers.1.self_attn.v_proj", "model.layers.1.self_attn.o_proj",
                                      "model.layers.1.mlp.experts.gate_proj", "model.layers.1.mlp.experts.up_proj",
                                      "model.layers.1.mlp.experts.down_proj", "model.layers.1.mlp.shared_expert.gate_proj",
                                      "model.layers.1.mlp.shared_expert.up_proj",
                                      "model.layers.1.mlp.shared_expert.down_proj"}));
  EXPECT_EQ(all[11].experts, 6);

  const auto shared = resolve_lora_targets(c, lora({"shared_expert.down_proj"}));
  EXPECT_EQ(modules_of(shared), std::vector<std::string>{"model.layers.1.mlp.shared_expert.down_proj"});

  expect_invalid([&] { resolve_lora_targets(c, lora({"shared_expert_gate"})); },
                 {"'shared_expert_gate' names shared_expert_gate, which qaft never adapts"});
  expect_invalid([&] { resolve_lora_targets(c, lora({"gate"})); }, {"'gate' names mlp.gate, which qaft never adapts"});
  expect_invalid([&] { resolve_lora_targets(c, lora_regex("lm_head")); }, {"matches only modules qaft never adapts (lm_head)"});
}

// ---------------------------------------------------------------------------------------------
// Names, regex, all-linear

TEST(LoraTargets, NamesMatchThePathOrItsTrailingComponents) {
  const ModelConfig c = tiny("deepseek_v3");
  // "down_proj" ends the dense, the routed and the shared down projections alike.
  EXPECT_EQ(modules_of(resolve_lora_targets(c, lora({"kv_b_proj", "down_proj"}))),
            (std::vector<std::string>{"model.layers.0.self_attn.kv_b_proj", "model.layers.0.mlp.down_proj",
                                      "model.layers.1.self_attn.kv_b_proj", "model.layers.1.mlp.experts.down_proj",
                                      "model.layers.1.mlp.shared_experts.down_proj", "model.layers.2.self_attn.kv_b_proj",
                                      "model.layers.2.mlp.experts.down_proj", "model.layers.2.mlp.shared_experts.down_proj"}));
  // More components narrow it down; a full path selects one module.
  EXPECT_EQ(modules_of(resolve_lora_targets(c, lora({"shared_experts.down_proj"}))),
            (std::vector<std::string>{"model.layers.1.mlp.shared_experts.down_proj",
                                      "model.layers.2.mlp.shared_experts.down_proj"}));
  EXPECT_EQ(modules_of(resolve_lora_targets(c, lora({"model.layers.2.self_attn.o_proj"}))),
            std::vector<std::string>{"model.layers.2.self_attn.o_proj"});
  // A name matches whole components only: "proj" is no module's last component.
  expect_invalid([&] { resolve_lora_targets(c, lora({"proj"})); }, {"LoRA target 'proj' matches no module"});
  // The stacked qaft parameter name is not an HF module path.
  expect_invalid([&] { resolve_lora_targets(c, lora({"mlp.experts.gate_proj"})); },
                 {"'mlp.experts.gate_proj' matches no module"});
  // Every name of a list must match something (a typo is an error, not a silently smaller adapter).
  expect_invalid([&] { resolve_lora_targets(c, lora({"q_a_proj", "k_proj"})); }, {"'k_proj' matches no module"});
}

TEST(LoraTargets, RegexMustMatchTheWholePath) {
  const ModelConfig c = tiny("deepseek_v3");
  EXPECT_EQ(modules_of(resolve_lora_targets(c, lora_regex(R"(model\.layers\.[12]\.mlp\.experts\.\d+\.(gate|up)_proj)"))),
            (std::vector<std::string>{"model.layers.1.mlp.experts.gate_proj", "model.layers.1.mlp.experts.up_proj",
                                      "model.layers.2.mlp.experts.gate_proj", "model.layers.2.mlp.experts.up_proj"}));
  // re.fullmatch: "o_proj" alone matches no full path.
  expect_invalid([&] { resolve_lora_targets(c, lora_regex("o_proj")); },
                 {"LoRA target_regex 'o_proj' matches no module", "modules of this model"});
  // ".*" is all-linear: the embedding, the routers and the LM head are skipped, not adapted.
  EXPECT_EQ(modules_of(resolve_lora_targets(c, lora_regex(".*"))),
            modules_of(resolve_lora_targets(c, lora({"all-linear"}))));
  // The regex wins over the name list when both are set.
  LoraConfig both = lora({"q_a_proj"});
  both.target_regex = R"(.*\.o_proj)";
  EXPECT_EQ(resolve_lora_targets(c, both).size(), 3u);
  expect_invalid([&] { resolve_lora_targets(c, lora_regex("(unclosed")); },
                 {"LoRA target_regex '(unclosed' does not compile"});
}

TEST(LoraTargets, NothingMatchingListsTheModulesOnce) {
  const std::string msg = expect_invalid(
      [] { resolve_lora_targets(tiny("deepseek_v3"), lora({"qkv"})); },
      {"LoRA target 'qkv' matches no module; modules of this model: q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj, "
       "o_proj, gate_proj, up_proj, down_proj, experts.{0..7}.gate_proj, experts.{0..7}.up_proj, "
       "experts.{0..7}.down_proj, shared_experts.gate_proj, shared_experts.up_proj, shared_experts.down_proj; "
       "never adapted: embed_tokens, mlp.gate, lm_head"});
  EXPECT_EQ(occurrences(msg, "q_a_proj"), 1u) << msg;  // shortened per layer, deduplicated
}

// ---------------------------------------------------------------------------------------------
// Routed experts all or none

TEST(LoraTargets, ASubsetOfALayersExpertsIsRefused) {
  const ModelConfig c = tiny("deepseek_v3");
  expect_invalid([&] { resolve_lora_targets(c, lora_regex(R"(.*experts\.[0-3]\.gate_proj)")); },
                 {"4 of the 8 routed experts of model.layers.1.mlp.experts.gate_proj are selected (experts 0, 1, 2, 3)"});
  expect_invalid([&] { resolve_lora_targets(c, lora({"experts.3.gate_proj"})); },
                 {"1 of the 8 routed experts of model.layers.1.mlp.experts.gate_proj", "(experts 3)"});
  // The union of the patterns decides: naming all 8 experts of layer 2 adapts that layer's stack.
  std::vector<std::string> names;
  for (int e = 0; e < 8; ++e) names.push_back("layers.2.mlp.experts." + std::to_string(e) + ".up_proj");
  EXPECT_EQ(modules_of(resolve_lora_targets(c, lora(names))),
            std::vector<std::string>{"model.layers.2.mlp.experts.up_proj"});
}

// ---------------------------------------------------------------------------------------------
// Configuration errors

TEST(LoraTargets, RankLargerThanAModuleNamesItAndItsShape) {
  const ModelConfig c = tiny("deepseek_v3");
  expect_invalid([&] { resolve_lora_targets(c, lora({"all-linear"}, 999)); },
                 {"LoRA rank 999 is larger than min(out, in) = 24 of model.layers.0.self_attn.q_a_proj [24, 32]"});
  // r = 17 fits q_a/q_b/kv_a but not kv_b_proj [56, 16].
  expect_invalid([&] { resolve_lora_targets(c, lora({"all-linear"}, 17)); },
                 {"min(out, in) = 16 of model.layers.0.self_attn.kv_b_proj [56, 16]"});
  expect_invalid([&] { resolve_lora_targets(c, lora({"experts.gate_proj"}, 17)); }, {"matches no module"});
  expect_invalid([&] { resolve_lora_targets(c, lora({"gate_proj"}, 17)); },
                 {"of model.layers.1.mlp.experts.gate_proj [16, 32] (each of 8 experts)"});
  EXPECT_EQ(resolve_lora_targets(c, lora({"gate_proj"}, 16)).size(), 5u);  // r = min(out, in) is fine
}

TEST(LoraTargets, InvalidConfigurationsAreRefused) {
  const ModelConfig c = tiny("llama");
  LoraConfig bad = lora({"all-linear"}, 0);
  expect_invalid([&] { resolve_lora_targets(c, bad); }, {"LoRA rank must be at least 1, got 0"});
  bad = lora({"all-linear"});
  bad.alpha = 0;
  expect_invalid([&] { resolve_lora_targets(c, bad); }, {"LoRA alpha must be positive"});
  bad = lora({"all-linear"});
  bad.dropout = 1.0;
  expect_invalid([&] { resolve_lora_targets(c, bad); }, {"LoRA dropout must be in [0, 1), got 1"});
  expect_invalid([&] { resolve_lora_targets(c, lora({})); }, {"no LoRA targets given"});
  expect_invalid([&] { resolve_lora_targets(c, lora({"all-linear", "q_proj"})); },
                 {"\"all-linear\" cannot be combined with other names"});
}

TEST(LoraConfig, ScaleIsAlphaOverRankOrOverItsRootWithRsLora) {
  LoraConfig c;  // r 8, alpha 16
  EXPECT_EQ(c.scale(), 2.0);
  c.rslora = true;
  EXPECT_DOUBLE_EQ(c.scale(), 16.0 / std::sqrt(8.0));
}

// ---------------------------------------------------------------------------------------------
// Adapter parameters

TEST(LoraParams, SpecNamesAndShapes) {
  const auto targets =
      resolve_lora_targets(tiny("deepseek_v3"), lora_regex(R"(model\.layers\.[01]\.(self_attn\.q_a_proj|mlp\.experts\.\d+\.gate_proj))", 4));
  ASSERT_EQ(modules_of(targets), (std::vector<std::string>{"model.layers.0.self_attn.q_a_proj", "model.layers.1.self_attn.q_a_proj",
                                                            "model.layers.1.mlp.experts.gate_proj"}));
  const auto specs = lora_param_specs(targets);
  ASSERT_EQ(specs.size(), 6u);
  EXPECT_EQ(specs[0].name, "model.layers.0.self_attn.q_a_proj.lora_A.weight");
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{4, 32}));  // [r, in]
  EXPECT_EQ(specs[1].name, "model.layers.0.self_attn.q_a_proj.lora_B.weight");
  EXPECT_EQ(specs[1].shape, (std::vector<int64_t>{24, 4}));  // [out, r]
  EXPECT_EQ(specs[1].experts, 0);
  const ParamSpec& a = specs[4];
  const ParamSpec& b = specs[5];
  EXPECT_EQ(a.name, "model.layers.1.mlp.experts.gate_proj.lora_A");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{8, 4, 32}));  // [E, r, in]
  EXPECT_EQ(a.experts, 8);
  EXPECT_EQ(a.hf_name(3), "model.layers.1.mlp.experts.3.gate_proj.lora_A.weight");
  EXPECT_EQ(b.name, "model.layers.1.mlp.experts.gate_proj.lora_B");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{8, 16, 4}));  // [E, out, r]
  EXPECT_EQ(b.hf_name(7), "model.layers.1.mlp.experts.7.gate_proj.lora_B.weight");
  for (const ParamSpec& s : specs) EXPECT_TRUE(s.trainable);
}

TEST(LoraParams, InitIsKaimingUniformAAndZeroB) {
  const ModelConfig c = tiny("deepseek_v3");
  const auto targets = resolve_lora_targets(c, lora({"all-linear"}, 4));
  ParamStore<float> p(lora_param_specs(targets)), same(lora_param_specs(targets)), other(lora_param_specs(targets));
  init_lora_params(p, targets, 42);
  init_lora_params(same, targets, 42);
  init_lora_params(other, targets, 43);

  for (const LoraTarget& t : targets) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(t.in));  // PEFT: kaiming_uniform(a=√5)
    const ParamSpec& sa = p.spec(t.a_name());
    const float* a = p.get(t.a_name());
    float lo = 0, hi = 0;
    for (int64_t i = 0; i < sa.numel(); ++i) {
      lo = std::min(lo, a[i]);
      hi = std::max(hi, a[i]);
    }
    EXPECT_GE(lo, -bound) << t.module;
    EXPECT_LE(hi, bound) << t.module;
    EXPECT_LT(lo, -0.5f * bound) << t.module;  // spread over the range, not all zero
    EXPECT_GT(hi, 0.5f * bound) << t.module;
    EXPECT_EQ(std::memcmp(a, same.get(t.a_name()), static_cast<size_t>(sa.numel()) * 4), 0) << "same seed, same A";
    EXPECT_NE(std::memcmp(a, other.get(t.a_name()), static_cast<size_t>(sa.numel()) * 4), 0) << "another seed";
    const float* b = p.get(t.b_name());
    for (int64_t i = 0; i < p.spec(t.b_name()).numel(); ++i) ASSERT_EQ(b[i], 0.0f) << t.module;
  }
  // Stacked experts get distinct A per expert.
  const float* experts_a = p.get("model.layers.1.mlp.experts.gate_proj.lora_A");  // [8, 4, 32]
  EXPECT_NE(std::memcmp(experts_a, experts_a + 4 * 32, 4 * 32 * 4), 0);

  // A module's A depends on (seed, module) only, not on which other modules are adapted.
  const auto one = resolve_lora_targets(c, lora({"model.layers.2.self_attn.o_proj"}, 4));
  ParamStore<float> q(lora_param_specs(one));
  init_lora_params(q, one, 42);
  const std::string name = "model.layers.2.self_attn.o_proj.lora_A.weight";
  EXPECT_EQ(std::memcmp(q.get(name), p.get(name), 4 * 24 * 4), 0);
}

// ---------------------------------------------------------------------------------------------
// Census

TEST(LoraCensus, AllLinearOnDeepSeekV3) {
  const ModelConfig c = tiny("deepseek_v3");
  const auto lines = lora_census_lines(c, resolve_lora_targets(c, lora({"all-linear"})));
  // 24 plain modules + 2 layers x 3 projections x 8 experts; r·(out + in) parameters each.
  EXPECT_EQ(parameter_count(c), 52008);
  EXPECT_EQ(lines, (std::vector<std::string>{
                       "LoRA r=8: 72 modules, 30,048 trainable parameters (58% of 52,008)",
                       "  q_a_proj [24, 32]: 3/3 layers, 1,344 parameters",
                       "  q_b_proj [48, 24]: 3/3 layers, 1,728 parameters",
                       "  kv_a_proj_with_mqa [20, 32]: 3/3 layers, 1,248 parameters",
                       "  kv_b_proj [56, 16]: 3/3 layers, 1,728 parameters",
                       "  o_proj [32, 24]: 3/3 layers, 1,344 parameters",
                       "  gate_proj [48, 32]: 1/1 layers, 640 parameters",
                       "  up_proj [48, 32]: 1/1 layers, 640 parameters",
                       "  down_proj [32, 48]: 1/1 layers, 640 parameters",
                       "  shared_experts.gate_proj [16, 32]: 2/2 layers, 768 parameters",
                       "  shared_experts.up_proj [16, 32]: 2/2 layers, 768 parameters",
                       "  shared_experts.down_proj [32, 16]: 2/2 layers, 768 parameters",
                       "  routed experts: 2/2 MoE layers x 8 experts x gate/up/down, 18,432 parameters",
                   }));
}

TEST(LoraCensus, PartialSelectionsSayWhatIsLeftOut) {
  const ModelConfig c = tiny("deepseek_v3");
  auto lines = lora_census_lines(
      c, resolve_lora_targets(c, lora_regex(R"(model\.layers\.1\.mlp\.experts\.\d+\.gate_proj|.*\.layers\.[01]\..*q_a_proj)", 2)));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "LoRA r=2: 10 modules, 992 trainable parameters (1.9% of 52,008)");
  EXPECT_EQ(lines[1], "  q_a_proj [24, 32]: 2/3 layers, 224 parameters");
  EXPECT_EQ(lines[2], "  routed experts: 1/2 MoE layers x 8 experts x gate, 768 parameters");

  lines = lora_census_lines(c, resolve_lora_targets(c, lora_regex(R"(.*layers\.1\.mlp\.experts\.\d+\.(gate|up)_proj|.*layers\.2\.mlp\.experts\.\d+\.gate_proj)", 2)));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "  routed experts: 3 layer projections in 2/2 MoE layers x 8 experts (gate/up), 2,304 parameters");
}
