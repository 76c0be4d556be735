// The CUDA runtime layer of qaft_cuda: device detection that never aborts, error translation into
// qaft::Error, owning device buffers (plain cudaMalloc; no managed memory), the stream every op is
// enqueued on, and a per-thread cuBLASLt handle and scratch workspaces.
//
// Every public op in cuda/ops.h calls require_cuda() first, so on a machine without a GPU or
// driver an op throws qaft::Error (kUnsupported) with the reason, rather than crashing; tests call
// cuda_available() and skip with that reason.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace qaft::cuda {

// What was found when the runtime was first asked. Computed once per process.
struct CudaStatus {
  bool available = false;      // a usable device: driver present, device 0 of compute capability 9.x+
  std::string reason;          // why not (empty when available): "no CUDA driver: ...", "no CUDA device"
  int device = -1;             // the device ops run on (always 0 when available)
  int cc_major = 0;            // compute capability of that device
  int cc_minor = 0;
  int sm_count = 0;            // streaming multiprocessors
  std::string name;            // "NVIDIA H100 80GB HBM3"
  size_t memory_bytes = 0;     // total device memory
  int runtime_version = 0;     // cudaRuntimeGetVersion, e.g. 13000
  int driver_version = 0;      // cudaDriverGetVersion (0 when no driver)
  size_t cublaslt_version = 0; // cublasLtGetVersion(), e.g. 130100
};

// Detects the device once (thread-safe); never throws and never aborts.
const CudaStatus& cuda_status();
// True when ops can run; otherwise *reason (if given) says why.
bool cuda_available(std::string* reason = nullptr);
// Throws qaft::Error (kUnsupported) with the reason unless cuda_available(). `what` names the op.
void require_cuda(const char* what);
// One line for logs and benchmark headers: device, capability, SMs, memory, runtime and cuBLASLt.
std::string cuda_describe();

// True when cuBLASLt can run FP8 E4M3 GEMMs with 1×128 / 128×128 fp32 block scales here: the
// header and the loaded library are cuBLAS ≥ 12.9 and the device has compute capability 9.0
// (Hopper; cuBLAS documents these two scale modes for sm_90 only). *reason says why not.
bool cublaslt_block_scaling_supported(std::string* reason = nullptr);

// Throws qaft::Error (kInternal, or kUnsupported for missing driver/device) for a failed CUDA call.
void check_cuda(cudaError_t err, const char* what, const char* file, int line);
// cuBLAS status (cublasStatus_t passed as int so this header needs no cuBLAS include).
void check_cublas(int status, const char* what, const char* file, int line);

#define QAFT_CUDA_CHECK(expr) ::qaft::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
#define QAFT_CUBLAS_CHECK(expr) \
  ::qaft::cuda::check_cublas(static_cast<int>(expr), #expr, __FILE__, __LINE__)
// After a kernel launch: the launch configuration error, if any (kernels run asynchronously).
#define QAFT_CUDA_CHECK_LAUNCH(name) \
  ::qaft::cuda::check_cuda(cudaGetLastError(), name, __FILE__, __LINE__)

// The stream ops of this thread are enqueued on (default: the legacy default stream 0).
cudaStream_t current_stream();
void set_current_stream(cudaStream_t stream);
// Waits for the current stream and reports any asynchronous error of earlier kernels.
void synchronize();

// An owning device allocation (cudaMalloc / cudaFree). Move-only. Zero bytes owns nothing.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }

  // Synchronous copies on the current stream (they wait for it). bytes <= this->bytes().
  void upload(const void* host, size_t bytes);
  void download(void* host, size_t bytes) const;
  void zero();  // cudaMemsetAsync(0) on the current stream

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Typed conveniences for tests and benchmarks.
template <typename T>
DeviceBuffer to_device(const std::vector<T>& host) {
  DeviceBuffer b(host.size() * sizeof(T));
  if (!host.empty()) b.upload(host.data(), host.size() * sizeof(T));
  return b;
}
template <typename T>
std::vector<T> to_host(const DeviceBuffer& b, size_t n) {
  std::vector<T> host(n);
  if (n > 0) b.download(host.data(), n * sizeof(T));
  return host;
}

// Scratch memory for ops, grown on demand and kept per thread (never shrunk): one slot per use so
// that an op and the op it calls (e.g. cross-entropy and its GEMMs) never share scratch.
enum class Scratch : int {
  kCublasLt,    // cuBLASLt workspace
  kGemmScales,  // FP8 GEMM scale layouts
  kQuantize,    // quantize amax / counters
  kSort,        // key sort of embedding backward and MoE permute
  kReduce,      // partial sums (rmsnorm weight gradient, norms, losses)
  kCrossEntropy,// logits chunk
  kAttention,   // D = rowsum(dO ⊙ O)
  kGrouped,     // grouped GEMM tile prefix
  kCount
};
void* scratch(Scratch slot, size_t bytes);

// A per-thread cuBLASLt handle (created on first use). Returned as void* (cublasLtHandle_t).
void* cublaslt_handle();

}  // namespace qaft::cuda
