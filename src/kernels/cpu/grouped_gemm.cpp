// Grouped GEMM (the MoE expert pass) and its weight gradient: one OpenMP parallel region over every
// (group, row tile, column tile) work item; each item packs its slice of the weight into NR-wide
// panels (a 16×16 register transpose on AVX-512 for the NT layout), reads the activations in place,
// and runs a register-blocked micro-kernel written as plain loops that g++ vectorizes.
//
// Two builds of the same code: one with an AVX-512 target attribute (MR×NR = 12×32 floats /
// 12×16 doubles: 24 zmm accumulators, the k loop is two vector loads, MR broadcasts and 2·MR FMAs),
// one for the portable x86-64-v2 baseline with a tile that fits 16 SSE registers. The choice is
// made per call from cpu_features(), so QAFT_CPU_ISA=scalar exercises the portable one.
//
// Every work item owns a disjoint block of C and computes it in a fixed order, so results do not
// depend on the thread count or on scheduling. Summation order differs from oneDNN's (both are
// fp32 with fp32 accumulation), hence "equal within fp32 rounding".
#include "kernels/ops.h"

#include "core/cpu_features.h"
#include "core/error.h"
#include "kernels/cpu/simd.h"

// GCC 12's vectorized code inside target-attribute functions trips -Wmaybe-uninitialized on the
// zero-initialized accumulator arrays (a known false positive, as in numerics/fp8_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace qaft {
namespace {

constexpr int64_t kKc = 128;  // reduction block
constexpr int64_t kMc = 192;  // rows per work item
constexpr int64_t kNc = 512;  // columns per work item (packed B block kKc × kNc = 256 KiB in L2)

// A strided 2-D operand: element (r, c) at p[r·rs + c·cs].
template <typename T>
struct View {
  const T* p;
  int64_t rs, cs;
};

// One work item: C[m, n] = beta·C + alpha · a[m, k] · b[k, n] (beta = 1 for accumulation).
// `a` is read in place: row-major (a_rows: cs = 1, the activations of grouped_gemm) or column-major
// (rs = 1, dYᵀ of the weight gradient); `b` is packed into NR-wide panels per kKc block.
template <typename T>
struct Job {
  View<T> a, b;
  bool a_rows;
  T* c;
  int64_t ldc;
  int64_t m, n, k;
  T alpha, beta;
};

// Packs src(outer, kk) for outer < rows, kk < kc into panels of P lanes:
// dst[(panel·kc + kk)·P + lane] = src(panel·P + lane, kk), zero past `rows`.
template <typename T, int P>
QAFT_INLINE void pack_portable(const T* src, int64_t s_outer, int64_t s_k, int64_t rows, int64_t kc,
                               T* dst) {
  for (int64_t p0 = 0; p0 < rows; p0 += P) {
    const int64_t lanes = std::min<int64_t>(P, rows - p0);
    T* d = dst + p0 * kc;
    const T* s = src + p0 * s_outer;
    if (s_outer == 1 && lanes == P) {
      for (int64_t kk = 0; kk < kc; ++kk)
        for (int l = 0; l < P; ++l) d[kk * P + l] = s[kk * s_k + l];
    } else {
      if (lanes < P)
        for (int64_t kk = 0; kk < kc; ++kk)
          for (int64_t l = lanes; l < P; ++l) d[kk * P + l] = T(0);
      for (int64_t l = 0; l < lanes; ++l)
        for (int64_t kk = 0; kk < kc; ++kk) d[kk * P + l] = s[l * s_outer + kk * s_k];
    }
  }
}

// The transposing case of pack() for float on AVX-512 (src(outer, kk) contiguous in kk, e.g. a
// weight W_g [N, K] read as op(W_g) = W_gᵀ): 16×16 blocks transposed in registers, so that the
// packing of the expert weights (read once per group) runs at vector speed instead of one scalar
// store per element. Rows past `rows` and k past `kc` load as zero.
QAFT_AVX512_KERNEL inline void transpose_pack16(const float* src, int64_t s_outer, int64_t rows,
                                                int64_t kc, float* dst, int64_t dst_stride) {
  const __mmask16 kmask = static_cast<__mmask16>(kc >= 16 ? 0xFFFF : (1u << kc) - 1);
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(kmask, src + i * s_outer) : _mm512_setzero_ps();
  // Stage 1: interleave pairs of rows (32-bit), stage 2: pairs of pairs (64-bit),
  // stages 3-4: 128-bit lanes across quads and octets.
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // Now r[4q + j] holds, in each 128-bit lane L, column (4L + j) of rows 4q..4q+3.
  for (int j = 0; j < 4; ++j) {
    t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);       // lanes 0,2 of rows 0-3 | 4-7
    t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);   // lanes 1,3
    t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
  }
  for (int j = 0; j < 4; ++j) {
    // columns j, 4+j, 8+j, 12+j
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
    r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
  }
  for (int64_t kk = 0; kk < std::min<int64_t>(kc, 16); ++kk) _mm512_storeu_ps(dst + kk * dst_stride, r[kk]);
}

