// Forward ops of src/kernels/ops.h: float against the double instantiation and against the naive
// float64 references of tests/ops_reference.h, on odd shapes. Tolerances (relative to |ref| + a
// floor of order one output) are stated per test: fp32 paths 1e-5…1e-4 (K-long fp32 sums, fast exp),
// double paths 1e-12.
#include "core/error.h"
#include "kernels/cpu/simd.h"
#include "kernels/ops.h"
#include "ops_reference.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <complex>
#include <limits>
#include <numeric>

using namespace qaft;
using namespace qaft::test;

namespace {

struct GemmCase {
  Trans ta, tb;
  int64_t M, N, K, pad;  // pad: extra leading-dimension elements (lda > K etc.)
  double alpha, beta;
};

template <typename T>
void check_gemm(const GemmCase& g, double tol) {
  const int64_t a_rows = g.ta == Trans::kNo ? g.M : g.K, a_cols = g.ta == Trans::kNo ? g.K : g.M;
  const int64_t b_rows = g.tb == Trans::kNo ? g.K : g.N, b_cols = g.tb == Trans::kNo ? g.N : g.K;
  const int64_t lda = a_cols + g.pad, ldb = b_cols + g.pad, ldc = g.N + g.pad;
  const auto A = randn<double>(a_rows * lda, 1), B = randn<double>(b_rows * ldb, 2);
  auto C = randn<double>(g.M * ldc, 3);
  std::vector<double> ref = C;
  ref_gemm(g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(), ldb, g.beta, ref.data(), ldc);
  std::vector<T> c = cast<T>(C);
  if (g.beta == 0)  // BLAS semantics: C is not read when beta = 0
    std::fill(c.begin(), c.end(), std::numeric_limits<T>::quiet_NaN());
  gemm<T>(g.ta, g.tb, g.M, g.N, g.K, T(g.alpha), cast<T>(A).data(), lda, cast<T>(B).data(), ldb,
          T(g.beta), c.data(), ldc);
  double err = 0;
  for (int64_t i = 0; i < g.M; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t x = static_cast<size_t>(i * ldc + j);
      if (j >= g.N) {  // padding of C is untouched
        if (g.beta != 0) {
          EXPECT_EQ(c[x], T(C[x]));
        }
        continue;
      }
      err = std::max(err, std::fabs(c[x] - ref[x]) / (std::fabs(ref[x]) + std::sqrt(double(g.K))));
    }
  EXPECT_LT(err, tol) << "ta=" << int(g.ta) << " tb=" << int(g.tb) << " M=" << g.M << " N=" << g.N
                      << " K=" << g.K << " beta=" << g.beta;
}

std::vector<GemmCase> gemm_cases() {
  std::vector<GemmCase> cases;
  for (Trans ta : {Trans::kNo, Trans::kYes})
    for (Trans tb : {Trans::kNo, Trans::kYes})
      for (double beta : {0.0, 1.0, -0.5}) {
        cases.push_back({ta, tb, 7, 5, 3, 2, 1.0, beta});         // tiny: plain loop
        cases.push_back({ta, tb, 37, 67, 130, 5, 0.75, beta});    // oneDNN
        cases.push_back({ta, tb, 130, 1, 300, 0, 2.0, beta});     // N = 1
      }
  return cases;
}

}  // namespace

TEST(Gemm, FloatAllTransposesBetasAndPaddingMatchFloat64) {
  for (const GemmCase& g : gemm_cases()) check_gemm<float>(g, 1e-5);
}

TEST(Gemm, DoubleAllTransposesBetasAndPaddingMatchFloat64) {
  for (const GemmCase& g : gemm_cases()) check_gemm<double>(g, 1e-13);
}

