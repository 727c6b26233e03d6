#include "daemon/engine/poller.hpp"

#include "common/catalog.hpp"
#include "common/log.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/store/group_commit.hpp"

#include <boost/json/parse.hpp>
#include <fmt/format.h>

namespace klingd::engine {

namespace asio = boost::asio;
using common::JobState;
using provider::CallClass;
using store::Job;
using store::JobStore;
using store::JobUpdate;

namespace {
// A generation the provider gave us counts as lost only after this many consecutive 404s
// spread over at least k_lost_after (docs/contract.md §3.3).
constexpr int k_lost_after_404s = 5;
constexpr auto k_lost_after = std::chrono::minutes(2);
// Looks at or after the deadline before failing `timeout`, when the first ones fail.
constexpr int k_last_looks = 3;
} // namespace

struct Poller::State
{
  explicit State(const common::Config::Poll& poll) : schedule(poll) {}
  PollSchedule schedule;
  Clock::time_point accepted{};
  Clock::time_point deadline{};
  std::optional<Clock::time_point> last_working; // the last poll that saw it still running
  bool fresh = false;        // polled from its acceptance on (not resumed, adopted or retried)
  std::string last_status;
  bool logged_unknown = false;
  int failures = 0;
  int consecutive_404 = 0;
  Clock::time_point first_404{};
  bool answered = false;   // the last poll got a usable status
  bool done = false;       // the job left `generating` (or failed)
  Clock::duration delay{}; // until the next poll
};

asio::awaitable<PollEnd> Poller::run(const Job& job, Actor& a)
{
  PollJob pj;
  pj.id = job.id;
  pj.model = job.model;
  pj.generation_id = job.generation_id.value_or("");
  pj.state = job.state;
  pj.timeout_s = job.timeout_s;
  pj.accepted_at = job.accepted_at ? parse_rfc3339(*job.accepted_at) : std::nullopt;
  pj.video_s = video_seconds(job);
  pj.provider_status = job.provider_status.value_or("");
  pj.has_cost_usd = job.cost_usd.has_value();
  pj.has_cost_credits = job.cost_credits.has_value();
  return poll_loop(std::move(pj), a);
}

// Not a coroutine (GCC keeps every local of a coroutine in its frame): the schedule's start.
void Poller::begin(PollJob& job, Actor& a, State& ps)
{
  a.phase = Actor::Phase::polling;
  set_in_flight(m_core, a, true);
  // accepted_at is wall-clock; map it onto the steady clock once.
  const auto since = job.accepted_at ? std::chrono::duration_cast<Clock::duration>(now_utc() - *job.accepted_at)
                                     : Clock::duration{};
  ps.accepted = Clock::now() - std::max(since, Clock::duration{});
  ps.deadline =
    ps.accepted + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(job.timeout_s));
  ps.fresh = std::exchange(a.just_accepted, false);
  if (m_core.config.poll.learn) {
    if (auto p = m_core.generation_times.profile(job.model, job.video_s)) {
      ps.schedule.expect(p->lo_s, p->hi_s);
    }
  }
  ps.delay = ps.schedule.next(Clock::now() - ps.accepted, m_core.rng);
  if (a.spread_first_poll) {
    // After a restart, spread the first polls over one interval, not all at once.
    std::uniform_int_distribution<std::int64_t> spread(
      0, std::max<std::int64_t>(1, seconds(m_core.config.poll.initial_s).count()));
    ps.delay = Millis(spread(m_core.rng));
    a.spread_first_poll = false;
  }
  ps.last_status = std::move(job.provider_status);
}

