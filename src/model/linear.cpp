#include "model/linear.h"

#include "kernels/ops.h"

namespace qaft {

template <typename T>
LinearRef<T> bind_linear(const ParamStore<T>& params, ParamStore<T>* grads, const std::string& prefix) {
  LinearRef<T> l;
  const std::string wname = prefix + ".weight", bname = prefix + ".bias";
  const ParamSpec& spec = params.spec(wname);
  l.out = spec.shape[0];
  l.in = spec.shape[1];
  l.w = params.get(wname);
  l.b = params.find(bname);
  if (grads) {
    l.dw = grads->get(wname);
    l.db = l.b ? grads->get(bname) : nullptr;
  }
  return l;
}

template <typename T>
void linear_forward(const LinearRef<T>& l, const T* x, int64_t N, T* y) {
  gemm<T>(Trans::kNo, Trans::kYes, N, l.out, l.in, T(1), x, l.in, l.w, l.in, T(0), y, l.out);
  if (l.b) {
#pragma omp parallel for if (N * l.out > (1 << 16))
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < l.out; ++o) y[n * l.out + o] += l.b[o];
  }
}

template <typename T>
void linear_backward(const LinearRef<T>& l, const T* dy, const T* x, int64_t N, T* dx, bool accumulate_dx) {
  if (dx) gemm<T>(Trans::kNo, Trans::kNo, N, l.in, l.out, T(1), dy, l.out, l.w, l.in, accumulate_dx ? T(1) : T(0), dx, l.in);
  if (l.dw) gemm<T>(Trans::kYes, Trans::kNo, l.out, l.in, N, T(1), dy, l.out, x, l.in, T(1), l.dw, l.in);
  if (l.db) {
#pragma omp parallel for if (N * l.out > (1 << 16))
    for (int64_t o = 0; o < l.out; ++o) {
      T s = 0;
      for (int64_t n = 0; n < N; ++n) s += dy[n * l.out + o];
      l.db[o] += s;
    }
  }
}

#define QAFT_INSTANTIATE(T)                                                                        \
  template LinearRef<T> bind_linear<T>(const ParamStore<T>&, ParamStore<T>*, const std::string&);  \
  template void linear_forward<T>(const LinearRef<T>&, const T*, int64_t, T*);                     \
  template void linear_backward<T>(const LinearRef<T>&, const T*, const T*, int64_t, T*, bool);
QAFT_INSTANTIATE(float)
QAFT_INSTANTIATE(double)
#undef QAFT_INSTANTIATE

}  // namespace qaft
