#include "daemon/store/group_commit.hpp"
#include "daemon/store/job_store.hpp"
#include "daemon/store/migrate.hpp"
#include "tests/unit/scratch.hpp"
#include "tests/unit/store_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include <algorithm>

using namespace klingd;
using namespace klingd::store;
using common::JobState;

namespace {

using Fixture = test::StoreFixture;

NewJob new_job(std::optional<std::string> key = std::nullopt, std::optional<std::string> output = std::nullopt)
{
  NewJob j;
  j.key = std::move(key);
  j.output = std::move(output);
  j.model = "klingai/video-v3-pro-text-to-video";
  j.request = R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"p"})";
  return j;
}

} // namespace

TEST_CASE("store: migrations on a fresh database, idempotent, WAL on disk")
{
  test::ScratchDir dir;
  Db db(dir.file("a.db"), {});
  auto r = migrate(db);
  REQUIRE(r.ok());
  CHECK(*r == static_cast<int>(k_migrations.size()));
  CHECK(db.user_version() == k_migrations.back().version);
  auto again = migrate(db);
  REQUIRE(again.ok());
  CHECK(*again == 0);
  auto st = db.prepare("PRAGMA journal_mode");
  REQUIRE(st.step());
  CHECK(st.text(0) == "wal");
  auto sync = db.prepare("PRAGMA synchronous");
  REQUIRE(sync.step());
  CHECK(sync.int64(0) == 2); // FULL
}

TEST_CASE("store: an upgrade applies only the new migration and keeps data")
{
  test::ScratchDir dir;
  const std::vector<Migration> v1 = {{1, "0001_a", "CREATE TABLE t (x INTEGER);"}};
  const std::vector<Migration> v2 = {{1, "0001_a", "CREATE TABLE t (x INTEGER);"},
                                     {2, "0002_b", "ALTER TABLE t ADD COLUMN y TEXT DEFAULT 'd';"}};
  {
    Db db(dir.file("u.db"), {});
    REQUIRE(*migrate(db, v1) == 1);
    db.exec("INSERT INTO t (x) VALUES (7)");
  }
  Db db(dir.file("u.db"), {});
  REQUIRE(*migrate(db, v2) == 1);
  CHECK(db.user_version() == 2);
  auto st = db.prepare("SELECT x, y FROM t");
  REQUIRE(st.step());
  CHECK(st.int64(0) == 7);
  CHECK(st.text(1) == "d");
}

TEST_CASE("store: a failing migration leaves the version unchanged")
{
  test::ScratchDir dir;
  Db db(dir.file("f.db"), {});
  const std::vector<Migration> bad = {{1, "0001_a", "CREATE TABLE t (x INTEGER);"},
                                      {2, "0002_bad", "CREATE TABLE u (y INTEGER); SELECT * FROM missing;"}};
  CHECK_THROWS_AS((void)migrate(db, bad), SqliteError);
  CHECK(db.user_version() == 1);
  auto st = db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'u'");
  REQUIRE(st.step());
  CHECK(st.int64(0) == 0);
}

TEST_CASE("store: a database newer than the binary is refused")
{
  test::ScratchDir dir;
  Db db(dir.file("n.db"), {});
  db.exec("PRAGMA user_version=999");
  auto r = migrate(db);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == "schema_too_new");
  CHECK(r.error().message.find("999") != std::string::npos);
  CHECK(db.user_version() == 999);
}

TEST_CASE("store: insert a batch, get by id and key, default output")
{
  Fixture f;
  auto r = f.write([](JobStore& s) { return s.insert_batch({new_job("k1"), new_job(std::nullopt, "x/y.mp4")}); });
  REQUIRE(r.ok());
  REQUIRE(r->jobs.size() == 2);
  CHECK_FALSE(r->jobs[0].duplicate);
  auto j = f.store.get(r->jobs[0].id);
  REQUIRE(j);
  CHECK(j->state == JobState::queued);
  CHECK(j->batch == r->batch);
  CHECK(j->output == j->id + ".mp4");
  CHECK(j->key == "k1");
  CHECK(f.store.get_by_key("k1")->id == j->id);
  CHECK(f.store.get(r->jobs[1].id)->output == "x/y.mp4");
  auto hist = f.store.history(j->id);
  REQUIRE(hist.size() == 1);
  CHECK(hist[0].state == JobState::queued);
}

