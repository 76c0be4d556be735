// Device helpers shared by the .cu files: sizes, warp and block reductions (fixed shuffle trees, so
// every reduction has one order and results are deterministic), grid sizing.
#pragma once

#include "cuda/device_numerics.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace qaft::cuda {

constexpr int kWarp = 32;

__host__ __device__ __forceinline__ int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over n items with `threads` per block (capped; the loop covers the rest).
inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535LL * 8) {
  const int64_t b = cdiv(n, threads);
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}
__device__ __forceinline__ uint32_t warp_max_u32(uint32_t v) { return __reduce_max_sync(0xFFFFFFFFu, v); }

// Block-wide reductions for blockDim.x a multiple of 32 (<= 1024). `shared` holds >= 32 entries.
// Every thread of the block must call them; all receive the result.
template <typename T, typename Warp>
__device__ __forceinline__ T block_reduce(T v, T* shared, T identity, Warp warp_op) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_op(v);
  __syncthreads();  // `shared` may still be read by a previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : identity;
  return warp_op(v);
}
__device__ __forceinline__ float block_sum(float v, float* shared) {
  return block_reduce(v, shared, 0.0f, [](float x) { return warp_sum(x); });
}
__device__ __forceinline__ double block_sum(double v, double* shared) {
  return block_reduce(v, shared, 0.0, [](double x) { return warp_sum(x); });
}
__device__ __forceinline__ float block_max(float v, float* shared) {
  return block_reduce(v, shared, -dn::infinity(), [](float x) { return warp_max(x); });
}
__device__ __forceinline__ uint32_t block_max_u32(uint32_t v, uint32_t* shared) {
  return block_reduce(v, shared, 0u, [](uint32_t x) { return warp_max_u32(x); });
}

}  // namespace qaft::cuda
