#include "numerics/scale_recipe.h"

#include "core/error.h"
#include "numerics/ue8m0.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qaft {

std::string_view granularity_name(Granularity g) {
  switch (g) {
    case Granularity::kPerTensor: return "per-tensor";
    case Granularity::kPerChannel: return "per-channel";
    case Granularity::kTile1x128: return "1x128";
    case Granularity::kBlock128x128: return "128x128";
    case Granularity::kMx1x32: return "1x32";
  }
  return "?";
}

std::string_view scale_format_name(ScaleFormat s) { return s == ScaleFormat::kFp32 ? "fp32" : "ue8m0"; }

ScaleRecipe ScaleRecipe::deepseek_activation(ScaleFormat fmt) {
  return {Granularity::kTile1x128, fmt, Fp8Format::kE4M3, 1e-4f};
}
ScaleRecipe ScaleRecipe::deepseek_weight(ScaleFormat fmt) {
  return {Granularity::kBlock128x128, fmt, Fp8Format::kE4M3, 1e-4f};
}

int64_t ScaleRecipe::block_rows(int64_t rows) const {
  switch (granularity) {
    case Granularity::kPerTensor: return std::max<int64_t>(rows, 1);
    case Granularity::kBlock128x128: return 128;
    default: return 1;
  }
}

int64_t ScaleRecipe::block_cols(int64_t cols) const {
  switch (granularity) {
    case Granularity::kPerTensor:
    case Granularity::kPerChannel: return std::max<int64_t>(cols, 1);
    case Granularity::kMx1x32: return 32;
    default: return 128;
  }
}

int64_t ScaleRecipe::scale_rows(int64_t rows) const {
  const int64_t br = block_rows(rows);
  return (rows + br - 1) / br;
}
int64_t ScaleRecipe::scale_cols(int64_t cols) const {
  const int64_t bc = block_cols(cols);
  return (cols + bc - 1) / bc;
}

std::string ScaleRecipe::str() const {
  return fmt::format("{} {} {}-scale floor={}", granularity_name(granularity), fp8_format_name(element),
                     scale_format_name(scale_format), amax_floor);
}

float compute_scale(float amax_value, const ScaleRecipe& recipe) {
  if (!std::isfinite(amax_value)) return NAN;
  float a = std::max(amax_value, recipe.amax_floor);
  if (a == 0.0f) return 1.0f;
  float s = a / fp8_max(recipe.element);
  if (recipe.scale_format == ScaleFormat::kUe8m0) s = pow2_ceil(s);
  return s;
}

namespace {

void check_args(int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe) {
  QAFT_CHECK(rows >= 0 && cols >= 0, "negative matrix shape [{}, {}]", rows, cols);
  QAFT_CHECK(ld >= cols, "row stride {} is smaller than the row length {}", ld, cols);
  QAFT_CHECK(std::isfinite(recipe.amax_floor) && recipe.amax_floor >= 0.0f,
             "amax_floor must be finite and >= 0, got {}", recipe.amax_floor);
}

// Calls fn(block_row, block_col, r0, r1, c0, c1) for every scale block, in parallel.
template <typename Fn>
void for_each_block(int64_t rows, int64_t cols, const ScaleRecipe& recipe, Fn&& fn) {
  const int64_t br = recipe.block_rows(rows), bc = recipe.block_cols(cols);
  const int64_t sr = recipe.scale_rows(rows), sc = recipe.scale_cols(cols);
  const int64_t nblocks = sr * sc;
  const bool parallel = static_cast<int64_t>(rows) * cols >= (1 << 16);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t i = b / sc, j = b % sc;
    fn(i, j, i * br, std::min(rows, (i + 1) * br), j * bc, std::min(cols, (j + 1) * bc));
  }
}

float block_amax(const float* x, int64_t ld, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  float m = 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    float a = amax(x + r * ld + c0, c1 - c0);
    if (std::isnan(a)) return NAN;
    m = std::max(m, a);
  }
  return m;
}

// Per-tensor amax, in parallel over rows.
float tensor_amax(const float* x, int64_t rows, int64_t cols, int64_t ld) {
  float m = 0.0f;
  bool nan = false;
#pragma omp parallel for reduction(max : m) reduction(|| : nan) if (rows * cols >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    float a = amax(x + r * ld, cols);
    if (std::isnan(a)) nan = true;
    else m = std::max(m, a);
  }
  return nan ? NAN : m;
}

}  // namespace

