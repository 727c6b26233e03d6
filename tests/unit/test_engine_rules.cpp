// The engine's rules against a scripted provider (tests/unit/engine_script.hpp): one owner
// per job, settlements fenced by attempt, the absence proof, the last look at the deadline,
// per-generation partial files. Each runs a real Engine and store in milliseconds.
#include "tests/unit/engine_script.hpp"

using namespace klingd;
using namespace klingd::test;
using common::JobState;

namespace {
auto ambiguous_then_accept()
{
  return [](const std::string& crid) {
    return crid.ends_with(".1") ? ScriptedProvider::ambiguous() : ScriptedProvider::accepted("gen-" + crid);
  };
}
} // namespace

TEST_CASE("engine: cancel then retry while the create is reconciled sends no second create")
{
  EngineFixture f;
  std::string first_crid;
  f.provider.on_create = [&](const std::string& crid) {
    first_crid = crid;
    // Accepted and billed by the provider, but the answer was lost; the log has not caught up.
    f.provider.add_log("succeeded", crid, "gen-lost", now_utc(), /*visible=*/false);
    return ScriptedProvider::ambiguous();
  };
  f.start();
  const auto id = f.submit();
  REQUIRE(f.run_until([&] { return f.job(id).step == "reconciling"; }));

  auto canceled = f.await(f.engine->cancel(id));
  REQUIRE(canceled.ok());
  CHECK(canceled->state == JobState::canceled);
  auto retried = f.await(f.engine->retry(id));
  REQUIRE(retried.ok());
  // Waits for the settlement of attempt 1 instead of queueing a second create.
  CHECK(retried->state == JobState::submitting);
  CHECK(retried->step == "reconciling");
  f.run_for(0.3);
  CHECK(f.provider.creates.size() == 1);

  f.provider.log.back().visible = true; // the log catches up: the create was accepted
  REQUIRE(f.run_until([&] { return f.state(id) == JobState::completed; }));
  CHECK(f.provider.creates.size() == 1);
  CHECK(f.job(id).generation_id == "gen-lost");
  CHECK(f.last_outcome(id) == "reconciled_succeeded");
}

TEST_CASE("engine: a job canceled while reconciled keeps the generation the log names; retry polls it")
{
  EngineFixture f;
  f.provider.on_create = [&](const std::string& crid) {
    f.provider.add_log("succeeded", crid, "gen-kept", now_utc(), false);
    return ScriptedProvider::ambiguous();
  };
  f.start();
  const auto id = f.submit();
  REQUIRE(f.run_until([&] { return f.job(id).step == "reconciling"; }));
  REQUIRE(f.await(f.engine->cancel(id)).ok());
  f.provider.log.back().visible = true;
  REQUIRE(f.run_until([&] { return f.job(id).generation_id.has_value(); }));
  CHECK(f.state(id) == JobState::canceled);
  CHECK(f.last_outcome(id) == "reconciled_succeeded");

  auto retried = f.await(f.engine->retry(id));
  REQUIRE(retried.ok());
  CHECK(retried->state == JobState::generating);
  REQUIRE(f.run_until([&] { return f.state(id) == JobState::completed; }));
  CHECK(f.provider.creates.size() == 1);
}

TEST_CASE("engine: a canceled job whose create was never settled is settled at start before a retry")
{
  std::string id;
  EngineFixture f;
  // A previous run: the job was canceled while its create (attempt 1) was out, then klingd died.
  id = f.submit();
  f.write([&](store::JobStore& s) {
    REQUIRE(s.transition(id, JobState::queued, JobState::submitting));
    REQUIRE(s.begin_attempt(id, id + ".1") == 1);
    REQUIRE(s.transition(id, JobState::submitting, JobState::canceled));
  });
  f.provider.add_log("succeeded", id + ".1", "gen-before-crash", now_utc());
  f.start();
  REQUIRE(f.run_until([&] { return f.job(id).generation_id.has_value(); }));
  CHECK(f.state(id) == JobState::canceled);
  auto retried = f.await(f.engine->retry(id));
  REQUIRE(retried.ok());
  CHECK(retried->state == JobState::generating);
  REQUIRE(f.run_until([&] { return f.state(id) == JobState::completed; }));
  CHECK(f.provider.creates.empty()); // the create before the crash was the only one
}

