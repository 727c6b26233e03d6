// GroupCommitter's deferred WAL sync (docs/reliability.md, "Submits: the WAL sync off the
// loop"): a deferred group's callers resume only after a sync that started after its commit,
// the loop keeps serving while a sync runs, one sync covers every group committed before it,
// a failed sync fails the callers with a clear error and every later write, and any
// synchronous write in a group makes the group commit with FULL.
#include "daemon/store/group_commit.hpp"
#include "daemon/store/migrate.hpp"
#include "tests/unit/scratch.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

using namespace klingd;
using namespace klingd::store;
using Sync = GroupCommitter::Sync;

namespace {

NewJob keyed(std::string key)
{
  NewJob j;
  j.key = std::move(key);
  j.model = "klingai/video-v3-pro-text-to-video";
  j.request = R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"p"})";
  return j;
}

// A sync the test holds until it lets it go (or makes it fail).
struct Gate
{
  std::mutex m;
  std::condition_variable cv;
  int started = 0;
  int released = 0;
  int result = 0;

  int wait() // worker thread
  {
    std::unique_lock lk(m);
    const int me = ++started;
    cv.notify_all();
    cv.wait(lk, [&] { return released >= me; });
    return result;
  }
  void release(int err = 0)
  {
    std::lock_guard lk(m);
    result = err;
    ++released;
    cv.notify_all();
  }
  int started_count()
  {
    std::lock_guard lk(m);
    return started;
  }
};

struct Write
{
  bool done = false;
  std::string error;
  int code = 0;
};

struct Fixture
{
  test::ScratchDir dir;
  Db db{dir.file("d.db"), Db::Options{"full", 5000}};
  JobStore store{db};
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
  GroupCommitter gc{io.get_executor(), store};
  Gate gate;
  std::size_t published = 0;
  int sync_failures = 0;

  Fixture()
  {
    REQUIRE(migrate(db).ok());
    gc.on_committed = [this](std::vector<Event>&& evs) { published += evs.size(); };
    gc.on_sync_failed = [this](const std::string&) { ++sync_failures; };
  }
  ~Fixture()
  {
    // Let a held sync finish so the worker can be joined.
    for (int i = 0; i < 8; ++i) {
      gate.release();
    }
    guard.reset();
    io.run_for(std::chrono::seconds(5));
  }

  void write(Write& w, const std::string& key, Sync sync)
  {
    // No coroutine lambda here: GCC 12 mangles a by-value capture copied inside one.
    std::function<void(JobStore&)> fn = [key](JobStore& s) { REQUIRE(s.insert_batch({keyed(key)}).ok()); };
    boost::asio::co_spawn(io, gc.run(std::move(fn), sync), [&w](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const SqliteError& err) {
          w.error = err.what();
          w.code = err.code();
        } catch (const std::exception& err) {
          w.error = err.what();
        }
      }
      w.done = true;
    });
  }

  // Runs the loop until `pred` holds (or 5 s pass).
  bool run_until(const std::function<bool()>& pred)
  {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
      io.run_one_for(std::chrono::milliseconds(5));
    }
    return pred();
  }
  // Runs whatever is ready now, and a little more (handlers posted by those).
  void settle()
  {
    for (int i = 0; i < 5; ++i) {
      io.poll();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    io.poll();
  }
  int synchronous()
  {
    auto q = db.prepare("PRAGMA synchronous");
    REQUIRE(q.step());
    return static_cast<int>(q.int64(0));
  }
};

} // namespace

TEST_CASE("store: a deferred write resumes its caller only after the WAL sync, while the loop serves on")
{
  Fixture f;
  f.gc.enable_deferred_sync([&f] { return f.gate.wait(); });
  Write w;
  f.write(w, "held", Sync::deferred);
  REQUIRE(f.run_until([&] { return f.gate.started_count() == 1; }));
  f.settle();
  // Committed (a reader sees the row) with synchronous=NORMAL, then FULL again; not acknowledged.
  CHECK(f.store.get_by_key("held"));
  CHECK_FALSE(w.done);
  CHECK(f.published == 0);
  CHECK(f.gc.stats().deferred_commits == 1);
  CHECK(f.gc.unsynced_groups() == 1);
  CHECK(f.synchronous() == 2); // FULL

  // The loop keeps serving meanwhile: a posted handler runs and a synchronous write commits.
  bool served = false;
  boost::asio::post(f.io, [&] { served = true; });
  Write sync_write;
  f.write(sync_write, "engine", Sync::in_commit);
  REQUIRE(f.run_until([&] { return served && sync_write.done; }));
  CHECK(sync_write.error.empty());
  CHECK_FALSE(w.done);

  f.gate.release();
  REQUIRE(f.run_until([&] { return w.done; }));
  CHECK(w.error.empty());
  CHECK(f.published == 2);
  CHECK(f.gc.stats().syncs == 1);
  CHECK(f.gc.unsynced_groups() == 0);
}

