#include "infer/cached_attention.h"

#include "core/cpu_features.h"
#include "core/error.h"
#include "kernels/cpu/simd.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace qaft {

namespace {

struct Triple {
  int64_t job, i, h;
};

// One query token and head: out = softmax(scale · q·Kᵀ) · V over keys [0, T). Compiled twice
// (AVX-512 and portable, chosen at run time like the other CPU kernels); exp is the kernels'
// vectorizable exp_fast (≈ 2 ulp).
QAFT_INLINE void attend(const AttentionJob& j, int64_t i, int64_t h, int64_t group, int64_t Dqk, int64_t Dv,
                        float scale, float* __restrict scores, float* __restrict acc) {
  const int64_t T = j.past + i + 1, kh = h / group;
  const float* q = j.q + i * j.ldq + h * Dqk;
  float mx = -INFINITY;
  for (int64_t t = 0; t < T; ++t) {
    scores[t] = scale * detail::dot(q, j.k + t * j.ldk + kh * Dqk, Dqk);
    mx = std::max(mx, scores[t]);
  }
  float sum = 0.0f;
  for (int64_t t = 0; t < T; ++t) {
    scores[t] = detail::exp_fast(scores[t] - mx);
    sum += scores[t];
  }
  for (int64_t d = 0; d < Dv; ++d) acc[d] = 0.0f;
  for (int64_t t = 0; t < T; ++t) {
    const float p = scores[t];
    const float* __restrict v = j.v + t * j.ldv + kh * Dv;
    for (int64_t d = 0; d < Dv; ++d) acc[d] += p * v[d];
  }
  float* o = j.out + i * j.ldo + h * Dv;
  const float inv = 1.0f / sum;
  for (int64_t d = 0; d < Dv; ++d) o[d] = acc[d] * inv;
}

QAFT_AVX512_KERNEL void attend_avx512(const AttentionJob& j, int64_t i, int64_t h, int64_t group, int64_t Dqk,
                                      int64_t Dv, float scale, float* scores, float* acc) {
  attend(j, i, h, group, Dqk, Dv, scale, scores, acc);
}
void attend_portable(const AttentionJob& j, int64_t i, int64_t h, int64_t group, int64_t Dqk, int64_t Dv, float scale,
                     float* scores, float* acc) {
  attend(j, i, h, group, Dqk, Dv, scale, scores, acc);
}

}  // namespace

void cached_attention(std::span<const AttentionJob> jobs, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, float scale) {
  QAFT_CHECK(H > 0 && Hkv > 0 && H % Hkv == 0, "cached_attention: {} heads over {} kv heads", H, Hkv);
  std::vector<Triple> work;
  int64_t flops = 0;
  for (int64_t b = 0; b < static_cast<int64_t>(jobs.size()); ++b) {
    const AttentionJob& j = jobs[static_cast<size_t>(b)];
    for (int64_t i = 0; i < j.n; ++i) {
      for (int64_t h = 0; h < H; ++h) work.push_back({b, i, h});
      flops += H * (j.past + i + 1) * (Dqk + Dv);
    }
  }
  int64_t max_keys = 0;
  for (const AttentionJob& j : jobs) max_keys = std::max(max_keys, j.past + j.n);
  const int64_t n = static_cast<int64_t>(work.size()), group = H / Hkv;
  const bool avx512 = cpu_features().has_avx512_codecs();
#pragma omp parallel if (n > 1 && flops > (1 << 16) && !omp_in_parallel())
  {
    std::vector<float> scores(static_cast<size_t>(max_keys)), acc(static_cast<size_t>(Dv));
#pragma omp for schedule(dynamic, 4)
    for (int64_t w = 0; w < n; ++w) {
      const Triple& t = work[static_cast<size_t>(w)];
      const AttentionJob& j = jobs[static_cast<size_t>(t.job)];
      if (avx512) attend_avx512(j, t.i, t.h, group, Dqk, Dv, scale, scores.data(), acc.data());
      else attend_portable(j, t.i, t.h, group, Dqk, Dv, scale, scores.data(), acc.data());
    }
  }
}

}  // namespace qaft
