// Causal GQA attention, FlashAttention-2 style: tiles of kBq queries × kBk keys, online softmax in
// the forward pass, scores recomputed tile by tile from the saved log-sum-exp in the backward pass.
//
// Memory (no O(T²) buffer anywhere), per thread, with Dqk' = round_up(Dqk, 64), Dv' = round_up(Dv, 64):
//   forward : Qᵀ tile Dqk·kBq, transposed scores/probabilities kBk·kBq, output accumulator kBq·Dv',
//             4 vectors of kBq (running max, sum, tile max, rescale), and K / V tile copies kBk·Dqk
//             and kBk·Dv' used only where reading K and V in place would overrun (sequence end, Dv
//             not a multiple of the register tile)
//   backward: Kᵀ Dqk·kBk, Vᵀ Dv·kBk (transposed once per key tile), P and dP/dS 2·kBq·kBk,
//             D = rowsum(dO ⊙ O) of the task's heads (H/Hkv)·T (O(T)), and q / dO / K tile copies
//             kBq·Dqk', kBq·Dv', kBk·Dqk' used only where in-place reads would overrun
// For Dqk = 192, Dv = 128 in float: forward 177 KiB, backward 240 KiB + 4·(H/Hkv)·T bytes. The
// largest tile is kBq·kBk = 4096 scores; nothing depends on T except the backward's D vector.
//
// Parallelism and determinism: the forward runs one task per (b, kv head, range of query tiles),
// covering every head of the group; the backward one per (b, kv head), which owns dk/dv of that kv
// head and dq of the heads that share it. No two threads ever write the same element, and every
// query tile is computed by the same sequence of operations whatever the split, so results are
// bitwise identical for any thread count.
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
#include <optional>
#include <vector>

#include <omp.h>

namespace qaft {
namespace {

constexpr int64_t kBq = 64, kBk = kAttentionKeyTile;  // query and key tile sizes
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
  // Row strides (per position) of q / out (which hold the queries at positions [q_begin, Tn) only)
  // and of k / v (positions [0, Tn)). attention_forward: contiguous, q_begin = 0.
  int64_t ldq, ldk, ldv, ldo, q_begin;

  int64_t group() const { return H / Hkv; }
  int64_t Tq() const { return Tn - q_begin; }  // query rows per sequence
  const T* qrow(int64_t b, int64_t t, int64_t h) const { return q + (b * Tq() + t - q_begin) * ldq + h * Dqk; }
  const T* krow(int64_t b, int64_t t, int64_t kh) const { return k + (b * Tn + t) * ldk + kh * Dqk; }
  const T* vrow(int64_t b, int64_t t, int64_t kh) const { return v + (b * Tn + t) * ldv + kh * Dv; }
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
// Transposed copy: dst[d, i] (row stride ld) = row(t0 + i)[d].
template <typename T, typename Row>
QAFT_INLINE void load_cols(Row row, int64_t t0, int64_t n, int64_t D, T* dst, int64_t ld = kBk) {
  for (int64_t i = 0; i < n; ++i) {
    const T* src = row(t0 + i);
    for (int64_t d = 0; d < D; ++d) dst[d * ld + i] = src[d];
  }
}

// s[j] = scale·s[j] for the keys k0 + j (j < nk) that query t may attend, −inf for the others.
// Two branch-free loops (with and without segments) so that both vectorize.
template <typename T>
QAFT_INLINE void mask_scale(const Attn<T>& a, int64_t b, int64_t t, int64_t k0, int64_t nk, T* s) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const int64_t lim = t - k0;  // keys j ≤ lim are not in the future
  const T scale = a.scale;
  if (a.seg != nullptr) {
    const int32_t* segk = a.seg + b * a.Tn + k0;
    const int32_t segq = a.seg[b * a.Tn + t];
    for (int64_t j = 0; j < nk; ++j) s[j] = (j <= lim && segk[j] == segq) ? s[j] * scale : kNegInf;
  } else {
    for (int64_t j = 0; j < nk; ++j) s[j] = j <= lim ? s[j] * scale : kNegInf;
  }
}

// st[j, i] = scale·st[j, i] for the queries q0 + i (i < nq) that may attend key k (one row of the
// transposed score tile), −inf for the others. Branch-free so that it vectorizes over queries.
template <typename T>
QAFT_INLINE void mask_scale_col(const Attn<T>& a, int64_t b, int64_t q0, int64_t nq, int64_t k, T* st) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const int64_t first = k - q0;  // queries i ≥ first are not before the key
  const T scale = a.scale;
  if (a.seg != nullptr) {
    const int32_t* segq = a.seg + b * a.Tn + q0;
    const int32_t segk = a.seg[b * a.Tn + k];
    for (int64_t i = 0; i < nq; ++i) st[i] = (i >= first && segq[i] == segk) ? st[i] * scale : kNegInf;
  } else {
    for (int64_t i = 0; i < nq; ++i) st[i] = i >= first ? st[i] * scale : kNegInf;
  }
}