TEST_CASE("store: deferred writes that arrive while a WAL sync runs are held, then commit as one group under one sync")
{
  Fixture f;
  f.gc.enable_deferred_sync([&f] { return f.gate.wait(); });
  Write first;
  f.write(first, "first", Sync::deferred);
  REQUIRE(f.run_until([&] { return f.gate.started_count() == 1; }));
  // Two more writes (separate loop turns) while the first sync runs: committed now, each
  // would wait for that sync and then for one of its own; held, they share the next.
  Write second;
  Write third;
  f.write(second, "second", Sync::deferred);
  f.settle();
  f.write(third, "third", Sync::deferred);
  f.settle();
  CHECK(f.gc.stats().deferred_commits == 1);
  CHECK(f.gc.unsynced_groups() == 1);
  CHECK_FALSE(f.store.get_by_key("second")); // not committed yet

  f.gate.release(); // the first sync ends: its group is acknowledged, the held ones commit together
  REQUIRE(f.run_until([&] { return first.done; }));
  REQUIRE(f.run_until([&] { return f.gate.started_count() == 2; }));
  f.settle();
  CHECK(f.gc.stats().deferred_commits == 2);
  CHECK(f.store.get_by_key("second"));
  CHECK(f.store.get_by_key("third"));
  CHECK_FALSE(second.done); // committed, not yet synced
  CHECK_FALSE(third.done);

  f.gate.release(); // one second sync for both
  REQUIRE(f.run_until([&] { return second.done && third.done; }));
  CHECK(f.gc.stats().syncs == 2);
  CHECK(second.error.empty());
  CHECK(third.error.empty());
}

TEST_CASE("store: a synchronous write does not wait behind held deferred writes; it commits them with FULL")
{
  Fixture f;
  f.gc.enable_deferred_sync([&f] { return f.gate.wait(); });
  Write first;
  f.write(first, "first", Sync::deferred);
  REQUIRE(f.run_until([&] { return f.gate.started_count() == 1; }));
  Write held;
  f.write(held, "held", Sync::deferred);
  f.settle();
  CHECK_FALSE(f.store.get_by_key("held"));
  // The engine's write commits at once, with the held write in its group: COMMIT with FULL
  // makes both durable, so both callers resume without a sync of their own.
  Write engine;
  f.write(engine, "engine", Sync::in_commit);
  REQUIRE(f.run_until([&] { return engine.done && held.done; }));
  CHECK(engine.error.empty());
  CHECK(held.error.empty());
  CHECK(f.store.get_by_key("held"));
  CHECK(f.gc.stats().deferred_commits == 1);
  CHECK_FALSE(first.done); // still waits for its own sync
  f.gate.release();
  REQUIRE(f.run_until([&] { return first.done; }));
  CHECK(f.gc.stats().syncs == 1);
}

TEST_CASE("store: a failed WAL sync fails its callers with a clear error, and every write after it")
{
  Fixture f;
  f.gc.enable_deferred_sync([&f] { return f.gate.wait(); });
  Write w;
  f.write(w, "lost", Sync::deferred);
  REQUIRE(f.run_until([&] { return f.gate.started_count() == 1; }));
  f.gate.release(EIO);
  REQUIRE(f.run_until([&] { return w.done; }));
  CHECK(w.code == SQLITE_IOERR_FSYNC);
  CHECK(w.error.find("fdatasync of the WAL failed") != std::string::npos);
  CHECK(w.error.find("may not be durable") != std::string::npos);
  CHECK(f.sync_failures == 1);
  CHECK(f.published == 0);

  // Nothing written after a failed sync can be trusted to reach the disk: later writes fail
  // at once, synchronous ones too, without running.
  Write later;
  f.write(later, "later", Sync::in_commit);
  REQUIRE(f.run_until([&] { return later.done; }));
  CHECK(later.code == SQLITE_IOERR_FSYNC);
  CHECK_FALSE(f.store.get_by_key("later"));
  CHECK(f.sync_failures == 1);
}

TEST_CASE("store: a group with any synchronous write commits with FULL and needs no WAL sync")
{
  Fixture f;
  f.gc.enable_deferred_sync([&f] { return f.gate.wait(); });
  Write a;
  Write b;
  f.write(a, "submit", Sync::deferred);
  f.write(b, "transition", Sync::in_commit); // same loop turn: same group
  REQUIRE(f.run_until([&] { return a.done && b.done; }));
  CHECK(a.error.empty());
  CHECK(b.error.empty());
  CHECK(f.gc.stats().commits == 1);
  CHECK(f.gc.stats().deferred_commits == 0);
  CHECK(f.gate.started_count() == 0);
}

TEST_CASE("store: without enable_deferred_sync a deferred write commits synchronously")
{
  Fixture f;
  Write a;
  f.write(a, "plain", Sync::deferred);
  REQUIRE(f.run_until([&] { return a.done; }));
  CHECK(a.error.empty());
  CHECK(f.gc.stats().deferred_commits == 0);
  CHECK(f.gc.stats().syncs == 0);
}

TEST_CASE("store: the default deferred sync fdatasyncs the real -wal file")
{
  Fixture f;
  f.gc.enable_deferred_sync();
  Write a;
  Write b;
  f.write(a, "real-1", Sync::deferred);
  REQUIRE(f.run_until([&] { return a.done; }));
  f.write(b, "real-2", Sync::deferred);
  REQUIRE(f.run_until([&] { return b.done; }));
  CHECK(a.error.empty());
  CHECK(b.error.empty());
  CHECK(f.gc.stats().syncs == 2);
  CHECK(f.gc.stats().deferred_commits == 2);
  // The rows are readable by another connection (committed in the WAL).
  Db other(f.db.path(), Db::Options{"full", 5000});
  auto q = other.prepare("SELECT count(*) FROM jobs");
  REQUIRE(q.step());
  CHECK(q.int64(0) == 2);
}
