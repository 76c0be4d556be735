// NF4 / QLoRA double quantization: the code table and thresholds against formats.md §5, encoding at
// every decision boundary, packing order, partial blocks, bad inputs, double-quant layout and
// error, Nf4Tensor row access and memory, and the AVX-512 dequantizer against the scalar loop bit
// for bit.
#include "numerics/nf4.h"

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/rng.h"
#include "numerics/bf16.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace qaft {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> normal(int64_t n, uint64_t seed, float stddev = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  CounterRng(seed, 0).fill_normal(v.data(), n, 0.0f, stddev);
  return v;
}

// Codes of x[0..n) unpacked from `packed` (even element in the high nibble).
std::vector<int> unpack(const std::vector<uint8_t>& packed, int64_t n) {
  std::vector<int> q(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t b = packed[static_cast<size_t>(i / 2)];
    q[static_cast<size_t>(i)] = (i % 2 == 0) ? (b >> 4) : (b & 0xF);
  }
  return q;
}

bool same_bits(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

// ---- Table and thresholds -----------------------------------------------------------------------

TEST(Nf4Table, CodeValuesAreExactlyFormatsMd) {
  // formats.md §5.1, index -> value, as printed there (each an fp32 value printed as a double).
  const double spec[16] = {-1.0,
                           -0.6961928009986877,
                           -0.5250730514526367,
                           -0.39491748809814453,
                           -0.28444138169288635,
                           -0.18477343022823334,
                           -0.09105003625154495,
                           0.0,
                           0.07958029955625534,
                           0.16093020141124725,
                           0.24611230194568634,
                           0.33791524171829224,
                           0.44070982933044434,
                           0.5626170039176941,
                           0.7229568362236023,
                           1.0};
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(static_cast<double>(kNf4Code[static_cast<size_t>(i)]), spec[i]) << "index " << i;
  }
  EXPECT_TRUE(std::is_sorted(kNf4Code.begin(), kNf4Code.end()));
  EXPECT_EQ(kNf4Code[kNf4ZeroIndex], 0.0f);
}

TEST(Nf4Table, ThresholdsAreTheSpecListAndMidpointsOfAdjacentCodes) {
  // formats.md §5.2, in the order of CUDA dQuantizeNF4's decision tree, as the decimal strings that
  // its source writes as float literals ("0.03979014977812767f").
  const char* tree[15] = {"0.03979014977812767",  "0.3893125355243683",    "0.6427869200706482",
                          "0.8614784181118011",   "0.5016634166240692",    "0.2035212516784668",
                          "0.2920137718319893",   "0.1202552504837513",    "-0.33967943489551544",
                          "-0.13791173323988914", "-0.045525018125772476", "-0.23460740596055984",
                          "-0.6106329262256622",  "-0.4599952697753906",   "-0.8480964004993439"};
  std::vector<std::pair<double, float>> spec;  // (as a double, as a float literal)
  for (const char* t : tree) spec.emplace_back(std::strtod(t, nullptr), std::strtof(t, nullptr));
  std::sort(spec.begin(), spec.end());
  int ties = 0;
  for (size_t i = 0; i < 15; ++i) {
    const double midpoint =
        (static_cast<double>(kNf4Code[i]) + static_cast<double>(kNf4Code[i + 1])) / 2;
    EXPECT_EQ(midpoint, spec[i].first) << "threshold " << i << " is not the exact midpoint";
    EXPECT_EQ(kNf4Threshold[i], spec[i].second)
        << "threshold " << i << " is not CUDA's float literal";
    // The fp32 threshold is one of the two floats around the midpoint (the midpoint of two floats
    // can need one bit more than fp32 has: then it is a tie, and the literal rounds the way its
    // 17-digit decimal lies, which is not always round-to-even).
    const float down = static_cast<float>(midpoint);
    if (static_cast<double>(down) == midpoint) {
      EXPECT_EQ(kNf4Threshold[i], down) << i;
    } else {
      const float below = static_cast<double>(down) < midpoint ? down : std::nextafter(down, -kInf);
      const float above = std::nextafter(below, kInf);
      EXPECT_TRUE(kNf4Threshold[i] == below || kNf4Threshold[i] == above) << i;
      ties += (midpoint - below == above - midpoint) && kNf4Threshold[i] != down;
    }
  }
  EXPECT_EQ(ties, 4)
      << "midpoints that are exact fp32 ties where CUDA's literal is not the even one";
}

