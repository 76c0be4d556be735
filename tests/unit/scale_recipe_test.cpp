// ScaleRecipe quantize / dequantize / fake-quantize against a plain re-statement of DeepSeek's
// act_quant / weight-block rules, for every granularity, odd shapes, and bad input.
#include "core/error.h"
#include "core/rng.h"
#include "numerics/scale_recipe.h"
#include "numerics/ue8m0.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace qaft;

namespace {

std::vector<float> normal_matrix(int64_t rows, int64_t cols, uint64_t seed, float stddev = 1.0f) {
  std::vector<float> x(static_cast<size_t>(rows * cols));
  CounterRng(seed, 0).fill_normal(x.data(), rows * cols, 0.0f, stddev);
  return x;
}

// The rule, written out naively: for each block, amax over its valid elements, σ = max(amax,
// floor)/fmax (power of two rounded up for UE8M0), code = encode(x / σ).
void reference_quantize(const std::vector<float>& x, int64_t rows, int64_t cols, const ScaleRecipe& r,
                        std::vector<uint8_t>& codes, std::vector<float>& scales) {
  const int64_t br = r.block_rows(rows), bc = r.block_cols(cols);
  const int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
  codes.assign(static_cast<size_t>(rows * cols), 0);
  scales.assign(static_cast<size_t>(sr * sc), 0);
  for (int64_t i = 0; i < sr; ++i)
    for (int64_t j = 0; j < sc; ++j) {
      float a = 0;
      for (int64_t rr = i * br; rr < std::min(rows, (i + 1) * br); ++rr)
        for (int64_t cc = j * bc; cc < std::min(cols, (j + 1) * bc); ++cc)
          a = std::max(a, std::fabs(x[static_cast<size_t>(rr * cols + cc)]));
      float s = std::max(a, r.amax_floor) / fp8_max(r.element);
      if (r.scale_format == ScaleFormat::kUe8m0) s = std::exp2(std::ceil(std::log2(s)));
      scales[static_cast<size_t>(i * sc + j)] = s;
      for (int64_t rr = i * br; rr < std::min(rows, (i + 1) * br); ++rr)
        for (int64_t cc = j * bc; cc < std::min(cols, (j + 1) * bc); ++cc)
          codes[static_cast<size_t>(rr * cols + cc)] = fp8_encode(x[static_cast<size_t>(rr * cols + cc)] / s, r.element);
    }
}

const Granularity kAllGranularities[] = {Granularity::kPerTensor, Granularity::kPerChannel,
                                         Granularity::kTile1x128, Granularity::kBlock128x128,
                                         Granularity::kMx1x32};
}  // namespace

TEST(ScaleRecipe, ScaleGridShapes) {
  ScaleRecipe w = ScaleRecipe::deepseek_weight();
  // DeepSeek-V3 kv_a_proj_with_mqa [576, 7168] has scale shape [5, 56] (a partial row block of 64).
  EXPECT_EQ(w.scale_rows(576), 5);
  EXPECT_EQ(w.scale_cols(7168), 56);
  ScaleRecipe a = ScaleRecipe::deepseek_activation();
  EXPECT_EQ(a.scale_rows(3), 3);
  EXPECT_EQ(a.scale_cols(7168), 56);
  EXPECT_EQ(a.scale_cols(200), 2);
  ScaleRecipe t{Granularity::kPerTensor};
  EXPECT_EQ(t.scale_rows(77) * t.scale_cols(99), 1);
  ScaleRecipe c{Granularity::kPerChannel};
  EXPECT_EQ(c.scale_rows(77), 77);
  EXPECT_EQ(c.scale_cols(99), 1);
  EXPECT_EQ(ScaleRecipe{Granularity::kMx1x32}.scale_cols(100), 4);
  EXPECT_EQ(a.str(), "1x128 e4m3 fp32-scale floor=0.0001");
}

