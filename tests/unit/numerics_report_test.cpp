// `qaft numerics`: the four tables exist, are deterministic, and show the effects they claim.
#include "numerics/numerics_report.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

using namespace qaft;

namespace {
double num(const ReportCell& c) { return std::get<double>(c); }
std::string str(const ReportCell& c) { return std::get<std::string>(c); }
}  // namespace

TEST(NumericsReport, ReproducesTheFourClaims) {
  NumericsReportConfig c;
  c.rows = 64;
  c.dots_per_k = 8;
  c.dot_ks = {4096};
  auto tables = numerics_report(c);
  ASSERT_EQ(tables.size(), 4u);
  // (a) finer granularity flushes fewer regular values to zero; 1x128 is the best.
  const auto& a = tables[0];
  ASSERT_EQ(str(a.rows[0][0]), "per-tensor");
  ASSERT_EQ(str(a.rows[3][0]), "1x128");
  EXPECT_LT(num(a.rows[3][2]), num(a.rows[0][2]) / 5);
  EXPECT_LT(num(a.rows[3][1]), num(a.rows[0][1]));
  // (b) E4M3 has about half the relative error of E5M2 under 1x128 scaling.
  const auto& b = tables[1];
  EXPECT_EQ(str(b.rows[0][0]), "e4m3");
  EXPECT_LT(num(b.rows[0][2]) * 1.5, num(b.rows[1][2]));
  // (c) promotion every 128 cuts the worst-case error by an order of magnitude.
  const auto& t = tables[2];
  EXPECT_EQ(str(t.rows[0][2]), "truncated, no promotion");
  EXPECT_EQ(str(t.rows[1][2]), "truncated, promote every 128");
  EXPECT_GT(num(t.rows[0][4]), 10 * num(t.rows[1][4]));
  // (d) power-of-two scales cost some resolution relative to fp32 scales.
  const auto& d = tables[3];
  EXPECT_EQ(str(d.rows[1][1]), "ue8m0");
  EXPECT_GE(num(d.rows[1][2]), num(d.rows[0][2]));
  // Deterministic for a seed.
  auto again = numerics_report(c);
  EXPECT_EQ(num(again[0].rows[0][1]), num(a.rows[0][1]));
}

TEST(NumericsReport, CliPrintsJson) {
  const std::string cmd = std::string(QAFT_BINARY_DIR) + "/apps/qaft/qaft numerics --json --rows 16 --dots 4";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << out;
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j["tables"].size(), 4u);
  EXPECT_EQ(j["tables"][2]["id"], "c");
  EXPECT_TRUE(j["tables"][0]["rows"][0].contains("granularity"));
  EXPECT_EQ(j["config"]["rows"], 16);
}

TEST(NumericsReport, CliRejectsBadFlagsWithUsageExitCode) {
  const std::string cmd = std::string(QAFT_BINARY_DIR) + "/apps/qaft/qaft numerics --rows 0 2>/dev/null";
  int rc = system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 2);
}