TEST(Gemm, DegenerateShapes) {
  std::vector<float> c(6, 2.0f), a(6, 1.0f);
  gemm<float>(Trans::kNo, Trans::kNo, 2, 3, 0, 1.0f, a.data(), 1, a.data(), 3, 0.5f, c.data(), 3);
  for (float x : c) EXPECT_EQ(x, 1.0f);  // K = 0: C = beta·C
  gemm<float>(Trans::kNo, Trans::kNo, 0, 3, 2, 1.0f, a.data(), 2, a.data(), 3, 0.0f, c.data(), 3);
  EXPECT_THROW(gemm<float>(Trans::kNo, Trans::kNo, 2, 3, 4, 1.0f, a.data(), 3, a.data(), 3, 0.0f, c.data(), 3), Error);
}

// grouped_gemm must equal a gemm per group (fp32 rounding), skip empty groups, and be bitwise
// reproducible for any thread count.
template <typename T>
void check_grouped(Trans tb, int64_t N, int64_t K, T alpha, T beta, double tol) {
  const std::vector<int64_t> offsets{0, 0, 13, 13, 40, 41, 250, 250};  // empty first, middle, last
  const int64_t G = 7, R = offsets.back(), lda = K + 3, ldc = N + 2, ws = N * K + 5;
  const auto A = randn<T>(R * lda, 11), W = randn<T>(G * ws, 12), C0 = randn<T>(R * ldc, 13);
  std::vector<T> c = C0, ref = C0;
  grouped_gemm<T>(tb, G, offsets.data(), N, K, alpha, A.data(), lda, W.data(), ws, beta, c.data(), ldc);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t r0 = offsets[static_cast<size_t>(g)], rows = offsets[static_cast<size_t>(g) + 1] - r0;
    if (rows > 0)
      gemm<T>(Trans::kNo, tb, rows, N, K, alpha, A.data() + r0 * lda, lda, W.data() + g * ws,
              tb == Trans::kYes ? K : N, beta, ref.data() + r0 * ldc, ldc);
  }
  EXPECT_LT(max_rel_err(c, ref, std::sqrt(double(K))), tol) << "tb=" << int(tb) << " N=" << N << " K=" << K;
  std::vector<T> again = C0;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  grouped_gemm<T>(tb, G, offsets.data(), N, K, alpha, A.data(), lda, W.data(), ws, beta, again.data(), ldc);
  omp_set_num_threads(threads);
  EXPECT_EQ(again, c);

  // Weight gradient: dW_g += dY_gᵀ · X_g, against gemm(kYes, kNo) per group.
  const auto dY = randn<T>(R * ldc, 14);
  auto dW = randn<T>(G * ws, 15);
  std::vector<T> dW_ref = dW;
  grouped_gemm_weight_grad<T>(G, offsets.data(), N, K, dY.data(), ldc, A.data(), lda, dW.data(), ws);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t r0 = offsets[static_cast<size_t>(g)], rows = offsets[static_cast<size_t>(g) + 1] - r0;
    if (rows > 0)
      gemm<T>(Trans::kYes, Trans::kNo, N, K, rows, T(1), dY.data() + r0 * ldc, ldc,
              A.data() + r0 * lda, lda, T(1), dW_ref.data() + g * ws, K);
  }
  EXPECT_LT(max_rel_err(dW, dW_ref, 10.0), tol) << "weight grad N=" << N << " K=" << K;
}

TEST(GroupedGemm, EqualsPerGroupGemmFloat) {
  for (Trans tb : {Trans::kYes, Trans::kNo})
    for (auto [N, K] : {std::pair<int64_t, int64_t>{1, 1}, {17, 33}, {67, 300}, {600, 129}})
      check_grouped<float>(tb, N, K, 0.5f, 0.0f, 2e-5), check_grouped<float>(tb, N, K, 1.0f, 1.0f, 2e-5);
}

TEST(GroupedGemm, EqualsPerGroupGemmDouble) {
  for (Trans tb : {Trans::kYes, Trans::kNo})
    check_grouped<double>(tb, 45, 70, 1.5, -1.0, 1e-13);
}

