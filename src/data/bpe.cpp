// BPE merge loop and word cache (see bpe.h).
#include "data/bpe.h"

#include "core/error.h"
#include "data/utf8.h"

#include <algorithm>
#include <climits>
#include <queue>

namespace qaft::tok {

void MergeTable::build(const std::vector<std::pair<uint64_t, Merge>>& entries) {
  size_t cap = 16;
  int bits = 4;
  while (cap < entries.size() * 2) {
    cap <<= 1;
    ++bits;
  }
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  shift_ = 64 - bits;
  for (const auto& [key, merge] : entries) {
    size_t i = slot_of(key);
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    if (slots_[i].key == key) continue;  // a duplicate merge keeps its first (lowest) rank
    slots_[i].key = key;
    slots_[i].merge = merge;
  }
}

BpeModel::BpeModel() : cache_(new CacheShard[kCacheShards]) {
  byte_ids.fill(-1);
  fallback_ids.fill(-1);
}

BpeModel::~BpeModel() = default;

void BpeModel::clear_cache() const {
  for (size_t i = 0; i < kCacheShards; ++i) {
    std::lock_guard lock(cache_[i].mutex);
    cache_[i].map.clear();
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const {
  symbols.clear();
  if (byte_level) {
    for (char c : word) {
      const int32_t id = byte_ids[static_cast<uint8_t>(c)];
      if (id >= 0) {
        symbols.push_back(id);
      } else {
        QAFT_CHECK_HINT(unk_id >= 0, ErrorKind::kInvalidFile, "the vocabulary must hold all 256 bytes",
                        "byte 0x{:02X} has no token in this byte-level vocabulary and there is no "
                        "unk_token", static_cast<uint8_t>(c));
        if (!(fuse_unk && !symbols.empty() && symbols.back() == unk_id)) symbols.push_back(unk_id);
      }
    }
    return;
  }
  size_t i = 0;
  while (i < word.size()) {
    const size_t len = static_cast<size_t>(utf8::sequence_length(static_cast<uint8_t>(word[i])));
    const std::string_view ch = word.substr(i, len);
    i += len;
    if (auto it = vocab.find(ch); it != vocab.end()) {
      symbols.push_back(it->second);
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (char b : ch) all = all && fallback_ids[static_cast<uint8_t>(b)] >= 0;
      if (all) {
        for (char b : ch) symbols.push_back(fallback_ids[static_cast<uint8_t>(b)]);
        continue;
      }
    }
    QAFT_CHECK_HINT(unk_id >= 0, ErrorKind::kInvalidArgument, "",
                    "the text contains {:?}, which is not in the vocabulary, and the model has no "
                    "unk_token", std::string(ch));
    if (!(fuse_unk && !symbols.empty() && symbols.back() == unk_id)) symbols.push_back(unk_id);
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& s) const {
  initial_symbols(word, s);
  const size_t n = s.size();
  if (n < 2) return;
  if (n <= 64) {
    // Linear scan: ranks[i] is the rank of pair (s[i], s[i+1]); each step merges the leftmost
    // pair of lowest rank.
    int32_t ranks[64];
    int32_t merged[64];
    size_t m = n;
    auto rank_of = [&](size_t i) {
      const MergeTable::Merge* mg = merges.find(s[i], s[i + 1]);
      ranks[i] = mg ? mg->rank : INT32_MAX;
      merged[i] = mg ? mg->merged : -1;
    };
    for (size_t i = 0; i + 1 < m; ++i) rank_of(i);
    while (m > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < m; ++i)
        if (ranks[i] < ranks[best]) best = i;
      if (ranks[best] == INT32_MAX) break;
      s[best] = merged[best];
      for (size_t i = best + 1; i + 1 < m; ++i) {
        s[i] = s[i + 1];
        ranks[i] = ranks[i + 1];
        merged[i] = merged[i + 1];
      }
      --m;
      if (best > 0) rank_of(best - 1);
      if (best + 1 < m) rank_of(best);
    }
    s.resize(m);
    return;
  }
  // Heap over a doubly linked list; entries are validated lazily when popped.
  struct Entry {
    int32_t rank;  // merge rank (lower first)
    int32_t pos;   // index of the left symbol (lower first among equal ranks: leftmost)
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<int32_t> prev(n), next(n);
  std::vector<uint8_t> alive(n, 1);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[static_cast<size_t>(pos)] < 0) return;
    const MergeTable::Merge* mg = merges.find(s[static_cast<size_t>(pos)],
                                              s[static_cast<size_t>(next[static_cast<size_t>(pos)])]);
    if (mg) heap.push({mg->rank, pos});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    const auto p = static_cast<size_t>(e.pos);
    if (!alive[p] || next[p] < 0) continue;
    const auto q = static_cast<size_t>(next[p]);
    const MergeTable::Merge* mg = merges.find(s[p], s[q]);
    if (!mg || mg->rank != e.rank) continue;  // stale: the pair changed since it was pushed
    s[p] = mg->merged;
    alive[q] = 0;
    next[p] = next[q];
    if (next[p] >= 0) prev[static_cast<size_t>(next[p])] = e.pos;
    push(prev[p]);
    push(e.pos);
  }
  size_t w = 0;
  for (size_t i = 0; i < n; ++i)
    if (alive[i]) s[w++] = s[i];
  s.resize(w);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    if (auto it = vocab.find(word); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (byte_level && word.size() == 1 && byte_ids[static_cast<uint8_t>(word[0])] >= 0) {
    out.push_back(byte_ids[static_cast<uint8_t>(word[0])]);
    return;
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  CacheShard* shard = nullptr;
  if (cacheable) {
    shard = &cache_[std::hash<std::string_view>{}(word) % kCacheShards];
    std::lock_guard lock(shard->mutex);
    if (auto it = shard->map.find(word); it != shard->map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  thread_local std::vector<int32_t> symbols;
  merge_word(word, symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (cacheable) {
    std::lock_guard lock(shard->mutex);
    if (shard->map.size() >= kCacheShardCapacity) shard->map.clear();
    shard->map.emplace(std::string(word), symbols);
  }
}

}  // namespace qaft::tok
