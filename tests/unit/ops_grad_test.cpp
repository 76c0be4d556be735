// Backward ops of src/kernels/ops.h: the double instantiation against central finite differences
// (eps = 1e-6; |fd − analytic| ≤ 1e-6 · max(|analytic|, |fd|, 1e-2), i.e. a relative tolerance
// of 1e-6 with an absolute floor of 1e-8 for near-zero gradients) of L = Σ out ⊙ R with a random
// R, for every input and parameter; then the float instantiation against the double one.
#include "kernels/ops.h"
#include "ops_reference.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <numeric>
#include <string>

using namespace qaft;
using namespace qaft::test;

namespace {

// Compares grad with central differences of loss() with respect to the elements of x: all of them
// up to 150, else 150 spread over the tensor by a fixed stride coprime with its size (keeps the
// sanitizer run short).
void fd_check(std::vector<double>& x, const std::vector<double>& grad,
              const std::function<double()>& loss, const std::string& what, double tol = 1e-6) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  const double eps = 1e-6;
  const size_t n = x.size(), checks = std::min<size_t>(n, 150);
  size_t stride = 1;
  if (n > checks)
    for (stride = n / checks; std::gcd(stride, n) != 1; ++stride) {
    }
  double worst = 0;
  size_t worst_i = 0;
  for (size_t c = 0; c < checks; ++c) {
    const size_t i = c * stride % n;  // distinct for c < n since gcd(stride, n) = 1
    const double x0 = x[i];
    x[i] = x0 + eps;
    const double lp = loss();
    x[i] = x0 - eps;
    const double lm = loss();
    x[i] = x0;
    const double fd = (lp - lm) / (2 * eps);
    const double err = std::fabs(fd - grad[i]) / std::max({std::fabs(grad[i]), std::fabs(fd), 1e-2});
    if (err > worst) worst = err, worst_i = i;
  }
  EXPECT_LT(worst, tol) << what << ": worst element " << worst_i << " analytic " << grad[worst_i];
}

double dotv(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

TEST(GradCheck, RmsNorm) {
  const int64_t rows = 3, C = 7, ld = 9;
  auto x = randn<double>(rows * ld, 1, 2.0), w = randn<double>(C, 2);
  const auto R = randn<double>(rows * ld, 3);
  std::vector<double> y(x.size()), rs(rows);
  auto loss = [&] {
    rmsnorm_forward<double>(x.data(), w.data(), rows, C, ld, 1e-5, y.data(), rs.data());
    double s = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < C; ++j) s += y[r * ld + j] * R[r * ld + j];
    return s;
  };
  loss();
  std::vector<double> dx(x.size(), 0.0), dw(C, 0.5);
  rmsnorm_backward<double>(R.data(), x.data(), w.data(), rs.data(), rows, C, ld, dx.data(), dw.data());
  for (double& g : dw) g -= 0.5;  // accumulated
  for (int64_t r = 0; r < rows; ++r)  // padding lanes of x do not influence the loss
    for (int64_t j = C; j < ld; ++j) dx[r * ld + j] = 0;
  fd_check(x, dx, loss, "rmsnorm dx");
  fd_check(w, dw, loss, "rmsnorm dw");
}

TEST(GradCheck, RopeBackwardIsInverseRotation) {
  const int64_t N = 4, heads = 2, hs = 6, ld = 14, offset = 1, rot = 4;
  const std::vector<int32_t> pos{0, 3, 17, 1000};
  const std::vector<double> inv_freq{1.0, 0.01};
  for (RopeLayout layout : {RopeLayout::kInterleaved, RopeLayout::kHalfSplit}) {
    auto x = randn<double>(N * ld, 4);
    const auto R = randn<double>(N * ld, 5);
    auto loss = [&] {
      std::vector<double> y = x;
      rope_apply<double>(y.data(), N, heads, ld, hs, offset, rot, pos.data(), inv_freq.data(), layout, false);
      return dotv(y, R);
    };
    std::vector<double> dx = R;
    rope_apply<double>(dx.data(), N, heads, ld, hs, offset, rot, pos.data(), inv_freq.data(), layout, true);
    fd_check(x, dx, loss, "rope dx");
  }
}

