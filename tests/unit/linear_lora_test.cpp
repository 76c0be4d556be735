// Linear layers with LoRA, LoRA-QAT and FP8 training numerics (model/linear.h; formats.md §7.3):
//   - the LoRA scale is PEFT's; merged equals unmerged without quantization;
//   - the QAT forward equals a forward over the really quantized merged weight (E4M3 codes +
//     128×128 scales, activations in 1×128 tiles) bit for bit, for one linear and per expert of a
//     stacked (grouped) linear;
//   - LoRA gradients through QAT equal finite differences of the straight-through surrogate, and
//     plain LoRA gradients (with dropout) equal finite differences of the loss;
//   - grouped = per-group plain linears, with empty groups and more groups than one merge chunk;
//   - FP8 training: the forward and both backward GEMMs see E4M3 operands with DeepSeek's tiles.
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/block_gemm.h"
#include "kernels/ops.h"
#include "model/linear.h"
#include "numerics/bf16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

using namespace qaft;

namespace {

template <typename T>
std::vector<T> randn(int64_t n, uint64_t seed, double std) {
  std::vector<float> f(static_cast<size_t>(n));
  CounterRng(seed, 0).fill_normal(f.data(), n, 0.0f, static_cast<float>(std));
  return std::vector<T>(f.begin(), f.end());
}

// out × in spans two 128×128 blocks in each direction, with partial edge blocks; G groups with
// uneven rows (one empty), more groups than one merge chunk (4).
constexpr int64_t kOut = 200, kIn = 150, kRank = 4, kG = 6;
const std::vector<int64_t> kOffsets = {0, 3, 3, 8, 9, 11, 15};
constexpr int64_t kN = 15;

// A (possibly stacked) linear with its own storage.
template <typename T>
struct Fixture {
  int64_t G;
  std::vector<T> w0, a, b, bias, dw, da, db, dbias, x;
  LinearNumerics numerics;
  explicit Fixture(int64_t groups, bool with_bias = false)
      : G(groups),
        w0(randn<T>(std::max<int64_t>(G, 1) * kOut * kIn, 1, 0.05)),
        a(randn<T>(std::max<int64_t>(G, 1) * kRank * kIn, 2, 0.1)),
        b(randn<T>(std::max<int64_t>(G, 1) * kOut * kRank, 3, 0.1)),
        bias(with_bias ? randn<T>(kOut, 5, 0.1) : std::vector<T>{}),
        dw(w0.size()), da(a.size()), db(b.size()), dbias(bias.size()),
        x(randn<T>(kN * kIn, 4, 1.0)) {}
  LinearRef<T> ref(bool lora = true) {
    LinearRef<T> l;
    l.w = w0.data();
    l.dw = dw.data();
    l.b = bias.empty() ? nullptr : bias.data();
    l.db = bias.empty() ? nullptr : dbias.data();
    l.out = kOut, l.in = kIn, l.groups = G;
    if (lora) {
      l.lora_a = a.data(), l.lora_b = b.data(), l.dlora_a = da.data(), l.dlora_b = db.data();
      l.rank = kRank;
      l.lora_scale = static_cast<T>(lora_scale(8.0, kRank, false));
      l.dw = nullptr;  // the base is frozen under LoRA
    }
    l.id = 77;
    l.numerics = &numerics;
    return l;
  }
  std::vector<int64_t> offsets() const { return G > 0 ? kOffsets : std::vector<int64_t>{0, kN}; }
  void forward(const LinearRef<T>& l, const T* in, T* y) {
    if (G > 0) grouped_linear_forward(l, kOffsets.data(), in, y);
    else linear_forward(l, in, kN, y);
  }
  void backward(const LinearRef<T>& l, const T* dy, T* dx) {
    if (G > 0) grouped_linear_backward(l, kOffsets.data(), dy, x.data(), dx, false);
    else linear_backward(l, dy, x.data(), kN, dx, false);
  }
  int64_t group_of_row(int64_t r) const {
    if (G == 0) return 0;
    int64_t g = 0;
    while (kOffsets[static_cast<size_t>(g + 1)] <= r) ++g;
    return g;
  }
};

// M_g = W0_g + s·B_g·A_g in T, unquantized.
template <typename T>
std::vector<T> merged_weight(Fixture<T>& f, int64_t g) {
  LinearNumerics exact;
  LinearRef<T> l = f.ref();
  l.numerics = &exact;
  // With QAT off, effective_weight is W0 only; merge by hand so the test does not depend on it.
  std::vector<T> m(f.w0.begin() + g * kOut * kIn, f.w0.begin() + (g + 1) * kOut * kIn);
  gemm<T>(Trans::kNo, Trans::kNo, kOut, kIn, kRank, l.lora_scale, f.b.data() + g * kOut * kRank, kRank,
          f.a.data() + g * kRank * kIn, kIn, T(1), m.data(), kIn);
  return m;
}

double sum_product(const std::vector<double>& r, const std::vector<double>& y) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += r[i] * y[i];
  return s;
}