template <int P>
QAFT_AVX512_KERNEL inline void pack_avx512(const float* src, int64_t s_outer, int64_t s_k, int64_t rows,
                                           int64_t kc, float* dst) {
  static_assert(P % 16 == 0);
  if (s_k != 1 || s_outer == 1) return pack_portable<float, P>(src, s_outer, s_k, rows, kc, dst);
  for (int64_t p0 = 0; p0 < rows; p0 += P)
    for (int64_t l0 = 0; l0 < P; l0 += 16) {
      const int64_t left = rows - p0 - l0;  // ≤ 0: a padding block of zeros, src is not read
      const float* s = left > 0 ? src + (p0 + l0) * s_outer : src;
      for (int64_t k0 = 0; k0 < kc; k0 += 16)
        transpose_pack16(s + k0, s_outer, std::max<int64_t>(0, left), kc - k0, dst + p0 * kc + k0 * P + l0, P);
    }
}

// c[mr, nr] += alpha · Σ_k a(i, k) · b[k, j]; b is a packed panel, a is read in place (row-major
// with row stride lda when kRowA, else column-major with column stride lda). The MR×NR accumulator
// lives in registers: the compiler unrolls i and vectorizes j.
template <typename T, int MR, int NR, bool kRowA>
QAFT_INLINE void micro(int64_t kc, const T* __restrict a, int64_t lda, const T* __restrict b,
                       T* __restrict c, int64_t ldc, T alpha, int64_t mr, int64_t nr) {
  T acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const T* bk = b + k * NR;
    for (int i = 0; i < MR; ++i) {
      const T aik = kRowA ? a[i * lda + k] : a[k * lda + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += aik * bk[j];
    }
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) c[i * ldc + j] += alpha * acc[i][j];
  } else {
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t j = 0; j < nr; ++j) c[i * ldc + j] += alpha * acc[i][j];
  }
}

// `ascratch` holds MR × kKc: an edge tile's rows of a, zero-padded, so that micro() never reads
// past the operand.
template <typename T, int MR, int NR, bool kAvx512>
QAFT_INLINE void run_job(const Job<T>& job, T* bbuf, T* ascratch) {
  for (int64_t i = 0; i < job.m; ++i) {
    T* c = job.c + i * job.ldc;
    if (job.beta == T(0))
      std::fill(c, c + job.n, T(0));
    else if (job.beta != T(1))
      for (int64_t j = 0; j < job.n; ++j) c[j] *= job.beta;
  }
  const bool row_a = job.a_rows;
  for (int64_t k0 = 0; k0 < job.k; k0 += kKc) {
    const int64_t kc = std::min(kKc, job.k - k0);
    if constexpr (kAvx512 && std::is_same_v<T, float>)
      pack_avx512<NR>(job.b.p + k0 * job.b.rs, job.b.cs, job.b.rs, job.n, kc, bbuf);
    else
      pack_portable<T, NR>(job.b.p + k0 * job.b.rs, job.b.cs, job.b.rs, job.n, kc, bbuf);
    for (int64_t i0 = 0; i0 < job.m; i0 += MR) {
      const int64_t mr = std::min<int64_t>(MR, job.m - i0);
      const T* a = job.a.p + i0 * job.a.rs + k0 * job.a.cs;
      int64_t lda = row_a ? job.a.rs : job.a.cs;
      bool row = row_a;
      if (mr < MR) {  // edge tile: copy to [MR, kc], zero rows past mr
        for (int64_t i = 0; i < MR; ++i)
          for (int64_t k = 0; k < kc; ++k)
            ascratch[i * kc + k] = i < mr ? a[i * job.a.rs + k * job.a.cs] : T(0);
        a = ascratch, lda = kc, row = true;
      }
      for (int64_t j0 = 0; j0 < job.n; j0 += NR) {
        const int64_t nr = std::min<int64_t>(NR, job.n - j0);
        T* c = job.c + i0 * job.ldc + j0;
        if (row)
          micro<T, MR, NR, true>(kc, a, lda, bbuf + j0 * kc, c, job.ldc, job.alpha, mr, nr);
        else
          micro<T, MR, NR, false>(kc, a, lda, bbuf + j0 * kc, c, job.ldc, job.alpha, mr, nr);
      }
    }
  }
}

