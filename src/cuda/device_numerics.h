// Scalar numerics of the CUDA kernels, written once for device and host: under nvcc every function
// is __host__ __device__; under a plain C++ compiler it is ordinary inline code. The kernels call
// these functions, and tests/cuda/cuda_device_math_test.cpp (a host test, no GPU needed) checks the
// very same code bit for bit against the CPU reference in numerics/*.h and optim/adamw.cpp.
//
// Bit-exactness rules (the CPU reference is built with -std=c++20, hence -ffp-contract=off, and for
// x86-64-v2 without FMA, so it never fuses a multiply and an add):
//   - arithmetic that must match bit for bit goes through mul_rn/add_rn/sub_rn/div_rn/sqrt_rn, which
//     map to the __f*_rn intrinsics on the device: correctly rounded, never contracted into FMA
//     (nvcc contracts a*b+c in device code by default);
//   - FP8/BF16 encoding is integer arithmetic on the fp32 bit pattern (no double, no ldexp), which
//     equals the CPU's double-precision nearbyint for every input (checked over sweeps of all
//     exponents in the host test);
//   - NaN results are compared by NaN-ness, not payload (an x86 multiply keeps a NaN operand's
//     payload and sign, the GPU returns the canonical NaN).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define QAFT_HD __host__ __device__ __forceinline__
#else
#define QAFT_HD inline
#endif

