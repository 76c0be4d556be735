// A plain bitonic sort of uint64 keys in device memory (n padded to a power of two with
// UINT64_MAX): log2(P)·(log2(P)+1)/2 launches of one compare-exchange pass each. Used where a
// stable order by id is needed and determinism matters (embedding backward, MoE permutation): the
// keys are (id << 32 | index), all distinct, so the order is unique whatever the algorithm.
// Simple rather than fast (CUB's radix sort would be the fast choice; see docs/cuda.md).
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

namespace qaft::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void pad_kernel(uint64_t* keys, int64_t n, int64_t cap) {
  for (int64_t i = n + blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < cap;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    keys[i] = ~0ULL;
}

__global__ void bitonic_pass_kernel(uint64_t* keys, int64_t cap, int64_t k, int64_t j) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < cap;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t partner = i ^ j;
    if (partner <= i) continue;
    const bool ascending = (i & k) == 0;
    const uint64_t a = keys[i], b = keys[partner];
    if ((a > b) == ascending) {
      keys[i] = b;
      keys[partner] = a;
    }
  }
}

}  // namespace

namespace launch {

int64_t sort_capacity(int64_t n) {
  int64_t cap = 1;
  while (cap < n) cap *= 2;
  return cap;
}

void sort_u64(uint64_t* keys, int64_t n, cudaStream_t stream) {
  if (n <= 1) return;
  const int64_t cap = sort_capacity(n);
  if (cap > n) {
    pad_kernel<<<grid_for(cap - n, kThreads), kThreads, 0, stream>>>(keys, n, cap);
    QAFT_CUDA_CHECK_LAUNCH("pad_kernel");
  }
  const unsigned grid = grid_for(cap, kThreads);
  for (int64_t k = 2; k <= cap; k *= 2)
    for (int64_t j = k / 2; j > 0; j /= 2) {
      bitonic_pass_kernel<<<grid, kThreads, 0, stream>>>(keys, cap, k, j);
      QAFT_CUDA_CHECK_LAUNCH("bitonic_pass_kernel");
    }
}

}  // namespace launch
}  // namespace qaft::cuda
