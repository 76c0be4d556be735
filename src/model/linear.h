// A linear layer y = x · Wᵀ + b (W [out, in], HF layout) bound to its parameter and gradient
// storage, with forward and backward. Every projection of the model goes through this.
#pragma once

#include "model/weights.h"

#include <string>

namespace qaft {

template <typename T>
struct LinearRef {
  const T* w = nullptr;  // [out, in]
  const T* b = nullptr;  // [out] or nullptr
  T* dw = nullptr;       // [out, in] gradient (accumulated), nullptr when frozen / no grads
  T* db = nullptr;       // [out] gradient (accumulated)
  int64_t out = 0;
  int64_t in = 0;
};

// Binds "<prefix>.weight" (and "<prefix>.bias" when present). grads may be nullptr.
template <typename T>
LinearRef<T> bind_linear(const ParamStore<T>& params, ParamStore<T>* grads, const std::string& prefix);

// y [N, out] = x [N, in] · Wᵀ + b.
template <typename T>
void linear_forward(const LinearRef<T>& l, const T* x, int64_t N, T* y);
// dx [N, in] = dy · W (overwritten, or added when accumulate_dx; skipped when dx is nullptr);
// dW += dyᵀ · x; db += Σ_rows dy.
template <typename T>
void linear_backward(const LinearRef<T>& l, const T* dy, const T* x, int64_t N, T* dx, bool accumulate_dx);

}  // namespace qaft
