// Host-side tests of the CUDA backend that need no GPU (they run in CI):
//   1. the scalar numerics the kernels execute (src/cuda/device_numerics.h, compiled here as plain
//      C++) against the CPU reference, bit for bit: FP8 E4M3/E5M2 encode/decode over sweeps of all
//      exponents and every rounding tie, BF16, UE8M0 pow2_ceil, block scales, whole 1×128 / 128×128
//      quantizations (NaN blocks, partial edge blocks) built from the kernels' per-element steps,
//      NF4 encode/quantize/dequantize/double-quant, AdamW (fp32 and bf16 moments), RoPE rotation and
//      the MoE router (dn::route_token against router_reference.h, moe_route's routing verbatim);
//   2. the runtime without a device: cuda_available() says why not, ops throw qaft::Error
//      (kUnsupported) instead of crashing;
//   3. the parity comparator itself (tests/cuda/parity_compare.h).
// What these tests cannot show — the kernels' indexing, reductions and launches — is covered by
// cuda_parity_test on a GPU (docs/cuda.md).
#include "core/error.h"
#include "core/rng.h"
#include "cuda/device_numerics.h"
#include "cuda/ops.h"
#include "cuda/runtime.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "numerics/bf16.h"
#include "numerics/fp8.h"
#include "numerics/nf4.h"
#include "numerics/scale_recipe.h"
#include "numerics/ue8m0.h"
#include "optim/adamw.h"
#include "parity_compare.h"
#include "router_reference.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace qaft {
namespace {

namespace dn = cuda::dn;

uint32_t fbits(float x) { return std::bit_cast<uint32_t>(x); }
float ffrom(uint32_t u) { return std::bit_cast<float>(u); }

// Every fp32 pattern in a stride-257 sweep (all exponents, varied mantissas: ~16.7M inputs), plus
// for each exponent field every rounding-relevant mantissa ending: the kept bits with the dropped
// part 0, 1, half − 1, half, half + 1 and all ones, for each position of the rounding point.
template <typename F>
void for_sweep_inputs(F&& f) {
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 257) f(static_cast<uint32_t>(u));
  for (uint32_t sign = 0; sign < 2; ++sign)
    for (uint32_t e = 0; e < 256; ++e)
      for (int d = 1; d <= 23; ++d) {
        const uint32_t half = 1u << (d - 1), mask = (1u << d) - 1;
        for (uint32_t kept = 0; kept < 8; ++kept) {
          const uint32_t hi = (kept << d) & 0x7FFFFFu;
          for (const uint32_t lo : {0u, 1u, half - 1, half, half + 1, mask})
            f((sign << 31) | (e << 23) | ((hi | (lo & mask)) & 0x7FFFFFu));
        }
      }
}

TEST(DeviceMath, Fp8EncodeMatchesCpuOnSweep) {
  int64_t bad_e4m3 = 0, bad_e5m2 = 0, bad_nosat = 0, checked = 0;
  uint32_t first_bad = 0;
  for_sweep_inputs([&](uint32_t u) {
    const float x = ffrom(u);
    ++checked;
    if (dn::e4m3_encode(x) != fp8_encode(x, Fp8Format::kE4M3) && bad_e4m3++ == 0) first_bad = u;
    if (dn::e5m2_encode(x) != fp8_encode(x, Fp8Format::kE5M2) && bad_e5m2++ == 0) first_bad = u;
    if (dn::minifloat_encode<4, 3, 7, true>(x, false) != minifloat_encode<kE4M3Spec>(x, Saturation::kNoSat) ||
        dn::minifloat_encode<5, 2, 15, false>(x, false) != minifloat_encode<kE5M2Spec>(x, Saturation::kNoSat)) {
      if (bad_nosat++ == 0) first_bad = u;
    }
  });
  EXPECT_EQ(bad_e4m3, 0) << "first mismatching input 0x" << std::hex << first_bad;
  EXPECT_EQ(bad_e5m2, 0) << "first mismatching input 0x" << std::hex << first_bad;
  EXPECT_EQ(bad_nosat, 0) << "first mismatching input 0x" << std::hex << first_bad;
  EXPECT_GT(checked, 16'000'000);
}