TEST_CASE("store: a settlement is fenced by the attempt it is about")
{
  EngineFixture f;
  const auto id = f.submit();
  std::vector<bool> settled;
  f.write([&](store::JobStore& s) {
    s.transition(id, JobState::queued, JobState::submitting);
    s.begin_attempt(id, id + ".1");
    store::Attempt a;
    a.job_id = id;
    a.attempt = 1;
    a.outcome = "ambiguous";
    settled.push_back(s.settle_attempt(a)); // pending → ambiguous: still unsettled
    a.outcome = "reconciled_failed";
    settled.push_back(s.settle_attempt(a)); // settled
    a.outcome = "reconciled_succeeded";
    settled.push_back(s.settle_attempt(a)); // a second settlement of the same attempt
    s.begin_attempt(id, id + ".2");
    store::Attempt stale = a;
    stale.attempt = 1;
    stale.outcome = "unresolved";
    settled.push_back(s.settle_attempt(stale)); // attempt 1 is no longer the current one
  });
  CHECK(settled == std::vector<bool>{true, true, false, false});
  CHECK(f.store.attempts(id).at(0).outcome == "reconciled_failed");
  CHECK(f.store.last_attempt(id)->outcome == "pending");
}

TEST_CASE("engine: proof of absence re-sends a create that never reached the provider")
{
  EngineFixture f;
  f.provider.on_create = ambiguous_then_accept();
  f.start();
  const auto id = f.submit();
  REQUIRE(f.run_until([&] { return f.job(id).step == "reconciling"; }));
  f.run_for(0.5); // past send + request timeout + slack, but the log shows nothing newer yet
  CHECK(f.state(id) == JobState::submitting);
  CHECK(f.provider.creates.size() == 1);
  // Other traffic reaches the log after that bound; no row carries our id: it never arrived.
  f.provider.add_log("succeeded", std::string("other.1"), std::string("gen-other"), now_utc());
  REQUIRE(f.run_until([&] { return f.state(id) == JobState::completed; }));
  CHECK(f.provider.creates.size() == 2);
  CHECK(f.store.attempts(id).at(0).outcome == "reconciled_absent");
}

TEST_CASE("engine: without the absence proof the create waits out the window")
{
  EngineFixture f;
  f.config.reconcile.absence_proof = false;
  f.provider.on_create = ambiguous_then_accept();
  f.start();
  const auto id = f.submit();
  REQUIRE(f.run_until([&] { return f.job(id).step == "reconciling"; }));
  f.run_for(0.4);
  f.provider.add_log("succeeded", std::string("other.1"), std::string("gen-other"), now_utc());
  f.run_for(1.0);
  CHECK(f.state(id) == JobState::submitting);
  CHECK(f.provider.creates.size() == 1);
}

TEST_CASE("engine: a row from before the bound proves nothing")
{
  EngineFixture f;
  f.config.reconcile.absence_slack_s = 30; // the bound is 30 s away
  f.provider.on_create = ambiguous_then_accept();
  f.start();
  const auto id = f.submit();
  REQUIRE(f.run_until([&] { return f.job(id).step == "reconciling"; }));
  f.provider.add_log("succeeded", std::string("other.1"), std::string("gen-other"), now_utc());
  f.run_for(1.0);
  CHECK(f.state(id) == JobState::submitting);
  CHECK(f.provider.creates.size() == 1);
}

TEST_CASE("engine: at the deadline one last poll finds the finished video")
{
  EngineFixture f;
  f.config.poll.initial_s = 60; // the schedule alone would not look before the deadline
  f.start();
  const auto id = f.submit(/*timeout_s=*/0.3);
  REQUIRE(f.run_until([&] { return common::is_terminal(f.state(id)); }));
  CHECK(f.state(id) == JobState::completed);
  CHECK(f.job(id).polls == 1);
}

TEST_CASE("engine: at the deadline a still-running generation fails timeout after its last look")
{
  EngineFixture f;
  f.config.poll.initial_s = 60;
  f.provider.on_poll = [](const std::string&) { return ScriptedProvider::status("active"); };
  f.start();
  const auto id = f.submit(0.3);
  REQUIRE(f.run_until([&] { return common::is_terminal(f.state(id)); }));
  CHECK(f.state(id) == JobState::failed);
  CHECK(f.job(id).error->code == "timeout");
  CHECK(f.provider.polls.begin()->second == 1);
}