TEST(Nf4Encode, EveryThresholdBoundaryGoesLowAndTheNextFloatGoesHigh) {
  for (int i = 0; i < 15; ++i) {
    const float t = kNf4Threshold[static_cast<size_t>(i)];
    EXPECT_EQ(nf4_encode(t), i) << "exactly at threshold " << t;
    EXPECT_EQ(nf4_encode(std::nextafter(t, -kInf)), i) << "just below " << t;
    EXPECT_EQ(nf4_encode(std::nextafter(t, kInf)), i + 1) << "just above " << t;
  }
}

TEST(Nf4Encode, CodesMapToThemselvesAndOutOfRangeSaturates) {
  for (int i = 0; i < 16; ++i) EXPECT_EQ(nf4_encode(kNf4Code[static_cast<size_t>(i)]), i);
  EXPECT_EQ(nf4_encode(-0.0f), kNf4ZeroIndex);
  EXPECT_EQ(nf4_encode(1.5f), 15);
  EXPECT_EQ(nf4_encode(-1.5f), 0);
  EXPECT_EQ(nf4_encode(kNaN), 0);  // all comparisons false, like the CUDA tree
}

TEST(Nf4Encode, IsTheNearestCodeAwayFromThresholds) {
  CounterRng rng(11, 0);
  for (uint64_t k = 0; k < 200000; ++k) {
    const float u = rng.uniform(k) * 2.0f - 1.0f;
    int best = 0;
    for (int i = 1; i < 16; ++i) {
      if (std::fabs(u - kNf4Code[static_cast<size_t>(i)]) <
          std::fabs(u - kNf4Code[static_cast<size_t>(best)]))
        best = i;
    }
    bool near_threshold = false;
    for (float t : kNf4Threshold) near_threshold |= std::fabs(u - t) < 1e-6f;
    if (!near_threshold) {
      EXPECT_EQ(nf4_encode(u), best) << "u = " << u;
    }
  }
}

// ---- Quantize / pack ----------------------------------------------------------------------------

TEST(Nf4Quantize, EvenElementGoesInTheHighNibble) {
  uint8_t packed[2] = {0, 0};
  float absmax[1] = {0};
  const float x[2] = {1.0f, -1.0f};  // codes 15 and 0
  nf4_quantize(x, 2, 64, packed, absmax);
  EXPECT_EQ(packed[0], 0xF0);
  EXPECT_EQ(absmax[0], 1.0f);
  const float y[3] = {-2.0f, 2.0f, 1.0f};  // codes 0, 15, 12 (0.5 <= 0.5016...), pad 7
  nf4_quantize(y, 3, 64, packed, absmax);
  EXPECT_EQ(packed[0], 0x0F);
  EXPECT_EQ(packed[1], 0xC7) << "odd length: the pad nibble is index 7 (0.0)";
  EXPECT_EQ(absmax[0], 2.0f);
}