// Tile geometry per ISA and type: 24 zmm accumulators (AVX-512) or 8 xmm accumulators (SSE).
template <typename T>
struct Tiles;
template <>
struct Tiles<float> {
  static constexpr int kMr512 = 12, kNr512 = 32, kMr = 4, kNr = 8;
};
template <>
struct Tiles<double> {
  static constexpr int kMr512 = 12, kNr512 = 16, kMr = 4, kNr = 4;
};
constexpr int kMaxMr = 12, kMaxNr = 32;

QAFT_AVX512_KERNEL void run_job_avx512(const Job<float>& j, float* bbuf, float* ascratch) {
  run_job<float, Tiles<float>::kMr512, Tiles<float>::kNr512, true>(j, bbuf, ascratch);
}
QAFT_AVX512_KERNEL void run_job_avx512(const Job<double>& j, double* bbuf, double* ascratch) {
  run_job<double, Tiles<double>::kMr512, Tiles<double>::kNr512, true>(j, bbuf, ascratch);
}
template <typename T>
void run_job_portable(const Job<T>& j, T* bbuf, T* ascratch) {
  run_job<T, Tiles<T>::kMr, Tiles<T>::kNr, false>(j, bbuf, ascratch);
}

struct Item {
  int64_t g, m0, m1, n0, n1;
};

// Splits [0, len) into near-equal tiles of at most `max_tile`, each a multiple of `align` except the
// last, and calls f(begin, end) for each.
template <typename F>
void split(int64_t len, int64_t max_tile, int64_t align, F&& f) {
  if (len <= 0) return;
  const int64_t tiles = (len + max_tile - 1) / max_tile;
  int64_t tile = (len + tiles - 1) / tiles;
  tile = (tile + align - 1) / align * align;
  for (int64_t b = 0; b < len; b += tile) f(b, std::min(len, b + tile));
}

// Runs every item through make_job in one parallel region with per-thread packing buffers.
// `work`: multiply-adds in all; small problems stay on the calling thread.
template <typename T, typename MakeJob>
void run_items(const std::vector<Item>& items, int64_t work, MakeJob&& make_job) {
  if (items.empty()) return;
  const bool avx512 = cpu_features().has_avx512_codecs();
  // Packed B block: up to kNc columns rounded up to the panel width, times kKc.
  const size_t bbuf_n = static_cast<size_t>((kNc + kMaxNr) * kKc), ascratch_n = static_cast<size_t>(kMaxMr * kKc);
  const int64_t n_items = static_cast<int64_t>(items.size());
#pragma omp parallel if (n_items > 1 && work > (1 << 18) && !omp_in_parallel())
  {
    std::vector<T> bbuf(bbuf_n), ascratch(ascratch_n);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < n_items; ++w) {
      const Job<T> job = make_job(items[static_cast<size_t>(w)]);
      if (avx512)
        run_job_avx512(job, bbuf.data(), ascratch.data());
      else
        run_job_portable(job, bbuf.data(), ascratch.data());
    }
  }
}

void check_offsets(int64_t groups, const int64_t* offsets) {
  QAFT_CHECK(groups >= 0, "grouped gemm: groups={} < 0", groups);
  QAFT_CHECK(groups == 0 || offsets != nullptr, "grouped gemm: offsets is null");
  if (groups > 0) QAFT_CHECK(offsets[0] == 0, "grouped gemm: offsets[0]={} (must be 0)", offsets[0]);
  for (int64_t g = 0; g < groups; ++g)
    QAFT_CHECK(offsets[g + 1] >= offsets[g], "grouped gemm: offsets decrease at group {} ({} > {})", g,
               offsets[g], offsets[g + 1]);
}

}  // namespace

