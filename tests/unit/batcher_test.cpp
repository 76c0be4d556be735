// Batcher: packing with segment ids / positions / boundary-safe targets, padding mode, the seeded
// shuffle, and resuming from a serialised cursor (batches after resume == uninterrupted run).
#include "core/error.h"
#include "data/batcher.h"

#include <gtest/gtest.h>

#include <set>

namespace qaft {
namespace {

// Example k: ids 1000k + 0..len-1, the second half trained on, weight 1 + k.
std::shared_ptr<const std::vector<Example>> make_examples(const std::vector<int>& lengths) {
  auto v = std::make_shared<std::vector<Example>>();
  for (size_t k = 0; k < lengths.size(); ++k) {
    Example e;
    e.line = static_cast<int64_t>(k) + 1;
    e.weight = 1.0f + static_cast<float>(k);
    for (int t = 0; t < lengths[k]; ++t) {
      e.ids.push_back(static_cast<int32_t>(1000 * k + static_cast<size_t>(t)));
      e.loss_mask.push_back(t >= lengths[k] / 2 ? 1 : 0);
    }
    v->push_back(std::move(e));
  }
  return v;
}

TEST(Batcher, PacksDocumentsWithSegmentsPositionsAndTargets) {
  BatcherOptions o;
  o.batch_size = 2;
  o.seq_len = 8;
  o.shuffle = false;
  o.pad_id = -7;
  Batcher b(make_examples({3, 4, 6, 2}), o);
  const HostBatch x = b.next();
  // Row 0: ex0 (3) + ex1 (4) + 1 pad; row 1: ex2 (6) + ex3 (2).
  EXPECT_EQ(x.ids, (std::vector<int32_t>{0, 1, 2, 1000, 1001, 1002, 1003, -7,
                                         2000, 2001, 2002, 2003, 2004, 2005, 3000, 3001}));
  EXPECT_EQ(x.segment, (std::vector<int32_t>{1, 1, 1, 2, 2, 2, 2, 3, 1, 1, 1, 1, 1, 1, 2, 2}));
  EXPECT_EQ(x.positions, (std::vector<int32_t>{0, 1, 2, 0, 1, 2, 3, 0, 0, 1, 2, 3, 4, 5, 0, 1}));
  // ex0 mask {0,1,1}: targets at t=0,1; its last token never predicts ex1's first.
  const int32_t I = kIgnoreTarget;
  EXPECT_EQ(x.targets, (std::vector<int32_t>{1, 2, I, I, 1002, 1003, I, I,
                                             I, I, 2003, 2004, 2005, I, 3001, I}));
  EXPECT_FLOAT_EQ(x.weights[0], 1.0f);
  EXPECT_FLOAT_EQ(x.weights[4], 2.0f);
  EXPECT_FLOAT_EQ(x.weights[3], 0.0f);
  EXPECT_FLOAT_EQ(x.weights[2], 0.0f);
  EXPECT_EQ(x.examples, 4);
  EXPECT_EQ(x.target_tokens, 8);
  EXPECT_EQ(b.cursor(), (BatchCursor{0, 4}));
  // The next batch starts epoch 1.
  EXPECT_EQ(b.next().epoch, 1);
}

TEST(Batcher, PaddingModeAndTruncationAndPartialLastBatch) {
  BatcherOptions o;
  o.batch_size = 2;
  o.seq_len = 4;
  o.mode = BatchMode::kPad;
  o.shuffle = false;
  Batcher b(make_examples({2, 9, 3}), o);
  const HostBatch x = b.next();
  EXPECT_EQ(x.ids, (std::vector<int32_t>{0, 1, 0, 0, 1000, 1001, 1002, 1003}));
  EXPECT_EQ(x.segment, (std::vector<int32_t>{1, 1, 2, 2, 1, 1, 1, 1}));
  const HostBatch y = b.next();  // the last example of the epoch and an all-padding row
  EXPECT_EQ(y.examples, 1);
  EXPECT_EQ(y.epoch, 0);
  EXPECT_EQ(y.targets[4], kIgnoreTarget);
  EXPECT_EQ(y.segment[4], 1);
  EXPECT_EQ(b.next().epoch, 1);
}

TEST(Batcher, SeededShuffleIsAPermutationPerEpoch) {
  BatcherOptions o;
  o.seq_len = 16;
  o.seed = 7;
  Batcher a(make_examples(std::vector<int>(100, 3)), o);
  const std::vector<int64_t> e0 = a.order(0), e1 = a.order(1);
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()).size(), 100u);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(e0, Batcher(make_examples(std::vector<int>(100, 3)), o).order(0));
  o.seed = 8;
  EXPECT_NE(e0, Batcher(make_examples(std::vector<int>(100, 3)), o).order(0));
}

TEST(Batcher, ResumeFromCursorContinuesExactly) {
  std::vector<int> lengths;
  for (int k = 0; k < 37; ++k) lengths.push_back(2 + (k * 7) % 13);
  const auto ex = make_examples(lengths);
  for (BatchMode mode : {BatchMode::kPack, BatchMode::kPad}) {
    BatcherOptions o;
    o.batch_size = 3;
    o.seq_len = 16;
    o.mode = mode;
    o.seed = 123;
    Batcher full(ex, o);
    std::vector<HostBatch> expected;
    for (int i = 0; i < 40; ++i) expected.push_back(full.next());  // several epochs
    Batcher first(ex, o);
    for (int i = 0; i < 17; ++i) ASSERT_EQ(first.next(), expected[static_cast<size_t>(i)]);
    const std::string saved = first.cursor().to_json().dump();
    Batcher resumed(ex, o);
    resumed.seek(BatchCursor::from_json(nlohmann::json::parse(saved)));
    for (int i = 17; i < 40; ++i) ASSERT_EQ(resumed.next(), expected[static_cast<size_t>(i)]) << i;
  }
}

TEST(Batcher, RejectsBadInput) {
  BatcherOptions o;
  o.seq_len = 8;
  EXPECT_THROW(Batcher(std::make_shared<std::vector<Example>>(), o), Error);
  o.seq_len = 0;
  EXPECT_THROW(Batcher(make_examples({3}), o), Error);
  o.seq_len = 8;
  Batcher b(make_examples({3}), o);
  EXPECT_THROW(b.seek(BatchCursor{0, 5}), Error);
  EXPECT_THROW(BatchCursor::from_json(nlohmann::json::parse(R"({"epoch": "x"})")), Error);
}

}  // namespace
}  // namespace qaft
