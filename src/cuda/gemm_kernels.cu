// The own GEMM kernels: grouped expert GEMMs over the permuted MoE layout (fp32, and FP8 E4M3 with
// 1×128 activation / 128×128 weight scales, dequantized as they are loaded), the grouped weight
// gradient, and the scale-layout conversions the cuBLASLt FP8 path needs.
//
// One simple tiled design (64×64 output tile, k steps of 16, 256 threads × 4×4 outputs, fp32 FMA):
// correct for any shape and alignment, far from tensor-core speed (see docs/cuda.md). The grouped
// forward is ONE launch of a persistent grid over all (group, row tile, column tile) work items:
// each CTA reads the group sizes from the device (a tile prefix computed by a one-thread kernel),
// so no host synchronization and no per-group launches. The weight gradient is one launch over
// (group, N tile, K tile), each item reducing over its group's rows in a fixed order.
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

namespace qaft::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;
constexpr int kPad = 4;

// Element fetchers: (outer, inner) -> value, where outer indexes the 64 rows of the A tile or the
// 64 columns of the B tile, and inner the reduction dimension.
struct RowsF32 {  // p[outer·ld + inner]
  const float* p;
  int64_t ld;
  __device__ float operator()(int64_t o, int64_t k) const { return p[o * ld + k]; }
};
struct ColsF32 {  // p[inner·ld + outer]
  const float* p;
  int64_t ld;
  __device__ float operator()(int64_t o, int64_t k) const { return p[k * ld + o]; }
};
struct RowsFp8 {  // decode(codes[outer·ld + inner]) · scales[(outer / div)·sld + inner / 128]
  const uint8_t* codes;
  int64_t ld;
  const float* scales;
  int64_t sld;
  int64_t div;  // 1: one scale row per row (1×128); 128: 128×128 blocks
  __device__ float operator()(int64_t o, int64_t k) const {
    return dn::dequantize_element(codes[o * ld + k], scales[(o / div) * sld + k / 128], false);
  }
};

// Fills tile[kk][o] (o < 64, kk < 16) for outer [o0, o_end) and inner [k0, k_end), zero outside.
// kInnerFast: consecutive threads walk the inner dimension (row-major operands), else the outer.
template <bool kInnerFast, typename Fetch>
__device__ __forceinline__ void load_tile(const Fetch& f, int64_t o0, int64_t o_end, int64_t k0, int64_t k_end,
                                          float (*tile)[kBM + kPad]) {
#pragma unroll
  for (int q = 0; q < kBM * kBK / kThreads; ++q) {
    const int e = threadIdx.x + kThreads * q;
    const int o = kInnerFast ? e / kBK : e % kBM;
    const int kk = kInnerFast ? e % kBK : e / kBM;
    const int64_t go = o0 + o, gk = k0 + kk;
    tile[kk][o] = (go < o_end && gk < k_end) ? f(go, gk) : 0.0f;
  }
}

// acc[i][j] += Σ_k A(row i) · B(col j) for thread (ty, tx) = (tid / 16, tid % 16), rows ty + 16·i,
// columns tx + 16·j.
template <bool kAInnerFast, bool kBInnerFast, typename FA, typename FB>
__device__ __forceinline__ void tile_mma(const FA& fa, int64_t a0, int64_t a_end, const FB& fb, int64_t b0,
                                         int64_t b_end, int64_t k_end, float (&acc)[4][4]) {
  __shared__ float As[kBK][kBM + kPad];
  __shared__ float Bs[kBK][kBN + kPad];
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  for (int64_t k0 = 0; k0 < k_end; k0 += kBK) {
    load_tile<kAInnerFast>(fa, a0, a_end, k0, k_end, As);
    load_tile<kBInnerFast>(fb, b0, b_end, k0, k_end, Bs);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
}

// Work item `rt` (row tile) -> group, first row and end row. prefix [groups + 1] holds the running
// count of row tiles; offsets == nullptr means one dense group of dense_rows rows.
__device__ __forceinline__ void locate(const int64_t* offsets, const int32_t* prefix, int64_t groups,
                                       int64_t dense_rows, int64_t rt, int64_t& g, int64_t& r0, int64_t& r_end) {
  if (offsets == nullptr) {
    g = 0;
    r0 = rt * kBM;
    r_end = dense_rows;
    return;
  }
  int64_t lo = 0, hi = groups - 1;  // the last g with prefix[g] <= rt
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (prefix[mid] <= rt) lo = mid;
    else hi = mid - 1;
  }
  g = lo;
  r0 = offsets[g] + (rt - prefix[g]) * kBM;
  r_end = offsets[g + 1];
}