TEST(Nf4Quantize, BlocksIncludingAPartialLastOneHaveTheirOwnAbsmax) {
  for (int64_t n : {1, 63, 64, 65, 201, 202, 4099}) {
    for (int bs : {32, 64, 256}) {
      std::vector<float> x = normal(n, 100 + static_cast<uint64_t>(n), 0.02f);
      const int64_t blocks = nf4_num_blocks(n, bs);
      std::vector<uint8_t> packed(static_cast<size_t>(nf4_packed_bytes(n)), 0xAA);
      std::vector<float> absmax(static_cast<size_t>(blocks), -1.0f);
      nf4_quantize(x.data(), n, bs, packed.data(), absmax.data());
      ASSERT_EQ(blocks, (n + bs - 1) / bs);
      const std::vector<int> q = unpack(packed, n);
      for (int64_t b = 0; b < blocks; ++b) {
        float m = 0.0f;
        for (int64_t i = b * bs; i < std::min(n, (b + 1) * bs); ++i)
          m = std::max(m, std::fabs(x[static_cast<size_t>(i)]));
        EXPECT_EQ(absmax[static_cast<size_t>(b)], m) << "n " << n << " bs " << bs << " block " << b;
        const float inv = 1.0f / m;
        for (int64_t i = b * bs; i < std::min(n, (b + 1) * bs); ++i) {
          ASSERT_EQ(q[static_cast<size_t>(i)], nf4_encode(x[static_cast<size_t>(i)] * inv))
              << "element " << i;
        }
      }
      if (n % 2) {
        EXPECT_EQ(packed.back() & 0xF, kNf4ZeroIndex);
      }
    }
  }
}

TEST(Nf4Quantize, RoundTripErrorIsWithinHalfTheWidestCodeGap) {
  // Widest gap between adjacent codes is 1.0 - 0.7229568 ≈ 0.277.
  float half_gap = 0.0f;
  for (size_t i = 0; i < 15; ++i)
    half_gap = std::max(half_gap, (kNf4Code[i + 1] - kNf4Code[i]) / 2);
  const int64_t n = 64 * 1000 + 17;
  const std::vector<float> x = normal(n, 7);
  for (int bs : {32, 64, 128, 4096}) {
    std::vector<uint8_t> packed(static_cast<size_t>(nf4_packed_bytes(n)));
    std::vector<float> absmax(static_cast<size_t>(nf4_num_blocks(n, bs)));
    std::vector<float> y(static_cast<size_t>(n));
    nf4_quantize(x.data(), n, bs, packed.data(), absmax.data());
    nf4_dequantize(packed.data(), absmax.data(), n, bs, y.data());
    double sq = 0.0, sq_x = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float a = absmax[static_cast<size_t>(i / bs)];
      const float err = std::fabs(x[static_cast<size_t>(i)] - y[static_cast<size_t>(i)]);
      ASSERT_LE(err, a * half_gap * (1 + 1e-6f)) << "element " << i << " blocksize " << bs;
      sq += double(err) * err;
      sq_x += double(x[static_cast<size_t>(i)]) * x[static_cast<size_t>(i)];
    }
    // NF4 on Gaussian data: relative RMS error around 0.1 (grows with the block size).
    EXPECT_LT(std::sqrt(sq / sq_x), 0.13) << "blocksize " << bs;
  }
}

TEST(Nf4Quantize, AllZeroBlockGivesIndexSevenAndExactZeros) {
  std::vector<float> x(130, 0.0f);
  x[129] = -0.0f;
  std::vector<uint8_t> packed(65);
  std::vector<float> absmax(3, -1.0f);
  nf4_quantize(x.data(), 130, 64, packed.data(), absmax.data());
  for (uint8_t b : packed) EXPECT_EQ(b, 0x77);
  for (float a : absmax) EXPECT_TRUE(same_bits(a, 0.0f));
  std::vector<float> y(130, 1.0f);
  nf4_dequantize(packed.data(), absmax.data(), 130, 64, y.data());
  for (float v : y) EXPECT_TRUE(same_bits(v, 0.0f)) << v;
}

TEST(Nf4Quantize, NonFiniteValuesPoisonOnlyTheirBlockWithNaN) {
  for (float bad : {kNaN, kInf, -kInf}) {
    std::vector<float> x = normal(192, 3);
    x[70] = bad;  // block 1 of 3
    std::vector<uint8_t> packed(96);
    std::vector<float> absmax(3);
    nf4_quantize(x.data(), 192, 64, packed.data(), absmax.data());
    EXPECT_TRUE(std::isnan(absmax[1])) << bad;
    EXPECT_TRUE(std::isfinite(absmax[0]) && std::isfinite(absmax[2])) << bad;
    for (int k = 32; k < 64; ++k) EXPECT_EQ(packed[static_cast<size_t>(k)], 0x77);
    std::vector<float> y(192);
    nf4_dequantize(packed.data(), absmax.data(), 192, 64, y.data());
    for (int i = 0; i < 192; ++i) {
      EXPECT_EQ(std::isnan(y[static_cast<size_t>(i)]), i >= 64 && i < 128) << "element " << i;
    }
  }
}

