// The row kernels of the chunked LM-head cross-entropy (the GEMMs are cuBLASLt, see ops_layers.cpp):
// per vocabulary chunk, one CTA per token updates the online log-sum-exp (running max m and sum s,
// rescaled by exp(m_old − m_new)) and picks the target logit; the backward turns a recomputed
// logits chunk into dlogits in place. The loss is summed in float64 by one CTA in a fixed order.
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

namespace qaft::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void ce_init_kernel(int64_t N, float* __restrict__ m, float* __restrict__ s, float* __restrict__ tl) {
  for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < N;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    m[n] = -dn::infinity();
    s[n] = 0.0f;
    tl[n] = 0.0f;
  }
}

__global__ void ce_chunk_forward_kernel(const float* __restrict__ logits, int64_t vc, int64_t v0,
                                        const int32_t* __restrict__ targets, float* __restrict__ m,
                                        float* __restrict__ s, float* __restrict__ tl) {
  __shared__ float red[kWarp];
  const int64_t n = blockIdx.x;
  const float* row = logits + n * vc;
  float cm = -dn::infinity();
  for (int64_t j = threadIdx.x; j < vc; j += blockDim.x) cm = fmaxf(cm, row[j]);
  cm = block_max(cm, red);
  const float mo = m[n];
  const float nm = fmaxf(mo, cm);
  float acc = 0.0f;
  for (int64_t j = threadIdx.x; j < vc; j += blockDim.x) acc += expf(row[j] - nm);
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) {
    // m = −inf only before the first chunk, where s = 0: scale by 0 without forming −inf − −inf.
    const float keep = mo == -dn::infinity() ? 0.0f : expf(mo - nm);
    s[n] = s[n] * keep + acc;
    m[n] = nm;
    const int32_t t = targets[n];
    if (t >= v0 && t < v0 + vc) tl[n] = row[t - v0];
  }
}

__global__ void ce_finalize_kernel(const float* __restrict__ m, const float* __restrict__ s,
                                   const float* __restrict__ tl, const int32_t* __restrict__ targets,
                                   const float* __restrict__ weights, int64_t N, float* __restrict__ lse,
                                   double* __restrict__ loss) {
  __shared__ double red[kWarp];
  double acc = 0.0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    const float l = m[n] + logf(s[n]);
    lse[n] = l;
    if (targets[n] >= 0)
      acc += (static_cast<double>(l) - static_cast<double>(tl[n])) * (weights ? static_cast<double>(weights[n]) : 1.0);
  }
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) *loss = acc;
}

__global__ void ce_chunk_backward_kernel(float* __restrict__ logits, int64_t vc, int64_t v0,
                                         const int32_t* __restrict__ targets, const float* __restrict__ weights,
                                         const float* __restrict__ lse, float grad_scale) {
  const int64_t n = blockIdx.x;
  float* row = logits + n * vc;
  const int32_t t = targets[n];
  if (t < 0) {
    for (int64_t j = threadIdx.x; j < vc; j += blockDim.x) row[j] = 0.0f;
    return;
  }
  const float g = grad_scale * (weights ? weights[n] : 1.0f);
  const float l = lse[n];
  for (int64_t j = threadIdx.x; j < vc; j += blockDim.x) {
    float d = g * expf(row[j] - l);
    if (v0 + j == t) d -= g;
    row[j] = d;
  }
}

}  // namespace

namespace launch {

void ce_init(int64_t N, float* m, float* s, float* tl, cudaStream_t stream) {
  ce_init_kernel<<<grid_for(N, kThreads), kThreads, 0, stream>>>(N, m, s, tl);
  QAFT_CUDA_CHECK_LAUNCH("ce_init_kernel");
}

void ce_chunk_forward(const float* logits, int64_t N, int64_t vc, int64_t v0, const int32_t* targets, float* m,
                      float* s, float* tl, cudaStream_t stream) {
  ce_chunk_forward_kernel<<<static_cast<unsigned>(N), kThreads, 0, stream>>>(logits, vc, v0, targets, m, s, tl);
  QAFT_CUDA_CHECK_LAUNCH("ce_chunk_forward_kernel");
}

void ce_finalize(const float* m, const float* s, const float* tl, const int32_t* targets, const float* weights,
                 int64_t N, float* lse, double* loss, cudaStream_t stream) {
  ce_finalize_kernel<<<1, 1024, 0, stream>>>(m, s, tl, targets, weights, N, lse, loss);
  QAFT_CUDA_CHECK_LAUNCH("ce_finalize_kernel");
}

void ce_chunk_backward(float* logits, int64_t N, int64_t vc, int64_t v0, const int32_t* targets, const float* weights,
                       const float* lse, float grad_scale, cudaStream_t stream) {
  ce_chunk_backward_kernel<<<static_cast<unsigned>(N), kThreads, 0, stream>>>(logits, vc, v0, targets, weights, lse,
                                                                             grad_scale);
  QAFT_CUDA_CHECK_LAUNCH("ce_chunk_backward_kernel");
}

}  // namespace launch
}  // namespace qaft::cuda
