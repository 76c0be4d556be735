// Causal GQA attention, FlashAttention-2 style: tiles of kBq queries × kBk keys, online softmax in
// the forward pass, scores recomputed tile by tile from the saved log-sum-exp in the backward pass.
//
// Memory (no O(T²) buffer anywhere): per thread, with Dqk' = round_up(Dqk, 64), Dv' = round_up(Dv, 64)
//   forward : q tile kBq·Dqk', Kᵀ tile Dqk·kBk, V tile kBk·Dv', scores/probabilities kBq·kBk,
//             output accumulator kBq·Dv', running max and sum 2·kBq
//   backward: q and dO tiles kBq·(Dqk' + Dv'), Kᵀ Dqk·kBk, K kBk·Dqk', Vᵀ Dv·kBk, P and dP/dS
//             2·kBq·kBk, plus D = rowsum(dO ⊙ O) for the task's heads: (H/Hkv)·T values (O(T)).
// For Dqk = 192, Dv = 128 in float that is ≈ 180 KiB (forward) and ≈ 230 KiB + 4·(H/Hkv)·T bytes
// (backward) per thread, independent of T except for the O(T) D vector.
//
// Parallelism and determinism: the forward runs one work item per (b, h, query tile); the backward
// one per (b, kv head), which owns dk/dv of that kv head and dq of the heads that share it, so no
// two threads ever write the same element and every sum has a fixed order.
//
// The tile products use detail::tile_gemm (register-blocked, vectorized by the compiler); the
// whole per-item body is compiled twice (AVX-512 target and portable) and dispatched at run time.
#include "kernels/ops.h"

