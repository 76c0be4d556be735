// LoRA fine-tuning and FP8 training through the Trainer:
//   - LoRA learns on every base format (F32, BF16, FP8, NF4) with QAT on and off, moving only the
//     adapters;
//   - gradient accumulation over micro-batches equals one large batch;
//   - two runs at one seed give identical losses; a resumed LoRA-QAT run continues bit for bit;
//   - the expert census counts the tokens of a crafted routing exactly and sees which experts'
//     adapters received gradient;
//   - FP8 and BF16 full training both learn, aux-loss-free balancing moves the router bias;
//   - bad settings are clear errors.
#include "core/error.h"
#include "temp_dir.h"
#include "train/trainer.h"
#include "train_fixtures.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace qaft;
using test::motif_data;
using test::tiny;

namespace {

struct LoraRun {
  ModelConfig config = tiny("deepseek_v3");
  BatcherOptions batching{2, 32, BatchMode::kPack, true, 5, 0};
  TrainerOptions options;
  LoraConfig lora;
  std::shared_ptr<const std::vector<Example>> data = motif_data(config, 16, 3);
  LoraRun() {
    options.steps = 12;
    options.lr = LrSchedule{1e-2, 2, 12, LrDecay::kCosine, 0.1};
    options.adamw.weight_decay = 0.0;
    options.qat.enabled = true;
    lora.rank = 4;
    lora.alpha = 8;
    lora.seed = 11;
  }
  ParamStore<float> base_params() const {
    ParamStore<float> p(model_param_specs(config));
    init_params_random(p, 17, 0.05, true);
    return p;
  }
  LoraSetup setup() const {
    LoraSetup s;
    s.config = lora;
    s.targets = resolve_lora_targets(config, lora);
    s.params = ParamStore<float>(lora_param_specs(s.targets));
    init_lora_params(s.params, s.targets, lora.seed);
    return s;
  }
  Trainer make(BaseFormat format = BaseFormat::kF32) const {
    return Trainer(config, freeze_base_model(base_params(), format), setup(), data, batching, options);
  }
};

std::vector<double> losses(Trainer& t, int64_t steps) {
  std::vector<double> out;
  for (int64_t i = 0; i < steps; ++i) out.push_back(t.step().loss);
  return out;
}

}  // namespace

TEST(LoraTrainer, LearnsOnEveryBaseFormatWithAndWithoutQatMovingOnlyTheAdapters) {
  for (BaseFormat format : {BaseFormat::kF32, BaseFormat::kBf16, BaseFormat::kFp8, BaseFormat::kNf4}) {
    for (bool qat : {false, true}) {
      LoraRun r;
      r.options.qat.enabled = qat;
      Trainer t = r.make(format);
      const std::vector<float> base_before(t.params().data(), t.params().data() + t.params().size());
      const double before = t.evaluate(r.data, 0).loss;  // every example, in the run's numerics
      losses(t, r.options.steps);
      const double after = t.evaluate(r.data, 0).loss;
      const std::string what = fmt::format("{} qat={}", base_format_name(format), qat);
      EXPECT_LT(after, 0.95 * before) << what << ": " << before << " -> " << after;
      EXPECT_EQ(t.skipped_steps(), 0) << what;
      const std::vector<float> base_after(t.params().data(), t.params().data() + t.params().size());
      EXPECT_EQ(base_before, base_after) << what << ": the frozen base moved";
      if (format != BaseFormat::kF32) {
        EXPECT_GT(t.base().frozen.size(), 0u) << what;
      }
    }
  }
}

TEST(LoraTrainer, FrozenBasesHoldFewerBytesPerParameter) {
  LoraRun r;
  const int64_t f32 = r.make(BaseFormat::kF32).state_bytes(), bf16 = r.make(BaseFormat::kBf16).state_bytes(),
                fp8 = r.make(BaseFormat::kFp8).state_bytes(), nf4 = r.make(BaseFormat::kNf4).state_bytes();
  EXPECT_LT(bf16, f32);
  EXPECT_LT(fp8, bf16);
  EXPECT_LT(nf4, fp8);
}