TEST(GroupedGemm, NoGroupsAndChecks) {
  const int64_t off0[] = {0};
  grouped_gemm<float>(Trans::kYes, 0, off0, 4, 4, 1.0f, nullptr, 4, nullptr, 16, 0.0f, nullptr, 4);
  const int64_t bad[] = {0, 5, 3};
  std::vector<float> x(100);
  EXPECT_THROW(grouped_gemm<float>(Trans::kYes, 2, bad, 2, 2, 1.0f, x.data(), 2, x.data(), 4, 0.0f, x.data(), 2), Error);
}

TEST(RmsNorm, FloatMatchesFloat64) {
  const int64_t rows = 37, C = 67, ld = 70;
  const auto x = randn<double>(rows * ld, 21, 3.0), w = randn<double>(C, 22);
  std::vector<double> ref(static_cast<size_t>(rows * ld)), rr(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < C; ++j) ss += x[r * ld + j] * x[r * ld + j];
    rr[r] = 1 / std::sqrt(ss / C + 1e-6);
    for (int64_t j = 0; j < C; ++j) ref[r * ld + j] = w[j] * x[r * ld + j] * rr[r];
  }
  std::vector<float> y(ref.size()), rs(rr.size());
  rmsnorm_forward<float>(cast<float>(x).data(), cast<float>(w).data(), rows, C, ld, 1e-6f, y.data(), rs.data());
  std::vector<double> yd(ref.size()), rsd(rr.size());
  rmsnorm_forward<double>(x.data(), w.data(), rows, C, ld, 1e-6, yd.data(), rsd.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < C; ++j) {
      EXPECT_NEAR(y[r * ld + j], ref[r * ld + j], 1e-5 * (std::fabs(ref[r * ld + j]) + 1));
      EXPECT_NEAR(yd[r * ld + j], ref[r * ld + j], 1e-13 * (std::fabs(ref[r * ld + j]) + 1));
    }
  EXPECT_LT(max_rel_err(rs, rr, 0.0), 1e-6);
  EXPECT_LT(max_rel_err(rsd, rr, 0.0), 1e-14);
}

TEST(Rope, BothLayoutsMatchComplexRotationAndInverseRestores) {
  // 5 tokens, 3 heads of width 12 inside rows of 40; rotate 8 lanes starting at lane 2.
  const int64_t N = 5, heads = 3, hs = 12, ld = 40, offset = 2, rot = 8;
  const std::vector<int32_t> pos{0, 1, 7, 300, 4095};
  std::vector<double> inv_freq(rot / 2);
  for (int64_t i = 0; i < rot / 2; ++i) inv_freq[i] = std::pow(10000.0, -2.0 * i / rot);
  const auto x0 = randn<double>(N * ld, 31);
  for (RopeLayout layout : {RopeLayout::kInterleaved, RopeLayout::kHalfSplit}) {
    std::vector<double> ref = x0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < rot / 2; ++i) {
          double* p = ref.data() + n * ld + h * hs + offset;
          const int64_t a = layout == RopeLayout::kInterleaved ? 2 * i : i;
          const int64_t b = layout == RopeLayout::kInterleaved ? 2 * i + 1 : i + rot / 2;
          const std::complex<double> z = std::complex<double>(p[a], p[b]) * std::polar(1.0, pos[n] * inv_freq[i]);
          p[a] = z.real(), p[b] = z.imag();
        }
    std::vector<float> xf = cast<float>(x0);
    std::vector<double> xd = x0;
    rope_apply<float>(xf.data(), N, heads, ld, hs, offset, rot, pos.data(), inv_freq.data(), layout, false);
    rope_apply<double>(xd.data(), N, heads, ld, hs, offset, rot, pos.data(), inv_freq.data(), layout, false);
    EXPECT_LT(max_rel_err(xf, ref, 1.0), 1e-6);
    EXPECT_LT(max_rel_err(xd, ref, 1.0), 1e-14);
    rope_apply<double>(xd.data(), N, heads, ld, hs, offset, rot, pos.data(), inv_freq.data(), layout, true);
    EXPECT_LT(max_rel_err(xd, x0, 1.0), 1e-14);
  }
}

