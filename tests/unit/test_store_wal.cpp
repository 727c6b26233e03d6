// The WAL stays bounded (issue 15): no statement is left holding a read
// transaction, checkpoints complete under load, and an idle checkpoint
// truncates the WAL; another connection's reader never fails our commits.
#include "daemon/store/job_store.hpp"
#include "daemon/store/migrate.hpp"
#include "tests/unit/store_fixture.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>

using namespace klingd;
using namespace klingd::store;
using common::JobState;

namespace {

constexpr std::int64_t k_wal_bound = 16 * 1024 * 1024; // docs/operations.md, "Database files"

std::int64_t wal_size(const std::string& db_path)
{
  std::error_code ec;
  auto n = std::filesystem::file_size(db_path + "-wal", ec);
  return ec ? 0 : static_cast<std::int64_t>(n);
}

// Statements of `db` stepped but not reset: each one pins a read transaction.
int busy(sqlite3* db)
{
  int n = 0;
  for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s; s = sqlite3_next_stmt(db, s)) {
    n += sqlite3_stmt_busy(s) ? 1 : 0;
  }
  return n;
}

NewJob job(std::string key)
{
  NewJob j;
  j.key = std::move(key);
  j.model = "klingai/video-v3-pro-text-to-video";
  j.request = R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"a lighthouse at dusk, slow dolly in"})";
  j.labels = {{"scene", "wal"}};
  return j;
}

struct WalFixture : test::StoreFixture
{
  // NORMAL: no fsync per commit, so thousands of commits take a second; the WAL
  // grows the same way as with FULL.
  WalFixture() : StoreFixture(Db::Options{"normal", 5000}) {}

  // One job from submit to completed, with the reads the API and the engine do
  // in between. Returns the job id.
  std::string run_job(int i)
  {
    auto ins = write([&](JobStore& s) { return s.insert_batch({job("k" + std::to_string(i))}); });
    REQUIRE(ins.ok());
    const std::string id = ins->jobs[0].id;
    const std::string batch = ins->batch;
    CHECK(store.get(id));
    (void)store.last_event_seq();
    ListFilter lf;
    lf.limit = 1; // stops after one row of many
    (void)store.list(lf);
    (void)store.spend_since("2000-01-01T00:00:00.000Z");
    (void)store.batch_budget(batch);
    (void)store.batch_exists(batch);
    (void)store.batch_spend(batch);
    CHECK(write([&](JobStore& s) { return s.transition(id, JobState::queued, JobState::submitting); }));
    (void)write([&](JobStore& s) { return s.begin_attempt(id, id + ".1"); });
    JobUpdate gen;
    gen.generation_id = "gen-" + id;
    gen.accepted_at = "2026-01-01T00:00:00.000Z";
    CHECK(write([&](JobStore& s) { return s.transition(id, JobState::submitting, JobState::generating, gen); }));
    (void)store.get_by_key("k" + std::to_string(i));
    (void)store.events_since(0, 1);
    JobUpdate dl;
    dl.video_url = "http://127.0.0.1/v.mp4";
    CHECK(write([&](JobStore& s) { return s.transition(id, JobState::generating, JobState::downloading, dl); }));
    JobUpdate done;
    done.video_path = "/videos/" + id + ".mp4";
    done.video_bytes = 1000;
    done.cost_usd = 0.42;
    CHECK(write([&](JobStore& s) { return s.transition(id, JobState::downloading, JobState::completed, done); }));
    return id;
  }
};

} // namespace

TEST_CASE("store: no read leaves a statement holding a read transaction")
{
  WalFixture f;
  for (int i = 0; i < 3; ++i) {
    f.run_job(i);
  }
  const auto id = f.store.list({}).jobs.front().id;
  // Each read on its own: any one that returned with its statement stepped to a row
  // would leave it busy.
  auto check = [&](std::string what, auto read) {
    (void)read();
    INFO(what);
    CHECK(busy(f.db.handle()) == 0);
  };
  check("get", [&] { return f.store.get(id); });
  check("get_by_key", [&] { return f.store.get_by_key("k1"); });
  check("get missing", [&] { return f.store.get("nope"); });
  ListFilter one;
  one.limit = 1;
  check("list breaking early", [&] { return f.store.list(one); });
  check("last_event_seq", [&] { return f.store.last_event_seq(); });
  check("spend_since", [&] { return f.store.spend_since("2000-01-01T00:00:00.000Z"); });
  check("batch_spend", [&] { return f.store.batch_spend("b"); });
  check("batch_budget", [&] { return f.store.batch_budget(f.store.get(id)->batch); });
  check("batch_exists", [&] { return f.store.batch_exists(f.store.get(id)->batch); });
  check("cost_summary", [&] { return f.store.cost_summary(); });
  check("counts_by_state", [&] { return f.store.counts_by_state(); });
  check("events_since", [&] { return f.store.events_since(0, 1); });
  check("recent_costs", [&] { return f.store.recent_costs("klingai/video-v3-pro-text-to-video", "", 1); });
  check("next_queued", [&] { return f.store.next_queued(1); });
}

TEST_CASE("store: the WAL stays bounded through thousands of commits with reads in between")
{
  WalFixture f;
  std::int64_t max_wal = 0;
  // 400 jobs, 5 commits each: about 90 MB of WAL frames written in all (a WAL that
  // is never checkpointed ends near that size; bench/ runs 10,000 jobs).
  for (int i = 0; i < 400; ++i) {
    f.run_job(i);
    if (i % 20 == 0) {
      max_wal = std::max(max_wal, wal_size(f.path));
    }
  }
  max_wal = std::max(max_wal, wal_size(f.path));
  INFO("largest WAL seen: " << max_wal << " bytes");
  CHECK(max_wal <= k_wal_bound);
  CHECK(f.store.counts_by_state().size() == 1);
}

TEST_CASE("store: an idle checkpoint truncates the WAL, and waits for no reader")
{
  WalFixture f;
  for (int i = 0; i < 20; ++i) {
    f.run_job(i);
  }
  REQUIRE(wal_size(f.path) > 0);
  // Another connection (the sqlite3 shell, a backup tool) in a read transaction:
  // the checkpoint cannot truncate, says so at once, and commits still succeed.
  Db other(f.path, Db::Options{"normal", 5000});
  other.exec("BEGIN");
  auto n = other.prepare("SELECT count(*) FROM jobs");
  REQUIRE(n.step());
  CHECK(n.int64(0) == 20);
  CHECK_FALSE(f.db.checkpoint_truncate());
  for (int i = 20; i < 40; ++i) {
    f.run_job(i);
  }
  CHECK(f.store.counts_by_state().front().second == 40);
  n.reset();
  other.exec("COMMIT");
  // The reader is gone: now it truncates, and the data is all in the main file.
  CHECK(f.db.checkpoint_truncate());
  CHECK(wal_size(f.path) == 0);
  CHECK(f.db.file_sizes().wal_bytes == 0);
  CHECK(f.db.file_sizes().db_bytes > 0);
  auto again = other.prepare("SELECT count(*) FROM jobs");
  REQUIRE(again.step());
  CHECK(again.int64(0) == 40);
  // Inside a transaction it does nothing.
  Transaction txn(f.db);
  CHECK_FALSE(f.db.checkpoint_truncate());
}