TEST(Nf4Quantize, TinyBlocksAreScaledByTheClampedReciprocal) {
  std::vector<float> x(64, 0.0f);
  x[0] = 1e-39f;  // subnormal absmax: 1/absmax would overflow; clamped to 1e-38 -> u = 0.1
  x[1] = -1e-39f;
  x[2] = 4e-39f;
  std::vector<uint8_t> packed(32);
  float absmax = 0.0f;
  nf4_quantize(x.data(), 64, 64, packed.data(), &absmax);
  EXPECT_EQ(absmax, 4e-39f);
  EXPECT_EQ(packed[0] >> 4, nf4_encode(1e-39f * 1e38f));
  EXPECT_EQ(packed[0] & 0xF, nf4_encode(-1e-39f * 1e38f));
  std::vector<float> y(64);
  nf4_dequantize(packed.data(), &absmax, 64, 64, y.data());
  for (float v : y) EXPECT_TRUE(std::isfinite(v));
}

TEST(Nf4Errors, BadArgumentsThrowWithAClearMessage) {
  float f[4] = {};
  uint8_t b[2] = {};
  uint16_t h[4] = {};
  Nf4Tensor bad_packed = nf4_quantize_tensor(f, 2, 2, false, 64);
  bad_packed.packed.push_back(0);
  Nf4Tensor bad_nested = nf4_quantize_tensor(f, 2, 2, true, 64);
  bad_nested.nested.codes.clear();
  const Nf4Tensor ok = nf4_quantize_tensor(f, 2, 2, true, 64);
  struct Case {
    const char* name;
    std::function<void()> call;
    const char* expect;  // substring of the message
  };
  const std::vector<Case> cases = {
      {"blocksize 0", [&] { nf4_quantize(f, 4, 0, b, f); }, "blocksize 0 is invalid"},
      {"blocksize 16", [&] { nf4_quantize(f, 4, 16, b, f); }, "power of two in [32, 4096]"},
      {"blocksize 48", [&] { nf4_quantize(f, 4, 48, b, f); }, "blocksize 48 is invalid"},
      {"blocksize 8192", [&] { nf4_dequantize(b, f, 4, 8192, f); }, "blocksize 8192 is invalid"},
      {"blocksize -64", [&] { nf4_dequantize_bf16(b, f, 4, -64, h); }, "blocksize -64 is invalid"},
      {"negative n", [&] { nf4_quantize(f, -1, 64, b, f); }, "count -1 is negative"},
      {"null input", [&] { nf4_quantize(nullptr, 4, 64, b, f); }, "null pointer"},
      {"null output", [&] { nf4_dequantize(b, f, 4, 64, nullptr); }, "null pointer"},
      {"null quant_map", [&] { nf4_dequantize(b, f, 4, 64, f, nullptr); }, "null quant_map"},
      {"negative shape", [&] { (void)nf4_quantize_tensor(f, -2, 2, false); }, "is negative"},
      {"overflowing shape",
       [&] { (void)nf4_quantize_tensor(f, int64_t{1} << 40, int64_t{1} << 40, false); },
       "overflows int64"},
      {"nested blocksize 100", [&] { (void)nf4_double_quantize_absmax(f, 4, 100); },
       "nested blocksize 100 is invalid"},
      {"rows past the end", [&] { nf4_dequantize_rows(ok, 1, 3, f); },
       "row range [1, 3) is outside [0, 2)"},
      {"rows reversed", [&] { nf4_dequantize_rows_bf16(ok, 2, 1, h); }, "row range [2, 1)"},
      {"absmax range", [&] { nf4_tensor_absmax(ok, 0, 2, f); },
       "absmax range [0, 2) is outside [0, 1)"},
      {"packed size", [&] { nf4_dequantize_tensor(bad_packed, f); },
       "has 3 packed bytes, expected 2"},
      {"nested codes", [&] { nf4_dequantize_tensor(bad_nested, f); },
       "0 nested absmax codes, expected 1"},
  };
  for (const Case& c : cases) {
    std::string message = "<no error>";
    try {
      c.call();
    } catch (const Error& e) {
      message = e.message();
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << c.name;
    }
    EXPECT_NE(message.find(c.expect), std::string::npos) << c.name << ": got \"" << message << "\"";
  }
  // Zero elements are fine and touch nothing.
  EXPECT_NO_THROW(nf4_quantize(nullptr, 0, 64, nullptr, nullptr));
  EXPECT_NO_THROW(nf4_dequantize(nullptr, nullptr, 0, 64, nullptr));
}

