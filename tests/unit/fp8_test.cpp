// FP8 E4M3/E5M2 codecs: the rules every later kernel relies on, and vectorized == scalar.
#include "core/cpu_features.h"
#include "oracle_util.h"

#include <gtest/gtest.h>

#include <limits>

using namespace qaft;

TEST(Fp8, E4M3TableOfSpecialValues) {
  struct Case {
    float x;
    Saturation sat;
    uint8_t code;
  } cases[] = {
      {0.0f, Saturation::kSatFinite, 0x00},   {-0.0f, Saturation::kSatFinite, 0x80},
      {1.0f, Saturation::kSatFinite, 0x38},   {448.0f, Saturation::kSatFinite, 0x7E},
      {464.0f, Saturation::kSatFinite, 0x7E}, // the tie between 448 and "512" rounds to even (448)
      {464.0f, Saturation::kNoSat, 0x7E},     {465.0f, Saturation::kNoSat, 0x7F},
      {465.0f, Saturation::kSatFinite, 0x7E}, {-1e9f, Saturation::kSatFinite, 0xFE},
      {-1e9f, Saturation::kNoSat, 0xFF},      {INFINITY, Saturation::kSatFinite, 0x7E},
      {INFINITY, Saturation::kNoSat, 0x7F},   {-INFINITY, Saturation::kNoSat, 0xFF},
      {NAN, Saturation::kSatFinite, 0x7F},    {-NAN, Saturation::kSatFinite, 0x7F},
      {0x1p-9f, Saturation::kSatFinite, 0x01},   // min subnormal
      {0x1p-10f, Saturation::kSatFinite, 0x00},  // half of it: tie to even = 0
      {0x1.01p-10f, Saturation::kSatFinite, 0x01},
      {-0x1p-11f, Saturation::kSatFinite, 0x80}, // underflow keeps the sign
      {7 * 0x1p-9f, Saturation::kSatFinite, 0x07},  // max subnormal
      {0x1p-6f, Saturation::kSatFinite, 0x08},   // min normal
      {1.0625f, Saturation::kSatFinite, 0x38},   // tie 1 | 1.125 -> even (1.0)
      {1.1875f, Saturation::kSatFinite, 0x3A},   // tie 1.125 | 1.25 -> even (1.25)
  };
  for (const Case& c : cases)
    EXPECT_EQ(fp8_encode(c.x, Fp8Format::kE4M3, c.sat), c.code) << c.x << " sat=" << int(c.sat);
}

TEST(Fp8, E5M2TableOfSpecialValues) {
  EXPECT_EQ(fp8_encode(57344.0f, Fp8Format::kE5M2), 0x7B);
  EXPECT_EQ(fp8_encode(61439.0f, Fp8Format::kE5M2, Saturation::kNoSat), 0x7B);
  EXPECT_EQ(fp8_encode(61440.0f, Fp8Format::kE5M2, Saturation::kNoSat), 0x7C);  // tie rounds to inf
  EXPECT_EQ(fp8_encode(61440.0f, Fp8Format::kE5M2, Saturation::kSatFinite), 0x7B);
  EXPECT_EQ(fp8_encode(-INFINITY, Fp8Format::kE5M2, Saturation::kNoSat), 0xFC);
  EXPECT_EQ(fp8_encode(NAN, Fp8Format::kE5M2), 0x7F);
  EXPECT_EQ(fp8_encode(0x1p-16f, Fp8Format::kE5M2), 0x01);
  EXPECT_EQ(fp8_encode(0x1p-17f, Fp8Format::kE5M2), 0x00);
  EXPECT_TRUE(std::isinf(fp8_decode(0x7C, Fp8Format::kE5M2)));
  EXPECT_TRUE(std::isnan(fp8_decode(0x7D, Fp8Format::kE5M2)));
}

