// The public quantization, NF4 and optimizer ops of cuda/ops.h: argument checks (the CPU ops'
// checks, same messages), scratch memory, then the launchers of quantize.cu, nf4.cu and
// elementwise.cu.
#include "core/error.h"
#include "cuda/device_numerics.h"
#include "cuda/launch.h"
#include "cuda/ops.h"
#include "cuda/runtime.h"

#include <bit>
#include <cmath>

namespace qaft::cuda {
namespace {

void check_quantize_args(int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe) {
  QAFT_CHECK(rows >= 0 && cols >= 0, "negative matrix shape [{}, {}]", rows, cols);
  QAFT_CHECK(ld >= cols, "row stride {} is smaller than the row length {}", ld, cols);
  QAFT_CHECK(std::isfinite(recipe.amax_floor) && recipe.amax_floor >= 0.0f,
             "amax_floor must be finite and >= 0, got {}", recipe.amax_floor);
}

// The row-tile path applies to 1×128 and 1×32 tiles; everything else goes through the block path.
bool row_tiles(const ScaleRecipe& r) {
  return r.granularity == Granularity::kTile1x128 || r.granularity == Granularity::kMx1x32;
}

void run_quantize(const float* x, int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe, uint8_t* codes,
                  float* scales, float* fake_out, int32_t* nonfinite) {
  const bool pow2 = recipe.scale_format == ScaleFormat::kUe8m0;
  const bool e5m2 = recipe.element == Fp8Format::kE5M2;
  const cudaStream_t s = current_stream();
  if (row_tiles(recipe)) {
    launch::quantize_rowtile(x, rows, cols, ld, static_cast<int>(recipe.block_cols(cols)), recipe.amax_floor, pow2,
                             e5m2, codes, scales, fake_out, nonfinite, s);
    return;
  }
  const int64_t blocks = recipe.scale_rows(rows) * recipe.scale_cols(cols);
  // fake_quantize keeps no scales: they live in scratch, after the amax words.
  auto* amax = static_cast<uint32_t*>(
      scratch(Scratch::kQuantize, static_cast<size_t>(blocks) * (sizeof(uint32_t) + (scales ? 0 : sizeof(float)))));
  float* sc = scales ? scales : reinterpret_cast<float*>(amax + blocks);
  launch::quantize_blocks(x, rows, cols, ld, recipe.block_rows(rows), recipe.block_cols(cols), recipe.amax_floor, pow2,
                          e5m2, codes, sc, fake_out, amax, nonfinite, s);
}

// Runs a quantization pass with a device counter and returns the stats (synchronizes).
template <typename Run>
QuantizeStats with_stats(int64_t rows, int64_t cols, const ScaleRecipe& recipe, Run run) {
  QuantizeStats stats;
  stats.blocks = recipe.scale_rows(rows) * recipe.scale_cols(cols);
  if (rows == 0 || cols == 0) return stats;
  DeviceBuffer counter(sizeof(int32_t));
  counter.zero();
  run(counter.as<int32_t>());
  int32_t bad = 0;
  counter.download(&bad, sizeof bad);
  stats.nonfinite_blocks = bad;
  return stats;
}

void check_nf4(int blocksize, int64_t n, const char* what) {
  QAFT_CHECK(blocksize >= 32 && blocksize <= 4096 && std::has_single_bit(static_cast<unsigned>(blocksize)),
             "{}: NF4 blocksize {} is invalid: it must be a power of two in [32, 4096]", what, blocksize);
  QAFT_CHECK(n >= 0, "{}: NF4 element count {} is negative", what, n);
}

}  // namespace

QuantizeStats quantize(const float* x, int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe,
                       uint8_t* codes, float* scales) {
  require_cuda("cuda::quantize");
  check_quantize_args(rows, cols, ld, recipe);
  return with_stats(rows, cols, recipe,
                    [&](int32_t* bad) { run_quantize(x, rows, cols, ld, recipe, codes, scales, nullptr, bad); });
}

void quantize_async(const float* x, int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe, uint8_t* codes,
                    float* scales, int32_t* nonfinite_count) {
  require_cuda("cuda::quantize_async");
  check_quantize_args(rows, cols, ld, recipe);
  if (rows == 0 || cols == 0) return;
  run_quantize(x, rows, cols, ld, recipe, codes, scales, nullptr, nonfinite_count);
}

void dequantize(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols, const ScaleRecipe& recipe,
                float* out) {
  require_cuda("cuda::dequantize");
  check_quantize_args(rows, cols, cols, recipe);
  if (rows == 0 || cols == 0) return;
  launch::dequantize(codes, scales, rows, cols, recipe.block_rows(rows), recipe.block_cols(cols),
                     recipe.element == Fp8Format::kE5M2, out, current_stream());
}

QuantizeStats fake_quantize(const float* x, int64_t rows, int64_t cols, const ScaleRecipe& recipe, float* out) {
  require_cuda("cuda::fake_quantize");
  check_quantize_args(rows, cols, cols, recipe);
  // out may alias x, as on the CPU: every element is read and written by the same thread (block
  // path: the amax pass reads all of x before the encode pass writes), or within one warp (row tiles).
  return with_stats(rows, cols, recipe,
                    [&](int32_t* bad) { run_quantize(x, rows, cols, cols, recipe, nullptr, nullptr, out, bad); });
}

void fake_quantize_backward(const float* grad_out, int64_t n, float* grad_x) {
  require_cuda("cuda::fake_quantize_backward");
  QAFT_CHECK(n >= 0, "fake_quantize_backward: n={}", n);
  if (grad_out != grad_x && n > 0)
    QAFT_CUDA_CHECK(cudaMemcpyAsync(grad_x, grad_out, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice,
                                    current_stream()));
}

void nf4_quantize(const float* x, int64_t n, int blocksize, uint8_t* packed, float* absmax) {
  require_cuda("cuda::nf4_quantize");
  check_nf4(blocksize, n, "cuda::nf4_quantize");
  if (n == 0) return;
  launch::nf4_quantize(x, n, blocksize, packed, absmax, current_stream());
}

void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n, int blocksize, float* out,
                    const float* quant_map) {
  require_cuda("cuda::nf4_dequantize");
  check_nf4(blocksize, n, "cuda::nf4_dequantize");
  QAFT_CHECK(quant_map != nullptr, "cuda::nf4_dequantize: null quant_map (a device array of 16 floats)");
  if (n == 0) return;
  launch::nf4_dequantize(packed, absmax, n, blocksize, quant_map, out, nullptr, current_stream());
}

