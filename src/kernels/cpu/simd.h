// Internal helpers of the CPU kernels: the AVX-512 target attribute used for run-time dispatched
// twins, a vectorizable float exp, and a register-blocked small GEMM on padded local tiles.
//
// Pattern: a kernel body is an always-inline template; one wrapper carries QAFT_AVX512_KERNEL and
// one is plain (portable x86-64-v2). cpu_features().has_avx512_codecs() picks the wrapper, so
// QAFT_CPU_ISA=scalar runs the portable code on any machine.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__clang__)
#define QAFT_AVX512_KERNEL __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#else  // g++ with -mtune=generic prefers 256-bit vectors even where AVX-512 is enabled
#define QAFT_AVX512_KERNEL \
  __attribute__((target("avx512f,avx512bw,avx512vl,fma,prefer-vector-width=512")))
#endif
#define QAFT_INLINE [[gnu::always_inline]] inline

namespace qaft::detail {

// e^x for float with only arithmetic and bit operations, so that loops calling it vectorize
// (libm's expf does not without -ffast-math). x = n·ln2 + r with n = round(x·log2 e) and ln2 split
// in two (Cody–Waite: n·ln2_hi is exact), |r| ≤ ln2/2; e^r by its Taylor polynomial of degree 7
// (truncation error < 1e-8 relative), 2^n assembled in the exponent field. Max error ≈ 2 ulp.
// e^x = 0 below x = −86 (true value < 5e-38), +inf above ln(FLT_MAX) ≈ 88.72283; NaN is not propagated
// (callers never pass it: softmax inputs are finite or −inf).
QAFT_INLINE float exp_fast(float x) {
  const float xc = std::min(std::max(x, -86.0f), 88.72283f);
  const float t = xc * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest integer: 1.5·2^23 trick
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606820309417232e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n as 2^(n−1)·2 so that n = 128 (x near 88.72) does not overflow the exponent field.
  const int32_t e = static_cast<int32_t>(n) + 126;
  const float res = p * std::bit_cast<float>(e << 23) * 2.0f;
  return x < -86.0f ? 0.0f : (x > 88.72283f ? std::numeric_limits<float>::infinity() : res);
}

template <typename T>
QAFT_INLINE T vexp(T x) {
  if constexpr (std::is_same_v<T, float>)
    return exp_fast(x);
  else
    return std::exp(x);
}

// C[m, n] = (accumulate ? C : 0) + alpha · A(m, k) · B[k, n] on small tiles.
// A(r, kk) = a[r·lda + kk] (kRowA) or a[kk·lda + r] (column-major, a transposed view).
// Padding contract (what makes the fixed-size register tile legal): A must be readable for rows
// r < round_up(m, MR) (zeros or any finite values there) and B for columns < round_up(n, NR);
// only C[r < m, j < n] is written, so C may be the caller's strided output.
template <typename T, int MR, int NR, bool kRowA>
QAFT_INLINE void tile_gemm(int64_t m, int64_t n, int64_t k, T alpha, const T* __restrict a,
                           int64_t lda, const T* __restrict b, int64_t ldb, T* __restrict c,
                           int64_t ldc, bool accumulate) {
  for (int64_t i0 = 0; i0 < m; i0 += MR) {
    const int64_t mr = std::min<int64_t>(MR, m - i0);
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
      const int64_t nr = std::min<int64_t>(NR, n - j0);
      T acc[MR][NR] = {};
      for (int64_t kk = 0; kk < k; ++kk) {
        const T* bk = b + kk * ldb + j0;
        for (int r = 0; r < MR; ++r) {
          const T ar = kRowA ? a[(i0 + r) * lda + kk] : a[kk * lda + i0 + r];
          for (int j = 0; j < NR; ++j) acc[r][j] += ar * bk[j];
        }
      }
      T* cb = c + i0 * ldc + j0;
      if (mr == MR && nr == NR) {
        for (int r = 0; r < MR; ++r)
          for (int j = 0; j < NR; ++j)
            cb[r * ldc + j] = (accumulate ? cb[r * ldc + j] : T(0)) + alpha * acc[r][j];
      } else {
        for (int64_t r = 0; r < mr; ++r)
          for (int64_t j = 0; j < nr; ++j)
            cb[r * ldc + j] = (accumulate ? cb[r * ldc + j] : T(0)) + alpha * acc[r][j];
      }
    }
  }
}

// Σ x[i]·y[i] with `Lanes` partial sums (a fixed summation order that the compiler vectorizes:
// element i goes to lane i mod Lanes, lanes are added pairwise at the end).
template <typename T, int Lanes = 16>
QAFT_INLINE T dot(const T* __restrict x, const T* __restrict y, int64_t n) {
  T acc[Lanes] = {};
  int64_t i = 0;
  for (; i + Lanes <= n; i += Lanes)
    for (int l = 0; l < Lanes; ++l) acc[l] += x[i + l] * y[i + l];
  for (int l = 0; i + l < n; ++l) acc[l] += x[i + l] * y[i + l];
  for (int w = Lanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

}  // namespace qaft::detail
