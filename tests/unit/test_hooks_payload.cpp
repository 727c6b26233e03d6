// Completion hooks and sidecars, the pure parts (docs/contract.md §4.6, §4.7): the webhook's
// HMAC, the command's environment, the body, the request redaction, the sidecar's name, and
// the outbox rows a terminal transition owes (in the transition's own transaction).
#include "daemon/engine/job_document.hpp"
#include "daemon/hooks/payload.hpp"
#include "daemon/store/hook_outbox.hpp"
#include "tests/unit/store_fixture.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <algorithm>

using namespace klingd;
using common::JobState;
namespace json = boost::json;

namespace {

bool has(const std::vector<std::string>& env, const std::string& kv)
{
  return std::find(env.begin(), env.end(), kv) != env.end();
}

bool has_name(const std::vector<std::string>& env, const std::string& name)
{
  return std::any_of(env.begin(), env.end(), [&](const std::string& e) { return e.rfind(name + "=", 0) == 0; });
}

store::Job completed_job()
{
  store::Job j;
  j.id = "01JOB";
  j.batch = "01BATCH";
  j.key = "k1";
  j.state = JobState::completed;
  j.model = "klingai/video-v3-pro-text-to-video";
  j.request = R"({"prompt":"p","image_url":"data:image/png;base64,AAAA"})";
  j.output = "a/clip.mp4";
  j.labels = R"({"team":"x"})";
  j.generation_id = "gen:1";
  j.video_sha256 = "abc";
  j.video_bytes = 1234;
  j.cost_usd = 0.42;
  j.cost_credits = 420;
  j.created_at = "2026-01-01T00:00:00.000Z";
  j.finished_at = "2026-01-01T00:01:00.000Z";
  j.attempts = 1;
  return j;
}

} // namespace