void nf4_dequantize_bf16(const uint8_t* packed, const float* absmax, int64_t n, int blocksize, uint16_t* out,
                         const float* quant_map) {
  require_cuda("cuda::nf4_dequantize_bf16");
  check_nf4(blocksize, n, "cuda::nf4_dequantize_bf16");
  QAFT_CHECK(quant_map != nullptr, "cuda::nf4_dequantize_bf16: null quant_map (a device array of 16 floats)");
  if (n == 0) return;
  launch::nf4_dequantize(packed, absmax, n, blocksize, quant_map, nullptr, out, current_stream());
}

void nf4_double_dequantize_absmax(const uint8_t* codes, const float* absmax2, float offset, int64_t nblocks,
                                  int nested_blocksize, const float* nested_map, float* out) {
  require_cuda("cuda::nf4_double_dequantize_absmax");
  check_nf4(nested_blocksize, nblocks, "cuda::nf4_double_dequantize_absmax");
  QAFT_CHECK(nested_map != nullptr, "cuda::nf4_double_dequantize_absmax: null nested_map");
  if (nblocks == 0) return;
  launch::nf4_double_dequantize_absmax(codes, absmax2, offset, nblocks, nested_blocksize, nested_map, out,
                                       current_stream());
}

void adamw_step(const AdamWConfig& config, int64_t step, double lr, float* params, const float* grads, void* m, void* v,
                const uint8_t* decay_mask, int64_t n) {
  require_cuda("cuda::adamw_step");
  QAFT_CHECK(lr > 0 && std::isfinite(lr), "learning rate must be positive and finite, got {}", lr);
  QAFT_CHECK(step >= 1, "cuda::adamw_step: step {} must be >= 1 (1-based)", step);
  QAFT_CHECK(n >= 0, "negative parameter count {}", n);
  if (n == 0) return;
  const dn::AdamWScalars s = dn::adamw_scalars(config.beta1, config.beta2, config.eps, config.weight_decay, step, lr);
  const launch::AdamWArgs a{s.decay_factor, s.beta1, s.one_minus_beta1, s.beta2, s.one_minus_beta2,
                            s.step_size,    s.bc2_sqrt, s.eps};
  if (config.moments == MomentPrecision::kF32)
    launch::adamw_f32(a, params, grads, static_cast<float*>(m), static_cast<float*>(v), decay_mask, n,
                      current_stream());
  else
    launch::adamw_bf16(a, params, grads, static_cast<uint16_t*>(m), static_cast<uint16_t*>(v), decay_mask, n,
                       current_stream());
}

double clip_grad_norm(float* grads, int64_t n, double max_norm) {
  require_cuda("cuda::clip_grad_norm");
  QAFT_CHECK(n >= 0, "negative gradient count {}", n);
  auto* partials = static_cast<double*>(scratch(Scratch::kReduce, sizeof(double) * (launch::kNormPartials + 1)));
  double sum = 0.0;
  if (n > 0) {
    launch::sum_squares(grads, n, partials, partials + launch::kNormPartials, current_stream());
    QAFT_CUDA_CHECK(cudaMemcpyAsync(&sum, partials + launch::kNormPartials, sizeof sum, cudaMemcpyDeviceToHost,
                                    current_stream()));
    QAFT_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
  }
  const double norm = std::sqrt(sum);
  if (!std::isfinite(norm) || max_norm <= 0 || norm <= max_norm) return norm;
  launch::scale_f32(grads, n, static_cast<float>(max_norm / (norm + 1e-6)), current_stream());
  return norm;
}

}  // namespace qaft::cuda
