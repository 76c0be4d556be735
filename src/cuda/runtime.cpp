#include "cuda/runtime.h"

#include "core/error.h"

#include <cublasLt.h>
#include <fmt/format.h>

#include <array>
#include <mutex>
#include <utility>

namespace qaft::cuda {
namespace {

CudaStatus detect() {
  CudaStatus s;
  cudaRuntimeGetVersion(&s.runtime_version);
  if (cudaDriverGetVersion(&s.driver_version) != cudaSuccess) s.driver_version = 0;
  s.cublaslt_version = cublasLtGetVersion();
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // No driver (libcuda.so missing), driver too old, or no device: all reported, none fatal.
    s.reason = fmt::format("CUDA runtime reports {} ({}): {}", static_cast<int>(err), cudaGetErrorName(err),
                           cudaGetErrorString(err));
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return s;
  }
  if (count == 0) {
    s.reason = "no CUDA device";
    return s;
  }
  cudaDeviceProp prop{};
  const cudaError_t perr = cudaGetDeviceProperties(&prop, 0);
  if (perr != cudaSuccess) {
    s.reason = fmt::format("cudaGetDeviceProperties(0) failed: {}", cudaGetErrorString(perr));
    cudaGetLastError();
    return s;
  }
  s.device = 0;
  s.cc_major = prop.major;
  s.cc_minor = prop.minor;
  s.sm_count = prop.multiProcessorCount;
  s.name = prop.name;
  s.memory_bytes = prop.totalGlobalMem;
  if (prop.major < 9) {
    // The library is compiled for sm_90 only (CMAKE_CUDA_ARCHITECTURES 90): older devices would
    // fail every launch with "no kernel image".
    s.reason = fmt::format("device 0 ({}) has compute capability {}.{}; qaft_cuda is built for sm_90 (Hopper)",
                           s.name, prop.major, prop.minor);
    return s;
  }
  const cudaError_t serr = cudaSetDevice(0);
  if (serr != cudaSuccess) {
    s.reason = fmt::format("cudaSetDevice(0) failed: {}", cudaGetErrorString(serr));
    cudaGetLastError();
    return s;
  }
  s.available = true;
  return s;
}

thread_local cudaStream_t t_stream = nullptr;

// NOTE: the cuBLASLt handle is deliberately never destroyed: thread_local destructors of the main
// thread run after the CUDA runtime may have begun its own teardown, where cublasLtDestroy can fault
// (PyTorch leaks its handles for the same reason). The scratch buffers' cudaFree then returns an
// error that is ignored.
struct ThreadResources {
  std::array<DeviceBuffer, static_cast<size_t>(Scratch::kCount)> scratch;
  cublasLtHandle_t lt = nullptr;
};
thread_local ThreadResources t_res;

}  // namespace

const CudaStatus& cuda_status() {
  static const CudaStatus status = detect();  // C++ guarantees thread-safe one-time init
  return status;
}

bool cuda_available(std::string* reason) {
  const CudaStatus& s = cuda_status();
  if (reason) *reason = s.available ? std::string() : s.reason;
  return s.available;
}

void require_cuda(const char* what) {
  const CudaStatus& s = cuda_status();
  QAFT_CHECK_HINT(s.available, ErrorKind::kUnsupported,
                  "run on a machine with an NVIDIA Hopper GPU and driver, or use the CPU ops",
                  "{}: no usable CUDA device: {}", what, s.reason);
}

std::string cuda_describe() {
  const CudaStatus& s = cuda_status();
  const auto ver = [](int v) { return fmt::format("{}.{}", v / 1000, (v % 1000) / 10); };
  const std::string libs = fmt::format("CUDA runtime {}, driver {}, cuBLASLt {}", ver(s.runtime_version),
                                       s.driver_version ? ver(s.driver_version) : std::string("none"),
                                       s.cublaslt_version);
  if (!s.available) return fmt::format("no usable CUDA device ({}); {}", s.reason, libs);
  return fmt::format("{} (sm_{}{}, {} SMs, {:.1f} GiB); {}", s.name, s.cc_major, s.cc_minor, s.sm_count,
                     static_cast<double>(s.memory_bytes) / (1024.0 * 1024.0 * 1024.0), libs);
}

