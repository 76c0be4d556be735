// GEMMs of the CUDA backend: cuBLASLt for fp32, BF16 and FP8 block-scaled GEMMs; the own kernels of
// gemm_kernels.cu for the grouped expert GEMMs (and as the FP8 fallback).
//
// Row-major through column-major cuBLASLt: a row-major C [M, N] is a column-major Cᵀ [N, M] with the
// same leading dimension, and Cᵀ = op(B)ᵀ · op(A)ᵀ, so every call passes (B, A) as cuBLASLt's (A, B)
// with m = N, n = M. For the FP8 linear D = X · Wᵀ this gives cuBLASLt A = W (transposed, K-major),
// B = X (not transposed, K-major): the "TN" layout FP8 on Hopper requires.
//
// FP8 block scaling (cuBLAS ≥ 12.9, sm_90): A (= W) uses CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F,
// B (= X) CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F. The scale layouts, as PyTorch's _scaled_mm hands
// them to cuBLASLt (aten/src/ATen/native/cuda/ScaledBlas.cpp, is_blockwise_1x128_scaling and
// is_blockwise_128x128_scaling): activations [M, K/128] with M contiguous (stride (1, M)); weights
// [N/128, K/128] row-major with the K-block dimension padded to a multiple of 4. Our ScaleRecipe
// layouts ([M, K/128] and [N/128, K/128], row-major, unpadded) are converted into scratch by two
// small kernels. UNVERIFIED on a GPU (no device in this project's CI): docs/cuda.md lists it.
#include "core/error.h"
#include "cuda/launch.h"
#include "cuda/ops.h"
#include "cuda/runtime.h"

#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <string>

namespace qaft::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLASLt workspace (split-K etc.)

cublasLtHandle_t lt() { return static_cast<cublasLtHandle_t>(cublaslt_handle()); }

// RAII holders of the cuBLASLt descriptors.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  MatmulDesc(cublasComputeType_t compute, cudaDataType_t scale) {
    QAFT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d, compute, scale));
  }
  ~MatmulDesc() { cublasLtMatmulDescDestroy(d); }
  template <typename V>
  void set(cublasLtMatmulDescAttributes_t attr, const V& value) {
    QAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof(V)));
  }
};
struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  Layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
    QAFT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(l); }
};
// The largest power of two (<= 256) dividing a pointer: cuBLASLt assumes 256-byte aligned operands
// unless told otherwise, and offsets into a buffer (a vocabulary chunk, a parameter slice) are not.
uint32_t alignment(const void* ptr) {
  const auto a = reinterpret_cast<uintptr_t>(ptr);
  uint32_t al = 1;
  while (al < 256 && a % (2 * al) == 0) al *= 2;
  return al;
}

struct Preference {
  cublasLtMatmulPreference_t p = nullptr;
  Preference(const void* A, const void* B, const void* D) {
    QAFT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p));
    QAFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &kWorkspaceBytes, sizeof kWorkspaceBytes));
    const uint32_t aa = alignment(A), ab = alignment(B), ad = alignment(D);
    QAFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa));
    QAFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab));
    QAFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad));
    QAFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad));
  }
  ~Preference() { cublasLtMatmulPreferenceDestroy(p); }
};

cublasOperation_t op(Trans t) { return t == Trans::kNo ? CUBLAS_OP_N : CUBLAS_OP_T; }

