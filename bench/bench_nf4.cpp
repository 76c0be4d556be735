// NF4 dequantization throughput (QLoRA base weights) against memcpy measured in the same run.
//
// For each weight shape (a 4096x4096 projection and a 7168x2048 DeepSeek-style one, both far larger
// than L2) it dequantizes the double-quantized NF4 weight to fp32 and to bf16 with 1 and 2 OpenMP
// threads, each thread taking a contiguous share of rows (as GEMM packing will):
//   "rows"          nf4_dequantize_rows: the public path, absmax reconstructed from 8-bit codes;
//   "kernel avx512" / "kernel scalar": the detail:: range loops on a precomputed fp32 absmax, to
//   show
//                   what the vector path buys (avx512 rows only on CPUs that have it).
// Total runtime is a few seconds.
#include "bench_util.h"

#include "core/cpu_features.h"
#include "core/rng.h"
#include "numerics/nf4.h"

#include <fmt/format.h>
#include <omp.h>

#include <cstdint>
#include <vector>

namespace {

using qaft::Nf4Tensor;
using qaft::bench::bench_bytes;
using qaft::bench::bench_split;
using qaft::bench::BenchResult;

void bench_shape(int64_t rows, int64_t cols, std::vector<BenchResult>& results) {
  const int64_t n = rows * cols;
  std::vector<float> w(static_cast<size_t>(n));  // [rows, cols]
  qaft::CounterRng(1234, 0).fill_normal(w.data(), n, 0.0f, 0.02f);
  const Nf4Tensor t = qaft::nf4_quantize_tensor(w.data(), rows, cols, /*double_quant=*/true);
  std::vector<float> absmax(
      static_cast<size_t>(t.num_blocks()));  // [num_blocks] fp32, reconstructed
  qaft::nf4_tensor_absmax(t, 0, t.num_blocks(), absmax.data());
  std::vector<float> out(static_cast<size_t>(n));       // [rows, cols]
  std::vector<uint16_t> out_h(static_cast<size_t>(n));  // [rows, cols] bf16 bits

  const size_t packed = t.packed.size();
  const size_t rows_in = t.storage_bytes();             // packed + 8-bit absmax + absmax2 + offset
  const size_t kernel_in = packed + absmax.size() * 4;  // packed + fp32 absmax
  const std::string shape = fmt::format("{}x{}", rows, cols);
  const bool avx512 = qaft::cpu_features().has_avx512_codecs();

  for (int threads : {1, 2}) {
    auto by_rows = [&](auto* dst, auto fn) {
#pragma omp parallel
      {
        const auto [r0, r1] = bench_split(rows, omp_get_thread_num(), omp_get_num_threads());
        fn(t, r0, r1, dst + r0 * cols);
      }
    };
    auto by_range = [&](auto* dst, auto fn) {
#pragma omp parallel
      {
        const auto [b, e] = bench_split(n, omp_get_thread_num(), omp_get_num_threads());
        fn(t.packed.data(), absmax.data() + b / t.blocksize, b, e, t.blocksize, t.quant_map.data(),
           dst + b);
      }
    };
    const std::string f32 = "nf4->fp32 " + shape;
    const std::string b16 = "nf4->bf16 " + shape;
    results.push_back(bench_bytes((f32 + " rows").c_str(), rows_in + 4 * n, threads,
                                  [&] { by_rows(out.data(), qaft::nf4_dequantize_rows); }));
    if (avx512) {
      results.push_back(
          bench_bytes((f32 + " kernel avx512").c_str(), kernel_in + 4 * n, threads,
                      [&] { by_range(out.data(), qaft::detail::nf4_dequantize_range_avx512); }));
    }
    results.push_back(
        bench_bytes((f32 + " kernel scalar").c_str(), kernel_in + 4 * n, threads,
                    [&] { by_range(out.data(), qaft::detail::nf4_dequantize_range_scalar); }));
    results.push_back(bench_bytes((b16 + " rows").c_str(), rows_in + 2 * n, threads,
                                  [&] { by_rows(out_h.data(), qaft::nf4_dequantize_rows_bf16); }));
    if (avx512) {
      results.push_back(bench_bytes(
          (b16 + " kernel avx512").c_str(), kernel_in + 2 * n, threads,
          [&] { by_range(out_h.data(), qaft::detail::nf4_dequantize_range_bf16_avx512); }));
    }
    results.push_back(bench_bytes(
        (b16 + " kernel scalar").c_str(), kernel_in + 2 * n, threads,
        [&] { by_range(out_h.data(), qaft::detail::nf4_dequantize_range_bf16_scalar); }));
  }
}

}  // namespace

int main() {
  qaft::bench::bench_print_header(
      "bench_nf4: NF4 -> fp32/bf16 dequantization vs memcpy",
      "blocksize 64, double quantization (QLoRA: 8-bit absmax, nested blocks of 256), weights "
      "N(0, 0.02); best of 15 after 2 warm-up runs, kernel and memcpy alternating; threads split "
      "rows (public path) or elements (kernels)");
  std::vector<BenchResult> results;
  bench_shape(4096, 4096, results);
  bench_shape(7168, 2048, results);
  qaft::bench::print_ratio_table(results);
  return 0;
}