TEST(DeviceMath, Fp8DecodeMatchesCpuForEveryCode) {
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<uint8_t>(c);
    EXPECT_EQ(fbits(dn::e4m3_decode(code)), fbits(fp8_decode(code, Fp8Format::kE4M3))) << "e4m3 code " << c;
    EXPECT_EQ(fbits(dn::e5m2_decode(code)), fbits(fp8_decode(code, Fp8Format::kE5M2))) << "e5m2 code " << c;
  }
}

TEST(DeviceMath, Bf16AndPow2CeilMatchCpuOnSweep) {
  int64_t bad_bf16 = 0, bad_pow2 = 0;
  uint32_t first_bf16 = 0, first_pow2 = 0;
  for_sweep_inputs([&](uint32_t u) {
    const float x = ffrom(u);
    if (dn::bf16_from_float(x) != bf16_from_float(x) && bad_bf16++ == 0) first_bf16 = u;
    const float a = dn::pow2_ceil(x), b = pow2_ceil(x);
    if (!(std::isnan(a) && std::isnan(b)) && fbits(a) != fbits(b) && bad_pow2++ == 0) first_pow2 = u;
  });
  EXPECT_EQ(bad_bf16, 0) << "first 0x" << std::hex << first_bf16;
  EXPECT_EQ(bad_pow2, 0) << "first 0x" << std::hex << first_pow2;
  for (uint32_t h = 0; h < 65536; ++h)
    ASSERT_EQ(fbits(dn::bf16_to_float(static_cast<uint16_t>(h))), fbits(bf16_to_float(static_cast<uint16_t>(h))));
}

TEST(DeviceMath, TileScaleMatchesCpu) {
  const CounterRng rng(7, 0);
  std::vector<float> amaxes = {0.0f, 1e-45f, 1e-38f, 1e-5f, 1e-4f, 1.0f, 448.0f, 3.4e38f, INFINITY, NAN, -0.0f};
  for (uint64_t i = 0; i < 20000; ++i) amaxes.push_back(std::ldexp(rng.uniform(i) + 0.5f, static_cast<int>(rng.u32(i + 99999) % 200) - 140));
  for (const float floor : {0.0f, 1e-4f, 1e-12f})
    for (const bool pow2 : {false, true})
      for (const bool e5m2 : {false, true})
        for (const float a : amaxes) {
          const float got = dn::tile_scale(a, floor, pow2, e5m2);
          const float want = detail::fp8_tile_scale(a, floor, pow2, e5m2 ? Fp8Format::kE5M2 : Fp8Format::kE4M3);
          if (std::isnan(want)) {
            ASSERT_TRUE(std::isnan(got)) << a;
          } else {
            ASSERT_EQ(fbits(got), fbits(want)) << "amax " << a << " floor " << floor << " pow2 " << pow2;
          }
        }
}

// Quantizes like the kernels do (amax as an unsigned max of |x| bit patterns, dn::tile_scale,
// dn::quantize_element), with the ScaleRecipe's block grid.
void emulate_quantize(const std::vector<float>& x, int64_t rows, int64_t cols, const ScaleRecipe& r,
                      std::vector<uint8_t>& codes, std::vector<float>& scales, std::vector<float>& fake) {
  const int64_t br = r.block_rows(rows), bc = r.block_cols(cols), sr = r.scale_rows(rows), sc = r.scale_cols(cols);
  std::vector<uint32_t> amax(static_cast<size_t>(sr * sc), 0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      uint32_t& m = amax[static_cast<size_t>((i / br) * sc + j / bc)];
      m = std::max(m, dn::abs_bits(x[static_cast<size_t>(i * cols + j)]));
    }
  scales.resize(amax.size());
  for (size_t b = 0; b < amax.size(); ++b)
    scales[b] = dn::tile_scale(dn::amax_from_bits(amax[b]), r.amax_floor, r.scale_format == ScaleFormat::kUe8m0,
                               r.element == Fp8Format::kE5M2);
  codes.resize(x.size());
  fake.resize(x.size());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const size_t k = static_cast<size_t>(i * cols + j);
      const float s = scales[static_cast<size_t>((i / br) * sc + j / bc)];
      codes[k] = dn::quantize_element(x[k], s, r.element == Fp8Format::kE5M2);
      fake[k] = dn::dequantize_element(codes[k], s, r.element == Fp8Format::kE5M2);
    }
}

