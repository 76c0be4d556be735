// AdamW against torch.optim.AdamW (Debian's python3-torch), schedules, clipping, BF16 moments and
// bit-exact state export/import.
#include "core/error.h"
#include "core/rng.h"
#include "optim/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace qaft;

namespace {
std::vector<float> randn(int64_t n, uint64_t seed, float std = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  CounterRng(seed, 0).fill_normal(v.data(), n, 0.0f, std);
  return v;
}
}  // namespace

TEST(AdamW, MatchesTorchOptimAdamW) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 cannot import torch (scripts/setup installs python3-torch)";
  const int64_t n = 1000, steps = 20;
  std::vector<float> p = randn(n, 1), p0 = p;
  std::vector<std::vector<float>> grads;
  for (int64_t s = 0; s < steps; ++s) grads.push_back(randn(n, 100 + static_cast<uint64_t>(s), 0.1f));
  AdamWConfig cfg;
  cfg.weight_decay = 0.05;
  AdamW opt(cfg, n);
  LrSchedule sched{1e-2, 3, steps, LrDecay::kCosine, 0.1};
  for (int64_t s = 0; s < steps; ++s) opt.step(p.data(), grads[static_cast<size_t>(s)].data(), sched.at(s));

  const auto dir = std::filesystem::temp_directory_path() / ("qaft_adamw_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir / "in.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(p0.data()), static_cast<std::streamsize>(n * 4));
    for (auto& g : grads) f.write(reinterpret_cast<const char*>(g.data()), static_cast<std::streamsize>(n * 4));
    std::ofstream lr(dir / "lr.txt");
    lr.precision(17);
    for (int64_t s = 0; s < steps; ++s) lr << sched.at(s) << "\n";
  }
  const std::string script = R"(
import sys, numpy as np, torch
d = sys.argv[1]; n = 1000; steps = 20
raw = np.fromfile(d + '/in.bin', dtype=np.float32)
p = torch.nn.Parameter(torch.from_numpy(raw[:n].copy()))
lrs = [float(x) for x in open(d + '/lr.txt')]
opt = torch.optim.AdamW([p], lr=lrs[0], betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05, foreach=False)
for s in range(steps):
    p.grad = torch.from_numpy(raw[n * (s + 1): n * (s + 2)].copy())
    for g in opt.param_groups: g['lr'] = lrs[s]
    opt.step()
p.detach().numpy().astype(np.float32).tofile(d + '/out.bin')
)";
  std::ofstream(dir / "ref.py") << script;
  ASSERT_EQ(std::system(("/usr/bin/python3 " + (dir / "ref.py").string() + " " + dir.string()).c_str()), 0);
  std::vector<float> ref(static_cast<size_t>(n));
  std::ifstream(dir / "out.bin", std::ios::binary).read(reinterpret_cast<char*>(ref.data()), n * 4);
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(p[static_cast<size_t>(i)]) - ref[static_cast<size_t>(i)]) /
                                (std::fabs(static_cast<double>(ref[static_cast<size_t>(i)])) + 1e-3));
  // Same formula; only the order of float32 roundings differs.
  EXPECT_LT(worst, 1e-5);
  std::filesystem::remove_all(dir);
}

TEST(AdamW, ResumeFromExportedStateIsBitExactForBothMomentPrecisions) {
  for (MomentPrecision mp : {MomentPrecision::kF32, MomentPrecision::kBF16}) {
    const int64_t n = 257;
    AdamWConfig cfg;
    cfg.moments = mp;
    std::vector<float> a = randn(n, 2), b;
    AdamW full(cfg, n);
    for (int s = 0; s < 10; ++s) full.step(a.data(), randn(n, 50 + static_cast<uint64_t>(s)).data(), 1e-3);
    b = randn(n, 2);
    AdamW first(cfg, n);
    for (int s = 0; s < 4; ++s) first.step(b.data(), randn(n, 50 + static_cast<uint64_t>(s)).data(), 1e-3);
    std::vector<float> m, v;
    int64_t step;
    first.export_state(m, v, step);
    AdamW second(cfg, n);
    second.import_state(m, v, step);
    for (int s = 4; s < 10; ++s) second.step(b.data(), randn(n, 50 + static_cast<uint64_t>(s)).data(), 1e-3);
    EXPECT_EQ(a, b);
    EXPECT_EQ(second.steps(), 10);
  }
}

TEST(AdamW, DecayMaskAndBadArguments) {
  AdamWConfig cfg;
  cfg.weight_decay = 0.5;
  AdamW opt(cfg, 2, {1, 0});
  std::vector<float> p = {1.0f, 1.0f}, g = {0.0f, 0.0f};
  opt.step(p.data(), g.data(), 0.1);
  EXPECT_FLOAT_EQ(p[0], 0.95f);  // decayed, zero gradient otherwise
  EXPECT_FLOAT_EQ(p[1], 1.0f);
  EXPECT_THROW(opt.step(p.data(), g.data(), 0.0), Error);
  EXPECT_THROW(opt.step(p.data(), g.data(), -1.0), Error);
  EXPECT_THROW(AdamW(cfg, 3, {1, 0}), Error);
  AdamWConfig bad;
  bad.beta1 = 1.0;
  EXPECT_THROW(AdamW(bad, 1), Error);
}

TEST(LrSchedule, WarmupThenCosineOrLinearToTheFloor) {
  LrSchedule s{1.0, 4, 14, LrDecay::kCosine, 0.1};
  EXPECT_DOUBLE_EQ(s.at(0), 0.25);
  EXPECT_DOUBLE_EQ(s.at(3), 1.0);
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);
  EXPECT_NEAR(s.at(9), 0.55, 1e-12);  // half-way: floor + (peak − floor)/2
  EXPECT_DOUBLE_EQ(s.at(14), 0.1);
  EXPECT_DOUBLE_EQ(s.at(100), 0.1);
  LrSchedule l{2.0, 0, 10, LrDecay::kLinear, 0.0};
  EXPECT_DOUBLE_EQ(l.at(5), 1.0);
}

TEST(ClipGradNorm, ScalesOnlyAboveTheThresholdAndReportsNonFinite) {
  std::vector<float> g = {3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(clip_grad_norm(g.data(), 2, 10.0), 5.0);
  EXPECT_EQ(g[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_grad_norm(g.data(), 2, 1.0), 5.0);
  EXPECT_NEAR(std::sqrt(g[0] * g[0] + g[1] * g[1]), 1.0, 1e-5);
  std::vector<float> bad = {1.0f, NAN};
  EXPECT_TRUE(std::isnan(clip_grad_norm(bad.data(), 2, 1.0)));
  EXPECT_EQ(bad[0], 1.0f);
}