TEST(GradCheck, SwiGlu) {
  auto g = randn<double>(40, 6, 3.0), u = randn<double>(40, 7);
  const auto R = randn<double>(40, 8);
  std::vector<double> h(40);
  auto loss = [&] {
    swiglu_forward<double>(g.data(), u.data(), 40, h.data());
    return dotv(h, R);
  };
  std::vector<double> dg(40), du(40);
  swiglu_backward<double>(R.data(), g.data(), u.data(), 40, dg.data(), du.data());
  fd_check(g, dg, loss, "swiglu dg");
  fd_check(u, du, loss, "swiglu du");
}

TEST(GradCheck, Embedding) {
  const int64_t V = 6, C = 3;
  const std::vector<int32_t> ids{2, 5, 2, 0, 2};
  const int64_t N = static_cast<int64_t>(ids.size());
  auto table = randn<double>(V * C, 9);
  const auto R = randn<double>(N * C, 10);
  std::vector<double> out(static_cast<size_t>(N * C));
  auto loss = [&] {
    embedding_forward<double>(ids.data(), N, table.data(), V, C, out.data());
    return dotv(out, R);
  };
  std::vector<double> dt(table.size(), 0.0);
  embedding_backward<double>(ids.data(), N, R.data(), V, C, dt.data());
  fd_check(table, dt, loss, "embedding dtable");
}

namespace {

struct AttnProblem {
  int64_t B, T, H, Hkv, Dqk, Dv;
  std::vector<int32_t> seg;  // empty = none
};

}  // namespace

TEST(GradCheck, AttentionGqaWithSegments) {
  std::vector<AttnProblem> problems = {
      {2, 9, 4, 2, 3, 2, {}},
      {1, 11, 3, 3, 2, 3, {0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}},
      {1, 7, 2, 1, 3, 4, {5, 1, 5, 1, 1, 5, 1}},  // non-contiguous ids
      {1, 6, 2, 1, 32, 32, {}},                   // head dims a multiple of the register tile: in place
  };
  // Crosses query/key tiles (64) with two documents, so that whole key tiles are skipped.
  std::vector<int32_t> long_seg(140);
  for (int t = 0; t < 140; ++t) long_seg[static_cast<size_t>(t)] = t < 70 ? 0 : 1;
  problems.push_back({1, 140, 2, 1, 2, 1, long_seg});
  for (const AttnProblem& p : problems) {
    auto q = randn<double>(p.B * p.T * p.H * p.Dqk, 11, 1.5), k = randn<double>(p.B * p.T * p.Hkv * p.Dqk, 12, 1.5);
    auto v = randn<double>(p.B * p.T * p.Hkv * p.Dv, 13);
    const auto R = randn<double>(p.B * p.T * p.H * p.Dv, 14);
    const int32_t* seg = p.seg.empty() ? nullptr : p.seg.data();
    const double scale = 0.7;
    std::vector<double> out(R.size()), lse(static_cast<size_t>(p.B * p.H * p.T));
    auto loss = [&] {
      attention_forward<double>(q.data(), k.data(), v.data(), seg, p.B, p.T, p.H, p.Hkv, p.Dqk, p.Dv, scale, out.data(), lse.data());
      return dotv(out, R);
    };
    loss();
    std::vector<double> dq(q.size(), 7.0), dk(k.size(), 7.0), dv(v.size(), 7.0);  // overwritten
    attention_backward<double>(R.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), seg, p.B, p.T, p.H,
                               p.Hkv, p.Dqk, p.Dv, scale, dq.data(), dk.data(), dv.data());
    const std::string what = "T=" + std::to_string(p.T) + " H=" + std::to_string(p.H) + " Hkv=" + std::to_string(p.Hkv);
    fd_check(q, dq, loss, "attention dq " + what);
    fd_check(k, dk, loss, "attention dk " + what);
    fd_check(v, dv, loss, "attention dv " + what);
  }
}