TEST_CASE("engine: after downtime longer than timeout_s a generating job is polled once before failing")
{
  EngineFixture f;
  const auto id = f.submit(60);
  f.write([&](store::JobStore& s) {
    s.transition(id, JobState::queued, JobState::submitting);
    s.begin_attempt(id, id + ".1");
    store::Attempt a;
    a.job_id = id;
    a.attempt = 1;
    a.outcome = "accepted";
    s.settle_attempt(a);
    store::JobUpdate u;
    u.generation_id = "gen-old";
    u.accepted_at = format_rfc3339(now_utc() - std::chrono::hours(2)); // down for two hours
    s.transition(id, JobState::submitting, JobState::generating, u);
  });
  f.start();
  REQUIRE(f.run_until([&] { return common::is_terminal(f.state(id)); }));
  CHECK(f.state(id) == JobState::completed);
  CHECK(f.provider.polls["gen-old"] == 1);
}

TEST_CASE("engine: a generation's partial file is its own and is removed when it fails")
{
  EngineFixture f;
  int fetches = 0;
  f.fetcher.on_fetch = [&](const engine::DownloadTask& t) {
    if (++fetches == 1) {
      // Cut midway: a partial file stays for a Range resume, and the URL then expires.
      std::filesystem::create_directories(t.part_path.parent_path());
      std::ofstream(t.part_path, std::ios::binary) << "partial bytes of the first generation";
      engine::DownloadOutcome out;
      out.status = engine::DownloadStatus::url_expired;
      out.message = "403";
      return out;
    }
    return ScriptedFetcher::write_ok(t);
  };
  // The re-poll for a fresh URL finds the first generation failed.
  f.provider.on_poll = [&](const std::string& g) {
    if (g.ends_with(".1") && f.provider.polls[g] > 1) {
      return ScriptedProvider::status("failed");
    }
    return ScriptedProvider::status("completed", "https://cdn.test/" + g + ".mp4");
  };
  f.start();
  const auto id = f.submit();
  REQUIRE(f.run_until([&] { return common::is_terminal(f.state(id)); }));
  REQUIRE(f.state(id) == JobState::failed);
  REQUIRE(f.fetcher.tasks.size() == 1);
  const auto first_part = f.fetcher.tasks[0].part_path;
  CHECK(!std::filesystem::exists(first_part));

  REQUIRE(f.await(f.engine->retry(id)).ok());
  REQUIRE(f.run_until([&] { return f.state(id) == JobState::completed; }));
  REQUIRE(f.fetcher.tasks.size() == 2);
  CHECK(f.fetcher.tasks[1].part_path != first_part);
  CHECK(f.fetcher.tasks[1].part_path.string().ends_with(".part"));
}

TEST_CASE("engine: a job has one owner: no second actor, no dispatch while the reconciler holds it")
{
  EngineFixture f;
  f.provider.on_create = [&](const std::string&) { return ScriptedProvider::ambiguous(); };
  f.start();
  const auto id = f.submit();
  REQUIRE(f.run_until([&] { return f.job(id).step == "reconciling"; }));
  // Canceled, and the state says queued-able, but the reconciler still owns the attempt.
  REQUIRE(f.await(f.engine->cancel(id)).ok());
  f.run_for(0.3);
  CHECK(f.provider.creates.size() == 1);
  CHECK(f.engine->status().reconciling == 1);
}

TEST_CASE("engine: exit with coroutines still suspended is clean (frames die before the engine)")
{
  // The fixture's destructor stops the loop with polls asleep and the engine's loops waiting,
  // then destroys those frames before the engine (EventLoop::destroy_pending): under ASan the
  // old order (frames destroyed in ~io_context, after the engine) is a use-after-free.
  EngineFixture f;
  f.provider.on_poll = [](const std::string&) { return ScriptedProvider::status("active"); };
  f.start();
  for (int i = 0; i < 5; ++i) {
    f.submit();
  }
  REQUIRE(f.run_until([&] { return f.engine->status().generating == 5; }));
}