TEST(DeviceMath, BlockQuantizationMatchesScaleRecipe) {
  const CounterRng rng(11, 1);
  // Odd sizes: partial edge blocks in both directions.
  const int64_t rows = 200, cols = 333;
  std::vector<float> x(static_cast<size_t>(rows * cols));
  rng.fill_normal(x.data(), rows * cols, 0.0f, 3.0f);
  for (int64_t j = 0; j < cols; ++j) x[static_cast<size_t>(7 * cols + j)] *= 1e-30f;  // tiny row: floor matters
  x[static_cast<size_t>(5 * cols + 17)] = NAN;                                          // poisons its blocks
  x[static_cast<size_t>(150 * cols + 300)] = -INFINITY;
  for (int64_t j = 256; j < cols; ++j) x[static_cast<size_t>(3 * cols + j)] = 0.0f;    // an all-zero tile
  x[static_cast<size_t>(9 * cols + 1)] = 1e6f;                                          // saturates nothing (amax scaling)
  for (const Granularity g : {Granularity::kTile1x128, Granularity::kBlock128x128, Granularity::kMx1x32,
                              Granularity::kPerChannel, Granularity::kPerTensor})
    for (const ScaleFormat sf : {ScaleFormat::kFp32, ScaleFormat::kUe8m0})
      for (const Fp8Format el : {Fp8Format::kE4M3, Fp8Format::kE5M2})
        for (const float floor : {1e-4f, 0.0f}) {
          const ScaleRecipe r{g, sf, el, floor};
          SCOPED_TRACE(r.str());
          std::vector<uint8_t> codes_want(x.size());
          std::vector<float> scales_want(static_cast<size_t>(r.scale_rows(rows) * r.scale_cols(cols)));
          const QuantizeStats st = quantize(x.data(), rows, cols, cols, r, codes_want.data(), scales_want.data());
          std::vector<float> fake_want(x.size());
          fake_quantize(x.data(), rows, cols, r, fake_want.data());
          std::vector<uint8_t> codes;
          std::vector<float> scales, fake;
          emulate_quantize(x, rows, cols, r, codes, scales, fake);
          EXPECT_TRUE(test::parity_equal(codes, codes_want));
          EXPECT_TRUE(test::parity_bitwise(scales, scales_want));
          EXPECT_TRUE(test::parity_bitwise(fake, fake_want));
          int64_t nan_scales = 0;
          for (const float s : scales) nan_scales += std::isnan(s);
          EXPECT_EQ(nan_scales, st.nonfinite_blocks);
          EXPECT_GT(nan_scales, 0);
        }
}

TEST(DeviceMath, Nf4EncodeMatchesCpuTree) {
  std::vector<float> us = {-2.0f, -1.0f, 0.0f, -0.0f, 1.0f, 2.0f, NAN, INFINITY, -INFINITY};
  for (const float t : kNf4Threshold)
    for (int d = -3; d <= 3; ++d) us.push_back(ffrom(static_cast<uint32_t>(static_cast<int64_t>(fbits(t)) + d)));
  const CounterRng rng(3, 3);
  for (uint64_t i = 0; i < 200000; ++i) us.push_back(rng.uniform(i) * 2.4f - 1.2f);
  for (const float u : us) ASSERT_EQ(dn::nf4_encode(u), nf4_encode(u)) << "u=" << u;
}