// ---- Dequantize: AVX-512 vs scalar --------------------------------------------------------------

TEST(Nf4Dequantize, Avx512IsBitIdenticalToScalarOnRandomRanges) {
  if (!cpu_features().has_avx512_codecs()) {
    GTEST_SKIP() << "CPU (or QAFT_CPU_ISA) lacks AVX-512 F+BW+VL: " << cpu_features().summary();
  }
  const int64_t n = 64 * 1024 + 77;
  std::vector<float> x = normal(n, 21, 0.05f);
  x[5000] = kNaN;   // a NaN block: NaN outputs, bf16 0x7FFF
  x[9000] = 3e38f;  // huge absmax: products near the fp32/bf16 overflow edge
  std::vector<float> zeros(300, 0.0f);
  std::copy(zeros.begin(), zeros.end(), x.begin() + 20000);
  CounterRng rng(22, 0);
  for (int bs : {32, 64, 128, 1024, 4096}) {
    std::vector<uint8_t> packed(static_cast<size_t>(nf4_packed_bytes(n)));
    std::vector<float> absmax(static_cast<size_t>(nf4_num_blocks(n, bs)));
    nf4_quantize(x.data(), n, bs, packed.data(), absmax.data());
    for (int trial = 0; trial < 40; ++trial) {
      int64_t begin = trial == 0 ? 0 : rng.u32(static_cast<uint64_t>(2 * trial)) % n;
      int64_t end =
          trial == 0 ? n : begin + rng.u32(static_cast<uint64_t>(2 * trial + 1)) % (n - begin + 1);
      const float* a = absmax.data() + begin / bs;
      std::vector<float> s(static_cast<size_t>(end - begin)), v(s.size());
      detail::nf4_dequantize_range_scalar(packed.data(), a, begin, end, bs, kNf4Code.data(),
                                          s.data());
      detail::nf4_dequantize_range_avx512(packed.data(), a, begin, end, bs, kNf4Code.data(),
                                          v.data());
      ASSERT_EQ(std::memcmp(s.data(), v.data(), s.size() * sizeof(float)), 0)
          << "fp32 blocksize " << bs << " range [" << begin << ", " << end << ")";
      std::vector<uint16_t> sh(s.size()), vh(s.size());
      detail::nf4_dequantize_range_bf16_scalar(packed.data(), a, begin, end, bs, kNf4Code.data(),
                                               sh.data());
      detail::nf4_dequantize_range_bf16_avx512(packed.data(), a, begin, end, bs, kNf4Code.data(),
                                               vh.data());
      ASSERT_EQ(sh, vh) << "bf16 blocksize " << bs << " range [" << begin << ", " << end << ")";
    }
  }
}

TEST(Nf4Dequantize, Bf16IsTheFp32ResultRoundedToNearestEven) {
  const int64_t n = 4096 + 3;
  std::vector<float> x = normal(n, 31, 3.0f);
  x[100] = kNaN;
  std::vector<uint8_t> packed(static_cast<size_t>(nf4_packed_bytes(n)));
  std::vector<float> absmax(static_cast<size_t>(nf4_num_blocks(n, 64)));
  nf4_quantize(x.data(), n, 64, packed.data(), absmax.data());
  std::vector<float> y(static_cast<size_t>(n));
  std::vector<uint16_t> h(static_cast<size_t>(n));
  nf4_dequantize(packed.data(), absmax.data(), n, 64, y.data());
  nf4_dequantize_bf16(packed.data(), absmax.data(), n, 64, h.data());
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(h[static_cast<size_t>(i)], bf16_from_float(y[static_cast<size_t>(i)])) << i;
  EXPECT_EQ(h[100], 0x7FFF);
}