template <typename T>
struct FwdBuffers {
  std::vector<T> qt, kb, vb, st, o, m, l, mx, keep;
  explicit FwdBuffers(const Attn<T>& a)
      : qt(static_cast<size_t>(a.Dqk * kBq)), kb(static_cast<size_t>(kBk * a.Dqk)),
        vb(static_cast<size_t>(kBk * a.Dvp)), st(static_cast<size_t>(kBk * kBq)),
        o(static_cast<size_t>(kBq * a.Dvp)), m(kBq), l(kBq), mx(kBq), keep(kBq) {}
};

// One (b, h, query tile qi = the queries [q_begin + qi·kBq, +kBq)): online softmax over the key
// tiles left of the causal limit. Key tiles always start at multiples of kBk and every query's
// statistics and sums are its own (elementwise across queries, one column of each tile product),
// so a query's result does not depend on which queries share its tile: attention_forward_rows
// reproduces attention_forward's bits for any q_begin. The score
// tile is kept transposed, Sᵀ[key, query] = K·Qᵀ, so that K is read in place as the row operand,
// Qᵀ is transposed once per query tile, and the softmax statistics (max and sum over keys) are
// elementwise operations across queries.
template <typename T, int MR, int NR>
QAFT_INLINE void forward_item(const Attn<T>& a, int64_t b, int64_t h, int64_t qi, FwdBuffers<T>& w,
                              T* out, T* lse) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const int64_t kh = h / a.group();
  const int64_t q0 = a.q_begin + qi * kBq, q1 = std::min(q0 + kBq, a.Tn), nq = q1 - q0;
  T *qt = w.qt.data(), *st = w.st.data(), *o = w.o.data(), *m = w.m.data(), *l = w.l.data();
  T *mx = w.mx.data(), *keep = w.keep.data();
  load_cols<T>([&](int64_t t) { return a.qrow(b, t, h); }, q0, nq, a.Dqk, qt, kBq);
  std::fill(w.o.begin(), w.o.end(), T(0));
  std::fill(w.m.begin(), w.m.end(), kNegInf);
  std::fill(w.l.begin(), w.l.end(), T(0));
  const int64_t ldk = a.ldk, ldv = a.ldv;
  for (int64_t k0 = 0; k0 < q1; k0 += kBk) {
    const int64_t k1 = std::min(k0 + kBk, q1), nk = k1 - k0;
    if (a.disjoint(b, q0, q1, k0, k1)) continue;
    // K and V are read in place unless a whole register tile would run past the end of the
    // sequence (K) or of the row (V, when Dv is not a multiple of the register tile).
    const T* kp = a.krow(b, k0, kh);
    int64_t lda = ldk;
    if (k0 + round_up(nk, MR) > a.Tn) {
      load_rows<T>([&](int64_t t) { return a.krow(b, t, kh); }, k0, nk, a.Dqk, w.kb.data(), a.Dqk);
      kp = w.kb.data(), lda = a.Dqk;
    }
    const T* vp = a.vrow(b, k0, kh);
    int64_t ldb = ldv;
    if (a.Dv % NR != 0) {
      load_rows<T>([&](int64_t t) { return a.vrow(b, t, kh); }, k0, nk, a.Dv, w.vb.data(), a.Dvp);
      vp = w.vb.data(), ldb = a.Dvp;
    }
    detail::tile_gemm<T, MR, NR, true>(nk, nq, a.Dqk, T(1), kp, lda, qt, kBq, st, kBq, false);
    std::fill(mx, mx + nq, kNegInf);
    for (int64_t j = 0; j < nk; ++j) {
      T* row = st + j * kBq;
      mask_scale_col(a, b, q0, nq, k0 + j, row);
      for (int64_t i = 0; i < nq; ++i) mx[i] = std::max(mx[i], row[i]);
    }
    // New running max; a query with no visible key so far keeps −inf and subtracts 0 instead.
    for (int64_t i = 0; i < nq; ++i) {
      const T m_new = std::max(m[i], mx[i]);
      keep[i] = m[i] == kNegInf ? T(0) : detail::vexp(m[i] - m_new);
      m[i] = m_new;
      mx[i] = m_new == kNegInf ? T(0) : m_new;
    }
    for (int64_t j = 0; j < nk; ++j) {
      T* row = st + j * kBq;
      for (int64_t i = 0; i < nq; ++i) row[i] = detail::vexp(row[i] - mx[i]);  // exp(−inf) = 0
    }
    for (int64_t i = 0; i < nq; ++i) l[i] *= keep[i];
    for (int64_t j = 0; j < nk; ++j)
      for (int64_t i = 0; i < nq; ++i) l[i] += st[j * kBq + i];
    for (int64_t i = 0; i < nq; ++i)
      if (keep[i] != T(1))
        for (int64_t e = 0; e < a.Dv; ++e) o[i * a.Dvp + e] *= keep[i];
    // O += P·V with P = (Sᵀ)ᵀ read column-major.
    detail::tile_gemm<T, MR, NR, false>(nq, a.Dv, nk, T(1), st, kBq, vp, ldb, o, a.Dvp, true);
  }
  for (int64_t i = 0; i < nq; ++i) {
    T* dst = out + (b * a.Tq() + q0 + i - a.q_begin) * a.ldo + h * a.Dv;
    const T inv = T(1) / l[i];
    for (int64_t e = 0; e < a.Dv; ++e) dst[e] = o[i * a.Dvp + e] * inv;
    if (lse) lse[(b * a.H + h) * a.Tn + q0 + i] = m[i] + std::log(l[i]);
  }
}