// D = alpha · op(A) · op(B) + beta · C in cuBLASLt's column-major terms, with C = D.
// a_type/b_type/d_type: element types; m, n, k: op(A) is m×k, op(B) k×n.
void lt_matmul(MatmulDesc& desc, cublasOperation_t opa, cublasOperation_t opb, int64_t m, int64_t n, int64_t k,
               cudaDataType_t a_type, const void* A, int64_t lda, cudaDataType_t b_type, const void* B, int64_t ldb,
               cudaDataType_t d_type, void* D, int64_t ldd, float alpha, float beta, const char* what) {
  desc.set(CUBLASLT_MATMUL_DESC_TRANSA, opa);
  desc.set(CUBLASLT_MATMUL_DESC_TRANSB, opb);
  const Layout la(a_type, opa == CUBLAS_OP_N ? m : k, opa == CUBLAS_OP_N ? k : m, lda);
  const Layout lb(b_type, opb == CUBLAS_OP_N ? k : n, opb == CUBLAS_OP_N ? n : k, ldb);
  const Layout ld(d_type, m, n, ldd);
  const Preference pref(A, B, D);
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  QAFT_CUBLAS_CHECK(
      cublasLtMatmulAlgoGetHeuristic(lt(), desc.d, la.l, lb.l, ld.l, ld.l, pref.p, 1, &heuristic, &found));
  QAFT_CHECK_HINT(found > 0, ErrorKind::kUnsupported,
                  "check shapes/alignment (16-byte aligned pointers and leading dimensions) and the cuBLAS version",
                  "{}: cuBLASLt has no algorithm for m={} n={} k={} (lda={} ldb={} ldd={})", what, m, n, k, lda, ldb,
                  ldd);
  void* workspace = scratch(Scratch::kCublasLt, kWorkspaceBytes);
  QAFT_CUBLAS_CHECK(cublasLtMatmul(lt(), desc.d, &alpha, A, la.l, B, lb.l, &beta, D, ld.l, D, ld.l, &heuristic.algo,
                                   workspace, kWorkspaceBytes, current_stream()));
}

void check_gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc,
                const char* fn) {
  QAFT_CHECK(M >= 0 && N >= 0 && K >= 0, "{}: negative shape M={} N={} K={}", fn, M, N, K);
  QAFT_CHECK(lda >= std::max<int64_t>(1, ta == Trans::kNo ? K : M), "{}: lda={} too small", fn, lda);
  QAFT_CHECK(ldb >= std::max<int64_t>(1, tb == Trans::kNo ? N : K), "{}: ldb={} too small", fn, ldb);
  QAFT_CHECK(ldc >= std::max<int64_t>(1, N), "{}: ldc={} < N={}", fn, ldc, N);
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// C = beta · C for K = 0 (cuBLASLt wants k >= 1).
void scale_only(int64_t M, int64_t N, float beta, void* C, int64_t ldc, GemmOut out) {
  if (M == 0 || N == 0 || beta == 1.0f) return;
  QAFT_CHECK_HINT(out == GemmOut::kF32 && (beta == 0.0f || ldc == N), ErrorKind::kUnsupported, "",
                  "gemm with K = 0: only fp32 outputs with beta = 0 or dense rows are supported");
  if (beta == 0.0f) {
    QAFT_CUDA_CHECK(cudaMemset2DAsync(C, static_cast<size_t>(ldc) * sizeof(float), 0,
                                      static_cast<size_t>(N) * sizeof(float), static_cast<size_t>(M),
                                      current_stream()));
  } else {
    launch::scale_f32(static_cast<float*>(C), M * N, beta, current_stream());
  }
}

}  // namespace

void gemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  require_cuda("cuda::gemm");
  check_gemm(ta, tb, M, N, K, lda, ldb, ldc, "cuda::gemm");
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, beta, C, ldc, GemmOut::kF32);
  MatmulDesc desc(CUBLAS_COMPUTE_32F, CUDA_R_32F);  // true fp32: no TF32
  lt_matmul(desc, op(tb), op(ta), N, M, K, CUDA_R_32F, B, ldb, CUDA_R_32F, A, lda, CUDA_R_32F, C, ldc, alpha, beta,
            "cuda::gemm");
}

void gemm_bf16(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
               const uint16_t* B, int64_t ldb, float beta, void* C, int64_t ldc, GemmOut out) {
  require_cuda("cuda::gemm_bf16");
  check_gemm(ta, tb, M, N, K, lda, ldb, ldc, "cuda::gemm_bf16");
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, beta, C, ldc, out);
  MatmulDesc desc(CUBLAS_COMPUTE_32F, CUDA_R_32F);
  lt_matmul(desc, op(tb), op(ta), N, M, K, CUDA_R_16BF, B, ldb, CUDA_R_16BF, A, lda,
            out == GemmOut::kF32 ? CUDA_R_32F : CUDA_R_16BF, C, ldc, alpha, beta, "cuda::gemm_bf16");
}