QuantizeStats quantize(const float* x, int64_t rows, int64_t cols, int64_t ld,
                       const ScaleRecipe& recipe, uint8_t* codes, float* scales) {
  check_args(rows, cols, ld, recipe);
  const int64_t sc = recipe.scale_cols(cols);
  QuantizeStats stats;
  stats.blocks = recipe.scale_rows(rows) * sc;
  if (rows == 0 || cols == 0) return stats;
  int64_t nonfinite = 0;

  if (recipe.granularity == Granularity::kPerTensor) {
    const float s = compute_scale(tensor_amax(x, rows, cols, ld), recipe);
    scales[0] = s;
    nonfinite = std::isnan(s);
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
    for (int64_t r = 0; r < rows; ++r)
      fp8_encode_scaled(x + r * ld, cols, s, recipe.element, Saturation::kSatFinite, codes + r * cols);
  } else {
    std::vector<uint8_t> bad(static_cast<size_t>(stats.blocks), 0);
    for_each_block(rows, cols, recipe, [&](int64_t i, int64_t j, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
      const float s = compute_scale(block_amax(x, ld, r0, r1, c0, c1), recipe);
      scales[i * sc + j] = s;
      bad[static_cast<size_t>(i * sc + j)] = std::isnan(s);
      for (int64_t r = r0; r < r1; ++r)
        fp8_encode_scaled(x + r * ld + c0, c1 - c0, s, recipe.element, Saturation::kSatFinite,
                          codes + r * cols + c0);
    });
    for (uint8_t b : bad) nonfinite += b;
  }
  stats.nonfinite_blocks = nonfinite;
  return stats;
}

void dequantize(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols,
                const ScaleRecipe& recipe, float* out) {
  check_args(rows, cols, cols, recipe);
  const int64_t sc = recipe.scale_cols(cols);
  for_each_block(rows, cols, recipe, [&](int64_t i, int64_t j, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    const float s = scales[i * sc + j];
    for (int64_t r = r0; r < r1; ++r)
      fp8_decode_scaled(codes + r * cols + c0, c1 - c0, s, recipe.element, out + r * cols + c0);
  });
}

QuantizeStats fake_quantize(const float* x, int64_t rows, int64_t cols, const ScaleRecipe& recipe,
                            float* out) {
  check_args(rows, cols, cols, recipe);
  QuantizeStats stats;
  stats.blocks = recipe.scale_rows(rows) * recipe.scale_cols(cols);
  if (rows == 0 || cols == 0) return stats;
  if (recipe.granularity == Granularity::kPerTensor) {
    const float s = compute_scale(tensor_amax(x, rows, cols, cols), recipe);
    stats.nonfinite_blocks = std::isnan(s);
#pragma omp parallel if (rows * cols >= (1 << 16))
    {
      std::vector<uint8_t> buf(static_cast<size_t>(cols));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        fp8_encode_scaled(x + r * cols, cols, s, recipe.element, Saturation::kSatFinite, buf.data());
        fp8_decode_scaled(buf.data(), cols, s, recipe.element, out + r * cols);
      }
    }
    return stats;
  }
  std::vector<uint8_t> bad(static_cast<size_t>(stats.blocks), 0);
  const int64_t sc = recipe.scale_cols(cols);
  for_each_block(rows, cols, recipe, [&](int64_t i, int64_t j, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    const float s = compute_scale(block_amax(x, cols, r0, r1, c0, c1), recipe);
    bad[static_cast<size_t>(i * sc + j)] = std::isnan(s);
    uint8_t buf[128];
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = c0; c < c1; c += 128) {
        const int64_t w = std::min<int64_t>(128, c1 - c);
        fp8_encode_scaled(x + r * cols + c, w, s, recipe.element, Saturation::kSatFinite, buf);
        fp8_decode_scaled(buf, w, s, recipe.element, out + r * cols + c);
      }
    }
  });
  for (uint8_t b : bad) stats.nonfinite_blocks += b;
  return stats;
}

void fake_quantize_backward(const float* grad_out, int64_t n, float* grad_x) {
  if (grad_out != grad_x) std::memmove(grad_x, grad_out, static_cast<size_t>(n) * sizeof(float));
}

QTensor QTensor::from_float(const float* x, int64_t rows, int64_t cols, const ScaleRecipe& recipe) {
  QTensor t;
  t.rows = rows;
  t.cols = cols;
  t.recipe = recipe;
  t.codes.resize(static_cast<size_t>(rows * cols));
  t.scales.resize(static_cast<size_t>(recipe.scale_rows(rows) * recipe.scale_cols(cols)));
  t.stats = quantize(x, rows, cols, cols, recipe, t.codes.data(), t.scales.data());
  return t;
}

std::vector<float> QTensor::to_float() const {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  dequantize(codes.data(), scales.data(), rows, cols, recipe, out.data());
  return out;
}

}  // namespace qaft
