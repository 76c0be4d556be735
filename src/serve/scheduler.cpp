#include "serve/scheduler.h"

#include "core/error.h"
#include "core/log.h"
#include "infer/engine.h"
#include "serve/metrics.h"

#include <algorithm>

namespace qaft {

// ---------------------------------------------------------------------------------------------
// GenerationStream

GenerationUpdate GenerationStream::take() {
  GenerationUpdate u;
  u.text = std::move(pending_);
  pending_.clear();
  u.done = done_;
  u.finish_reason = finish_reason_;
  u.failure = failure_;
  u.error = error_;
  u.prompt_tokens = prompt_tokens_;
  u.completion_tokens = static_cast<int64_t>(tokens_.size());
  return u;
}

GenerationUpdate GenerationStream::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return done_ || !pending_.empty(); });
  return take();
}

GenerationUpdate GenerationStream::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return done_; });
  return take();
}

std::vector<int32_t> GenerationStream::tokens() const {
  std::lock_guard lock(mu_);
  return tokens_;
}

void GenerationStream::push(const std::string& text, int32_t token) {
  {
    std::lock_guard lock(mu_);
    pending_ += text;
    tokens_.push_back(token);
  }
  cv_.notify_all();
}

void GenerationStream::push_text(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard lock(mu_);
    pending_ += text;
  }
  cv_.notify_all();
}

void GenerationStream::finish(const std::string& finish_reason) {
  {
    std::lock_guard lock(mu_);
    done_ = true;
    finish_reason_ = finish_reason;
  }
  cv_.notify_all();
}

void GenerationStream::fail(GenerationFailure failure, const std::string& error) {
  {
    std::lock_guard lock(mu_);
    done_ = true;
    failure_ = failure;
    error_ = error;
  }
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// One request inside the engine: generate()'s loop (infer/sampler.cpp) unrolled into steps.

namespace {

// The earliest occurrence of any stop sequence in `text` that ends at or after `from`, or npos
// (the search of generate()).
size_t find_stop(const std::string& text, size_t from, const std::vector<std::string>& stops) {
  size_t best = std::string::npos;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    const size_t start = from >= s.size() - 1 ? from - (s.size() - 1) : 0;
    best = std::min(best, text.find(s, start));
  }
  return best;
}

bool is_utf8_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

struct Scheduler::Slot {
  std::shared_ptr<GenerationStream> stream;
  std::vector<int32_t> prompt;
  SamplingParams params;
  Sequence sequence;           // created by the engine thread on admission
  size_t fed = 0;              // prompt tokens already in the cache
  int32_t last_token = 0;      // the token to feed in the next decode step
  int64_t generated = 0;       // tokens sampled
  IncrementalDecoder decoder;
  std::string text;            // the decoded text so far
  size_t emitted = 0;          // bytes of `text` pushed to the stream
  size_t holdback = 0;         // longest stop sequence − 1: bytes that may still start one
  bool ended = false;

  Slot(const Tokenizer& tok, std::vector<int32_t> p, SamplingParams sp)
      : stream(std::make_shared<GenerationStream>(static_cast<int64_t>(p.size()))),
        prompt(std::move(p)),
        params(std::move(sp)),
        decoder(tok, params.skip_special_tokens) {
    for (const std::string& s : params.stop) holdback = std::max(holdback, s.empty() ? 0 : s.size() - 1);
  }

  bool prefilling() const { return fed < prompt.size(); }

  void end_with(const std::string& finish_reason) {
    stream->push_text(text.substr(emitted));
    emitted = text.size();
    stream->finish(finish_reason);
    ended = true;
  }

  void fail(GenerationFailure f, const std::string& why) {
    stream->fail(f, why);
    ended = true;
  }

  // Takes the sampled token `t` (index `generated`), as generate() does.
  void accept(int32_t t) {
    const int64_t i = generated++;
    const auto& stop_ids = params.stop_token_ids;
    if (std::find(stop_ids.begin(), stop_ids.end(), t) != stop_ids.end()) {
      stream->push("", t);
      const size_t checked = text.size();
      text += decoder.flush();
      if (const size_t at = find_stop(text, checked, params.stop); at != std::string::npos) text.resize(at);
      end_with("stop");
      return;
    }
    const size_t checked = text.size();
    text += decoder.push(t);
    const bool last = i + 1 == params.max_tokens;
    if (last) text += decoder.flush();
    if (const size_t at = find_stop(text, checked, params.stop); at != std::string::npos) {
      text.resize(at);
      stream->push("", t);
      end_with("stop");
      return;
    }
    if (last) {
      stream->push("", t);
      end_with("length");
      return;
    }
    // Emit what can no longer be the start of a stop sequence, on a character boundary.
    size_t end = text.size() > emitted + holdback ? text.size() - holdback : emitted;
    while (end > emitted && end < text.size() && is_utf8_continuation(text[end])) --end;
    stream->push(text.substr(emitted, end - emitted), t);
    emitted = end;
    last_token = t;
  }
};

// ---------------------------------------------------------------------------------------------
// Scheduler

Scheduler::Scheduler(InferenceModel& model, const Tokenizer& tokenizer, SchedulerOptions options, Metrics* metrics)
    : model_(model), tokenizer_(tokenizer), options_(options), metrics_(metrics) {
  QAFT_CHECK(options_.max_concurrency >= 1, "max_concurrency must be >= 1, got {}", options_.max_concurrency);
  QAFT_CHECK(options_.max_queue >= 0, "max_queue must be >= 0, got {}", options_.max_queue);
  QAFT_CHECK(options_.prefill_chunk >= 1, "prefill_chunk must be >= 1, got {}", options_.prefill_chunk);
  sample_vocab_ = std::min<int64_t>(model_.config().vocab_size, tokenizer_.vocab_size());
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(0); }

Scheduler::Submission Scheduler::submit(std::vector<int32_t> prompt, SamplingParams params) {
  QAFT_CHECK(!prompt.empty(), "a request needs at least one prompt token");
  auto slot = std::make_unique<Slot>(tokenizer_, std::move(prompt), std::move(params));
  Submission s;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return {Admission::kStopped, nullptr};
    // Every slot busy and max_queue requests already waiting for one.
    const int64_t free_slots = std::max<int64_t>(0, options_.max_concurrency - active_.load());
    if (static_cast<int64_t>(queue_.size()) >= free_slots + options_.max_queue) return {Admission::kQueueFull, nullptr};
    s.stream = slot->stream;
    queue_.push_back(std::move(slot));
  }
  cv_.notify_all();
  return s;
}