// NF4 quantize/dequantize as the kernels do it (per block: max |x|, finiteness, dn::nf4_inverse,
// dn::nf4_encode; dequantize dn::mul_rn of the map value and absmax).
TEST(DeviceMath, Nf4BlocksMatchCpu) {
  const CounterRng rng(5, 5);
  for (const int bs : {32, 64, 256}) {
    const int64_t n = 7 * bs + 37;  // odd: a partial last block with a padded low nibble
    std::vector<float> x(static_cast<size_t>(n));
    rng.fill_normal(x.data(), n, 0.0f, 1.0f);
    x[static_cast<size_t>(bs + 3)] = NAN;            // poisons block 1
    for (int i = 0; i < bs; ++i) x[static_cast<size_t>(2 * bs + i)] = 0.0f;  // an all-zero block
    x[static_cast<size_t>(4 * bs)] = 1e-39f;          // subnormal absmax in block 4
    for (int i = 1; i < bs; ++i) x[static_cast<size_t>(4 * bs + i)] = 0.0f;
    const int64_t blocks = nf4_num_blocks(n, bs);
    std::vector<uint8_t> packed_want(static_cast<size_t>(nf4_packed_bytes(n)));
    std::vector<float> absmax_want(static_cast<size_t>(blocks));
    nf4_quantize(x.data(), n, bs, packed_want.data(), absmax_want.data());
    std::vector<uint8_t> packed(packed_want.size());
    std::vector<float> absmax(absmax_want.size());
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t i0 = b * bs, len = std::min<int64_t>(bs, n - i0);
      float m = 0.0f;
      bool finite = true;
      for (int64_t i = 0; i < len; ++i) {
        const float a = std::fabs(x[static_cast<size_t>(i0 + i)]);
        finite &= a <= std::numeric_limits<float>::max();
        m = a > m ? a : m;
      }
      absmax[static_cast<size_t>(b)] = finite ? m : dn::quiet_nan();
      const float inv = dn::nf4_inverse(m);
      for (int64_t p = 0; p < (len + 1) / 2; ++p) {
        uint32_t hi = dn::kNf4ZeroIndex, lo = dn::kNf4ZeroIndex;
        if (finite) {
          hi = dn::nf4_encode(dn::mul_rn(x[static_cast<size_t>(i0 + 2 * p)], inv));
          if (2 * p + 1 < len) lo = dn::nf4_encode(dn::mul_rn(x[static_cast<size_t>(i0 + 2 * p + 1)], inv));
        }
        packed[static_cast<size_t>(i0 / 2 + p)] = static_cast<uint8_t>((hi << 4) | lo);
      }
    }
    EXPECT_TRUE(test::parity_equal(packed, packed_want)) << "blocksize " << bs;
    EXPECT_TRUE(test::parity_bitwise(absmax, absmax_want)) << "blocksize " << bs;
    // Dequantize (fp32 and bf16).
    std::vector<float> out_want(static_cast<size_t>(n)), out(static_cast<size_t>(n));
    std::vector<uint16_t> bf_want(static_cast<size_t>(n)), bf(static_cast<size_t>(n));
    nf4_dequantize(packed_want.data(), absmax_want.data(), n, bs, out_want.data());
    nf4_dequantize_bf16(packed_want.data(), absmax_want.data(), n, bs, bf_want.data());
    for (int64_t i = 0; i < n; ++i) {
      const float v = dn::mul_rn(kNf4Code[dn::nf4_index(packed_want.data(), i)], absmax_want[static_cast<size_t>(i / bs)]);
      out[static_cast<size_t>(i)] = v;
      bf[static_cast<size_t>(i)] = dn::bf16_from_float(v);
    }
    EXPECT_TRUE(test::parity_bitwise(out, out_want));
    EXPECT_TRUE(test::parity_equal(bf, bf_want));
  }
}

TEST(DeviceMath, Nf4DoubleQuantAbsmaxMatchesCpu) {
  const CounterRng rng(9, 9);
  std::vector<float> x(64 * 700);
  rng.fill_normal(x.data(), static_cast<int64_t>(x.size()), 0.0f, 0.5f);
  const Nf4Tensor t = nf4_quantize_tensor(x.data(), 64, 700, /*double_quant=*/true);
  const int64_t blocks = t.num_blocks();
  std::vector<float> want(static_cast<size_t>(blocks)), got(static_cast<size_t>(blocks));
  nf4_tensor_absmax(t, 0, blocks, want.data());
  for (int64_t j = 0; j < blocks; ++j)
    got[static_cast<size_t>(j)] =
        dn::nf4_nested_absmax(t.nested_map[t.nested.codes[static_cast<size_t>(j)]],
                              t.nested.absmax2[static_cast<size_t>(j / t.nested.nested_blocksize)], t.nested.offset);
  EXPECT_TRUE(test::parity_bitwise(got, want));
}

