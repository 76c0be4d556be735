// oneDNN plumbing shared by the CPU kernels: one engine, a stream per thread, the ISA cap, and the
// translation of oneDNN failures into qaft::Error.
//
// Debian's oneDNN 2.6 dies with SIGILL in its AMX kernels on hypervisors that hide CPUID leaves
// 0x1D/0x1E (Sapphire/Emerald Rapids VMs), so the first use caps its ISA below AMX
// (dnnl::set_max_cpu_isa) before any primitive exists. On a CPU that reports AMX tiles the process
// also asks the kernel for tile-data permission once (arch_prctl ARCH_REQ_XCOMP_PERM), for qaft's
// own AMX kernels; a refusal is logged, never fatal.
#pragma once

#include "core/error.h"

#include <dnnl.hpp>

namespace qaft::detail {

// The CPU engine (created on first call, after the ISA cap). Thread-safe.
const dnnl::engine& dnnl_cpu_engine();
// This thread's stream on that engine (oneDNN streams are not meant to be shared between threads).
dnnl::stream& dnnl_thread_stream();
// The ISA oneDNN ended up using, as a name ("avx512_core_bf16"), for logs and benchmarks.
const char* dnnl_isa_name();
// Result of the AMX permission request: 1 granted, 0 refused, -1 not attempted (no AMX tiles).
int amx_permission_status();

[[noreturn]] void throw_dnnl_error(const dnnl::error& e, const char* what, const char* file, int line);

}  // namespace qaft::detail

// QAFT_DNNL_TRY("creating matmul", stmt; stmt; ...) runs oneDNN calls and turns a dnnl::error
// into a qaft::Error (kInternal) naming the step, oneDNN's status and message, and file:line.
#define QAFT_DNNL_TRY(what, ...)                                             \
  do {                                                                       \
    try {                                                                    \
      __VA_ARGS__                                                            \
    } catch (const dnnl::error& qaft_dnnl_e_) {                              \
      ::qaft::detail::throw_dnnl_error(qaft_dnnl_e_, what, __FILE__, __LINE__); \
    }                                                                        \
  } while (0)
