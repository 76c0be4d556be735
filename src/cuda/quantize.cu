// FP8 block quantization on the device, bit-identical to numerics/scale_recipe.cpp: the same σ
// (dn::tile_scale), the same x / σ with round-to-nearest-even and saturation (dn::quantize_element),
// NaN-poisoned blocks (σ = NaN, codes 0x7F) and partial edge blocks (amax over the valid elements).
//
// Two paths:
//   - row tiles (1 × 128, 1 × 32): one warp per tile, each lane holds tile/32 elements in
//     registers; one read of x, amax by a warp max over the fp32 bit patterns of |x| (NaN-sticky,
//     see dn::abs_bits), then encode and write. This is the activation path whose bandwidth
//     bench/bench_cuda.cu measures.
//   - any other block shape (128 × 128, per-channel, per-tensor): an amax pass with one unsigned
//     atomicMax per CTA and block (exact and order-independent), a scale pass, an encode pass.
#include "cuda/kernel_util.cuh"
#include "cuda/launch.h"
#include "cuda/runtime.h"

namespace qaft::cuda {
namespace {

template <int kPerLane, bool kFake>
__global__ void quantize_rowtile_kernel(const float* x, int64_t rows, int64_t cols, int64_t ld,  // x may alias out
                                        float amax_floor, bool pow2, bool e5m2, uint8_t* __restrict__ codes,
                                        float* __restrict__ scales, float* out,
                                        int32_t* __restrict__ nonfinite) {
  constexpr int kTile = kWarp * kPerLane;
  const int lane = threadIdx.x % kWarp;
  const int64_t sc = cdiv(cols, kTile);
  const int64_t tiles = rows * sc;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  for (int64_t t = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; t < tiles; t += warps) {
    const int64_t r = t / sc, c0 = (t % sc) * kTile;
    const int64_t width = cols - c0 < kTile ? cols - c0 : kTile;
    const float* xr = x + r * ld + c0;
    float v[kPerLane];
    uint32_t m = 0;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const int i = lane + kWarp * e;
      v[e] = i < width ? xr[i] : 0.0f;
      m = max(m, dn::abs_bits(v[e]));
    }
    m = warp_max_u32(m);
    const float s = dn::tile_scale(dn::amax_from_bits(m), amax_floor, pow2, e5m2);
    if (lane == 0) {
      if (scales) scales[t] = s;  // scales [rows, sc]: tile t is (r, t % sc)
      if (nonfinite && dn::is_nan(s)) atomicAdd(nonfinite, 1);
    }
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const int i = lane + kWarp * e;
      if (i >= width) continue;
      const uint8_t code = dn::quantize_element(v[e], s, e5m2);
      if (codes) codes[r * cols + c0 + i] = code;
      if (kFake) out[r * cols + c0 + i] = dn::dequantize_element(code, s, e5m2);
    }
  }
}

// One CTA per (block, chunk of its rows); 1-D grid so that per-tensor and per-channel recipes with
// many rows do not hit the 65535 limit of grid.y.
__global__ void block_amax_kernel(const float* __restrict__ x, int64_t rows, int64_t cols, int64_t ld, int64_t br,
                                  int64_t bc, int64_t sc, int64_t chunk_rows, int64_t chunks,
                                  uint32_t* __restrict__ amax_bits) {
  __shared__ uint32_t red[kWarp];
  const int64_t id = blockIdx.x;
  const int64_t chunk = id % chunks, blk = id / chunks;
  const int64_t bi = blk / sc, bj = blk % sc;
  const int64_t r0 = bi * br + chunk * chunk_rows;
  int64_t r1 = r0 + chunk_rows;
  r1 = r1 < (bi + 1) * br ? r1 : (bi + 1) * br;
  r1 = r1 < rows ? r1 : rows;
  const int64_t c0 = bj * bc, width = cols - c0 < bc ? cols - c0 : bc;
  uint32_t m = 0;
  if (r0 < r1) {
    const int64_t n = (r1 - r0) * width;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
      m = max(m, dn::abs_bits(x[(r0 + i / width) * ld + c0 + i % width]));
  }
  m = block_max_u32(m, red);
  if (threadIdx.x == 0 && m != 0) atomicMax(amax_bits + blk, m);
}

__global__ void block_scale_kernel(const uint32_t* __restrict__ amax_bits, int64_t blocks, float amax_floor,
                                   bool pow2, bool e5m2, float* __restrict__ scales, int32_t* __restrict__ nonfinite) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < blocks;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float s = dn::tile_scale(dn::amax_from_bits(amax_bits[i]), amax_floor, pow2, e5m2);
    scales[i] = s;
    if (nonfinite && dn::is_nan(s)) atomicAdd(nonfinite, 1);
  }
}

