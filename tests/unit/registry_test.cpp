// The workspace registry (src/registry): SHA-256 against the FIPS vectors, names, the layout and
// schema (WAL, foreign keys, user_version), every table's rows and refusals, lineage of a tuned
// model, job liveness through the job lock, a deployment's life (lock, starting, running on its
// port, stopped, re-created after a stop or a death), transactions that leave no partial row (a full
// database, a failing configuration, a read-only connection), the sft job configuration, and two
// processes writing one workspace at once (400 datasets + 400 jobs, integrity_check ok).
#include "core/error.h"
#include "registry/job_lock.h"
#include "registry/sft_job.h"
#include "registry/sha256.h"
#include "registry/workspace.h"
#include "temp_dir.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>

namespace qaft {
namespace {

namespace fs = std::filesystem;

// Runs `f`, expecting a qaft::Error of `kind` whose message contains `text`.
template <typename F>
void expect_error(F&& f, ErrorKind kind, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << text << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(e.message().find(text), std::string::npos) << e.what();
  }
}

DatasetRecord make_dataset(const std::string& name, const std::string& path = "/nowhere/d.jsonl") {
  DatasetRecord d;
  d.name = name;
  d.path = path;
  d.source = "/src/" + name + ".jsonl";
  d.sha256 = sha256_hex(name);
  d.rows = 10;
  d.tokens = 1000;
  d.stats = {{"valid_rows", 10}};
  return d;
}

ModelRecord make_base(const std::string& name, const std::string& format = "fp8") {
  ModelRecord m;
  m.name = name;
  m.kind = ModelKind::kBase;
  m.path = "/models/" + name;
  m.format = format;
  m.config = {{"model_type", "deepseek_v3"}};
  return m;
}

JobRecord make_job(const std::string& output, const std::string& base = "base", const std::string& data = "data") {
  JobRecord j;
  j.output_model = output;
  j.base_model = base;
  j.dataset = data;
  return j;
}

nlohmann::json trivial_config(int64_t id, const fs::path& dir) { return {{"id", id}, {"dir", dir.string()}}; }

int64_t count_rows(Workspace& ws, const char* table) {
  return ws.db().query_int(std::string("SELECT count(*) FROM ") + table);
}

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 million;  // one million 'a', fed in uneven pieces
  const std::string chunk(997, 'a');
  size_t left = 1000000;
  while (left > 0) {
    const size_t n = std::min(left, chunk.size());
    million.update(chunk.data(), n);
    left -= n;
  }
  EXPECT_EQ(million.hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Registry, Names) {
  for (const std::string& ok : std::vector<std::string>{"a", "my-model", "ds.v2_final", "0abc", std::string(64, 'x')})
    EXPECT_NO_THROW(validate_registry_name(ok, "dataset")) << ok;
  for (const char* bad : {"", "A", "-x", ".x", "_x", "a b", "a/b", "a:b", "é", "x\n"})
    expect_error([&] { validate_registry_name(bad, "dataset"); }, ErrorKind::kInvalidArgument, "invalid dataset name");
  expect_error([&] { validate_registry_name(std::string(65, 'x'), "model"); }, ErrorKind::kInvalidArgument,
               "invalid model name");
}

TEST(Registry, LayoutSchemaAndSettings) {
  test::TempDir tmp;
  const fs::path home = tmp.path() / "ws";
  {
    Workspace ws = Workspace::open(home);
    for (const char* sub : {"datasets", "models", "jobs", "deployments"}) EXPECT_TRUE(fs::is_directory(home / sub)) << sub;
    EXPECT_TRUE(fs::exists(home / "registry.db"));
    EXPECT_EQ(ws.db().query_text("PRAGMA journal_mode"), "wal");
    EXPECT_EQ(ws.db().query_int("PRAGMA foreign_keys"), 1);
    EXPECT_EQ(ws.db().query_int("PRAGMA user_version"), 1);
    EXPECT_GT(ws.db().query_int("PRAGMA busy_timeout"), 0);
    for (const char* t : {"datasets", "models", "jobs", "deployments"})
      EXPECT_EQ(ws.db().query_int(std::string("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='") + t + "'"), 1);
    ws.add_dataset(make_dataset("kept"));
  }
  {
    Workspace again = Workspace::open(home);  // reopening migrates nothing and keeps the rows
    EXPECT_EQ(again.datasets().size(), 1u);
    again.db().exec("PRAGMA user_version = 99");
  }
  expect_error([&] { Workspace::open(home); }, ErrorKind::kUnsupported, "schema version 99");
  // A file where the workspace should be.
  std::ofstream(tmp.file("afile")) << "x";
  expect_error([&] { Workspace::open(tmp.path() / "afile"); }, ErrorKind::kIo, "not a directory");
}

TEST(Registry, DatasetsRowsAndRefusals) {
  test::TempDir tmp;
  Workspace ws = Workspace::open(tmp.path());
  expect_error([&] { ws.dataset("nope"); }, ErrorKind::kInvalidArgument, "no dataset is registered yet");
  const std::string file = (ws.datasets_dir() / "d1.jsonl").string();
  std::ofstream(file) << "{}\n";
  ws.add_dataset(make_dataset("d1", file));
  ws.add_dataset(make_dataset("d2"));
  expect_error([&] { ws.add_dataset(make_dataset("d1")); }, ErrorKind::kInvalidArgument, "already registered");
  expect_error([&] { ws.add_dataset(make_dataset("Bad Name")); }, ErrorKind::kInvalidArgument, "invalid dataset name");
  expect_error([&] { ws.dataset("d3"); }, ErrorKind::kInvalidArgument, "registered: d1, d2");
  const DatasetRecord d = ws.dataset("d1");
  EXPECT_EQ(d.sha256, sha256_hex("d1"));
  EXPECT_EQ(d.tokens, 1000);
  EXPECT_EQ(d.stats["valid_rows"], 10);
  EXPECT_FALSE(d.created_at.empty());
  // A failing step inside the insert's transaction leaves no row.
  EXPECT_THROW(ws.add_dataset(make_dataset("d4"), [] { throw std::runtime_error("rename failed"); }), std::runtime_error);
  EXPECT_FALSE(ws.find_dataset("d4"));
  ws.delete_dataset("d1", false);
  EXPECT_FALSE(ws.find_dataset("d1"));
  EXPECT_FALSE(fs::exists(file));
}

TEST(Registry, JobsLineageAndDeletes) {
  test::TempDir tmp;
  Workspace ws = Workspace::open(tmp.path());
  ws.add_model(make_base("base"));
  ws.add_dataset(make_dataset("data"));
  expect_error([&] { ws.add_job(make_job("out", "nobase"), trivial_config); }, ErrorKind::kInvalidArgument,
               "unknown model 'nobase'; registered: base");
  expect_error([&] { ws.add_job(make_job("out", "base", "nodata"), trivial_config); }, ErrorKind::kInvalidArgument,
               "unknown dataset 'nodata'; registered: data");
  expect_error([&] { ws.add_job(make_job("base"), trivial_config); }, ErrorKind::kInvalidArgument,
               "a model named 'base' is already registered");
  // A configuration that fails records nothing.
  expect_error([&] {
    ws.add_job(make_job("out"), [](int64_t, const fs::path&) -> nlohmann::json {
      QAFT_FAIL(ErrorKind::kInvalidArgument, "", "bad setting");
    });
  }, ErrorKind::kInvalidArgument, "bad setting");
  EXPECT_EQ(count_rows(ws, "jobs"), 0);

  const int64_t id = ws.add_job(make_job("out"), trivial_config);
  JobRecord j = ws.job(id);
  EXPECT_EQ(j.status, JobStatus::kQueued);
  EXPECT_EQ(j.dataset_sha256, sha256_hex("data"));
  EXPECT_EQ(j.config["id"], id);
  EXPECT_EQ(j.dir, ws.job_dir(id).string());
  EXPECT_TRUE(fs::is_directory(j.dir));
  EXPECT_FALSE(j.qaft_version.empty());
  expect_error([&] { ws.add_job(make_job("out"), trivial_config); }, ErrorKind::kInvalidArgument,
               fmt::format("already the output of job {} (queued)", id));
  expect_error([&] { ws.add_model(make_base("out")); }, ErrorKind::kInvalidArgument,
               fmt::format("reserved for the output of job {}", id));
  expect_error([&] { ws.job(id + 7); }, ErrorKind::kInvalidArgument, fmt::format("registered: {}", id));

  // Liveness: running while its lock is held; interrupted once the holder is gone.
  {
    auto lock = JobLock::try_acquire(ws.job_lock_path(id));
    ASSERT_TRUE(lock);
    EXPECT_FALSE(JobLock::try_acquire(ws.job_lock_path(id)));  // exclusive, even within one process
    ws.mark_job_running(id, ::getpid());
    EXPECT_EQ(ws.job(id).status, JobStatus::kRunning);
    expect_error([&] { ws.delete_job(id, true); }, ErrorKind::kInvalidArgument, "is running");
  }
  EXPECT_EQ(ws.job(id).status, JobStatus::kInterrupted);
  EXPECT_EQ(ws.jobs().at(0).status, JobStatus::kInterrupted);

  // Completion records the tuned model with its lineage, in one transaction.
  ModelRecord tuned;
  tuned.name = "out";
  tuned.kind = ModelKind::kTuned;
  tuned.path = j.dir;
  tuned.base_model = "base";
  tuned.format = "lora";
  tuned.config = j.config;
  tuned.source_job = id;
  tuned.dataset = "data";
  tuned.dataset_sha256 = j.dataset_sha256;
  ws.complete_job(id, {{"final_loss", 1.5}}, tuned);
  j = ws.job(id);
  EXPECT_EQ(j.status, JobStatus::kCompleted);
  EXPECT_EQ(j.metrics["final_loss"], 1.5);
  const ModelRecord m = ws.model("out");
  EXPECT_EQ(m.kind, ModelKind::kTuned);
  EXPECT_EQ(m.base_model, "base");
  EXPECT_EQ(m.dataset_sha256, sha256_hex("data"));
  EXPECT_EQ(m.source_job, id);
  EXPECT_EQ(m.config, j.config);
  EXPECT_EQ(m.adapter_dir(), j.dir + "/adapter");
  EXPECT_FALSE(m.qaft_version.empty());
  const nlohmann::json mj = m.to_json();
  EXPECT_EQ(mj["lineage"]["base_model"], "base");
  EXPECT_EQ(mj["lineage"]["job"], id);
  expect_error([&] { ws.add_job(make_job("x", "out"), trivial_config); }, ErrorKind::kInvalidArgument,
               "is a tuned model");

  // Deletes: the base model is used by the tuned one; the job owns the tuned model's files.
  expect_error([&] { ws.delete_model("base", false); }, ErrorKind::kInvalidArgument, "used by tuned model 'out'");
  expect_error([&] { ws.delete_job(id, false); }, ErrorKind::kInvalidArgument, "produced model 'out'");
  ws.delete_job(id, true);
  EXPECT_FALSE(ws.find_model("out"));
  EXPECT_FALSE(ws.find_job(id));
  EXPECT_FALSE(fs::exists(j.dir));
  ws.delete_model("base", false);
  EXPECT_EQ(count_rows(ws, "models"), 0);
}

TEST(Registry, UnfinishedJobsProtectTheirInputs) {
  test::TempDir tmp;
  Workspace ws = Workspace::open(tmp.path());
  ws.add_model(make_base("base"));
  ws.add_dataset(make_dataset("data"));
  const int64_t id = ws.add_job(make_job("out"), trivial_config);
  expect_error([&] { ws.delete_dataset("data", false); }, ErrorKind::kInvalidArgument,
               fmt::format("used by unfinished jobs: job {} (queued)", id));
  expect_error([&] { ws.delete_model("base", false); }, ErrorKind::kInvalidArgument, fmt::format("job {} (queued)", id));
  ws.delete_dataset("data", true);
  ws.delete_model("base", true);
  EXPECT_EQ(ws.job(id).base_model, "base");  // lineage names survive
}

TEST(Registry, Deployments) {
  test::TempDir tmp;
  Workspace ws = Workspace::open(tmp.path());
  ws.add_model(make_base("base"));
  DeploymentRecord d;
  d.name = "serve1";
  d.model = "nomodel";
  d.precision = "fp8";
  d.live_merge = true;
  d.host = "127.0.0.1";
  d.port = 8000;
  d.status = DeploymentStatus::kRunning;
  expect_error([&] { ws.add_deployment(d); }, ErrorKind::kInvalidArgument, "unknown model 'nomodel'");
  d.model = "base";
  {
    auto lock = JobLock::try_acquire(ws.deployment_lock_path("serve1"));  // the server holds it
    ASSERT_TRUE(lock);
    ws.add_deployment(d);
    EXPECT_EQ(ws.deployment("serve1").status, DeploymentStatus::kRunning);
    expect_error([&] { ws.delete_deployment("serve1", false); }, ErrorKind::kInvalidArgument, "is running");
    expect_error([&] { ws.delete_model("base", true); }, ErrorKind::kInvalidArgument, "served by deployment 'serve1'");
  }
  const DeploymentRecord gone = ws.deployment("serve1");
  EXPECT_EQ(gone.status, DeploymentStatus::kFailed);
  EXPECT_EQ(gone.to_json()["port"], 8000);
  expect_error([&] { ws.delete_model("base", false); }, ErrorKind::kInvalidArgument, "deployment 'serve1'");
  expect_error([&] { ws.deployment("other"); }, ErrorKind::kInvalidArgument, "registered: serve1");
  ws.delete_model("base", true);  // --force takes the (dead) deployment with it
  EXPECT_EQ(count_rows(ws, "deployments"), 0);
}

// The life of a deployment as `qaft deployment create` drives it: the server takes the lock (its
// pid inside), records itself as starting, then running on the port it bound, then stopped. A name
// whose server has ended (stopped, or gone without a word) is re-created without a delete; a
// refused start leaves the earlier row as it was.
TEST(Registry, DeploymentLifecycle) {
  test::TempDir tmp;
  Workspace ws = Workspace::open(tmp.path());
  ws.add_model(make_base("base"));
  DeploymentRecord d;
  d.name = "web";
  d.model = "base";
  d.precision = "fp8";
  d.host = "127.0.0.1";
  d.port = 0;  // --port 0: the bound port is recorded once it listens
  d.pid = ::getpid();
  d.status = DeploymentStatus::kStarting;

  EXPECT_FALSE(ws.deployment_server_pid("web").has_value());
  {
    std::optional<JobLock> lock = ws.lock_deployment("web");
    ASSERT_TRUE(lock);
    EXPECT_FALSE(ws.lock_deployment("web")) << "a second server of the same name";
    EXPECT_EQ(ws.deployment_server_pid("web"), ::getpid());
    ws.record_deployment_start(d);
    EXPECT_EQ(ws.deployment("web").status, DeploymentStatus::kStarting);
    ws.mark_deployment_running("web", ::getpid(), 43210);
    const DeploymentRecord running = ws.deployment("web");
    EXPECT_EQ(running.status, DeploymentStatus::kRunning);
    EXPECT_EQ(running.port, 43210);
    EXPECT_EQ(running.pid, ::getpid());
    ws.update_deployment("web", DeploymentStatus::kStopped, ::getpid(), "");
  }
  EXPECT_FALSE(ws.deployment_server_pid("web").has_value());
  EXPECT_EQ(ws.deployment("web").status, DeploymentStatus::kStopped);

  // Re-created after a clean stop: the row is replaced, not duplicated.
  {
    std::optional<JobLock> lock = ws.lock_deployment("web");
    ASSERT_TRUE(lock);
    d.port = 8001;
    ws.record_deployment_start(d);
    ws.mark_deployment_running("web", ::getpid(), 8001);
  }  // the server dies without recording anything (kill -9)
  const DeploymentRecord gone = ws.deployment("web");
  EXPECT_EQ(gone.status, DeploymentStatus::kFailed);
  EXPECT_EQ(gone.error, "the server process is gone");
  EXPECT_EQ(count_rows(ws, "deployments"), 1);

  // Re-created after it died; a refused start (unknown model) keeps the earlier row.
  {
    std::optional<JobLock> lock = ws.lock_deployment("web");
    ASSERT_TRUE(lock);
    DeploymentRecord bad = d;
    bad.model = "nomodel";
    expect_error([&] { ws.record_deployment_start(bad); }, ErrorKind::kInvalidArgument, "unknown model 'nomodel'");
    EXPECT_EQ(ws.deployment("web").port, 8001);
    d.port = 8002;
    ws.record_deployment_start(d);
    EXPECT_EQ(ws.deployment("web").status, DeploymentStatus::kStarting);
    EXPECT_EQ(ws.deployment("web").port, 8002);
    ws.update_deployment("web", DeploymentStatus::kFailed, ::getpid(), "cannot listen on http://127.0.0.1:8002");
  }
  EXPECT_EQ(ws.deployment("web").error, "cannot listen on http://127.0.0.1:8002");
  EXPECT_EQ(count_rows(ws, "deployments"), 1);

  expect_error([&] { ws.lock_deployment("../x"); }, ErrorKind::kInvalidArgument, "invalid deployment name");
  expect_error([&] { ws.mark_deployment_running("nope", 1, 8000); }, ErrorKind::kInvalidArgument, "not in the registry");
  std::ofstream(ws.deployment_log_path("web")) << "the server's output\n";
  ws.delete_deployment("web", false);
  EXPECT_FALSE(fs::exists(ws.deployment_log_path("web"))) << "delete removes the log";
  EXPECT_EQ(ws.db().query_text("PRAGMA integrity_check"), "ok");
}

TEST(Registry, FullDatabaseLeavesNoPartialRow) {
  test::TempDir tmp;
  Workspace ws = Workspace::open(tmp.path());
  ws.add_model(make_base("base"));
  ws.add_dataset(make_dataset("data"));
  // SQLITE_FULL exactly as on a full disk: the file may not grow past its current size.
  const int64_t pages = ws.db().query_int("PRAGMA page_count");
  ws.db().exec(fmt::format("PRAGMA max_page_count = {}", pages));
  DatasetRecord big = make_dataset("big");
  big.stats["blob"] = std::string(1 << 20, 'x');
  expect_error([&] { ws.add_dataset(big); }, ErrorKind::kIo, "is full");
  // The job row fits; its configuration (written in the same transaction) does not.
  expect_error([&] {
    ws.add_job(make_job("out"), [](int64_t, const fs::path&) { return nlohmann::json{{"blob", std::string(1 << 20, 'y')}}; });
  }, ErrorKind::kIo, "is full");
  EXPECT_EQ(count_rows(ws, "datasets"), 1);
  EXPECT_EQ(count_rows(ws, "jobs"), 0);
  EXPECT_EQ(ws.db().query_text("PRAGMA integrity_check"), "ok");
  ws.db().exec("PRAGMA max_page_count = 1073741823");
  ws.add_dataset(big);
  EXPECT_EQ(count_rows(ws, "datasets"), 2);
}

TEST(Registry, ReadOnlyConnectionIsAClearIoError) {
  test::TempDir tmp;
  { Workspace::open(tmp.path()).add_dataset(make_dataset("data")); }
  sqlite::OpenOptions ro;
  ro.read_only = true;
  sqlite::Db db = sqlite::Db::open(tmp.path() / "registry.db", ro);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM datasets"), 1);
  expect_error([&] { db.exec("DELETE FROM datasets"); }, ErrorKind::kIo, "is read-only");
  EXPECT_EQ(db.query_int("SELECT count(*) FROM datasets"), 1);
}

TEST(Registry, SftJobConfiguration) {
  test::TempDir tmp;
  Workspace ws = Workspace::open(tmp.path());
  ws.add_model(make_base("base", "fp8"));
  ws.add_model(make_base("base16", "bf16"));
  ws.add_dataset(make_dataset("data", "/data/d.jsonl"));
  SftJobRequest q;
  q.base_model = "base";
  q.dataset = "data";
  q.output_model = "out";
  q.seq_len = 64;
  q.batch_size = 2;
  q.rank = 4;
  TrainConfig c = build_sft_config(q, ws.model("base"), ws.dataset("data"), nullptr, "/ws/jobs/1");
  EXPECT_EQ(c.mode, TrainMode::kSft);
  EXPECT_EQ(c.model.path.string(), "/models/base");
  EXPECT_EQ(c.data.train.string(), "/data/d.jsonl");
  EXPECT_EQ(c.output.dir.string(), "/ws/jobs/1");
  EXPECT_EQ(c.base_format, BaseFormat::kFp8);  // from the FP8 checkpoint
  EXPECT_TRUE(c.qat.enabled);
  EXPECT_EQ(c.lora.rank, 4);
  EXPECT_EQ(c.lora.alpha, 8);
  EXPECT_EQ(c.steps, 8);  // one epoch: ceil(1000 tokens / (64 * 2))
  EXPECT_EQ(c.checkpoint.every, 1);
  EXPECT_TRUE(c.data.eval.empty());
  q.qat = false;
  q.steps = 40;
  q.overrides = {"optim.weight_decay=0.01", "checkpoint.every=5"};
  c = build_sft_config(q, ws.model("base16"), ws.dataset("data"), nullptr, "/ws/jobs/1");
  EXPECT_EQ(c.base_format, BaseFormat::kBf16);
  EXPECT_FALSE(c.qat.enabled);
  EXPECT_EQ(c.steps, 40);
  EXPECT_EQ(c.optim.schedule.warmup_steps, 2);
  EXPECT_EQ(c.checkpoint.every, 5);  // --set wins
  EXPECT_DOUBLE_EQ(c.optim.weight_decay, 0.01);
  // The stored JSON is the configuration, whole.
  EXPECT_EQ(parse_train_config(c.to_json().dump()).to_json(), c.to_json());

  // Bad requests record nothing.
  q.overrides = {"optim.lrr=1"};
  expect_error([&] { create_sft_job(ws, q); }, ErrorKind::kInvalidArgument, "optim.lrr");
  q.overrides.clear();
  q.dataset = "nodata";
  expect_error([&] { create_sft_job(ws, q); }, ErrorKind::kInvalidArgument, "unknown dataset 'nodata'; registered: data");
  EXPECT_EQ(count_rows(ws, "jobs"), 0);
  q.dataset = "data";
  const int64_t id = create_sft_job(ws, q);
  EXPECT_EQ(job_train_config(ws.job(id)).output.dir.string(), ws.job_dir(id).string());
  expect_error([&] { create_sft_job(ws, q); }, ErrorKind::kInvalidArgument, fmt::format("output of job {}", id));
}

// Two processes write one workspace at once: every row arrives, ids stay unique, the file is sound.
TEST(Registry, TwoProcessesWriteConcurrently) {
  test::TempDir tmp;
  const fs::path home = tmp.path() / "ws";
  {
    Workspace ws = Workspace::open(home);
    ws.add_model(make_base("base"));
    ws.add_dataset(make_dataset("data"));
  }
  constexpr int kEach = 200;
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int rc = 0;
      try {
        Workspace ws = Workspace::open(home);  // each process its own connection
        for (int i = 0; i < kEach; ++i) {
          ws.add_dataset(make_dataset(fmt::format("p{}-d{}", p, i)));
          ws.add_job(make_job(fmt::format("p{}-m{}", p, i)), trivial_config);
          if (i % 50 == 0) (void)ws.jobs();  // readers interleave with the other writer
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: %s\n", p, e.what());
        rc = 1;
      }
      ::_exit(rc);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a writer failed (see stderr)";
  }
  Workspace ws = Workspace::open(home);
  EXPECT_EQ(count_rows(ws, "datasets"), 1 + 2 * kEach);
  const auto jobs = ws.jobs();
  ASSERT_EQ(jobs.size(), size_t{2 * kEach});
  std::set<int64_t> ids;
  std::set<std::string> outputs;
  for (const JobRecord& j : jobs) {
    ids.insert(j.id);
    outputs.insert(j.output_model);
    EXPECT_EQ(j.config["id"], j.id);  // each configuration was written for its own row
    EXPECT_TRUE(fs::is_directory(j.dir));
  }
  EXPECT_EQ(ids.size(), jobs.size());
  EXPECT_EQ(outputs.size(), jobs.size());
  EXPECT_EQ(ws.db().query_text("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(ws.db().query_int("PRAGMA foreign_key_check"), 0);
}

}  // namespace
}  // namespace qaft