// Central finite differences at about 40 entries of p against g. Every loss of this file is linear in
// each single parameter (bilinear in A and B), so central differences are exact up to rounding and
// a large step keeps that rounding small. Returns the worst |fd − g| relative to max |g|.
double worst_fd_error(std::vector<double>& p, const std::vector<double>& g, const std::function<double()>& loss) {
  double worst = 0, gmax = 0;
  for (double v : g) gmax = std::max(gmax, std::fabs(v));
  const size_t stride = p.size() / 40 + 1;
  for (size_t i = 0; i < p.size(); i += stride) {
    const double saved = p[i], eps = 1e-3;
    p[i] = saved + eps;
    const double lp = loss();
    p[i] = saved - eps;
    const double lm = loss();
    p[i] = saved;
    const double fd = (lp - lm) / (2 * eps);
    worst = std::max(worst, std::fabs(fd - g[i]) / gmax);
  }
  return gmax > 0 ? worst : 1.0;
}

}  // namespace

TEST(LinearLora, ScaleFollowsPeft) {
  EXPECT_DOUBLE_EQ(lora_scale(16, 8, false), 2.0);
  EXPECT_DOUBLE_EQ(lora_scale(16, 4, true), 8.0);
  EXPECT_THROW(lora_scale(16, 0, false), Error);
}

TEST(LinearLora, MergedEqualsUnmergedWithoutQuantization) {
  for (int64_t G : {int64_t{0}, kG}) {
    Fixture<double> f(G, /*with_bias=*/G == 0);
    std::vector<double> y(kN * kOut);
    f.forward(f.ref(), f.x.data(), y.data());
    for (int64_t r = 0; r < kN; ++r) {
      const int64_t g = f.group_of_row(r);
      const std::vector<double> m = merged_weight(f, g);
      for (int64_t o = 0; o < kOut; ++o) {
        double want = f.bias.empty() ? 0.0 : f.bias[static_cast<size_t>(o)];
        for (int64_t i = 0; i < kIn; ++i) want += f.x[static_cast<size_t>(r * kIn + i)] * m[static_cast<size_t>(o * kIn + i)];
        ASSERT_NEAR(y[static_cast<size_t>(r * kOut + o)], want, 1e-12 * (1 + std::fabs(want))) << "G=" << G;
      }
    }
  }
}

