#include "infer/cached_attention.h"

#include "core/error.h"
#include "kernels/ops.h"

#include <vector>

namespace qaft {

void cached_attention(std::span<const AttentionJob> jobs, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, float scale) {
  QAFT_CHECK(H > 0 && Hkv > 0 && H % Hkv == 0, "cached_attention: {} heads over {} kv heads", H, Hkv);
  std::vector<AttentionRows> rows;
  rows.reserve(jobs.size());
  for (const AttentionJob& j : jobs) {
    if (j.n == 0) continue;
    rows.push_back({j.q, j.ldq, j.k, j.ldk, j.v, j.ldv, j.out, j.ldo, j.past + j.n, j.past});
  }
  attention_forward_rows(rows, H, Hkv, Dqk, Dv, scale);
}

}  // namespace qaft
