#include "serve/metrics.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

namespace qaft {

namespace {

// Prometheus label values escape backslash, double quote and newline.
std::string label_value(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

void Metrics::count_request(std::string_view endpoint, int code) {
  std::lock_guard lock(mu_);
  ++requests_[{std::string(endpoint), code}];
}

void Metrics::add_step(int64_t prompt_tokens, int64_t generated_tokens) {
  const Clock::time_point now = Clock::now();
  std::lock_guard lock(mu_);
  prompt_tokens_ += prompt_tokens;
  generated_tokens_ += generated_tokens;
  window_.push_back({now, prompt_tokens, generated_tokens});
  const auto horizon = now - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kWindowSeconds));
  while (!window_.empty() && window_.front().time < horizon) window_.pop_front();
}

void Metrics::count_cancelled() {
  std::lock_guard lock(mu_);
  ++cancelled_;
}

void Metrics::set_queue(int64_t queued, int64_t active, int64_t kv_cache_bytes) {
  std::lock_guard lock(mu_);
  queued_ = queued;
  active_ = active;
  kv_cache_bytes_ = kv_cache_bytes;
}

void Metrics::set_weight_bytes(int64_t bytes) {
  std::lock_guard lock(mu_);
  weight_bytes_ = bytes;
}

int64_t Metrics::requests(std::string_view endpoint, int code) const {
  std::lock_guard lock(mu_);
  const auto it = requests_.find({std::string(endpoint), code});
  return it == requests_.end() ? 0 : it->second;
}

int64_t Metrics::generated_tokens() const {
  std::lock_guard lock(mu_);
  return generated_tokens_;
}

int64_t Metrics::prompt_tokens() const {
  std::lock_guard lock(mu_);
  return prompt_tokens_;
}

int64_t Metrics::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

std::pair<double, double> Metrics::rates(Clock::time_point now) const {
  // Over the window, or over the uptime while the server is younger than the window.
  const double span = std::clamp(std::chrono::duration<double>(now - start_).count(), 1e-3, kWindowSeconds);
  const auto horizon = now - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(span));
  int64_t prompt = 0, generated = 0;
  for (const StepSample& s : window_)
    if (s.time >= horizon) prompt += s.prompt, generated += s.generated;
  return {static_cast<double>(prompt) / span, static_cast<double>(generated) / span};
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  header(out, "qaft_requests_total", "counter", "HTTP requests answered, by endpoint and status code.");
  for (const auto& [key, n] : requests_)
    out += fmt::format("qaft_requests_total{{endpoint=\"{}\",code=\"{}\"}} {}\n", label_value(key.first), key.second, n);
  header(out, "qaft_prompt_tokens_total", "counter", "Prompt tokens prefilled.");
  out += fmt::format("qaft_prompt_tokens_total {}\n", prompt_tokens_);
  header(out, "qaft_generated_tokens_total", "counter", "Tokens generated.");
  out += fmt::format("qaft_generated_tokens_total {}\n", generated_tokens_);
  header(out, "qaft_cancelled_requests_total", "counter", "Generations dropped before their end (client gone, shutdown).");
  out += fmt::format("qaft_cancelled_requests_total {}\n", cancelled_);
  const auto [prompt_rate, generated_rate] = rates(Clock::now());
  header(out, "qaft_tokens_per_second", "gauge", "Generated tokens per second over the last 10 seconds.");
  out += fmt::format("qaft_tokens_per_second {:.3f}\n", generated_rate);
  header(out, "qaft_prompt_tokens_per_second", "gauge", "Prefilled prompt tokens per second over the last 10 seconds.");
  out += fmt::format("qaft_prompt_tokens_per_second {:.3f}\n", prompt_rate);
  header(out, "qaft_queue_length", "gauge", "Requests waiting for a sequence slot.");
  out += fmt::format("qaft_queue_length {}\n", queued_);
  header(out, "qaft_active_sequences", "gauge", "Sequences being prefilled or decoded.");
  out += fmt::format("qaft_active_sequences {}\n", active_);
  header(out, "qaft_kv_cache_bytes", "gauge", "Bytes of the KV cache of the active sequences.");
  out += fmt::format("qaft_kv_cache_bytes {}\n", kv_cache_bytes_);
  header(out, "qaft_weight_bytes", "gauge", "Bytes of the serving weights.");
  out += fmt::format("qaft_weight_bytes {}\n", weight_bytes_);
  header(out, "qaft_resident_memory_bytes", "gauge", "Resident set size of the server process.");
  out += fmt::format("qaft_resident_memory_bytes {}\n", resident_memory_bytes());
  return out;
}

int64_t resident_memory_bytes() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(f >> size >> resident)) return 0;
  return resident * static_cast<int64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace qaft