TEST(Fp8, DecodeMatchesTheFormulaAndEncodeInvertsIt) {
  for (int c = 0; c < 256; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    const float v = fp8_decode(code, Fp8Format::kE4M3);
    if ((c & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(v));
      continue;
    }
    const double want = (s ? -1 : 1) * (e ? std::ldexp(1.0 + m / 8.0, e - 7) : std::ldexp(m / 8.0, -6));
    EXPECT_EQ(v, want) << c;
    EXPECT_EQ(fp8_encode(v, Fp8Format::kE4M3), code) << c;
    const float v52 = fp8_decode(code, Fp8Format::kE5M2);
    if (std::isfinite(v52)) {
      EXPECT_EQ(fp8_encode(v52, Fp8Format::kE5M2), code) << c;
    }
  }
  EXPECT_EQ(fp8_decode(0x7E, Fp8Format::kE4M3), kE4M3Max);
  EXPECT_EQ(fp8_decode(0x7B, Fp8Format::kE5M2), kE5M2Max);
}

TEST(Fp8, EncodingIsMonotoneOverPositiveFloats) {
  // Non-decreasing codes over an increasing sweep of positive floats up to saturation.
  uint8_t prev = 0;
  for (float x = 0x1p-12f; x < 500.0f; x *= 1.0001f) {
    const uint8_t c = fp8_encode(x, Fp8Format::kE4M3);
    EXPECT_GE(c, prev) << x;
    prev = c;
  }
}

TEST(Fp8, VectorizedPathsAreBitIdenticalToScalar) {
  if (!cpu_features().has_avx512_codecs()) GTEST_SKIP() << "CPU lacks AVX-512 F/BW/VL: " << cpu_features().summary();
  std::vector<float> x = test::random_fp32_patterns(1 << 16, 3);
  for (float special : {0.0f, -0.0f, 448.0f, 464.0f, 465.0f, INFINITY, -INFINITY, NAN, 0x1p-10f, 0x1p-149f})
    x.push_back(special);
  for (auto fmt : {Fp8Format::kE4M3, Fp8Format::kE5M2})
    for (auto sat : {Saturation::kSatFinite, Saturation::kNoSat})
      for (float scale : {1.0f, 0.0371f, 3.0f, 0x1p-20f}) {
        // every tail length 0..16 is exercised by the odd offsets
        for (int64_t off : {0, 1, 5, 15}) {
          const int64_t n = static_cast<int64_t>(x.size()) - off;
          std::vector<uint8_t> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
          detail::fp8_encode_scaled_scalar(x.data() + off, n, scale, fmt, sat, a.data());
          detail::fp8_encode_scaled_avx512(x.data() + off, n, scale, fmt, sat, b.data());
          ASSERT_EQ(a, b) << fp8_format_name(fmt) << " scale " << scale << " off " << off;
          std::vector<float> da(static_cast<size_t>(n)), db(static_cast<size_t>(n));
          detail::fp8_decode_scaled_scalar(a.data(), n, scale, fmt, da.data());
          detail::fp8_decode_scaled_avx512(a.data(), n, scale, fmt, db.data());
          for (int64_t i = 0; i < n; ++i) {
            const float u = da[static_cast<size_t>(i)], v = db[static_cast<size_t>(i)];
            ASSERT_TRUE(std::bit_cast<uint32_t>(u) == std::bit_cast<uint32_t>(v) || (std::isnan(u) && std::isnan(v)))
                << "code " << int(a[static_cast<size_t>(i)]) << ": " << u << " vs " << v;
          }
        }
      }
  for (int64_t n = 0; n < 40; ++n) {
    EXPECT_EQ(detail::amax_avx512(x.data() + 100, n) == detail::amax_scalar(x.data() + 100, n) ||
                  (std::isnan(detail::amax_avx512(x.data() + 100, n)) && std::isnan(detail::amax_scalar(x.data() + 100, n))),
              true) << n;
  }
}

TEST(Fp8, AmaxPropagatesNaNAndSeesInfinity) {
  std::vector<float> v = {1.0f, -3.0f, 2.0f};
  EXPECT_EQ(amax(v.data(), 3), 3.0f);
  v.push_back(-INFINITY);
  EXPECT_TRUE(std::isinf(amax(v.data(), 4)));
  v.push_back(NAN);
  EXPECT_TRUE(std::isnan(amax(v.data(), 5)));
  EXPECT_EQ(amax(v.data(), 0), 0.0f);
}
