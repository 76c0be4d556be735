// Causal attention of new query tokens over a KV cache, for several requests at once (the serving
// engine's attention core; training uses kernels/ops.h attention_forward over whole sequences).
//
// A request contributes n queries at positions past, past + 1, …, past + n − 1; the cache holds the
// keys and values of positions 0 … past + n − 1 (the new tokens' included). Query i attends to keys
// [0, past + i]. Head h reads kv head h / (H / Hkv). The arithmetic is the training forward's
// (kernels/ops.h attention_forward_rows: the same key tiles, online softmax and tile products), so a
// query's output is bit for bit what the training forward computes for its position from the same
// q, k and v — whether it arrives in one prefill, a chunk, or a decode step.
//
// The same kernel serves GQA (Hkv kv heads of width D), naive MLA (K = [k_nope | k_pe] per head,
// Hkv = H) and absorbed MLA (one shared "kv head": keys [latent | k_pe], values = the latent;
// Dqk = Rkv + Dr, Dv = Rkv), through the strides below.
#pragma once

#include <cstdint>
#include <span>

namespace qaft {

struct AttentionJob {
  const float* q = nullptr;  // query i, head h at q + i·ldq + h·Dqk
  int64_t ldq = 0;
  int64_t n = 0;             // new tokens
  int64_t past = 0;          // cached tokens before them
  const float* k = nullptr;  // key of position t, kv head j at k + t·ldk + j·Dqk
  int64_t ldk = 0;
  const float* v = nullptr;  // value of position t, kv head j at v + t·ldv + j·Dv
  int64_t ldv = 0;
  float* out = nullptr;      // output of query i, head h at out + i·ldo + h·Dv (overwritten)
  int64_t ldo = 0;
};

// Runs every job (parallel over all (job, query, head) triples).
void cached_attention(std::span<const AttentionJob> jobs, int64_t H, int64_t Hkv, int64_t Dqk, int64_t Dv, float scale);

}  // namespace qaft