// ---- Double quantization ------------------------------------------------------------------------

TEST(Nf4DynamicMap, HasTheStructureOfCreateDynamicMap) {
  const std::array<float, 256>& m = nf4_dynamic_map();
  for (size_t k = 1; k < 256; ++k) EXPECT_LT(m[k - 1], m[k]) << "not strictly increasing at " << k;
  EXPECT_EQ(m[127], 0.0f);
  EXPECT_EQ(m[255], 1.0f);
  for (size_t k = 0; k < 255; ++k) EXPECT_EQ(m[k], -m[254 - k]) << "not symmetric at " << k;
  // Decade i (i = 0..6) holds the 2^i midpoints of linspace(0.1, 1, 2^i + 1) times 10^(i-6):
  // 10^(i-6) * (0.1 + (j + 0.5) * 0.9 / 2^i). Positive entries 128..254 in that order.
  size_t k = 128;
  for (int i = 0; i < 7; ++i) {
    for (int j = 0; j < (1 << i); ++j, ++k) {
      const double ideal = std::pow(10.0, i - 6) * (0.1 + (j + 0.5) * 0.9 / (1 << i));
      EXPECT_NEAR(m[k], ideal, ideal * 4e-7)
          << "entry " << k << " (decade " << i << ", " << j << ")";
    }
  }
  EXPECT_EQ(k, 255u);
}

TEST(Nf4DynamicMap, KnownBitPatterns) {
  // Entries with |v| < 1e-2 were compared with PyTorch 1.13 evaluating create_dynamic_map on this
  // kind of machine (where its linspace runs the same fused scalar formula as current PyTorch); the
  // others come from an exact-arithmetic model of current PyTorch's linspace (see nf4.cpp).
  const std::pair<size_t, uint32_t> known[] = {
      {0, 0xbf7e3333},   {126, 0xb513a3b7}, {127, 0x00000000}, {128, 0x3513a3b7}, {129, 0x365a1a94},
      {130, 0x370205ff}, {131, 0x37b24206}, {150, 0x3bab020d}, {190, 0x3dc9eb85}, {191, 0x3ddb3334},
      {217, 0x3ef20000}, {253, 0x3f7a999a}, {254, 0x3f7e3333}, {255, 0x3f800000}};
  for (const auto& [index, bits] : known) {
    EXPECT_EQ(std::bit_cast<uint32_t>(nf4_dynamic_map()[index]), bits) << "entry " << index;
  }
}

TEST(Nf4NestedEncode, IsTorchArgminWithTiesToTheLowerIndex) {
  const float* m = nf4_dynamic_map().data();
  auto argmin = [&](float u) {
    int best = 0;
    for (int k = 1; k < 256; ++k) {
      if (std::fabs(u - m[k]) < std::fabs(u - m[best])) best = k;
    }
    return best;
  };
  std::vector<float> probes = {-1.0f, 1.0f, 0.0f, -0.0f, 1e-30f, -1e-30f};
  for (int k = 0; k < 256; ++k) {
    probes.push_back(m[k]);
    probes.push_back(std::nextafter(m[k], kInf));
    probes.push_back(std::nextafter(m[k], -kInf));
    if (k < 255) probes.push_back((m[k] + m[k + 1]) / 2);  // exact ties where the sum is exact
  }
  CounterRng rng(41, 0);
  for (uint64_t i = 0; i < 20000; ++i) probes.push_back(rng.uniform(i) * 2 - 1);
  for (uint64_t i = 0; i < 5000; ++i) probes.push_back((rng.uniform(i + 99999) * 2 - 1) * 1e-3f);
  for (float u : probes) ASSERT_EQ(nf4_nested_encode(u, m), argmin(u)) << "u = " << u;
  EXPECT_EQ(nf4_nested_encode(kNaN, m), 127);
}

