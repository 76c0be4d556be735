// DType — every element type qaft stores or computes with.
//
// Storage size is in bits because NF4 packs two codes per byte. E5M6 (DeepSeek-V3's 12-bit
// activation format) is stored one value per uint16 in the low 12 bits; see src/numerics/e5m6.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace qaft {

enum class DType : uint8_t {
  kF64,
  kF32,
  kBF16,
  kF16,
  kE5M6,  // 12-bit float (1 sign, 5 exponent, 6 mantissa) in a uint16 container
  kE4M3,  // OCP FP8 E4M3 "fn": max 448, no inf, NaN = S.1111.111
  kE5M2,  // OCP FP8 E5M2: max 57344, IEEE-like inf/NaN
  kE8M0,  // unsigned power-of-two scale (MX UE8M0), value 2^(e-127), 0xFF = NaN
  kNF4,   // 4-bit NormalFloat code (bitsandbytes), two per byte, even element in high nibble
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
};

// Bits one element occupies in storage (4 for NF4, 16 for E5M6's container).
int dtype_bits(DType t);
// Bytes needed for n elements (rounded up for sub-byte types).
size_t dtype_bytes(DType t, size_t n);
// Lower-case name used in logs and the CLI ("bf16", "e4m3").
std::string_view dtype_name(DType t);
// Inverse of dtype_name; nullopt for an unknown name.
std::optional<DType> dtype_from_name(std::string_view name);
bool dtype_is_float(DType t);

}  // namespace qaft