#include "core/cpu_features.h"
#include "core/error.h"
#include "kernels/cpu/simd.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 false positive, see grouped_gemm.cpp
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace qaft {
namespace {

constexpr int64_t kBq = 64, kBk = 64;  // query and key tile sizes
// Below this many multiply-adds a parallel region costs more than it saves (notably when the
// machine is oversubscribed and waking a thread takes milliseconds).
constexpr int64_t kParallelWork = int64_t{1} << 20;

int64_t round_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

template <typename T>
struct Attn {
  const T *q, *k, *v;
  const int32_t* seg;
  int64_t B, Tn, H, Hkv, Dqk, Dv;
  T scale;
  int64_t Dqp, Dvp;  // padded widths of local tiles (B operands are read in whole register tiles)

  int64_t group() const { return H / Hkv; }
  const T* qrow(int64_t b, int64_t t, int64_t h) const { return q + ((b * Tn + t) * H + h) * Dqk; }
  const T* krow(int64_t b, int64_t t, int64_t kh) const { return k + ((b * Tn + t) * Hkv + kh) * Dqk; }
  const T* vrow(int64_t b, int64_t t, int64_t kh) const { return v + ((b * Tn + t) * Hkv + kh) * Dv; }
  // Query t attends key s (s ≤ t is the caller's loop bound's job only at tile granularity).
  bool valid(int64_t b, int64_t t, int64_t s) const {
    return s <= t && (seg == nullptr || seg[b * Tn + s] == seg[b * Tn + t]);
  }
  // True when no query of [q0, q1) shares a segment id with a key of [k0, k1) (disjoint id ranges).
  bool disjoint(int64_t b, int64_t q0, int64_t q1, int64_t k0, int64_t k1) const {
    if (seg == nullptr) return false;
    const int32_t* s = seg + b * Tn;
    const auto [qlo, qhi] = std::minmax_element(s + q0, s + q1);
    const auto [klo, khi] = std::minmax_element(s + k0, s + k1);
    return *qhi < *klo || *khi < *qlo;
  }
};

// Row-major copy of rows [t0, t0 + n) of a strided [T, D] view into dst [n, ld].
template <typename T, typename Row>
QAFT_INLINE void load_rows(Row row, int64_t t0, int64_t n, int64_t D, T* dst, int64_t ld) {
  for (int64_t i = 0; i < n; ++i) {
    const T* src = row(t0 + i);
    for (int64_t d = 0; d < D; ++d) dst[i * ld + d] = src[d];
  }
}
// Transposed copy: dst[d, i] (row stride kBk) = row(t0 + i)[d].
template <typename T, typename Row>
QAFT_INLINE void load_cols(Row row, int64_t t0, int64_t n, int64_t D, T* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const T* src = row(t0 + i);
    for (int64_t d = 0; d < D; ++d) dst[d * kBk + i] = src[d];
  }
}

template <typename T>
struct FwdBuffers {
  std::vector<T> qb, kt, vb, s, o, m, l;
  explicit FwdBuffers(const Attn<T>& a)
      : qb(static_cast<size_t>(kBq * a.Dqp)), kt(static_cast<size_t>(a.Dqk * kBk)),
        vb(static_cast<size_t>(kBk * a.Dvp)), s(static_cast<size_t>(kBq * kBk)),
        o(static_cast<size_t>(kBq * a.Dvp)), m(kBq), l(kBq) {}
};

// One (b, h, query tile): online softmax over the key tiles left of the causal limit.
template <typename T, int MR, int NR>
QAFT_INLINE void forward_item(const Attn<T>& a, int64_t b, int64_t h, int64_t qi, FwdBuffers<T>& w,
                              T* out, T* lse) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const int64_t kh = h / a.group();
  const int64_t q0 = qi * kBq, q1 = std::min(q0 + kBq, a.Tn), nq = q1 - q0;
  T *qb = w.qb.data(), *kt = w.kt.data(), *vb = w.vb.data(), *s = w.s.data(), *o = w.o.data();
  load_rows<T>([&](int64_t t) { return a.qrow(b, t, h); }, q0, nq, a.Dqk, qb, a.Dqp);
  std::fill(w.o.begin(), w.o.end(), T(0));
  std::fill(w.m.begin(), w.m.end(), kNegInf);
  std::fill(w.l.begin(), w.l.end(), T(0));
  for (int64_t k0 = 0; k0 < q1; k0 += kBk) {
    const int64_t k1 = std::min(k0 + kBk, q1), nk = k1 - k0;
    if (a.disjoint(b, q0, q1, k0, k1)) continue;
    load_cols<T>([&](int64_t t) { return a.krow(b, t, kh); }, k0, nk, a.Dqk, kt);
    load_rows<T>([&](int64_t t) { return a.vrow(b, t, kh); }, k0, nk, a.Dv, vb, a.Dvp);
    detail::tile_gemm<T, MR, NR, true>(nq, nk, a.Dqk, T(1), qb, a.Dqp, kt, kBk, s, kBk, false);
    for (int64_t i = 0; i < nq; ++i) {
      T* si = s + i * kBk;
      T mx = kNegInf;
      for (int64_t j = 0; j < nk; ++j) {
        const T x = a.valid(b, q0 + i, k0 + j) ? si[j] * a.scale : kNegInf;
        si[j] = x;
        mx = std::max(mx, x);
      }
      if (mx == kNegInf) {  // no key of this tile is visible to this query
        std::fill(si, si + nk, T(0));
        continue;
      }
      const T m_old = w.m[static_cast<size_t>(i)];
      const T m_new = std::max(m_old, mx);
      const T keep = m_old == kNegInf ? T(0) : detail::vexp(m_old - m_new);
      T sum[16] = {};
      for (int64_t j = 0; j < nk; ++j) {
        const T p = detail::vexp(si[j] - m_new);
        si[j] = p;
        sum[j % 16] += p;
      }
      for (int st = 8; st > 0; st /= 2)
        for (int l = 0; l < st; ++l) sum[l] += sum[l + st];
      w.l[static_cast<size_t>(i)] = w.l[static_cast<size_t>(i)] * keep + sum[0];
      w.m[static_cast<size_t>(i)] = m_new;
      if (keep != T(1))
        for (int64_t e = 0; e < a.Dv; ++e) o[i * a.Dvp + e] *= keep;
    }
    detail::tile_gemm<T, MR, NR, true>(nq, a.Dv, nk, T(1), s, kBk, vb, a.Dvp, o, a.Dvp, true);
  }
  for (int64_t i = 0; i < nq; ++i) {
    const T l = w.l[static_cast<size_t>(i)];
    T* dst = out + ((b * a.Tn + q0 + i) * a.H + h) * a.Dv;
    const T inv = T(1) / l;
    for (int64_t e = 0; e < a.Dv; ++e) dst[e] = o[i * a.Dvp + e] * inv;
    lse[(b * a.H + h) * a.Tn + q0 + i] = w.m[static_cast<size_t>(i)] + std::log(l);
  }
}