TEST(Nf4DoubleQuant, LayoutSizesAndOffset) {
  for (int64_t nblocks : {1, 255, 256, 257, 1000}) {
    std::vector<float> absmax(static_cast<size_t>(nblocks));
    for (int64_t i = 0; i < nblocks; ++i)
      absmax[static_cast<size_t>(i)] = 0.01f + 0.001f * static_cast<float>(i % 13);
    const Nf4NestedAbsmax q = nf4_double_quantize_absmax(absmax.data(), nblocks);
    EXPECT_EQ(q.codes.size(), static_cast<size_t>(nblocks));
    EXPECT_EQ(q.absmax2.size(), static_cast<size_t>((nblocks + 255) / 256));
    EXPECT_EQ(q.nested_blocksize, 256);
    double sum = 0;
    for (float a : absmax) sum += a;
    EXPECT_EQ(q.offset, static_cast<float>(sum / static_cast<double>(nblocks)));
  }
}

TEST(Nf4DoubleQuant, ReconstructionErrorIsBoundedByTheMapSpacing) {
  // Statistics of a realistic weight: absmax of 64-blocks of N(0, 0.02).
  const int64_t n = 64 * 3000;
  const std::vector<float> x = normal(n, 51, 0.02f);
  std::vector<uint8_t> packed(static_cast<size_t>(n / 2));
  std::vector<float> absmax(3000), back(3000);
  nf4_quantize(x.data(), n, 64, packed.data(), absmax.data());
  const Nf4NestedAbsmax q = nf4_double_quantize_absmax(absmax.data(), 3000);
  nf4_double_dequantize_absmax(q, 0, 3000, back.data());
  // Normalized values lie in [-1, 1], where the widest gap of the map is 0.9/64 (top decade): the
  // error is at most half of it times absmax2, plus rounding.
  const float half_gap = 0.9f / 64 / 2;
  double worst_rel = 0;
  for (size_t i = 0; i < 3000; ++i) {
    const float bound = q.absmax2[i / 256] * half_gap * 1.001f + 1e-7f * absmax[i];
    ASSERT_LE(std::fabs(back[i] - absmax[i]), bound) << "block " << i;
    worst_rel = std::max(worst_rel, double(std::fabs(back[i] - absmax[i])) / absmax[i]);
    const float scaled = nf4_dynamic_map()[q.codes[i]] * q.absmax2[i / 256];
    ASSERT_TRUE(same_bits(back[i], scaled + q.offset)) << "two fp32 roundings, block " << i;
  }
  EXPECT_LT(worst_rel, 0.01) << "relative error of the reconstructed absmax";
}

TEST(Nf4DoubleQuant, ConstantStatisticsAreExactAndNaNPoisonsAll) {
  std::vector<float> absmax(300, 0.125f);
  Nf4NestedAbsmax q = nf4_double_quantize_absmax(absmax.data(), 300);
  std::vector<float> back(300);
  nf4_double_dequantize_absmax(q, 0, 300, back.data());
  for (float b : back) EXPECT_EQ(b, 0.125f);
  for (uint8_t c : q.codes) EXPECT_EQ(c, 127);  // the map's 0
  absmax[3] = kNaN;
  q = nf4_double_quantize_absmax(absmax.data(), 300);
  nf4_double_dequantize_absmax(q, 0, 300, back.data());
  for (float b : back) EXPECT_TRUE(std::isnan(b));
}

// ---- Nf4Tensor ----------------------------------------------------------------------------------

