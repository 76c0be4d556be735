// The serving linear's block-scaled FP8 GEMM (kernels/cpu/block_gemm.h):
//   - it computes DeepSeek's fp8_gemm, Σ_kb (Σ_k code_a·code_w)·σ_a·σ_w, to within fp32 rounding of a
//     float64 evaluation of that formula — full and partial 128-blocks, UE8M0 scales, BF16 weights,
//     unquantized (W8A16) activations;
//   - it agrees with the training-time QAT forward, an fp32 GEMM over fake-quantized operands,
//     to within 2e-6 of Σ|products| (the two differ only in rounding, see fp8_linear.h);
//   - the grouped version equals one block_gemm per group, bit for bit;
//   - packing keeps codes and scales bit for bit; re-quantizing fake-quantized values reproduces them
//     (the fixed point the live merge relies on); act_quant equals fake_quantize's 1×128 tiles.
#include "core/rng.h"
#include "kernels/cpu/block_gemm.h"
#include "kernels/ops.h"
#include "numerics/bf16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

using namespace qaft;

namespace {

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

std::vector<float> normal(int64_t n, uint64_t seed, float stddev) {
  std::vector<float> x(sz(n));
  CounterRng(seed, 7).fill_normal(x.data(), n, 0.0f, stddev);
  return x;
}

struct Shape {
  int64_t rows, out, in;
};
// Whole blocks, partial K and partial output blocks, fewer than 16 inputs, one row, many rows.
const Shape kShapes[] = {{5, 256, 256}, {1, 70, 300}, {37, 33, 17}, {130, 200, 520}, {9, 128, 129}};

// Σ_kb (Σ_k a·w) · σ_a · σ_w in float64: the reference of fp8_gemm, and Σ_k |a·w·σ_a·σ_w| (the scale
// of its rounding error).
void reference(const BlockActivations& a, const BlockWeight& w, std::vector<double>& y, std::vector<double>& mag) {
  const std::vector<uint8_t> codes = w.element() == WeightElement::kE4M3 ? w.codes() : std::vector<uint8_t>{};
  const std::vector<float> wv = w.to_float();
  const int64_t kb = (w.in() + 127) / 128;
  y.assign(sz(a.rows * w.out()), 0.0);
  mag.assign(y.size(), 0.0);
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t o = 0; o < w.out(); ++o) {
      double acc = 0, m = 0;
      for (int64_t b = 0; b < kb; ++b) {
        double part = 0, pm = 0;
        for (int64_t k = b * 128; k < std::min(w.in(), (b + 1) * 128); ++k) {
          const double wk = codes.empty() ? wv[sz(o * w.in() + k)] : fp8_decode(codes[sz(o * w.in() + k)], Fp8Format::kE4M3);
          part += static_cast<double>(a.values[sz(r * a.ld + k)]) * wk;
          pm += std::fabs(static_cast<double>(a.values[sz(r * a.ld + k)]) * wk);
        }
        const double s = static_cast<double>(a.scales[sz(r * kb + b)]) *
                         (codes.empty() ? 1.0 : static_cast<double>(w.scales()[sz((o / 128) * kb + b)]));
        acc += part * s;
        m += pm * s;
      }
      y[sz(r * w.out() + o)] = acc;
      mag[sz(r * w.out() + o)] = m;
    }
}

// Worst |y − ref| / Σ|products| over all outputs.
double worst_relative(const std::vector<float>& y, const std::vector<double>& ref, const std::vector<double>& mag) {
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i)
    if (mag[i] > 0) worst = std::max(worst, std::fabs(static_cast<double>(y[i]) - ref[i]) / mag[i]);
  return worst;
}

// fp32 summation of n terms errs by at most (n − 1)·u·Σ|terms| (u = 2⁻²⁴): ≤ 127 terms per block
// partial, two scale products, and one term per K block in the outer sum.
double rounding_bound(int64_t in) { return (130.0 + static_cast<double>((in + 127) / 128)) * std::ldexp(1.0, -24); }

}  // namespace

