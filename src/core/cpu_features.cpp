#include "core/cpu_features.h"

#include <cpuid.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

namespace qaft {
namespace {

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures probe() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  char vendor[13] = {};
  std::memcpy(vendor + 0, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.vendor = vendor;
  unsigned max_leaf = a;

  __get_cpuid(1, &a, &b, &c, &d);
  bool osxsave = c & bit_OSXSAVE;
  f.fma = c & bit_FMA;
  f.f16c = c & bit_F16C;
  uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  bool os_avx = (xcr0 & 0x6) == 0x6;            // XMM + YMM state
  bool os_avx512 = (xcr0 & 0xE6) == 0xE6;       // + opmask, ZMM_Hi256, Hi16_ZMM
  bool os_amx = (xcr0 & 0x60000) == 0x60000;    // XTILECFG + XTILEDATA

  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = os_avx && (b & bit_AVX2);
    f.avx512f = os_avx512 && (b & bit_AVX512F);
    f.avx512bw = os_avx512 && (b & bit_AVX512BW);
    f.avx512vl = os_avx512 && (b & bit_AVX512VL);
    f.avx512fp16 = os_avx512 && (d & (1u << 23));
    f.amx_bf16 = os_amx && (d & (1u << 22));
    f.amx_tile = os_amx && (d & (1u << 24));
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512bf16 = os_avx512 && (a & (1u << 5));
  }
  f.fma = f.fma && os_avx;
  f.f16c = f.f16c && os_avx;

  if (const char* cap = std::getenv("QAFT_CPU_ISA")) {
    std::string_view s(cap);
    if (s == "scalar" || s == "avx2") {
      f.avx512f = f.avx512bw = f.avx512vl = f.avx512bf16 = f.avx512fp16 = false;
      f.amx_tile = f.amx_bf16 = false;
    }
    if (s == "scalar") f.avx2 = f.fma = f.f16c = false;
  }
  return f;
}

}  // namespace

std::string CpuFeatures::summary() const {
  std::string s = vendor;
  auto add = [&](bool on, const char* name) {
    if (on) s += std::string(" ") + name;
  };
  add(avx2, "avx2");
  add(fma, "fma");
  add(f16c, "f16c");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512bf16, "avx512bf16");
  add(avx512fp16, "avx512fp16");
  add(amx_tile, "amx-tile");
  add(amx_bf16, "amx-bf16");
  return s;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = probe();
  return features;
}

}  // namespace qaft