// The waiting loop: between polls a generating job holds this frame (the PollJob and State),
// a timer, and nothing else; a poll's own frame exists only once a poll slot is held.
asio::awaitable<PollEnd> Poller::poll_loop(PollJob job, Actor& a)
{
  State ps(m_core.config.poll);
  begin(job, a, ps);
  const auto deadline = ps.deadline;
  int last_looks = 0;
  for (;;) {
    const auto now = Clock::now();
    if (now >= deadline) {
      // The deadline passed (also: klingd was down past it). A finished, paid video must not be
      // abandoned unseen: look once more (a few times if the looks themselves fail) first.
      if (last_looks < k_last_looks && !(last_looks > 0 && ps.answered)) {
        if (last_looks > 0) {
          co_await m_core.sleep(std::min<Clock::duration>(ps.delay, std::chrono::seconds(5)));
        }
        ++last_looks;
        co_await m_core.poll_slots.acquire();
        co_await poll_once(job, a, now, ps, AsyncSemaphore::Permit(m_core.poll_slots));
        if (ps.done) {
          co_return ps.answered ? PollEnd::video_ready : PollEnd::failed;
        }
        continue;
      }
      co_await fail(job, a, common::ErrorCode::timeout,
                    fmt::format("the generation did not finish within timeout_s={}s of being accepted (looked again "
                                "at the deadline)",
                                job.timeout_s));
      co_return PollEnd::failed;
    }
    const auto due = now + std::min<Clock::duration>(ps.delay, deadline - now);
    co_await m_core.sleep(due - now);
    if (Clock::now() >= deadline) {
      continue; // the last look happens at the top
    }
    // The poll slot is waited for here, in this small frame: when polls queue up (more due
    // than provider slots), each waiting job holds no poll_once frame yet.
    co_await m_core.poll_slots.acquire();
    co_await poll_once(job, a, due, ps, AsyncSemaphore::Permit(m_core.poll_slots));
    if (ps.done) {
      co_return ps.answered ? PollEnd::video_ready : PollEnd::failed;
    }
  }
}

asio::awaitable<provider::PollResult> Poller::poll_for_url(const Job& job, Actor& a)
{
  provider::PollResult r;
  {
    co_await m_core.poll_slots.acquire();
    AsyncSemaphore::Permit permit(m_core.poll_slots);
    r = co_await m_core.provider.poll(m_core.catalog.family_for(job.model), *job.generation_id);
  }
  ++a.unflushed_polls;
  m_core.metrics.polls().Increment();
  co_return r;
}

// One status poll and what follows from its answer: ps.delay becomes the schedule's next
// interval on a "still running" answer, a back-off on a failure. ps.done with ps.answered:
// the video is ready (`downloading`); ps.done without: the job failed.
asio::awaitable<void> Poller::poll_once(const PollJob& job, Actor& a, Clock::time_point due, State& ps,
                                        AsyncSemaphore::Permit permit)
{
  provider::PollResult r;
  {
    const AsyncSemaphore::Permit held = std::move(permit); // released once the answer is in
    // Lateness is measured when the poll can actually go out: loop lag and queueing for a
    // poll slot both make it late (daemon/metrics/metrics.hpp, poll_lateness).
    m_core.metrics.poll_lateness().Observe(std::chrono::duration<double>(Clock::now() - due).count());
    r = co_await m_core.provider.poll(m_core.catalog.family_for(job.model), job.generation_id);
  }
  ++a.unflushed_polls;
  m_core.metrics.polls().Increment();
  const auto& o = r.outcome;
  ps.answered = false;
  if (o.cls == CallClass::ok) {
    ps.failures = 0;
    ps.consecutive_404 = 0;
    const auto& st = *r.status;
    if (!st.known_status && !ps.logged_unknown) {
      ps.logged_unknown = true;
      log::warning("job.unknown_provider_status", {{"job", job.id}, {"status", st.status}});
    }
    if (st.kind == provider::GenerationStatus::Kind::completed && st.video_url) {
      JobUpdate u;
      u.provider_status = st.status;
      u.video_url = *st.video_url;
      if (st.file_size) u.video_file_size = *st.file_size;
      u.step_failures = 0;
      if (st.served_by) u.route_served = *st.served_by;
      // The completed status's meta.usage is the generation's charge: the job's cost when the
      // create's headers (or the request log, later) gave none.
      if (!job.has_cost_usd && st.usage_usd) u.cost_usd = *st.usage_usd;
      if (!job.has_cost_credits && st.usage_credits) u.cost_credits = *st.usage_credits;
      const auto learned = generation_time(job, ps);
      bool moved = false;
      co_await commit_with_polls(a, [&](JobStore& s) {
        moved = s.transition(job.id, JobState::generating, JobState::downloading, u);
        if (moved && learned) {
          s.add_generation_time(*learned);
        }
      });
      if (moved && learned) {
        m_core.generation_times.add(learned->model, learned->video_s, learned->seconds);
      }
      ps.done = true;
      ps.answered = moved;
      co_return;
    }
    if (st.kind == provider::GenerationStatus::Kind::failed) {
      JobUpdate u;
      u.provider_status = st.status;
      u.provider_failed = true;
      u.error = make_job_error(common::ErrorCode::provider_failed, st.error_message);
      co_await commit_with_polls(a, [&](JobStore& s) { s.transition(job.id, JobState::generating, JobState::failed, u); });
      log::warning("job.failed", {{"job", job.id}, {"code", "provider_failed"}, {"message", st.error_message}});
      ps.done = true;
      co_return;
    }
    ps.answered = true;
    ps.last_working = Clock::now();
    if (st.status != ps.last_status) {
      // A real change costs a (group) commit; an unchanged poll costs nothing.
      ps.last_status = st.status;
      JobUpdate u;
      u.provider_status = st.status;
      co_await commit_with_polls(a, [&](JobStore& s) { s.update(job.id, JobState::generating, u); });
    }
    ps.delay = ps.schedule.next(Clock::now() - ps.accepted, m_core.rng);
    co_return;
  }
  if (o.cls == CallClass::job_error) {
    // 404 (or another 4xx) for an id the provider gave us: lost only after several in a row
    // spread over minutes; the provider may lag.
    if (ps.consecutive_404++ == 0) {
      ps.first_404 = Clock::now();
    }
    if (ps.consecutive_404 >= k_lost_after_404s && Clock::now() - ps.first_404 >= k_lost_after) {
      co_await fail(job, a, common::ErrorCode::provider_failed,
                    fmt::format("the provider no longer knows generation {} ({} answers in a row: {})",
                                job.generation_id, ps.consecutive_404, o.message),
                    o.http_status);
      ps.done = true;
      co_return;
    }
    ps.delay = std::max<Clock::duration>(retry_delay(m_core.config.retry, ps.consecutive_404, o.retry_after, m_core.rng),
                                         k_lost_after / k_lost_after_404s);
    co_return;
  }
  if (o.cls == CallClass::account) {
    m_core.metrics.provider_errors("account").Increment();
    m_core.pause(fmt::format("provider refused the API key or account (HTTP {}): {}", o.http_status.value_or(0), o.message),
                 true);
  } else {
    const char* kind = "network";
    if (o.http_status == 429) {
      kind = "http_429";
    } else if (o.http_status >= 500) {
      kind = "http_5xx";
    } else if (o.http_status) {
      kind = "malformed";
    }
    m_core.metrics.provider_errors(kind).Increment();
  }
  // Polls are not attempts: a paid generation is never abandoned over failed polls; they back
  // off until the job's own deadline (docs/contract.md §3.3).
  ++ps.failures;
  ps.delay = retry_delay(m_core.config.retry, ps.failures, o.retry_after, m_core.rng);
  log::info("job.poll_failed", {{"job", job.id}, {"failures", ps.failures},
                                {"delay_ms", std::chrono::duration_cast<Millis>(ps.delay).count()}, {"reason", o.message}});
}