TEST(InferFp8Linear, FastE4m3DecodeEqualsTheCodecForEveryCode) {
  for (int c = 0; c < 256; ++c) {
    const float ref = fp8_decode(static_cast<uint8_t>(c), Fp8Format::kE4M3);
    const float got = e4m3_to_float_fast(static_cast<uint8_t>(c));
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(got)) << c;
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(ref), std::bit_cast<uint32_t>(got)) << "code " << c << ": " << ref << " vs " << got;
    }
  }
}

TEST(InferFp8Linear, TheGemmDecodesEveryCodeExactly) {
  // W [256, 16] with code o in column 0 of row o, scale 1; x = e₀: y[o] is code o's value (NaN for
  // the NaN codes 0x7F and 0xFF) — through the kernel's own (vectorized) decoder.
  std::vector<uint8_t> codes(256 * 16, 0);
  for (int o = 0; o < 256; ++o) codes[static_cast<size_t>(o * 16)] = static_cast<uint8_t>(o);
  const std::vector<float> scales(2, 1.0f);
  const BlockWeight w = BlockWeight::from_e4m3(codes.data(), scales.data(), 256, 16, ScaleFormat::kFp32);
  std::vector<float> x(16, 0.0f), y(256);
  x[0] = 1.0f;
  BlockActivations a;
  plain_activations(x.data(), 1, 16, a);
  block_gemm(a, w, y.data());
  for (int o = 0; o < 256; ++o) {
    const float ref = fp8_decode(static_cast<uint8_t>(o), Fp8Format::kE4M3);
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(y[static_cast<size_t>(o)])) << o;
    } else {
      EXPECT_EQ(y[static_cast<size_t>(o)], ref) << "code " << o;
    }
  }
}

TEST(InferFp8Linear, BlockGemmIsDeepSeeksFp8GemmWithinFp32Rounding) {
  for (ScaleFormat fmt : {ScaleFormat::kFp32, ScaleFormat::kUe8m0}) {
    for (const Shape& s : kShapes) {
      const std::vector<float> x = normal(s.rows * s.in, 1, 1.5f), wf = normal(s.out * s.in, 2, 0.05f);
      BlockActivations a;
      quantize_activations(x.data(), s.rows, s.in, fmt, a);
      const BlockWeight w = BlockWeight::quantize_e4m3(wf.data(), s.out, s.in, fmt);
      std::vector<float> y(sz(s.rows * s.out));
      block_gemm(a, w, y.data());
      std::vector<double> ref, mag;
      reference(a, w, ref, mag);
      const double worst = worst_relative(y, ref, mag);
      EXPECT_LE(worst, rounding_bound(s.in)) << scale_format_name(fmt) << " [" << s.rows << ", " << s.out << ", " << s.in << "]";
      EXPECT_LT(worst, 1e-6);  // what it is in practice: a few ulps
    }
  }
}

TEST(InferFp8Linear, Ue8m0ScalesArePowersOfTwo) {
  const std::vector<float> x = normal(3 * 300, 3, 1.0f), wf = normal(200 * 300, 4, 0.02f);
  BlockActivations a;
  quantize_activations(x.data(), 3, 300, ScaleFormat::kUe8m0, a);
  const BlockWeight w = BlockWeight::quantize_e4m3(wf.data(), 200, 300, ScaleFormat::kUe8m0);
  for (float s : a.scales) EXPECT_EQ(std::exp2(std::round(std::log2(s))), s);
  for (float s : w.scales()) EXPECT_EQ(std::exp2(std::round(std::log2(s))), s);
}