void Scheduler::shutdown(double grace_seconds) {
  {
    std::lock_guard lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(std::max(0.0, grace_seconds)));
    if (!stopping_ || deadline < deadline_) deadline_ = deadline;
    stopping_ = true;
  }
  cv_.notify_all();
  std::lock_guard join(join_mu_);
  if (thread_.joinable()) thread_.join();
}

int64_t Scheduler::queue_length() const {
  std::lock_guard lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

int64_t Scheduler::active() const { return active_.load(); }

void Scheduler::publish(const std::vector<std::unique_ptr<Slot>>& active) {
  active_.store(static_cast<int64_t>(active.size()));
  if (!metrics_) return;
  int64_t cache = 0;
  for (const auto& s : active) cache += s->sequence.cache_bytes();
  metrics_->set_queue(queue_length(), static_cast<int64_t>(active.size()), cache);
}

void Scheduler::loop() {
  std::vector<std::unique_ptr<Slot>> active;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      auto idle = [&] { return queue_.empty() && active.empty(); };
      while (idle() && !stopping_) cv_.wait(lock);
      if (stopping_ && (idle() || std::chrono::steady_clock::now() >= deadline_)) {
        // Shutdown: whatever has not finished by the deadline fails.
        if (metrics_)
          for (size_t i = 0; i < queue_.size() + active.size(); ++i) metrics_->count_cancelled();
        for (auto& s : queue_) s->fail(GenerationFailure::kShutdown, "the server is shutting down");
        for (auto& s : active) s->fail(GenerationFailure::kShutdown, "the server is shutting down");
        queue_.clear();
        active.clear();
        break;
      }
      // Admission: queued requests take the free slots, in arrival order.
      while (static_cast<int64_t>(active.size()) < options_.max_concurrency && !queue_.empty()) {
        std::unique_ptr<Slot> s = std::move(queue_.front());
        queue_.pop_front();
        if (s->params.max_tokens <= 0) {  // generate(): nothing to do
          s->end_with("length");
          continue;
        }
        // The prompt and every generated token but the last go through the model.
        const int64_t context = model_.config().max_position_embeddings;
        if (static_cast<int64_t>(s->prompt.size()) + s->params.max_tokens - 1 > context) {
          s->fail(GenerationFailure::kInvalidRequest,
                  fmt::format("{} prompt tokens + max_tokens {} exceed the model's context of {} tokens",
                              s->prompt.size(), s->params.max_tokens, context));
          continue;
        }
        s->sequence = model_.new_sequence();
        active.push_back(std::move(s));
      }
      active_.store(static_cast<int64_t>(active.size()));
    }
    run_step(active);
    publish(active);
  }
  publish(active);
}