namespace {

struct AttnCase {
  int64_t B, T, H, Hkv, Dqk, Dv;
  int seg_mode;  // 0 none, 1 two contiguous documents, 2 random ids in {0,1,2} (non-contiguous)
};

std::vector<int32_t> make_segments(const AttnCase& c) {
  std::vector<int32_t> seg(static_cast<size_t>(c.B * c.T));
  std::vector<float> u(seg.size());
  CounterRng(99, 0).fill_uniform(u.data(), static_cast<int64_t>(u.size()));
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t)
      seg[b * c.T + t] = c.seg_mode == 1 ? (t < c.T / 2 + b ? 0 : 1) : static_cast<int32_t>(u[b * c.T + t] * 3);
  return seg;
}

}  // namespace

TEST(Attention, ForwardMatchesFullSoftmax) {
  const std::vector<AttnCase> cases = {
      {1, 1, 2, 1, 3, 5, 0},     {2, 37, 6, 2, 7, 5, 0},   {2, 37, 6, 6, 7, 5, 1},
      {1, 150, 4, 2, 16, 24, 1}, {1, 130, 2, 1, 9, 70, 2}, {3, 65, 3, 1, 64, 64, 0},
  };
  for (const AttnCase& c : cases) {
    const auto q = randn<double>(c.B * c.T * c.H * c.Dqk, 41, 2.0), k = randn<double>(c.B * c.T * c.Hkv * c.Dqk, 42, 2.0);
    const auto v = randn<double>(c.B * c.T * c.Hkv * c.Dv, 43);
    const std::vector<int32_t> seg = make_segments(c);
    const int32_t* sp = c.seg_mode ? seg.data() : nullptr;
    const double scale = 1.0 / std::sqrt(double(c.Dqk));
    std::vector<double> ref(static_cast<size_t>(c.B * c.T * c.H * c.Dv)), ref_lse(static_cast<size_t>(c.B * c.H * c.T));
    ref_attention(q.data(), k.data(), v.data(), sp, c.B, c.T, c.H, c.Hkv, c.Dqk, c.Dv, scale, ref.data(), ref_lse.data());
    std::vector<float> of(ref.size()), lf(ref_lse.size());
    attention_forward<float>(cast<float>(q).data(), cast<float>(k).data(), cast<float>(v).data(), sp, c.B, c.T, c.H,
                             c.Hkv, c.Dqk, c.Dv, float(scale), of.data(), lf.data());
    std::vector<double> od(ref.size()), ld(ref_lse.size());
    attention_forward<double>(q.data(), k.data(), v.data(), sp, c.B, c.T, c.H, c.Hkv, c.Dqk, c.Dv, scale, od.data(), ld.data());
    const std::string what = "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) +
                             " Hkv=" + std::to_string(c.Hkv) + " seg=" + std::to_string(c.seg_mode);
    EXPECT_LT(max_rel_err(of, ref, 1.0), 2e-5) << what;
    EXPECT_LT(max_rel_err(lf, ref_lse, 1.0), 2e-6) << what;
    EXPECT_LT(max_rel_err(od, ref, 1.0), 1e-12) << what;
    EXPECT_LT(max_rel_err(ld, ref_lse, 1.0), 1e-12) << what;
  }
}