TEST_CASE("store: idempotency keys make a re-submitted batch create nothing")
{
  Fixture f;
  auto first = f.write([](JobStore& s) { return s.insert_batch({new_job("a"), new_job("b")}); });
  REQUIRE(first.ok());
  auto second = f.write([](JobStore& s) { return s.insert_batch({new_job("a"), new_job("b")}); });
  REQUIRE(second.ok());
  CHECK(second->jobs[0].duplicate);
  CHECK(second->jobs[1].duplicate);
  CHECK(second->jobs[0].id == first->jobs[0].id);
  CHECK(second->batch == first->batch);
  auto st = f.db.prepare("SELECT count(*) FROM jobs");
  REQUIRE(st.step());
  CHECK(st.int64(0) == 2);
  // A mix: one new, one duplicate.
  auto third = f.write([](JobStore& s) { return s.insert_batch({new_job("a"), new_job("c")}); });
  REQUIRE(third.ok());
  CHECK(third->jobs[0].duplicate);
  CHECK_FALSE(third->jobs[1].duplicate);
  CHECK(third->batch != first->batch);
}

TEST_CASE("store: a batch with any bad job stores nothing")
{
  Fixture f;
  REQUIRE(f.write([](JobStore& s) { return s.insert_batch({new_job(std::nullopt, "taken.mp4")}); }).ok());
  auto dup_key = f.write([](JobStore& s) { return s.insert_batch({new_job("x"), new_job("y"), new_job("x")}); });
  REQUIRE_FALSE(dup_key.ok());
  REQUIRE(dup_key.error().size() == 1);
  CHECK(dup_key.error()[0].index == 2);
  CHECK(dup_key.error()[0].field == "key");

  auto taken = f.write([](JobStore& s) {
    return s.insert_batch({new_job("p"), new_job("q", "taken.mp4"), new_job("r", "dup.mp4"), new_job("s", "dup.mp4")});
  });
  REQUIRE_FALSE(taken.ok());
  CHECK(taken.error()[0].index == 3);
  CHECK(taken.error()[0].field == "output");

  auto taken2 = f.write([](JobStore& s) { return s.insert_batch({new_job("p"), new_job("q", "taken.mp4")}); });
  REQUIRE_FALSE(taken2.ok());
  CHECK(taken2.error()[0].index == 1);
  CHECK(taken2.error()[0].message.find("already claimed") != std::string::npos);

  auto st = f.db.prepare("SELECT count(*) FROM jobs");
  REQUIRE(st.step());
  CHECK(st.int64(0) == 1);
  CHECK_FALSE(f.store.get_by_key("p"));
  auto ev = f.db.prepare("SELECT count(*) FROM job_events");
  REQUIRE(ev.step());
  CHECK(ev.int64(0) == 1);
}

TEST_CASE("store: transitions append events and respect the expected state")
{
  Fixture f;
  auto r = f.write([](JobStore& s) { return s.insert_batch({new_job("t")}); });
  const std::string id = r->jobs[0].id;
  CHECK(f.write([&](JobStore& s) { return s.transition(id, JobState::queued, JobState::submitting); }));
  const int attempt = f.write([&](JobStore& s) { return s.begin_attempt(id, id + ".1"); });
  CHECK(attempt == 1);
  JobUpdate u;
  u.generation_id = "uuid:model/x";
  u.accepted_at = "2026-01-01T00:00:00.000Z";
  CHECK(f.write([&](JobStore& s) { return s.transition(id, JobState::submitting, JobState::generating, u); }));
  // A stale expectation changes nothing (a concurrent cancel won, say).
  CHECK_FALSE(f.write([&](JobStore& s) { return s.transition(id, JobState::submitting, JobState::queued); }));
  CHECK_THROWS_AS(f.write([&](JobStore& s) { return s.transition(id, JobState::generating, JobState::queued); }),
                  std::logic_error);
  JobUpdate fail;
  fail.error = JobError{"provider_failed", "boom", std::nullopt};
  fail.provider_failed = true;
  CHECK(f.write([&](JobStore& s) { return s.transition(id, JobState::generating, JobState::failed, fail); }));
  auto j = f.store.get(id);
  CHECK(j->state == JobState::failed);
  CHECK(j->generation_id == "uuid:model/x");
  CHECK(j->error->code == "provider_failed");
  CHECK(j->finished_at);
  CHECK(j->attempts == 1);
  auto hist = f.store.history(id);
  REQUIRE(hist.size() == 4);
  CHECK(hist[1].state == JobState::submitting);
  CHECK(hist[2].state == JobState::generating);
  CHECK(hist[3].state == JobState::failed);
  CHECK(hist[3].error->message == "boom");
  auto attempts = f.store.attempts(id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].outcome == "pending");
  CHECK(attempts[0].client_request_id == id + ".1");
  CHECK(f.store.events_since(0, 100).size() == 4);
  CHECK(f.store.events_since(hist[2].seq, 100).size() == 1);
}