TEST(DeviceMath, AdamWElementMatchesOptimizer) {
  const int64_t n = 5000;
  const CounterRng rng(13, 0);
  for (const MomentPrecision mp : {MomentPrecision::kF32, MomentPrecision::kBF16}) {
    AdamWConfig cfg;
    cfg.moments = mp;
    std::vector<uint8_t> mask(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) mask[static_cast<size_t>(i)] = static_cast<uint8_t>(rng.u32(static_cast<uint64_t>(i)) % 3 != 0);
    AdamW opt(cfg, n, mask);
    std::vector<float> p(static_cast<size_t>(n)), g(static_cast<size_t>(n));
    rng.fill_normal(p.data(), n, 0.0f, 0.05f, 1 << 20);
    std::vector<float> q = p, m32(static_cast<size_t>(n), 0.0f), v32(static_cast<size_t>(n), 0.0f);
    std::vector<uint16_t> m16(static_cast<size_t>(n), 0), v16(static_cast<size_t>(n), 0);
    for (int step = 1; step <= 6; ++step) {
      rng.fill_normal(g.data(), n, 0.0f, step == 3 ? 1e-20f : 0.01f, static_cast<uint64_t>(step) << 24);
      const double lr = 1e-3 * step;
      opt.step(p.data(), g.data(), lr);
      const dn::AdamWScalars s = dn::adamw_scalars(cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, step, lr);
      for (int64_t i = 0; i < n; ++i) {
        const size_t k = static_cast<size_t>(i);
        if (mp == MomentPrecision::kF32)
          dn::adamw_element_f32(q[k], g[k], m32[k], v32[k], mask[k] != 0, s);
        else
          dn::adamw_element_bf16(q[k], g[k], m16[k], v16[k], mask[k] != 0, s);
      }
      ASSERT_TRUE(test::parity_bitwise(q, p)) << "step " << step;
    }
    std::vector<float> m_want, v_want;
    int64_t steps = 0;
    opt.export_state(m_want, v_want, steps);
    if (mp == MomentPrecision::kF32) {
      EXPECT_TRUE(test::parity_bitwise(m32, m_want));
      EXPECT_TRUE(test::parity_bitwise(v32, v_want));
    } else {
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(fbits(bf16_to_float(m16[static_cast<size_t>(i)])), fbits(m_want[static_cast<size_t>(i)]));
        ASSERT_EQ(fbits(bf16_to_float(v16[static_cast<size_t>(i)])), fbits(v_want[static_cast<size_t>(i)]));
      }
    }
  }
}

TEST(DeviceMath, RopeRotationMatchesCpu) {
  const int64_t N = 37, heads = 3, D = 64, rot = 32, offset = 16;
  const CounterRng rng(17, 0);
  std::vector<float> x(static_cast<size_t>(N * heads * D));
  rng.fill_normal(x.data(), static_cast<int64_t>(x.size()), 0.0f, 1.0f);
  std::vector<int32_t> pos(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) pos[static_cast<size_t>(n)] = static_cast<int32_t>(n * 97 % 5000);
  std::vector<double> inv_freq(static_cast<size_t>(rot / 2));
  for (int64_t i = 0; i < rot / 2; ++i) inv_freq[static_cast<size_t>(i)] = std::pow(10000.0, -2.0 * static_cast<double>(i) / rot);
  for (const RopeLayout layout : {RopeLayout::kInterleaved, RopeLayout::kHalfSplit})
    for (const bool inverse : {false, true}) {
      std::vector<float> want = x, got = x;
      rope_apply(want.data(), N, heads, heads * D, D, offset, rot, pos.data(), inv_freq.data(), layout, inverse);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t i = 0; i < rot / 2; ++i) {
            const double a = static_cast<double>(pos[static_cast<size_t>(n)]) * inv_freq[static_cast<size_t>(i)];
            const float c = static_cast<float>(std::cos(a)), s = (inverse ? -1.0f : 1.0f) * static_cast<float>(std::sin(a));
            float* p = got.data() + n * heads * D + h * D + offset;
            float* p0 = layout == RopeLayout::kHalfSplit ? p + i : p + 2 * i;
            float* p1 = layout == RopeLayout::kHalfSplit ? p + i + rot / 2 : p + 2 * i + 1;
            dn::rope_rotate(*p0, *p1, c, s);
          }
      EXPECT_TRUE(test::parity_bitwise(got, want));
    }
}

