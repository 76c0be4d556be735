// The limited-precision accumulator model and DeepSeek's promotion fix.
#include "core/error.h"
#include "core/rng.h"
#include "numerics/accumulation.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace qaft;

TEST(Accumulation, RoundToMantissaBits) {
  const float x = 1.0f + 0x1p-20f + 0x1p-21f;
  EXPECT_EQ(round_to_mantissa_bits(x, 23, AccumulatorRounding::kTowardZero), x);
  EXPECT_EQ(round_to_mantissa_bits(x, 13, AccumulatorRounding::kTowardZero), 1.0f);
  EXPECT_EQ(round_to_mantissa_bits(1.0f + 0x1p-14f, 13, AccumulatorRounding::kNearestEven), 1.0f);  // tie -> even
  EXPECT_EQ(round_to_mantissa_bits(1.0f + 0x1p-13f + 0x1p-14f, 13, AccumulatorRounding::kNearestEven), 1.0f + 0x1p-12f);
  EXPECT_EQ(round_to_mantissa_bits(-1.75f, 1, AccumulatorRounding::kTowardZero), -1.5f);
  EXPECT_THROW(round_to_mantissa_bits(1.0f, 24, AccumulatorRounding::kTowardZero), Error);
}

TEST(Accumulation, FullPrecisionIsAPlainFp32Sum) {
  std::vector<float> a(1000), b(1000);
  CounterRng(1, 0).fill_normal(a.data(), 1000, 0, 1);
  CounterRng(1, 1).fill_normal(b.data(), 1000, 0, 1);
  float want = 0;
  for (int i = 0; i < 1000; ++i) want += a[static_cast<size_t>(i)] * b[static_cast<size_t>(i)];
  EXPECT_EQ(dot_accumulate(a.data(), b.data(), 1000, {23, 0, AccumulatorRounding::kNearestEven}), want);
}

TEST(Accumulation, PromotionEvery128BoundsTheTruncationError) {
  // Same-sign operands: the worst case for a truncating accumulator.
  const int64_t k = 4096;
  std::vector<float> a(static_cast<size_t>(k)), b(static_cast<size_t>(k));
  CounterRng(2, 0).fill_uniform(a.data(), k);
  CounterRng(2, 1).fill_uniform(b.data(), k);
  double exact = 0;
  for (int64_t i = 0; i < k; ++i) exact += static_cast<double>(a[static_cast<size_t>(i)]) * b[static_cast<size_t>(i)];
  const double no_promo = std::fabs(dot_accumulate(a.data(), b.data(), k, {13, 0, AccumulatorRounding::kTowardZero}) - exact) / exact;
  const double promo = std::fabs(dot_accumulate(a.data(), b.data(), k, {13, 128, AccumulatorRounding::kTowardZero}) - exact) / exact;
  // Truncation always loses magnitude: ~K/2 additions each dropping ~half an ulp of 2^-13.
  EXPECT_GT(no_promo, 0.02);
  EXPECT_LT(promo, 0.01);
  EXPECT_GT(no_promo / promo, 10.0);
}
