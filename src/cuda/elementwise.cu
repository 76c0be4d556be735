// Elementwise ops: SwiGLU forward/backward, the AdamW update (fp32 or bf16 moments, bit-identical
// to optim/adamw.cpp through dn::adamw_element_*), and the gradient norm (float64 partial sums over
// fixed ranges, then one fixed-order pass: deterministic).
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

namespace qaft::cuda {
namespace {

constexpr int kThreads = 256;

#define QAFT_GRID_STRIDE(i, n)                                                                   \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n);         \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void swiglu_forward_kernel(const float* __restrict__ g, const float* __restrict__ u, int64_t n,
                                      float* __restrict__ h) {
  QAFT_GRID_STRIDE(i, n) {
    const float s = 1.0f / (1.0f + expf(-g[i]));
    h[i] = g[i] * s * u[i];
  }
}

__global__ void swiglu_backward_kernel(const float* __restrict__ dh, const float* __restrict__ g,
                                       const float* __restrict__ u, int64_t n, float* __restrict__ dg,
                                       float* __restrict__ du) {
  QAFT_GRID_STRIDE(i, n) {
    const float gi = g[i], ui = u[i], d = dh[i];
    const float s = 1.0f / (1.0f + expf(-gi));
    dg[i] = d * ui * (s * (1.0f + gi * (1.0f - s)));  // d silu/dg = σ(g)·(1 + g·(1 − σ(g)))
    du[i] = d * (gi * s);
  }
}

__device__ __forceinline__ dn::AdamWScalars scalars(const launch::AdamWArgs& a) {
  return {a.decay_factor, a.beta1, a.one_minus_beta1, a.beta2, a.one_minus_beta2, a.step_size, a.bc2_sqrt, a.eps};
}

__global__ void adamw_f32_kernel(launch::AdamWArgs a, float* __restrict__ p, const float* __restrict__ g,
                                 float* __restrict__ m, float* __restrict__ v, const uint8_t* __restrict__ mask,
                                 int64_t n) {
  const dn::AdamWScalars s = scalars(a);
  QAFT_GRID_STRIDE(i, n) {
    float pi = p[i], mi = m[i], vi = v[i];
    dn::adamw_element_f32(pi, g[i], mi, vi, mask == nullptr || mask[i] != 0, s);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

__global__ void adamw_bf16_kernel(launch::AdamWArgs a, float* __restrict__ p, const float* __restrict__ g,
                                  uint16_t* __restrict__ m, uint16_t* __restrict__ v, const uint8_t* __restrict__ mask,
                                  int64_t n) {
  const dn::AdamWScalars s = scalars(a);
  QAFT_GRID_STRIDE(i, n) {
    float pi = p[i];
    uint16_t mi = m[i], vi = v[i];
    dn::adamw_element_bf16(pi, g[i], mi, vi, mask == nullptr || mask[i] != 0, s);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

// Partial j sums elements [j·chunk, (j+1)·chunk) — a fixed assignment, independent of the grid.
__global__ void sum_squares_partial_kernel(const float* __restrict__ g, int64_t n, int64_t chunk,
                                           double* __restrict__ partials) {
  __shared__ double red[kWarp];
  const int64_t j = blockIdx.x, i0 = j * chunk;
  const int64_t i1 = i0 + chunk < n ? i0 + chunk : n;
  double acc = 0.0;
  for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) acc += static_cast<double>(g[i]) * g[i];
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) partials[j] = acc;
}

__global__ void sum_partials_kernel(const double* __restrict__ partials, int count, double* __restrict__ out) {
  __shared__ double red[kWarp];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) *out = acc;
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float factor) {
  QAFT_GRID_STRIDE(i, n) x[i] *= factor;
}

}  // namespace

namespace launch {

void swiglu_forward(const float* g, const float* u, int64_t n, float* h, cudaStream_t stream) {
  swiglu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(g, u, n, h);
  QAFT_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

void swiglu_backward(const float* dh, const float* g, const float* u, int64_t n, float* dg, float* du,
                     cudaStream_t stream) {
  swiglu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dh, g, u, n, dg, du);
  QAFT_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

void adamw_f32(const AdamWArgs& a, float* p, const float* g, float* m, float* v, const uint8_t* decay_mask, int64_t n,
               cudaStream_t stream) {
  adamw_f32_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(a, p, g, m, v, decay_mask, n);
  QAFT_CUDA_CHECK_LAUNCH("adamw_f32_kernel");
}

void adamw_bf16(const AdamWArgs& a, float* p, const float* g, uint16_t* m, uint16_t* v, const uint8_t* decay_mask,
                int64_t n, cudaStream_t stream) {
  adamw_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(a, p, g, m, v, decay_mask, n);
  QAFT_CUDA_CHECK_LAUNCH("adamw_bf16_kernel");
}

void sum_squares(const float* g, int64_t n, double* partials, double* out, cudaStream_t stream) {
  const int64_t chunk = cdiv(n > 0 ? n : 1, kNormPartials);
  const int64_t count = cdiv(n > 0 ? n : 1, chunk);
  sum_squares_partial_kernel<<<static_cast<unsigned>(count), kThreads, 0, stream>>>(g, n, chunk, partials);
  QAFT_CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
  sum_partials_kernel<<<1, kThreads, 0, stream>>>(partials, static_cast<int>(count), out);
  QAFT_CUDA_CHECK_LAUNCH("sum_partials_kernel");
}

void scale_f32(float* x, int64_t n, float factor, cudaStream_t stream) {
  scale_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, n, factor);
  QAFT_CUDA_CHECK_LAUNCH("scale_kernel");
}

}  // namespace launch
}  // namespace qaft::cuda
