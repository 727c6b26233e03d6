// Retention (store.retention, issue 15): what pruning deletes, what it keeps,
// and that a pruned job's idempotency key still answers "duplicate".
#include "daemon/store/maintenance.hpp"
#include "daemon/store/migrate.hpp"
#include "tests/unit/store_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>

#include <filesystem>

using namespace klingd;
using namespace klingd::store;
using common::JobState;

namespace {

NewJob job(std::optional<std::string> key, std::vector<std::pair<std::string, std::string>> labels = {})
{
  NewJob j;
  j.key = std::move(key);
  j.model = "klingai/video-v3-pro-text-to-video";
  j.request = R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"p"})";
  j.labels = std::move(labels);
  return j;
}

// Everything finished before the year 9999 is prunable.
const PruneCutoffs k_all{"9999-01-01T00:00:00.000Z", "9999-01-01T00:00:00.000Z", "9999-01-01T00:00:00.000Z"};

struct RetentionFixture : test::StoreFixture
{
  RetentionFixture() : StoreFixture(Db::Options{"normal", 5000}) {}

  InsertedJob insert(NewJob j) { return write([&](JobStore& s) { return s.insert_batch({j}); })->jobs[0]; }

  void complete(const std::string& id, std::optional<std::string> video_path)
  {
    write([&](JobStore& s) { return s.transition(id, JobState::queued, JobState::submitting); });
    write([&](JobStore& s) { return s.begin_attempt(id, id + ".1"); });
    JobUpdate g;
    g.generation_id = "gen";
    g.accepted_at = "2026-01-01T00:00:00.000Z";
    write([&](JobStore& s) { return s.transition(id, JobState::submitting, JobState::generating, g); });
    write([&](JobStore& s) { return s.transition(id, JobState::generating, JobState::downloading); });
    JobUpdate d;
    d.video_path = std::move(video_path);
    d.cost_usd = 0.5;
    write([&](JobStore& s) { return s.transition(id, JobState::downloading, JobState::completed, d); });
  }

  std::int64_t count(const std::string& sql)
  {
    auto st = db.prepare(sql);
    REQUIRE(st.step());
    return st.int64(0);
  }
};

} // namespace

TEST_CASE("store: retention prunes old finished jobs, keeps keys as tombstones and rows that point at an MP4")
{
  RetentionFixture f;
  const std::string mp4 = f.dir.write("videos/a.mp4", "not really an mp4");
  auto a = f.insert(job("ka")); // completed, MP4 on disk: row stays, history goes
  f.complete(a.id, mp4);
  auto b = f.insert(job("kb")); // completed, MP4 deleted by the user: row goes
  f.complete(b.id, f.dir.file("videos/gone.mp4"));
  const std::string b_batch = f.store.get(b.id)->batch;
  auto c = f.insert(job("kc", {{"scene", "x"}})); // failed after a create attempt
  f.write([&](JobStore& s) { return s.transition(c.id, JobState::queued, JobState::submitting); });
  f.write([&](JobStore& s) { return s.begin_attempt(c.id, c.id + ".1"); });
  JobUpdate err;
  err.error = JobError{"provider_failed", "no", std::nullopt};
  f.write([&](JobStore& s) { return s.transition(c.id, JobState::submitting, JobState::failed, err); });
  auto d = f.insert(job(std::nullopt)); // canceled, no key
  f.write([&](JobStore& s) { return s.transition(d.id, JobState::queued, JobState::canceled); });
  // A canceled job whose batch still has a queued job: its spend counts against the
  // batch's budget, so it stays until the batch is done.
  auto e = f.write([&](JobStore& s) { return s.insert_batch({job("ke"), job("kq")}); });
  f.write([&](JobStore& s) { return s.transition(e->jobs[0].id, JobState::queued, JobState::canceled); });

  // A dry run counts and changes nothing.
  const auto events_before = f.count("SELECT count(*) FROM job_events");
  auto dry = f.store.prune(k_all, 100, std::nullopt, true);
  CHECK(dry.jobs_deleted == 3);
  CHECK(dry.jobs_trimmed == 1);
  CHECK(dry.tombstones == 2);
  CHECK(dry.events_deleted == 5 + 5 + 3 + 2); // a, b, c, d
  CHECK_FALSE(dry.next);
  CHECK(f.count("SELECT count(*) FROM job_events") == events_before);
  CHECK(f.count("SELECT count(*) FROM jobs") == 6);

  // In chunks of two, resuming after the last id looked at.
  PruneStats total;
  std::optional<std::string> after;
  int chunks = 0;
  do {
    auto part = f.write([&](JobStore& s) { return s.prune(k_all, 2, after, false); });
    total += part;
    after = part.next;
    ++chunks;
  } while (after && chunks < 10);
  CHECK(chunks >= 2);
  CHECK(total.jobs_deleted == 3);
  CHECK(total.jobs_trimmed == 1);
  CHECK(total.events_deleted == dry.events_deleted);

  // a: the row (and the MP4 it points at) stays; its history is gone.
  REQUIRE(f.store.get(a.id));
  CHECK(f.store.get(a.id)->video_path == mp4);
  CHECK(f.store.history(a.id).empty());
  CHECK(f.store.get_by_key("ka")->id == a.id);
  // b, c, d: gone with their events, labels and attempts; empty batches too.
  CHECK_FALSE(f.store.get(b.id));
  CHECK_FALSE(f.store.get(c.id));
  CHECK_FALSE(f.store.get(d.id));
  CHECK(f.store.attempts(c.id).empty());
  CHECK(f.count("SELECT count(*) FROM job_labels") == 0);
  CHECK_FALSE(f.store.batch_exists(b_batch));
  // e: kept (its batch is not done), and so is the queued one.
  CHECK(f.store.get(e->jobs[0].id));
  CHECK(f.store.get(e->jobs[1].id));
  CHECK(f.count("SELECT count(*) FROM jobs") == 3);

  // The keys of pruned jobs still answer "duplicate", with the job id and final state.
  auto tb = f.store.key_tombstone("kb");
  REQUIRE(tb);
  CHECK(tb->job_id == b.id);
  CHECK(tb->state == JobState::completed);
  auto again = f.write([&](JobStore& s) { return s.insert_batch({job("kb"), job("kc")}); });
  REQUIRE(again.ok());
  CHECK(again->jobs[0].duplicate);
  CHECK(again->jobs[0].id == b.id);
  CHECK(again->jobs[0].state == JobState::completed);
  CHECK(again->jobs[1].duplicate);
  CHECK(again->jobs[1].id == c.id);
  CHECK(again->jobs[1].state == JobState::failed);
  CHECK(again->batch == b_batch);
  CHECK(f.count("SELECT count(*) FROM jobs") == 3);

  // Nothing left to do a second time (a's history is already pruned).
  auto second = f.write([&](JobStore& s) { return s.prune(k_all, 100, std::nullopt, false); });
  CHECK(second.jobs_deleted == 0);
  CHECK(second.jobs_trimmed == 0);
}

