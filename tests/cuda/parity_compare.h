// The comparator of the CPU/CUDA parity tests (the FlashMLA/ggml test-backend-ops idea): absolute
// and relative error, cosine similarity, and where NaN and ±inf appear — a NaN or inf on one side
// only, or at different places, is a failure whatever the tolerance. Failures name the worst
// element, its index and both values.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace qaft::test {

struct ParityStats {
  int64_t n = 0;
  double max_abs = 0.0;            // max |got − want| over elements finite on both sides
  double max_rel = 0.0;            // max |got − want| / max(|want|, tiny) over the same
  int64_t worst = -1;              // index of the largest excess over atol + rtol·|want|
  double worst_excess = 0.0;       // that excess (> 0 means out of tolerance)
  double cosine = 1.0;             // ⟨got, want⟩ / (|got|·|want|) over the finite pairs (1 if both zero)
  int64_t nonfinite_mismatch = 0;  // elements where NaN/±inf placement differs
  int64_t first_nonfinite_mismatch = -1;
  int64_t bit_mismatch = 0;        // elements whose fp32 bit patterns differ (NaN vs NaN counts equal)
  int64_t first_bit_mismatch = -1;
};

inline ParityStats parity_stats(const float* got, const float* want, int64_t n, double atol, double rtol) {
  ParityStats s;
  s.n = n;
  double dot = 0.0, gg = 0.0, ww = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float g = got[i], w = want[i];
    uint32_t gb, wb;
    std::memcpy(&gb, &g, 4);
    std::memcpy(&wb, &w, 4);
    const bool gn = std::isnan(g), wn = std::isnan(w);
    if (gb != wb && !(gn && wn)) {
      if (s.bit_mismatch++ == 0) s.first_bit_mismatch = i;
    }
    const bool gf = std::isfinite(g), wf = std::isfinite(w);
    if (gf != wf || gn != wn || (!gf && !gn && !wn && g != w)) {  // placement or sign of inf differs
      if (s.nonfinite_mismatch++ == 0) s.first_nonfinite_mismatch = i;
      continue;
    }
    if (!gf) continue;
    const double d = std::fabs(static_cast<double>(g) - w);
    s.max_abs = std::max(s.max_abs, d);
    s.max_rel = std::max(s.max_rel, d / std::max(std::fabs(static_cast<double>(w)), 1e-30));
    const double excess = d - (atol + rtol * std::fabs(static_cast<double>(w)));
    if (s.worst < 0 || excess > s.worst_excess) {
      s.worst = i;
      s.worst_excess = excess;
    }
    dot += static_cast<double>(g) * w;
    gg += static_cast<double>(g) * g;
    ww += static_cast<double>(w) * w;
  }
  if (gg > 0 || ww > 0) s.cosine = (gg > 0 && ww > 0) ? dot / std::sqrt(gg * ww) : 0.0;
  return s;
}

inline std::string describe(const ParityStats& s, const float* got, const float* want) {
  std::ostringstream o;
  o.precision(9);
  o << "n=" << s.n << " max_abs=" << s.max_abs << " max_rel=" << s.max_rel << " cosine=" << s.cosine
    << " nonfinite_mismatch=" << s.nonfinite_mismatch << " bit_mismatch=" << s.bit_mismatch;
  if (s.worst >= 0)
    o << "; worst [" << s.worst << "] got " << got[s.worst] << " want " << want[s.worst] << " (excess "
      << s.worst_excess << ")";
  if (s.first_nonfinite_mismatch >= 0)
    o << "; first NaN/inf mismatch [" << s.first_nonfinite_mismatch << "] got " << got[s.first_nonfinite_mismatch]
      << " want " << want[s.first_nonfinite_mismatch];
  if (s.first_bit_mismatch >= 0)
    o << "; first bit mismatch [" << s.first_bit_mismatch << "] got " << got[s.first_bit_mismatch] << " want "
      << want[s.first_bit_mismatch];
  return o.str();
}

// Within |got − want| <= atol + rtol·|want| everywhere, cosine >= min_cosine, same NaN/inf placement.
inline ::testing::AssertionResult parity_close(const std::vector<float>& got, const std::vector<float>& want,
                                               double atol, double rtol, double min_cosine = 0.999999) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  const ParityStats s = parity_stats(got.data(), want.data(), static_cast<int64_t>(got.size()), atol, rtol);
  if (s.nonfinite_mismatch == 0 && s.worst_excess <= 0 && s.cosine >= min_cosine)
    return ::testing::AssertionSuccess() << describe(s, got.data(), want.data());
  return ::testing::AssertionFailure() << "atol=" << atol << " rtol=" << rtol << " min_cosine=" << min_cosine << ": "
                                       << describe(s, got.data(), want.data());
}

// Bitwise equal (a NaN matches any NaN: payloads differ between x86 and the GPU).
inline ::testing::AssertionResult parity_bitwise(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  const ParityStats s = parity_stats(got.data(), want.data(), static_cast<int64_t>(got.size()), 0.0, 0.0);
  if (s.bit_mismatch == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << describe(s, got.data(), want.data());
}

// Integer arrays (codes, indices): equal element for element.
template <typename T>
::testing::AssertionResult parity_equal(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i] && bad++ == 0) first = static_cast<int64_t>(i);
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << got.size() << " differ; first [" << first << "] got "
                                       << static_cast<int64_t>(got[static_cast<size_t>(first)]) << " want "
                                       << static_cast<int64_t>(want[static_cast<size_t>(first)]);
}

}  // namespace qaft::test
