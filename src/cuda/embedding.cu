// Token embedding. Forward: a row gather. Backward, deterministic and bit-identical to
// kernels/cpu/embedding.cpp: keys (id << 32 | token) are sorted, then one CTA per run of equal ids
// adds that id's gradient rows into dtable in token order, starting from dtable's value — the CPU's
// exact sequence of fp32 additions.
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

namespace qaft::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void embedding_forward_kernel(const int32_t* __restrict__ ids, int64_t N, const float* __restrict__ table,
                                         int64_t C, float* __restrict__ out) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, j = i % C;
    out[i] = table[static_cast<int64_t>(ids[n]) * C + j];
  }
}

__global__ void make_keys_kernel(const int32_t* __restrict__ ids, int64_t N, uint64_t* __restrict__ keys) {
  for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < N;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x)
    keys[n] = (static_cast<uint64_t>(static_cast<uint32_t>(ids[n])) << 32) | static_cast<uint64_t>(n);
}

// CTA p handles the run of sorted keys starting at p (if p starts a run).
__global__ void embedding_backward_kernel(const uint64_t* __restrict__ keys, int64_t N, const float* __restrict__ dout,
                                          int64_t C, float* __restrict__ dtable) {
  for (int64_t p = blockIdx.x; p < N; p += gridDim.x) {
    const uint64_t id = keys[p] >> 32;
    if (p > 0 && (keys[p - 1] >> 32) == id) continue;
    int64_t e = p + 1;
    while (e < N && (keys[e] >> 32) == id) ++e;
    float* dst = dtable + static_cast<int64_t>(id) * C;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      float acc = dst[j];
      for (int64_t q = p; q < e; ++q) acc = dn::add_rn(acc, dout[static_cast<int64_t>(keys[q] & 0xFFFFFFFFu) * C + j]);
      dst[j] = acc;
    }
  }
}

}  // namespace

namespace launch {

void embedding_forward(const int32_t* ids, int64_t N, const float* table, int64_t C, float* out, cudaStream_t stream) {
  if (N == 0) return;
  embedding_forward_kernel<<<grid_for(N * C, kThreads), kThreads, 0, stream>>>(ids, N, table, C, out);
  QAFT_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

void embedding_backward(const int32_t* ids, int64_t N, const float* dout, int64_t C, float* dtable, uint64_t* keys,
                        cudaStream_t stream) {
  if (N == 0) return;
  make_keys_kernel<<<grid_for(N, kThreads), kThreads, 0, stream>>>(ids, N, keys);
  QAFT_CUDA_CHECK_LAUNCH("make_keys_kernel");
  sort_u64(keys, N, stream);
  const unsigned grid = static_cast<unsigned>(N < 65535 * 4 ? N : 65535 * 4);
  embedding_backward_kernel<<<grid, kThreads, 0, stream>>>(keys, N, dout, C, dtable);
  QAFT_CUDA_CHECK_LAUNCH("embedding_backward_kernel");
}

}  // namespace launch
}  // namespace qaft::cuda
