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
  return detail::fp8_tile_scale(amax_value, recipe.amax_floor, recipe.scale_format == ScaleFormat::kUe8m0,
                                recipe.element);
}

namespace {

void check_args(int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe) {
  QAFT_CHECK(rows >= 0 && cols >= 0, "negative matrix shape [{}, {}]", rows, cols);
  QAFT_CHECK(ld >= cols, "row stride {} is smaller than the row length {}", ld, cols);
  QAFT_CHECK(std::isfinite(recipe.amax_floor) && recipe.amax_floor >= 0.0f,
             "amax_floor must be finite and >= 0, got {}", recipe.amax_floor);
}

bool big(int64_t rows, int64_t cols) { return rows * cols >= (1 << 16); }

// Merges one amax into a running maximum; NaN is sticky.
inline void merge_amax(float& m, float a) { m = (std::isnan(a) || std::isnan(m)) ? NAN : std::max(m, a); }

// Scales of a recipe with a single block row (per-tensor, or a 128×128 recipe on ≤ 128 rows):
// per-thread column-block amaxes over a share of the rows, merged. Returns the non-finite blocks.
int64_t single_blockrow_scales(const float* x, int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe,
                               float* scales) {
  const int64_t bc = recipe.block_cols(cols), sc = recipe.scale_cols(cols);
  std::vector<float> amaxes(static_cast<size_t>(sc), 0.0f);
#pragma omp parallel if (big(rows, cols))
  {
    std::vector<float> local(static_cast<size_t>(sc), 0.0f);
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < sc; ++j) merge_amax(local[static_cast<size_t>(j)], amax(x + r * ld + j * bc, std::min(bc, cols - j * bc)));
#pragma omp critical
    for (int64_t j = 0; j < sc; ++j) merge_amax(amaxes[static_cast<size_t>(j)], local[static_cast<size_t>(j)]);
  }
  int64_t bad = 0;
  for (int64_t j = 0; j < sc; ++j) {
    scales[j] = compute_scale(amaxes[static_cast<size_t>(j)], recipe);
    bad += std::isnan(scales[j]);
  }
  return bad;
}

// Encodes row r (and, when `out` is given, decodes it again) with its block row's scales
// (`row_scales` [scale_cols]). `codes_row` receives the row's codes.
void encode_row(const float* x_row, int64_t r, int64_t cols, const ScaleRecipe& recipe, const float* row_scales,
                uint8_t* codes_row, float* out) {
  const int64_t bc = recipe.block_cols(cols), sc = recipe.scale_cols(cols);
  for (int64_t j = 0; j < sc; ++j) {
    const int64_t w = std::min(bc, cols - j * bc);
    fp8_encode_scaled(x_row + j * bc, w, row_scales[j], recipe.element, Saturation::kSatFinite, codes_row + j * bc);
    if (out) fp8_decode_scaled(codes_row + j * bc, w, row_scales[j], recipe.element, out + r * cols + j * bc);
  }
}

// Recipes whose blocks span several rows: one block row at a time (parallel over block rows),
// amax pass then encode pass while the block row is still in cache. A single block row
// (per-tensor, or ≤ 128 rows) is parallelized over rows instead.
int64_t quantize_multirow(const float* x, int64_t rows, int64_t cols, int64_t ld, const ScaleRecipe& recipe,
                          float* scales, uint8_t* codes, float* out) {
  const int64_t sr = recipe.scale_rows(rows);
  if (sr == 1) {
    const int64_t bad = single_blockrow_scales(x, rows, cols, ld, recipe, scales);
#pragma omp parallel if (big(rows, cols))
    {
      std::vector<uint8_t> buf(codes ? 0 : static_cast<size_t>(cols));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r)
        encode_row(x + r * ld, r, cols, recipe, scales, codes ? codes + r * cols : buf.data(), out);
    }
    return bad;
  }
  const int64_t br = recipe.block_rows(rows), bc = recipe.block_cols(cols), sc = recipe.scale_cols(cols);
  int64_t bad = 0;