void fp8_gemm_1x128_128x128_nt(int64_t M, int64_t N, int64_t K, const uint8_t* a, const float* a_scales,
                               const uint8_t* w, const float* w_scales, void* d, int64_t ldd, GemmOut out,
                               Fp8GemmBackend backend) {
  require_cuda("cuda::fp8_gemm_1x128_128x128_nt");
  QAFT_CHECK(M >= 0 && N >= 0 && K >= 0, "fp8_gemm: negative shape M={} N={} K={}", M, N, K);
  QAFT_CHECK(ldd >= std::max<int64_t>(1, N), "fp8_gemm: ldd={} < N={}", ldd, N);
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, 0.0f, d, ldd, out);
  // Which path: cuBLASLt needs the library/device support and its alignment rules.
  std::string why;
  bool lt_ok = cublaslt_block_scaling_supported(&why);
  const size_t out_bytes = out == GemmOut::kF32 ? 4 : 2;
  if (lt_ok && !(M % 4 == 0 && N % 16 == 0 && K % 16 == 0 && (static_cast<size_t>(ldd) * out_bytes) % 16 == 0)) {
    lt_ok = false;
    why = fmt::format("shape M={} N={} K={} ldd={}: the cuBLASLt FP8 path needs M % 4 == 0, N % 16 == 0, "
                      "K % 16 == 0 and 16-byte aligned output rows", M, N, K, ldd);
  }
  if (backend == Fp8GemmBackend::kCublasLt)
    QAFT_CHECK_HINT(lt_ok, ErrorKind::kUnsupported, "use Fp8GemmBackend::kOwn (or kAuto) for this case",
                    "fp8_gemm_1x128_128x128_nt: cuBLASLt block-scaled FP8 GEMM unavailable: {}", why);
  if (backend == Fp8GemmBackend::kOwn || !lt_ok) {
    launch::grouped_gemm_fp8(1, nullptr, nullptr, M, N, K, 1.0f, a, K, a_scales, w, 0, w_scales, 0, 0.0f, d, ldd,
                             out == GemmOut::kBF16, cuda_status().sm_count, current_stream());
    return;
  }
#if CUBLAS_VERSION >= 120900
  // Scales into cuBLASLt's layouts (see the file comment).
  const int64_t kb = cdiv(K, 128), nb = cdiv(N, 128), kb_ld = cdiv(kb, 4) * 4;
  auto* act_s = static_cast<float*>(scratch(Scratch::kGemmScales, sizeof(float) * static_cast<size_t>(M * kb + nb * kb_ld)));
  float* w_s = act_s + M * kb;
  launch::relayout_act_scales(a_scales, M, kb, act_s, current_stream());
  launch::relayout_weight_scales(w_scales, nb, kb, kb_ld, w_s, current_stream());
  MatmulDesc desc(CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const int32_t a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  desc.set(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, a_mode);
  desc.set(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, b_mode);
  const void* a_scale_ptr = w_s;
  const void* b_scale_ptr = act_s;
  desc.set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, a_scale_ptr);
  desc.set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, b_scale_ptr);
  lt_matmul(desc, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, CUDA_R_8F_E4M3, w, K, CUDA_R_8F_E4M3, a, K,
            out == GemmOut::kF32 ? CUDA_R_32F : CUDA_R_16BF, d, ldd, 1.0f, 0.0f, "cuda::fp8_gemm_1x128_128x128_nt");
#else
  QAFT_FAIL(ErrorKind::kUnsupported, "rebuild against CUDA >= 12.9", "fp8_gemm: built with cuBLAS {} (< 12.9)",
            CUBLAS_VERSION);
#endif
}