TEST(LinearLora, QatForwardIsTheServersBlockGemmOverTheRealCodesBitForBit) {
  for (int64_t G : {int64_t{0}, kG}) {
    for (ScaleFormat sf : {ScaleFormat::kFp32, ScaleFormat::kUe8m0}) {
      for (bool w8a8 : {true, false}) {
        Fixture<float> f(G);
        f.numerics.qat = QatConfig{true, sf, w8a8};
        std::vector<float> y(kN * kOut);
        f.forward(f.ref(), f.x.data(), y.data());
        // What a server holds: E4M3 codes + 128×128 scales of each merged weight, quantized from
        // W0 + s·B·A itself; activations quantized per token in 1×128 tiles at run time (W8A8) or
        // kept in fp32 (W8A16). Multiplied by the serving kernel.
        BlockActivations a;
        if (w8a8) quantize_activations(f.x.data(), kN, kIn, sf, a);
        else plain_activations(f.x.data(), kN, kIn, a);
        const std::vector<int64_t> off = f.offsets();
        const int64_t groups = std::max<int64_t>(G, 1);
        std::vector<BlockWeight> served;
        std::vector<float> w_deq(static_cast<size_t>(groups * kOut * kIn));
        for (int64_t g = 0; g < groups; ++g) {
          const std::vector<float> m = merged_weight(f, g);
          served.push_back(BlockWeight::quantize_e4m3(m.data(), kOut, kIn, sf));
          const std::vector<float> deq = served.back().to_float();
          std::copy(deq.begin(), deq.end(), w_deq.begin() + g * kOut * kIn);
          if (off[static_cast<size_t>(g + 1)] == off[static_cast<size_t>(g)]) continue;
          std::vector<float> eff(static_cast<size_t>(kOut * kIn));
          effective_weight(f.ref(), g, eff.data());  // the weight the backward sees
          ASSERT_EQ(eff, deq) << "group " << g;
        }
        std::vector<float> want(kN * kOut);
        if (G == 0) block_gemm(a, served[0], want.data());
        else block_grouped_gemm(a, served, off.data(), want.data());
        ASSERT_EQ(y, want) << "G=" << G << " " << scale_format_name(sf) << (w8a8 ? " W8A8" : " W8A16");

        // An fp32 GEMM over the dequantized operands computes the same products, summed in another
        // order: equal within a few fp32 roundings of Σ|products|.
        const std::vector<float> x_deq = dequantize_activations(a);
        std::vector<float> dense(kN * kOut), abs_sum(kN * kOut, 0.0f);
        for (int64_t g = 0; g < groups; ++g)
          for (int64_t r = off[static_cast<size_t>(g)]; r < off[static_cast<size_t>(g + 1)]; ++r)
            for (int64_t o = 0; o < kOut; ++o) {
              double d = 0, s = 0;
              for (int64_t k = 0; k < kIn; ++k) {
                const double p = double(x_deq[r * kIn + k]) * w_deq[(g * kOut + o) * kIn + k];
                d += p, s += std::fabs(p);
              }
              dense[r * kOut + o] = static_cast<float>(d);
              abs_sum[r * kOut + o] = static_cast<float>(s);
            }
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_LE(std::fabs(y[i] - dense[i]), 8 * std::ldexp(1.0f, -24) * abs_sum[i] + 1e-30f) << i;
      }
    }
  }
}

TEST(LinearLora, GradientsThroughQatMatchFiniteDifferencesOfTheSteSurrogate) {
  // Surrogate: the quantizers' offsets D_g = Q(M_g) − M_g and Dx = Q_a(x0) − x0 are constants, so
  // f(A, B, x) = Σ R ⊙ ((x + Dx) · (M(A, B) + D)ᵀ) has exactly the STE gradients.
  for (int64_t G : {int64_t{0}, kG}) {
    Fixture<double> f(G);
    f.numerics.qat = QatConfig{true, ScaleFormat::kFp32, true};
    const std::vector<double> R = randn<double>(kN * kOut, 9, 1.0);
    std::vector<double> dx(kN * kIn);
    f.backward(f.ref(), R.data(), dx.data());

    const int64_t groups = std::max<int64_t>(G, 1);
    std::vector<std::vector<double>> D(static_cast<size_t>(groups));
    for (int64_t g = 0; g < groups; ++g) {
      std::vector<double> q(static_cast<size_t>(kOut * kIn));
      effective_weight(f.ref(), g, q.data());
      const std::vector<double> m = merged_weight(f, g);
      D[static_cast<size_t>(g)].resize(m.size());
      for (size_t i = 0; i < m.size(); ++i) D[static_cast<size_t>(g)][i] = q[i] - m[i];
    }
    std::vector<float> xf(f.x.begin(), f.x.end());
    fake_quantize(xf.data(), kN, kIn, ScaleRecipe::deepseek_activation(), xf.data());
    std::vector<double> Dx(f.x.size());
    for (size_t i = 0; i < Dx.size(); ++i) Dx[i] = static_cast<double>(xf[i]) - f.x[i];
    auto surrogate = [&]() {
      double sum = 0;
      for (int64_t r = 0; r < kN; ++r) {
        const int64_t g = f.group_of_row(r);
        const std::vector<double> m = merged_weight(f, g);
        for (int64_t o = 0; o < kOut; ++o) {
          double y = 0;
          for (int64_t i = 0; i < kIn; ++i) {
            const size_t xi = static_cast<size_t>(r * kIn + i), wi = static_cast<size_t>(o * kIn + i);
            y += (f.x[xi] + Dx[xi]) * (m[wi] + D[static_cast<size_t>(g)][wi]);
          }
          sum += R[static_cast<size_t>(r * kOut + o)] * y;
        }
      }
      return sum;
    };
    EXPECT_LT(worst_fd_error(f.a, f.da, surrogate), 1e-6) << "dA G=" << G;
    EXPECT_LT(worst_fd_error(f.b, f.db, surrogate), 1e-6) << "dB G=" << G;
    EXPECT_LT(worst_fd_error(f.x, dx, surrogate), 1e-6) << "dx G=" << G;
  }
}

