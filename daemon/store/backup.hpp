// klingd --backup PATH: a consistent copy of the database, taken with SQLite's
// online backup API from a read-only connection of its own. In WAL mode that
// works while the daemon runs and writes (readers never block the writer), and
// needs neither the socket nor the daemon's cooperation (docs/operations.md).
#pragma once

#include "common/result.hpp"

#include <cstdint>
#include <string>

namespace klingd::store {

struct BackupInfo
{
  std::int64_t bytes = 0;
  int schema_version = 0;
};

// Copies the database at `source` to `dest`: written to "<dest>.partial",
// checked (PRAGMA quick_check), switched to a self-contained rollback-journal
// file, fsynced, then renamed over `dest`. Errors name the file and the problem.
Result<BackupInfo> backup_database(const std::string& source, const std::string& dest);

} // namespace klingd::store
