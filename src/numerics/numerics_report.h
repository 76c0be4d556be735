// The numerics report behind `qaft numerics`: measurements that reproduce the claims of
// DeepSeek-V3's FP8 design with qaft's own codecs (tables a–d below). Pure computation; the CLI
// renders the tables as text or JSON.
//   (a) quantization error of activations with outlier channels, per granularity
//   (b) E4M3 vs E5M2 under fine-grained (1×128) and per-tensor scaling
//   (c) dot-product error of a limited-precision accumulator vs promotion every 128 products
//   (d) fp32 vs power-of-two (UE8M0) scales
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace qaft {

using ReportCell = std::variant<std::string, double, int64_t>;

struct ReportTable {
  std::string id;                              // "a", "b", ...
  std::string title;                           // one line
  std::string note;                            // how it was measured, what to read from it
  std::vector<std::string> columns;            // header
  std::vector<std::vector<ReportCell>> rows;   // [rows][columns]
};

struct NumericsReportConfig {
  uint64_t seed = 20241226;        // RNG seed (Philox), the report is deterministic for a seed
  int64_t rows = 256;              // activation rows (tokens)
  int64_t cols = 7168;             // activation width (DeepSeek-V3 hidden size)
  double outlier_fraction = 0.002; // fraction of channels that are outliers
  double outlier_scale = 1000.0;   // outlier channel magnitude relative to the rest
  int64_t dots_per_k = 64;         // dot products per K in table (c)
  std::vector<int64_t> dot_ks = {4096, 7168, 16384};
};

std::vector<ReportTable> numerics_report(const NumericsReportConfig& config);

}  // namespace qaft
