// LM head + cross-entropy over vocabulary chunks: logits for `chunk` vocabulary rows at a time via
// gemm (NT), an online log-sum-exp per token across chunks, so that at most N × chunk logits exist.
// Backward recomputes each chunk's logits, forms dlogits = (softmax − onehot)·weight·grad_scale and
// applies two gemms (dh += dlogits · W_chunk, dW_chunk += dlogitsᵀ · h).
#include "kernels/ops.h"

#include "core/error.h"
#include "kernels/cpu/simd.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace qaft {
namespace {

void check_args(const int32_t* targets, int64_t N, int64_t C, int64_t V, int64_t chunk, const char* fn) {
  QAFT_CHECK(N >= 0 && C > 0 && V > 0, "{}: N={} C={} V={}", fn, N, C, V);
  QAFT_CHECK(chunk > 0, "{}: chunk={} must be positive", fn, chunk);
  for (int64_t n = 0; n < N; ++n)
    QAFT_CHECK(targets[n] < V, "{}: target {} of token {} is outside the vocabulary [0, {})", fn,
               targets[n], n, V);
}

// Σ exp(x[j] − m) over a row, 16 lanes (fixed order, vectorizable).
template <typename T>
QAFT_INLINE T sum_exp(const T* x, int64_t n, T m) {
  T acc[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; ++l) acc[l] += detail::vexp(x[j + l] - m);
  for (int l = 0; j + l < n; ++l) acc[l] += detail::vexp(x[j + l] - m);
  for (int w = 8; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

template <typename T>
T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

}  // namespace

template <typename T>
double lm_head_ce_forward(const T* h, const T* W, const int32_t* targets, const T* weights,
                          int64_t N, int64_t C, int64_t V, int64_t chunk, T* lse) {
  check_args(targets, N, C, V, chunk, "lm_head_ce_forward");
  if (N == 0) return 0.0;
  chunk = std::min(chunk, V);
  std::vector<T> logits(static_cast<size_t>(N * chunk));
  std::vector<T> m(static_cast<size_t>(N), -std::numeric_limits<T>::infinity()), s(static_cast<size_t>(N), T(0));
  std::vector<T> target_logit(static_cast<size_t>(N), T(0));
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int64_t vc = std::min(chunk, V - v0);
    gemm<T>(Trans::kNo, Trans::kYes, N, vc, C, T(1), h, C, W + v0 * C, C, T(0), logits.data(), vc);
#pragma omp parallel for schedule(static) if (N * vc > (1 << 15))
    for (int64_t n = 0; n < N; ++n) {
      const T* row = logits.data() + n * vc;
      const size_t un = static_cast<size_t>(n);
      const T cm = row_max(row, vc);
      const T nm = std::max(m[un], cm);
      // m = −inf only before the first chunk, where s = 0: scale by 0 without forming −inf − −inf.
      const T keep = m[un] == -std::numeric_limits<T>::infinity() ? T(0) : detail::vexp(m[un] - nm);
      s[un] = s[un] * keep + sum_exp(row, vc, nm);
      m[un] = nm;
      const int32_t t = targets[n];
      if (t >= v0 && t < v0 + vc) target_logit[un] = row[t - v0];
    }
  }
  double loss = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const size_t un = static_cast<size_t>(n);
    const T l = m[un] + std::log(s[un]);
    lse[n] = l;
    if (targets[n] >= 0)
      loss += (static_cast<double>(l) - static_cast<double>(target_logit[un])) *
              (weights ? static_cast<double>(weights[n]) : 1.0);
  }
  return loss;
}

template <typename T>
void lm_head_ce_backward(const T* h, const T* W, const int32_t* targets, const T* weights,
                         const T* lse, int64_t N, int64_t C, int64_t V, int64_t chunk, T grad_scale,
                         T* dh, T* dW) {
  check_args(targets, N, C, V, chunk, "lm_head_ce_backward");
  if (N == 0) return;
  chunk = std::min(chunk, V);
  std::vector<T> dlogits(static_cast<size_t>(N * chunk));
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int64_t vc = std::min(chunk, V - v0);
    const T* Wc = W + v0 * C;
    gemm<T>(Trans::kNo, Trans::kYes, N, vc, C, T(1), h, C, Wc, C, T(0), dlogits.data(), vc);
#pragma omp parallel for schedule(static) if (N * vc > (1 << 15))
    for (int64_t n = 0; n < N; ++n) {
      T* row = dlogits.data() + n * vc;
      const int32_t t = targets[n];
      if (t < 0) {
        std::fill(row, row + vc, T(0));
        continue;
      }
      const T g = grad_scale * (weights ? weights[n] : T(1));
      const T l = lse[n];
      for (int64_t j = 0; j < vc; ++j) row[j] = g * detail::vexp(row[j] - l);
      if (t >= v0 && t < v0 + vc) row[t - v0] -= g;
    }
    // dh (=|+=) dlogits · W_chunk;  dW_chunk += dlogitsᵀ · h.
    gemm<T>(Trans::kNo, Trans::kNo, N, C, vc, T(1), dlogits.data(), vc, Wc, C, v0 == 0 ? T(0) : T(1), dh, C);
    if (dW) gemm<T>(Trans::kYes, Trans::kNo, vc, C, N, T(1), dlogits.data(), vc, h, C, T(1), dW + v0 * C, C);
  }
}

template <typename T>
void lm_head_logits(const T* h, const T* W, int64_t N, int64_t C, int64_t V, T* logits) {
  QAFT_CHECK(N >= 0 && C > 0 && V > 0, "lm_head_logits: N={} C={} V={}", N, C, V);
  gemm<T>(Trans::kNo, Trans::kYes, N, V, C, T(1), h, C, W, C, T(0), logits, V);
}

#define QAFT_INSTANTIATE(T)                                                                        \
  template double lm_head_ce_forward<T>(const T*, const T*, const int32_t*, const T*, int64_t,     \
                                        int64_t, int64_t, int64_t, T*);                            \
  template void lm_head_ce_backward<T>(const T*, const T*, const int32_t*, const T*, const T*,     \
                                       int64_t, int64_t, int64_t, int64_t, T, T*, T*);             \
  template void lm_head_logits<T>(const T*, const T*, int64_t, int64_t, int64_t, T*);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)

}  // namespace qaft