TEST_CASE("store: list filters and cursors")
{
  Fixture f;
  std::vector<NewJob> batch_a, batch_b;
  for (int i = 0; i < 7; ++i) {
    auto j = new_job();
    j.labels = {{"scene", i % 2 ? "odd" : "even"}};
    batch_a.push_back(j);
  }
  for (int i = 0; i < 3; ++i) {
    batch_b.push_back(new_job());
  }
  auto a = f.write([&](JobStore& s) { return s.insert_batch(batch_a); });
  auto b = f.write([&](JobStore& s) { return s.insert_batch(batch_b); });
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  f.write([&](JobStore& s) { return s.transition(b->jobs[0].id, JobState::queued, JobState::canceled); });

  // Paging through everything with a cursor visits each job once, in id order.
  std::vector<std::string> seen;
  ListFilter lf;
  lf.limit = 3;
  for (int page = 0; page < 10; ++page) {
    auto l = f.store.list(lf);
    for (auto& j : l.jobs) {
      seen.push_back(j.id);
    }
    if (!l.next) {
      break;
    }
    lf.after = l.next;
  }
  CHECK(seen.size() == 10);
  CHECK(std::is_sorted(seen.begin(), seen.end()));

  ListFilter by_batch;
  by_batch.batch = a->batch;
  CHECK(f.store.list(by_batch).jobs.size() == 7);
  ListFilter by_label;
  by_label.label = std::make_pair(std::string("scene"), std::string("odd"));
  CHECK(f.store.list(by_label).jobs.size() == 3);
  ListFilter by_state;
  by_state.states = {JobState::canceled};
  auto canceled = f.store.list(by_state);
  REQUIRE(canceled.jobs.size() == 1);
  CHECK(canceled.jobs[0].id == b->jobs[0].id);
  by_state.states = {JobState::canceled, JobState::queued};
  CHECK(f.store.list(by_state).jobs.size() == 10);
  auto counts = f.store.batch_counts(b->batch);
  CHECK(counts.size() == 2);
  CHECK(f.store.next_queued(100).size() == 9);
}

TEST_CASE("store: queued jobs dispatch by priority, then oldest first")
{
  Fixture f;
  auto j1 = new_job();
  auto j2 = new_job();
  j2.priority = 5;
  auto j3 = new_job();
  auto r = f.write([&](JobStore& s) { return s.insert_batch({j1, j2, j3}); });
  auto q = f.store.next_queued(10);
  REQUIRE(q.size() == 3);
  CHECK(q[0].id == r->jobs[1].id);
  CHECK(q[1].id == r->jobs[0].id);
  CHECK(q[2].id == r->jobs[2].id);
}

