// The server's counters and gauges, rendered for GET /metrics in the Prometheus text format 0.0.4:
//
//   qaft_requests_total{endpoint,code}   counter  HTTP requests answered, by route and status
//   qaft_prompt_tokens_total             counter  prompt tokens prefilled
//   qaft_generated_tokens_total          counter  tokens generated (sampled)
//   qaft_cancelled_requests_total        counter  generations dropped (client gone, shutdown)
//   qaft_tokens_per_second               gauge    generated tokens per second over the last 10 s
//   qaft_prompt_tokens_per_second        gauge    prefilled prompt tokens per second, same window
//   qaft_queue_length                    gauge    requests waiting for a sequence slot
//   qaft_active_sequences                gauge    sequences being prefilled or decoded
//   qaft_kv_cache_bytes                  gauge    KV cache of the active sequences
//   qaft_weight_bytes                    gauge    the serving weights (after the live merge)
//   qaft_resident_memory_bytes           gauge    the process's resident set (/proc/self/statm)
//
// Thread-safe: the HTTP threads count requests, the engine thread reports steps and gauges.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace qaft {

class Metrics {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr double kWindowSeconds = 10.0;  // the tokens-per-second window

  // One HTTP request answered with `code` on `endpoint` (a route of the server, or "other").
  void count_request(std::string_view endpoint, int code);
  // One engine step: prompt tokens prefilled and tokens generated in it.
  void add_step(int64_t prompt_tokens, int64_t generated_tokens);
  void count_cancelled();
  void set_queue(int64_t queued, int64_t active, int64_t kv_cache_bytes);
  void set_weight_bytes(int64_t bytes);

  int64_t requests(std::string_view endpoint, int code) const;
  int64_t generated_tokens() const;
  int64_t prompt_tokens() const;
  int64_t cancelled() const;

  // The Prometheus exposition text.
  std::string render() const;

 private:
  // Tokens per second over the window ending now: {prompt, generated}.
  std::pair<double, double> rates(Clock::time_point now) const;

  struct StepSample {
    Clock::time_point time;
    int64_t prompt = 0;
    int64_t generated = 0;
  };

  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  int64_t prompt_tokens_ = 0;
  int64_t generated_tokens_ = 0;
  int64_t cancelled_ = 0;
  int64_t queued_ = 0;
  int64_t active_ = 0;
  int64_t kv_cache_bytes_ = 0;
  int64_t weight_bytes_ = 0;
  Clock::time_point start_ = Clock::now();
  mutable std::deque<StepSample> window_;  // steps of the last kWindowSeconds
};

// The resident set size of this process in bytes (0 when /proc is unavailable).
int64_t resident_memory_bytes();

}  // namespace qaft
