// Bit-exact agreement of qaft's codecs with NVIDIA's host conversion functions (cuda_fp8.h,
// cuda_bf16.h, cuda_fp16.h from the installed CUDA toolkit, plain C++ on the host: no GPU).
// Default suite: every fp16 and every bf16 bit pattern as input, every code as output, plus a
// few million random fp32 patterns. The full 2^32 fp32 sweep is tests/long/fp32_sweep_test.cpp.
#include "oracle_util.h"

#include <gtest/gtest.h>

using namespace qaft;
using namespace qaft::test;

#ifndef QAFT_HAVE_CUDA_FP8
TEST(CudaOracle, Unavailable) { GTEST_SKIP() << "CUDA toolkit's cuda_fp8.h not found at configure time"; }
#else

namespace {
std::vector<float> all_fp16_values() {
  std::vector<float> v(65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    __half_raw r;
    r.x = static_cast<unsigned short>(h);
    v[h] = __half2float(__half(r));
  }
  return v;
}
std::vector<float> all_bf16_values() {
  std::vector<float> v(65536);
  for (uint32_t h = 0; h < 65536; ++h) v[h] = std::bit_cast<float>(h << 16);
  return v;
}
}  // namespace

// Every 16-bit input pattern: qaft's scalar and bulk encoders against NVIDIA's conversion of the
// same raw pattern (want(h, sat, fmt)), for both formats and both saturation modes.
template <typename Want>
void check_every_16bit_pattern(const std::vector<float>& x, const char* what, Want want_of) {
  for (auto fmt : {Fp8Format::kE4M3, Fp8Format::kE5M2})
    for (auto sat : {Saturation::kSatFinite, Saturation::kNoSat}) {
      Mismatch m;
      std::vector<uint8_t> bulk(x.size());
      fp8_encode_scaled(x.data(), static_cast<int64_t>(x.size()), 1.0f, fmt, sat, bulk.data());
      for (uint32_t h = 0; h < 65536; ++h) {
        const uint8_t want = want_of(static_cast<unsigned short>(h), sat, fmt);
        m.check(fp8_encode(x[h], fmt, sat), want, h);
        m.check(bulk[h], want, h);
      }
      EXPECT_EQ(m.count, 0) << fp8_format_name(fmt) << " sat=" << int(sat) << m.report(what);
    }
}

TEST(CudaOracle, Fp8EncodeEveryFp16Pattern) {
  check_every_16bit_pattern(all_fp16_values(), "fp16 pattern", [](unsigned short h, Saturation sat, Fp8Format fmt) {
    __half_raw r;
    r.x = h;
    return __nv_cvt_halfraw_to_fp8(r, cuda_sat(sat), cuda_fmt(fmt));
  });
}

TEST(CudaOracle, Fp8EncodeEveryBf16Pattern) {
  check_every_16bit_pattern(all_bf16_values(), "bf16 pattern", [](unsigned short h, Saturation sat, Fp8Format fmt) {
    __nv_bfloat16_raw r;
    r.x = h;
    return __nv_cvt_bfloat16raw_to_fp8(r, cuda_sat(sat), cuda_fmt(fmt));
  });
}

TEST(CudaOracle, Fp8EncodeRandomFp32Patterns) {
  const int64_t n = 1 << 22;
  std::vector<float> x = random_fp32_patterns(n, 7);
  for (auto fmt : {Fp8Format::kE4M3, Fp8Format::kE5M2})
    for (auto sat : {Saturation::kSatFinite, Saturation::kNoSat}) {
      std::vector<uint8_t> bulk(static_cast<size_t>(n));
      fp8_encode_scaled(x.data(), n, 1.0f, fmt, sat, bulk.data());
      Mismatch m;
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t want = __nv_cvt_float_to_fp8(x[static_cast<size_t>(i)], cuda_sat(sat), cuda_fmt(fmt));
        m.check(bulk[static_cast<size_t>(i)], want, std::bit_cast<uint32_t>(x[static_cast<size_t>(i)]));
      }
      EXPECT_EQ(m.count, 0) << fp8_format_name(fmt) << m.report("fp32 pattern");
    }
}

