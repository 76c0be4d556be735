// The training loop: it learns, two runs at one seed agree, a resumed run continues bit for bit,
// and bad settings or a mismatched checkpoint are clear errors.
#include "core/error.h"
#include "core/rng.h"
#include "train_fixtures.h"
#include "temp_dir.h"
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>

using namespace qaft;

namespace {

using test::motif_data;
using test::tiny;

struct TrainSetup {
  ModelConfig config = tiny("deepseek_v3");
  BatcherOptions batching{2, 32, BatchMode::kPack, true, 5, 0};
  TrainerOptions options;
  std::shared_ptr<const std::vector<Example>> data = motif_data(config, 16, 3);
  TrainSetup() {
    options.steps = 30;
    options.lr = LrSchedule{1e-2, 3, 30, LrDecay::kCosine, 0.1};
    options.adamw.weight_decay = 0.01;
  }
  ParamStore<float> init() const {
    ParamStore<float> p(model_param_specs(config));
    init_params_random(p, 17, 0.05, true);
    return p;
  }
};

}  // namespace

TEST(Trainer, LearnsAndIsDeterministicAtOneSeed) {
  TrainSetup r;
  Trainer a(r.config, r.init(), r.data, r.batching, r.options), b(r.config, r.init(), r.data, r.batching, r.options);
  std::vector<double> losses;
  for (int s = 0; s < 30; ++s) {
    const StepMetrics ma = a.step(), mb = b.step();
    EXPECT_EQ(ma.loss, mb.loss) << "step " << s;
    EXPECT_FALSE(ma.skipped);
    EXPECT_GT(ma.tokens, 0);
    losses.push_back(ma.loss);
  }
  EXPECT_LT(losses.back(), losses.front() * 0.8) << "loss did not fall: " << losses.front() << " -> " << losses.back();
  const ParamStore<float>& pa = a.params();
  const ParamStore<float>& pb = b.params();
  for (int64_t i = 0; i < pa.size(); ++i) ASSERT_EQ(pa.data()[i], pb.data()[i]) << i;
  // The router's correction bias is a buffer: training does not move it.
  const ParamStore<float> start = r.init();
  const char* bias = "model.layers.1.mlp.gate.e_score_correction_bias";
  for (int64_t e = 0; e < r.config.num_experts; ++e) EXPECT_EQ(pa.get(bias)[e], start.get(bias)[e]);
}

TEST(Trainer, ResumeFromACheckpointIsBitExact) {
  for (MomentPrecision mp : {MomentPrecision::kF32, MomentPrecision::kBF16}) {
    TrainSetup r;
    r.options.adamw.moments = mp;
    r.options.grad_accum = 2;
    test::TempDir dir;
    Trainer straight(r.config, r.init(), r.data, r.batching, r.options);
    std::vector<double> want;
    for (int s = 0; s < 6; ++s) want.push_back(straight.step().loss);

    Trainer first(r.config, r.init(), r.data, r.batching, r.options);
    for (int s = 0; s < 3; ++s) first.step();
    const std::string ckpt = (dir.path() / "ckpt").string();
    first.save_checkpoint(ckpt);
    first.save_checkpoint(ckpt);  // overwriting an existing checkpoint works
    Trainer resumed(r.config, r.init(), r.data, r.batching, r.options);
    resumed.load_checkpoint(ckpt);
    EXPECT_EQ(resumed.steps_done(), 3);
    for (int s = 3; s < 6; ++s) EXPECT_EQ(resumed.step().loss, want[static_cast<size_t>(s)]) << "step " << s;
    for (int64_t i = 0; i < straight.params().size(); ++i)
      ASSERT_EQ(straight.params().data()[i], resumed.params().data()[i]) << i;
  }
}

TEST(Trainer, BadSettingsAndMismatchedCheckpointsAreClearErrors) {
  TrainSetup r;
  TrainerOptions bad = r.options;
  bad.lr.peak = 0;
  EXPECT_THROW(Trainer(r.config, r.init(), r.data, r.batching, bad), Error);
  bad = r.options;
  bad.steps = 0;
  EXPECT_THROW(Trainer(r.config, r.init(), r.data, r.batching, bad), Error);
  EXPECT_THROW(Trainer(r.config, r.init(), std::make_shared<std::vector<Example>>(), r.batching, r.options), Error);

  test::TempDir dir;
  const std::string ckpt = (dir.path() / "ckpt").string();
  Trainer t(r.config, r.init(), r.data, r.batching, r.options);
  t.step();
  t.save_checkpoint(ckpt);
  BatcherOptions other = r.batching;
  other.seq_len = 16;
  Trainer u(r.config, r.init(), r.data, other, r.options);
  try {
    u.load_checkpoint(ckpt);
    FAIL() << "resumed a checkpoint made with another seq_len";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("seq_len"), std::string::npos) << e.message();
  }
  EXPECT_THROW(u.load_checkpoint((dir.path() / "missing").string()), Error);
  EXPECT_THROW(t.save_checkpoint("/proc/qaft-cannot-write/ckpt"), Error);
}