// dn::route_token (what the router kernel runs per token) against moe_route's routing
// (router_reference.h) on the same logits.
TEST(DeviceMath, RouterMatchesMoeRoute) {
  struct Case {
    const char* name;
    RouterScoring scoring;
    TopkMethod method;
    int64_t E, K, G, topk_group;
    bool norm, bias;
    double scaling;
  };
  const Case cases[] = {
      {"deepseek-v3 noaux_tc", RouterScoring::kSigmoid, TopkMethod::kNoauxTc, 64, 8, 8, 4, true, true, 2.5},
      {"deepseek-v2 group greedy", RouterScoring::kSoftmax, TopkMethod::kGroupLimitedGreedy, 32, 6, 4, 2, false, false, 16.0},
      {"qwen softmax greedy norm", RouterScoring::kSoftmax, TopkMethod::kGreedy, 60, 4, 1, 1, true, false, 1.0},
      {"sigmoid greedy", RouterScoring::kSigmoid, TopkMethod::kGreedy, 16, 2, 1, 1, false, true, 1.0},
      {"more k than kept groups allow", RouterScoring::kSigmoid, TopkMethod::kNoauxTc, 16, 6, 8, 2, true, false, 1.0},
  };
  const CounterRng rng(21, 0);
  for (const Case& cs : cases) {
    SCOPED_TRACE(cs.name);
    ModelConfig c;
    c.hidden_size = 48;
    c.num_experts = cs.E;
    c.num_experts_per_tok = cs.K;
    c.scoring = cs.scoring;
    c.topk_method = cs.method;
    c.n_group = cs.G;
    c.topk_group = cs.topk_group;
    c.norm_topk_prob = cs.norm;
    c.routed_scaling_factor = cs.scaling;
    const int64_t N = 300, C = c.hidden_size;
    std::vector<float> x(static_cast<size_t>(N * C)), router(static_cast<size_t>(cs.E * C)), bias(static_cast<size_t>(cs.E));
    rng.fill_normal(x.data(), N * C, 0.0f, 1.0f, 0);
    rng.fill_normal(router.data(), cs.E * C, 0.0f, 0.2f, 1 << 20);
    rng.fill_normal(bias.data(), cs.E, 0.0f, 0.1f, 1 << 22);
    // Exact ties between experts: equal router rows give equal logits (and equal scores).
    std::copy(router.begin() + 3 * C, router.begin() + 4 * C, router.begin() + 5 * C);
    std::copy(router.begin() + 3 * C, router.begin() + 4 * C, router.begin() + 9 * C);
    const float* bias_ptr = cs.bias ? bias.data() : nullptr;
    std::vector<float> logits(static_cast<size_t>(N * cs.E));
    gemm<float>(Trans::kNo, Trans::kYes, N, cs.E, C, 1.0f, x.data(), C, router.data(), C, 0.0f, logits.data(), cs.E);
    std::vector<float> want_scores, want_w;
    std::vector<int32_t> want_topk;
    test::reference_route(logits.data(), bias_ptr, N, c, want_scores, want_topk, want_w);
    dn::RouterParams p{};
    p.experts = static_cast<int32_t>(cs.E);
    p.top_k = static_cast<int32_t>(cs.K);
    p.n_group = static_cast<int32_t>(cs.G);
    p.topk_group = static_cast<int32_t>(cs.topk_group);
    p.sigmoid = cs.scoring == RouterScoring::kSigmoid;
    p.grouped = cs.G > 1 && cs.method != TopkMethod::kGreedy;
    p.group_by_top2_sum = cs.method == TopkMethod::kNoauxTc;
    p.norm_topk_prob = cs.norm;
    p.routed_scaling_factor = static_cast<float>(cs.scaling);
    std::vector<float> scores(static_cast<size_t>(N * cs.E)), w(static_cast<size_t>(N * cs.K)), choice(static_cast<size_t>(cs.E));
    std::vector<int32_t> topk(static_cast<size_t>(N * cs.K));
    for (int64_t n = 0; n < N; ++n)
      dn::route_token(logits.data() + n * cs.E, bias_ptr, p, scores.data() + n * cs.E, choice.data(),
                      topk.data() + n * cs.K, w.data() + n * cs.K);
    EXPECT_TRUE(test::parity_bitwise(scores, want_scores));
    EXPECT_TRUE(test::parity_equal(topk, want_topk));
    EXPECT_TRUE(test::parity_bitwise(w, want_w));
  }
}