TEST(LoraTrainer, AccumulationOverMicroBatchesEqualsOneLargeBatch) {
  LoraRun big, small;
  big.batching.batch_size = 4;
  big.options.grad_accum = 1;
  small.batching.batch_size = 2;
  small.options.grad_accum = 2;
  for (LoraRun* r : {&big, &small}) {
    r->batching.shuffle = false;
    r->options.max_grad_norm = 0;
  }
  Trainer a = big.make(BaseFormat::kBf16), b = small.make(BaseFormat::kBf16);
  const StepMetrics ma = a.step(), mb = b.step();
  EXPECT_EQ(ma.tokens, mb.tokens);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-6 * ma.loss);
  EXPECT_NEAR(ma.grad_norm, mb.grad_norm, 1e-5 * ma.grad_norm);
  const ParamStore<float>& pa = a.trainable();
  const ParamStore<float>& pb = b.trainable();
  double worst = 0;
  for (int64_t i = 0; i < pa.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(pa.data()[i] - pb.data()[i])));
  EXPECT_LT(worst, 1e-6) << "adapters after one update differ";
  EXPECT_GT(ma.grad_norm, 0);
}

TEST(LoraTrainer, TwoRunsAtOneSeedAgreeAndResumeIsBitExact) {
  LoraRun r;
  r.lora.dropout = 0.0;
  Trainer a = r.make(BaseFormat::kFp8), b = r.make(BaseFormat::kFp8);
  EXPECT_EQ(losses(a, 4), losses(b, 4));

  test::TempDir dir;
  const std::string ck = (dir.path() / "ck").string();
  Trainer straight = r.make(BaseFormat::kNf4);
  const std::vector<double> all = losses(straight, 8);
  Trainer first = r.make(BaseFormat::kNf4);
  losses(first, 5);
  first.save_checkpoint(ck);
  Trainer resumed = r.make(BaseFormat::kNf4);
  resumed.load_checkpoint(ck);
  EXPECT_EQ(resumed.steps_done(), 5);
  const std::vector<double> rest = losses(resumed, 3);
  EXPECT_EQ(rest, std::vector<double>(all.begin() + 5, all.end()));
  const ParamStore<float>& x = straight.trainable();
  const ParamStore<float>& y = resumed.trainable();
  EXPECT_EQ(0, std::memcmp(x.data(), y.data(), sizeof(float) * static_cast<size_t>(x.size())));
  EXPECT_EQ(straight.census().to_json(), resumed.census().to_json());

  // A checkpoint of another configuration is refused, naming the setting.
  LoraRun other = r;
  other.lora.rank = 2;
  Trainer wrong = other.make(BaseFormat::kNf4);
  try {
    wrong.load_checkpoint(ck);
    FAIL() << "loaded a checkpoint of another rank";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lora_rank"), std::string::npos) << e.what();
  }
}

TEST(LoraTrainer, DropoutRunsAreDeterministicAndDifferFromNoDropout) {
  LoraRun r;
  r.options.qat.enabled = false;
  r.lora.dropout = 0.3;
  Trainer a = r.make(), b = r.make();
  const auto la = losses(a, 3);
  EXPECT_EQ(la, losses(b, 3));
  r.lora.dropout = 0.0;
  Trainer c = r.make();
  EXPECT_NE(la, losses(c, 3));
}

TEST(LoraTrainer, CensusCountsACraftedRoutingExactly) {
  // Router biases that send every token to experts 0, 1 and 2 (K = 3) in every MoE layer: they
  // see every token of every batch, the five others none, and only adapted experts that saw
  // tokens get a gradient (B starts at zero, so the first step's gradient reaches B only).
  LoraRun r;
  ParamStore<float> p = r.base_params();
  for (int64_t l = 0; l < r.config.num_layers; ++l) {
    if (!r.config.is_moe_layer(l)) continue;
    float* bias = p.get(fmt::format("model.layers.{}.mlp.gate.e_score_correction_bias", l));
    for (int64_t e = 0; e < r.config.num_experts; ++e) bias[e] = e < 3 ? 10.0f : 0.0f;
  }
  Trainer t(r.config, freeze_base_model(std::move(p), BaseFormat::kBf16), r.setup(), r.data, r.batching, r.options);
  const int64_t steps = 3;
  int64_t processed = 0;
  for (int64_t i = 0; i < steps; ++i) processed += t.step().processed_tokens;
  const ExpertCensus& c = t.census();
  ASSERT_EQ(c.layers, (std::vector<int64_t>{1, 2}));
  for (size_t l = 0; l < c.layers.size(); ++l) {
    for (int64_t e = 0; e < 8; ++e) {
      EXPECT_EQ(c.tokens[l][static_cast<size_t>(e)], e < 3 ? processed : 0) << "layer " << c.layers[l] << " expert " << e;
      EXPECT_EQ(c.adapter_grad[l][static_cast<size_t>(e)], e < 3 ? 1 : 0) << "layer " << c.layers[l] << " expert " << e;
    }
  }
  EXPECT_EQ(c.experts_without_tokens(), 10);
  EXPECT_EQ(c.adapters_without_gradient(), 10);
  const nlohmann::json j = c.to_json();
  EXPECT_EQ(j[0]["tokens"][0], processed);
  EXPECT_EQ(j[0]["adapter_received_gradient"][7], false);
}

