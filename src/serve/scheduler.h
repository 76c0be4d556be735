// Continuous batching for the server: ONE engine thread owns the InferenceModel and runs every
// request through it; the HTTP threads only queue requests and read their results.
//
// Each loop iteration of the engine thread admits queued requests while fewer than
// max_concurrency are active, then makes one model.step() over all active requests: a request
// still reading its prompt adds its next prefill chunk (≤ prefill_chunk tokens), a generating one
// its last sampled token. After the step every request whose prompt is complete samples its next
// token (sample_token with its own SamplingParams and token index) and pushes the new text to its
// GenerationStream. A request leaves the batch when it finishes, fails or is cancelled; queued
// requests take its slot at the next iteration.
//
// Generation follows generate() (infer/sampler.h) token for token: the same stop token ids, stop
// sequences on the incrementally decoded text (cut before the stop sequence), max_tokens, and
// finish_reason "stop" / "length". Streamed text holds back the last (longest stop − 1) bytes until
// they can no longer start a stop sequence, so the concatenated deltas equal the final text.
// Sampling only considers the ids the tokenizer can decode (min(model, tokenizer) vocabulary).
//
// Failures stay with their request: a request whose tokens the model would refuse (an id outside
// the vocabulary, past the context) or whose sampling or decoding throws fails alone
// (kInvalidRequest / kInternal); an exception of the step itself fails the requests of that step
// (their caches may be half-written) — the engine thread goes on with the next requests.
#pragma once

#include "infer/sampler.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace qaft {

class InferenceModel;
class Metrics;

struct SchedulerOptions {
  int64_t max_concurrency = 16;  // sequences in one step at most
  int64_t max_queue = 256;       // requests waiting while every slot is busy; submit() refuses beyond
  int64_t prefill_chunk = 256;   // prompt tokens one request adds per step
};

// Why a generation ended without finishing.
enum class GenerationFailure : uint8_t {
  kNone,
  kInvalidRequest,  // the model refused the request's tokens (HTTP 400)
  kInternal,        // an exception while running it (HTTP 500)
  kCancelled,       // the client went away
  kShutdown,        // the server stopped before it finished (HTTP 503)
};

// What the engine thread produced for one request since the last read.
struct GenerationUpdate {
  std::string text;                 // new text
  bool done = false;                // the request has ended (finished or failed)
  std::string finish_reason;        // when finished: "stop" | "length"
  GenerationFailure failure = GenerationFailure::kNone;
  std::string error;                // when failed: why
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;    // tokens sampled so far (a stop token id included)
};

// The channel between the engine thread (writes) and the request's thread (reads).
class GenerationStream {
 public:
  explicit GenerationStream(int64_t prompt_tokens) : prompt_tokens_(prompt_tokens) {}

  // Request side. next(): waits up to `timeout` for new text or the end and returns what arrived
  // (possibly nothing). wait(): everything until the end.
  GenerationUpdate next(std::chrono::milliseconds timeout);
  GenerationUpdate wait();
  // The client is gone: the engine drops the request at its next iteration.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  // Every token id sampled (a stop token id included); complete once done.
  std::vector<int32_t> tokens() const;

  // Engine side.
  void push(const std::string& text, int32_t token);
  void push_text(const std::string& text);
  void finish(const std::string& finish_reason);
  void fail(GenerationFailure failure, const std::string& error);

 private:
  GenerationUpdate take();  // with mu_ held

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;           // text not yet read
  std::vector<int32_t> tokens_;
  bool done_ = false;
  std::string finish_reason_;
  GenerationFailure failure_ = GenerationFailure::kNone;
  std::string error_;
  const int64_t prompt_tokens_;
  std::atomic<bool> cancelled_{false};
};

class Scheduler {
 public:
  // Starts the engine thread. `model`, `tokenizer` and `metrics` (may be nullptr) must outlive the
  // scheduler; the model is used by the engine thread only.
  Scheduler(InferenceModel& model, const Tokenizer& tokenizer, SchedulerOptions options, Metrics* metrics = nullptr);
  ~Scheduler();  // shutdown(0)
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  enum class Admission : uint8_t { kQueued, kQueueFull, kStopped };
  struct Submission {
    Admission admission = Admission::kQueued;
    std::shared_ptr<GenerationStream> stream;  // when queued
  };
  // Queues a request (prompt token ids, non-empty). kQueueFull when all max_concurrency slots are
  // taken and max_queue requests already wait (max_queue 0: no waiting), kStopped once shutdown()
  // began.
  Submission submit(std::vector<int32_t> prompt, SamplingParams params);

  // Stops accepting requests, lets the queued and active ones finish for up to `grace_seconds`,
  // fails those still running with kShutdown, and joins the engine thread. Idempotent.
  void shutdown(double grace_seconds);

  int64_t queue_length() const;
  int64_t active() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Slot;
  void loop();
  // One step over the active slots; removes the ones that ended.
  void run_step(std::vector<std::unique_ptr<Slot>>& active);
  void publish(const std::vector<std::unique_ptr<Slot>>& active);

  InferenceModel& model_;
  const Tokenizer& tokenizer_;
  const SchedulerOptions options_;
  Metrics* metrics_;
  int64_t sample_vocab_ = 0;  // ids that can be sampled: min(model vocabulary, tokenizer vocabulary)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Slot>> queue_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::atomic<int64_t> active_{0};
  std::thread thread_;
  std::mutex join_mu_;  // serialises shutdown()'s join
};

}  // namespace qaft
