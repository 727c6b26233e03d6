// A migrated store in a scratch directory, and writes in their own transaction as
// the GroupCommitter would run them (for the tests of daemon/store/).
#pragma once

#include "daemon/store/job_store.hpp"
#include "daemon/store/migrate.hpp"
#include "tests/unit/scratch.hpp"

#include <doctest/doctest.h>

#include <string>

namespace klingd::test {

struct StoreFixture
{
  ScratchDir dir;
  std::string path = dir.file("klingd.db");
  store::Db db;
  store::JobStore store{db};
  explicit StoreFixture(store::Db::Options options = {}) : db(path, options) { REQUIRE(store::migrate(db).ok()); }

  // Runs fn in its own transaction; drops the events it appended (nobody listens).
  template <typename F>
  auto write(F fn)
  {
    store::Transaction txn(db);
    auto r = fn(store);
    txn.commit();
    store.take_pending_events();
    return r;
  }
};

} // namespace klingd::test
