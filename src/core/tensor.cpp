#include "core/tensor.h"

#include <fmt/format.h>

namespace qaft {

Shape::Shape(std::initializer_list<int64_t> d) {
  QAFT_CHECK(d.size() <= static_cast<size_t>(kMaxDims), "rank {} exceeds the maximum {}", d.size(),
             kMaxDims);
  rank = static_cast<int>(d.size());
  size_t i = 0;
  for (int64_t v : d) {
    QAFT_CHECK(v >= 0, "negative dimension {} in shape", v);
    dims[i++] = v;
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[static_cast<size_t>(i)];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[static_cast<size_t>(i)] != o.dims[static_cast<size_t>(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[static_cast<size_t>(i)]);
  return s + "]";
}

static std::array<int64_t, kMaxDims> contiguous_strides(const Shape& shape) {
  std::array<int64_t, kMaxDims> s{};
  int64_t acc = 1;
  for (int i = shape.rank - 1; i >= 0; --i) {
    s[static_cast<size_t>(i)] = acc;
    acc *= shape.dims[static_cast<size_t>(i)];
  }
  return s;
}

Tensor::Tensor(void* data, DType dtype, Shape shape, Device device)
    : data_(data), dtype_(dtype), shape_(shape), strides_(contiguous_strides(shape)), device_(device) {}

Tensor::Tensor(void* data, DType dtype, Shape shape, std::array<int64_t, kMaxDims> strides,
               Device device)
    : data_(data), dtype_(dtype), shape_(shape), strides_(strides), device_(device) {
  QAFT_CHECK(dtype_bits(dtype) >= 8 || is_contiguous(), "sub-byte dtype {} must be contiguous",
             dtype_name(dtype));
}

int64_t Tensor::dim(int i) const {
  int j = i < 0 ? shape_.rank + i : i;
  QAFT_CHECK(j >= 0 && j < shape_.rank, "dimension {} out of range for rank {}", i, shape_.rank);
  return shape_[j];
}

size_t Tensor::nbytes() const { return dtype_bytes(dtype_, static_cast<size_t>(numel())); }

bool Tensor::is_contiguous() const { return strides_ == contiguous_strides(shape_); }

Tensor Tensor::reshape(Shape shape) const {
  QAFT_CHECK(is_contiguous(), "reshape of a non-contiguous tensor {}", str());
  QAFT_CHECK(shape.numel() == numel(), "reshape {} -> {} changes the element count", shape_.str(),
             shape.str());
  return Tensor(data_, dtype_, shape, device_);
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  QAFT_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= dim(0),
             "row slice [{}, {}) out of range for {}", begin, end, str());
  QAFT_CHECK(dtype_bits(dtype_) >= 8, "row slice of sub-byte dtype {}", dtype_name(dtype_));
  Shape s = shape_;
  s.dims[0] = end - begin;
  char* p = static_cast<char*>(data_) + begin * strides_[0] * (dtype_bits(dtype_) / 8);
  return Tensor(p, dtype_, s, strides_, device_);
}

std::string Tensor::str() const {
  return fmt::format("{}{} {}", dtype_name(dtype_), shape_.str(), device_ == Device::kCpu ? "cpu" : "cuda");
}

}  // namespace qaft