template <typename T>
struct BwdBuffers {
  std::vector<T> qb, dob, kt, kb, vt, p, ds, D;
  explicit BwdBuffers(const Attn<T>& a)
      : qb(static_cast<size_t>(kBq * a.Dqp)), dob(static_cast<size_t>(kBq * a.Dvp)),
        kt(static_cast<size_t>(a.Dqk * kBk)), kb(static_cast<size_t>(kBk * a.Dqp)),
        vt(static_cast<size_t>(a.Dv * kBk)), p(static_cast<size_t>(kBq * kBk)),
        ds(static_cast<size_t>(kBq * kBk)), D(static_cast<size_t>(a.group() * a.Tn)) {}
};

// One (b, kv head): all key tiles × the heads of the group × the query tiles at or right of the key tile.
template <typename T, int MR, int NR>
QAFT_INLINE void backward_task(const Attn<T>& a, int64_t b, int64_t kh, BwdBuffers<T>& w,
                               const T* dout, const T* out, const T* lse, T* dq, T* dk, T* dv) {
  const int64_t G = a.group();
  for (int64_t t = 0; t < a.Tn; ++t) {
    std::fill_n(dk + ((b * a.Tn + t) * a.Hkv + kh) * a.Dqk, a.Dqk, T(0));
    std::fill_n(dv + ((b * a.Tn + t) * a.Hkv + kh) * a.Dv, a.Dv, T(0));
    std::fill_n(dq + ((b * a.Tn + t) * a.H + kh * G) * a.Dqk, G * a.Dqk, T(0));
    for (int64_t g = 0; g < G; ++g) {
      const int64_t off = ((b * a.Tn + t) * a.H + kh * G + g) * a.Dv;
      w.D[static_cast<size_t>(g * a.Tn + t)] = detail::dot(dout + off, out + off, a.Dv);
    }
  }
  T *qb = w.qb.data(), *dob = w.dob.data(), *kt = w.kt.data(), *kb = w.kb.data(), *vt = w.vt.data();
  T *p = w.p.data(), *ds = w.ds.data();
  const int64_t ldq = a.H * a.Dqk, ldk = a.Hkv * a.Dqk, ldv = a.Hkv * a.Dv;
  for (int64_t k0 = 0; k0 < a.Tn; k0 += kBk) {
    const int64_t k1 = std::min(k0 + kBk, a.Tn), nk = k1 - k0;
    load_cols<T>([&](int64_t t) { return a.krow(b, t, kh); }, k0, nk, a.Dqk, kt);
    load_rows<T>([&](int64_t t) { return a.krow(b, t, kh); }, k0, nk, a.Dqk, kb, a.Dqp);
    load_cols<T>([&](int64_t t) { return a.vrow(b, t, kh); }, k0, nk, a.Dv, vt);
    T* dk_tile = dk + ((b * a.Tn + k0) * a.Hkv + kh) * a.Dqk;
    T* dv_tile = dv + ((b * a.Tn + k0) * a.Hkv + kh) * a.Dv;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t h = kh * G + g;
      for (int64_t q0 = k0 / kBq * kBq; q0 < a.Tn; q0 += kBq) {
        const int64_t q1 = std::min(q0 + kBq, a.Tn), nq = q1 - q0;
        if (a.disjoint(b, q0, q1, k0, k1)) continue;
        load_rows<T>([&](int64_t t) { return a.qrow(b, t, h); }, q0, nq, a.Dqk, qb, a.Dqp);
        load_rows<T>([&](int64_t t) { return dout + ((b * a.Tn + t) * a.H + h) * a.Dv; }, q0, nq, a.Dv,
                     dob, a.Dvp);
        // P = exp(S·scale − lse) (0 where masked); dP = dO·Vᵀ; dS = P ⊙ (dP − D).
        detail::tile_gemm<T, MR, NR, true>(nq, nk, a.Dqk, T(1), qb, a.Dqp, kt, kBk, p, kBk, false);
        detail::tile_gemm<T, MR, NR, true>(nq, nk, a.Dv, T(1), dob, a.Dvp, vt, kBk, ds, kBk, false);
        for (int64_t i = 0; i < nq; ++i) {
          const T l = lse[(b * a.H + h) * a.Tn + q0 + i];
          const T Di = w.D[static_cast<size_t>(g * a.Tn + q0 + i)];
          T* pi = p + i * kBk;
          T* dsi = ds + i * kBk;
          for (int64_t j = 0; j < nk; ++j) {
            const T pij = a.valid(b, q0 + i, k0 + j) ? detail::vexp(pi[j] * a.scale - l) : T(0);
            pi[j] = pij;
            dsi[j] = pij * (dsi[j] - Di);
          }
        }
        // dV += Pᵀ·dO;  dQ += scale·dS·K;  dK += scale·dSᵀ·Q.
        detail::tile_gemm<T, MR, NR, false>(nk, a.Dv, nq, T(1), p, kBk, dob, a.Dvp, dv_tile, ldv, true);
        detail::tile_gemm<T, MR, NR, true>(nq, a.Dqk, nk, a.scale, ds, kBk, kb, a.Dqp,
                                           dq + ((b * a.Tn + q0) * a.H + h) * a.Dqk, ldq, true);
        detail::tile_gemm<T, MR, NR, false>(nk, a.Dqk, nq, a.scale, ds, kBk, qb, a.Dqp, dk_tile, ldk, true);
      }
    }
  }
}