namespace qaft::cuda::dn {

// ---- fp32 bit access and correctly rounded, uncontracted arithmetic ------------------------------

QAFT_HD uint32_t bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
QAFT_HD float from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
QAFT_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
QAFT_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
QAFT_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
QAFT_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
QAFT_HD float sqrt_rn(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
QAFT_HD bool is_nan(float x) { return (bits(x) & 0x7FFFFFFFu) > 0x7F800000u; }
QAFT_HD bool is_finite(float x) { return (bits(x) & 0x7FFFFFFFu) < 0x7F800000u; }
QAFT_HD float quiet_nan() { return from_bits(0x7FC00000u); }
QAFT_HD float infinity() { return from_bits(0x7F800000u); }

// ---- minifloat codecs (numerics/minifloat.h) ----------------------------------------------------

// fp32 -> code of a minifloat with E exponent bits, M mantissa bits, bias B; FN = finite-only
// ("fn" layout: no inf, only all-ones is NaN). Round to nearest even; satfinite clamps overflow to
// ±max finite, otherwise ±inf (IEEE-like) or the NaN code with sign (fn). NaN -> canonical NaN code.
template <int E, int M, int B, bool FN>
QAFT_HD uint32_t minifloat_encode(float x, bool satfinite) {
  constexpr uint32_t kSignBit = 1u << (E + M);
  constexpr uint32_t kNanCode = kSignBit - 1;
  constexpr uint32_t kInfCode = ((1u << E) - 1) << M;
  constexpr uint32_t kMaxFinite = FN ? kSignBit - 2 : kInfCode - 1;
  const uint32_t b = bits(x);
  const uint32_t sign = (b >> 31) ? kSignBit : 0u;
  const uint32_t abs = b & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return kNanCode;
  const int e32 = static_cast<int>(abs >> 23);
  const int target_exp = e32 - 127 + B;
  uint32_t mag;
  if (abs == 0x7F800000u) {
    mag = kMaxFinite + 1;  // overflow
  } else if (target_exp >= 1) {
    // Normal in the target: keep M mantissa bits, round the dropped 23-M bits to nearest even (a
    // carry out of the mantissa bumps the exponent, as it should).
    constexpr int kDrop = 23 - M;
    constexpr uint32_t kHalf = 1u << (kDrop - 1);
    mag = (static_cast<uint32_t>(target_exp) << M) | ((abs & 0x7FFFFFu) >> kDrop);
    const uint32_t rest = abs & ((1u << kDrop) - 1);
    if (rest > kHalf || (rest == kHalf && (mag & 1u))) ++mag;
  } else {
    // Subnormal (or zero) in the target: code = |x| / 2^(1-B-M) rounded half to even. With the
    // 24-bit significand sig and e = max(e32, 1), |x| = sig · 2^(e-150), so code = sig / 2^shift
    // with shift = 151 - B - M - e >= 24 - M > 0 here. A result of 2^M is the smallest normal.
    const int e = e32 == 0 ? 1 : e32;
    const uint32_t sig = (abs & 0x7FFFFFu) | (e32 == 0 ? 0u : 0x800000u);
    const int shift = 151 - B - M - e;
    if (shift >= 32) {
      mag = 0;  // sig < 2^24 <= half an ulp of the code: rounds to zero
    } else {
      mag = sig >> shift;
      const uint32_t rest = sig & ((1u << shift) - 1);
      const uint32_t half = 1u << (shift - 1);
      if (rest > half || (rest == half && (mag & 1u))) ++mag;
    }
  }
  if (mag > kMaxFinite) {
    if (satfinite) return sign | kMaxFinite;
    return sign | (FN ? kNanCode : kInfCode);
  }
  return sign | mag;
}

// code -> fp32, exact. NaN codes decode to the quiet NaN with the code's sign (as the CPU).
template <int E, int M, int B, bool FN>
QAFT_HD float minifloat_decode(uint32_t code) {
  constexpr uint32_t kSignBit = 1u << (E + M);
  const bool negative = (code & kSignBit) != 0;
  const uint32_t mag = code & (kSignBit - 1);
  const uint32_t exp = mag >> M;
  const uint32_t man = mag & ((1u << M) - 1);
  float v;
  if (FN ? mag == kSignBit - 1 : exp == (1u << E) - 1) {
    v = (!FN && man == 0) ? infinity() : quiet_nan();
  } else if (exp == 0) {
    // man · 2^(1-B-M): both factors exact, so is the product.
    v = static_cast<float>(man) * from_bits(static_cast<uint32_t>(127 + 1 - B - M) << 23);
  } else {
    v = from_bits(((exp - B + 127) << 23) | (man << (23 - M)));
  }
  return negative ? -v : v;
}

QAFT_HD uint8_t e4m3_encode(float x) { return static_cast<uint8_t>(minifloat_encode<4, 3, 7, true>(x, true)); }
QAFT_HD uint8_t e5m2_encode(float x) { return static_cast<uint8_t>(minifloat_encode<5, 2, 15, false>(x, true)); }
QAFT_HD float e4m3_decode(uint8_t c) { return minifloat_decode<4, 3, 7, true>(c); }
QAFT_HD float e5m2_decode(uint8_t c) { return minifloat_decode<5, 2, 15, false>(c); }
// Element format as in numerics/fp8.h (Fp8Format: 0 = E4M3, 1 = E5M2), saturating.
QAFT_HD uint8_t fp8_encode(float x, bool e5m2) { return e5m2 ? e5m2_encode(x) : e4m3_encode(x); }
QAFT_HD float fp8_decode(uint8_t c, bool e5m2) { return e5m2 ? e5m2_decode(c) : e4m3_decode(c); }
QAFT_HD float fp8_max(bool e5m2) { return e5m2 ? 57344.0f : 448.0f; }

// BF16 round to nearest even; NaN -> 0x7FFF (numerics/bf16.h).
QAFT_HD uint16_t bf16_from_float(float x) {
  const uint32_t b = bits(x);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFF;
  return static_cast<uint16_t>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}
QAFT_HD float bf16_to_float(uint16_t h) { return from_bits(static_cast<uint32_t>(h) << 16); }

// ---- block scales (numerics/ue8m0.h, scale_recipe.h) --------------------------------------------

// The smallest power of two >= s for positive finite s, as numerics/ue8m0.cpp's pow2_ceil
// (UE8M0 toward +inf, saturating at 2^127; NaN stays NaN).
QAFT_HD float pow2_ceil(float s) {
  const uint32_t abs = bits(s) & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return quiet_nan();
  uint32_t e = abs >> 23;
  if ((abs & 0x7FFFFFu) != 0 && abs > 0x00400000u && abs < 0x7F800000u) ++e;
  if (e >= 0xFF) e = 0xFE;
  return e == 0 ? from_bits(0x00400000u) : from_bits(e << 23);
}

// σ of one block with absolute maximum amax (fp8.cpp's fp8_tile_scale): NaN for non-finite amax,
// 1 for amax = floor = 0, else max(amax, floor) / fmax, rounded up to a power of two when pow2.
QAFT_HD float tile_scale(float amax, float amax_floor, bool pow2, bool e5m2) {
  if (!is_finite(amax)) return quiet_nan();
  const float a = amax > amax_floor ? amax : amax_floor;
  if (a == 0.0f) return 1.0f;
  const float s = div_rn(a, fp8_max(e5m2));
  return pow2 ? pow2_ceil(s) : s;
}

// max|x| as an ordered integer: for |x| the fp32 bit pattern orders like the value, and every NaN
// pattern exceeds inf's, so an unsigned max over abs_bits() is amax() with NaN sticky.
QAFT_HD uint32_t abs_bits(float x) { return bits(x) & 0x7FFFFFFFu; }
// amax from such a maximum: the value itself, NaN for any NaN pattern.
QAFT_HD float amax_from_bits(uint32_t m) { return m > 0x7F800000u ? quiet_nan() : from_bits(m); }

// Quantize one element with its block's σ (x / σ, RNE, saturating) and dequantize a code.
QAFT_HD uint8_t quantize_element(float x, float scale, bool e5m2) { return fp8_encode(div_rn(x, scale), e5m2); }
QAFT_HD float dequantize_element(uint8_t code, float scale, bool e5m2) {
  return mul_rn(fp8_decode(code, e5m2), scale);
}

// ---- NF4 (numerics/nf4.h) -----------------------------------------------------------------------

// dQuantizeNF4's decision tree with the thresholds of nf4.h (kNf4Threshold, parsed as float
// literals as there); ties go to the lower index. The host test checks these literals against the
// CPU table.
QAFT_HD uint8_t nf4_encode(float u) {
  if (u > 0.03979014977812767f) {
    if (u > 0.3893125355243683f) {
      if (u > 0.6427869200706482f) return u > 0.8614784181118011f ? 15 : 14;
      return u > 0.5016634166240692f ? 13 : 12;
    }
    if (u > 0.2035212516784668f) return u > 0.2920137718319893f ? 11 : 10;
    return u > 0.1202552504837513f ? 9 : 8;
  }
  if (u > -0.33967943489551544f) {
    if (u > -0.13791173323988914f) return u > -0.045525018125772476f ? 7 : 6;
    return u > -0.23460740596055984f ? 5 : 4;
  }
  if (u > -0.6106329262256622f) return u > -0.4599952697753906f ? 3 : 2;
  return u > -0.8480964004993439f ? 1 : 0;
}
inline constexpr int kNf4ZeroIndex = 7;
inline constexpr float kNf4MinAbsmax = 1e-38f;
// The reciprocal an NF4 block is scaled by: 1 / max(absmax, 1e-38).
QAFT_HD float nf4_inverse(float absmax) { return div_rn(1.0f, absmax > kNf4MinAbsmax ? absmax : kNf4MinAbsmax); }
// Index of element i within a packed NF4 buffer (even element in the high nibble).
QAFT_HD uint32_t nf4_index(const uint8_t* packed, int64_t i) {
  const uint8_t byte = packed[i >> 1];
  return (i & 1) ? (byte & 0xFu) : (byte >> 4);
}
// Double-quantized absmax: nested_map[code] · absmax2 + offset, two fp32 roundings.
QAFT_HD float nf4_nested_absmax(float nested_value, float absmax2, float offset) {
  return add_rn(mul_rn(nested_value, absmax2), offset);
}

// ---- AdamW (optim/adamw.cpp) --------------------------------------------------------------------

// Per-step constants, computed on the host exactly as AdamW::step does (see adamw_scalars()).
struct AdamWScalars {
  float decay_factor;  // 1 − lr·λ (fp32 of the double product)
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;     // lr / (1 − β1^t), an fp32 division
  float bc2_sqrt;      // sqrt(1 − β2^t) (double, then fp32)
  float eps;
};

#if !defined(__CUDA_ARCH__)
// The per-step constants exactly as AdamW::step computes them (host only: double std::pow).
// step is 1-based (AdamW::steps() after its increment).
inline AdamWScalars adamw_scalars(double beta1, double beta2, double eps, double weight_decay, int64_t step,
                                  double lr) {
  AdamWScalars s{};
  const float bc1 = static_cast<float>(1.0 - std::pow(beta1, static_cast<double>(step)));
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step))));
  s.decay_factor = static_cast<float>(1.0 - lr * weight_decay);
  s.beta1 = static_cast<float>(beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta1 = 1.0f - s.beta1;
  s.one_minus_beta2 = 1.0f - s.beta2;
  s.eps = static_cast<float>(eps);
  s.step_size = static_cast<float>(lr) / bc1;
  return s;
}
#endif