template <typename T>
void grouped_gemm(Trans tb, int64_t groups, const int64_t* offsets, int64_t N, int64_t K, T alpha,
                  const T* A, int64_t lda, const T* W, int64_t w_stride, T beta, T* C, int64_t ldc) {
  check_offsets(groups, offsets);
  QAFT_CHECK(N >= 0 && K >= 0, "grouped_gemm: negative N={} or K={}", N, K);
  QAFT_CHECK(lda >= K && ldc >= N, "grouped_gemm: lda={} < K={} or ldc={} < N={}", lda, K, ldc, N);
  QAFT_CHECK(w_stride >= N * K, "grouped_gemm: w_stride={} < N·K={}", w_stride, N * K);
  std::vector<Item> items;
  for (int64_t g = 0; g < groups; ++g)
    split(offsets[g + 1] - offsets[g], kMc, kMaxMr, [&](int64_t m0, int64_t m1) {
      split(N, kNc, 32, [&](int64_t n0, int64_t n1) { items.push_back({g, m0, m1, n0, n1}); });
    });
  // op(W_g)(k, n): tb = kYes reads W_g[n·K + k] (stored [N, K]); kNo reads W_g[k·N + n].
  const int64_t b_rs = tb == Trans::kYes ? 1 : N, b_cs = tb == Trans::kYes ? K : 1;
  run_items<T>(items, (groups > 0 ? offsets[groups] : 0) * N * K, [&](const Item& it) {
    const int64_t row = offsets[it.g] + it.m0;
    const T* wg = W + it.g * w_stride;
    return Job<T>{{A + row * lda, lda, 1},
                  {wg + it.n0 * b_cs, b_rs, b_cs},
                  true,
                  C + row * ldc + it.n0,
                  ldc,
                  it.m1 - it.m0,
                  it.n1 - it.n0,
                  K,
                  alpha,
                  beta};
  });
}

template <typename T>
void grouped_gemm_weight_grad(int64_t groups, const int64_t* offsets, int64_t N, int64_t K,
                              const T* dY, int64_t ldy, const T* X, int64_t ldx, T* dW,
                              int64_t w_stride) {
  check_offsets(groups, offsets);
  QAFT_CHECK(N >= 0 && K >= 0, "grouped_gemm_weight_grad: negative N={} or K={}", N, K);
  QAFT_CHECK(ldy >= N && ldx >= K, "grouped_gemm_weight_grad: ldy={} < N={} or ldx={} < K={}", ldy, N,
             ldx, K);
  QAFT_CHECK(w_stride >= N * K, "grouped_gemm_weight_grad: w_stride={} < N·K={}", w_stride, N * K);
  std::vector<Item> items;
  for (int64_t g = 0; g < groups; ++g) {
    if (offsets[g + 1] == offsets[g]) continue;  // dW_g += 0
    split(N, kMc, kMaxMr, [&](int64_t m0, int64_t m1) {
      split(K, kNc, 32, [&](int64_t n0, int64_t n1) { items.push_back({g, m0, m1, n0, n1}); });
    });
  }
  // dW_g[n, k] += Σ_r dY[r, n] · X[r, k]: a = dYᵀ (element (n, r) at dY[r·ldy + n]), b = X.
  run_items<T>(items, (groups > 0 ? offsets[groups] : 0) * N * K, [&](const Item& it) {
    const int64_t row = offsets[it.g];
    return Job<T>{{dY + row * ldy + it.m0, 1, ldy},
                  {X + row * ldx + it.n0, ldx, 1},
                  false,
                  dW + it.g * w_stride + it.m0 * K + it.n0,
                  K,
                  it.m1 - it.m0,
                  it.n1 - it.n0,
                  offsets[it.g + 1] - row,
                  T(1),
                  T(1)};
  });
}

#define QAFT_INSTANTIATE(T)                                                                         \
  template void grouped_gemm<T>(Trans, int64_t, const int64_t*, int64_t, int64_t, T, const T*,      \
                                int64_t, const T*, int64_t, T, T*, int64_t);                        \
  template void grouped_gemm_weight_grad<T>(int64_t, const int64_t*, int64_t, int64_t, const T*,    \
                                            int64_t, const T*, int64_t, T*, int64_t);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)

}  // namespace qaft
