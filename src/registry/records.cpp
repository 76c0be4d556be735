#include "registry/records.h"

#include "core/error.h"

#include <array>
#include <ctime>

namespace qaft {

namespace {

constexpr std::array<std::string_view, 2> kModelKinds = {"base", "tuned"};
constexpr std::array<std::string_view, 5> kJobStatuses = {"queued", "running", "completed", "failed", "interrupted"};
constexpr std::array<std::string_view, 4> kDeploymentStatuses = {"starting", "running", "stopped", "failed"};

template <size_t N>
size_t parse_enum(const std::array<std::string_view, N>& names, std::string_view name, const char* what) {
  for (size_t i = 0; i < N; ++i)
    if (names[i] == name) return i;
  std::string valid;
  for (std::string_view n : names) valid += (valid.empty() ? "" : ", ") + std::string(n);
  QAFT_FAIL(ErrorKind::kInvalidFile, "the registry may come from a newer qaft", "unknown {} '{}' in the registry (known: {})",
            what, name, valid);
}

// JSON null for an empty string (absent timestamps, errors).
nlohmann::json or_null(const std::string& s) { return s.empty() ? nlohmann::json() : nlohmann::json(s); }

}  // namespace

std::string_view model_kind_name(ModelKind k) { return kModelKinds[static_cast<size_t>(k)]; }
ModelKind parse_model_kind(std::string_view name) {
  return static_cast<ModelKind>(parse_enum(kModelKinds, name, "model kind"));
}
std::string_view job_status_name(JobStatus s) { return kJobStatuses[static_cast<size_t>(s)]; }
JobStatus parse_job_status(std::string_view name) {
  return static_cast<JobStatus>(parse_enum(kJobStatuses, name, "job status"));
}
std::string_view deployment_status_name(DeploymentStatus s) { return kDeploymentStatuses[static_cast<size_t>(s)]; }
DeploymentStatus parse_deployment_status(std::string_view name) {
  return static_cast<DeploymentStatus>(parse_enum(kDeploymentStatuses, name, "deployment status"));
}

nlohmann::json DatasetRecord::to_json() const {
  return {{"name", name},   {"path", path},     {"source", source},         {"sha256", sha256},
          {"rows", rows},   {"tokens", tokens}, {"created_at", created_at}, {"stats", stats}};
}

std::string ModelRecord::adapter_dir() const { return kind == ModelKind::kTuned ? path + "/adapter" : std::string(); }

nlohmann::json ModelRecord::to_json() const {
  nlohmann::json j = {{"name", name},
                      {"kind", model_kind_name(kind)},
                      {"path", path},
                      {"format", format},
                      {"created_at", created_at},
                      {"qaft_version", qaft_version}};
  if (kind == ModelKind::kTuned) {
    j["adapter"] = adapter_dir();
    j["lineage"] = {{"base_model", base_model},
                    {"dataset", dataset},
                    {"dataset_sha256", dataset_sha256},
                    {"job", source_job ? nlohmann::json(*source_job) : nlohmann::json()},
                    {"qaft_version", qaft_version}};
  }
  j["config"] = config;
  return j;
}

nlohmann::json JobRecord::to_json() const {
  return {{"id", id},
          {"status", job_status_name(status)},
          {"output_model", output_model},
          {"base_model", base_model},
          {"dataset", dataset},
          {"dataset_sha256", dataset_sha256},
          {"pid", pid ? nlohmann::json(pid) : nlohmann::json()},
          {"dir", dir},
          {"qaft_version", qaft_version},
          {"created_at", created_at},
          {"started_at", or_null(started_at)},
          {"finished_at", or_null(finished_at)},
          {"metrics", metrics},
          {"error", or_null(error)},
          {"config", config}};
}

nlohmann::json DeploymentRecord::to_json() const {
  return {{"name", name},
          {"model", model},
          {"adapter", or_null(adapter)},
          {"precision", precision},
          {"live_merge", live_merge},
          {"host", host},
          {"port", port},
          {"pid", pid ? nlohmann::json(pid) : nlohmann::json()},
          {"status", deployment_status_name(status)},
          {"created_at", created_at},
          {"error", or_null(error)}};
}

void validate_registry_name(std::string_view name, std::string_view what) {
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = !name.empty() && name.size() <= 64 && lower_or_digit(name[0]);
  for (char c : name) ok = ok && (lower_or_digit(c) || c == '.' || c == '_' || c == '-');
  QAFT_CHECK_HINT(ok, ErrorKind::kInvalidArgument,
                  "names are 1-64 characters: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
                  "invalid {} name '{}'", what, name);
}

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace qaft
