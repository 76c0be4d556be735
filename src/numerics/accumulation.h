// A model of FP8 tensor-core accumulation, and of DeepSeek-V3's fix for it.
//
// DeepSeek-V3 (§3.3.2 of its report) observed that Hopper's FP8 GEMM keeps only about 14 bits of
// the running sum (products are aligned to the largest exponent and the low bits dropped), which
// for K = 4096 costs up to ~2% relative error. Their fix: let the tensor core accumulate only
// N_C = 128 products, then promote the partial sum to an FP32 register on the CUDA cores (where the
// per-block scales are also applied). This model reproduces both:
//   partial ← round_m(partial + a_k·b_k)   (round_m keeps `mantissa_bits` fraction bits)
//   every N_C products: total_fp32 ← total_fp32 + partial; partial ← 0
// promote_interval = 0 means never promote (the whole dot product stays in the limited register).
#pragma once

#include <cstdint>

namespace qaft {

enum class AccumulatorRounding : uint8_t {
  kTowardZero,    // truncation, the behaviour reported for Hopper FP8 MMA
  kNearestEven,   // for comparison
};

struct AccumulatorModel {
  int mantissa_bits = 13;        // fraction bits kept by the limited accumulator (13 + hidden = 14)
  int promote_interval = 128;    // N_C; 0 = never promote
  AccumulatorRounding rounding = AccumulatorRounding::kTowardZero;
};

// x rounded to `mantissa_bits` fraction bits (0..23) in the given mode; exact for 23.
float round_to_mantissa_bits(float x, int mantissa_bits, AccumulatorRounding rounding);

// Σ a[i]·b[i] over k elements under the model (products in fp32, exact for FP8 operands).
float dot_accumulate(const float* a, const float* b, int64_t k, const AccumulatorModel& model);

}  // namespace qaft