TEST(CudaOracle, Fp8DecodeEveryCode) {
  for (auto fmt : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
    std::vector<uint8_t> codes(256);
    for (int c = 0; c < 256; ++c) codes[static_cast<size_t>(c)] = static_cast<uint8_t>(c);
    std::vector<float> bulk(256);
    fp8_decode_scaled(codes.data(), 256, 1.0f, fmt, bulk.data());
    for (int c = 0; c < 256; ++c) {
      const float want = __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<uint8_t>(c), cuda_fmt(fmt))));
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(fp8_decode(static_cast<uint8_t>(c), fmt))) << c;
        EXPECT_TRUE(std::isnan(bulk[static_cast<size_t>(c)])) << c;
      } else {
        EXPECT_EQ(std::bit_cast<uint32_t>(fp8_decode(static_cast<uint8_t>(c), fmt)), std::bit_cast<uint32_t>(want)) << c;
        EXPECT_EQ(std::bit_cast<uint32_t>(bulk[static_cast<size_t>(c)]), std::bit_cast<uint32_t>(want)) << c;
      }
    }
  }
}

TEST(CudaOracle, Ue8m0EncodeEveryBf16PatternAndRandomFp32) {
  std::vector<float> x = all_bf16_values();
  std::vector<float> r = random_fp32_patterns(1 << 21, 11);
  for (auto sat : {Saturation::kSatFinite, Saturation::kNoSat})
    for (auto rnd : {E8m0Rounding::kTowardZero, E8m0Rounding::kTowardPosInf}) {
      Mismatch m;
      for (uint32_t h = 0; h < 65536; ++h) {
        __nv_bfloat16_raw b;
        b.x = static_cast<unsigned short>(h);
        m.check(ue8m0_from_float(x[h], sat, rnd), __nv_cvt_bfloat16raw_to_e8m0(b, cuda_sat(sat), cuda_round(rnd)), h);
        m.check(ue8m0_from_float(x[h], sat, rnd), __nv_cvt_float_to_e8m0(x[h], cuda_sat(sat), cuda_round(rnd)), h);
      }
      for (float v : r)
        m.check(ue8m0_from_float(v, sat, rnd), __nv_cvt_float_to_e8m0(v, cuda_sat(sat), cuda_round(rnd)),
                std::bit_cast<uint32_t>(v));
      EXPECT_EQ(m.count, 0) << "sat=" << int(sat) << " round=" << int(rnd) << m.report("input");
    }
}

TEST(CudaOracle, Ue8m0DecodeEveryCode) {
  for (int c = 0; c < 256; ++c) {
    const __nv_bfloat16_raw want = __nv_cvt_e8m0_to_bf16raw(static_cast<uint8_t>(c));
    const float w = std::bit_cast<float>(static_cast<uint32_t>(want.x) << 16);
    const float got = ue8m0_to_float(static_cast<uint8_t>(c));
    if (std::isnan(w)) EXPECT_TRUE(std::isnan(got)) << c;
    else EXPECT_EQ(got, w) << c;
  }
}

TEST(CudaOracle, Bf16AndFp16RoundToNearestEven) {
  std::vector<float> x = random_fp32_patterns(1 << 22, 13);
  for (float v : all_fp16_values()) x.push_back(v);
  Mismatch mb, mh;
  for (float v : x) {
    const uint32_t key = std::bit_cast<uint32_t>(v);
    mb.check(bf16_from_float(v), __nv_bfloat16_raw(__float2bfloat16_rn(v)).x, key);
    mh.check(fp16_from_float(v), __half_raw(__float2half_rn(v)).x, key);
  }
  EXPECT_EQ(mb.count, 0) << mb.report("fp32 pattern");
  EXPECT_EQ(mh.count, 0) << mh.report("fp32 pattern");
}

#endif
