// BpeModel — the "BPE" model of a tokenizer.json: vocabulary, ranked merges, and the merge loop
// that turns one pre-tokenized word into token ids, with a per-word cache.
//
// Byte-level models (the pre-tokenizer ends in ByteLevel) are run on raw bytes: every vocabulary
// entry is converted from GPT-2's printable byte alphabet back to bytes at load time, a word's
// initial symbols are its bytes, and no UTF-8 re-encoding happens per word. Other models start from
// UTF-8 characters, with byte fallback (<0xNN> tokens) or the unknown token for characters not in
// the vocabulary.
//
// The merge loop applies, repeatedly, the adjacent pair of lowest rank (the leftmost among equal
// ranks) — the rule of Hugging Face tokenizers and of GPT-2. Short words use a linear scan, long
// ones a heap over a linked list (O(n log n), so a megabyte-long word is not quadratic).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qaft::tok {

// Transparent string hashing so that maps keyed by std::string can be probed with string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Open-addressing hash map from a (left id, right id) pair to its merge (rank, merged id).
class MergeTable {
 public:
  struct Merge {
    int32_t rank;    // position in the merges list (lower merges first)
    int32_t merged;  // id of the merged token
  };
  void build(const std::vector<std::pair<uint64_t, Merge>>& entries);
  // The merge of (left, right), or nullptr.
  const Merge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pack(left, right);
    size_t i = slot_of(key);
    while (true) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.merge;
      if (s.key == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }
  static uint64_t pack(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Slot {
    uint64_t key = kEmpty;  // packed pair, kEmpty for a free slot
    Merge merge{};          // the merge stored under key
  };
  size_t slot_of(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  std::vector<Slot> slots_;  // power-of-two table, linear probing, load factor <= 1/2
  size_t mask_ = 0;          // slots_.size() - 1
  int shift_ = 64;           // 64 - log2(slots_.size()), for the multiplicative hash
};

// Loaded BPE model state. Filled by the tokenizer.json loader, then immutable (except the cache).
struct BpeModel {
  bool byte_level = false;         // vocabulary keys are raw bytes; words start as bytes
  bool byte_fallback = false;      // unknown characters become <0xNN> tokens (char-level models)
  bool ignore_merges = false;      // a word that is itself in the vocabulary is emitted whole
  bool fuse_unk = false;           // consecutive unknown tokens collapse into one
  int32_t unk_id = -1;             // id of unk_token, -1 when the model has none
  StringIdMap vocab;               // key (raw bytes when byte_level, else text) → id
  StringIdMap text_only;           // byte_level: entries outside the byte alphabet, by text → id
  std::vector<std::string> id_to_text; // id → the entry as written in tokenizer.json ("" = hole)
  std::array<int32_t, 256> byte_ids{};  // byte-level: id of each single byte (-1 if absent)
  std::array<int32_t, 256> fallback_ids{};  // byte_fallback: id of <0xNN> (-1 if absent)
  MergeTable merges;               // (left, right) → (rank, merged)

  BpeModel();
  ~BpeModel();
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one pre-tokenized word (raw bytes for byte-level models, else UTF-8 text).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  // Empties the per-word cache (benchmarks use it to measure a cold start).
  void clear_cache() const;

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& symbols) const;
  void initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const;

  // The word cache: sharded so that concurrent encoders rarely contend; a full shard is cleared.
  struct CacheShard {
    std::mutex mutex;                                  // guards map
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;  // word → ids
  };
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kCacheShardCapacity = 16384;  // entries per shard
  static constexpr size_t kMaxCachedWordBytes = 128;    // longer words are rare and not cached
  std::unique_ptr<CacheShard[]> cache_;
};

}  // namespace qaft::tok
