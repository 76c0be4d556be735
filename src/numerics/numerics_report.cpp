#include "numerics/numerics_report.h"

#include "core/rng.h"
#include "numerics/accumulation.h"
#include "numerics/scale_recipe.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace qaft {
namespace {

// Activations [rows, cols] ~ N(0, 1), with a few whole channels (columns) scaled up: the
// outlier-channel pattern of LLM activations that motivates fine-grained scaling.
struct Activations {
  std::vector<float> x;              // [rows, cols]
  std::vector<uint8_t> outlier_col;  // [cols] 1 for an outlier channel
};

Activations make_activations(const NumericsReportConfig& c, uint64_t stream) {
  Activations a;
  a.x.resize(static_cast<size_t>(c.rows * c.cols));
  a.outlier_col.assign(static_cast<size_t>(c.cols), 0);
  CounterRng rng(c.seed, stream);
  rng.fill_normal(a.x.data(), static_cast<int64_t>(a.x.size()), 0.0f, 1.0f);
  const int64_t n_outliers = std::max<int64_t>(1, static_cast<int64_t>(c.outlier_fraction * c.cols));
  CounterRng pick(c.seed, stream + 1);
  for (int64_t i = 0; i < n_outliers; ++i)
    a.outlier_col[pick.u32(static_cast<uint64_t>(i)) % static_cast<uint32_t>(c.cols)] = 1;
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t col = 0; col < c.cols; ++col)
      if (a.outlier_col[static_cast<size_t>(col)]) a.x[static_cast<size_t>(r * c.cols + col)] *= static_cast<float>(c.outlier_scale);
  return a;
}

struct ErrorStats {
  double mae = 0;             // mean |x - q(x)| over all elements
  double max_abs = 0;         // max |x - q(x)|
  double mean_rel_regular = 0;  // mean |x - q(x)| / |x| over the regular (non-outlier) channels
  double rel_l2_all = 0;      // the same over all elements (dominated by the outliers)
  double zero_fraction = 0;   // share of non-zero regular elements that quantized to 0
};

ErrorStats measure(const Activations& a, const ScaleRecipe& recipe, int64_t rows, int64_t cols) {
  const std::vector<float>& x = a.x;
  std::vector<float> q(x.size());
  fake_quantize(x.data(), rows, cols, recipe, q.data());
  ErrorStats s;
  double err2 = 0, ref2 = 0;
  int64_t zeros = 0, regular = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const int outlier = a.outlier_col[i % static_cast<size_t>(cols)];
    const double e = std::fabs(static_cast<double>(x[i]) - q[i]);
    s.mae += e;
    s.max_abs = std::max(s.max_abs, e);
    err2 += e * e;
    ref2 += static_cast<double>(x[i]) * x[i];
    if (!outlier && x[i] != 0.0f) {
      ++regular;
      s.mean_rel_regular += e / std::fabs(static_cast<double>(x[i]));
      zeros += (x[i] != 0.0f && q[i] == 0.0f);
    }
  }
  s.mae /= static_cast<double>(x.size());
  s.mean_rel_regular /= static_cast<double>(std::max<int64_t>(regular, 1));
  s.rel_l2_all = std::sqrt(err2 / ref2);
  s.zero_fraction = static_cast<double>(zeros) / static_cast<double>(std::max<int64_t>(regular, 1));
  return s;
}

std::vector<ReportCell> stats_cells(std::vector<ReportCell> head, const ErrorStats& s) {
  head.insert(head.end(), {s.mean_rel_regular, s.zero_fraction, s.rel_l2_all, s.mae, s.max_abs});
  return head;
}

const std::vector<std::string> kErrorColumns = {"mean rel. error (regular channels)",
                                                "regular values flushed to 0", "rel. L2 error (all)",
                                                "mean abs error", "max abs error"};

ReportTable table_granularity(const NumericsReportConfig& c, const Activations& x) {
  ReportTable t;
  t.id = "a";
  t.title = "Quantization error of activations with outlier channels, by scaling granularity (E4M3, fp32 scales)";
  t.note = fmt::format(
      "X [{}, {}] ~ N(0,1) with {:.2g}% of channels scaled x{}; error of dequant(quant(X)) against X, "
      "reported separately for the regular channels. DeepSeek-V3's claim: an outlier forces a coarse "
      "scale on every value it shares a scale with, pushing small values into E4M3's subnormal range or "
      "to zero; 1x128 tiles confine that to 128 values. Errors of the outliers themselves are relative "
      "to their size at any granularity (a float format), so the all-element L2 hides the effect.",
      c.rows, c.cols, c.outlier_fraction * 100, c.outlier_scale);
  t.columns = {"granularity"};
  t.columns.insert(t.columns.end(), kErrorColumns.begin(), kErrorColumns.end());
  for (Granularity g : {Granularity::kPerTensor, Granularity::kPerChannel, Granularity::kBlock128x128,
                        Granularity::kTile1x128}) {
    ScaleRecipe r{g, ScaleFormat::kFp32, Fp8Format::kE4M3, 1e-4f};
    t.rows.push_back(stats_cells({std::string(granularity_name(g))}, measure(x, r, c.rows, c.cols)));
  }
  return t;
}

