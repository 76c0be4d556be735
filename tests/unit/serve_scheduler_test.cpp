// The server's scheduler (serve/scheduler.h), in-process without HTTP, on a tiny FP8 model:
//   - one request gives exactly generate()'s tokens, text and finish_reason — greedy, seeded
//     sampling, stop sequences (also across tokens), stop token, length; its streamed deltas add up
//     to the final text;
//   - requests batched together (continuous batching, prefill chunks mixed with decode tokens) get
//     the token ids they get alone;
//   - a request the model would refuse fails alone; cancellation, the queue bound and shutdown.
#include "serve/metrics.h"
#include "serve/scheduler.h"
#include "serve_fixtures.h"

#include <gtest/gtest.h>

#include <thread>

using namespace qaft;
using namespace qaft::test;

namespace {

struct Collected {
  std::string streamed;  // concatenation of every update's text
  GenerationUpdate last;
  std::vector<int32_t> tokens;
};

Collected collect(GenerationStream& s) {
  Collected c;
  for (;;) {
    GenerationUpdate u = s.next(std::chrono::milliseconds(50));
    c.streamed += u.text;
    if (u.done) {
      c.last = u;
      break;
    }
  }
  c.tokens = s.tokens();
  return c;
}

std::vector<int32_t> with_stop_token(const Generation& g) {
  std::vector<int32_t> t = g.tokens;
  if (g.finish_reason == "stop") t.push_back(kServeEos);  // the server counts the stop token it sampled
  return t;
}

class ServeScheduler : public ::testing::Test {
 protected:
  ServeScheduler() : model_(serve_model()), tokenizer_(tiny_chat_tokenizer()) {}
  InferenceModel model_;
  Tokenizer tokenizer_;
  ServeReference ref_;
};

}  // namespace

TEST_F(ServeScheduler, OneRequestIsGenerate) {
  Scheduler sched(model_, tokenizer_, {});
  const std::vector<int32_t> prompt = ref_.chat_prompt({{"user", "What wine goes with fish?"}});
  const std::vector<SamplingParams> cases = {
      ServeReference::params(24),                          // greedy
      ServeReference::params(24, 0.9, 7),                  // seeded sampling
      ServeReference::params(40, 1.2, 3, {}, true),        // no stop token: length
  };
  for (const SamplingParams& p : cases) {
    const Generation g = ref_.generate_ids(prompt, p);
    auto sub = sched.submit(prompt, p);
    ASSERT_EQ(sub.admission, Scheduler::Admission::kQueued);
    const Collected c = collect(*sub.stream);
    EXPECT_EQ(c.last.failure, GenerationFailure::kNone) << c.last.error;
    EXPECT_EQ(c.streamed, g.text);
    EXPECT_EQ(c.last.finish_reason, g.finish_reason);
    EXPECT_EQ(c.last.prompt_tokens, static_cast<int64_t>(prompt.size()));
    EXPECT_EQ(c.tokens, p.stop_token_ids.empty() ? g.tokens : with_stop_token(g));
    EXPECT_EQ(c.last.completion_tokens, static_cast<int64_t>(c.tokens.size()));
  }
}

TEST_F(ServeScheduler, StopSequencesCutTheTextAsGenerateDoes) {
  Scheduler sched(model_, tokenizer_, {});
  const std::vector<int32_t> prompt = ref_.chat_prompt({{"user", "Tell me about red wine."}});
  const Generation free = ref_.generate_ids(prompt, ServeReference::params(40, 0.7, 11, {}, true));
  ASSERT_GE(free.text.size(), 12u) << "the sampled text is too short for stop sequences";
  // Stop sequences taken from the text: 1 byte, several bytes spanning tokens, one never produced,
  // and an overlap of two candidates.
  const std::vector<std::vector<std::string>> stops = {
      {free.text.substr(5, 1)},
      {free.text.substr(3, 4)},
      {"never-there", free.text.substr(8, 3)},
      {free.text.substr(6, 5), free.text.substr(7, 2)},
  };
  for (const auto& stop : stops) {
    const SamplingParams p = ServeReference::params(40, 0.7, 11, stop, true);
    const Generation g = ref_.generate_ids(prompt, p);
    auto sub = sched.submit(prompt, p);
    const Collected c = collect(*sub.stream);
    EXPECT_EQ(c.streamed, g.text) << stop[0];
    EXPECT_EQ(c.last.finish_reason, g.finish_reason);
    EXPECT_EQ(c.tokens, g.tokens);
  }
}

TEST_F(ServeScheduler, BatchedRequestsGetTheTokensTheyGetAlone) {
  // Prompts of different lengths, one longer than a prefill chunk, so that steps mix prefill
  // chunks and decode tokens of different requests.
  SchedulerOptions o;
  o.prefill_chunk = 16;
  Scheduler sched(model_, tokenizer_, o);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i)
    prompts.push_back(ref_.chat_prompt({{"user", std::string(static_cast<size_t>(3 + 7 * i), static_cast<char>('a' + i))}}));
  std::vector<Generation> alone;
  for (const auto& p : prompts) alone.push_back(ref_.generate_ids(p, ServeReference::params(20)));
  std::vector<std::shared_ptr<GenerationStream>> streams;
  for (const auto& p : prompts) streams.push_back(sched.submit(p, ServeReference::params(20)).stream);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Collected c = collect(*streams[i]);
    EXPECT_EQ(c.tokens, with_stop_token(alone[i])) << "request " << i;
    EXPECT_EQ(c.streamed, alone[i].text) << "request " << i;
  }
}

