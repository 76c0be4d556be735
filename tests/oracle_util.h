// Shared helpers for tests that compare qaft's codecs with the CUDA toolkit's host conversions.
#pragma once

#include "core/rng.h"
#include "numerics/bf16.h"
#include "numerics/fp16.h"
#include "numerics/fp8.h"
#include "numerics/ue8m0.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#ifdef QAFT_HAVE_CUDA_FP8
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#endif

namespace qaft::test {

// Counts mismatches and remembers the first few, so a failure prints the offending inputs.
struct Mismatch {
  int64_t count = 0;
  std::vector<std::string> examples;
  template <typename A, typename B>
  void check(A got, B want, uint64_t input) {
    if (static_cast<uint64_t>(got) == static_cast<uint64_t>(want)) return;
    if (++count <= 8) {
      std::ostringstream s;
      s << std::hex << "input 0x" << input << ": got 0x" << static_cast<uint64_t>(got) << ", want 0x"
        << static_cast<uint64_t>(want);
      examples.push_back(s.str());
    }
  }
  std::string report(const char* what) const {
    std::string s = "\n" + std::to_string(count) + " mismatching " + what + "(s)";
    for (const auto& e : examples) s += "\n  " + e;
    return s;
  }
};

// n random fp32 bit patterns (every exponent, NaNs and infinities included).
inline std::vector<float> random_fp32_patterns(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  CounterRng rng(seed, 0);
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = std::bit_cast<float>(rng.u32(static_cast<uint64_t>(i)));
  return v;
}

#ifdef QAFT_HAVE_CUDA_FP8
inline __nv_saturation_t cuda_sat(Saturation s) {
  return s == Saturation::kSatFinite ? __NV_SATFINITE : __NV_NOSAT;
}
inline __nv_fp8_interpretation_t cuda_fmt(Fp8Format f) { return f == Fp8Format::kE4M3 ? __NV_E4M3 : __NV_E5M2; }
inline cudaRoundMode cuda_round(E8m0Rounding r) {
  return r == E8m0Rounding::kTowardZero ? cudaRoundZero : cudaRoundPosInf;
}
#endif

}  // namespace qaft::test
