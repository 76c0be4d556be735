// NF4 (bitsandbytes layout, numerics/nf4.h) on the device: quantize (one warp per block), dequantize
// to fp32 or bf16 (one thread per element, the 16-entry map in shared memory) and the reconstruction
// of double-quantized absmax. Bit-identical to numerics/nf4.cpp (same dn:: functions).
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

#include <cfloat>

namespace qaft::cuda {
namespace {

constexpr uint8_t kZeroPair = (dn::kNf4ZeroIndex << 4) | dn::kNf4ZeroIndex;

__global__ void nf4_quantize_kernel(const float* __restrict__ x, int64_t n, int blocksize,
                                    uint8_t* __restrict__ packed, float* __restrict__ absmax) {
  const int lane = threadIdx.x % kWarp;
  const int64_t blocks = cdiv(n, blocksize);
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  for (int64_t b = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; b < blocks; b += warps) {
    const int64_t i0 = b * blocksize;  // even: a block never splits a byte
    const int64_t len = n - i0 < blocksize ? n - i0 : blocksize;
    float m = 0.0f;
    bool finite = true;
    for (int64_t i = lane; i < len; i += kWarp) {
      const float a = fabsf(x[i0 + i]);
      finite &= a <= FLT_MAX;  // false for inf and NaN
      m = a > m ? a : m;
    }
    m = warp_max(m);  // exact: a max of non-NaN values
    finite = __all_sync(0xFFFFFFFFu, finite);
    const int64_t pairs = cdiv(len, 2);
    uint8_t* out = packed + i0 / 2;
    if (!finite) {
      if (lane == 0) absmax[b] = dn::quiet_nan();
      for (int64_t p = lane; p < pairs; p += kWarp) out[p] = kZeroPair;
      continue;
    }
    if (lane == 0) absmax[b] = m;
    const float inv = dn::nf4_inverse(m);
    for (int64_t p = lane; p < pairs; p += kWarp) {
      const uint32_t hi = dn::nf4_encode(dn::mul_rn(x[i0 + 2 * p], inv));
      const uint32_t lo = 2 * p + 1 < len ? dn::nf4_encode(dn::mul_rn(x[i0 + 2 * p + 1], inv))
                                          : static_cast<uint32_t>(dn::kNf4ZeroIndex);
      out[p] = static_cast<uint8_t>((hi << 4) | lo);
    }
  }
}

template <bool kBf16>
__global__ void nf4_dequantize_kernel(const uint8_t* __restrict__ packed, const float* __restrict__ absmax, int64_t n,
                                      int blocksize, const float* __restrict__ quant_map, float* __restrict__ out_f32,
                                      uint16_t* __restrict__ out_bf16) {
  __shared__ float lut[16];
  if (threadIdx.x < 16) lut[threadIdx.x] = quant_map[threadIdx.x];
  __syncthreads();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = dn::mul_rn(lut[dn::nf4_index(packed, i)], absmax[i / blocksize]);
    if (kBf16)
      out_bf16[i] = dn::bf16_from_float(v);
    else
      out_f32[i] = v;
  }
}

__global__ void nf4_absmax_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ absmax2, float offset,
                                  int64_t nblocks, int nested_blocksize, const float* __restrict__ nested_map,
                                  float* __restrict__ out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < nblocks;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[j] = dn::nf4_nested_absmax(nested_map[codes[j]], absmax2[j / nested_blocksize], offset);
}

constexpr int kThreads = 256;

}  // namespace

namespace launch {

void nf4_quantize(const float* x, int64_t n, int blocksize, uint8_t* packed, float* absmax, cudaStream_t stream) {
  nf4_quantize_kernel<<<grid_for(cdiv(n, blocksize) * kWarp, kThreads), kThreads, 0, stream>>>(x, n, blocksize,
                                                                                               packed, absmax);
  QAFT_CUDA_CHECK_LAUNCH("nf4_quantize_kernel");
}

void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n, int blocksize, const float* quant_map,
                    float* out_f32, uint16_t* out_bf16, cudaStream_t stream) {
  const unsigned grid = grid_for(n, kThreads);
  if (out_bf16)
    nf4_dequantize_kernel<true><<<grid, kThreads, 0, stream>>>(packed, absmax, n, blocksize, quant_map, out_f32,
                                                               out_bf16);
  else
    nf4_dequantize_kernel<false><<<grid, kThreads, 0, stream>>>(packed, absmax, n, blocksize, quant_map, out_f32,
                                                                out_bf16);
  QAFT_CUDA_CHECK_LAUNCH("nf4_dequantize_kernel");
}

void nf4_double_dequantize_absmax(const uint8_t* codes, const float* absmax2, float offset, int64_t nblocks,
                                  int nested_blocksize, const float* nested_map, float* out, cudaStream_t stream) {
  nf4_absmax_kernel<<<grid_for(nblocks, kThreads), kThreads, 0, stream>>>(codes, absmax2, offset, nblocks,
                                                                         nested_blocksize, nested_map, out);
  QAFT_CUDA_CHECK_LAUNCH("nf4_absmax_kernel");
}

}  // namespace launch
}  // namespace qaft::cuda