TEST(Attention, RowsOfASequenceEqualTheWholeSequenceForwardBitForBit) {
  // attention_forward_rows (the serving engine's core: a prefill chunk or a decode step over a KV
  // cache) gives every query exactly what attention_forward computes for its position over the whole
  // sequence — for any first query position (tile-aligned or not), strided rows (a cache with room
  // for more positions), GQA, and several sequences at once.
  const int64_t T = 150, H = 4, Hkv = 2, Dqk = 40, Dv = 24;
  const float scale = 0.17f;
  const auto q = randn<float>(T * H * Dqk, 71, 2.0), k = randn<float>(T * Hkv * Dqk, 72, 2.0);
  const auto v = randn<float>(T * Hkv * Dv, 73);
  std::vector<float> want(static_cast<size_t>(T * H * Dv)), lse(static_cast<size_t>(H * T));
  attention_forward<float>(q.data(), k.data(), v.data(), nullptr, 1, T, H, Hkv, Dqk, Dv, scale, want.data(), lse.data());

  // The cache: rows of stride ldk = Hkv·Dqk + 8 (padding), values with their own padding.
  const int64_t ldk = Hkv * Dqk + 8, ldv = Hkv * Dv + 3, ldq = H * Dqk + 5, ldo = H * Dv + 2;
  std::vector<float> kc(static_cast<size_t>(T * ldk), NAN), vc(static_cast<size_t>(T * ldv), NAN);
  for (int64_t t = 0; t < T; ++t) {
    std::copy_n(k.begin() + t * Hkv * Dqk, Hkv * Dqk, kc.begin() + t * ldk);
    std::copy_n(v.begin() + t * Hkv * Dv, Hkv * Dv, vc.begin() + t * ldv);
  }
  // Three sequences sharing the cache: queries from 0 (a whole prefill), from 37 (a chunk starting
  // mid-tile), and the last position alone (a decode step); each ends at its own length.
  struct Case {
    int64_t q_begin, Tn;
  };
  const std::vector<Case> cases = {{0, T}, {37, 101}, {T - 1, T}};
  std::vector<std::vector<float>> qs, outs;
  std::vector<AttentionRows> rows;
  for (const Case& c : cases) {
    const int64_t n = c.Tn - c.q_begin;
    std::vector<float> qr(static_cast<size_t>(n * ldq), NAN);
    for (int64_t i = 0; i < n; ++i) std::copy_n(q.begin() + (c.q_begin + i) * H * Dqk, H * Dqk, qr.begin() + i * ldq);
    qs.push_back(std::move(qr));
    outs.emplace_back(static_cast<size_t>(n * ldo), -1.0f);
  }
  for (size_t i = 0; i < cases.size(); ++i)
    rows.push_back({qs[i].data(), ldq, kc.data(), ldk, vc.data(), ldv, outs[i].data(), ldo, cases[i].Tn, cases[i].q_begin});
  attention_forward_rows(rows, H, Hkv, Dqk, Dv, scale);

  for (size_t c = 0; c < cases.size(); ++c)
    for (int64_t t = cases[c].q_begin; t < cases[c].Tn; ++t)
      for (int64_t j = 0; j < H * Dv; ++j)
        ASSERT_EQ(outs[c][static_cast<size_t>((t - cases[c].q_begin) * ldo + j)], want[static_cast<size_t>(t * H * Dv + j)])
            << "sequence " << c << " position " << t << " element " << j;
}