TEST_CASE("hooks: HMAC-SHA256 hex matches RFC 4231 test case 2")
{
  CHECK(hooks::hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("hooks: a command's environment has the job's fields and only a few of the daemon's variables")
{
  common::Config config;
  config.store.videos_dir = "/v";
  config.store.sidecar = true;
  hooks::HookSubject s{store::HookRow{}, completed_job(), {}};
  s.row.id = 7;
  s.row.scope = "job";
  s.row.state = JobState::completed;
  const common::Environment parent{{"PATH", "/bin"}, {"AIMLAPI_KEY", "sk-secret"}, {"HOME", "/h"}, {"OTHER", "x"}};
  auto env = hooks::hook_env(s, config, parent);
  CHECK(has(env, "PATH=/bin"));
  CHECK(has(env, "HOME=/h"));
  CHECK_FALSE(has_name(env, "AIMLAPI_KEY"));
  CHECK_FALSE(has_name(env, "OTHER"));
  CHECK(has(env, "KLINGD_EVENT=job.done"));
  CHECK(has(env, "KLINGD_HOOK_ID=7"));
  CHECK(has(env, "KLINGD_JOB_ID=01JOB"));
  CHECK(has(env, "KLINGD_JOB_STATE=completed"));
  CHECK(has(env, "KLINGD_BATCH_ID=01BATCH"));
  CHECK(has(env, "KLINGD_JOB_KEY=k1"));
  CHECK(has(env, "KLINGD_JOB_OUTPUT=/v/a/clip.mp4"));
  CHECK(has(env, "KLINGD_JOB_SIDECAR=/v/a/clip.json"));
  CHECK(has(env, "KLINGD_JOB_SHA256=abc"));
  CHECK(has(env, "KLINGD_JOB_BYTES=1234"));
  CHECK(has(env, "KLINGD_JOB_COST_USD=0.42"));
  CHECK(has(env, "KLINGD_JOB_ERROR_CODE="));
  CHECK_FALSE(has_name(env, "KLINGD_BATCH_JOBS"));

  // A failed job: no output, its error; a batch hook: the counts.
  s.job.state = JobState::failed;
  s.job.error = store::JobError{"provider_failed", "nope", std::nullopt};
  s.row.state = JobState::failed;
  s.row.scope = "batch";
  s.batch = hooks::BatchFacts{"01BATCH", {{JobState::completed, 2}, {JobState::failed, 1}}, 1.5};
  env = hooks::hook_env(s, config, parent);
  CHECK(has(env, "KLINGD_EVENT=batch.done"));
  CHECK(has(env, "KLINGD_JOB_STATE=failed"));
  CHECK(has(env, "KLINGD_JOB_OUTPUT="));
  CHECK(has(env, "KLINGD_JOB_ERROR_CODE=provider_failed"));
  CHECK(has(env, "KLINGD_BATCH_JOBS=3"));
  CHECK(has(env, "KLINGD_BATCH_COMPLETED=2"));
  CHECK(has(env, "KLINGD_BATCH_FAILED=1"));
  CHECK(has(env, "KLINGD_BATCH_CANCELED=0"));
  CHECK(has(env, "KLINGD_BATCH_SPEND_USD=1.5"));

  auto body = json::parse(hooks::hook_body(s, config)).as_object();
  CHECK(body.at("event") == "batch.done");
  CHECK(body.at("delivery") == 7);
  CHECK(body.at("batch").at("counts").at("failed") == 1);
  CHECK(body.at("batch").at("jobs") == 3);
  CHECK(body.at("job").at("state") == "failed");
  CHECK(body.at("job").at("video").is_null());
  CHECK(body.at("job").at("error").at("code") == "provider_failed");
}

TEST_CASE("sidecar: inline images are redacted to length and sha256; the rest is kept")
{
  const std::string long_b64(400, 'A');
  json::value req = {{"prompt", "a cat"},
                     {"image_url", "data:image/png;base64,iVBORw0KGgo="},
                     {"images", json::array{"https://example.test/x.png", long_b64}},
                     {"nested", {{"tail", "DATA:text/plain,hi"}}},
                     {"short", std::string(200, 'A')},
                     {"duration", 5}};
  auto out = engine::redact_request(req).as_object();
  CHECK(out.at("prompt") == "a cat");
  CHECK(out.at("duration") == 5);
  CHECK(out.at("short").as_string() == std::string(200, 'A'));
  CHECK(out.at("images").as_array()[0] == "https://example.test/x.png");
  CHECK(out.at("image_url").as_string() == "[redacted data-uri: 34 chars, sha256 "
                               "e1e10747c2374f621aa59fefede6ef99dc6acdb41b267ab4af408d5529f89ea8]");
  const std::string b64 = std::string(out.at("images").as_array()[1].as_string());
  CHECK(b64.rfind("[redacted base64: 400 chars, sha256 ", 0) == 0);
  CHECK(std::string(out.at("nested").at("tail").as_string()).rfind("[redacted data-uri: 18 chars", 0) == 0);
}

TEST_CASE("sidecar: its name and its document")
{
  CHECK(engine::sidecar_path("/v/a/clip.mp4") == "/v/a/clip.json");
  CHECK(engine::sidecar_path("/v/a/CLIP.MP4") == "/v/a/CLIP.json");
  CHECK(engine::sidecar_path("/v/x") == "/v/x.json");
  auto j = completed_job();
  j.state = JobState::downloading;
  j.finished_at.reset();
  auto doc = json::parse(engine::sidecar_json(j, "/v", {"/v/a/clip.mp4", 99, "ff"}, "2026-01-01T00:02:00.000Z"))
               .as_object();
  CHECK(doc.at("format") == "klingd.sidecar/1");
  CHECK(doc.at("state") == "completed");
  CHECK(doc.at("video").at("bytes") == 99);
  CHECK(doc.at("video").at("sha256") == "ff");
  CHECK(doc.at("timings").at("completed_at") == "2026-01-01T00:02:00.000Z");
  CHECK(doc.at("cost").at("credits") == 420);
  CHECK(doc.at("labels").at("team") == "x");
  CHECK(std::string(doc.at("request").at("image_url").as_string()).rfind("[redacted data-uri", 0) == 0);
}

TEST_CASE("hooks: a terminal transition owes its hooks in the same transaction; the batch's once it has ended")
{
  test::StoreFixture f;
  store::HookPolicy p;
  p.job_webhook = true;
  p.batch_command = true;
  f.store.set_hook_policy(p);
  store::NewJob nj;
  nj.model = "m";
  nj.request = "{}";
  auto ins = f.write([&](store::JobStore& s) { return s.insert_batch({nj, nj}); });
  REQUIRE(ins.ok());
  const auto a = ins->jobs[0].id;
  const auto b = ins->jobs[1].id;
  f.write([&](store::JobStore& s) { return s.transition(a, JobState::queued, JobState::canceled); });
  auto rows = store::hooks_of_job(f.db, a);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].scope == "job");
  CHECK(rows[0].kind == "webhook");
  CHECK(rows[0].state == JobState::canceled);
  CHECK(rows[0].status == "pending");
  // A rolled-back transition owes nothing.
  {
    store::Transaction txn(f.db);
    f.store.transition(b, JobState::queued, JobState::canceled);
    f.store.take_pending_events();
  }
  CHECK(store::hooks_of_job(f.db, b).empty());
  f.write([&](store::JobStore& s) { return s.transition(b, JobState::queued, JobState::canceled); });
  rows = store::hooks_of_job(f.db, b);
  REQUIRE(rows.size() == 2);
  CHECK(rows[1].scope == "batch");
  CHECK(rows[1].subject == ins->batch);
  CHECK(rows[1].kind == "command");
  auto due = store::due_hooks(f.db, "9999", 10, {rows[0].id});
  CHECK(due.size() == 2); // a's and b's batch row; b's job row is busy
  f.write([&](store::JobStore& s) {
    s.hook_settled(rows[1].id, "delivered", 1, std::nullopt, "2026");
    return s.append_note(b, "hook_delivered", std::nullopt);
  });
  CHECK(store::hooks_of_job(f.db, b)[1].status == "delivered");
  CHECK(f.store.history(b).back().step == std::optional<std::string>("hook_delivered"));
  CHECK(store::due_hooks(f.db, "9999", 10, {}).size() == 2);
  // Retention removes a deleted job's hook rows with it.
  store::PruneCutoffs all{"9999", "9999", "9999"};
  auto pruned = f.write([&](store::JobStore& s) { return s.prune(all, 10, std::nullopt, false); });
  CHECK(pruned.jobs_deleted == 2);
  CHECK(store::hooks_of_job(f.db, a).empty());
  CHECK(store::hooks_of_job(f.db, b).empty());
}
