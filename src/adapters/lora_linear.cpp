#include "adapters/lora_linear.h"

#include "core/error.h"
#include "kernels/ops.h"

#include <cmath>
#include <cstring>

namespace qaft {

double lora_scale(double alpha, int64_t rank, bool rslora) {
  QAFT_CHECK(rank > 0, "LoRA rank must be positive, got {}", rank);
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

namespace {

// Fake quantization runs in fp32 (the FP8 codecs are fp32); double inputs round-trip through it.
template <typename T>
void fake_quantize_any(const T* x, int64_t rows, int64_t cols, const ScaleRecipe& recipe, T* out) {
  if constexpr (std::is_same_v<T, float>) {
    fake_quantize(x, rows, cols, recipe, out);
  } else {
    std::vector<float> tmp(x, x + rows * cols);
    fake_quantize(tmp.data(), rows, cols, recipe, tmp.data());
    for (int64_t i = 0; i < rows * cols; ++i) out[i] = static_cast<T>(tmp[static_cast<size_t>(i)]);
  }
}

}  // namespace

template <typename T>
void lora_merged_weight(const LoraLinearRef<T>& l, const QatConfig& qat, T* out_w) {
  std::memcpy(out_w, l.w0, sizeof(T) * static_cast<size_t>(l.out * l.in));
  gemm<T>(Trans::kNo, Trans::kNo, l.out, l.in, l.rank, l.scale, l.b, l.rank, l.a, l.in, T(1), out_w, l.in);
  if (qat.enabled)
    fake_quantize_any(out_w, l.out, l.in, ScaleRecipe::deepseek_weight(qat.weight_scale_format), out_w);
}

template <typename T>
void lora_linear_forward(const LoraLinearRef<T>& l, const QatConfig& qat, const T* x, int64_t N, T* y,
                         LoraSaved<T>& s) {
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  s.xq.assign(x, x + N * l.in);
  if (qat.enabled && qat.quantize_activations)
    fake_quantize_any(s.xq.data(), N, l.in, ScaleRecipe::deepseek_activation(qat.weight_scale_format), s.xq.data());
  s.xa.resize(sz(N * l.rank));
  gemm<T>(Trans::kNo, Trans::kYes, N, l.rank, l.in, T(1), s.xq.data(), l.in, l.a, l.in, T(0), s.xa.data(), l.rank);
  if (qat.enabled) {
    // The merged, fake-quantized weight of this one linear (an expert's is built and dropped per expert).
    s.merged.resize(sz(l.out * l.in));
    lora_merged_weight(l, qat, s.merged.data());
    gemm<T>(Trans::kNo, Trans::kYes, N, l.out, l.in, T(1), s.xq.data(), l.in, s.merged.data(), l.in, T(0), y, l.out);
  } else {
    s.merged.clear();
    gemm<T>(Trans::kNo, Trans::kYes, N, l.out, l.in, T(1), s.xq.data(), l.in, l.w0, l.in, T(0), y, l.out);
    gemm<T>(Trans::kNo, Trans::kYes, N, l.out, l.rank, l.scale, s.xa.data(), l.rank, l.b, l.rank, T(1), y, l.out);
  }
}

template <typename T>
void lora_linear_backward(const LoraLinearRef<T>& l, const QatConfig& qat, const T* dy, int64_t N,
                          const LoraSaved<T>& s, T* dx) {
  std::vector<T> dyb(static_cast<size_t>(N * l.rank));  // dy·B [N, r]
  gemm<T>(Trans::kNo, Trans::kNo, N, l.rank, l.out, T(1), dy, l.out, l.b, l.rank, T(0), dyb.data(), l.rank);
  if (l.db) gemm<T>(Trans::kYes, Trans::kNo, l.out, l.rank, N, l.scale, dy, l.out, s.xa.data(), l.rank, T(1), l.db, l.rank);
  if (l.da) gemm<T>(Trans::kYes, Trans::kNo, l.rank, l.in, N, l.scale, dyb.data(), l.rank, s.xq.data(), l.in, T(1), l.da, l.in);
  if (!dx) return;
  if (qat.enabled) {
    gemm<T>(Trans::kNo, Trans::kNo, N, l.in, l.out, T(1), dy, l.out, s.merged.data(), l.in, T(0), dx, l.in);
  } else {
    gemm<T>(Trans::kNo, Trans::kNo, N, l.in, l.out, T(1), dy, l.out, l.w0, l.in, T(0), dx, l.in);
    gemm<T>(Trans::kNo, Trans::kNo, N, l.in, l.rank, l.scale, dyb.data(), l.rank, l.a, l.in, T(1), dx, l.in);
  }
}

#define QAFT_INSTANTIATE(T)                                                                                   \
  template void lora_merged_weight<T>(const LoraLinearRef<T>&, const QatConfig&, T*);                        \
  template void lora_linear_forward<T>(const LoraLinearRef<T>&, const QatConfig&, const T*, int64_t, T*,     \
                                       LoraSaved<T>&);                                                        \
  template void lora_linear_backward<T>(const LoraLinearRef<T>&, const QatConfig&, const T*, int64_t,        \
                                        const LoraSaved<T>&, T*);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)
#undef QAFT_INSTANTIATE

}  // namespace qaft
