// fp32 GEMM throughput: gemm<float> (oneDNN) on square, LM-head-like and DeepSeek-expert-like
// shapes with 1 and 2 threads; grouped_gemm (64 experts of ~equal rows) and its weight gradient
// against a dense gemm of the same FLOPs; an AVX-512 FMA throughput probe as the peak reference.
//
//   build/release/bench/bench_gemm [--quick]
#include "core/cpu_features.h"
#include "core/rng.h"
#include "core/timer.h"
#include "kernels/cpu/onednn.h"
#include "kernels/ops.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

using namespace qaft;

namespace {

// Peak probe: 16 independent FMA chains on zmm registers (enough to hide the FMA latency on two
// pipes); each iteration is 16 FMAs × 16 lanes × 2 flops. The chains are named variables, not an
// array, so that they stay in registers.
__attribute__((target("avx512f,fma"), noinline)) float fma_probe_avx512(int64_t iters, float seed) {
  typedef float v16 __attribute__((vector_size(64)));
  v16 a0 = v16{} + seed, a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5, a6 = a0 + 6;
  v16 a7 = a0 + 7, a8 = a0 + 8, a9 = a0 + 9, a10 = a0 + 10, a11 = a0 + 11, a12 = a0 + 12, a13 = a0 + 13;
  v16 a14 = a0 + 14, a15 = a0 + 15;
  const v16 m = v16{} + 0.999999f, b = v16{} + 1e-7f;
  for (int64_t i = 0; i < iters; ++i) {
    a0 = a0 * m + b, a1 = a1 * m + b, a2 = a2 * m + b, a3 = a3 * m + b;
    a4 = a4 * m + b, a5 = a5 * m + b, a6 = a6 * m + b, a7 = a7 * m + b;
    a8 = a8 * m + b, a9 = a9 * m + b, a10 = a10 * m + b, a11 = a11 * m + b;
    a12 = a12 * m + b, a13 = a13 * m + b, a14 = a14 * m + b, a15 = a15 * m + b;
  }
  const v16 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15;
  float r = 0;
  for (int i = 0; i < 16; ++i) r += s[i];
  return r;
}

// GFLOPS of the probe on `threads` threads (each runs the loop; total flops summed).
double fma_peak(int threads) {
  const int64_t iters = 50'000'000;
  float sink = 0;
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    Timer t;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += fma_probe_avx512(iters, 0.5f);
    best = std::min(best, t.seconds());
  }
  if (sink == 12345.0f) fmt::print("");  // keep the result alive
  return 2.0 * 16 * 16 * static_cast<double>(iters) * threads / best * 1e-9;
}

std::vector<float> random_vec(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  CounterRng(seed, 0).fill_normal(v.data(), static_cast<int64_t>(n), 0.0f, 1.0f);
  return v;
}

// Best-of-`reps` seconds of f (after one warm-up call).
template <typename F>
double best_seconds(int reps, F&& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    Timer t;
    f();
    best = std::min(best, t.seconds());
  }
  return best;
}