TEST(LoraTrainer, EvaluationUsesTheTrainingNumericsWithoutChangingState) {
  LoraRun r;
  Trainer t = r.make(BaseFormat::kFp8);
  const EvalMetrics e1 = t.evaluate(r.data, 0), e2 = t.evaluate(r.data, 0);
  EXPECT_EQ(e1.loss, e2.loss);
  EXPECT_GT(e1.tokens, 0);
  EXPECT_NEAR(e1.perplexity(), std::exp(e1.loss), 1e-9);
  const EvalMetrics one = t.evaluate(r.data, 1);
  EXPECT_EQ(one.batches, 1);
  losses(t, 6);
  EXPECT_LT(t.evaluate(r.data, 0).loss, e1.loss);
  EXPECT_THROW(t.evaluate(std::make_shared<std::vector<Example>>(), 0), Error);
}

TEST(LoraTrainer, BadSettingsAreClearErrors) {
  LoraRun r;
  r.lora.dropout = 0.1;  // with QAT on
  try {
    r.make();
    FAIL() << "dropout with QAT accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dropout"), std::string::npos) << e.what();
  }
  LoraRun lr;
  lr.options.lr.peak = 0;
  EXPECT_THROW(lr.make(), Error);
  LoraRun empty;
  empty.data = std::make_shared<std::vector<Example>>();
  EXPECT_THROW(empty.make(), Error);
}

TEST(FullTraining, Fp8AndBf16RecipesLearnAndBalancingMovesTheRouterBias) {
  const ModelConfig config = tiny("deepseek_v3");
  auto data = motif_data(config, 16, 3);
  std::map<std::string, std::vector<double>> curves;
  for (GemmPrecision precision : {GemmPrecision::kFp8, GemmPrecision::kBf16}) {
    TrainerOptions o;
    o.steps = 20;
    o.lr = LrSchedule{1e-2, 3, 20, LrDecay::kCosine, 0.1};
    o.precision = precision;
    o.bias_update_speed = 1e-3;
    ParamStore<float> p(model_param_specs(config));
    init_params_random(p, 17, 0.05, true);
    const std::vector<float> bias0(p.get("model.layers.1.mlp.gate.e_score_correction_bias"),
                                   p.get("model.layers.1.mlp.gate.e_score_correction_bias") + 8);
    Trainer t(config, std::move(p), data, BatcherOptions{2, 32, BatchMode::kPack, true, 5, 0}, o);
    std::vector<double> l;
    double ratio = 0;
    for (int i = 0; i < 20; ++i) {
      const StepMetrics m = t.step();
      l.push_back(m.loss);
      ratio = m.max_load_ratio;
    }
    const std::string name = precision == GemmPrecision::kFp8 ? "fp8" : "bf16";
    EXPECT_LT(l.back(), 0.85 * l.front()) << name;
    EXPECT_GE(ratio, 1.0) << name;
    const float* bias = t.params().get("model.layers.1.mlp.gate.e_score_correction_bias");
    int moved = 0;
    for (int e = 0; e < 8; ++e) moved += std::fabs(bias[e] - bias0[static_cast<size_t>(e)]) > 5e-4f;
    EXPECT_GT(moved, 0) << name << ": balancing never moved the bias";
    curves[name] = l;
  }
  // The two recipes start from the same model and data: their first losses agree closely.
  EXPECT_NEAR(curves["fp8"][0], curves["bf16"][0], 0.05 * curves["bf16"][0]);
}
