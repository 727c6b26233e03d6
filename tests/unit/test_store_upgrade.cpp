// Upgrades never lose data (issue 15): a database made by the first migration,
// with real rows in every table, upgraded to the newest schema keeps every row;
// klingd --backup's copy is consistent while another connection writes.
#include "daemon/store/backup.hpp"
#include "daemon/store/job_store.hpp"
#include "daemon/store/migrate.hpp"
#include "tests/unit/scratch.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <vector>

using namespace klingd;
using namespace klingd::store;
using common::JobState;

namespace {

using Rows = std::vector<std::string>; // each row as SQL literals joined with '|'

// Every table's rows, over the columns it has now, in rowid (or key) order.
std::map<std::string, std::pair<std::string, Rows>> snapshot(Db& db)
{
  std::map<std::string, std::pair<std::string, Rows>> out;
  std::vector<std::string> tables;
  {
    auto st = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
    while (st.step()) {
      tables.push_back(st.text(0));
    }
  }
  for (const auto& t : tables) {
    std::string cols;
    {
      auto st = db.prepare("SELECT name FROM pragma_table_info(?) ORDER BY cid");
      st.bind(1, t);
      while (st.step()) {
        cols += (cols.empty() ? "quote(" : " || '|' || quote(") + st.text(0) + ")";
      }
    }
    Rows rows;
    auto st = db.prepare("SELECT " + cols + " FROM " + t + " ORDER BY 1");
    while (st.step()) {
      rows.push_back(st.text(0));
    }
    out[t] = {cols, rows};
  }
  return out;
}

} // namespace

TEST_CASE("store: an upgrade from the first schema keeps every row of every table")
{
  REQUIRE(k_migrations.size() >= 2);
  test::ScratchDir dir;
  const std::string path = dir.file("old.db");
  std::map<std::string, std::pair<std::string, Rows>> before;
  {
    Db db(path, {});
    REQUIRE(*migrate(db, {k_migrations.front()}) == 1);
    // What a 0001 klingd wrote: a batch with a budget, a completed job with every
    // column set, a failed one, labels, history and create attempts.
    db.exec(R"SQL(
      INSERT INTO batches (id, created_at, job_count, max_usd) VALUES
        ('01B1', '2026-01-01T00:00:00.000Z', 2, 12.5);
      INSERT INTO jobs (id, key, batch, state, step, model, request, output, priority, timeout_s, labels,
        generation_id, provider_status, provider_failed, attempts, step_failures, polls, error_code,
        error_message, error_http_status, video_url, video_file_size, video_path, video_bytes, video_sha256,
        cost_usd, cost_credits, created_at, updated_at, accepted_at, finished_at) VALUES
        ('01J1', 'key-1', '01B1', 'completed', NULL, 'klingai/video-v3-pro-text-to-video',
         '{"model":"klingai/video-v3-pro-text-to-video","prompt":"π lighthouse"}', 'a/b.mp4', 5, 600.5,
         '{"scene":"s1"}', 'gen:1', 'completed', 0, 1, 2, 17, NULL, NULL, NULL, 'https://cdn/x.mp4', 1234,
         '/v/a/b.mp4', 1234, 'abc123', 0.42, 42, '2026-01-01T00:00:00.000Z', '2026-01-01T00:05:00.000Z',
         '2026-01-01T00:00:01.000Z', '2026-01-01T00:05:00.000Z'),
        ('01J2', NULL, '01B1', 'failed', 'reconciling', 'm', '{}', '01J2.mp4', 0, 86400, '{}', NULL, NULL, 1,
         3, 0, 0, 'provider_failed', 'no', 422, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         '2026-01-01T00:00:00.000Z', '2026-01-01T00:01:00.000Z', NULL, '2026-01-01T00:01:00.000Z');
      INSERT INTO job_labels (name, value, job_id) VALUES ('scene', 's1', '01J1'), ('take', '2', '01J1');
      INSERT INTO job_events (job_id, batch, state, step, at, error_code, error_message, error_http_status) VALUES
        ('01J1', '01B1', 'queued', NULL, '2026-01-01T00:00:00.000Z', NULL, NULL, NULL),
        ('01J1', '01B1', 'completed', NULL, '2026-01-01T00:05:00.000Z', NULL, NULL, NULL),
        ('01J2', '01B1', 'failed', 'reconciling', '2026-01-01T00:01:00.000Z', 'provider_failed', 'no', 422);
      INSERT INTO create_attempts (job_id, attempt, client_request_id, started_at, outcome, http_status,
        generation_id, inference_id, credits, usd, finished_at) VALUES
        ('01J1', 1, '01J1.1', '2026-01-01T00:00:00.500Z', 'accepted', 200, 'gen:1', 'inf-1', 42, 0.42,
         '2026-01-01T00:00:01.000Z'),
        ('01J2', 1, '01J2.1', '2026-01-01T00:00:00.500Z', 'transient', 503, NULL, NULL, NULL, NULL, NULL),
        ('01J2', 2, '01J2.2', '2026-01-01T00:00:30.000Z', 'rejected', 422, NULL, NULL, NULL, NULL,
         '2026-01-01T00:00:31.000Z');
    )SQL");
    before = snapshot(db);
  }
  REQUIRE(before.at("jobs").second.size() == 2);
  REQUIRE(before.at("job_events").second.size() == 3);

  Db db(path, {});
  auto r = migrate(db);
  REQUIRE(r.ok());
  CHECK(*r == static_cast<int>(k_migrations.size()) - 1);
  CHECK(db.user_version() == k_migrations.back().version);
  // Every table of the first schema still has every row, column for column.
  for (const auto& [table, old] : before) {
    INFO("table " << table);
    Rows now;
    auto st = db.prepare("SELECT " + old.first + " FROM " + table + " ORDER BY 1");
    while (st.step()) {
      now.push_back(st.text(0));
    }
    CHECK(now == old.second);
  }
  CHECK(db.prepare("PRAGMA foreign_key_check").step() == false);
  auto ic = db.prepare("PRAGMA integrity_check");
  REQUIRE(ic.step());
  CHECK(ic.text(0) == "ok");

  // And the new code reads the old rows.
  JobStore store(db);
  auto j = store.get_by_key("key-1");
  REQUIRE(j);
  CHECK(j->state == JobState::completed);
  CHECK(j->video_path == "/v/a/b.mp4");
  CHECK(j->cost_usd == 0.42);
  CHECK(store.history("01J1").size() == 2);
  CHECK(store.attempts("01J2").size() == 2);
  CHECK(store.batch_budget("01B1") == 12.5);
  auto dup = [&] {
    Transaction txn(db);
    NewJob nj;
    nj.key = "key-1";
    nj.model = "m";
    nj.request = "{}";
    auto res = store.insert_batch({nj});
    txn.commit();
    store.take_pending_events();
    return res;
  }();
  REQUIRE(dup.ok());
  CHECK(dup->jobs[0].duplicate);
  CHECK(dup->jobs[0].id == "01J1");
}

