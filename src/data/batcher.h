// Batcher — turns tokenized examples (data/dataset.h) into fixed-shape [B, T] training batches in
// the layout of the model's Batch (src/model/transformer.h): ids, next-token targets (-100 = no
// loss), per-token loss weights, RoPE positions and packed-document segment ids.
//
// Packing (default) places whole examples one after another in a row; each gets its own segment id
// (1, 2, ... in the row; the padding at the end of a row gets the next id), its positions restart
// at 0, and no target crosses a document boundary, so with segment-aware attention the documents
// are independent. Padding mode puts one example per row. The example order of each epoch is a
// seeded shuffle (Philox, qaft::CounterRng(seed, epoch)); a cursor (epoch, index of the next
// example) serialises to JSON so that a resumed job produces exactly the batches the uninterrupted
// run would have. See docs/data.md.
#pragma once

#include "data/dataset.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <vector>

namespace qaft {

inline constexpr int32_t kIgnoreTarget = -100;  // target value meaning "no loss here"

// How examples are laid into rows.
enum class BatchMode {
  kPack,  // several whole examples per row, separated by segment ids
  kPad,   // one example per row, padded
};

// Shape and order of the batches.
struct BatcherOptions {
  int64_t batch_size = 1;          // B: rows per batch
  int64_t seq_len = 0;             // T: tokens per row (longer examples are truncated to T)
  BatchMode mode = BatchMode::kPack;  // packing or padding
  bool shuffle = true;             // permute the examples every epoch
  uint64_t seed = 0;               // shuffle seed
  int32_t pad_id = 0;              // token id written into padding
};

// Where the batcher is: the next example to place is order(epoch)[index].
struct BatchCursor {
  int64_t epoch = 0;  // epochs completed before the current one
  int64_t index = 0;  // examples of the current epoch already placed in batches

  nlohmann::json to_json() const;
  static BatchCursor from_json(const nlohmann::json& j);  // kInvalidArgument when malformed
  bool operator==(const BatchCursor&) const = default;
};

// One batch, row-major [B, T] host buffers (the model's Batch points into them).
struct HostBatch {
  int64_t B = 0;                   // rows
  int64_t T = 0;                   // tokens per row
  std::vector<int32_t> ids;        // token ids (pad_id in padding)
  std::vector<int32_t> targets;    // ids[t+1] where trained on, else kIgnoreTarget
  std::vector<float> weights;      // the example's weight at each target, 0 elsewhere
  std::vector<int32_t> positions;  // position inside the document (0 in padding)
  std::vector<int32_t> segment;    // document id in the row, from 1; padding: last id + 1
  int64_t examples = 0;            // examples placed in this batch
  int64_t target_tokens = 0;       // targets != kIgnoreTarget
  int64_t epoch = 0;               // the epoch the examples came from
  bool operator==(const HostBatch&) const = default;
};

class Batcher {
 public:
  // `examples` must be non-empty; shared so that several batchers (or a resumed one) reuse them.
  Batcher(std::shared_ptr<const std::vector<Example>> examples, BatcherOptions options);

  // The next batch; moves the cursor. A batch never mixes epochs: the last batch of an epoch may
  // have empty (all-padding) rows.
  HostBatch next();

  const BatchCursor& cursor() const { return cursor_; }
  void seek(const BatchCursor& cursor);  // kInvalidArgument when out of range

  // The example order of `epoch` (a permutation of 0..n-1; the identity without shuffle).
  std::vector<int64_t> order(int64_t epoch) const;
  const BatcherOptions& options() const { return options_; }

 private:
  void ensure_order();
  std::shared_ptr<const std::vector<Example>> examples_;  // the data set
  BatcherOptions options_;                                // shape and order
  BatchCursor cursor_;                                    // next example to place
  std::vector<int64_t> order_;                            // order(order_epoch_)
  int64_t order_epoch_ = -1;                              // the epoch order_ belongs to
};

}  // namespace qaft
