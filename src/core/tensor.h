// Tensor — a non-owning view of typed memory: dtype, shape, strides, device.
//
// Owning is somebody else's job (an Arena, an mmapped safetensors file, a std::vector). Shapes are
// outermost first ([B, T, C]); strides are in elements. Sub-byte dtypes (NF4) must be contiguous.
#pragma once

#include "core/dtype.h"
#include "core/error.h"

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace qaft {

enum class Device : uint8_t { kCpu, kCuda };

inline constexpr int kMaxDims = 6;

struct Shape {
  int rank = 0;
  std::array<int64_t, kMaxDims> dims{};  // [rank] used, outermost first

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t operator[](int i) const { return dims[static_cast<size_t>(i)]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[2, 3, 128]"
};

class Tensor {
 public:
  Tensor() = default;
  // A contiguous (row-major) view.
  Tensor(void* data, DType dtype, Shape shape, Device device = Device::kCpu);
  // A strided view; strides in elements, same rank as shape.
  Tensor(void* data, DType dtype, Shape shape, std::array<int64_t, kMaxDims> strides,
         Device device = Device::kCpu);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank; }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t stride(int i) const { return strides_[static_cast<size_t>(i)]; }
  Device device() const { return device_; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const;  // bytes of a contiguous tensor of this shape
  bool is_contiguous() const;
  void* raw() const { return data_; }

  // Typed access; checks that T's size matches the dtype's element size.
  template <typename T>
  T* data() const {
    QAFT_CHECK(sizeof(T) * 8 == static_cast<size_t>(dtype_bits(dtype_)),
               "tensor of dtype {} viewed as a {}-byte type", dtype_name(dtype_), sizeof(T));
    return static_cast<T*>(data_);
  }

  // Same memory, new shape (contiguous only; numel must match).
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) of the outermost dimension.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  std::string str() const;  // "bf16[2, 3, 128] cpu"

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Shape shape_;
  std::array<int64_t, kMaxDims> strides_{};
  Device device_ = Device::kCpu;
};

}  // namespace qaft