// One (b, kv head, range of query tiles [qa, qe)) for every head of the group (the heads share
// the kv head's K and V in cache).
template <typename T, int MR, int NR>
QAFT_INLINE void forward_task(const Attn<T>& a, int64_t b, int64_t kh, int64_t qa, int64_t qe,
                              FwdBuffers<T>& w, T* out, T* lse) {
  for (int64_t g = 0; g < a.group(); ++g)
    for (int64_t qi = qa; qi < qe; ++qi) forward_item<T, MR, NR>(a, b, kh * a.group() + g, qi, w, out, lse);
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
  T *kt = w.kt.data(), *vt = w.vt.data(), *p = w.p.data(), *ds = w.ds.data();
  const int64_t ldq = a.H * a.Dqk, ldk = a.Hkv * a.Dqk, ldv = a.Hkv * a.Dv, ldo = a.H * a.Dv;
  for (int64_t k0 = 0; k0 < a.Tn; k0 += kBk) {
    const int64_t k1 = std::min(k0 + kBk, a.Tn), nk = k1 - k0;
    load_cols<T>([&](int64_t t) { return a.krow(b, t, kh); }, k0, nk, a.Dqk, kt);
    load_cols<T>([&](int64_t t) { return a.vrow(b, t, kh); }, k0, nk, a.Dv, vt);
    // K rows as the right operand of dQ += dS·K: in place when Dqk is a whole number of register
    // tiles, else a padded copy. Same rule for Q and dO below (which are also left operands, read
    // in whole register tiles of rows: copied at the end of the sequence).
    const T* kp = a.krow(b, k0, kh);
    int64_t ldkp = ldk;
    if (a.Dqk % NR != 0) {
      load_rows<T>([&](int64_t t) { return a.krow(b, t, kh); }, k0, nk, a.Dqk, w.kb.data(), a.Dqp);
      kp = w.kb.data(), ldkp = a.Dqp;
    }
    T* dk_tile = dk + ((b * a.Tn + k0) * a.Hkv + kh) * a.Dqk;
    T* dv_tile = dv + ((b * a.Tn + k0) * a.Hkv + kh) * a.Dv;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t h = kh * G + g;
      for (int64_t q0 = k0 / kBq * kBq; q0 < a.Tn; q0 += kBq) {
        const int64_t q1 = std::min(q0 + kBq, a.Tn), nq = q1 - q0;
        if (a.disjoint(b, q0, q1, k0, k1)) continue;
        const bool rows_ok = q0 + round_up(nq, MR) <= a.Tn;
        const T* qp = a.qrow(b, q0, h);
        int64_t ldqp = ldq;
        if (!rows_ok || a.Dqk % NR != 0) {
          load_rows<T>([&](int64_t t) { return a.qrow(b, t, h); }, q0, nq, a.Dqk, w.qb.data(), a.Dqp);
          qp = w.qb.data(), ldqp = a.Dqp;
        }
        const T* dop = dout + ((b * a.Tn + q0) * a.H + h) * a.Dv;
        int64_t lddo = ldo;
        if (!rows_ok || a.Dv % NR != 0) {
          load_rows<T>([&](int64_t t) { return dout + ((b * a.Tn + t) * a.H + h) * a.Dv; }, q0, nq, a.Dv,
                       w.dob.data(), a.Dvp);
          dop = w.dob.data(), lddo = a.Dvp;
        }
        // P = exp(S·scale − lse) (0 where masked); dP = dO·Vᵀ; dS = P ⊙ (dP − D).
        detail::tile_gemm<T, MR, NR, true>(nq, nk, a.Dqk, T(1), qp, ldqp, kt, kBk, p, kBk, false);
        detail::tile_gemm<T, MR, NR, true>(nq, nk, a.Dv, T(1), dop, lddo, vt, kBk, ds, kBk, false);
        for (int64_t i = 0; i < nq; ++i) {
          const T l = lse[(b * a.H + h) * a.Tn + q0 + i];
          const T Di = w.D[static_cast<size_t>(g * a.Tn + q0 + i)];
          T* pi = p + i * kBk;
          T* dsi = ds + i * kBk;
          mask_scale(a, b, q0 + i, k0, nk, pi);
          for (int64_t j = 0; j < nk; ++j) pi[j] = detail::vexp(pi[j] - l);  // exp(−inf) = 0
          for (int64_t j = 0; j < nk; ++j) dsi[j] = pi[j] * (dsi[j] - Di);
        }
        // dV += Pᵀ·dO;  dQ += scale·dS·K;  dK += scale·dSᵀ·Q.
        detail::tile_gemm<T, MR, NR, false>(nk, a.Dv, nq, T(1), p, kBk, dop, lddo, dv_tile, ldv, true);
        detail::tile_gemm<T, MR, NR, true>(nq, a.Dqk, nk, a.scale, ds, kBk, kp, ldkp,
                                           dq + ((b * a.Tn + q0) * a.H + h) * a.Dqk, ldq, true);
        detail::tile_gemm<T, MR, NR, false>(nk, a.Dqk, nq, a.scale, ds, kBk, qp, ldqp, dk_tile, ldk, true);
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
  QAFT_AVX512_KERNEL void forward_avx512(const Attn<T>& a, int64_t b, int64_t kh, int64_t qa,       \
                                         int64_t qe, FwdBuffers<T>& w, T* out, T* lse) {            \
    forward_task<T, AttnTiles<T>::kMr512, AttnTiles<T>::kNr512>(a, b, kh, qa, qe, w, out, lse);     \
  }                                                                                                 \
  void forward_portable(const Attn<T>& a, int64_t b, int64_t kh, int64_t qa, int64_t qe,            \
                        FwdBuffers<T>& w, T* out, T* lse) {                                         \
    forward_task<T, AttnTiles<T>::kMr, AttnTiles<T>::kNr>(a, b, kh, qa, qe, w, out, lse);           \
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
  return Attn<T>{q,     k,       v,         segment, B, Tn, H, Hkv, Dqk, Dv, scale, round_up(Dqk, 64), round_up(Dv, 64),
                 H * Dqk, Hkv * Dqk, Hkv * Dv, H * Dv,  0};
}

}  // namespace

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, const int32_t* segment, int64_t B,
                       int64_t Tn, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, T scale, T* out,
                       T* lse) {
  const Attn<T> a = make_attn(q, k, v, segment, B, Tn, H, Hkv, Dqk, Dv, scale, "attention_forward");
  const int64_t q_tiles = (Tn + kBq - 1) / kBq;
  // Tasks: (b, kv head, range of query tiles). Split the query tiles into `chunks` ranges of about
  // equal causal work (tile i costs ~ i + 1, so boundaries at q_tiles·sqrt(c / chunks)) only when
  // B·Hkv alone gives fewer than 4 tasks per thread; results do not depend on the split.
  const int64_t threads = omp_get_max_threads();
  const int64_t chunks = std::clamp<int64_t>((4 * threads + B * Hkv - 1) / std::max<int64_t>(B * Hkv, 1), 1,
                                             std::max<int64_t>(q_tiles, 1));
  std::vector<int64_t> bounds{0};
  for (int64_t c = 1; c <= chunks; ++c) {
    const auto e = static_cast<int64_t>(std::ceil(static_cast<double>(q_tiles) * std::sqrt(double(c) / double(chunks))));
    if (e > bounds.back()) bounds.push_back(std::min(e, q_tiles));
  }
  const int64_t ranges = static_cast<int64_t>(bounds.size()) - 1, tasks = B * Hkv * ranges;
  const bool avx512 = cpu_features().has_avx512_codecs();
#pragma omp parallel if (tasks > 1 && B * H * Tn * Tn * (Dqk + Dv) > kParallelWork)
  {
    FwdBuffers<T> w(a);
    // Heaviest ranges (the last query tiles) first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < tasks; ++it) {
      const int64_t r = ranges - 1 - it / (B * Hkv), bk = it % (B * Hkv);
      const int64_t qa = bounds[static_cast<size_t>(r)], qe = bounds[static_cast<size_t>(r) + 1];
      if (avx512)
        forward_avx512(a, bk / Hkv, bk % Hkv, qa, qe, w, out, lse);
      else
        forward_portable(a, bk / Hkv, bk % Hkv, qa, qe, w, out, lse);
    }
  }
}

