// Aligned memory: AlignedBuffer (one owned, aligned block) and Arena (a bump allocator over one).
//
// Memory in qaft is planned: a step's parameters, gradients and activations are sized up front and
// carved out of a few arenas, so a step never calls malloc and an out-of-memory shows before work.
#pragma once

#include "core/tensor.h"

#include <cstddef>
#include <string>

namespace qaft {

inline constexpr size_t kDefaultAlignment = 64;  // one cache line, one AVX-512 register

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes, size_t alignment = kDefaultAlignment);  // zero-filled
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

class Arena {
 public:
  // `name` appears in the out-of-memory error ("activations arena").
  Arena(std::string name, size_t capacity_bytes, size_t alignment = kDefaultAlignment);

  // Bytes, aligned; throws naming the arena, the request and what is left when it does not fit.
  void* allocate(size_t bytes);
  // A contiguous tensor carved from the arena (contents unspecified).
  Tensor allocate_tensor(DType dtype, Shape shape);
  // Forget every allocation (memory is reused by the next step).
  void reset() { used_ = 0; }

  size_t used() const { return used_; }
  size_t capacity() const { return buffer_.size(); }
  size_t high_water() const { return high_water_; }

 private:
  std::string name_;
  AlignedBuffer buffer_;
  size_t alignment_;
  size_t used_ = 0;
  size_t high_water_ = 0;
};

}  // namespace qaft