TEST_F(ServeScheduler, ARefusedRequestFailsAloneAndTheOthersFinish) {
  Metrics metrics;
  Scheduler sched(model_, tokenizer_, {}, &metrics);
  const std::vector<int32_t> good = ref_.chat_prompt({{"user", "hello"}});
  const Generation g = ref_.generate_ids(good, ServeReference::params(16));
  auto a = sched.submit(good, ServeReference::params(16));
  auto bad = sched.submit({1, 2, 999}, ServeReference::params(16));  // 999 is outside the vocabulary
  auto huge = sched.submit(std::vector<int32_t>(kServeContext + 1, 5), ServeReference::params(4));  // past the context
  auto b = sched.submit(good, ServeReference::params(16));
  const Collected cb = collect(*bad.stream), ch = collect(*huge.stream), ca = collect(*a.stream), cc = collect(*b.stream);
  EXPECT_EQ(cb.last.failure, GenerationFailure::kInvalidRequest);
  EXPECT_NE(cb.last.error.find("999"), std::string::npos) << cb.last.error;
  EXPECT_EQ(ch.last.failure, GenerationFailure::kInvalidRequest);
  EXPECT_EQ(ca.streamed, g.text);
  EXPECT_EQ(cc.streamed, g.text);
  EXPECT_GT(metrics.generated_tokens(), 0);
  EXPECT_GT(metrics.prompt_tokens(), 2 * static_cast<int64_t>(good.size()) - 1);
}

TEST_F(ServeScheduler, CancelledRequestsLeaveTheBatch) {
  Metrics metrics;
  Scheduler sched(model_, tokenizer_, {}, &metrics);
  auto sub = sched.submit(ref_.chat_prompt({{"user", "x"}}), ServeReference::params(kServeContext - 64, 1.0, 1, {}, true));
  sub.stream->next(std::chrono::milliseconds(200));
  sub.stream->cancel();
  const GenerationUpdate u = sub.stream->wait();
  EXPECT_EQ(u.failure, GenerationFailure::kCancelled);
  EXPECT_LT(u.completion_tokens, kServeContext - 64);
  EXPECT_EQ(metrics.cancelled(), 1);
  // The engine goes on.
  auto next = sched.submit(ref_.chat_prompt({{"user", "y"}}), ServeReference::params(3));
  EXPECT_EQ(next.stream->wait().failure, GenerationFailure::kNone);
}

TEST_F(ServeScheduler, QueueBoundRefusesAndEveryAcceptedRequestFinishes) {
  SchedulerOptions o;
  o.max_concurrency = 1;
  o.max_queue = 2;
  Scheduler sched(model_, tokenizer_, o);
  const std::vector<int32_t> prompt = ref_.chat_prompt({{"user", "queue"}});
  std::vector<std::shared_ptr<GenerationStream>> accepted;
  int full = 0;
  for (int i = 0; i < 10; ++i) {
    auto s = sched.submit(prompt, ServeReference::params(300, 1.0, static_cast<uint64_t>(i), {}, true));
    if (s.admission == Scheduler::Admission::kQueueFull) ++full;
    else accepted.push_back(s.stream);
  }
  EXPECT_GE(full, 1);
  EXPECT_LE(accepted.size(), 9u);
  for (auto& s : accepted) {
    const GenerationUpdate u = s->wait();
    EXPECT_EQ(u.failure, GenerationFailure::kNone);
    EXPECT_EQ(u.finish_reason, "length");
    EXPECT_EQ(u.completion_tokens, 300);
  }
}

TEST_F(ServeScheduler, ShutdownFailsWhatIsLeftAfterTheGraceAndRefusesNewWork) {
  Scheduler sched(model_, tokenizer_, {});
  auto quick = sched.submit(ref_.chat_prompt({{"user", "a"}}), ServeReference::params(2));
  auto slow = sched.submit(ref_.chat_prompt({{"user", "b"}}), ServeReference::params(kServeContext - 64, 1.0, 1, {}, true));
  EXPECT_EQ(quick.stream->wait().failure, GenerationFailure::kNone);
  const auto t0 = std::chrono::steady_clock::now();
  sched.shutdown(0.05);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  const GenerationUpdate u = slow.stream->wait();
  EXPECT_TRUE(u.failure == GenerationFailure::kShutdown || u.failure == GenerationFailure::kNone);
  EXPECT_EQ(sched.submit({1, 2}, ServeReference::params(2)).admission, Scheduler::Admission::kStopped);
  sched.shutdown(0);  // idempotent
}
