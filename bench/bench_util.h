// Shared helpers for the benchmarks in bench/: best-of-N timing after warm-up, a memcpy reference
// measured in the same run with the same thread count, and the report (machine, commit, config, and
// a table of achieved GB/s as a ratio to memcpy). Figures are only comparable within one run, which
// is why every kernel is reported next to its own memcpy reference.
//
// Byte convention: `bytes_moved` = bytes the kernel reads + bytes it writes (write-allocate traffic
// not counted). The memcpy reference copies bytes_moved / 2 bytes, i.e. moves the same total.
// Threads: bench_bytes sets the OpenMP thread count; kernels split their work in `#pragma omp
// parallel` regions (see bench_split).
#pragma once

#include "core/cpu_features.h"
#include "core/timer.h"

#include <omp.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qaft::bench {

struct BenchResult {
  std::string name;          // what ran, e.g. "nf4->fp32 rows 4096x4096"
  int threads = 1;           // OpenMP threads used by the kernel and its memcpy reference
  size_t bytes = 0;          // bytes moved by one run: input read + output written
  double seconds = 0.0;      // best of the repetitions
  double gbps = 0.0;         // bytes / seconds / 1e9
  double memcpy_gbps = 0.0;  // memcpy moving the same total bytes with the same threads
  double ratio = 0.0;        // gbps / memcpy_gbps
};

struct BenchConfig {
  int warmup = 2;  // untimed runs first (page faults, caches, frequency)
  int reps = 15;   // timed runs; the best is kept
};

// Best wall time of `reps` runs of fn after `warmup` untimed ones.
inline double bench_best_seconds(const std::function<void()>& fn, const BenchConfig& cfg) {
  for (int i = 0; i < cfg.warmup; ++i) fn();
  double best = 1e300;
  for (int i = 0; i < cfg.reps; ++i) {
    Timer t;
    fn();
    best = std::min(best, t.seconds());
  }
  return best;
}

// A shell command's exit code (-1 when it did not exit normally) and its stdout + stderr.
struct CmdOut {
  int status = -1;
  std::string out;
};
inline CmdOut run_cmd(const std::string& cmd) {
  CmdOut r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) r.out += buf;
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// [begin, end) of thread t's share of [0, n) split evenly over nt threads.
inline std::pair<int64_t, int64_t> bench_split(int64_t n, int t, int nt) {
  return {n * t / nt, n * (t + 1) / nt};
}

// A parallel memcpy of bytes_moved / 2 bytes (so bytes_moved in total, read + written), split over
// the threads of an enclosing omp_set_num_threads.
class BenchMemcpy {
 public:
  explicit BenchMemcpy(size_t bytes_moved)
      : n_(std::max<size_t>(bytes_moved / 2, 64)), src_(new char[n_]), dst_(new char[n_]) {
    std::memset(src_.get(), 1, n_);  // fault the pages in before timing
    std::memset(dst_.get(), 2, n_);
  }
  void operator()() const {
#pragma omp parallel
    {
      const auto [b, e] =
          bench_split(static_cast<int64_t>(n_), omp_get_thread_num(), omp_get_num_threads());
      std::memcpy(dst_.get() + b, src_.get() + b, static_cast<size_t>(e - b));
    }
  }
  size_t bytes_moved() const { return 2 * n_; }

 private:
  size_t n_;                     // bytes copied
  std::unique_ptr<char[]> src_;  // [n_]
  std::unique_ptr<char[]> dst_;  // [n_]
};

// GB/s of BenchMemcpy(bytes_moved) with `threads` threads.
inline double bench_memcpy_gbps(size_t bytes_moved, int threads, const BenchConfig& cfg = {}) {
  const BenchMemcpy copy(bytes_moved);
  omp_set_num_threads(threads);
  return static_cast<double>(copy.bytes_moved()) / bench_best_seconds([&] { copy(); }, cfg) / 1e9;
}

// Times kernel() with `threads` OpenMP threads and the matching memcpy reference, alternating the
// two in every repetition so that both see the same machine conditions (other load, frequency).
inline BenchResult bench_bytes(const char* name, size_t bytes_moved, int threads,
                               const std::function<void()>& kernel, const BenchConfig& cfg = {}) {
  const BenchMemcpy copy(bytes_moved);
  omp_set_num_threads(threads);
  for (int i = 0; i < cfg.warmup; ++i) {
    kernel();
    copy();
  }
  double best_kernel = 1e300, best_copy = 1e300;
  for (int i = 0; i < cfg.reps; ++i) {
    Timer t;
    kernel();
    best_kernel = std::min(best_kernel, t.seconds());
    t.reset();
    copy();
    best_copy = std::min(best_copy, t.seconds());
  }
  BenchResult r;
  r.name = name;
  r.threads = threads;
  r.bytes = bytes_moved;
  r.seconds = best_kernel;
  r.gbps = static_cast<double>(bytes_moved) / best_kernel / 1e9;
  r.memcpy_gbps = static_cast<double>(copy.bytes_moved()) / best_copy / 1e9;
  r.ratio = r.gbps / r.memcpy_gbps;
  return r;
}

// QAFT_GIT_COMMIT if set, else `git rev-parse --short HEAD` run in the current directory
// (uncommitted changes are not flagged), else "unknown".
inline std::string bench_git_commit() {
  if (const char* env = std::getenv("QAFT_GIT_COMMIT"); env && *env) return env;
  std::string out;
  if (FILE* p = popen("git rev-parse --short HEAD 2>/dev/null", "r")) {
    char buf[64];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

inline void bench_print_header(const char* title, const std::string& config) {
  std::printf("%s\n", title);
  std::printf("machine : %s; %d OpenMP threads available\n", cpu_features().summary().c_str(),
              omp_get_max_threads());
  std::printf("commit  : %s\n", bench_git_commit().c_str());
  std::printf("config  : %s\n", config.c_str());
  std::printf(
      "bytes   : input read + output written per run; memcpy copies half that (same total)\n\n");
}

inline void print_ratio_table(const std::vector<BenchResult>& results) {
  std::printf("%-40s %3s %10s %9s %8s %11s %6s\n", "kernel", "thr", "bytes(MB)", "best(ms)", "GB/s",
              "memcpy GB/s", "ratio");
  for (const BenchResult& r : results) {
    std::printf("%-40s %3d %10.1f %9.3f %8.2f %11.2f %6.2f\n", r.name.c_str(), r.threads,
                static_cast<double>(r.bytes) / 1e6, r.seconds * 1e3, r.gbps, r.memcpy_gbps,
                r.ratio);
  }
  std::fflush(stdout);
}

}  // namespace qaft::bench
