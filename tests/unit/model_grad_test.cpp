// Whole-model backward against central finite differences in float64, for a tiny model of every
// family: every parameter tensor is probed at a few random entries (and every entry of the small
// ones). This covers each layer's *_backward as composed by the reverse layer loop.
#include "core/rng.h"
#include "model/transformer.h"
#include "model_configs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

using namespace qaft;

namespace {

struct Probe {
  std::vector<int32_t> ids, targets;
  std::vector<float> weights;
  int64_t B = 2, T = 7;
};

Probe make_batch(const ModelConfig& c, uint64_t seed) {
  Probe p;
  CounterRng rng(seed, 3);
  for (int64_t i = 0; i < p.B * p.T; ++i) {
    p.ids.push_back(static_cast<int32_t>(rng.u32(static_cast<uint64_t>(i)) % c.vocab_size));
    p.targets.push_back(i % 5 == 4 ? -100 : static_cast<int32_t>(rng.u32(static_cast<uint64_t>(i + 1000)) % c.vocab_size));
    p.weights.push_back(i % 3 == 0 ? 0.5f : 1.0f);
  }
  return p;
}

double loss_of(Transformer<double>& model, const Probe& p) {
  Batch b{p.B, p.T, p.ids.data(), p.targets.data(), p.weights.data(), nullptr, nullptr};
  return model.forward(b).loss_sum;
}

}  // namespace

class ModelGrad : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(ModelGrad, BackwardMatchesFiniteDifferences) {
  const ModelConfig c = model_config_from_json(GetParam().second, GetParam().first);
  ParamStore<double> params(model_param_specs(c)), grads(model_param_specs(c));
  init_params_random(params, 11, 0.2, /*random_router_bias=*/true);
  Transformer<double> model(c, &params, &grads);
  const Probe p = make_batch(c, 5);
  Batch b{p.B, p.T, p.ids.data(), p.targets.data(), p.weights.data(), nullptr, nullptr};
  model.forward(b);
  model.backward(1.0);

  const double eps = 1e-6;
  double worst = 0;
  std::string worst_at;
  CounterRng pick(7, 0);
  uint64_t draw = 0;
  for (const ParamSpec& spec : params.specs()) {
    double* w = params.get(spec.name);
    const double* g = grads.get(spec.name);
    const int64_t n = spec.numel();
    const int64_t probes = std::min<int64_t>(n, 6);
    for (int64_t j = 0; j < probes; ++j) {
      const int64_t i = n <= 6 ? j : static_cast<int64_t>(pick.u32(draw++) % static_cast<uint32_t>(n));
      const double saved = w[i];
      w[i] = saved + eps;
      const double lp = loss_of(model, p);
      w[i] = saved - eps;
      const double lm = loss_of(model, p);
      w[i] = saved;
      const double fd = spec.trainable ? (lp - lm) / (2 * eps) : 0.0;
      const double err = std::fabs(fd - g[i]) / std::max(1e-3, std::fabs(fd) + std::fabs(g[i]));
      if (err > worst) {
        worst = err;
        worst_at = spec.name + "[" + std::to_string(i) + "] fd=" + std::to_string(fd) + " analytic=" + std::to_string(g[i]);
      }
    }
  }
  std::printf("%s: worst relative error %.2e at %s\n", GetParam().first.c_str(), worst, worst_at.c_str());
  // Central differences in float64 with eps 1e-6: truncation ~eps², rounding ~1e-16/eps ≈ 1e-10.
  EXPECT_LT(worst, 1e-5) << "worst relative error at " << worst_at;
}

INSTANTIATE_TEST_SUITE_P(Families, ModelGrad, ::testing::ValuesIn(test::tiny_model_configs()),
                         [](const auto& info) { return info.param.first; });

TEST(Recompute, GivesTheSameGradientsBitForBitWithLessSavedMemory) {
  for (auto& [name, json] : test::tiny_model_configs()) {
    const ModelConfig c = model_config_from_json(json, name);
    ParamStore<float> params(model_param_specs(c)), g1(model_param_specs(c)), g2(model_param_specs(c));
    init_params_random(params, 12, 0.2, true);
    const Probe p = make_batch(c, 9);
    Batch b{p.B, p.T, p.ids.data(), p.targets.data(), p.weights.data(), nullptr, nullptr};
    Transformer<float> plain(c, &params, &g1), ckpt(c, &params, &g2);
    ckpt.set_recompute(true);
    const double l1 = plain.forward(b).loss_sum, l2 = ckpt.forward(b).loss_sum;
    EXPECT_EQ(l1, l2) << name;
    EXPECT_LT(ckpt.saved_activation_bytes() * 3, plain.saved_activation_bytes()) << name;
    plain.backward(1.0f);
    ckpt.backward(1.0f);
    for (int64_t i = 0; i < g1.size(); ++i) ASSERT_EQ(g1.data()[i], g2.data()[i]) << name << " element " << i;
  }
}