TEST(GradCheck, LmHeadCeWithIgnoredTargetsAndWeights) {
  const int64_t N = 6, C = 5, V = 11, chunk = 4;
  auto h = randn<double>(N * C, 15), W = randn<double>(V * C, 16);
  const std::vector<int32_t> targets{3, -100, 10, 0, -1, 7};
  const std::vector<double> weights{0.5, 2.0, 1.0, 0.25, 3.0, 1.5};
  const double grad_scale = 0.3;
  std::vector<double> lse(N);
  for (const double* wp : {static_cast<const double*>(nullptr), weights.data()}) {
    auto loss = [&] { return grad_scale * lm_head_ce_forward<double>(h.data(), W.data(), targets.data(), wp, N, C, V, chunk, lse.data()); };
    loss();
    std::vector<double> dh(h.size(), 9.0), dW(W.size(), 1.0);
    lm_head_ce_backward<double>(h.data(), W.data(), targets.data(), wp, lse.data(), N, C, V, chunk, grad_scale,
                                dh.data(), dW.data());
    for (double& g : dW) g -= 1.0;  // accumulated
    fd_check(h, dh, loss, "lm_head_ce dh");
    fd_check(W, dW, loss, "lm_head_ce dW");
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(dh[1 * C + c], 0.0);  // ignored token
  }
}

TEST(GradCheck, GroupedGemmDataAndWeightGradients) {
  const std::vector<int64_t> offsets{0, 3, 3, 8, 9};
  const int64_t G = 4, R_ = offsets.back(), N = 5, K = 4;
  auto A = randn<double>(R_ * K, 17), W = randn<double>(G * N * K, 18);
  const auto R = randn<double>(R_ * N, 19);
  std::vector<double> Y(R.size());
  auto loss = [&] {
    grouped_gemm<double>(Trans::kYes, G, offsets.data(), N, K, 1.0, A.data(), K, W.data(), N * K, 0.0, Y.data(), N);
    return dotv(Y, R);
  };
  // dA = dY · W_g: the same grouped GEMM on the stored [N, K] weights, not transposed (K' = N, N' = K).
  std::vector<double> dA(A.size());
  grouped_gemm<double>(Trans::kNo, G, offsets.data(), K, N, 1.0, R.data(), N, W.data(), N * K, 0.0, dA.data(), K);
  std::vector<double> dW(W.size(), 0.0);
  grouped_gemm_weight_grad<double>(G, offsets.data(), N, K, R.data(), N, A.data(), K, dW.data(), N * K);
  fd_check(A, dA, loss, "grouped_gemm dA");
  fd_check(W, dW, loss, "grouped_gemm dW");
}