TEST_CASE("store: klingd --backup copies a consistent snapshot while another connection writes")
{
  test::ScratchDir dir;
  const std::string path = dir.file("live.db");
  Db db(path, {});
  REQUIRE(migrate(db).ok());
  JobStore store(db);
  auto add = [&](const std::string& key) {
    NewJob nj;
    nj.key = key;
    nj.model = "m";
    nj.request = "{}";
    REQUIRE(store.insert_batch({nj}).ok());
    store.take_pending_events();
  };
  {
    Transaction txn(db);
    add("committed-1");
    add("committed-2");
    txn.commit();
  }
  // The daemon is in the middle of a write transaction: the copy has what was
  // committed, not what is being written.
  Transaction open(db);
  add("uncommitted");
  const std::string dest = dir.file("backups/copy.db");
  std::filesystem::create_directories(dir.file("backups"));
  auto r = backup_database(path, dest);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->schema_version == k_migrations.back().version);
  CHECK(r->bytes > 0);
  open.commit();
  CHECK_FALSE(std::filesystem::exists(dest + ".partial"));
  CHECK_FALSE(std::filesystem::exists(dest + "-wal"));

  Db copy(dest, {});
  CHECK(copy.user_version() == k_migrations.back().version);
  JobStore cs(copy);
  CHECK(cs.get_by_key("committed-1"));
  CHECK(cs.get_by_key("committed-2"));
  CHECK_FALSE(cs.get_by_key("uncommitted"));

  // A second backup replaces the first, now with the third job.
  REQUIRE(backup_database(path, dest).ok());
  Db copy2(dest, {});
  CHECK(JobStore(copy2).get_by_key("uncommitted"));

  auto missing = backup_database(dir.file("nope.db"), dir.file("x.db"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("nope.db") != std::string::npos);
  auto self = backup_database(path, path);
  REQUIRE_FALSE(self.ok());
  CHECK(self.error().message.find("is the database itself") != std::string::npos);
  auto nodir = backup_database(path, dir.file("no/such/dir/b.db"));
  REQUIRE_FALSE(nodir.ok());
  CHECK(nodir.error().message.find("no/such/dir") != std::string::npos);
}
