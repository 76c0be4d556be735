#include "kernels/cpu/onednn.h"

#include "core/cpu_features.h"
#include "core/log.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace qaft::detail {
namespace {

constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

int g_amx_permission = -1;

const char* status_name(dnnl_status_t s) {
  switch (s) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out_of_memory";
    case dnnl_invalid_arguments: return "invalid_arguments";
    case dnnl_unimplemented: return "unimplemented";
    case dnnl_iterator_ends: return "iterator_ends";
    case dnnl_runtime_error: return "runtime_error";
    case dnnl_not_required: return "not_required";
  }
  return "unknown";
}

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::all: return "all";
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
  }
  return "unknown";
}

// Once per process, before any primitive: AMX permission (for our own kernels) and oneDNN's cap.
void init_once() {
  const CpuFeatures& f = cpu_features();
  if (f.amx_tile) {
    const long rc = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata);
    g_amx_permission = rc == 0 ? 1 : 0;
    if (rc == 0)
      QAFT_LOG(kDebug, "AMX tile data permission granted");
    else
      QAFT_LOG(kWarn, "AMX tile data permission refused by the kernel (arch_prctl rc {}); AMX kernels stay off", rc);
  }
  // Never above AVX512_CORE_BF16 (oneDNN 2.6's AMX path crashes on hypervisors hiding CPUID 0x1D/0x1E);
  // lower still when QAFT_CPU_ISA capped our own dispatch, so that both follow the same switch.
  const dnnl::cpu_isa cap = f.has_avx512_codecs() ? dnnl::cpu_isa::avx512_core_bf16
                            : f.avx2              ? dnnl::cpu_isa::avx2
                                                  : dnnl::cpu_isa::sse41;
  try {
    dnnl::set_max_cpu_isa(cap);
  } catch (const dnnl::error& e) {
    // Fails when the ISA was already fixed (DNNL_MAX_CPU_ISA in the environment, or a primitive
    // made by someone else first). Not fatal, but the AMX hazard may remain: say so.
    QAFT_LOG(kWarn, "oneDNN ISA cap to {} not applied ({}: {}); effective ISA {}", isa_name(cap),
             status_name(e.status), e.what(), isa_name(dnnl::get_effective_cpu_isa()));
    return;
  }
  QAFT_LOG(kDebug, "oneDNN ISA capped to {} (effective {})", isa_name(cap),
           isa_name(dnnl::get_effective_cpu_isa()));
}

void ensure_init() {
  static std::once_flag once;
  std::call_once(once, init_once);
}

}  // namespace

void throw_dnnl_error(const dnnl::error& e, const char* what, const char* file, int line) {
  throw_error(ErrorKind::kInternal, file, line,
              fmt::format("oneDNN failed while {}: {} ({})", what, e.what(), status_name(e.status)),
              "this is a bug in qaft or an unsupported oneDNN build; QAFT_CPU_ISA=avx2 or "
              "DNNL_VERBOSE=1 may help to narrow it down");
}

const dnnl::engine& dnnl_cpu_engine() {
  static const dnnl::engine* engine = [] {
    ensure_init();
    dnnl::engine* e = nullptr;
    QAFT_DNNL_TRY("creating the CPU engine", e = new dnnl::engine(dnnl::engine::kind::cpu, 0););
    return e;
  }();
  return *engine;
}

dnnl::stream& dnnl_thread_stream() {
  thread_local dnnl::stream stream = [] {
    dnnl::stream s;
    QAFT_DNNL_TRY("creating a CPU stream", s = dnnl::stream(dnnl_cpu_engine()););
    return s;
  }();
  return stream;
}

const char* dnnl_isa_name() {
  ensure_init();
  return isa_name(dnnl::get_effective_cpu_isa());
}

int amx_permission_status() {
  ensure_init();
  return g_amx_permission;
}

}  // namespace qaft::detail
