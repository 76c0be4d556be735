// Batcher: seeded per-epoch shuffle, packing/padding into [B, T] rows, resumable cursor.
// See batcher.h and docs/data.md.
#include "data/batcher.h"

#include "core/error.h"
#include "core/rng.h"

#include <algorithm>
#include <numeric>

namespace qaft {

nlohmann::json BatchCursor::to_json() const { return {{"epoch", epoch}, {"index", index}}; }

BatchCursor BatchCursor::from_json(const nlohmann::json& j) {
  QAFT_CHECK(j.is_object() && j.contains("epoch") && j.contains("index") &&
                 j["epoch"].is_number_integer() && j["index"].is_number_integer(),
             "batch cursor: expected {{\"epoch\": int, \"index\": int}}, got {}", j.dump());
  return BatchCursor{j["epoch"].get<int64_t>(), j["index"].get<int64_t>()};
}

Batcher::Batcher(std::shared_ptr<const std::vector<Example>> examples, BatcherOptions options)
    : examples_(std::move(examples)), options_(options) {
  QAFT_CHECK(examples_ && !examples_->empty(), "batcher: no examples");
  QAFT_CHECK(options_.batch_size > 0 && options_.seq_len > 1,
             "batcher: batch size {} and sequence length {} must be positive (length >= 2)",
             options_.batch_size, options_.seq_len);
  for (const Example& e : *examples_)
    QAFT_CHECK(e.ids.size() == e.loss_mask.size(), "batcher: example of line {} has {} ids but {} mask entries",
               e.line, e.ids.size(), e.loss_mask.size());
}

std::vector<int64_t> Batcher::order(int64_t epoch) const {
  const auto n = static_cast<int64_t>(examples_->size());
  std::vector<int64_t> o(static_cast<size_t>(n));
  std::iota(o.begin(), o.end(), 0);
  if (!options_.shuffle) return o;
  // Fisher–Yates; draw k of the epoch's stream picks j in [0, i] (multiply-shift, bias < 2^-32·n).
  const CounterRng rng(options_.seed, static_cast<uint64_t>(epoch));
  uint64_t k = 0;
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>((uint64_t{rng.u32(k++)} * static_cast<uint64_t>(i + 1)) >> 32);
    std::swap(o[static_cast<size_t>(i)], o[static_cast<size_t>(j)]);
  }
  return o;
}

void Batcher::ensure_order() {
  if (order_epoch_ != cursor_.epoch) {
    order_ = order(cursor_.epoch);
    order_epoch_ = cursor_.epoch;
  }
}

void Batcher::seek(const BatchCursor& c) {
  QAFT_CHECK(c.epoch >= 0 && c.index >= 0 && c.index <= static_cast<int64_t>(examples_->size()),
             "batch cursor (epoch {}, index {}) is out of range for {} examples", c.epoch, c.index,
             examples_->size());
  cursor_ = c;
}

HostBatch Batcher::next() {
  const int64_t n = static_cast<int64_t>(examples_->size());
  if (cursor_.index >= n) cursor_ = BatchCursor{cursor_.epoch + 1, 0};
  ensure_order();
  const int64_t B = options_.batch_size, T = options_.seq_len;
  HostBatch b;
  b.B = B;
  b.T = T;
  b.epoch = cursor_.epoch;
  const auto size = static_cast<size_t>(B * T);
  b.ids.assign(size, options_.pad_id);
  b.targets.assign(size, kIgnoreTarget);
  b.weights.assign(size, 0.0f);
  b.positions.assign(size, 0);
  b.segment.assign(size, 0);
  for (int64_t row = 0; row < B && cursor_.index < n; ++row) {
    int64_t used = 0;    // tokens placed in this row
    int32_t docs = 0;    // documents placed in this row
    while (cursor_.index < n) {
      const Example& e = (*examples_)[static_cast<size_t>(order_[static_cast<size_t>(cursor_.index)])];
      const int64_t len = std::min<int64_t>(static_cast<int64_t>(e.ids.size()), T);
      if (docs > 0 && (options_.mode == BatchMode::kPad || used + len > T)) break;  // next row
      ++docs;
      const int64_t base = row * T + used;
      for (int64_t t = 0; t < len; ++t) {
        const auto i = static_cast<size_t>(base + t);
        b.ids[i] = e.ids[static_cast<size_t>(t)];
        b.positions[i] = static_cast<int32_t>(t);
        b.segment[i] = docs;
        if (t + 1 < len && e.loss_mask[static_cast<size_t>(t + 1)]) {
          b.targets[i] = e.ids[static_cast<size_t>(t + 1)];
          b.weights[i] = e.weight;
          ++b.target_tokens;
        }
      }
      used += len;
      ++b.examples;
      ++cursor_.index;
    }
    for (int64_t t = used; t < T; ++t) b.segment[static_cast<size_t>(row * T + t)] = docs + 1;
  }
  // Rows left empty at the end of an epoch are all padding (segment 1).
  for (size_t i = 0; i < size; ++i)
    if (b.segment[i] == 0) b.segment[i] = 1;
  return b;
}

}  // namespace qaft