TEST(Nf4Tensor, BytesPerParameter) {
  const int64_t rows = 1024, cols = 4096, n = rows * cols;
  std::vector<float> w(static_cast<size_t>(n));  // values do not matter here; cheap to make
  for (int64_t i = 0; i < n; ++i)
    w[static_cast<size_t>(i)] = static_cast<float>(i % 97 - 48) * 1e-3f;
  const Nf4Tensor dq = nf4_quantize_tensor(w.data(), rows, cols, true);
  nf4_check_tensor(dq);
  EXPECT_EQ(dq.packed.size(), static_cast<size_t>(n / 2));
  EXPECT_EQ(dq.nested.codes.size(), static_cast<size_t>(n / 64));
  EXPECT_EQ(dq.nested.absmax2.size(), static_cast<size_t>(n / 64 / 256));
  EXPECT_TRUE(dq.absmax.empty());
  EXPECT_EQ(dq.storage_bytes(), static_cast<size_t>(n / 2 + n / 64 + 4 * (n / 64 / 256) + 4));
  EXPECT_LE(dq.bytes_per_param(), 0.5 + 1.0 / 64 + 4.0 / (64 * 256) + 1e-6);
  const Nf4Tensor plain = nf4_quantize_tensor(w.data(), rows, cols, false);
  EXPECT_EQ(plain.storage_bytes(), static_cast<size_t>(n / 2 + 4 * (n / 64)));
  EXPECT_DOUBLE_EQ(plain.bytes_per_param(), 0.5 + 4.0 / 64);
}

TEST(Nf4Tensor, RowRangesMatchTheWholeTensorWithOddColumns) {
  const int64_t rows = 37, cols = 45;  // rows straddle blocks and bytes
  const std::vector<float> w = normal(rows * cols, 71, 0.5f);
  for (bool double_quant : {false, true}) {
    for (int bs : {32, 64}) {
      const Nf4Tensor t = nf4_quantize_tensor(w.data(), rows, cols, double_quant, bs);
      std::vector<float> whole(static_cast<size_t>(rows * cols));
      std::vector<uint16_t> whole_h(whole.size());
      nf4_dequantize_tensor(t, whole.data());
      nf4_dequantize_tensor_bf16(t, whole_h.data());
      // Whole tensor = quant_map[q] * absmax (reconstructed when double-quantized).
      std::vector<float> absmax(static_cast<size_t>(t.num_blocks()));
      nf4_tensor_absmax(t, 0, t.num_blocks(), absmax.data());
      const std::vector<int> q = unpack(t.packed, rows * cols);
      for (size_t i = 0; i < whole.size(); ++i) {
        ASSERT_TRUE(same_bits(
            whole[i], kNf4Code[static_cast<size_t>(q[i])] * absmax[i / static_cast<size_t>(bs)]))
            << i;
        ASSERT_EQ(whole_h[i], bf16_from_float(whole[i])) << i;
      }
      for (int64_t r0 = 0; r0 <= rows; r0 += 3) {
        for (int64_t r1 = r0; r1 <= std::min(rows, r0 + 7); ++r1) {
          std::vector<float> part(static_cast<size_t>((r1 - r0) * cols) + 1, 42.0f);
          std::vector<uint16_t> part_h(part.size(), 42);
          nf4_dequantize_rows(t, r0, r1, part.data());
          nf4_dequantize_rows_bf16(t, r0, r1, part_h.data());
          ASSERT_EQ(part.back(), 42.0f) << "wrote past the rows";
          ASSERT_EQ(
              std::memcmp(part.data(), whole.data() + r0 * cols, (part.size() - 1) * sizeof(float)),
              0)
              << "rows [" << r0 << ", " << r1 << ") double_quant " << double_quant << " bs " << bs;
          ASSERT_TRUE(std::equal(part_h.begin(), part_h.end() - 1, whole_h.begin() + r0 * cols));
        }
      }
    }
  }
}

TEST(Nf4Tensor, DequantizationUsesTheTensorsOwnQuantMap) {
  const std::vector<float> w = normal(8 * 64, 81);
  Nf4Tensor t = nf4_quantize_tensor(w.data(), 8, 64, false);
  std::vector<float> a(w.size()), b(w.size());
  nf4_dequantize_tensor(t, a.data());
  for (float& c : t.quant_map) c *= 2.0f;  // as if a file carried another map
  nf4_dequantize_tensor(t, b.data());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(b[i], 2.0f * a[i]) << i;
}

}  // namespace
}  // namespace qaft