// Register tiles: 16 accumulators of 512 bits (AVX-512) or 8 of 128 bits (portable).
template <typename T>
struct AttnTiles;
template <>
struct AttnTiles<float> {
  static constexpr int kMr512 = 4, kNr512 = 64, kMr = 2, kNr = 16;
};
template <>
struct AttnTiles<double> {
  static constexpr int kMr512 = 4, kNr512 = 32, kMr = 2, kNr = 8;
};

#define QAFT_ATTN_WRAPPERS(T)                                                                       \
  QAFT_AVX512_KERNEL void forward_avx512(const Attn<T>& a, int64_t b, int64_t h, int64_t qi,        \
                                         FwdBuffers<T>& w, T* out, T* lse) {                        \
    forward_item<T, AttnTiles<T>::kMr512, AttnTiles<T>::kNr512>(a, b, h, qi, w, out, lse);          \
  }                                                                                                 \
  void forward_portable(const Attn<T>& a, int64_t b, int64_t h, int64_t qi, FwdBuffers<T>& w,       \
                        T* out, T* lse) {                                                           \
    forward_item<T, AttnTiles<T>::kMr, AttnTiles<T>::kNr>(a, b, h, qi, w, out, lse);                \
  }                                                                                                 \
  QAFT_AVX512_KERNEL void backward_avx512(const Attn<T>& a, int64_t b, int64_t kh,                  \
                                          BwdBuffers<T>& w, const T* dout, const T* out,            \
                                          const T* lse, T* dq, T* dk, T* dv) {                      \
    backward_task<T, AttnTiles<T>::kMr512, AttnTiles<T>::kNr512>(a, b, kh, w, dout, out, lse, dq,   \
                                                                 dk, dv);                           \
  }                                                                                                 \
  void backward_portable(const Attn<T>& a, int64_t b, int64_t kh, BwdBuffers<T>& w, const T* dout,  \
                         const T* out, const T* lse, T* dq, T* dk, T* dv) {                         \
    backward_task<T, AttnTiles<T>::kMr, AttnTiles<T>::kNr>(a, b, kh, w, dout, out, lse, dq, dk, dv); \
  }