TEST(ScaleRecipe, QuantizeMatchesTheNaiveRuleOnOddShapes) {
  for (Granularity g : kAllGranularities)
    for (ScaleFormat sf : {ScaleFormat::kFp32, ScaleFormat::kUe8m0})
      for (Fp8Format ef : {Fp8Format::kE4M3, Fp8Format::kE5M2})
        for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {3, 200}, {130, 257}, {256, 384}, {129, 127}}) {
          ScaleRecipe r{g, sf, ef, 1e-4f};
          auto x = normal_matrix(rows, cols, static_cast<uint64_t>(rows * 1000 + cols), 3.0f);
          std::vector<uint8_t> want_codes, codes(static_cast<size_t>(rows * cols));
          std::vector<float> want_scales, scales(static_cast<size_t>(r.scale_rows(rows) * r.scale_cols(cols)));
          reference_quantize(x, rows, cols, r, want_codes, want_scales);
          QuantizeStats st = quantize(x.data(), rows, cols, cols, r, codes.data(), scales.data());
          ASSERT_EQ(scales, want_scales) << r.str() << " " << rows << "x" << cols;
          ASSERT_EQ(codes, want_codes) << r.str() << " " << rows << "x" << cols;
          EXPECT_EQ(st.nonfinite_blocks, 0);
          EXPECT_EQ(st.blocks, static_cast<int64_t>(scales.size()));
          // The block amax element lands on the largest finite code (fp32 scales).
          if (sf == ScaleFormat::kFp32) {
            uint8_t top = 0;
            for (uint8_t c : codes) top = std::max<uint8_t>(top, c & 0x7F);
            EXPECT_EQ(top, ef == Fp8Format::kE4M3 ? 0x7E : 0x7B);
          }
          // UE8M0 scales are exact powers of two.
          if (sf == ScaleFormat::kUe8m0) {
            for (float s : scales) EXPECT_EQ(std::exp2(std::round(std::log2(s))), s);
          }
        }
}

TEST(ScaleRecipe, DequantizeAndFakeQuantizeAgreeAndBoundTheError) {
  const int64_t rows = 130, cols = 300;
  auto x = normal_matrix(rows, cols, 5);
  for (Granularity g : kAllGranularities) {
    ScaleRecipe r{g, ScaleFormat::kFp32, Fp8Format::kE4M3, 1e-4f};
    QTensor q = QTensor::from_float(x.data(), rows, cols, r);
    std::vector<float> dq = q.to_float(), fq(x.size());
    fake_quantize(x.data(), rows, cols, r, fq.data());
    ASSERT_EQ(dq, fq) << r.str();
    // E4M3 keeps 3 mantissa bits: relative error ≤ 2^-4 for values in the normal range.
    const int64_t br = r.block_rows(rows), bc = r.block_cols(cols), sc = r.scale_cols(cols);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const float v = x[static_cast<size_t>(i * cols + j)], s = q.scales[static_cast<size_t>((i / br) * sc + j / bc)];
        const float err = std::fabs(v - dq[static_cast<size_t>(i * cols + j)]);
        // normal range: ≤ 2^-4 relative; subnormal range: half the spacing 2^-9·σ
        const float bound = std::fabs(v) >= 0x1p-6f * s ? std::fabs(v) * 0x1p-4f : 0x1p-10f * s;
        EXPECT_LE(err, bound) << i << "," << j;
      }
  }
  // In place.
  std::vector<float> y = x, want(x.size());
  fake_quantize(x.data(), rows, cols, ScaleRecipe::deepseek_activation(), want.data());
  fake_quantize(y.data(), rows, cols, ScaleRecipe::deepseek_activation(), y.data());
  EXPECT_EQ(y, want);
}

TEST(ScaleRecipe, StraightThroughBackwardPassesTheGradient) {
  std::vector<float> g = {1.0f, -2.0f, 0.5f}, gx(3);
  fake_quantize_backward(g.data(), 3, gx.data());
  EXPECT_EQ(gx, g);
}