__device__ __forceinline__ void store_tile(const float (&acc)[4][4], int64_t r0, int64_t r_end, int64_t n0, int64_t N,
                                           float alpha, float beta, void* C, int64_t ldc, bool out_bf16) {
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = r0 + ty + 16 * i;
    if (r >= r_end) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = n0 + tx + 16 * j;
      if (c >= N) continue;
      if (out_bf16) {
        static_cast<uint16_t*>(C)[r * ldc + c] = dn::bf16_from_float(alpha * acc[i][j]);
      } else {
        float* dst = static_cast<float*>(C) + r * ldc + c;
        *dst = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *dst;  // beta = 0 never reads C
      }
    }
  }
}

// W per group: fp32 [N, K] (w_trans, read as columns of op(W) = Wᵀ) or [K, N]; FP8 [N, K] with scales.
struct WeightF32 {
  const float* w;
  int64_t stride;
  int64_t N, K;
  bool trans;
};
struct WeightFp8 {
  const uint8_t* w;
  int64_t stride;
  const float* scales;
  int64_t sstride;
  int64_t K;
};

template <bool kTrans>
__global__ void grouped_f32_kernel(int64_t groups, const int64_t* __restrict__ offsets,
                                   const int32_t* __restrict__ prefix, int64_t N, int64_t K, float alpha,
                                   const float* __restrict__ A, int64_t lda, WeightF32 W, float beta,
                                   float* __restrict__ C, int64_t ldc) {
  const int64_t col_tiles = cdiv(N, kBN);
  const int64_t items = static_cast<int64_t>(prefix[groups]) * col_tiles;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    int64_t g, r0, r_end;
    locate(offsets, prefix, groups, 0, item / col_tiles, g, r0, r_end);
    const int64_t n0 = (item % col_tiles) * kBN;
    float acc[4][4] = {};
    const float* wg = W.w + g * W.stride;
    if (kTrans)  // W_g [N, K]: column n of op(W) is row n
      tile_mma<true, true>(RowsF32{A, lda}, r0, r_end, RowsF32{wg, K}, n0, N, K, acc);
    else  // W_g [K, N]
      tile_mma<true, false>(RowsF32{A, lda}, r0, r_end, ColsF32{wg, N}, n0, N, K, acc);
    store_tile(acc, r0, r_end, n0, N, alpha, beta, C, ldc, false);
  }
}

__global__ void grouped_fp8_kernel(int64_t groups, const int64_t* __restrict__ offsets,
                                   const int32_t* __restrict__ prefix, int64_t dense_rows, int64_t N, int64_t K,
                                   float alpha, const uint8_t* __restrict__ a, int64_t lda,
                                   const float* __restrict__ a_scales, WeightFp8 W, float beta, void* C, int64_t ldc,
                                   bool out_bf16) {
  const int64_t col_tiles = cdiv(N, kBN);
  const int64_t ksc = cdiv(K, 128);
  const int64_t row_tiles = offsets ? static_cast<int64_t>(prefix[groups]) : cdiv(dense_rows, kBM);
  const int64_t items = row_tiles * col_tiles;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    int64_t g, r0, r_end;
    locate(offsets, prefix, groups, dense_rows, item / col_tiles, g, r0, r_end);
    const int64_t n0 = (item % col_tiles) * kBN;
    float acc[4][4] = {};
    const RowsFp8 fa{a, lda, a_scales, ksc, 1};
    const RowsFp8 fw{W.w + g * W.stride, K, W.scales + g * W.sstride, ksc, 128};
    tile_mma<true, true>(fa, r0, r_end, fw, n0, N, K, acc);
    store_tile(acc, r0, r_end, n0, N, alpha, beta, C, ldc, out_bf16);
  }
}

// dW_g [N, K] += dY[rows_g]ᵀ · X[rows_g]; grid (N tiles × K tiles, groups).
__global__ void grouped_weight_grad_kernel(const int64_t* __restrict__ offsets, int64_t N, int64_t K,
                                           const float* __restrict__ dY, int64_t ldy, const float* __restrict__ X,
                                           int64_t ldx, float* __restrict__ dW, int64_t w_stride) {
  const int64_t g = blockIdx.y;
  const int64_t k_tiles = cdiv(K, kBN);
  const int64_t n0 = (blockIdx.x / k_tiles) * kBM, c0 = (blockIdx.x % k_tiles) * kBN;
  const int64_t r0 = offsets[g], rows = offsets[g + 1] - r0;
  if (rows <= 0) return;
  float acc[4][4] = {};
  // A(i = n, k = row) = dY[row, n]; B(k = row, j = c) = X[row, c]: both read along the outer index.
  tile_mma<false, false>(ColsF32{dY + r0 * ldy, ldy}, n0, N, ColsF32{X + r0 * ldx, ldx}, c0, K, rows, acc);
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  float* dst = dW + g * w_stride;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t n = n0 + ty + 16 * i;
    if (n >= N) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = c0 + tx + 16 * j;
      if (c < K) dst[n * K + c] += acc[i][j];
    }
  }
}

