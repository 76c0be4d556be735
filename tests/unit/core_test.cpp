// Core: errors carry file:line and hints, dtype table, tensor views, arenas, counter-based RNG.
#include "core/arena.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

using namespace qaft;

TEST(Error, CarriesWhereMessageAndHint) {
  try {
    QAFT_CHECK_HINT(1 + 1 == 3, ErrorKind::kInvalidFile, "re-download the file", "bad header of {}",
                    "x.safetensors");
    FAIL() << "did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidFile);
    EXPECT_EQ(e.message(), "bad header of x.safetensors");
    EXPECT_EQ(e.hint(), "re-download the file");
    EXPECT_TRUE(e.where().starts_with("tests/unit/core_test.cpp:")) << e.where();
    EXPECT_NE(std::string(e.what()).find("hint: re-download"), std::string::npos);
  }
}

TEST(Error, CheckPassesWhenTrue) { EXPECT_NO_THROW(QAFT_CHECK(2 > 1, "never")); }

TEST(DType, TableIsConsistentWithTheEnum) {
  for (auto t : {DType::kF64, DType::kF32, DType::kBF16, DType::kF16, DType::kE5M6, DType::kE4M3,
                 DType::kE5M2, DType::kE8M0, DType::kNF4, DType::kI64, DType::kI32, DType::kI16,
                 DType::kI8, DType::kU8, DType::kBool}) {
    auto back = dtype_from_name(dtype_name(t));
    ASSERT_TRUE(back.has_value()) << dtype_name(t);
    EXPECT_EQ(*back, t) << dtype_name(t);
  }
  EXPECT_EQ(dtype_bytes(DType::kNF4, 5), 3u);
  EXPECT_EQ(dtype_bytes(DType::kBF16, 5), 10u);
  EXPECT_EQ(dtype_bytes(DType::kE5M6, 1), 2u);
  EXPECT_FALSE(dtype_from_name("f8").has_value());
}

TEST(Tensor, ContiguousViewsReshapeAndSlice) {
  float buf[24] = {};
  Tensor t(buf, DType::kF32, {2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.stride(0), 12);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.nbytes(), 96u);
  Tensor r = t.reshape({6, 4});
  EXPECT_EQ(r.dim(0), 6);
  Tensor s = r.slice_rows(2, 5);
  EXPECT_EQ(s.dim(0), 3);
  EXPECT_EQ(s.data<float>(), buf + 8);
  EXPECT_EQ(t.str(), "f32[2, 3, 4] cpu");
  EXPECT_THROW(t.reshape({5, 5}), Error);
  EXPECT_THROW(t.data<uint16_t>(), Error);
  EXPECT_THROW(r.slice_rows(4, 7), Error);
  EXPECT_THROW(t.dim(3), Error);
}

TEST(Arena, AlignsAllocatesAndRefusesOverflowWithAClearMessage) {
  Arena arena("activations", 1024);
  void* a = arena.allocate(10);
  void* b = arena.allocate(10);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 64, 0u);
  EXPECT_EQ(arena.used(), 74u);
  Tensor t = arena.allocate_tensor(DType::kBF16, {4, 8});
  EXPECT_EQ(t.nbytes(), 64u);
  try {
    arena.allocate(2000);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("activations arena"), std::string::npos) << e.message();
  }
  size_t hw = arena.high_water();
  arena.reset();
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_EQ(arena.high_water(), hw);
}

// Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
TEST(Rng, Philox4x32_10MatchesRandom123KnownAnswers) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (PhiloxBlock{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          {0xffffffffu, 0xffffffffu}),
            (PhiloxBlock{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          {0xa4093822u, 0x299f31d0u}),
            (PhiloxBlock{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(Rng, StreamsAreReproducibleIndependentAndWellDistributed) {
  CounterRng a(42, 7), b(42, 7), c(42, 8), d(43, 7);
  EXPECT_EQ(a.u32(12345), b.u32(12345));
  EXPECT_NE(a.u32(0), c.u32(0));
  EXPECT_NE(a.u32(0), d.u32(0));
  // Random access equals sequential fill.
  std::vector<float> seq(1000);
  a.fill_uniform(seq.data(), 1000, 500);
  EXPECT_EQ(seq[123], a.uniform(623));
  // Moments of 2^16 normals.
  const int n = 1 << 16;
  std::vector<float> z(n);
  a.fill_normal(z.data(), n, 0.0f, 1.0f);
  double mean = 0, var = 0;
  for (float v : z) mean += v;
  mean /= n;
  for (float v : z) var += (v - mean) * (v - mean);
  var /= n;
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(var, 1.0, 0.03);
  for (int i = 0; i < 1000; ++i) {
    float u = a.uniform(static_cast<uint64_t>(i));
    EXPECT_GE(u, 0.0f);
    EXPECT_LT(u, 1.0f);
  }
}
