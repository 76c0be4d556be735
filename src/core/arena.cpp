#include "core/arena.h"

#include <cstdlib>
#include <cstring>
#include <utility>

namespace qaft {

AlignedBuffer::AlignedBuffer(size_t bytes, size_t alignment) : size_(bytes) {
  QAFT_CHECK(alignment >= sizeof(void*) && (alignment & (alignment - 1)) == 0,
             "alignment {} is not a power of two", alignment);
  if (bytes == 0) return;
  size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  data_ = std::aligned_alloc(alignment, rounded);
  QAFT_CHECK_HINT(data_ != nullptr, ErrorKind::kIo, "reduce the batch size or model size",
                  "out of memory allocating {} bytes", bytes);
  std::memset(data_, 0, rounded);
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

Arena::Arena(std::string name, size_t capacity_bytes, size_t alignment)
    : name_(std::move(name)), buffer_(capacity_bytes, alignment), alignment_(alignment) {}

void* Arena::allocate(size_t bytes) {
  size_t start = (used_ + alignment_ - 1) / alignment_ * alignment_;
  QAFT_CHECK_HINT(start + bytes <= buffer_.size(), ErrorKind::kInternal,
                  "the memory plan under-estimated this arena; please report it",
                  "{} arena: request of {} bytes does not fit ({} of {} bytes used)", name_, bytes,
                  used_, buffer_.size());
  used_ = start + bytes;
  if (used_ > high_water_) high_water_ = used_;
  return buffer_.as<char>() + start;
}

Tensor Arena::allocate_tensor(DType dtype, Shape shape) {
  return Tensor(allocate(dtype_bytes(dtype, static_cast<size_t>(shape.numel()))), dtype, shape);
}

}  // namespace qaft
