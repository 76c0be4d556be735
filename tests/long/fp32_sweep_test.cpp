// The long sweep (label "long"; ./scripts/test --long): every one of the 2^32 fp32 bit patterns
// through every encoder, compared bit for bit with NVIDIA's host conversions. OpenMP over chunks.
#include "oracle_util.h"

#include <gtest/gtest.h>

using namespace qaft;
using namespace qaft::test;

#ifndef QAFT_HAVE_CUDA_FP8
TEST(Fp32Sweep, Unavailable) { GTEST_SKIP() << "CUDA toolkit's cuda_fp8.h not found at configure time"; }
#else

namespace {
constexpr uint64_t kChunk = 1 << 16;
constexpr uint64_t kChunks = (uint64_t{1} << 32) / kChunk;

// Runs check(chunk_values, mismatch) for every chunk of 2^16 consecutive patterns.
template <typename Fn>
int64_t sweep(Fn&& check, std::string* first) {
  int64_t total = 0;
#pragma omp parallel for schedule(dynamic, 64) reduction(+ : total)
  for (uint64_t c = 0; c < kChunks; ++c) {
    std::vector<float> x(kChunk);
    for (uint64_t i = 0; i < kChunk; ++i) x[i] = std::bit_cast<float>(static_cast<uint32_t>(c * kChunk + i));
    Mismatch m;
    check(x, m);
    total += m.count;
    if (m.count) {
#pragma omp critical
      if (first->empty()) *first = m.report("fp32 pattern");
    }
  }
  return total;
}
}  // namespace

TEST(Fp32Sweep, Fp8EveryPattern) {
  for (auto fmt : {Fp8Format::kE4M3, Fp8Format::kE5M2})
    for (auto sat : {Saturation::kSatFinite, Saturation::kNoSat}) {
      std::string first;
      int64_t bad = sweep([&](const std::vector<float>& x, Mismatch& m) {
        std::vector<uint8_t> codes(x.size());
        fp8_encode_scaled(x.data(), static_cast<int64_t>(x.size()), 1.0f, fmt, sat, codes.data());
        for (size_t i = 0; i < x.size(); ++i) {
          const uint8_t want = __nv_cvt_float_to_fp8(x[i], cuda_sat(sat), cuda_fmt(fmt));
          m.check(codes[i], want, std::bit_cast<uint32_t>(x[i]));
          m.check(fp8_encode(x[i], fmt, sat), want, std::bit_cast<uint32_t>(x[i]));
        }
      }, &first);
      EXPECT_EQ(bad, 0) << fp8_format_name(fmt) << " sat=" << int(sat) << first;
    }
}

TEST(Fp32Sweep, Ue8m0EveryPattern) {
  for (auto sat : {Saturation::kSatFinite, Saturation::kNoSat})
    for (auto rnd : {E8m0Rounding::kTowardZero, E8m0Rounding::kTowardPosInf}) {
      std::string first;
      int64_t bad = sweep([&](const std::vector<float>& x, Mismatch& m) {
        for (float v : x)
          m.check(ue8m0_from_float(v, sat, rnd), __nv_cvt_float_to_e8m0(v, cuda_sat(sat), cuda_round(rnd)),
                  std::bit_cast<uint32_t>(v));
      }, &first);
      EXPECT_EQ(bad, 0) << "sat=" << int(sat) << " round=" << int(rnd) << first;
    }
}

TEST(Fp32Sweep, Bf16AndFp16EveryPattern) {
  std::string first;
  int64_t bad = sweep([&](const std::vector<float>& x, Mismatch& m) {
    for (float v : x) {
      m.check(bf16_from_float(v), __nv_bfloat16_raw(__float2bfloat16_rn(v)).x, std::bit_cast<uint32_t>(v));
      m.check(fp16_from_float(v), __half_raw(__float2half_rn(v)).x, std::bit_cast<uint32_t>(v));
    }
  }, &first);
  EXPECT_EQ(bad, 0) << first;
}

#endif