__global__ void tile_prefix_kernel(const int64_t* __restrict__ offsets, int64_t groups, int32_t* __restrict__ prefix) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  int32_t acc = 0;
  prefix[0] = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t rows = offsets[g + 1] - offsets[g];
    acc += static_cast<int32_t>(rows > 0 ? cdiv(rows, kBM) : 0);
    prefix[g + 1] = acc;
  }
}

__global__ void act_scales_kernel(const float* __restrict__ src, int64_t M, int64_t kb, float* __restrict__ dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < M * kb;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = i / M, m = i % M;  // dst [kb, M], M contiguous
    dst[i] = src[m * kb + j];
  }
}

__global__ void weight_scales_kernel(const float* __restrict__ src, int64_t nb, int64_t kb, int64_t kb_ld,
                                     float* __restrict__ dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < nb * kb_ld;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / kb_ld, j = i % kb_ld;
    dst[i] = j < kb ? src[r * kb + j] : 0.0f;
  }
}

// A persistent grid: a few CTAs per SM, each looping over work items.
unsigned persistent_grid(int sm_count) { return static_cast<unsigned>((sm_count > 0 ? sm_count : 132) * 4); }

}  // namespace

namespace launch {

void grouped_tile_prefix(const int64_t* offsets, int64_t groups, int32_t* prefix, cudaStream_t stream) {
  tile_prefix_kernel<<<1, 1, 0, stream>>>(offsets, groups, prefix);
  QAFT_CUDA_CHECK_LAUNCH("tile_prefix_kernel");
}

void grouped_gemm_f32(bool w_trans, int64_t groups, const int64_t* offsets, const int32_t* prefix, int64_t N, int64_t K,
                      float alpha, const float* A, int64_t lda, const float* W, int64_t w_stride, float beta, float* C,
                      int64_t ldc, int sm_count, cudaStream_t stream) {
  const WeightF32 w{W, w_stride, N, K, w_trans};
  if (w_trans)
    grouped_f32_kernel<true><<<persistent_grid(sm_count), kThreads, 0, stream>>>(groups, offsets, prefix, N, K, alpha,
                                                                                A, lda, w, beta, C, ldc);
  else
    grouped_f32_kernel<false><<<persistent_grid(sm_count), kThreads, 0, stream>>>(groups, offsets, prefix, N, K,
                                                                                 alpha, A, lda, w, beta, C, ldc);
  QAFT_CUDA_CHECK_LAUNCH("grouped_f32_kernel");
}

void grouped_gemm_weight_grad_f32(int64_t groups, const int64_t* offsets, int64_t N, int64_t K, const float* dY,
                                  int64_t ldy, const float* X, int64_t ldx, float* dW, int64_t w_stride,
                                  cudaStream_t stream) {
  if (groups == 0 || N == 0 || K == 0) return;
  const dim3 grid(static_cast<unsigned>(cdiv(N, kBM) * cdiv(K, kBN)), static_cast<unsigned>(groups));
  grouped_weight_grad_kernel<<<grid, kThreads, 0, stream>>>(offsets, N, K, dY, ldy, X, ldx, dW, w_stride);
  QAFT_CUDA_CHECK_LAUNCH("grouped_weight_grad_kernel");
}

void grouped_gemm_fp8(int64_t groups, const int64_t* offsets, const int32_t* prefix, int64_t dense_rows, int64_t N,
                      int64_t K, float alpha, const uint8_t* a, int64_t lda, const float* a_scales, const uint8_t* w,
                      int64_t w_stride, const float* w_scales, int64_t ws_stride, float beta, void* C, int64_t ldc,
                      bool out_bf16, int sm_count, cudaStream_t stream) {
  const WeightFp8 wt{w, w_stride, w_scales, ws_stride, K};
  grouped_fp8_kernel<<<persistent_grid(sm_count), kThreads, 0, stream>>>(groups, offsets, prefix, dense_rows, N, K,
                                                                        alpha, a, lda, a_scales, wt, beta, C, ldc,
                                                                        out_bf16);
  QAFT_CUDA_CHECK_LAUNCH("grouped_fp8_kernel");
}

void relayout_act_scales(const float* src, int64_t M, int64_t kb, float* dst, cudaStream_t stream) {
  act_scales_kernel<<<grid_for(M * kb, kThreads), kThreads, 0, stream>>>(src, M, kb, dst);
  QAFT_CUDA_CHECK_LAUNCH("act_scales_kernel");
}

void relayout_weight_scales(const float* src, int64_t nb, int64_t kb, int64_t kb_ld, float* dst, cudaStream_t stream) {
  weight_scales_kernel<<<grid_for(nb * kb_ld, kThreads), kThreads, 0, stream>>>(src, nb, kb, kb_ld, dst);
  QAFT_CUDA_CHECK_LAUNCH("weight_scales_kernel");
}

}  // namespace launch
}  // namespace qaft::cuda
