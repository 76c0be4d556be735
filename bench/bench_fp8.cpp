// FP8 quantize / dequantize bandwidth (issue: foundation, item 6): 1×128 activation tiles and
// 128×128 weight blocks, E4M3, as GB/s and as a ratio to a memcpy moving the same bytes in the same
// run, with 1 and 2 threads. Target ≥ 0.7 of memcpy.
#include "bench_util.h"
#include "core/rng.h"
#include "numerics/scale_recipe.h"

#include <string>
#include <vector>

using namespace qaft;
using qaft::bench::bench_bytes;

int main() {
  const int64_t rows = 4096, cols = 7168;  // 29.4M elements: 117 MB of fp32, far beyond the caches
  const int64_t n = rows * cols;
  qaft::bench::bench_print_header("qaft bench_fp8: FP8 E4M3 quantize / dequantize vs memcpy",
                                  "matrix " + std::to_string(rows) + "x" + std::to_string(cols) +
                                      " fp32; quantize reads 4 B + writes 1 B (+ scales) per element; "
                                      "dequantize reads 1 B (+ scales) and writes 4 B");
  std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  CounterRng(1, 0).fill_normal(x.data(), n, 0.0f, 1.0f);
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  std::vector<qaft::bench::BenchResult> results;
  for (const auto& [label, recipe] : {std::pair<std::string, ScaleRecipe>{"1x128", ScaleRecipe::deepseek_activation()},
                                      {"128x128", ScaleRecipe::deepseek_weight()},
                                      {"1x128 ue8m0", ScaleRecipe::deepseek_activation(ScaleFormat::kUe8m0)}}) {
    std::vector<float> scales(static_cast<size_t>(recipe.scale_rows(rows) * recipe.scale_cols(cols)));
    const size_t scale_bytes = scales.size() * sizeof(float);
    for (int threads : {1, 2}) {
      results.push_back(bench_bytes(("quantize " + label).c_str(), static_cast<size_t>(n) * 5 + scale_bytes, threads,
                                    [&] { quantize(x.data(), rows, cols, cols, recipe, codes.data(), scales.data()); }));
      results.push_back(bench_bytes(("dequantize " + label).c_str(), static_cast<size_t>(n) * 5 + scale_bytes, threads,
                                    [&] { dequantize(codes.data(), scales.data(), rows, cols, recipe, y.data()); }));
    }
  }
  qaft::bench::print_ratio_table(results);
  return 0;
}
