// Model parity against the independent PyTorch implementation in tests/reference/ (Debian's
// python3-torch, autograd, float64): for a tiny random model of each family, the logits, the loss
// and the gradient of every parameter must agree.
//   float64 engine vs float64 reference: ‖Δ‖/‖ref‖ ≤ 1e-12 on logits and loss, ≤ 1e-11 per gradient
//     tensor (measured: ~1e-15, i.e. both are exact up to the order of float64 roundings)
//   float32 engine vs float64 reference: ≤ 1e-5 on logits and loss, ≤ 1e-4 per gradient tensor
//     (measured: ≤ 7e-7 logits, ≤ 2e-6 gradients)
#include "io/safetensors.h"
#include "io/safetensors_index.h"
#include "model/transformer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <cstring>

using namespace qaft;
namespace fs = std::filesystem;

namespace {

const char* kPython = "/usr/bin/python3";

bool have_torch() {
  static const bool ok = std::system((std::string(kPython) + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0;
  return ok;
}

std::string ref_dir() { return std::string(QAFT_TEST_DATA_DIR) + "/../reference"; }

struct Reference {
  fs::path dir;
  std::vector<int32_t> ids, targets;
  int64_t B = 2, T = 9;
  std::optional<SafetensorsFile> out;  // the reference's results
};

std::string json_matrix(const std::vector<int32_t>& v, int64_t B, int64_t T) {
  std::string s = "[";
  for (int64_t b = 0; b < B; ++b) {
    s += b ? ",[" : "[";
    for (int64_t t = 0; t < T; ++t) s += (t ? "," : "") + std::to_string(v[static_cast<size_t>(b * T + t)]);
    s += "]";
  }
  return s + "]";
}

void run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "command failed: " << cmd;
}

// Builds the model with the reference's generator and runs the reference on a fixed batch.
void make_reference(const std::string& family, Reference& r) {
  r.dir = fs::temp_directory_path() / ("qaft_parity_" + family + "_" + std::to_string(::getpid()));
  fs::remove_all(r.dir);
  fs::create_directories(r.dir);
  run(std::string(kPython) + " " + ref_dir() + "/make_tiny_model.py --family " + family + " --seed 7 --out " +
      (r.dir / "model").string() + " > /dev/null");
  const ModelConfig c = model_config_load((r.dir / "model").string());
  for (int64_t i = 0; i < r.B * r.T; ++i) {
    r.ids.push_back(static_cast<int32_t>((i * 37 + 11) % c.vocab_size));
    r.targets.push_back(i % 4 == 3 ? -100 : static_cast<int32_t>((i * 53 + 5) % c.vocab_size));
  }
  std::ofstream(r.dir / "ids.json") << json_matrix(r.ids, r.B, r.T);
  std::ofstream(r.dir / "targets.json") << json_matrix(r.targets, r.B, r.T);
  run(std::string(kPython) + " " + ref_dir() + "/qaft_torch_ref.py --quiet --threads 1 --model " +
      (r.dir / "model").string() + " --ids " + (r.dir / "ids.json").string() + " --targets " +
      (r.dir / "targets.json").string() + " --out " + (r.dir / "ref.safetensors").string());
  r.out = SafetensorsFile::open((r.dir / "ref.safetensors").string());
}

std::vector<double> read_doubles(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo& info = f.info(name);
  std::vector<double> v(static_cast<size_t>(info.numel()));
  const uint8_t* p = f.bytes(name).data();
  for (size_t i = 0; i < v.size(); ++i) {
    if (info.dtype == DType::kF64) std::memcpy(&v[i], p + 8 * i, 8);
    else {
      float x;
      std::memcpy(&x, p + 4 * i, 4);
      v[i] = x;
    }
  }
  return v;
}

// ‖a − b‖ / max(‖b‖, tiny)
double rel_l2(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) d += (a[i] - b[i]) * (a[i] - b[i]), n += b[i] * b[i];
  return std::sqrt(d) / std::max(std::sqrt(n), 1e-30);
}

template <typename T>
void compare(const std::string& family, const Reference& r, double tol_logits, double tol_grad) {
  const std::string model_dir = (r.dir / "model").string();
  const ModelConfig c = model_config_load(model_dir);
  ParamStore<T> p = load_params<T>(ShardedCheckpoint::open(model_dir), c);
  ParamStore<T> g(p.specs());
  Transformer<T> m(c, &p, &g);
  Batch b{r.B, r.T, r.ids.data(), r.targets.data(), nullptr, nullptr, nullptr};
  std::vector<T> logits(static_cast<size_t>(r.B * r.T * c.vocab_size));
  m.logits(b, logits.data());
  const std::vector<double> ref_logits = read_doubles(*r.out, "logits");
  const double logits_err = rel_l2(std::vector<double>(logits.begin(), logits.end()), ref_logits);
  EXPECT_LT(logits_err, tol_logits) << family << " logits";
  LossResult loss = m.forward(b);
  const double ref_loss = read_doubles(*r.out, "loss")[0];
  EXPECT_NEAR(loss.mean(), ref_loss, tol_logits * std::fabs(ref_loss)) << family << " loss";
  m.backward(static_cast<T>(1.0 / loss.weight_sum));
  int64_t compared = 0;
  double worst_grad = 0;
  std::string worst_name;
  for (const ParamSpec& spec : p.specs()) {
    if (!spec.trainable) continue;
    const int64_t copies = spec.experts > 0 ? spec.experts : 1, per = spec.numel() / copies;
    for (int64_t e = 0; e < copies; ++e) {
      const std::string name = "grad." + spec.hf_name(spec.experts > 0 ? e : -1);
      ASSERT_TRUE(r.out->contains(name)) << family << ": reference lacks " << name;
      const T* gp = g.get(spec.name) + e * per;
      const std::vector<double> mine(gp, gp + per), ref = read_doubles(*r.out, name);
      double norm = 0;
      for (double v : ref) norm += v * v;
      if (norm == 0) {  // an expert no token chose: both must be exactly zero
        for (double v : mine) ASSERT_EQ(v, 0.0) << family << " " << name;
        continue;
      }
      const double err = rel_l2(mine, ref);
      EXPECT_LT(err, tol_grad) << family << " " << name;
      if (err > worst_grad) worst_grad = err, worst_name = name;
      ++compared;
    }
  }
  EXPECT_GT(compared, 10) << family;
  std::printf("%-16s %s: logits rel %.1e, loss %.10f vs %.10f, %lld gradient tensors, worst rel %.1e (%s)\n",
              family.c_str(), sizeof(T) == 8 ? "fp64" : "fp32", logits_err, loss.mean(), ref_loss,
              static_cast<long long>(compared), worst_grad, worst_name.c_str());
}

}  // namespace

class ModelParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelParity, LogitsLossAndEveryGradientMatchPyTorch) {
  if (!have_torch()) GTEST_SKIP() << kPython << " cannot import torch (install Debian's python3-torch: scripts/setup does)";
  Reference r;
  make_reference(GetParam(), r);
  if (HasFatalFailure()) return;
  compare<double>(GetParam(), r, 1e-12, 1e-11);
  compare<float>(GetParam(), r, 1e-5, 1e-4);
  fs::remove_all(r.dir);
}

INSTANTIATE_TEST_SUITE_P(Families, ModelParity,
                         ::testing::Values("deepseek_v3", "deepseek_v2_lite", "llama", "qwen2", "qwen3",
                                           "qwen2_moe", "qwen3_moe"));