void attention_forward_rows(std::span<const AttentionRows> seqs, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv,
                            float scale) {
  // Tasks: (sequence, kv head, query tile of kBq queries from the sequence's first query).
  struct Task {
    int64_t seq, kh, qi;
  };
  std::vector<Attn<float>> attn;
  std::vector<Task> tasks;
  int64_t work = 0;
  for (const AttentionRows& r : seqs) {
    QAFT_CHECK(r.q_begin >= 0 && r.q_begin <= r.Tn, "attention_forward_rows: queries from {} of {} positions",
               r.q_begin, r.Tn);
    Attn<float> a = make_attn<float>(r.q, r.k, r.v, nullptr, 1, r.Tn, H, Hkv, Dqk, Dv, scale, "attention_forward_rows");
    a.ldq = r.ldq, a.ldk = r.ldk, a.ldv = r.ldv, a.ldo = r.ldo, a.q_begin = r.q_begin;
    const auto s = static_cast<int64_t>(attn.size());
    attn.push_back(a);
    for (int64_t kh = 0; kh < Hkv; ++kh)
      for (int64_t qi = 0; qi * kBq < a.Tq(); ++qi) tasks.push_back({s, kh, qi});
    work += H * a.Tq() * r.Tn * (Dqk + Dv);
  }
  const auto n = static_cast<int64_t>(tasks.size());
  const bool avx512 = cpu_features().has_avx512_codecs();
#pragma omp parallel if (n > 1 && work > kParallelWork && !omp_in_parallel())
  {
    // Buffers sized for the widest call (every sequence shares H, Dqk, Dv).
    std::optional<FwdBuffers<float>> w;
    if (!attn.empty()) w.emplace(attn[0]);
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) {
      const Task& t = tasks[static_cast<size_t>(i)];
      const Attn<float>& a = attn[static_cast<size_t>(t.seq)];
      float* out = seqs[static_cast<size_t>(t.seq)].out;
      if (avx512) forward_avx512(a, 0, t.kh, t.qi, t.qi + 1, *w, out, nullptr);
      else forward_portable(a, 0, t.kh, t.qi, t.qi + 1, *w, out, nullptr);
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
