// Token embedding. Backward is deterministic without atomics: token indices are sorted by id
// (stable, so equal ids keep token order) and each distinct id's rows are summed by one thread.
#include "kernels/ops.h"

#include "core/error.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

namespace qaft {
namespace {

void check_ids(const int32_t* ids, int64_t N, int64_t V, const char* fn) {
  int64_t bad = -1;
  for (int64_t n = 0; n < N && bad < 0; ++n)
    if (ids[n] < 0 || ids[n] >= V) bad = n;
  QAFT_CHECK(bad < 0, "{}: token id {} at position {} is outside the vocabulary [0, {})", fn,
             bad < 0 ? 0 : ids[bad], bad, V);
}

}  // namespace

template <typename T>
void embedding_forward(const int32_t* ids, int64_t N, const T* table, int64_t V, int64_t C, T* out) {
  QAFT_CHECK(N >= 0 && V > 0 && C > 0, "embedding_forward: N={} V={} C={}", N, V, C);
  check_ids(ids, N, V, "embedding_forward");
#pragma omp parallel for schedule(static) if (N * C > 65536)
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(out + n * C, table + static_cast<int64_t>(ids[n]) * C, static_cast<size_t>(C) * sizeof(T));
}

template <typename T>
void embedding_backward(const int32_t* ids, int64_t N, const T* dout, int64_t V, int64_t C, T* dtable) {
  QAFT_CHECK(N >= 0 && V > 0 && C > 0, "embedding_backward: N={} V={} C={}", N, V, C);
  check_ids(ids, N, V, "embedding_backward");
  std::vector<int64_t> order(static_cast<size_t>(N));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  std::vector<int64_t> starts;  // first index in `order` of each distinct id
  for (int64_t i = 0; i < N; ++i)
    if (i == 0 || ids[order[static_cast<size_t>(i)]] != ids[order[static_cast<size_t>(i - 1)]]) starts.push_back(i);
  starts.push_back(N);
  const int64_t runs = static_cast<int64_t>(starts.size()) - 1;
#pragma omp parallel for schedule(dynamic, 16) if (N * C > 65536)
  for (int64_t r = 0; r < runs; ++r) {
    const int64_t b = starts[static_cast<size_t>(r)], e = starts[static_cast<size_t>(r + 1)];
    T* dst = dtable + static_cast<int64_t>(ids[order[static_cast<size_t>(b)]]) * C;
    for (int64_t i = b; i < e; ++i) {
      const T* src = dout + order[static_cast<size_t>(i)] * C;
      for (int64_t j = 0; j < C; ++j) dst[j] += src[j];
    }
  }
}

template void embedding_forward<float>(const int32_t*, int64_t, const float*, int64_t, int64_t, float*);
template void embedding_forward<double>(const int32_t*, int64_t, const double*, int64_t, int64_t, double*);
template void embedding_backward<float>(const int32_t*, int64_t, const float*, int64_t, int64_t, float*);
template void embedding_backward<double>(const int32_t*, int64_t, const double*, int64_t, int64_t, double*);

}  // namespace qaft
