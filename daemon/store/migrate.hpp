// Applies the embedded schema migrations in order, each with its
// user_version bump in one transaction.
#pragma once

#include "common/result.hpp"
#include "daemon/store/migrations.hpp"
#include "daemon/store/sqlite.hpp"

namespace klingd::store {

// Brings `db` to the newest version in `migrations`. A database whose
// user_version is newer than the newest migration is refused (Error code
// "schema_too_new"): an older binary must not write to a newer schema.
// Returns the number of migrations applied.
Result<int> migrate(Db& db, const std::vector<Migration>& migrations = k_migrations);

} // namespace klingd::store