TEST(InferFp8Linear, AgreesWithTheTrainingTimeFakeQuantGemm) {
  // Training's QAT forward: Q_a(x) · Q_w(W)ᵀ, one fp32 GEMM (oneDNN) over the dequantized operands.
  double worst_all = 0;
  for (ScaleFormat fmt : {ScaleFormat::kFp32, ScaleFormat::kUe8m0}) {
    for (const Shape& s : kShapes) {
      const std::vector<float> x = normal(s.rows * s.in, 5, 2.0f), wf = normal(s.out * s.in, 6, 0.03f);
      std::vector<float> xq(x), wq(wf);
      fake_quantize(xq.data(), s.rows, s.in, ScaleRecipe::deepseek_activation(fmt), xq.data());
      fake_quantize(wq.data(), s.out, s.in, ScaleRecipe::deepseek_weight(fmt), wq.data());
      std::vector<float> y_train(sz(s.rows * s.out)), y(y_train.size());
      gemm<float>(Trans::kNo, Trans::kYes, s.rows, s.out, s.in, 1.0f, xq.data(), s.in, wq.data(), s.in, 0.0f,
                  y_train.data(), s.out);

      BlockActivations a;
      quantize_activations(x.data(), s.rows, s.in, fmt, a);
      block_gemm(a, BlockWeight::quantize_e4m3(wf.data(), s.out, s.in, fmt), y.data());
      double worst = 0;
      for (int64_t r = 0; r < s.rows; ++r)
        for (int64_t o = 0; o < s.out; ++o) {
          double mag = 0;
          for (int64_t k = 0; k < s.in; ++k) mag += std::fabs(static_cast<double>(xq[sz(r * s.in + k)]) * wq[sz(o * s.in + k)]);
          const double d = std::fabs(static_cast<double>(y[sz(r * s.out + o)]) - y_train[sz(r * s.out + o)]);
          if (mag > 0) worst = std::max(worst, d / mag);
        }
      EXPECT_LE(worst, 2e-6) << scale_format_name(fmt) << " [" << s.rows << ", " << s.out << ", " << s.in << "]";
      worst_all = std::max(worst_all, worst);
    }
  }
  std::printf("block_gemm vs fake-quant fp32 GEMM: worst |Δ| / Σ|a·w| = %.3g\n", worst_all);
}

TEST(InferFp8Linear, Bf16WeightsAndUnquantizedActivations) {
  const Shape s{11, 96, 200};
  const std::vector<float> x = normal(s.rows * s.in, 8, 1.0f), wf = normal(s.out * s.in, 9, 0.1f);
  BlockActivations a;
  plain_activations(x.data(), s.rows, s.in, a);
  for (const BlockWeight& w : {BlockWeight::from_bf16(wf.data(), s.out, s.in),
                               BlockWeight::quantize_e4m3(wf.data(), s.out, s.in, ScaleFormat::kFp32)}) {
    std::vector<float> y(sz(s.rows * s.out));
    block_gemm(a, w, y.data());
    std::vector<double> ref, mag;
    reference(a, w, ref, mag);
    EXPECT_LE(worst_relative(y, ref, mag), rounding_bound(s.in));
  }
  // BF16 storage is round-to-nearest-even of the weight.
  const std::vector<float> back = BlockWeight::from_bf16(wf.data(), s.out, s.in).to_float();
  for (size_t i = 0; i < wf.size(); ++i) ASSERT_EQ(back[i], bf16_to_float(bf16_from_float(wf[i])));
}

TEST(InferFp8Linear, GroupedGemmEqualsOneGemmPerGroupBitForBit) {
  const int64_t in = 160, out = 48;
  const std::vector<int64_t> offsets = {0, 3, 3, 20, 21, 121};  // an empty group, 1 row, 100 rows
  const int64_t G = static_cast<int64_t>(offsets.size()) - 1, rows = offsets.back();
  std::vector<BlockWeight> w;
  for (int64_t g = 0; g < G; ++g) {
    const std::vector<float> wf = normal(out * in, 20 + static_cast<uint64_t>(g), 0.05f);
    w.push_back(BlockWeight::quantize_e4m3(wf.data(), out, in, ScaleFormat::kFp32));
  }
  const std::vector<float> x = normal(rows * in, 30, 1.0f);
  BlockActivations a;
  quantize_activations(x.data(), rows, in, ScaleFormat::kFp32, a);
  std::vector<float> y(sz(rows * out));
  block_grouped_gemm(a, w, offsets.data(), y.data());
  for (int64_t g = 0; g < G; ++g) {
    const int64_t n = offsets[sz(g + 1)] - offsets[sz(g)];
    if (n == 0) continue;
    BlockActivations ag;
    quantize_activations(x.data() + offsets[sz(g)] * in, n, in, ScaleFormat::kFp32, ag);
    std::vector<float> yg(sz(n * out));
    block_gemm(ag, w[sz(g)], yg.data());
    EXPECT_EQ(0, std::memcmp(yg.data(), y.data() + offsets[sz(g)] * out, sizeof(float) * yg.size())) << "group " << g;
  }
}