TEST(LinearLora, PlainLoraGradientsWithDropoutMatchFiniteDifferences) {
  for (int64_t G : {int64_t{0}, kG}) {
    Fixture<double> f(G, /*with_bias=*/G == 0);
    f.numerics.lora_dropout = 0.25;
    f.numerics.dropout_seed = 1234;
    f.numerics.train_mode = true;
    const std::vector<double> R = randn<double>(kN * kOut, 9, 1.0);
    std::vector<double> dx(kN * kIn);
    f.backward(f.ref(), R.data(), dx.data());
    auto loss = [&]() {
      std::vector<double> y(kN * kOut);
      f.forward(f.ref(), f.x.data(), y.data());
      return sum_product(R, y);
    };
    EXPECT_LT(worst_fd_error(f.a, f.da, loss), 1e-6) << "dA G=" << G;
    EXPECT_LT(worst_fd_error(f.b, f.db, loss), 1e-6) << "dB G=" << G;
    EXPECT_LT(worst_fd_error(f.x, dx, loss), 1e-6) << "dx G=" << G;
  }
}

TEST(LinearLora, DropoutIsOffInEvaluationAndDropsTheExpectedShare) {
  Fixture<double> f(0);
  f.numerics.lora_dropout = 0.5;
  f.numerics.dropout_seed = 99;
  std::vector<double> eval_y(kN * kOut), no_dropout_y(kN * kOut), train_y(kN * kOut);
  f.forward(f.ref(), f.x.data(), eval_y.data());  // train_mode false
  f.numerics.lora_dropout = 0;
  f.forward(f.ref(), f.x.data(), no_dropout_y.data());
  EXPECT_EQ(eval_y, no_dropout_y);
  f.numerics.lora_dropout = 0.5;
  f.numerics.train_mode = true;
  f.forward(f.ref(), f.x.data(), train_y.data());
  EXPECT_NE(train_y, no_dropout_y);
}

TEST(LinearLora, FullTrainingGradientsOfTheBaseWeightMatchFiniteDifferences) {
  for (int64_t G : {int64_t{0}, kG}) {
    Fixture<double> f(G, /*with_bias=*/G == 0);
    const std::vector<double> R = randn<double>(kN * kOut, 9, 1.0);
    std::vector<double> dx(kN * kIn);
    f.backward(f.ref(/*lora=*/false), R.data(), dx.data());
    auto loss = [&]() {
      std::vector<double> y(kN * kOut);
      f.forward(f.ref(false), f.x.data(), y.data());
      return sum_product(R, y);
    };
    EXPECT_LT(worst_fd_error(f.w0, f.dw, loss), 1e-6) << "dW G=" << G;
    EXPECT_LT(worst_fd_error(f.x, dx, loss), 1e-6) << "dx G=" << G;
    if (G == 0) {
      EXPECT_LT(worst_fd_error(f.bias, f.dbias, loss), 1e-6);
    }
  }
}

