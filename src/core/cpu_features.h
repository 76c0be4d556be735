// What this CPU can run, probed once (CPUID + OS support via XGETBV).
//
// Kernels are compiled for several ISAs and chosen at run time from these flags; the build itself
// targets portable x86-64-v2 unless QAFT_NATIVE is set. QAFT_CPU_ISA=scalar|avx2 caps the choice
// (tests use it to exercise every path on one machine).
#pragma once

#include <string>

namespace qaft {

struct CpuFeatures {
  bool avx2 = false;
  bool f16c = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512bf16 = false;
  bool avx512fp16 = false;
  bool amx_tile = false;
  bool amx_bf16 = false;
  std::string vendor;  // "GenuineIntel", "AuthenticAMD"

  // The AVX-512 subset our vectorized codecs use (F + BW + VL).
  bool has_avx512_codecs() const { return avx512f && avx512bw && avx512vl; }
  std::string summary() const;  // "avx2 avx512f avx512bw ..."
};

// Probed on first call; honours QAFT_CPU_ISA.
const CpuFeatures& cpu_features();

}  // namespace qaft