// One parameter's update; m, v are the moments as fp32 values (for bf16 moments the caller rounds
// them with bf16_from_float after this and passes the rounded values; see adamw_element_bf16).
QAFT_HD void adamw_moments(float g, float& m, float& v, const AdamWScalars& s) {
  m = add_rn(mul_rn(s.beta1, m), mul_rn(s.one_minus_beta1, g));
  v = add_rn(mul_rn(s.beta2, v), mul_rn(mul_rn(s.one_minus_beta2, g), g));
}
QAFT_HD float adamw_param(float p, float m, float v, const AdamWScalars& s) {
  return sub_rn(p, div_rn(mul_rn(s.step_size, m), add_rn(div_rn(sqrt_rn(v), s.bc2_sqrt), s.eps)));
}
QAFT_HD void adamw_element_f32(float& p, float g, float& m, float& v, bool decay, const AdamWScalars& s) {
  if (decay) p = mul_rn(p, s.decay_factor);
  adamw_moments(g, m, v, s);
  p = adamw_param(p, m, v, s);
}
QAFT_HD void adamw_element_bf16(float& p, float g, uint16_t& m16, uint16_t& v16, bool decay,
                                const AdamWScalars& s) {
  if (decay) p = mul_rn(p, s.decay_factor);
  float m = bf16_to_float(m16), v = bf16_to_float(v16);
  adamw_moments(g, m, v, s);
  m16 = bf16_from_float(m);
  v16 = bf16_from_float(v);
  p = adamw_param(p, bf16_to_float(m16), bf16_to_float(v16), s);
}

