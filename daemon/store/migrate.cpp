#include "daemon/store/migrate.hpp"

#include "common/log.hpp"

#include <fmt/format.h>

namespace klingd::store {

Result<int> migrate(Db& db, const std::vector<Migration>& migrations)
{
  const int newest = migrations.empty() ? 0 : migrations.back().version;
  const int current = db.user_version();
  if (current > newest) {
    return make_error("schema_too_new",
                      fmt::format("database {} has schema version {}, newer than this klingd knows ({}); "
                                  "run a newer klingd or restore a backup",
                                  db.path(), current, newest));
  }
  int applied = 0;
  for (const auto& m : migrations) {
    if (m.version <= current) {
      continue;
    }
    Transaction txn(db);
    db.exec(m.sql);
    db.exec(fmt::format("PRAGMA user_version={}", m.version));
    txn.commit();
    log::info("store.migrated", {{"version", m.version}, {"name", m.name}});
    ++applied;
  }
  return applied;
}

} // namespace klingd::store
