#include "infer/kv_cache.h"

namespace qaft {

int64_t Sequence::cache_bytes() const {
  int64_t n = 0;
  for (const LayerKvCache& l : layers_) n += static_cast<int64_t>(sizeof(float) * (l.mla.size() + l.k.size() + l.v.size()));
  return n;
}

void Sequence::clear() {
  tokens_.clear();
  for (LayerKvCache& l : layers_) l = LayerKvCache{};
}

}  // namespace qaft
