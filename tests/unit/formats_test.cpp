// BF16 (RNE + stochastic), FP16, E5M6 and UE8M0: rules and layouts.
#include "core/rng.h"
#include "numerics/bf16.h"
#include "numerics/e5m6.h"
#include "numerics/fp16.h"
#include "numerics/ue8m0.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>

using namespace qaft;

TEST(Bf16, RoundsToNearestEvenAndCanonicalizesNaN) {
  EXPECT_EQ(bf16_from_float(1.0f), 0x3F80);
  EXPECT_EQ(bf16_from_float(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie -> even
  EXPECT_EQ(bf16_from_float(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(bf16_from_float(std::bit_cast<float>(0x3F808001u)), 0x3F81);
  EXPECT_EQ(bf16_from_float(std::bit_cast<float>(0x7F7FFFFFu)), 0x7F80);  // overflow -> inf
  EXPECT_EQ(bf16_from_float(NAN), 0x7FFF);
  EXPECT_EQ(bf16_from_float(-INFINITY), 0xFF80);
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
}

TEST(Bf16, StochasticRoundingIsUnbiasedAndStaysBetweenNeighbours) {
  CounterRng rng(1, 2);
  const float x = 1.0f + 0x1p-9f + 0x1p-11f;  // between bf16 neighbours 1+2^-7·k
  const float lo = bf16_to_float(static_cast<uint16_t>(std::bit_cast<uint32_t>(x) >> 16));
  const float hi = bf16_to_float(static_cast<uint16_t>((std::bit_cast<uint32_t>(x) >> 16) + 1));
  double sum = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const float r = bf16_to_float(bf16_from_float_stochastic(x, rng.u32(static_cast<uint64_t>(i))));
    ASSERT_TRUE(r == lo || r == hi) << r;
    sum += r;
  }
  EXPECT_NEAR(sum / n, x, (hi - lo) * 0.01);
  // Exactly representable values never move; specials are kept.
  EXPECT_EQ(bf16_from_float_stochastic(1.5f, 0xFFFF), 0x3FC0);
  EXPECT_EQ(bf16_from_float_stochastic(INFINITY, 0xFFFF), 0x7F80);
  EXPECT_EQ(bf16_from_float_stochastic(NAN, 0), 0x7FFF);
}

TEST(Fp16, RoundTripsAndOverflowsToInf) {
  EXPECT_EQ(fp16_from_float(1.0f), 0x3C00);
  EXPECT_EQ(fp16_from_float(65504.0f), 0x7BFF);
  EXPECT_EQ(fp16_from_float(65520.0f), 0x7C00);  // tie above max -> inf
  EXPECT_EQ(fp16_from_float(0x1p-24f), 0x0001);
  for (uint32_t h = 0; h < 0x7C00; ++h) EXPECT_EQ(fp16_from_float(fp16_to_float(static_cast<uint16_t>(h))), h);
}

TEST(E5M6, IsFp16WithFourMantissaBitsDropped) {
  for (uint32_t c = 0; c < 4096; ++c) {
    const float v = e5m6_to_float(static_cast<uint16_t>(c));
    const float via_fp16 = fp16_to_float(static_cast<uint16_t>(c << 4));
    if (std::isnan(via_fp16)) {
      EXPECT_TRUE(std::isnan(v));
      continue;
    }
    EXPECT_EQ(v, via_fp16) << c;
    EXPECT_EQ(e5m6_from_float(v), c) << c;  // every code round-trips
  }
  EXPECT_EQ(e5m6_to_float(0x7BF), kE5M6Max);
  EXPECT_EQ(e5m6_from_float(1e6f), 0x7C0);
  EXPECT_EQ(e5m6_from_float(1e6f, Saturation::kSatFinite), 0x7BF);
  EXPECT_EQ(e5m6_from_float(-1.0f), 0x800 | 0x3C0);
  EXPECT_EQ(e5m6_from_float(NAN), 0x7FF);
}

TEST(E5M6, RoundsOnceNotTwice) {
  // 1 + 2^-7 + 2^-11 lies just above the E5M6 midpoint 1 + 2^-7: single rounding goes up. Rounding to
  // FP16 first gives exactly 1 + 2^-7 (a tie), which would then round to even (down): double rounding.
  const float x = 1.0f + 0x1p-7f + 0x1p-12f;
  EXPECT_EQ(e5m6_to_float(e5m6_from_float(x)), 1.0f + 0x1p-6f);
  // Exhaustive check against a double-precision nearest-even reference on a fine grid.
  for (int i = 0; i < 100000; ++i) {
    const float v = std::ldexp(1.0f + static_cast<float>(i) / 100000.0f, (i % 34) - 20);  // 2^-20 .. 2^14, inside E5M6's range
    const float q = e5m6_to_float(e5m6_from_float(v));
    const int e = std::ilogb(v);
    const double ulp = std::ldexp(1.0, std::max(e, -14) - 6);
    EXPECT_LE(std::fabs(static_cast<double>(q) - v), ulp / 2) << v;
  }
}

TEST(Ue8m0, PowersOfTwoAndDeepSeekCeil) {
  EXPECT_EQ(ue8m0_from_float(1.0f, Saturation::kSatFinite, E8m0Rounding::kTowardPosInf), 127);
  EXPECT_EQ(ue8m0_from_float(1.5f, Saturation::kSatFinite, E8m0Rounding::kTowardPosInf), 128);
  EXPECT_EQ(ue8m0_from_float(1.5f, Saturation::kSatFinite, E8m0Rounding::kTowardZero), 127);
  EXPECT_EQ(ue8m0_from_float(NAN, Saturation::kSatFinite, E8m0Rounding::kTowardZero), 0xFF);
  EXPECT_EQ(ue8m0_from_float(INFINITY, Saturation::kSatFinite, E8m0Rounding::kTowardZero), 0xFE);
  EXPECT_EQ(ue8m0_from_float(INFINITY, Saturation::kNoSat, E8m0Rounding::kTowardZero), 0xFF);
  EXPECT_EQ(ue8m0_to_float(127), 1.0f);
  EXPECT_EQ(ue8m0_to_float(0), 0x1p-127f);
  EXPECT_TRUE(std::isnan(ue8m0_to_float(0xFF)));
  for (float s : {1e-4f / 448, 0.3f, 1.0f, 7.0f, 1e30f}) {
    const float p = pow2_ceil(s);
    EXPECT_GE(p, s);
    EXPECT_LT(p / 2, s);
    EXPECT_EQ(p, std::exp2(std::ceil(std::log2(static_cast<double>(s))))) << s;
  }
}