TEST(LinearLora, Fp8TrainingUsesE4m3OperandsWithDeepSeekTiles) {
  Fixture<float> f(0);
  f.numerics.precision = GemmPrecision::kFp8;
  const LinearRef<float> l = f.ref(false);
  std::vector<float> y(kN * kOut);
  linear_forward(l, f.x.data(), kN, y.data());
  auto fq = [](std::vector<float> v, int64_t rows, int64_t cols, const ScaleRecipe& r) {
    fake_quantize(v.data(), rows, cols, r, v.data());
    return v;
  };
  const auto xq = fq(f.x, kN, kIn, ScaleRecipe::deepseek_activation());
  const auto wq = fq(f.w0, kOut, kIn, ScaleRecipe::deepseek_weight());
  std::vector<float> want(kN * kOut);
  gemm<float>(Trans::kNo, Trans::kYes, kN, kOut, kIn, 1.0f, xq.data(), kIn, wq.data(), kIn, 0.0f, want.data(), kOut);
  EXPECT_EQ(y, want) << "forward: Q(x)[1x128] · Q(W)[128x128]ᵀ";

  const std::vector<float> dy = randn<float>(kN * kOut, 9, 1.0);
  std::vector<float> dx(kN * kIn);
  linear_backward(l, dy.data(), f.x.data(), kN, dx.data(), false);
  const auto dyq = fq(dy, kN, kOut, ScaleRecipe::deepseek_activation());
  std::vector<float> want_dx(kN * kIn);
  gemm<float>(Trans::kNo, Trans::kNo, kN, kIn, kOut, 1.0f, dyq.data(), kOut, wq.data(), kIn, 0.0f, want_dx.data(), kIn);
  EXPECT_EQ(dx, want_dx) << "input gradient: Q(dy)[1x128] · Q(W)";

  // Weight gradient: both operands in 128×1 tiles along the tokens, i.e. 1×128 tiles of the
  // transposes.
  auto transpose = [](const std::vector<float>& v, int64_t rows, int64_t cols) {
    std::vector<float> t(v.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = v[static_cast<size_t>(r * cols + c)];
    return t;
  };
  const auto dyT = fq(transpose(dy, kN, kOut), kOut, kN, ScaleRecipe::deepseek_activation());
  const auto xT = fq(transpose(f.x, kN, kIn), kIn, kN, ScaleRecipe::deepseek_activation());
  std::vector<float> want_dw(kOut * kIn, 0.0f);
  gemm<float>(Trans::kNo, Trans::kYes, kOut, kIn, kN, 1.0f, dyT.data(), kN, xT.data(), kN, 0.0f, want_dw.data(), kIn);
  for (size_t i = 0; i < want_dw.size(); ++i)
    ASSERT_NEAR(f.dw[i], want_dw[i], 1e-5f * (1 + std::fabs(want_dw[i]))) << "weight gradient at " << i;

  // And FP8 stays close to exact: a few percent of relative error on these well-scaled operands.
  Fixture<float> exact(0);
  std::vector<float> y_exact(kN * kOut);
  linear_forward(exact.ref(false), exact.x.data(), kN, y_exact.data());
  double err = 0, norm = 0;
  for (size_t i = 0; i < y.size(); ++i) err += (y[i] - y_exact[i]) * (y[i] - y_exact[i]), norm += y_exact[i] * y_exact[i];
  EXPECT_LT(std::sqrt(err / norm), 0.08);
  EXPECT_GT(std::sqrt(err / norm), 0.0);
}

TEST(LinearLora, Bf16TrainingRoundsTheSameOperandsToBf16) {
  Fixture<float> f(0);
  f.numerics.precision = GemmPrecision::kBf16;
  std::vector<float> y(kN * kOut);
  linear_forward(f.ref(false), f.x.data(), kN, y.data());
  auto rb = [](std::vector<float> v) {
    for (float& e : v) e = bf16_to_float(bf16_from_float(e));
    return v;
  };
  const auto xb = rb(f.x), wb = rb(f.w0);
  std::vector<float> want(kN * kOut);
  gemm<float>(Trans::kNo, Trans::kYes, kN, kOut, kIn, 1.0f, xb.data(), kIn, wb.data(), kIn, 0.0f, want.data(), kOut);
  EXPECT_EQ(y, want);
}