namespace {

void check_groups(int64_t groups, const int64_t* offsets, const char* fn) {
  QAFT_CHECK(groups >= 0, "{}: groups={} < 0", fn, groups);
  QAFT_CHECK(groups == 0 || offsets != nullptr, "{}: offsets is null", fn);
  QAFT_CHECK(groups < (int64_t{1} << 31), "{}: groups={} too many", fn, groups);
}

int32_t* tile_prefix(int64_t groups, const int64_t* offsets) {
  auto* prefix =
      static_cast<int32_t*>(scratch(Scratch::kGrouped, sizeof(int32_t) * static_cast<size_t>(groups + 1)));
  launch::grouped_tile_prefix(offsets, groups, prefix, current_stream());
  return prefix;
}

}  // namespace

void grouped_gemm(Trans tb, int64_t groups, const int64_t* offsets, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* W, int64_t w_stride, float beta, float* C, int64_t ldc) {
  require_cuda("cuda::grouped_gemm");
  check_groups(groups, offsets, "grouped_gemm");
  QAFT_CHECK(N >= 0 && K >= 0, "grouped_gemm: negative N={} or K={}", N, K);
  QAFT_CHECK(lda >= K && ldc >= N, "grouped_gemm: lda={} < K={} or ldc={} < N={}", lda, K, ldc, N);
  QAFT_CHECK(w_stride >= N * K, "grouped_gemm: w_stride={} < N·K={}", w_stride, N * K);
  if (groups == 0 || N == 0) return;
  const int32_t* prefix = tile_prefix(groups, offsets);
  launch::grouped_gemm_f32(tb == Trans::kYes, groups, offsets, prefix, N, K, alpha, A, lda, W, w_stride, beta, C, ldc,
                           cuda_status().sm_count, current_stream());
}

void grouped_gemm_weight_grad(int64_t groups, const int64_t* offsets, int64_t N, int64_t K, const float* dY,
                              int64_t ldy, const float* X, int64_t ldx, float* dW, int64_t w_stride) {
  require_cuda("cuda::grouped_gemm_weight_grad");
  check_groups(groups, offsets, "grouped_gemm_weight_grad");
  QAFT_CHECK(N >= 0 && K >= 0, "grouped_gemm_weight_grad: negative N={} or K={}", N, K);
  QAFT_CHECK(ldy >= N && ldx >= K, "grouped_gemm_weight_grad: ldy={} < N={} or ldx={} < K={}", ldy, N, ldx, K);
  QAFT_CHECK(w_stride >= N * K, "grouped_gemm_weight_grad: w_stride={} < N·K={}", w_stride, N * K);
  QAFT_CHECK(groups <= 65535, "grouped_gemm_weight_grad: groups={} > 65535 (grid.y)", groups);
  launch::grouped_gemm_weight_grad_f32(groups, offsets, N, K, dY, ldy, X, ldx, dW, w_stride, current_stream());
}

void grouped_gemm_fp8_1x128_128x128_nt(int64_t groups, const int64_t* offsets, int64_t N, int64_t K, float alpha,
                                       const uint8_t* a, int64_t lda, const float* a_scales, const uint8_t* w,
                                       int64_t w_stride, const float* w_scales, int64_t ws_stride, float beta, float* C,
                                       int64_t ldc) {
  require_cuda("cuda::grouped_gemm_fp8_1x128_128x128_nt");
  check_groups(groups, offsets, "grouped_gemm_fp8");
  QAFT_CHECK(N >= 0 && K >= 0, "grouped_gemm_fp8: negative N={} or K={}", N, K);
  QAFT_CHECK(lda >= K && ldc >= N, "grouped_gemm_fp8: lda={} < K={} or ldc={} < N={}", lda, K, ldc, N);
  QAFT_CHECK(w_stride >= N * K && ws_stride >= cdiv(N, 128) * cdiv(K, 128),
             "grouped_gemm_fp8: w_stride={} or ws_stride={} too small for [{}, {}]", w_stride, ws_stride, N, K);
  if (groups == 0 || N == 0) return;
  const int32_t* prefix = tile_prefix(groups, offsets);
  launch::grouped_gemm_fp8(groups, offsets, prefix, 0, N, K, alpha, a, lda, a_scales, w, w_stride, w_scales, ws_stride,
                           beta, C, ldc, false, cuda_status().sm_count, current_stream());
}

}  // namespace qaft::cuda
