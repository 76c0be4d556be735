// LoRA linear with FP8 QAT (formats.md §7.3): merged = unmerged without quantization, the QAT
// forward equals a forward over the really quantized merged weight (codes + scales, then
// dequantized) bit for bit, and the LoRA gradients through QAT equal finite differences of the
// straight-through surrogate.
#include "adapters/lora_linear.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace qaft;

namespace {

template <typename T>
std::vector<T> randn(int64_t n, uint64_t seed, double std) {
  std::vector<float> f(static_cast<size_t>(n));
  CounterRng(seed, 0).fill_normal(f.data(), n, 0.0f, static_cast<float>(std));
  return std::vector<T>(f.begin(), f.end());
}

// out × in spans two 128×128 blocks in each direction, with partial edge blocks.
constexpr int64_t kOut = 200, kIn = 150, kRank = 4, kN = 5;

template <typename T>
struct Fixture {
  std::vector<T> w0 = randn<T>(kOut * kIn, 1, 0.05), a = randn<T>(kRank * kIn, 2, 0.1), b = randn<T>(kOut * kRank, 3, 0.1);
  std::vector<T> da = std::vector<T>(static_cast<size_t>(kRank * kIn)), db = std::vector<T>(static_cast<size_t>(kOut * kRank));
  std::vector<T> x = randn<T>(kN * kIn, 4, 1.0);
  LoraLinearRef<T> ref() {
    return {w0.data(), a.data(), b.data(), da.data(), db.data(), kOut, kIn, kRank, static_cast<T>(lora_scale(8.0, kRank, false))};
  }
};

}  // namespace

TEST(LoraLinear, ScaleFollowsPeft) {
  EXPECT_DOUBLE_EQ(lora_scale(16, 8, false), 2.0);
  EXPECT_DOUBLE_EQ(lora_scale(16, 4, true), 8.0);
  EXPECT_THROW(lora_scale(16, 0, false), Error);
}

TEST(LoraLinear, MergedEqualsUnmergedWithoutQuantization) {
  Fixture<double> f;
  const QatConfig off;
  LoraSaved<double> s;
  std::vector<double> y(kN * kOut), merged(kOut * kIn), y_merged(kN * kOut);
  lora_linear_forward(f.ref(), off, f.x.data(), kN, y.data(), s);
  lora_merged_weight(f.ref(), off, merged.data());
  gemm<double>(Trans::kNo, Trans::kYes, kN, kOut, kIn, 1.0, f.x.data(), kIn, merged.data(), kIn, 0.0, y_merged.data(), kOut);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_merged[i], 1e-12 * (1 + std::fabs(y[i]))) << i;
}

TEST(LoraLinear, QatForwardEqualsTheReallyQuantizedMergedWeightBitForBit) {
  for (ScaleFormat sf : {ScaleFormat::kFp32, ScaleFormat::kUe8m0}) {
    Fixture<float> f;
    QatConfig qat{true, sf, true};
    LoraSaved<float> s;
    std::vector<float> y(kN * kOut);
    lora_linear_forward(f.ref(), qat, f.x.data(), kN, y.data(), s);
    // What a server holds: E4M3 codes + 128×128 scales of the merged weight; activations quantized
    // per token in 1×128 tiles at run time.
    std::vector<float> merged(kOut * kIn);
    lora_merged_weight(f.ref(), QatConfig{}, merged.data());
    const QTensor wq = QTensor::from_float(merged.data(), kOut, kIn, ScaleRecipe::deepseek_weight(sf));
    const QTensor xq = QTensor::from_float(f.x.data(), kN, kIn, ScaleRecipe::deepseek_activation(sf));
    const std::vector<float> w_deq = wq.to_float(), x_deq = xq.to_float();
    std::vector<float> want(kN * kOut);
    gemm<float>(Trans::kNo, Trans::kYes, kN, kOut, kIn, 1.0f, x_deq.data(), kIn, w_deq.data(), kIn, 0.0f, want.data(), kOut);
    ASSERT_EQ(y, want) << scale_format_name(sf);
    ASSERT_EQ(s.merged, w_deq);
  }
}

TEST(LoraLinear, GradientsThroughQatMatchFiniteDifferencesOfTheSteSurrogate) {
  // Surrogate: the quantizers' offsets D = Q(M0) − M0 and Dx = Q_a(x0) − x0 are constants, so
  // f(A, B, x) = Σ R ⊙ ((x + Dx) · (M(A, B) + D)ᵀ) has exactly the STE gradients.
  Fixture<double> f;
  const QatConfig qat{true, ScaleFormat::kFp32, true};
  LoraSaved<double> s;
  std::vector<double> y(kN * kOut);
  lora_linear_forward(f.ref(), qat, f.x.data(), kN, y.data(), s);
  const std::vector<double> R = randn<double>(kN * kOut, 9, 1.0);
  std::vector<double> dx(kN * kIn);
  lora_linear_backward(f.ref(), qat, R.data(), kN, s, dx.data());

  std::vector<double> m0(kOut * kIn);
  lora_merged_weight(f.ref(), QatConfig{}, m0.data());
  std::vector<double> D(kOut * kIn), Dx(kN * kIn);
  for (size_t i = 0; i < D.size(); ++i) D[i] = s.merged[i] - m0[i];
  for (size_t i = 0; i < Dx.size(); ++i) Dx[i] = s.xq[i] - f.x[i];
  auto surrogate = [&]() {
    std::vector<double> m(kOut * kIn), xs(kN * kIn), out(kN * kOut);
    lora_merged_weight(f.ref(), QatConfig{}, m.data());
    for (size_t i = 0; i < m.size(); ++i) m[i] += D[i];
    for (size_t i = 0; i < xs.size(); ++i) xs[i] = f.x[i] + Dx[i];
    gemm<double>(Trans::kNo, Trans::kYes, kN, kOut, kIn, 1.0, xs.data(), kIn, m.data(), kIn, 0.0, out.data(), kOut);
    double sum = 0;
    for (size_t i = 0; i < out.size(); ++i) sum += R[i] * out[i];
    return sum;
  };
  auto check = [&](std::vector<double>& p, const std::vector<double>& g, const char* what) {
    double worst = 0;
    for (size_t i = 0; i < p.size(); i += 7) {
      const double saved = p[i], eps = 1e-6;
      p[i] = saved + eps;
      const double lp = surrogate();
      p[i] = saved - eps;
      const double lm = surrogate();
      p[i] = saved;
      const double fd = (lp - lm) / (2 * eps);
      worst = std::max(worst, std::fabs(fd - g[i]) / (1e-6 + std::fabs(fd)));
    }
    EXPECT_LT(worst, 1e-6) << what;
  };
  check(f.a, f.da, "dA");
  check(f.b, f.db, "dB");
  check(f.x, dx, "dx");
}
