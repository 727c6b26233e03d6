// GroupCommitter when SQLite rolls the whole transaction back in the middle of
// a group (issue 15): nothing of the group may be committed, every caller is
// told so, and the writes after the rollback are not run.
#include "daemon/store/group_commit.hpp"
#include "daemon/store/migrate.hpp"
#include "tests/unit/scratch.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

using namespace klingd;
using namespace klingd::store;

namespace {

NewJob keyed(std::string key)
{
  NewJob j;
  j.key = std::move(key);
  j.model = "klingai/video-v3-pro-text-to-video";
  j.request = R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"p"})";
  return j;
}

struct Outcome
{
  int ok = 0;
  int failed = 0;
  int full = 0; // failures that were SQLITE_FULL (the API answers 507)
};

struct GroupFixture
{
  test::ScratchDir dir;
  Db db{dir.file("g.db"), Db::Options{"normal", 5000}};
  JobStore store{db};
  boost::asio::io_context io;
  GroupCommitter gc{io.get_executor(), store};
  std::size_t published = 0;
  GroupFixture()
  {
    REQUIRE(migrate(db).ok());
    gc.on_committed = [this](std::vector<Event>&& evs) { published += evs.size(); };
  }

  // Runs `writes` as one group: all are queued in the same loop turn.
  Outcome run_group(const std::vector<std::function<void(JobStore&)>>& writes)
  {
    Outcome out;
    for (const auto& w : writes) {
      boost::asio::co_spawn(
        io,
        [&, w]() -> boost::asio::awaitable<void> {
          try {
            co_await gc.run(w);
            ++out.ok;
          } catch (const SqliteError& e) {
            ++out.failed;
            out.full += e.is_full() ? 1 : 0;
          } catch (const std::exception&) {
            ++out.failed;
          }
        },
        boost::asio::detached);
    }
    io.restart();
    io.run();
    return out;
  }

  std::int64_t jobs_on_disk()
  {
    Db other(db.path(), Db::Options{"normal", 5000});
    auto st = other.prepare("SELECT count(*) FROM jobs");
    REQUIRE(st.step());
    return st.int64(0);
  }
};

void insert(JobStore& s, const std::string& key) { REQUIRE(s.insert_batch({keyed(key)}).ok()); }

} // namespace

TEST_CASE("store: group commit after SQLite rolled the transaction back commits nothing")
{
  GroupFixture f;
  int ran_after = 0;
  // The second write ends with the transaction gone, as SQLite leaves it after an
  // I/O error: simulated with a ROLLBACK issued under the committer's feet.
  auto out = f.run_group({
    [](JobStore& s) { insert(s, "before"); },
    [&f](JobStore& s) {
      insert(s, "during");
      f.db.exec("ROLLBACK");
    },
    [&](JobStore& s) {
      ++ran_after;
      insert(s, "after");
    },
    [&](JobStore& s) {
      ++ran_after;
      insert(s, "after2");
    },
  });
  CHECK(out.ok == 0);
  CHECK(out.failed == 4);
  CHECK(ran_after == 0);
  CHECK(f.published == 0);
  CHECK(f.jobs_on_disk() == 0);
  CHECK_FALSE(f.store.get_by_key("after"));
  CHECK_FALSE(f.store.get_by_key("before"));
  CHECK(f.gc.stats().commits == 0);

  // The next group is a normal one.
  auto next = f.run_group({[](JobStore& s) { insert(s, "later"); }});
  CHECK(next.ok == 1);
  CHECK(f.jobs_on_disk() == 1);
  CHECK(f.published == 1);
}

TEST_CASE("store: a write that fails with SQLITE_FULL after a rollback fails its whole group with SQLITE_FULL")
{
  GroupFixture f;
  int ran_after = 0;
  auto out = f.run_group({
    [](JobStore& s) { insert(s, "before"); },
    [&f](JobStore& s) {
      insert(s, "during");
      f.db.exec("ROLLBACK");
      throw SqliteError(13 /* SQLITE_FULL */, "sqlite: database or disk is full");
    },
    [&](JobStore& s) {
      ++ran_after;
      insert(s, "after");
    },
  });
  CHECK(out.failed == 3);
  CHECK(out.full == 3); // a submit in this group answers 507, and none of its jobs exists
  CHECK(ran_after == 0);
  CHECK(f.jobs_on_disk() == 0);
}

TEST_CASE("store: a write failing inside its savepoint leaves the rest of the group alone")
{
  GroupFixture f;
  auto out = f.run_group({
    [](JobStore& s) { insert(s, "one"); },
    [](JobStore& s) {
      insert(s, "two");
      throw std::runtime_error("the caller's own failure");
    },
    [](JobStore& s) { insert(s, "three"); },
  });
  CHECK(out.ok == 2);
  CHECK(out.failed == 1);
  CHECK(f.jobs_on_disk() == 2);
  CHECK_FALSE(f.store.get_by_key("two"));
}