std::int64_t Poller::video_seconds(const Job& job) const
{
  boost::system::error_code ec;
  auto v = boost::json::parse(job.request, ec);
  if (ec || !v.is_object()) {
    return 0;
  }
  return m_core.catalog.video_seconds(v.get_object()).value_or(0);
}

// The sample a completed generation teaches (docs/contract.md §3.3): it ended between the last
// poll that saw it running and this one — their midpoint. Seen done at its first poll, it ended
// before: one short step earlier (at least halfway), so the expectation can follow a provider
// that got faster — but only when this run sent the create: a job resumed after a restart, adopted
// by the reconciler or retried onto a generation it holds did not watch the whole wait.
std::optional<store::GenerationTime> Poller::generation_time(const PollJob& job, const State& ps) const
{
  const auto now = Clock::now();
  const double done = std::chrono::duration<double>(now - ps.accepted).count();
  double seconds = 0;
  if (ps.last_working) {
    seconds = (std::chrono::duration<double>(*ps.last_working - ps.accepted).count() + done) / 2;
  } else if (ps.fresh) {
    seconds = std::max(done / 2, done - ps.schedule.step_s());
  } else {
    return std::nullopt;
  }
  return store::GenerationTime{job.model, job.video_s, seconds};
}

asio::awaitable<void> Poller::fail(const PollJob& job, Actor& a, common::ErrorCode code, std::string message,
                                   std::optional<int> http)
{
  JobUpdate u;
  u.error = make_job_error(code, message, http);
  co_await commit_with_polls(a, [&](JobStore& s) { s.transition(job.id, job.state, JobState::failed, u); });
  log::warning("job.failed", {{"job", job.id}, {"code", common::to_string(code)}, {"message", message}});
}

asio::awaitable<void> Poller::commit_with_polls(Actor& a, std::function<void(JobStore&)> fn)
{
  const std::int64_t polls = std::exchange(a.unflushed_polls, 0);
  const std::string id = a.id;
  co_await m_core.committer.run([&](JobStore& s) {
    fn(s);
    if (polls) {
      s.add_polls(id, polls);
    }
  });
}

} // namespace klingd::engine