TEST(InferFp8Linear, PackingKeepsCodesAndScalesBitForBit) {
  const int64_t out = 150, in = 270;
  const std::vector<float> wf = normal(out * in, 40, 0.05f);
  const QTensor q = QTensor::from_float(wf.data(), out, in, ScaleRecipe::deepseek_weight());
  const BlockWeight w = BlockWeight::from_e4m3(q.codes.data(), q.scales.data(), out, in, ScaleFormat::kFp32);
  EXPECT_EQ(w.codes(), q.codes);
  EXPECT_EQ(w.scales(), q.scales);
  EXPECT_EQ(w.to_float(), q.to_float());
  EXPECT_LT(w.bytes(), out * in * 2);  // about one byte per parameter
}

TEST(InferFp8Linear, RequantizingFakeQuantizedWeightsReproducesThem) {
  // The live merge quantizes the QAT forward's Q(M): the codes·scales must be Q(M) again.
  for (ScaleFormat fmt : {ScaleFormat::kFp32, ScaleFormat::kUe8m0}) {
    for (const Shape& s : kShapes) {
      std::vector<float> wf = normal(s.out * s.in, 50, 0.07f);
      wf[0] = 0;  // and a block with tiny values under the amax floor
      for (int64_t i = 0; i < std::min<int64_t>(s.in, 128); ++i) wf[sz(i)] *= 1e-6f;
      std::vector<float> q(wf);
      fake_quantize(q.data(), s.out, s.in, ScaleRecipe::deepseek_weight(fmt), q.data());
      const BlockWeight w = BlockWeight::quantize_e4m3(q.data(), s.out, s.in, fmt);
      const std::vector<float> back = w.to_float();
      ASSERT_EQ(0, std::memcmp(back.data(), q.data(), sizeof(float) * q.size())) << scale_format_name(fmt);
      if (fmt == ScaleFormat::kFp32) {  // fp32 scales: the very same codes and scales as quantizing W itself
        const QTensor direct = QTensor::from_float(wf.data(), s.out, s.in, ScaleRecipe::deepseek_weight(fmt));
        EXPECT_EQ(w.codes(), direct.codes);
        EXPECT_EQ(w.scales(), direct.scales);
      }
    }
  }
}

TEST(InferFp8Linear, ActQuantEqualsFakeQuantizeOf1x128Tiles) {
  for (ScaleFormat fmt : {ScaleFormat::kFp32, ScaleFormat::kUe8m0}) {
    const int64_t rows = 7, cols = 333;
    std::vector<float> x = normal(rows * cols, 60, 3.0f);
    for (int64_t c = 0; c < cols; ++c) x[sz(2 * cols + c)] = 0;  // an all-zero row (amax floor)
    BlockActivations a;
    quantize_activations(x.data(), rows, cols, fmt, a);
    EXPECT_EQ(a.ld % 16, 0);
    std::vector<float> fq(x);
    fake_quantize(fq.data(), rows, cols, ScaleRecipe::deepseek_activation(fmt), fq.data());
    const std::vector<float> back = dequantize_activations(a);
    EXPECT_EQ(0, std::memcmp(back.data(), fq.data(), sizeof(float) * fq.size())) << scale_format_name(fmt);
    // Re-quantizing the dequantized activations gives the same values (the MLA latent cache stores
    // them); with fp32 scales the very same codes and scales.
    BlockActivations again;
    quantize_activations(back.data(), rows, cols, fmt, again);
    EXPECT_EQ(dequantize_activations(again), back);
    if (fmt == ScaleFormat::kFp32) {
      EXPECT_EQ(again.values, a.values);
      EXPECT_EQ(again.scales, a.scales);
    }
  }
}
