// The registry's SQL schema and its migrations. The schema version is SQLite's `PRAGMA
// user_version`: migration k (1-based) takes a database from version k-1 to k; opening a database
// runs the missing ones in one write transaction (so two processes opening a fresh workspace at
// once create it exactly once). A database newer than this qaft is refused (kUnsupported).
#pragma once

#include "registry/sqlite_db.h"

namespace qaft {

// The schema version this qaft writes.
inline constexpr int kRegistrySchemaVersion = 1;

// Brings `db` to kRegistrySchemaVersion. A read-only database must already be current.
void migrate_registry(sqlite::Db& db);

}  // namespace qaft