ReportTable table_formats(const NumericsReportConfig& c, const Activations& x) {
  ReportTable t;
  t.id = "b";
  t.title = "E4M3 vs E5M2 under fine-grained and per-tensor scaling (fp32 scales)";
  t.note = "Same activations as (a). With fine-grained scaling the range of E5M2 is not needed and "
           "E4M3's extra mantissa bit halves the rounding error: DeepSeek-V3 uses E4M3 everywhere.";
  t.columns = {"format", "granularity"};
  t.columns.insert(t.columns.end(), kErrorColumns.begin(), kErrorColumns.end());
  for (Granularity g : {Granularity::kTile1x128, Granularity::kPerTensor}) {
    for (Fp8Format f : {Fp8Format::kE4M3, Fp8Format::kE5M2}) {
      ScaleRecipe r{g, ScaleFormat::kFp32, f, 1e-4f};
      t.rows.push_back(stats_cells({std::string(fp8_format_name(f)), std::string(granularity_name(g))},
                                   measure(x, r, c.rows, c.cols)));
    }
  }
  return t;
}

ReportTable table_accumulation(const NumericsReportConfig& c) {
  ReportTable t;
  t.id = "c";
  t.title = "Dot-product error: limited-precision accumulator (14 significant bits) vs promotion to FP32 every 128";
  t.note = fmt::format(
      "{} dot products per K of E4M3-quantized operands (1x128 scales, products exact in fp32) against "
      "the exact float64 sum. 'same-sign' operands (|a|, |b|) are the worst case: the running sum grows "
      "and every addition drops low bits; 'signed' operands partly cancel. Relative error = "
      "|approx - exact| / sum|a_i b_i| per dot product. DeepSeek-V3 reports ~2% worst case at K=4096 "
      "without promotion.",
      c.dots_per_k);
  t.columns = {"K", "operands", "accumulator", "mean relative error", "max relative error"};
  CounterRng rng(c.seed, 100);
  const ScaleRecipe recipe = ScaleRecipe::deepseek_activation();
  uint64_t offset = 0;
  for (int64_t k : c.dot_ks) {
    for (bool same_sign : {true, false}) {
      struct Acc {
        const char* name;
        AccumulatorModel model;
        double sum = 0, max = 0;
      };
      std::vector<Acc> accs = {
          {"truncated, no promotion", {13, 0, AccumulatorRounding::kTowardZero}},
          {"truncated, promote every 128", {13, 128, AccumulatorRounding::kTowardZero}},
          {"round-to-nearest, no promotion", {13, 0, AccumulatorRounding::kNearestEven}},
          {"fp32, no promotion", {23, 0, AccumulatorRounding::kNearestEven}},
      };
      std::vector<float> a(static_cast<size_t>(k)), b(static_cast<size_t>(k));
      for (int64_t d = 0; d < c.dots_per_k; ++d) {
        rng.fill_normal(a.data(), k, 0.0f, 1.0f, offset);
        offset += static_cast<uint64_t>(k);
        rng.fill_normal(b.data(), k, 0.0f, 1.0f, offset);
        offset += static_cast<uint64_t>(k);
        if (same_sign)
          for (int64_t i = 0; i < k; ++i) a[static_cast<size_t>(i)] = std::fabs(a[static_cast<size_t>(i)]), b[static_cast<size_t>(i)] = std::fabs(b[static_cast<size_t>(i)]);
        fake_quantize(a.data(), 1, k, recipe, a.data());
        fake_quantize(b.data(), 1, k, recipe, b.data());
        double exact = 0, abs_sum = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double p = static_cast<double>(a[static_cast<size_t>(i)]) * b[static_cast<size_t>(i)];
          exact += p;
          abs_sum += std::fabs(p);
        }
        for (Acc& acc : accs) {
          const double err = std::fabs(dot_accumulate(a.data(), b.data(), k, acc.model) - exact) / abs_sum;
          acc.sum += err;
          acc.max = std::max(acc.max, err);
        }
      }
      for (const Acc& acc : accs)
        t.rows.push_back({k, std::string(same_sign ? "same-sign" : "signed"), std::string(acc.name),
                          acc.sum / static_cast<double>(c.dots_per_k), acc.max});
    }
  }
  return t;
}

ReportTable table_scale_format(const NumericsReportConfig& c, const Activations& x) {
  ReportTable t;
  t.id = "d";
  t.title = "fp32 scales vs power-of-two (UE8M0) scales, E4M3";
  t.note = "Power-of-two scales make scaling and descaling exact (no rounding from the scale itself) "
           "and fit in 8 bits, at the price of using only part of the E4M3 range (amax/sigma lies in "
           "(224, 448] instead of exactly 448), which costs up to one bit of resolution.";
  t.columns = {"granularity", "scale format"};
  t.columns.insert(t.columns.end(), kErrorColumns.begin(), kErrorColumns.end());
  for (Granularity g : {Granularity::kTile1x128, Granularity::kBlock128x128}) {
    for (ScaleFormat s : {ScaleFormat::kFp32, ScaleFormat::kUe8m0}) {
      ScaleRecipe r{g, s, Fp8Format::kE4M3, 1e-4f};
      t.rows.push_back(stats_cells({std::string(granularity_name(g)), std::string(scale_format_name(s))},
                                   measure(x, r, c.rows, c.cols)));
    }
  }
  return t;
}

}  // namespace

std::vector<ReportTable> numerics_report(const NumericsReportConfig& config) {
  const Activations x = make_activations(config, 1);
  return {table_granularity(config, x), table_formats(config, x), table_accumulation(config),
          table_scale_format(config, x)};
}

}  // namespace qaft