TEST_CASE("store: concurrent writers share one commit (group commit)")
{
  test::ScratchDir dir;
  Db db(dir.file("g.db"), {});
  REQUIRE(migrate(db).ok());
  JobStore store(db);
  boost::asio::io_context io;
  GroupCommitter gc(io.get_executor(), store);
  std::size_t events_published = 0;
  gc.on_committed = [&](std::vector<Event>&& evs) { events_published += evs.size(); };
  int done = 0;
  int failed = 0;
  for (int i = 0; i < 50; ++i) {
    boost::asio::co_spawn(
      io,
      [&, i]() -> boost::asio::awaitable<void> {
        try {
          co_await gc.run([i](JobStore& s) {
            if (i == 7) {
              auto bad = s.insert_batch({new_job("boom")});
              throw std::runtime_error("writer 7 fails after writing");
            }
            (void)s.insert_batch({new_job("key" + std::to_string(i))});
          });
          ++done;
        } catch (const std::exception&) {
          ++failed;
        }
      },
      boost::asio::detached);
  }
  io.run();
  CHECK(done == 49);
  CHECK(failed == 1);
  CHECK(gc.stats().commits == 1);
  CHECK(gc.stats().writes == 50);
  CHECK(events_published == 49);
  CHECK_FALSE(store.get_by_key("boom")); // the failing writer's savepoint was rolled back
  CHECK(store.get_by_key("key49"));
  // Durable: a second connection sees the rows.
  Db other(dir.file("g.db"), {});
  auto st = other.prepare("SELECT count(*) FROM jobs");
  REQUIRE(st.step());
  CHECK(st.int64(0) == 49);
}

TEST_CASE("store: output templates resolve before the row is written; a dry run writes nothing")
{
  Fixture f;
  auto labeled = [](std::string key, std::string output, std::string team) {
    auto j = new_job(std::move(key), std::move(output));
    j.labels = {{"team", std::move(team)}};
    return j;
  };
  auto count = [&f] {
    auto st = f.db.prepare("SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM job_events) + (SELECT count(*) FROM batches)");
    REQUIRE(st.step());
    return st.int64(0);
  };
  // A dry run answers as the insert would, then rolls back: no jobs, events or batches.
  auto dry = f.write([&](JobStore& s) { return s.insert_batch({labeled("a", "{label.team}/{key}-{index}.mp4", "red")}, std::nullopt, true); });
  REQUIRE(dry.ok());
  CHECK_FALSE(dry->jobs[0].duplicate);
  CHECK(count() == 0);
  CHECK_FALSE(f.store.get(dry->jobs[0].id));

  auto r = f.write([&](JobStore& s) {
    return s.insert_batch({labeled("a", "{label.team}/{key}-{index}.mp4", "red"), labeled("b", "{batch}/{id}.mp4", "x")});
  });
  REQUIRE(r.ok());
  CHECK(f.store.get(r->jobs[0].id)->output == "red/a-0.mp4");
  CHECK(f.store.get(r->jobs[1].id)->output == r->batch + "/" + r->jobs[1].id + ".mp4");
  const auto stored = count();
  // A dry run still sees duplicates and collisions with stored jobs.
  auto again = f.write([&](JobStore& s) { return s.insert_batch({labeled("a", "x.mp4", "red")}, std::nullopt, true); });
  REQUIRE(again.ok());
  CHECK(again->jobs[0].duplicate);
  auto taken = f.write([&](JobStore& s) { return s.insert_batch({labeled("c", "{label.team}/a-0.mp4", "red")}, std::nullopt, true); });
  REQUIRE_FALSE(taken.ok());
  CHECK(taken.error()[0].message == "output \"red/a-0.mp4\" is already claimed by job " + r->jobs[0].id);
  // Two jobs of one batch resolving to one name; a hostile label.
  auto same = f.write([&](JobStore& s) { return s.insert_batch({labeled("d", "{label.team}.mp4", "z"), labeled("e", "z.mp4", "q")}); });
  REQUIRE_FALSE(same.ok());
  CHECK(same.error()[0].index == 1);
  CHECK(same.error()[0].message == "output \"z.mp4\" is also the output of jobs[0] in this batch");
  auto evil = f.write([&](JobStore& s) { return s.insert_batch({labeled("f", "{label.team}/x.mp4", "../..")}); });
  REQUIRE_FALSE(evil.ok());
  CHECK(evil.error()[0].message.find("which must not contain '.' or '..' segments") != std::string::npos);
  CHECK(count() == stored);
}
