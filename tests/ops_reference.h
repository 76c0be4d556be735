// Naive float64 references for the op table (src/kernels/ops.h), written from the definitions
// (full score matrices, full logits), for tests/unit/ops_test.cpp and ops_grad_test.cpp.
#pragma once

#include "core/rng.h"
#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace qaft::test {

// n normal values (mean 0, stddev `scale`) from a counter-based stream, as T.
template <typename T>
std::vector<T> randn(int64_t n, uint64_t seed, double scale = 1.0) {
  std::vector<float> f(static_cast<size_t>(n));
  CounterRng(seed, 7).fill_normal(f.data(), n, 0.0f, 1.0f);
  std::vector<T> out(static_cast<size_t>(n));
  for (size_t i = 0; i < f.size(); ++i) out[i] = static_cast<T>(f[i] * scale);
  return out;
}

template <typename To, typename From>
std::vector<To> cast(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

// C = alpha·op(A)·op(B) + beta·C (beta = 0 ignores C).
inline void ref_gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                     const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                     double* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (ta == Trans::kNo ? A[i * lda + k] : A[k * lda + i]) *
             (tb == Trans::kNo ? B[k * ldb + j] : B[j * ldb + k]);
      C[i * ldc + j] = alpha * s + (beta == 0 ? 0.0 : beta * C[i * ldc + j]);
    }
}

// Attention through the full softmax matrix of each (b, h).
inline void ref_attention(const double* q, const double* k, const double* v, const int32_t* seg,
                          int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv,
                          double scale, double* out, double* lse) {
  std::vector<double> s(static_cast<size_t>(T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / (H / Hkv);
      for (int64_t t = 0; t < T; ++t) {
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t u = 0; u < T; ++u) {
          const bool ok = u <= t && (!seg || seg[b * T + u] == seg[b * T + t]);
          double d = 0;
          for (int64_t e = 0; e < Dqk; ++e)
            d += q[((b * T + t) * H + h) * Dqk + e] * k[((b * T + u) * Hkv + kh) * Dqk + e];
          s[static_cast<size_t>(u)] = ok ? d * scale : -std::numeric_limits<double>::infinity();
          m = std::max(m, s[static_cast<size_t>(u)]);
        }
        double z = 0;
        for (int64_t u = 0; u < T; ++u) z += std::exp(s[static_cast<size_t>(u)] - m);
        for (int64_t e = 0; e < Dv; ++e) {
          double o = 0;
          for (int64_t u = 0; u < T; ++u)
            o += std::exp(s[static_cast<size_t>(u)] - m) / z * v[((b * T + u) * Hkv + kh) * Dv + e];
          out[((b * T + t) * H + h) * Dv + e] = o;
        }
        lse[(b * H + h) * T + t] = m + std::log(z);
      }
    }
}

// Σ_n (logsumexp(logits_n) − logits_n[t_n])·w_n over valid targets, via the full [N, V] logits.
inline double ref_ce(const double* h, const double* W, const int32_t* targets, const double* weights,
                     int64_t N, int64_t C, int64_t V, double* lse) {
  double loss = 0;
  std::vector<double> z(static_cast<size_t>(V));
  for (int64_t n = 0; n < N; ++n) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < V; ++j) {
      double d = 0;
      for (int64_t c = 0; c < C; ++c) d += h[n * C + c] * W[j * C + c];
      z[static_cast<size_t>(j)] = d;
      m = std::max(m, d);
    }
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(z[static_cast<size_t>(j)] - m);
    lse[n] = m + std::log(s);
    if (targets[n] >= 0) loss += (lse[n] - z[static_cast<size_t>(targets[n])]) * (weights ? weights[n] : 1.0);
  }
  return loss;
}

// Largest |a − b| / (|b| + floor) over two arrays.
template <typename A, typename B>
double max_rel_err(const A& a, const B& b, double floor) {
  double e = 0;
  for (size_t i = 0; i < b.size(); ++i)
    e = std::max(e, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])) /
                        (std::fabs(static_cast<double>(b[i])) + floor));
  return e;
}

}  // namespace qaft::test
