#include "infer/infer_linear.h"

#include "core/error.h"
#include "kernels/ops.h"

#include <algorithm>
#include <cstring>

namespace qaft {

namespace {
inline size_t sz(int64_t n) { return static_cast<size_t>(n); }
}  // namespace

std::string_view precision_name(Precision p) {
  switch (p) {
    case Precision::kFp8: return "fp8";
    case Precision::kBf16: return "bf16";
    case Precision::kF32: return "f32";
  }
  return "?";
}

Precision parse_precision(std::string_view name) {
  for (Precision p : {Precision::kFp8, Precision::kBf16, Precision::kF32})
    if (name == precision_name(p)) return p;
  QAFT_FAIL(ErrorKind::kInvalidArgument, "use fp8, bf16 or f32", "unknown serving precision '{}'", name);
}

InferLinear::InferLinear(Precision precision, int64_t groups, int64_t out, int64_t in)
    : precision_(precision), groups_(groups), out_(out), in_(in) {
  QAFT_CHECK(groups >= 0 && out > 0 && in > 0, "serving linear shape [{}, {}, {}] is invalid", groups, out, in);
  const int64_t G = std::max<int64_t>(groups, 1);
  if (precision == Precision::kF32) f32_.resize(sz(G * out * in));
  else blocks_.resize(sz(G));
}

void InferLinear::set_weight(int64_t g, const float* w, ScaleFormat scale_format) {
  switch (precision_) {
    case Precision::kF32:
      std::memcpy(f32_.data() + g * out_ * in_, w, sizeof(float) * sz(out_ * in_));
      return;
    case Precision::kBf16:
      blocks_[sz(g)] = BlockWeight::from_bf16(w, out_, in_);
      return;
    case Precision::kFp8:
      blocks_[sz(g)] = BlockWeight::quantize_e4m3(w, out_, in_, scale_format);
      return;
  }
}

void InferLinear::set_weight(int64_t g, BlockWeight w) {
  QAFT_CHECK(precision_ == Precision::kFp8 && w.element() == WeightElement::kE4M3,
             "only an FP8 serving linear takes E4M3 codes");
  QAFT_CHECK(w.out() == out_ && w.in() == in_, "weight [{}, {}] does not fit the linear [{}, {}]", w.out(), w.in(),
             out_, in_);
  blocks_[sz(g)] = std::move(w);
}

void InferLinear::set_bias(const float* b) { bias_.assign(b, b + out_); }

std::vector<float> InferLinear::weight_values(int64_t g) const {
  if (precision_ == Precision::kF32)
    return std::vector<float>(f32_.begin() + g * out_ * in_, f32_.begin() + (g + 1) * out_ * in_);
  return blocks_[sz(g)].to_float();
}

int64_t InferLinear::bytes() const {
  int64_t b = static_cast<int64_t>(sizeof(float) * (f32_.size() + bias_.size()));
  for (const BlockWeight& w : blocks_) b += w.bytes();
  return b;
}

void InferLinear::prepare_input(const float* x, int64_t rows, const ServingNumerics& n, BlockActivations& a) const {
  if (precision_ == Precision::kFp8 && n.quantize_activations) quantize_activations(x, rows, in_, n.scale_format, a);
  else plain_activations(x, rows, in_, a);
}

void InferLinear::forward(const float* x, int64_t N, float* y, const ServingNumerics& n) const {
  QAFT_CHECK(groups_ == 0, "forward() of a stacked expert linear; use grouped_forward()");
  if (N == 0) return;
  if (precision_ == Precision::kF32) {
    gemm<float>(Trans::kNo, Trans::kYes, N, out_, in_, 1.0f, x, in_, f32_.data(), in_, 0.0f, y, out_);
  } else {
    BlockActivations a;
    prepare_input(x, N, n, a);
    block_gemm(a, blocks_[0], y);
  }
  if (!bias_.empty())
    for (int64_t r = 0; r < N; ++r)
      for (int64_t o = 0; o < out_; ++o) y[r * out_ + o] += bias_[sz(o)];
}

void InferLinear::grouped_forward(const int64_t* offsets, const float* x, float* y, const ServingNumerics& n) const {
  const int64_t G = std::max<int64_t>(groups_, 1), rows = offsets[G];
  if (rows == 0) return;
  if (precision_ == Precision::kF32) {
    grouped_gemm<float>(Trans::kYes, G, offsets, out_, in_, 1.0f, x, in_, f32_.data(), out_ * in_, 0.0f, y, out_);
    return;
  }
  BlockActivations a;
  prepare_input(x, rows, n, a);
  block_grouped_gemm(a, blocks_, offsets, y);
}

}  // namespace qaft