TEST(SwiGlu, FloatMatchesFloat64IncludingSaturation) {
  auto g = randn<double>(1000, 51, 4.0);
  g[0] = 100, g[1] = -100, g[2] = 0, g[3] = 88, g[4] = -90;
  const auto u = randn<double>(1000, 52);
  std::vector<double> ref(g.size()), hd(g.size());
  for (size_t i = 0; i < g.size(); ++i) ref[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
  std::vector<float> hf(g.size());
  swiglu_forward<float>(cast<float>(g).data(), cast<float>(u).data(), 1000, hf.data());
  swiglu_forward<double>(g.data(), u.data(), 1000, hd.data());
  EXPECT_LT(max_rel_err(hf, ref, 1e-3), 1e-6);
  EXPECT_LT(max_rel_err(hd, ref, 1e-12), 1e-14);
}

TEST(Embedding, ForwardGathersAndBackwardSumsInTokenOrder) {
  const int64_t V = 11, C = 5;
  const std::vector<int32_t> ids{3, 0, 3, 10, 3, 7, 0};
  const int64_t N = static_cast<int64_t>(ids.size());
  const auto table = randn<float>(V * C, 61), dout = randn<float>(N * C, 62);
  std::vector<float> out(static_cast<size_t>(N * C));
  embedding_forward<float>(ids.data(), N, table.data(), V, C, out.data());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(out[n * C + c], table[ids[n] * C + c]);
  std::vector<float> dt(static_cast<size_t>(V * C), 1.0f), want = dt;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) want[ids[n] * C + c] += dout[n * C + c];
  embedding_backward<float>(ids.data(), N, dout.data(), V, C, dt.data());
  EXPECT_EQ(dt, want);  // same summation order: bit-exact
  const std::vector<int32_t> bad{0, 11};
  EXPECT_THROW(embedding_forward<float>(bad.data(), 2, table.data(), V, C, out.data()), Error);
}

TEST(LmHeadCe, ChunkedLossMatchesFullLogits) {
  const int64_t N = 37, C = 67, V = 203;
  const auto h = randn<double>(N * C, 71), W = randn<double>(V * C, 72, 0.3);
  auto wts = randn<double>(N, 73);
  for (double& x : wts) x = std::fabs(x);
  std::vector<int32_t> targets(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) targets[n] = n % 5 == 0 ? -100 : static_cast<int32_t>((n * 37) % V);
  targets[1] = V - 1;
  std::vector<double> ref_lse(static_cast<size_t>(N));
  for (const double* wp : {static_cast<const double*>(nullptr), static_cast<const double*>(wts.data())}) {
    const double ref = ref_ce(h.data(), W.data(), targets.data(), wp, N, C, V, ref_lse.data());
    const std::vector<float> wf = cast<float>(wts);
    for (int64_t chunk : {16, 64, 203, 1000}) {
      std::vector<float> lf(static_cast<size_t>(N));
      const double lossf = lm_head_ce_forward<float>(cast<float>(h).data(), cast<float>(W).data(), targets.data(),
                                                     wp ? wf.data() : nullptr, N, C, V, chunk, lf.data());
      std::vector<double> ld(static_cast<size_t>(N));
      const double lossd = lm_head_ce_forward<double>(h.data(), W.data(), targets.data(), wp, N, C, V, chunk, ld.data());
      EXPECT_NEAR(lossf, ref, 1e-5 * std::fabs(ref)) << chunk;
      EXPECT_NEAR(lossd, ref, 1e-12 * std::fabs(ref)) << chunk;
      EXPECT_LT(max_rel_err(lf, ref_lse, 1.0), 2e-6);
      EXPECT_LT(max_rel_err(ld, ref_lse, 1.0), 1e-13);
    }
  }
  std::vector<float> logits(static_cast<size_t>(N * V));
  lm_head_logits<float>(cast<float>(h).data(), cast<float>(W).data(), N, C, V, logits.data());
  std::vector<double> ref_logits(logits.size());
  ref_gemm(Trans::kNo, Trans::kYes, N, V, C, 1.0, h.data(), C, W.data(), C, 0.0, ref_logits.data(), V);
  EXPECT_LT(max_rel_err(logits, ref_logits, 1.0), 1e-5);
}

TEST(SimdExp, FastExpWithinFewUlp) {
  double worst = 0;
  for (float x = -86.0f; x < 88.7f; x += 0.0137f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(detail::exp_fast(x) - want) / want);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(detail::exp_fast(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(detail::exp_fast(-100.0f), 0.0f);
  EXPECT_EQ(detail::exp_fast(100.0f), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isfinite(detail::exp_fast(88.72f)));
}
