// One request's state in the serving engine: the tokens it has seen and its KV cache.
//
// MLA (DeepSeek) caches per token and layer one row [Rkv + Dr] = [latent | k_pe]: the compressed
// latent after kv_a_layernorm — in W8A8 FP8 serving the latent as the kv_b projection sees it,
// quantized in 1×128 E4M3 tiles (stored as its fp32 values code·σ, which re-quantize to the same
// codes) — and the single RoPE key shared by all heads, after RoPE. That is Rkv + Dr floats per token
// and layer instead of H·(Dqk + Dv): absorbed decoding attends over it directly.
// GQA (llama/qwen) caches K (after the qk norm and RoPE) and V: [T, Hkv, D] each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qaft {

struct LayerKvCache {
  std::vector<float> mla;  // MLA: [T, Rkv + Dr]
  std::vector<float> k;    // GQA: [T, Hkv, D]
  std::vector<float> v;    // GQA: [T, Hkv, D]
};

class Sequence {
 public:
  Sequence() = default;
  explicit Sequence(int64_t layers) : layers_(static_cast<size_t>(layers)) {}

  // Tokens whose keys and values are cached (the position of the next token).
  int64_t length() const { return static_cast<int64_t>(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // Bytes of the KV cache.
  int64_t cache_bytes() const;
  // Forgets everything (the sequence starts again at position 0).
  void clear();

  // For the engine.
  LayerKvCache& layer(int64_t l) { return layers_[static_cast<size_t>(l)]; }
  const LayerKvCache& layer(int64_t l) const { return layers_[static_cast<size_t>(l)]; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  void append_tokens(const int32_t* ids, int64_t n) { tokens_.insert(tokens_.end(), ids, ids + n); }

 private:
  std::vector<int32_t> tokens_;
  std::vector<LayerKvCache> layers_;
};

}  // namespace qaft