template <bool kFake>
__global__ void block_encode_kernel(const float* x, int64_t rows, int64_t cols, int64_t ld,  // x may alias out
                                    int64_t br, int64_t bc, int64_t sc, bool e5m2, const float* __restrict__ scales,
                                    uint8_t* __restrict__ codes, float* out) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    const float s = scales[(r / br) * sc + c / bc];
    const uint8_t code = dn::quantize_element(x[r * ld + c], s, e5m2);
    if (codes) codes[i] = code;
    if (kFake) out[i] = dn::dequantize_element(code, s, e5m2);
  }
}

__global__ void dequantize_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ scales, int64_t rows,
                                  int64_t cols, int64_t br, int64_t bc, int64_t sc, bool e5m2, float* __restrict__ out) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    out[i] = dn::dequantize_element(codes[i], scales[(r / br) * sc + c / bc], e5m2);
  }
}

constexpr int kThreads = 256;

}  // namespace

namespace launch {

void quantize_rowtile(const float* x, int64_t rows, int64_t cols, int64_t ld, int tile, float amax_floor, bool pow2,
                      bool e5m2, uint8_t* codes, float* scales, float* fake_out, int32_t* nonfinite,
                      cudaStream_t stream) {
  const int64_t tiles = rows * cdiv(cols, tile);
  const unsigned grid = grid_for(tiles * kWarp, kThreads);
  if (tile == 128) {
    if (fake_out)
      quantize_rowtile_kernel<4, true><<<grid, kThreads, 0, stream>>>(x, rows, cols, ld, amax_floor, pow2, e5m2,
                                                                      codes, scales, fake_out, nonfinite);
    else
      quantize_rowtile_kernel<4, false><<<grid, kThreads, 0, stream>>>(x, rows, cols, ld, amax_floor, pow2, e5m2,
                                                                       codes, scales, fake_out, nonfinite);
  } else {
    if (fake_out)
      quantize_rowtile_kernel<1, true><<<grid, kThreads, 0, stream>>>(x, rows, cols, ld, amax_floor, pow2, e5m2,
                                                                      codes, scales, fake_out, nonfinite);
    else
      quantize_rowtile_kernel<1, false><<<grid, kThreads, 0, stream>>>(x, rows, cols, ld, amax_floor, pow2, e5m2,
                                                                       codes, scales, fake_out, nonfinite);
  }
  QAFT_CUDA_CHECK_LAUNCH("quantize_rowtile_kernel");
}

void quantize_blocks(const float* x, int64_t rows, int64_t cols, int64_t ld, int64_t br, int64_t bc,
                     float amax_floor, bool pow2, bool e5m2, uint8_t* codes, float* scales, float* fake_out,
                     uint32_t* amax_bits, int32_t* nonfinite, cudaStream_t stream) {
  const int64_t sr = cdiv(rows, br), sc = cdiv(cols, bc), blocks = sr * sc;
  QAFT_CUDA_CHECK(cudaMemsetAsync(amax_bits, 0, static_cast<size_t>(blocks) * sizeof(uint32_t), stream));
  // About 16K elements per CTA: a whole 128×128 block, a few rows of a per-tensor matrix.
  const int64_t rows_in_block = br < rows ? br : rows;
  int64_t chunk_rows = 16384 / (bc < cols ? bc : cols);
  chunk_rows = chunk_rows < 1 ? 1 : (chunk_rows > rows_in_block ? rows_in_block : chunk_rows);
  const int64_t chunks = cdiv(rows_in_block, chunk_rows);
  block_amax_kernel<<<static_cast<unsigned>(blocks * chunks), kThreads, 0, stream>>>(
      x, rows, cols, ld, br, bc, sc, chunk_rows, chunks, amax_bits);
  QAFT_CUDA_CHECK_LAUNCH("block_amax_kernel");
  block_scale_kernel<<<grid_for(blocks, kThreads), kThreads, 0, stream>>>(amax_bits, blocks, amax_floor, pow2, e5m2,
                                                                        scales, nonfinite);
  QAFT_CUDA_CHECK_LAUNCH("block_scale_kernel");
  const unsigned grid = grid_for(rows * cols, kThreads);
  if (fake_out)
    block_encode_kernel<true><<<grid, kThreads, 0, stream>>>(x, rows, cols, ld, br, bc, sc, e5m2, scales, codes,
                                                             fake_out);
  else
    block_encode_kernel<false><<<grid, kThreads, 0, stream>>>(x, rows, cols, ld, br, bc, sc, e5m2, scales, codes,
                                                              fake_out);
  QAFT_CUDA_CHECK_LAUNCH("block_encode_kernel");
}

void dequantize(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols, int64_t br, int64_t bc,
                bool e5m2, float* out, cudaStream_t stream) {
  dequantize_kernel<<<grid_for(rows * cols, kThreads), kThreads, 0, stream>>>(codes, scales, rows, cols, br, bc,
                                                                            cdiv(cols, bc), e5m2, out);
  QAFT_CUDA_CHECK_LAUNCH("dequantize_kernel");
}

}  // namespace launch
}  // namespace qaft::cuda