#pragma omp parallel reduction(+ : bad) if (big(rows, cols))
  {
    std::vector<float> amaxes(static_cast<size_t>(sc));
    std::vector<uint8_t> buf(codes ? 0 : static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < sr; ++i) {
      const int64_t r0 = i * br, r1 = std::min(rows, (i + 1) * br);
      std::fill(amaxes.begin(), amaxes.end(), 0.0f);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < sc; ++j) merge_amax(amaxes[static_cast<size_t>(j)], amax(x + r * ld + j * bc, std::min(bc, cols - j * bc)));
      for (int64_t j = 0; j < sc; ++j) {
        scales[i * sc + j] = compute_scale(amaxes[static_cast<size_t>(j)], recipe);
        bad += std::isnan(scales[i * sc + j]);
      }
      for (int64_t r = r0; r < r1; ++r)
        encode_row(x + r * ld, r, cols, recipe, scales + i * sc, codes ? codes + r * cols : buf.data(), out);
    }
  }
  return bad;
}

}  // namespace

QuantizeStats quantize(const float* x, int64_t rows, int64_t cols, int64_t ld,
                       const ScaleRecipe& recipe, uint8_t* codes, float* scales) {
  check_args(rows, cols, ld, recipe);
  QuantizeStats stats;
  stats.blocks = recipe.scale_rows(rows) * recipe.scale_cols(cols);
  if (rows == 0 || cols == 0) return stats;
  if (recipe.block_rows(rows) == 1 && recipe.granularity != Granularity::kPerTensor) {
    // Row tiles: one fused amax + encode pass per tile.
    const int64_t bc = recipe.block_cols(cols), sc = recipe.scale_cols(cols);
    const bool pow2 = recipe.scale_format == ScaleFormat::kUe8m0;
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (big(rows, cols))
    for (int64_t r = 0; r < rows; ++r)
      bad += fp8_quantize_tiles(x + r * ld, cols, bc, recipe.amax_floor, pow2, recipe.element, codes + r * cols,
                                scales + r * sc);
    stats.nonfinite_blocks = bad;
    return stats;
  }
  stats.nonfinite_blocks = quantize_multirow(x, rows, cols, ld, recipe, scales, codes, nullptr);
  return stats;
}

void dequantize(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols,
                const ScaleRecipe& recipe, float* out) {
  check_args(rows, cols, cols, recipe);
  const int64_t br = recipe.block_rows(rows), bc = recipe.block_cols(cols), sc = recipe.scale_cols(cols);
#pragma omp parallel for schedule(static) if (big(rows, cols))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < sc; ++j)
      fp8_decode_scaled(codes + r * cols + j * bc, std::min(bc, cols - j * bc), scales[(r / br) * sc + j],
                        recipe.element, out + r * cols + j * bc);
}

QuantizeStats fake_quantize(const float* x, int64_t rows, int64_t cols, const ScaleRecipe& recipe,
                            float* out) {
  check_args(rows, cols, cols, recipe);
  QuantizeStats stats;
  stats.blocks = recipe.scale_rows(rows) * recipe.scale_cols(cols);
  if (rows == 0 || cols == 0) return stats;
  const int64_t bc = recipe.block_cols(cols), sc = recipe.scale_cols(cols);
  if (recipe.block_rows(rows) == 1 && recipe.granularity != Granularity::kPerTensor) {
    const bool pow2 = recipe.scale_format == ScaleFormat::kUe8m0;
    int64_t bad = 0;
#pragma omp parallel reduction(+ : bad) if (big(rows, cols))
    {
      std::vector<uint8_t> codes(static_cast<size_t>(cols));
      std::vector<float> scales(static_cast<size_t>(sc));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        bad += fp8_quantize_tiles(x + r * cols, cols, bc, recipe.amax_floor, pow2, recipe.element, codes.data(),
                                  scales.data());
        for (int64_t j = 0; j < sc; ++j)
          fp8_decode_scaled(codes.data() + j * bc, std::min(bc, cols - j * bc), scales[static_cast<size_t>(j)],
                            recipe.element, out + r * cols + j * bc);
      }
    }
    stats.nonfinite_blocks = bad;
    return stats;
  }
  std::vector<float> scales(static_cast<size_t>(stats.blocks));
  stats.nonfinite_blocks = quantize_multirow(x, rows, cols, cols, recipe, scales.data(), nullptr, out);
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