TEST_CASE("store: retention keeps what is newer than the cutoff and states without retention")
{
  RetentionFixture f;
  auto a = f.insert(job("old-failed"));
  f.write([&](JobStore& s) { return s.transition(a.id, JobState::queued, JobState::canceled); });
  auto b = f.insert(job("completed"));
  f.complete(b.id, std::nullopt);
  // Only canceled jobs have retention, and the cutoff is before they finished.
  PruneCutoffs past{std::nullopt, std::nullopt, "2000-01-01T00:00:00.000Z"};
  auto none = f.write([&](JobStore& s) { return s.prune(past, 100, std::nullopt, false); });
  CHECK(none.jobs_deleted == 0);
  PruneCutoffs canceled_only{std::nullopt, std::nullopt, k_all.canceled};
  auto one = f.write([&](JobStore& s) { return s.prune(canceled_only, 100, std::nullopt, false); });
  CHECK(one.jobs_deleted == 1);
  CHECK_FALSE(f.store.get(a.id));
  CHECK(f.store.get(b.id));
}

TEST_CASE("store: retention_cutoffs and prune_all through the committer")
{
  const auto now = *parse_rfc3339("2026-03-10T12:00:00.000Z");
  common::Config::Store::Retention r;
  r.failed_days = 7;
  r.completed_days = 1.5;
  auto c = retention_cutoffs(r, now);
  CHECK(c.failed == "2026-03-03T12:00:00.000Z");
  CHECK(c.completed == "2026-03-09T00:00:00.000Z");
  CHECK_FALSE(c.canceled);

  RetentionFixture f;
  for (int i = 0; i < 5; ++i) {
    auto j = f.insert(job("k" + std::to_string(i)));
    f.write([&](JobStore& s) { return s.transition(j.id, JobState::queued, JobState::canceled); });
  }
  boost::asio::io_context io;
  GroupCommitter gc(io.get_executor(), f.store);
  PruneStats dry, real;
  boost::asio::co_spawn(
    io,
    [&]() -> boost::asio::awaitable<void> {
      dry = co_await prune_all(gc, f.store, k_all, true, 2);
      real = co_await prune_all(gc, f.store, k_all, false, 2);
    },
    boost::asio::detached);
  io.run();
  CHECK(dry.jobs_deleted == 5);
  CHECK(real.jobs_deleted == 5);
  CHECK(gc.stats().commits == 3); // chunks of 2: 2 + 2 + 1
  CHECK(f.count("SELECT count(*) FROM jobs") == 0);
  CHECK(f.count("SELECT count(*) FROM key_tombstones") == 5);
}

TEST_CASE("store: Maintenance prunes on its timer and truncates the WAL once the store is idle")
{
  RetentionFixture f;
  for (int i = 0; i < 3; ++i) {
    auto j = f.insert(job("m" + std::to_string(i)));
    f.write([&](JobStore& s) { return s.transition(j.id, JobState::queued, JobState::canceled); });
  }
  auto kept = f.insert(job("recent"));
  f.write([&](JobStore& s) { return s.transition(kept.id, JobState::queued, JobState::canceled); });
  f.db.exec("UPDATE jobs SET finished_at = '2020-01-01T00:00:00.000Z' WHERE key LIKE 'm%'");
  REQUIRE(std::filesystem::file_size(f.path + "-wal") > 0);

  boost::asio::io_context io;
  GroupCommitter gc(io.get_executor(), f.store);
  common::Config::Store::Retention r;
  r.canceled_days = 1;
  Maintenance m(io.get_executor(), gc, f.store, r,
                Maintenance::Intervals{std::chrono::milliseconds(10), std::chrono::milliseconds(10), std::chrono::hours(1)});
  m.start();
  // Waits (bounded) for both effects, then stops: no assertion on how long they took.
  bool done = false;
  boost::asio::co_spawn(
    io,
    [&]() -> boost::asio::awaitable<void> {
      boost::asio::steady_timer t(io);
      for (int i = 0; i < 1000 && !done; ++i) {
        t.expires_after(std::chrono::milliseconds(10));
        co_await t.async_wait(boost::asio::use_awaitable);
        done = f.count("SELECT count(*) FROM jobs") == 1 && f.db.file_sizes().wal_bytes == 0;
      }
      m.stop();
    },
    boost::asio::detached);
  io.run();
  CHECK(done);
  CHECK(f.store.get(kept.id));
  CHECK(f.count("SELECT count(*) FROM key_tombstones") == 3);
  CHECK(gc.stats().commits >= 1);
}
