#include "core/dtype.h"

#include <array>

namespace qaft {
namespace {
struct DTypeInfo {
  DType type;
  int bits;
  std::string_view name;
  bool is_float;
};
constexpr std::array<DTypeInfo, 15> kInfo = {{
    {DType::kF64, 64, "f64", true},   {DType::kF32, 32, "f32", true},
    {DType::kBF16, 16, "bf16", true}, {DType::kF16, 16, "f16", true},
    {DType::kE5M6, 16, "e5m6", true}, {DType::kE4M3, 8, "e4m3", true},
    {DType::kE5M2, 8, "e5m2", true},  {DType::kE8M0, 8, "e8m0", true},
    {DType::kNF4, 4, "nf4", true},    {DType::kI64, 64, "i64", false},
    {DType::kI32, 32, "i32", false},  {DType::kI16, 16, "i16", false},
    {DType::kI8, 8, "i8", false},     {DType::kU8, 8, "u8", false},
    {DType::kBool, 8, "bool", false},
}};
const DTypeInfo& info(DType t) { return kInfo[static_cast<size_t>(t)]; }
}  // namespace

int dtype_bits(DType t) { return info(t).bits; }
size_t dtype_bytes(DType t, size_t n) { return (n * static_cast<size_t>(info(t).bits) + 7) / 8; }
std::string_view dtype_name(DType t) { return info(t).name; }
bool dtype_is_float(DType t) { return info(t).is_float; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& i : kInfo)
    if (i.name == name) return i.type;
  return std::nullopt;
}

}  // namespace qaft
