#include "registry/schema.h"

#include "core/error.h"

#include <array>

namespace qaft {

namespace {

// Migration k+1 (index k) takes the schema from version k to k+1. Append; never edit a shipped one.
// Lineage columns (models.base_model, models.dataset, jobs.base_model, jobs.dataset) hold names,
// not foreign keys: a tuned model keeps naming its base model and dataset after they are deleted
// (with --force). Structural references are foreign keys (PRAGMA foreign_keys is on).
constexpr std::array<const char*, kRegistrySchemaVersion> kMigrations = {
    // 1: the four tables.
    R"sql(
CREATE TABLE datasets (
  name        TEXT PRIMARY KEY,
  path        TEXT NOT NULL,               -- the copy inside <workspace>/datasets
  source      TEXT NOT NULL,               -- the file it was copied from
  sha256      TEXT NOT NULL,               -- hex SHA-256 of the copy
  rows        INTEGER NOT NULL,            -- non-blank lines
  tokens      INTEGER NOT NULL,            -- tokens of the valid examples
  created_at  TEXT NOT NULL,               -- UTC ISO 8601
  stats       TEXT NOT NULL                -- JSON: the full statistics
);
CREATE TABLE jobs (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
  output_model    TEXT NOT NULL UNIQUE,   -- the tuned model it registers
  base_model      TEXT NOT NULL,          -- lineage: base model name
  dataset         TEXT NOT NULL,          -- lineage: dataset name
  dataset_sha256  TEXT NOT NULL,          -- lineage: dataset content
  status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'interrupted')),
  pid             INTEGER NOT NULL DEFAULT 0,  -- the process that runs / last ran it
  config          TEXT NOT NULL,          -- JSON: the full resolved TrainConfig
  qaft_version    TEXT NOT NULL,
  created_at      TEXT NOT NULL,
  started_at      TEXT,
  finished_at     TEXT,
  metrics         TEXT NOT NULL DEFAULT '{}',  -- JSON: final metrics
  error           TEXT                    -- why it failed
);
CREATE INDEX jobs_base_model ON jobs (base_model);
CREATE INDEX jobs_dataset ON jobs (dataset);
CREATE TABLE models (
  name            TEXT PRIMARY KEY,
  kind            TEXT NOT NULL CHECK (kind IN ('base', 'tuned')),
  path            TEXT NOT NULL,          -- base: the user's directory; tuned: the job's output dir
  base_model      TEXT,                   -- lineage (tuned): base model name
  format          TEXT NOT NULL,          -- base: weight storage; tuned: 'lora'
  config          TEXT NOT NULL,          -- JSON: config.json (base) or training config (tuned)
  created_at      TEXT NOT NULL,
  source_job      INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
  dataset         TEXT,                   -- lineage (tuned): dataset name
  dataset_sha256  TEXT,                   -- lineage (tuned): dataset content
  qaft_version    TEXT NOT NULL,
  CHECK (kind = 'base' OR base_model IS NOT NULL)
);
CREATE INDEX models_base_model ON models (base_model);
CREATE TABLE deployments (
  name        TEXT PRIMARY KEY,
  model       TEXT NOT NULL REFERENCES models (name) ON DELETE RESTRICT,
  adapter     TEXT,                       -- LoRA adapter directory, if any
  precision   TEXT NOT NULL,              -- 'fp8' | 'bf16'
  live_merge  INTEGER NOT NULL DEFAULT 0,
  host        TEXT NOT NULL,
  port        INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
  pid         INTEGER NOT NULL DEFAULT 0, -- the server process
  status      TEXT NOT NULL CHECK (status IN ('starting', 'running', 'stopped', 'failed')),
  created_at  TEXT NOT NULL,
  error       TEXT
);
CREATE INDEX deployments_model ON deployments (model);
)sql",
};

}  // namespace

void migrate_registry(sqlite::Db& db) {
  const auto version = [&] { return static_cast<int>(db.query_int("PRAGMA user_version")); };
  int v = version();
  if (v == kRegistrySchemaVersion) return;
  QAFT_CHECK_HINT(v < kRegistrySchemaVersion, ErrorKind::kUnsupported, "use the qaft that wrote it, or a newer one",
                  "the workspace registry {} has schema version {}, newer than this qaft's {}", db.path().string(), v,
                  kRegistrySchemaVersion);
  QAFT_CHECK_HINT(!db.read_only(), ErrorKind::kIo, "open it once from a writable location to upgrade it",
                  "the workspace registry {} (schema version {}) needs an upgrade to version {} but is read-only",
                  db.path().string(), v, kRegistrySchemaVersion);
  sqlite::Transaction tx(db);
  v = version();  // another process may have migrated it meanwhile
  if (v >= kRegistrySchemaVersion) return;
  for (int k = v; k < kRegistrySchemaVersion; ++k) db.exec(kMigrations[static_cast<size_t>(k)]);
  db.exec(fmt::format("PRAGMA user_version = {}", kRegistrySchemaVersion));
  tx.commit();
}

}  // namespace qaft