// ---- RoPE (kernels/cpu/rope.cpp) ----------------------------------------------------------------

// Rotates the pair (a, b) by the angle with cosine c and (signed) sine s, as rope_apply's float path.
QAFT_HD void rope_rotate(float& a, float& b, float c, float s) {
  const float x = a, y = b;
  a = sub_rn(mul_rn(x, c), mul_rn(y, s));
  b = add_rn(mul_rn(x, s), mul_rn(y, c));
}

// ---- MoE router, one token (model/moe.cpp, moe_route) -------------------------------------------

inline constexpr int kMaxExperts = 512;  // E the device router supports (per-thread scratch)
inline constexpr int kMaxGroups = 64;

struct RouterParams {
  int32_t experts;            // E
  int32_t top_k;              // K
  int32_t n_group;            // groups of experts (1 = none)
  int32_t topk_group;         // groups kept
  bool sigmoid;               // scoring: sigmoid (DeepSeek-V3) or softmax
  bool grouped;               // n_group > 1 and a group-limited method
  bool group_by_top2_sum;     // noaux_tc: group score = sum of the two largest; else the max
  bool norm_topk_prob;        // renormalize the chosen weights
  float routed_scaling_factor;// fp32 of the config's double
};

QAFT_HD float exp_f(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);  // full-precision expf (no --use_fast_math): within 2 ulp of the CPU's std::exp
#else
  return std::exp(x);
#endif
}

// Routes one token: logits [E] -> scores [E] (sigmoid or softmax), topk [K] expert ids, w [K]
// combine weights. choice [E] is scratch. Same order of operations as moe_route; selection is
// K passes of "largest choice, lowest index on ties", which is what its partial_sort with that
// strict total order yields.
QAFT_HD void route_token(const float* logits, const float* bias, const RouterParams& p, float* scores,
                         float* choice, int32_t* topk, float* w) {
  const int E = p.experts;
  if (p.sigmoid) {
    for (int e = 0; e < E; ++e) scores[e] = 1.0f / (1.0f + exp_f(-logits[e]));
  } else {
    float mx = logits[0];
    for (int e = 1; e < E; ++e) mx = logits[e] > mx ? logits[e] : mx;  // std::max_element: first max
    float sum = 0.0f;
    for (int e = 0; e < E; ++e) sum += (scores[e] = exp_f(logits[e] - mx));
    for (int e = 0; e < E; ++e) scores[e] /= sum;
  }
  for (int e = 0; e < E; ++e) choice[e] = bias ? scores[e] + bias[e] : scores[e];
  if (p.grouped) {
    const int G = p.n_group, per = E / G;
    float gscore[kMaxGroups];
    for (int g = 0; g < G; ++g) {
      const float* b = choice + g * per;
      if (p.group_by_top2_sum) {
        float a1 = -infinity(), a2 = a1;
        for (int j = 0; j < per; ++j) {
          if (b[j] > a1) {
            a2 = a1;
            a1 = b[j];
          } else if (b[j] > a2) {
            a2 = b[j];
          }
        }
        gscore[g] = per > 1 ? a1 + a2 : a1;
      } else {
        float m = b[0];
        for (int j = 1; j < per; ++j) m = b[j] > m ? b[j] : m;
        gscore[g] = m;
      }
    }
    // A group is kept when its rank in a stable descending sort is < topk_group.
    for (int g = 0; g < G; ++g) {
      int rank = 0;
      for (int o = 0; o < G; ++o) rank += gscore[o] > gscore[g] || (gscore[o] == gscore[g] && o < g);
      if (rank >= p.topk_group)
        for (int j = 0; j < per; ++j) choice[g * per + j] = -infinity();
    }
  }
  float sum = 0.0f;
  for (int k = 0; k < p.top_k; ++k) {
    int best = -1;
    for (int e = 0; e < E; ++e) {
      bool taken = false;
      for (int j = 0; j < k; ++j) taken |= topk[j] == e;
      if (taken) continue;
      if (best < 0 || choice[e] > choice[best]) best = e;  // strict >: ties keep the lower index
    }
    topk[k] = best;
    sum += scores[best];
  }
  for (int k = 0; k < p.top_k; ++k) {
    float wk = scores[topk[k]];
    if (p.norm_topk_prob) wk /= sum;
    w[k] = wk * p.routed_scaling_factor;
  }
}

}  // namespace qaft::cuda::dn