bool cublaslt_block_scaling_supported(std::string* reason) {
  std::string why;
  const CudaStatus& s = cuda_status();
  if (!s.available) {
    why = s.reason;
  } else if (CUBLAS_VERSION < 120900) {
    why = fmt::format("built against cuBLAS {} headers; 1x128/128x128 block scaling needs cuBLAS >= 12.9",
                      CUBLAS_VERSION);
  } else if (s.cublaslt_version < 120900) {
    why = fmt::format("the loaded cuBLASLt is version {}; 1x128/128x128 block scaling needs >= 12.9",
                      s.cublaslt_version);
  } else if (!(s.cc_major == 9 && s.cc_minor == 0)) {
    why = fmt::format("device compute capability {}.{}: cuBLASLt documents VEC128/BLK128x128 FP8 scaling for "
                      "sm_90 (Hopper) only",
                      s.cc_major, s.cc_minor);
  }
  if (reason) *reason = why;
  return why.empty();
}

void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err == cudaSuccess) [[likely]]
    return;
  cudaGetLastError();  // clear a non-sticky error so the next call is not blamed for it
  const bool no_device = err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ||
                         err == cudaErrorInvalidDevice;
  detail::throw_error(no_device ? ErrorKind::kUnsupported : ErrorKind::kInternal, file, line,
                      fmt::format("CUDA error {} ({}) in {}: {}", static_cast<int>(err), cudaGetErrorName(err),
                                  what, cudaGetErrorString(err)),
                      no_device ? "no usable GPU: check the driver (nvidia-smi)"
                                : "run under compute-sanitizer to locate the faulting kernel");
}

void check_cublas(int status, const char* what, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) [[likely]]
    return;
  const auto st = static_cast<cublasStatus_t>(status);
  detail::throw_error(status == CUBLAS_STATUS_NOT_SUPPORTED ? ErrorKind::kUnsupported : ErrorKind::kInternal,
                      file, line,
                      fmt::format("cuBLAS error {} ({}) in {}: {}", status, cublasLtGetStatusName(st), what,
                                  cublasLtGetStatusString(st)),
                      {});
}

cudaStream_t current_stream() { return t_stream; }
void set_current_stream(cudaStream_t stream) { t_stream = stream; }

void synchronize() {
  require_cuda("synchronize");
  QAFT_CUDA_CHECK(cudaStreamSynchronize(t_stream));
}

DeviceBuffer::DeviceBuffer(size_t bytes) {
  if (bytes == 0) return;
  require_cuda("DeviceBuffer");
  QAFT_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  bytes_ = bytes;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);  // errors here cannot be reported from a destructor
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, size_t bytes) {
  QAFT_CHECK(bytes <= bytes_, "DeviceBuffer::upload of {} bytes into {} bytes", bytes, bytes_);
  if (bytes == 0) return;
  QAFT_CUDA_CHECK(cudaMemcpyAsync(ptr_, host, bytes, cudaMemcpyHostToDevice, t_stream));
  QAFT_CUDA_CHECK(cudaStreamSynchronize(t_stream));
}

void DeviceBuffer::download(void* host, size_t bytes) const {
  QAFT_CHECK(bytes <= bytes_, "DeviceBuffer::download of {} bytes from {} bytes", bytes, bytes_);
  if (bytes == 0) return;
  QAFT_CUDA_CHECK(cudaMemcpyAsync(host, ptr_, bytes, cudaMemcpyDeviceToHost, t_stream));
  QAFT_CUDA_CHECK(cudaStreamSynchronize(t_stream));
}

void DeviceBuffer::zero() {
  if (bytes_ == 0) return;
  QAFT_CUDA_CHECK(cudaMemsetAsync(ptr_, 0, bytes_, t_stream));
}

void* scratch(Scratch slot, size_t bytes) {
  DeviceBuffer& b = t_res.scratch[static_cast<size_t>(slot)];
  if (b.bytes() < bytes) {
    // cudaFree inside the reassignment synchronizes the device, so no kernel still reads the old block.
    b = DeviceBuffer();
    b = DeviceBuffer(bytes + bytes / 4);
  }
  return b.data();
}

void* cublaslt_handle() {
  if (!t_res.lt) {
    require_cuda("cuBLASLt");
    QAFT_CUBLAS_CHECK(cublasLtCreate(&t_res.lt));
  }
  return t_res.lt;
}

}  // namespace qaft::cuda
