// Frozen base weights for LoRA / QLoRA (model/frozen_weights.h): which parameters a frozen store
// holds, what each storage format costs per parameter and how far its values are from the fp32
// weight, that freezing a model leaves every other parameter untouched, and that loading a
// DeepSeek block-FP8 checkpoint keeps the file's codes and scales as they are.
#include "model/frozen_weights.h"

#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors_index.h"
#include "model/checkpoint.h"
#include "temp_dir.h"
#include "model_configs.h"
#include "numerics/bf16.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

using namespace qaft;
namespace fs = std::filesystem;

namespace {

std::string config_json(const std::string& family) {
  for (auto& [name, json] : test::tiny_model_configs())
    if (name == family) return json;
  ADD_FAILURE() << "no tiny config " << family;
  return {};
}

ModelConfig tiny_config(const std::string& family) { return model_config_from_json(config_json(family), family); }

// N(0, std²) values, deterministic.
std::vector<float> randn(int64_t n, uint64_t seed, float std) {
  std::vector<float> v(static_cast<size_t>(n));
  CounterRng(seed, 0).fill_normal(v.data(), n, 0.0f, std);
  return v;
}

std::vector<float> dequantized(const FrozenTensor& t, int64_t group) {
  std::vector<float> v(static_cast<size_t>(t.out * t.in));
  t.dequantize(group, v.data());
  return v;
}

bool bit_equal(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

// The (groups, out, in) a frozen store uses for a parameter.
struct Dims {
  int64_t groups, out, in;
};
Dims dims_of(const ParamSpec& spec) {
  if (spec.experts > 0) return {spec.shape[0], spec.shape[1], spec.shape[2]};
  return {0, spec.shape[0], spec.shape[1]};
}

constexpr BaseFormat kFrozenFormats[] = {BaseFormat::kBf16, BaseFormat::kFp8, BaseFormat::kNf4};

}  // namespace

// ---- Names ---------------------------------------------------------------------------------------

TEST(BaseFormat, NamesRoundTrip) {
  for (BaseFormat f : {BaseFormat::kF32, BaseFormat::kBf16, BaseFormat::kFp8, BaseFormat::kNf4})
    EXPECT_EQ(parse_base_format(base_format_name(f)), f);
  EXPECT_EQ(base_format_name(BaseFormat::kNf4), "nf4");
}

TEST(BaseFormat, UnknownNameErrorListsTheValidNames) {
  for (const char* bad : {"int4", "FP8", "", "bfloat16"}) {
    try {
      parse_base_format(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(e.message().find(std::string("\"") + bad + "\""), std::string::npos) << e.message();
      EXPECT_NE(e.message().find("f32, bf16, fp8, nf4"), std::string::npos) << e.message();
    }
  }
}

// ---- Which parameters are frozen -----------------------------------------------------------------

TEST(IsFrozenLinear, DeepSeekV3HoldsTheLayerLinearsAndTheStackedExperts) {
  ParamStore<float> p(model_param_specs(tiny_config("deepseek_v3")));
  auto frozen = [&](const char* name) { return is_frozen_linear(p.spec(name)); };
  // Attention (MLA) projections, the dense MLP of layer 0, the shared experts and routed experts.
  EXPECT_TRUE(frozen("model.layers.0.self_attn.q_a_proj.weight"));
  EXPECT_TRUE(frozen("model.layers.0.self_attn.q_b_proj.weight"));
  EXPECT_TRUE(frozen("model.layers.0.self_attn.kv_a_proj_with_mqa.weight"));
  EXPECT_TRUE(frozen("model.layers.0.self_attn.kv_b_proj.weight"));
  EXPECT_TRUE(frozen("model.layers.0.self_attn.o_proj.weight"));
  EXPECT_TRUE(frozen("model.layers.0.mlp.gate_proj.weight"));
  EXPECT_TRUE(frozen("model.layers.0.mlp.down_proj.weight"));
  EXPECT_TRUE(frozen("model.layers.1.mlp.shared_experts.up_proj.weight"));
  EXPECT_TRUE(frozen("model.layers.1.mlp.experts.gate_proj"));  // [E, I, C]
  EXPECT_TRUE(frozen("model.layers.2.mlp.experts.down_proj"));
  // Everything else stays in the float store.
  EXPECT_FALSE(frozen("model.embed_tokens.weight"));
  EXPECT_FALSE(frozen("lm_head.weight"));
  EXPECT_FALSE(frozen("model.norm.weight"));
  EXPECT_FALSE(frozen("model.layers.0.input_layernorm.weight"));
  EXPECT_FALSE(frozen("model.layers.0.self_attn.q_a_layernorm.weight"));
  EXPECT_FALSE(frozen("model.layers.0.self_attn.kv_a_layernorm.weight"));
  EXPECT_FALSE(frozen("model.layers.1.mlp.gate.weight"));  // the router, [E, C]
  EXPECT_FALSE(frozen("model.layers.1.mlp.gate.e_score_correction_bias"));
}

TEST(IsFrozenLinear, Qwen2MoeKeepsBiasesAndTheSharedExpertGate) {
  ParamStore<float> p(model_param_specs(tiny_config("qwen2_moe")));
  auto frozen = [&](const char* name) { return is_frozen_linear(p.spec(name)); };
  EXPECT_TRUE(frozen("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(frozen("model.layers.1.mlp.shared_expert.down_proj.weight"));
  EXPECT_TRUE(frozen("model.layers.1.mlp.experts.up_proj"));
  EXPECT_FALSE(frozen("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_FALSE(frozen("model.layers.1.mlp.shared_expert_gate.weight"));  // [1, C]
  EXPECT_FALSE(frozen("model.layers.1.mlp.gate.weight"));
}

TEST(IsFrozenLinear, IsExactlyWhatDeepSeekStoresAsFp8InEveryFamily) {
  for (auto& [name, json] : test::tiny_model_configs()) {
    int64_t frozen = 0;
    for (const ParamSpec& spec : model_param_specs(model_config_from_json(json, name))) {
      EXPECT_EQ(is_frozen_linear(spec), spec.fp8_in_checkpoint) << name << " " << spec.name;
      frozen += is_frozen_linear(spec);
    }
    EXPECT_GT(frozen, 0) << name;
  }
}

TEST(IsFrozenLinear, RecognisesLinearsByNameWithoutTheFp8Hint) {
  auto spec = [](std::string name, std::vector<int64_t> shape) {
    ParamSpec s;
    s.name = std::move(name);
    s.shape = std::move(shape);
    return s;
  };
  EXPECT_TRUE(is_frozen_linear(spec("model.layers.3.self_attn.o_proj.weight", {8, 8})));
  EXPECT_TRUE(is_frozen_linear(spec("model.layers.3.self_attn.kv_a_proj_with_mqa.weight", {8, 8})));
  EXPECT_FALSE(is_frozen_linear(spec("model.layers.3.mlp.gate.weight", {4, 8})));
  EXPECT_FALSE(is_frozen_linear(spec("model.layers.3.mlp.shared_expert_gate.weight", {1, 8})));
  EXPECT_FALSE(is_frozen_linear(spec("model.layers.3.self_attn.o_proj.bias", {8})));
  EXPECT_FALSE(is_frozen_linear(spec("lm_head.weight", {16, 8})));
}

// ---- One tensor ----------------------------------------------------------------------------------

TEST(FreezeTensor, BytesPerParameter) {
  // A [256, 512] linear: 131072 parameters, 2 × 4 FP8 scale blocks, 2048 NF4 blocks of 64.
  const int64_t out = 256, in = 512, n = out * in;
  const std::vector<float> w = randn(n, 1, 0.02f);
  const FrozenTensor bf16 = freeze_tensor(w.data(), 0, out, in, BaseFormat::kBf16);
  const FrozenTensor fp8 = freeze_tensor(w.data(), 0, out, in, BaseFormat::kFp8);
  const FrozenTensor nf4 = freeze_tensor(w.data(), 0, out, in, BaseFormat::kNf4);
  EXPECT_EQ(bf16.bytes(), 2 * n);
  EXPECT_EQ(fp8.bytes(), n + 2 * 4 * 4);  // 1 byte per code + one fp32 per 128×128 block
  // 0.5 byte per code + one 8-bit absmax per 64 + one fp32 absmax2 per 256 blocks + fp32 offset.
  EXPECT_EQ(nf4.bytes(), n / 2 + n / 64 + 4 * (n / 64 / 256) + 4);
  EXPECT_NEAR(static_cast<double>(nf4.bytes()) / static_cast<double>(n), 0.5159, 1e-4);

  // Stacked experts pay per group (per expert): [3, 200, 300] with partial edge blocks.
  const int64_t g = 3, o2 = 200, i2 = 300, n2 = o2 * i2;
  const std::vector<float> e = randn(g * n2, 2, 0.02f);
  EXPECT_EQ(freeze_tensor(e.data(), g, o2, i2, BaseFormat::kBf16).bytes(), g * n2 * 2);
  EXPECT_EQ(freeze_tensor(e.data(), g, o2, i2, BaseFormat::kFp8).bytes(), g * (n2 + 2 * 3 * 4));
  const int64_t blocks = (n2 + 63) / 64;  // 938
  EXPECT_EQ(freeze_tensor(e.data(), g, o2, i2, BaseFormat::kNf4).bytes(), g * (n2 / 2 + blocks + 4 * 4 + 4));
}

TEST(FreezeTensor, Bf16IsRoundToNearestEvenWithin2ToTheMinus8) {
  const int64_t out = 130, in = 70;
  const std::vector<float> w = randn(out * in, 3, 1.0f);
  const FrozenTensor t = freeze_tensor(w.data(), 0, out, in, BaseFormat::kBf16);
  const std::vector<float> x = dequantized(t, 0);
  for (size_t i = 0; i < w.size(); ++i) {
    ASSERT_EQ(x[i], bf16_to_float(bf16_from_float(w[i]))) << i;
    ASSERT_LE(std::fabs(x[i] - w[i]), std::ldexp(std::fabs(w[i]), -8)) << i;
  }
}

TEST(FreezeTensor, Fp8ErrorPerBlockIsAtMostASixteenthOfTheBlockAmax) {
  // Two groups of [300, 260] (3 × 3 blocks, partial at the edges); each row has its own magnitude
  // so that the blocks' scales differ by orders of magnitude.
  const int64_t g = 2, out = 300, in = 260;
  std::vector<float> w = randn(g * out * in, 4, 1.0f);
  for (int64_t r = 0; r < g * out; ++r)
    for (int64_t c = 0; c < in; ++c) w[static_cast<size_t>(r * in + c)] *= std::ldexp(1.0f, static_cast<int>(r % 17) - 8);
  const FrozenTensor t = freeze_tensor(w.data(), g, out, in, BaseFormat::kFp8);
  ASSERT_EQ(t.fp8_scales.size(), static_cast<size_t>(g * 3 * 3));
  for (int64_t e = 0; e < g; ++e) {
    const std::vector<float> x = dequantized(t, e);
    const float* we = w.data() + e * out * in;
    for (int64_t br = 0; br < 3; ++br)
      for (int64_t bc = 0; bc < 3; ++bc) {
        float amax = 0, err = 0;
        for (int64_t r = br * 128; r < std::min(out, br * 128 + 128); ++r)
          for (int64_t c = bc * 128; c < std::min(in, bc * 128 + 128); ++c) {
            amax = std::max(amax, std::fabs(we[r * in + c]));
            err = std::max(err, std::fabs(x[static_cast<size_t>(r * in + c)] - we[r * in + c]));
          }
        // The scale is the dequant multiplier amax / 448 (DeepSeek's weight_scale_inv).
        EXPECT_EQ(t.fp8_scales[static_cast<size_t>(e * 9 + br * 3 + bc)], amax / 448.0f) << e << " " << br << " " << bc;
        EXPECT_LE(err, amax / 16) << e << " " << br << " " << bc;
        EXPECT_GT(err, 0.0f);
      }
  }
}

TEST(FreezeTensor, Nf4ErrorIsWithinHalfTheWidestCodeGapOfTheBlockAbsmax) {
  // NF4 codes are at most 0.304 apart (between -1 and -0.696), so rounding to the nearest moves a
  // value by ≤ 0.152 · absmax of its 64-element block; the 8-bit double-quantized absmax adds a
  // little. On Gaussian weights the relative L2 error is about 10 %.
  const int64_t g = 2, out = 96, in = 200, n = out * in;
  const std::vector<float> w = randn(g * n, 5, 0.05f);
  const FrozenTensor t = freeze_tensor(w.data(), g, out, in, BaseFormat::kNf4);
  for (int64_t e = 0; e < g; ++e) {
    const std::vector<float> x = dequantized(t, e);
    const float* we = w.data() + e * n;
    double diff2 = 0, ref2 = 0;
    for (int64_t b = 0; b < n; b += 64) {
      float absmax = 0;
      for (int64_t i = b; i < std::min(n, b + 64); ++i) absmax = std::max(absmax, std::fabs(we[i]));
      for (int64_t i = b; i < std::min(n, b + 64); ++i) {
        const double d = static_cast<double>(x[static_cast<size_t>(i)]) - we[i];
        ASSERT_LE(std::fabs(d), 0.16 * absmax) << i;
        diff2 += d * d;
        ref2 += static_cast<double>(we[i]) * we[i];
      }
    }
    const double rel = std::sqrt(diff2 / ref2);
    EXPECT_LT(rel, 0.12) << e;
    EXPECT_GT(rel, 0.05) << e;  // 4 bits: clearly lossy
  }
}

TEST(FreezeTensor, Fp8FreezingAnFp8RepresentableWeightIsIdempotent) {
  // A weight that is already code · scale (the dequantized value of an FP8 tensor) freezes to the
  // same codes and scales: no drift when a frozen model is saved and frozen again.
  const int64_t g = 2, out = 200, in = 150;
  const std::vector<float> w = randn(g * out * in, 6, 0.3f);
  const FrozenTensor first = freeze_tensor(w.data(), g, out, in, BaseFormat::kFp8);
  std::vector<float> x(w.size());
  for (int64_t e = 0; e < g; ++e) first.dequantize(e, x.data() + e * out * in);
  const FrozenTensor second = freeze_tensor(x.data(), g, out, in, BaseFormat::kFp8);
  EXPECT_EQ(second.fp8_codes, first.fp8_codes);
  EXPECT_EQ(second.fp8_scales, first.fp8_scales);
  // The same holds for BF16 (a bf16 value rounds to itself).
  const FrozenTensor b1 = freeze_tensor(w.data(), g, out, in, BaseFormat::kBf16);
  for (int64_t e = 0; e < g; ++e) b1.dequantize(e, x.data() + e * out * in);
  EXPECT_EQ(freeze_tensor(x.data(), g, out, in, BaseFormat::kBf16).bf16, b1.bf16);
}

TEST(FreezeTensor, StackedGroupsAreFrozenIndependently) {
  // Group e of a stack is exactly the expert e frozen on its own.
  const int64_t g = 4, out = 40, in = 136, n = out * in;
  const std::vector<float> w = randn(g * n, 7, 0.1f);
  for (BaseFormat f : kFrozenFormats) {
    const FrozenTensor stack = freeze_tensor(w.data(), g, out, in, f);
    EXPECT_EQ(stack.num_groups(), g);
    for (int64_t e = 0; e < g; ++e) {
      const FrozenTensor alone = freeze_tensor(w.data() + e * n, 0, out, in, f);
      EXPECT_EQ(alone.num_groups(), 1);
      EXPECT_EQ(dequantized(stack, e), dequantized(alone, 0)) << base_format_name(f) << " group " << e;
    }
  }
}

TEST(FreezeTensor, DoubleDequantizationWidensTheFloatValues) {
  const int64_t g = 2, out = 33, in = 70;
  const std::vector<float> w = randn(g * out * in, 8, 0.1f);
  for (BaseFormat f : kFrozenFormats) {
    const FrozenTensor t = freeze_tensor(w.data(), g, out, in, f);
    std::vector<double> d(static_cast<size_t>(out * in));
    t.dequantize(1, d.data());
    const std::vector<float> x = dequantized(t, 1);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(d[i], static_cast<double>(x[i])) << base_format_name(f) << " " << i;
  }
}

TEST(FreezeTensor, RejectsF32GroupsOutOfRangeAndMismatchedStorage) {
  const std::vector<float> w = randn(8 * 8, 9, 1.0f);
  EXPECT_THROW(freeze_tensor(w.data(), 0, 8, 8, BaseFormat::kF32), Error);
  const FrozenTensor t = freeze_tensor(w.data(), 0, 8, 8, BaseFormat::kFp8);
  std::vector<float> x(64);
  EXPECT_THROW(t.dequantize(1, x.data()), Error);
  EXPECT_THROW(t.dequantize(-1, x.data()), Error);
  // A hand-assembled tensor whose arrays do not match its shape.
  for (BaseFormat f : kFrozenFormats) {
    FrozenTensor bad = freeze_tensor(w.data(), 0, 8, 8, f);
    bad.out = 16;
    std::vector<float> y(16 * 8);
    EXPECT_THROW(bad.dequantize(0, y.data()), Error) << base_format_name(f);
  }
  FrozenStore store;
  store.insert("a", t);
  EXPECT_THROW(store.insert("a", t), Error);
  EXPECT_EQ(store.find("b"), nullptr);
  EXPECT_EQ(store.bytes(), t.bytes());
}

// ---- A whole model ---------------------------------------------------------------------------------

class FreezeBaseModel : public ::testing::TestWithParam<std::tuple<std::string, BaseFormat>> {};

TEST_P(FreezeBaseModel, MovesExactlyTheFrozenLinearsAndKeepsTheRestBitIdentical) {
  const auto& [family, format] = GetParam();
  ParamStore<float> all(model_param_specs(tiny_config(family)));
  init_params_random(all, 11, 0.2, /*random_router_bias=*/true);
  const BaseModel m = freeze_base_model(all, format);
  EXPECT_EQ(m.format, format);

  std::set<std::string> want_frozen, got_frozen;
  std::vector<std::string> want_kept, got_kept;
  int64_t frozen_params = 0;
  for (const ParamSpec& spec : all.specs()) {
    if (is_frozen_linear(spec)) {
      want_frozen.insert(spec.name);
      frozen_params += spec.numel();
    } else {
      want_kept.push_back(spec.name);
    }
  }
  for (const auto& [name, t] : m.frozen.tensors()) got_frozen.insert(name);
  for (const ParamSpec& spec : m.params.specs()) got_kept.push_back(spec.name);
  EXPECT_EQ(got_frozen, want_frozen);
  EXPECT_EQ(got_kept, want_kept);  // same order as model_param_specs

  // Every kept parameter: the very same bits.
  for (const ParamSpec& spec : m.params.specs())
    EXPECT_TRUE(bit_equal(m.params.get(spec.name), all.get(spec.name), spec.numel())) << spec.name;
  // Every frozen one: what freeze_tensor makes of it.
  for (const ParamSpec& spec : all.specs()) {
    if (!is_frozen_linear(spec)) continue;
    const FrozenTensor* t = m.frozen.find(spec.name);
    ASSERT_NE(t, nullptr) << spec.name;
    const Dims d = dims_of(spec);
    EXPECT_EQ(t->groups, d.groups);
    EXPECT_EQ(t->out, d.out);
    EXPECT_EQ(t->in, d.in);
    EXPECT_EQ(t->format, format);
    const FrozenTensor want = freeze_tensor(all.get(spec.name), d.groups, d.out, d.in, format);
    for (int64_t e = 0; e < t->num_groups(); ++e) EXPECT_EQ(dequantized(*t, e), dequantized(want, e)) << spec.name;
  }

  // Tiny tensors pay relatively more for scales and statistics than real ones.
  const double per_param = static_cast<double>(m.frozen.bytes()) / static_cast<double>(frozen_params);
  const double want_per_param = format == BaseFormat::kBf16 ? 2.0 : format == BaseFormat::kFp8 ? 1.0 : 0.55;
  EXPECT_NEAR(per_param, want_per_param, format == BaseFormat::kBf16 ? 0.0 : 0.05);
}

INSTANTIATE_TEST_SUITE_P(Families, FreezeBaseModel,
                         ::testing::Combine(::testing::Values(std::string("deepseek_v3"), std::string("qwen2_moe")),
                                            ::testing::ValuesIn(kFrozenFormats)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::string(base_format_name(std::get<1>(info.param)));
                         });

TEST(FreezeBaseModel, F32KeepsEverythingInTheFloatStore) {
  ParamStore<float> all(model_param_specs(tiny_config("deepseek_v3")));
  init_params_random(all, 12, 0.2);
  const BaseModel m = freeze_base_model(all, BaseFormat::kF32);
  EXPECT_EQ(m.frozen.size(), 0u);
  ASSERT_EQ(m.params.size(), all.size());
  EXPECT_TRUE(bit_equal(m.params.data(), all.data(), all.size()));
}

// ---- Loading from a checkpoint -------------------------------------------------------------------

TEST(LoadBaseModel, Fp8CheckpointKeepsTheFileCodesAndScalesBitExactly) {
  const std::string json = config_json("deepseek_v3");
  const ModelConfig c = tiny_config("deepseek_v3");
  ParamStore<float> p(model_param_specs(c));
  init_params_random(p, 13, 0.3, true);
  for (ScaleFormat sf : {ScaleFormat::kFp32, ScaleFormat::kUe8m0}) {
    test::TempDir dir;
    save_checkpoint(p, json, dir.path().string(), {CheckpointFormat::kFp8Block, sf, 0});
    const ShardedCheckpoint ck = ShardedCheckpoint::open(dir.path().string());
    const ParamStore<float> ref = load_params<float>(ck, c);
    const BaseModel m = load_base_model(ck, c, BaseFormat::kFp8);
    bool requantizing_would_differ = false;
    for (const ParamSpec& spec : ref.specs()) {
      if (!is_frozen_linear(spec)) {
        EXPECT_TRUE(bit_equal(m.params.get(spec.name), ref.get(spec.name), spec.numel())) << spec.name;
        continue;
      }
      const FrozenTensor* t = m.frozen.find(spec.name);
      ASSERT_NE(t, nullptr) << spec.name;
      const int64_t per = t->out * t->in;
      const int64_t scales_per = static_cast<int64_t>(t->fp8_scales.size()) / t->num_groups();
      for (int64_t e = 0; e < t->num_groups(); ++e) {
        const std::string hf = spec.hf_name(e);
        const auto codes = ck.bytes(hf);
        const auto scales = ck.bytes(hf + "_scale_inv");
        ASSERT_EQ(codes.size(), static_cast<size_t>(per));
        ASSERT_EQ(scales.size(), static_cast<size_t>(scales_per) * sizeof(float));
        EXPECT_EQ(std::memcmp(t->fp8_codes.data() + e * per, codes.data(), codes.size()), 0) << hf;
        EXPECT_EQ(std::memcmp(t->fp8_scales.data() + e * scales_per, scales.data(), scales.size()), 0) << hf;
        // Dequantized: load_params' float values, bit for bit.
        EXPECT_TRUE(bit_equal(dequantized(*t, e).data(), ref.get(spec.name) + e * per, per)) << hf;
        const FrozenTensor requantized = freeze_tensor(ref.get(spec.name) + e * per, 0, t->out, t->in, BaseFormat::kFp8);
        requantizing_would_differ |= !std::equal(requantized.fp8_scales.begin(), requantized.fp8_scales.end(),
                                                 t->fp8_scales.begin() + e * scales_per);
      }
    }
    // Power-of-two (UE8M0) scales are not amax / 448: dequantize-then-requantize would change
    // them, so the check above really tells kept codes from requantized ones.
    if (sf == ScaleFormat::kUe8m0) {
      EXPECT_TRUE(requantizing_would_differ);
    }
  }
}

TEST(LoadBaseModel, OtherSourcesAreFrozenFromTheLoadedValues) {
  // BF16 checkpoints in every format, and an FP8 checkpoint held as BF16 or NF4: the same as
  // freezing what load_params returns. f32 is load_params itself.
  for (const char* family : {"deepseek_v3", "qwen2_moe"}) {
    const std::string json = config_json(family);
    const ModelConfig c = tiny_config(family);
    ParamStore<float> p(model_param_specs(c));
    init_params_random(p, 14, 0.2, true);
    for (CheckpointFormat cf : {CheckpointFormat::kBF16, CheckpointFormat::kFp8Block}) {
      test::TempDir dir;
      save_checkpoint(p, json, dir.path().string(), {cf, ScaleFormat::kFp32, 0});
      const ShardedCheckpoint ck = ShardedCheckpoint::open(dir.path().string());
      const ParamStore<float> ref = load_params<float>(ck, c);
      for (BaseFormat f : {BaseFormat::kF32, BaseFormat::kBf16, BaseFormat::kFp8, BaseFormat::kNf4}) {
        if (cf == CheckpointFormat::kFp8Block && f == BaseFormat::kFp8) continue;  // the test above
        const BaseModel m = load_base_model(ck, c, f);
        const BaseModel want = freeze_base_model(ref, f);
        const std::string what = std::string(family) + " " + std::string(base_format_name(f));
        ASSERT_EQ(m.params.size(), want.params.size()) << what;
        EXPECT_TRUE(bit_equal(m.params.data(), want.params.data(), want.params.size())) << what;
        ASSERT_EQ(m.frozen.size(), want.frozen.size()) << what;
        for (const auto& [name, t] : want.frozen.tensors()) {
          const FrozenTensor* got = m.frozen.find(name);
          ASSERT_NE(got, nullptr) << what << " " << name;
          EXPECT_EQ(got->bytes(), t.bytes()) << what << " " << name;
          for (int64_t e = 0; e < t.num_groups(); ++e)
            EXPECT_EQ(dequantized(*got, e), dequantized(t, e)) << what << " " << name << " group " << e;
        }
      }
    }
  }
}

TEST(LoadBaseModel, ReportsTheSameProblemsAsLoadParams) {
  // An FP8 checkpoint with a NaN in an expert (its block becomes NaN codes), a missing linear, a
  // routed expert without its weight_scale_inv and an unexpected tensor.
  const std::string json = config_json("deepseek_v3");
  const ModelConfig c = tiny_config("deepseek_v3");
  ParamStore<float> p(model_param_specs(c));
  init_params_random(p, 15, 0.2, true);
  const ParamSpec& down = p.spec("model.layers.1.mlp.experts.down_proj");
  p.get(down.name)[3 * (down.numel() / down.experts) + 5] = NAN;  // expert 3
  test::TempDir dir;
  save_checkpoint(p, json, dir.path().string(), {CheckpointFormat::kFp8Block, ScaleFormat::kFp32, 0});
  const std::string shard = dir.path().string() + "/" + ShardedWriter::shard_name(0, 1);
  const std::set<std::string> dropped = {"model.layers.0.self_attn.o_proj.weight",
                                         "model.layers.0.self_attn.o_proj.weight_scale_inv",
                                         "model.layers.2.mlp.experts.1.up_proj.weight_scale_inv"};
  {
    SafetensorsFile f = SafetensorsFile::open(shard);
    SafetensorsWriter w;
    for (const std::string& name : f.names()) {
      if (dropped.count(name)) continue;
      const TensorInfo& info = f.info(name);
      w.add(name, info.dtype, info.shape, f.bytes(name).data(), info.nbytes);
    }
    std::vector<float> extra(4, 1.0f);
    w.add("model.layers.0.mlp.extra.weight", DType::kF32, {4}, extra.data(), 16);
    w.write(shard + ".new");
  }
  fs::rename(shard + ".new", shard);
  SafetensorsIndex index = read_safetensors_index(dir.path().string() + "/model.safetensors.index.json");
  for (const std::string& name : dropped) index.weight_map.erase(name);
  index.weight_map["model.layers.0.mlp.extra.weight"] = ShardedWriter::shard_name(0, 1);
  write_safetensors_index(dir.path().string() + "/model.safetensors.index.json", index);

  const ShardedCheckpoint ck = ShardedCheckpoint::open(dir.path().string());
  std::string want;
  try {
    load_params<float>(ck, c);
    FAIL() << "load_params accepted a broken checkpoint";
  } catch (const Error& e) {
    want = e.message();
  }
  EXPECT_NE(want.find("4 problem(s)"), std::string::npos) << want;
  EXPECT_NE(want.find("model.layers.0.self_attn.o_proj.weight: missing"), std::string::npos) << want;
  EXPECT_NE(want.find("model.layers.2.mlp.experts.1.up_proj.weight: F8_E4M3 weight without its"), std::string::npos) << want;
  EXPECT_NE(want.find("model.layers.1.mlp.experts.3.down_proj.weight: non-finite"), std::string::npos) << want;
  EXPECT_NE(want.find("model.layers.0.mlp.extra.weight: unexpected"), std::string::npos) << want;
  for (BaseFormat f : {BaseFormat::kF32, BaseFormat::kBf16, BaseFormat::kFp8, BaseFormat::kNf4}) {
    try {
      load_base_model(ck, c, f);
      ADD_FAILURE() << base_format_name(f) << " accepted a broken checkpoint";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidFile);
      EXPECT_EQ(e.message(), want) << base_format_name(f);
    }
  }
}