TEST(CudaRuntime, ReportsWhyNoDeviceAndOpsThrow) {
  std::string reason;
  if (cuda::cuda_available(&reason)) GTEST_SKIP() << "a CUDA device is present: " << cuda::cuda_describe();
  EXPECT_FALSE(reason.empty());
  EXPECT_NE(cuda::cuda_describe().find("no usable CUDA device"), std::string::npos) << cuda::cuda_describe();
  std::string why;
  EXPECT_FALSE(cuda::cublaslt_block_scaling_supported(&why));
  EXPECT_FALSE(why.empty());
  // Every op checks for the device first: a clear kUnsupported error, never a crash.
  const auto expect_unsupported = [](auto&& f, const char* what) {
    try {
      f();
      ADD_FAILURE() << what << " did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << what << ": " << e.what();
      EXPECT_NE(e.message().find("no usable CUDA device"), std::string::npos) << e.message();
    }
  };
  expect_unsupported([] { cuda::DeviceBuffer b(1024); }, "DeviceBuffer");
  expect_unsupported([] { cuda::rmsnorm_forward(nullptr, nullptr, 4, 8, 8, 1e-6f, nullptr, nullptr); }, "rmsnorm");
  expect_unsupported([] { cuda::gemm(Trans::kNo, Trans::kYes, 4, 4, 4, 1.0f, nullptr, 4, nullptr, 4, 0.0f, nullptr, 4); },
                     "gemm");
  expect_unsupported(
      [] {
        cuda::fp8_gemm_1x128_128x128_nt(128, 128, 128, nullptr, nullptr, nullptr, nullptr, nullptr, 128,
                                        cuda::GemmOut::kBF16);
      },
      "fp8_gemm");
  expect_unsupported([] { cuda::quantize(nullptr, 1, 128, 128, ScaleRecipe::deepseek_activation(), nullptr, nullptr); },
                     "quantize");
  expect_unsupported([] { cuda::synchronize(); }, "synchronize");
}

TEST(ParityComparator, FlagsToleranceNanPlacementAndBits) {
  const std::vector<float> want = {1.0f, -2.0f, 0.0f, NAN, INFINITY, 3.0f};
  EXPECT_TRUE(test::parity_bitwise(want, want));
  EXPECT_TRUE(test::parity_close(want, want, 0.0, 0.0));
  std::vector<float> got = want;
  got[3] = -NAN;  // another NaN: equal for both checks
  EXPECT_TRUE(test::parity_bitwise(got, want));
  got[0] = std::nextafter(1.0f, 2.0f);
  EXPECT_FALSE(test::parity_bitwise(got, want));
  EXPECT_TRUE(test::parity_close(got, want, 0.0, 1e-6));
  EXPECT_FALSE(test::parity_close(got, want, 0.0, 1e-9));
  got = want;
  got[5] = NAN;  // NaN where a number is expected
  EXPECT_FALSE(test::parity_close(got, want, 1e9, 1e9, -1.0));
  got = want;
  got[4] = -INFINITY;  // wrong sign of inf
  EXPECT_FALSE(test::parity_close(got, want, 1e9, 1e9, -1.0));
  got = want;
  got[1] = 2.0f;  // flipped sign: cosine drops
  EXPECT_FALSE(test::parity_close(got, want, 1e9, 1e9, 0.999));
}

}  // namespace
}  // namespace qaft
