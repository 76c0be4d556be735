// RMSNorm forward/backward and rotary position embedding.
//   rmsnorm: one CTA per row (block reductions in a fixed tree); the weight gradient is reduced
//            in two fixed-order stages (row chunks -> partials [chunks, C] -> dw), so it is
//            deterministic without atomics.
//   rope:    one thread per (token, head, pair); the angle position·inv_freq, its cosine and sine
//            in float64 as on the CPU, the rotation in fp32 through dn::rope_rotate (uncontracted).
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

namespace qaft::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kDwChunkRows = 64;

__global__ void rmsnorm_forward_kernel(const float* __restrict__ x, const float* __restrict__ w, int64_t C, int64_t ld,
                                       float eps, float* __restrict__ y, float* __restrict__ rstd) {
  __shared__ float red[kWarp];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * ld;
  float acc = 0.0f;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) acc += xr[j] * xr[j];
  acc = block_sum(acc, red);
  const float rs = 1.0f / sqrtf(acc / static_cast<float>(C) + eps);
  float* yr = y + r * ld;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) yr[j] = w[j] * (xr[j] * rs);
  if (rstd && threadIdx.x == 0) rstd[r] = rs;
}

// dx = r·(w ⊙ dy) − r³/C · x · Σ(w ⊙ dy ⊙ x)
__global__ void rmsnorm_backward_dx_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                           const float* __restrict__ w, const float* __restrict__ rstd, int64_t C,
                                           int64_t ld, float* __restrict__ dx) {
  __shared__ float red[kWarp];
  const int64_t r = blockIdx.x;
  const float *dyr = dy + r * ld, *xr = x + r * ld;
  float acc = 0.0f;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) acc += w[j] * dyr[j] * xr[j];
  acc = block_sum(acc, red);
  const float rs = rstd[r];
  const float c2 = rs * rs * rs * acc / static_cast<float>(C);
  float* dxr = dx + r * ld;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) dxr[j] = rs * (w[j] * dyr[j]) - c2 * xr[j];
}

// partials[chunk, j] = Σ over the chunk's rows of dy·(x·rstd); grid (column blocks, chunks).
__global__ void rmsnorm_dw_partial_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                          const float* __restrict__ rstd, int64_t rows, int64_t C, int64_t ld,
                                          float* __restrict__ partials) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= C) return;
  const int64_t r0 = blockIdx.y * kDwChunkRows;
  const int64_t r1 = r0 + kDwChunkRows < rows ? r0 + kDwChunkRows : rows;
  float acc = 0.0f;
  for (int64_t r = r0; r < r1; ++r) acc += dy[r * ld + j] * (x[r * ld + j] * rstd[r]);
  partials[blockIdx.y * C + j] = acc;
}

__global__ void rmsnorm_dw_final_kernel(const float* __restrict__ partials, int64_t chunks, int64_t C,
                                        float* __restrict__ dw) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= C) return;
  float acc = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) acc += partials[c * C + j];
  dw[j] += acc;
}

__global__ void rope_kernel(float* __restrict__ x, int64_t N, int64_t heads, int64_t ld, int64_t hs, int64_t offset,
                            int64_t half, const int32_t* __restrict__ positions, const double* __restrict__ inv_freq,
                            bool half_split, bool inverse) {
  const int64_t total = N * heads * half;
  for (int64_t id = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; id < total;
       id += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = id % half, h = (id / half) % heads, n = id / (half * heads);
    const double a = static_cast<double>(positions[n]) * inv_freq[i];
    const float c = static_cast<float>(cos(a));
    const float s = (inverse ? -1.0f : 1.0f) * static_cast<float>(sin(a));
    float* p = x + n * ld + h * hs + offset;
    float* p0 = half_split ? p + i : p + 2 * i;
    float* p1 = half_split ? p + i + half : p + 2 * i + 1;
    float a0 = *p0, a1 = *p1;
    dn::rope_rotate(a0, a1, c, s);
    *p0 = a0;
    *p1 = a1;
  }
}

}  // namespace

namespace launch {

void rmsnorm_forward(const float* x, const float* w, int64_t rows, int64_t C, int64_t ld, float eps, float* y,
                     float* rstd, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_forward_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, w, C, ld, eps, y, rstd);
  QAFT_CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

void rmsnorm_backward_dx(const float* dy, const float* x, const float* w, const float* rstd, int64_t rows, int64_t C,
                         int64_t ld, float* dx, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_backward_dx_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(dy, x, w, rstd, C, ld, dx);
  QAFT_CUDA_CHECK_LAUNCH("rmsnorm_backward_dx_kernel");
}

int64_t rmsnorm_dw_chunks(int64_t rows) { return cdiv(rows > 0 ? rows : 1, kDwChunkRows); }

void rmsnorm_backward_dw(const float* dy, const float* x, const float* rstd, int64_t rows, int64_t C, int64_t ld,
                         float* partials, float* dw, cudaStream_t stream) {
  if (rows == 0) return;
  const int64_t chunks = rmsnorm_dw_chunks(rows);
  const dim3 grid(static_cast<unsigned>(cdiv(C, kThreads)), static_cast<unsigned>(chunks));
  rmsnorm_dw_partial_kernel<<<grid, kThreads, 0, stream>>>(dy, x, rstd, rows, C, ld, partials);
  QAFT_CUDA_CHECK_LAUNCH("rmsnorm_dw_partial_kernel");
  rmsnorm_dw_final_kernel<<<static_cast<unsigned>(cdiv(C, kThreads)), kThreads, 0, stream>>>(partials, chunks, C, dw);
  QAFT_CUDA_CHECK_LAUNCH("rmsnorm_dw_final_kernel");
}

void rope_apply(float* x, int64_t N, int64_t heads, int64_t ld, int64_t hs, int64_t offset, int64_t rot_dim,
                const int32_t* positions, const double* inv_freq, bool half_split, bool inverse, cudaStream_t stream) {
  const int64_t half = rot_dim / 2, total = N * heads * half;
  if (total == 0) return;
  rope_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(x, N, heads, ld, hs, offset, half, positions,
                                                                 inv_freq, half_split, inverse);
  QAFT_CUDA_CHECK_LAUNCH("rope_kernel");
}

}  // namespace launch
}  // namespace qaft::cuda