TEST(ScaleRecipe, ZeroBlocksUseTheFloorAndGiveExactZeros) {
  std::vector<float> x(256, 0.0f);
  std::vector<uint8_t> codes(256);
  std::vector<float> scales(2);
  quantize(x.data(), 1, 256, 256, ScaleRecipe::deepseek_activation(), codes.data(), scales.data());
  EXPECT_EQ(scales[0], 1e-4f / 448.0f);
  for (uint8_t c : codes) EXPECT_EQ(c, 0);
  ScaleRecipe no_floor = ScaleRecipe::deepseek_activation();
  no_floor.amax_floor = 0.0f;
  quantize(x.data(), 1, 256, 256, no_floor, codes.data(), scales.data());
  EXPECT_EQ(scales[0], 1.0f);
  EXPECT_EQ(compute_scale(0.0f, ScaleRecipe::deepseek_activation(ScaleFormat::kUe8m0)), pow2_ceil(1e-4f / 448.0f));
}

TEST(ScaleRecipe, NonFiniteValuesPoisonExactlyTheirBlock) {
  struct Case {
    float bad;
    const char* name;
  } cases[] = {{NAN, "NaN"}, {INFINITY, "+inf"}, {-INFINITY, "-inf"}};
  for (const Case& c : cases) {
    auto x = normal_matrix(2, 256, 9);
    x[130] = c.bad;  // row 0, second 1x128 tile
    std::vector<uint8_t> codes(512);
    std::vector<float> scales(4), out(512);
    QuantizeStats st = quantize(x.data(), 2, 256, 256, ScaleRecipe::deepseek_activation(), codes.data(), scales.data());
    EXPECT_EQ(st.nonfinite_blocks, 1) << c.name;
    EXPECT_TRUE(std::isnan(scales[1])) << c.name;
    EXPECT_TRUE(std::isfinite(scales[0]) && std::isfinite(scales[2]) && std::isfinite(scales[3])) << c.name;
    for (int i = 128; i < 256; ++i) EXPECT_EQ(codes[static_cast<size_t>(i)], 0x7F) << c.name;
    dequantize(codes.data(), scales.data(), 2, 256, ScaleRecipe::deepseek_activation(), out.data());
    for (int i = 0; i < 512; ++i) EXPECT_EQ(std::isnan(out[static_cast<size_t>(i)]), i >= 128 && i < 256) << c.name << " " << i;
    st = fake_quantize(x.data(), 2, 256, ScaleRecipe::deepseek_activation(), out.data());
    EXPECT_EQ(st.nonfinite_blocks, 1);
  }
}

TEST(ScaleRecipe, RejectsBadArguments) {
  std::vector<float> x(4);
  std::vector<uint8_t> codes(4);
  std::vector<float> scales(4);
  ScaleRecipe bad_floor = ScaleRecipe::deepseek_activation();
  bad_floor.amax_floor = NAN;
  EXPECT_THROW(quantize(x.data(), 2, 2, 2, bad_floor, codes.data(), scales.data()), Error);
  EXPECT_THROW(quantize(x.data(), 2, 2, 1, ScaleRecipe{}, codes.data(), scales.data()), Error);
  EXPECT_THROW(quantize(x.data(), -1, 2, 2, ScaleRecipe{}, codes.data(), scales.data()), Error);
  EXPECT_NO_THROW(quantize(x.data(), 0, 0, 0, ScaleRecipe{}, codes.data(), scales.data()));
}

TEST(ScaleRecipe, StridedInputReadsOnlyTheRowPrefix) {
  const int64_t rows = 4, cols = 128, ld = 200;
  auto x = normal_matrix(rows, ld, 3);
  for (int64_t r = 0; r < rows; ++r) x[static_cast<size_t>(r * ld + 150)] = 1e6f;  // outside the view
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  std::vector<float> scales(4);
  quantize(x.data(), rows, cols, ld, ScaleRecipe::deepseek_activation(), codes.data(), scales.data());
  for (float s : scales) EXPECT_LT(s, 1.0f);
}
