// gemm: float through oneDNN's matmul (strides encode transposes and leading dimensions, alpha as
// output scale, beta as a sum post-op), tiny shapes and double through plain loops.
#include "kernels/ops.h"

#include "core/error.h"
#include "kernels/cpu/onednn.h"

#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace qaft {
namespace {

// Below this many multiply-adds a primitive (creation, cache lookup, threading) costs more than the
// work itself.
constexpr int64_t kTinyGemm = 32 * 1024;

void check_args(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                int64_t ldc) {
  QAFT_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative shape M={} N={} K={}", M, N, K);
  QAFT_CHECK(lda >= std::max<int64_t>(1, ta == Trans::kNo ? K : M),
             "gemm: lda={} too small for op(A) [{}, {}] (transposed: {})", lda, M, K, ta == Trans::kYes);
  QAFT_CHECK(ldb >= std::max<int64_t>(1, tb == Trans::kNo ? N : K),
             "gemm: ldb={} too small for op(B) [{}, {}] (transposed: {})", ldb, K, N, tb == Trans::kYes);
  QAFT_CHECK(ldc >= std::max<int64_t>(1, N), "gemm: ldc={} < N={}", ldc, N);
}

// C = beta · C, with beta = 0 never reading C (BLAS semantics: NaNs in C do not propagate).
template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  if (beta == T(1)) return;
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    if (beta == T(0))
      std::fill(c, c + N, T(0));
    else
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
}

// The loop used for tiny float shapes and as the double reference: B is packed into a contiguous
// [kc, nc] block (so that both transposes read it the same way), rows of C are parallel.
template <typename T>
void gemm_loops(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, bool parallel) {
  scale_c(M, N, beta, C, ldc);
  if (K == 0 || alpha == T(0)) return;
  constexpr int64_t kKc = 256, kNc = 512;
  const int64_t a_rs = ta == Trans::kNo ? lda : 1, a_cs = ta == Trans::kNo ? 1 : lda;
  const int64_t b_rs = tb == Trans::kNo ? ldb : 1, b_cs = tb == Trans::kNo ? 1 : ldb;
  std::vector<T> bp(static_cast<size_t>(std::min(K, kKc) * std::min(N, kNc)));
  for (int64_t j0 = 0; j0 < N; j0 += kNc) {
    const int64_t nc = std::min(kNc, N - j0);
    for (int64_t k0 = 0; k0 < K; k0 += kKc) {
      const int64_t kc = std::min(kKc, K - k0);
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t j = 0; j < nc; ++j)
          bp[static_cast<size_t>(k * nc + j)] = B[(k0 + k) * b_rs + (j0 + j) * b_cs];
#pragma omp parallel for schedule(static) if (parallel && M * nc * kc > (1 << 18))
      for (int64_t i = 0; i < M; ++i) {
        T* c = C + i * ldc + j0;
        for (int64_t k = 0; k < kc; ++k) {
          const T a = alpha * A[i * a_rs + (k0 + k) * a_cs];
          const T* b = bp.data() + k * nc;
          for (int64_t j = 0; j < nc; ++j) c[j] += a * b[j];
        }
      }
    }
  }
}

void gemm_onednn(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  using dnnl::memory;
  const memory::dims a_strides = ta == Trans::kNo ? memory::dims{lda, 1} : memory::dims{1, lda};
  const memory::dims b_strides = tb == Trans::kNo ? memory::dims{ldb, 1} : memory::dims{1, ldb};
  QAFT_DNNL_TRY("running a float matmul", {
    const dnnl::engine& eng = detail::dnnl_cpu_engine();
    const memory::desc a_md({M, K}, memory::data_type::f32, a_strides);
    const memory::desc b_md({K, N}, memory::data_type::f32, b_strides);
    const memory::desc c_md({M, N}, memory::data_type::f32, memory::dims{ldc, 1});
    dnnl::primitive_attr attr;
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta != 0.0f) {
      dnnl::post_ops po;
      po.append_sum(beta);
      attr.set_post_ops(po);
    }
    // oneDNN's primitive cache makes a repeated shape cost a cache lookup, not a JIT.
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, eng);
    const dnnl::matmul prim(pd);
    memory a_mem(a_md, eng, const_cast<float*>(A));
    memory b_mem(b_md, eng, const_cast<float*>(B));
    memory c_mem(c_md, eng, C);
    dnnl::stream& s = detail::dnnl_thread_stream();
    prim.execute(s, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
    s.wait();
  });
}

}  // namespace

template <typename T>
void gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  check_args(ta, tb, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (K > 0 && alpha != 0.0f && M * N * K >= kTinyGemm) {
      gemm_onednn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
  }
  gemm_loops(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, /*parallel=*/!omp_in_parallel());
}

template void gemm<float>(Trans, Trans, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(Trans, Trans, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace qaft