// The float backward kernels (AVX-512 tiles, fast exp) against the double ones on the same inputs.
TEST(FloatBackward, MatchesDouble) {
  // Attention: two tiles, GQA, segments; head dims that are copied into padded tiles (24, 16) and
  // that are read in place (64, 128).
  for (auto [Dqk, Dv] : {std::pair<int64_t, int64_t>{24, 16}, {64, 128}}) {
    const int64_t B = 2, T = 100, H = 4, Hkv = 2;
    std::vector<int32_t> seg(static_cast<size_t>(B * T));
    for (int64_t i = 0; i < B * T; ++i) seg[static_cast<size_t>(i)] = static_cast<int32_t>((i % T) / 30);
    const auto q = randn<double>(B * T * H * Dqk, 21), k = randn<double>(B * T * Hkv * Dqk, 22);
    const auto v = randn<double>(B * T * Hkv * Dv, 23), dout = randn<double>(B * T * H * Dv, 24);
    std::vector<double> od(dout.size()), ld(static_cast<size_t>(B * H * T)), dqd(q.size()), dkd(k.size()), dvd(v.size());
    attention_forward<double>(q.data(), k.data(), v.data(), seg.data(), B, T, H, Hkv, Dqk, Dv, 0.2, od.data(), ld.data());
    attention_backward<double>(dout.data(), q.data(), k.data(), v.data(), od.data(), ld.data(), seg.data(), B, T, H, Hkv,
                               Dqk, Dv, 0.2, dqd.data(), dkd.data(), dvd.data());
    const auto qf = cast<float>(q), kf = cast<float>(k), vf = cast<float>(v), df = cast<float>(dout);
    std::vector<float> of(od.size()), lf(ld.size()), dqf(q.size()), dkf(k.size()), dvf(v.size());
    attention_forward<float>(qf.data(), kf.data(), vf.data(), seg.data(), B, T, H, Hkv, Dqk, Dv, 0.2f, of.data(), lf.data());
    attention_backward<float>(df.data(), qf.data(), kf.data(), vf.data(), of.data(), lf.data(), seg.data(), B, T, H, Hkv,
                              Dqk, Dv, 0.2f, dqf.data(), dkf.data(), dvf.data());
    EXPECT_LT(max_rel_err(dqf, dqd, 1.0), 1e-4);
    EXPECT_LT(max_rel_err(dkf, dkd, 1.0), 1e-4);
    EXPECT_LT(max_rel_err(dvf, dvd, 1.0), 1e-4);
    // Deterministic: a second run (and a single-threaded run) gives the same bits.
    std::vector<float> dq2(q.size()), dk2(k.size()), dv2(v.size());
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    attention_backward<float>(df.data(), qf.data(), kf.data(), vf.data(), of.data(), lf.data(), seg.data(), B, T, H, Hkv,
                              Dqk, Dv, 0.2f, dq2.data(), dk2.data(), dv2.data());
    omp_set_num_threads(threads);
    EXPECT_EQ(dq2, dqf);
    EXPECT_EQ(dk2, dkf);
    EXPECT_EQ(dv2, dvf);
  }
  {  // lm head + CE
    const int64_t N = 33, C = 40, V = 150, chunk = 64;
    const auto h = randn<double>(N * C, 25), W = randn<double>(V * C, 26, 0.3);
    std::vector<int32_t> targets(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) targets[static_cast<size_t>(n)] = n % 7 == 3 ? -100 : static_cast<int32_t>((n * 13) % V);
    std::vector<double> ld(N), dhd(h.size()), dWd(W.size(), 0.0);
    lm_head_ce_forward<double>(h.data(), W.data(), targets.data(), nullptr, N, C, V, chunk, ld.data());
    lm_head_ce_backward<double>(h.data(), W.data(), targets.data(), nullptr, ld.data(), N, C, V, chunk, 1.0, dhd.data(), dWd.data());
    const auto hf = cast<float>(h), Wf = cast<float>(W);
    std::vector<float> lf(N), dhf(h.size()), dWf(W.size(), 0.0f);
    lm_head_ce_forward<float>(hf.data(), Wf.data(), targets.data(), nullptr, N, C, V, chunk, lf.data());
    lm_head_ce_backward<float>(hf.data(), Wf.data(), targets.data(), nullptr, lf.data(), N, C, V, chunk, 1.0f, dhf.data(), dWf.data());
    EXPECT_LT(max_rel_err(dhf, dhd, 0.1), 1e-5);
    EXPECT_LT(max_rel_err(dWf, dWd, 0.1), 1e-5);
  }
  {  // rmsnorm and swiglu
    const int64_t rows = 20, C = 67;
    const auto x = randn<double>(rows * C, 27, 2.0), w = randn<double>(C, 28), dy = randn<double>(rows * C, 29);
    std::vector<double> y(x.size()), rs(rows), dxd(x.size()), dwd(C, 0.0);
    rmsnorm_forward<double>(x.data(), w.data(), rows, C, C, 1e-6, y.data(), rs.data());
    rmsnorm_backward<double>(dy.data(), x.data(), w.data(), rs.data(), rows, C, C, dxd.data(), dwd.data());
    const auto xf = cast<float>(x), wf = cast<float>(w), dyf = cast<float>(dy);
    std::vector<float> yf(x.size()), rsf(rows), dxf(x.size()), dwf(C, 0.0f);
    rmsnorm_forward<float>(xf.data(), wf.data(), rows, C, C, 1e-6f, yf.data(), rsf.data());
    rmsnorm_backward<float>(dyf.data(), xf.data(), wf.data(), rsf.data(), rows, C, C, dxf.data(), dwf.data());
    EXPECT_LT(max_rel_err(dxf, dxd, 1.0), 1e-5);
    EXPECT_LT(max_rel_err(dwf, dwd, 1.0), 1e-5);
    std::vector<double> dg(x.size()), du(x.size());
    swiglu_backward<double>(dy.data(), x.data(), y.data(), rows * C, dg.data(), du.data());
    std::vector<float> dgf(x.size()), duf(x.size());
    const auto yf2 = cast<float>(y);
    swiglu_backward<float>(dyf.data(), xf.data(), yf2.data(), rows * C, dgf.data(), duf.data());
    EXPECT_LT(max_rel_err(dgf, dg, 1e-2), 1e-5);
    EXPECT_LT(max_rel_err(duf, du, 1e-2), 1e-5);
  }
}