QAFT_ATTN_WRAPPERS(float)
QAFT_ATTN_WRAPPERS(double)

template <typename T>
Attn<T> make_attn(const T* q, const T* k, const T* v, const int32_t* segment, int64_t B, int64_t Tn,
                  int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, T scale, const char* fn) {
  QAFT_CHECK(B >= 0 && Tn >= 0 && Dqk > 0 && Dv > 0, "{}: B={} T={} Dqk={} Dv={}", fn, B, Tn, Dqk, Dv);
  QAFT_CHECK(H > 0 && Hkv > 0 && H % Hkv == 0, "{}: H={} must be a positive multiple of Hkv={}", fn, H, Hkv);
  return Attn<T>{q, k, v, segment, B, Tn, H, Hkv, Dqk, Dv, scale, round_up(Dqk, 64), round_up(Dv, 64)};
}

}  // namespace

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, const int32_t* segment, int64_t B,
                       int64_t Tn, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, T scale, T* out,
                       T* lse) {
  const Attn<T> a = make_attn(q, k, v, segment, B, Tn, H, Hkv, Dqk, Dv, scale, "attention_forward");
  const int64_t q_tiles = (Tn + kBq - 1) / kBq, items = B * H * q_tiles;
  const bool avx512 = cpu_features().has_avx512_codecs();
#pragma omp parallel if (items > 1 && B * H * Tn * Tn * (Dqk + Dv) > kParallelWork)
  {
    FwdBuffers<T> w(a);
    // Later query tiles see more keys: interleave so that dynamic scheduling starts with heavy ones.
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t qi = q_tiles - 1 - it / (B * H), bh = it % (B * H);
      if (avx512)
        forward_avx512(a, bh / H, bh % H, qi, w, out, lse);
      else
        forward_portable(a, bh / H, bh % H, qi, w, out, lse);
    }
  }
}

template <typename T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* out,
                        const T* lse, const int32_t* segment, int64_t B, int64_t Tn, int64_t H,
                        int64_t Hkv, int64_t Dqk, int64_t Dv, T scale, T* dq, T* dk, T* dv) {
  const Attn<T> a = make_attn(q, k, v, segment, B, Tn, H, Hkv, Dqk, Dv, scale, "attention_backward");
  const int64_t tasks = B * Hkv;
  const bool avx512 = cpu_features().has_avx512_codecs();
#pragma omp parallel if (tasks > 1 && B * H * Tn * Tn * (Dqk + Dv) > kParallelWork)
  {
    BwdBuffers<T> w(a);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < tasks; ++it) {
      if (avx512)
        backward_avx512(a, it / Hkv, it % Hkv, w, dout, out, lse, dq, dk, dv);
      else
        backward_portable(a, it / Hkv, it % Hkv, w, dout, out, lse, dq, dk, dv);
    }
  }
}

#define QAFT_INSTANTIATE(T)                                                                        \
  template void attention_forward<T>(const T*, const T*, const T*, const int32_t*, int64_t,        \
                                     int64_t, int64_t, int64_t, int64_t, int64_t, T, T*, T*);      \
  template void attention_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*,  \
                                      const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                      int64_t, T, T*, T*, T*);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)

}  // namespace qaft