void Scheduler::run_step(std::vector<std::unique_ptr<Slot>>& active) {
  const ModelConfig& config = model_.config();
  std::vector<StepRequest> requests;
  std::vector<Slot*> in_step;
  std::vector<int64_t> fed_now;  // prompt tokens each request adds (0 when decoding)
  for (auto& slot : active) {
    Slot& s = *slot;
    if (s.stream->cancelled()) {
      if (metrics_) metrics_->count_cancelled();  // counted before the stream shows the end
      s.fail(GenerationFailure::kCancelled, "the client went away");
      continue;
    }
    std::span<const int32_t> tokens;
    if (s.prefilling()) {
      const size_t n = std::min(s.prompt.size() - s.fed, static_cast<size_t>(options_.prefill_chunk));
      tokens = std::span<const int32_t>(s.prompt).subspan(s.fed, n);
    } else {
      tokens = std::span<const int32_t>(&s.last_token, 1);
    }
    // What model.step() would refuse for the whole step is refused here for this request alone.
    const auto bad = std::find_if(tokens.begin(), tokens.end(),
                                  [&](int32_t id) { return id < 0 || id >= config.vocab_size; });
    if (bad != tokens.end()) {
      s.fail(GenerationFailure::kInvalidRequest,
             fmt::format("token id {} is outside the vocabulary [0, {})", *bad, config.vocab_size));
      continue;
    }
    if (s.sequence.length() + static_cast<int64_t>(tokens.size()) > config.max_position_embeddings) {
      s.fail(GenerationFailure::kInvalidRequest,
             fmt::format("the request needs more than the model's context of {} tokens", config.max_position_embeddings));
      continue;
    }
    requests.push_back(StepRequest{&s.sequence, tokens, false});
    in_step.push_back(&s);
    fed_now.push_back(s.prefilling() ? static_cast<int64_t>(tokens.size()) : 0);
  }

  if (!requests.empty()) {
    std::vector<std::vector<float>> logits;
    try {
      logits = model_.step(requests);
    } catch (const std::exception& e) {
      QAFT_LOG(kError, "engine step over {} requests failed: {}", requests.size(), e.what());
      for (Slot* s : in_step) s->fail(GenerationFailure::kInternal, fmt::format("inference failed: {}", e.what()));
      logits.clear();
    }
    int64_t prompt_tokens = 0, generated = 0;
    for (size_t r = 0; r < logits.size(); ++r) {
      Slot& s = *in_step[r];
      try {
        s.fed += static_cast<size_t>(fed_now[r]);
        prompt_tokens += fed_now[r];
        if (s.prefilling()) continue;  // more prompt chunks to go
        const std::span<const float> l(logits[r].data(), static_cast<size_t>(sample_vocab_));
        s.accept(sample_token(l, s.params, static_cast<uint64_t>(s.generated)));
        ++generated;
      } catch (const Error& e) {
        s.fail(e.kind() == ErrorKind::kInvalidArgument ? GenerationFailure::kInvalidRequest : GenerationFailure::kInternal,
               e.message());
      } catch (const std::exception& e) {
        s.fail(GenerationFailure::kInternal, e.what());
      }
    }
    if (metrics_) metrics_->add_step(prompt_tokens, generated);
  }
  std::erase_if(active, [](const std::unique_ptr<Slot>& s) { return s->ended; });
}

}  // namespace qaft