struct Shape3 {
  const char* name;
  int64_t M, N, K;
  Trans ta, tb;
};

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int reps = quick ? 1 : 3;
  const int max_threads = omp_get_max_threads();
  fmt::print("cpu: {}; oneDNN ISA: {}; OpenMP threads available: {}\n", cpu_features().summary(),
             detail::dnnl_isa_name(), max_threads);

  std::vector<int> thread_counts{1};
  if (max_threads >= 2) thread_counts.push_back(2);
  std::vector<double> peak(3, 0.0);
  if (cpu_features().has_avx512_codecs())
    for (int t : thread_counts) {
      peak[static_cast<size_t>(t)] = fma_peak(t);
      fmt::print("FMA peak probe (AVX-512, fp32), {} thread(s): {:.1f} GFLOPS\n", t, peak[static_cast<size_t>(t)]);
    }
  auto pct = [&](double gf, int t) {
    return peak[static_cast<size_t>(t)] > 0 ? fmt::format("{:5.1f}% of peak", 100 * gf / peak[static_cast<size_t>(t)]) : std::string("");
  };

  const std::vector<Shape3> shapes = {
      {"square 2048^3 (NN)", 2048, 2048, 2048, Trans::kNo, Trans::kNo},
      {"linear 4096x1024x7168 (NT)", 4096, 1024, 7168, Trans::kNo, Trans::kYes},
      {"expert up 512x2048x7168 (NT)", 512, 2048, 7168, Trans::kNo, Trans::kYes},
      {"expert down 512x7168x2048 (NT)", 512, 7168, 2048, Trans::kNo, Trans::kYes},
  };
  for (const Shape3& s : shapes) {
    const auto A = random_vec(static_cast<size_t>(s.M * s.K), 1);
    const auto B = random_vec(static_cast<size_t>(s.K * s.N), 2);
    std::vector<float> C(static_cast<size_t>(s.M * s.N));
    const int64_t lda = s.ta == Trans::kNo ? s.K : s.M, ldb = s.tb == Trans::kNo ? s.N : s.K;
    const double flops = 2.0 * static_cast<double>(s.M * s.N) * static_cast<double>(s.K);
    for (int t : thread_counts) {
      omp_set_num_threads(t);
      const double sec = best_seconds(reps, [&] {
        gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), s.N);
      });
      const double gf = flops / sec * 1e-9;
      fmt::print("gemm<float> {:32s} {} thr: {:7.1f} GFLOPS  {}\n", s.name, t, gf, pct(gf, t));
    }
  }

  // MoE expert pass: 64 groups of ~equal rows (±25 %), DeepSeek-V2-Lite-like widths.
  const int64_t G = 64, rows_per = quick ? 64 : 128, N = 1408, K = 2048;
  std::vector<int64_t> offsets{0};
  for (int64_t g = 0; g < G; ++g) offsets.push_back(offsets.back() + rows_per + ((g * 37) % 65) - 32);
  const int64_t R = offsets.back();
  const auto X = random_vec(static_cast<size_t>(R * K), 3);
  const auto W = random_vec(static_cast<size_t>(G * N * K), 4);
  const auto dY = random_vec(static_cast<size_t>(R * N), 5);
  std::vector<float> Y(static_cast<size_t>(R * N)), dW(static_cast<size_t>(G * N * K));
  std::vector<float> Wd(W.begin(), W.begin() + N * K), dWd(static_cast<size_t>(N * K));
  const double flops = 2.0 * static_cast<double>(R * N) * static_cast<double>(K);
  fmt::print("grouped: {} groups, {} rows in all, N={} K={} ({:.1f} GFLOP per pass)\n", G, R, N, K, flops * 1e-9);
  for (int t : thread_counts) {
    omp_set_num_threads(t);
    const double s_grp = best_seconds(reps, [&] {
      grouped_gemm<float>(Trans::kYes, G, offsets.data(), N, K, 1.0f, X.data(), K, W.data(), N * K, 0.0f, Y.data(), N);
    });
    const double s_grp_nn = best_seconds(reps, [&] {  // the backward-data layout: W_g stored [K, N]
      grouped_gemm<float>(Trans::kNo, G, offsets.data(), N, K, 1.0f, X.data(), K, W.data(), N * K, 0.0f, Y.data(), N);
    });
    const double s_dense = best_seconds(reps, [&] {
      gemm<float>(Trans::kNo, Trans::kYes, R, N, K, 1.0f, X.data(), K, Wd.data(), K, 0.0f, Y.data(), N);
    });
    const double s_wg = best_seconds(reps, [&] {
      grouped_gemm_weight_grad<float>(G, offsets.data(), N, K, dY.data(), N, X.data(), K, dW.data(), N * K);
    });
    const double s_wd = best_seconds(reps, [&] {
      gemm<float>(Trans::kYes, Trans::kNo, N, K, R, 1.0f, dY.data(), N, X.data(), K, 1.0f, dWd.data(), K);
    });
    const double g1 = flops / s_grp * 1e-9, d1 = flops / s_dense * 1e-9, g3 = flops / s_grp_nn * 1e-9;
    const double g2 = flops / s_wg * 1e-9, d2 = flops / s_wd * 1e-9;
    fmt::print("grouped_gemm (NT)          {} thr: {:7.1f} GFLOPS {}; dense gemm {:7.1f} GFLOPS; ratio {:.2f}\n", t, g1, pct(g1, t), d1, g1 / d1);
    fmt::print("grouped_gemm (NN)          {} thr: {:7.1f} GFLOPS {}; dense gemm {:7.1f} GFLOPS; ratio {:.2f}\n", t, g3, pct(g3, t), d1, g3 / d1);
    fmt::print("grouped_gemm_weight_grad   {} thr: {:7.1f} GFLOPS {}; dense gemm {:7.1f} GFLOPS; ratio {:.2f}\n", t, g2, pct(g2, t), d2, g2 / d2);
  }
  return 0;
}
