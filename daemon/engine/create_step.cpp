#include "daemon/engine/create_step.hpp"

#include "common/catalog.hpp"
#include "common/log.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/store/group_commit.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

namespace klingd::engine {

namespace asio = boost::asio;
using common::AttemptOutcome;
using common::JobState;
using provider::CallClass;
using store::Job;
using store::JobError;
using store::JobStore;
using store::JobUpdate;

asio::awaitable<CreateEnd> CreateStep::run(const Job& job, Actor& a, AsyncSemaphore::Permit slot)
{
  const AsyncSemaphore::Permit permit = std::move(slot);
  if (m_core.stopping || m_core.paused || a.user_canceled) {
    co_return CreateEnd::not_started; // still `queued` in the store: nothing to undo
  }
  a.phase = Actor::Phase::creating;
  // The `provider` route: the request's own, else provider.route for a model that takes it.
  std::string body = job.request;
  std::optional<std::string> route;
  {
    boost::system::error_code ec;
    auto request = boost::json::parse(job.request, ec);
    if (!ec && request.is_object()) {
      if (m_core.catalog.apply_route(request.as_object(), m_core.config.provider.route)) {
        body = boost::json::serialize(request);
      }
      route = common::requested_route(request.as_object());
    }
  }
  std::string crid;
  int attempt = 0;
  co_await m_core.committer.run([&](JobStore& s) {
    JobUpdate u;
    u.step = std::optional<std::string>{};
    u.error = std::optional<JobError>{};
    u.cost_estimate_usd = a.expected_cost;
    if (route) {
      u.route_asked = *route;
    }
    if (!s.transition(job.id, JobState::queued, JobState::submitting, u)) {
      return; // canceled meanwhile
    }
    const auto current = s.get(job.id);
    crid = fmt::format("{}.{}", job.id, current->attempts + 1);
    attempt = s.begin_attempt(job.id, crid);
  });
  unclaim(m_core, a);
  if (attempt == 0) {
    co_return CreateEnd::canceled;
  }
  // Durable now: the job is `submitting` with a pending attempt row.
  if (m_core.stopping || m_core.paused) {
    // Not sent: put it back rather than leave an attempt that looks ambiguous.
    co_await requeue(job, attempt, AttemptOutcome::not_sent, nullptr);
    co_return CreateEnd::not_started;
  }
  const auto* model = m_core.catalog.find(job.model);
  const auto family = model ? model->family : m_core.catalog.family_for(job.model);
  log::debug("job.create", {{"job", job.id}, {"attempt", attempt}, {"model", job.model}});
  const SysTime sent = now_utc();
  auto r = co_await m_core.provider.create(family, std::move(body), crid);
  m_core.metrics.creates(r.outcome.cls == CallClass::ok ? "accepted" : provider::to_string(r.outcome.cls)).Increment();
  co_return co_await handle(job, attempt, sent, std::move(r));
}

asio::awaitable<bool> CreateStep::requeue(const Job& job, int attempt, AttemptOutcome outcome,
                                          const provider::CreateResult* r, JobUpdate u)
{
  auto done = co_await m_core.settle_create(job.id, attempt, outcome, r, [&](JobStore& s) {
    return s.transition(job.id, JobState::submitting, JobState::queued, u);
  });
  co_return done.moved;
}

asio::awaitable<CreateEnd> CreateStep::handle(const Job& job, int attempt, SysTime sent, provider::CreateResult r)
{
  const auto& o = r.outcome;
  if (o.cls != CallClass::safe_retry) {
    m_core.rate_limited_since.erase(job.id);
  }
  switch (o.cls) {
  case CallClass::ok: {
    JobUpdate u;
    u.generation_id = *r.generation_id;
    u.provider_status = r.provider_status.value_or("queued");
    u.accepted_at = now_text();
    u.step_failures = 0;
    if (r.usd) u.cost_usd = *r.usd;
    if (r.credits) u.cost_credits = *r.credits;
    auto done = co_await m_core.settle_create(job.id, attempt, AttemptOutcome::accepted, &r, [&](JobStore& s) {
      if (s.transition(job.id, JobState::submitting, JobState::generating, u)) {
        return true;
      }
      // Canceled while the create was in flight: keep what we paid for, so a retry polls
      // this generation instead of creating another.
      s.update(job.id, JobState::canceled, u);
      return false;
    });
    log::info("job.accepted", {{"job", job.id}, {"attempt", attempt}, {"generation", *r.generation_id},
                               {"canceled", !done.moved}});
    co_return done.moved ? CreateEnd::accepted : CreateEnd::canceled;
  }
  case CallClass::safe_retry: {
    m_core.metrics.provider_errors(o.http_status == 429 ? "http_429" : o.http_status ? "http_5xx" : "network").Increment();
    const bool rate_limited = o.http_status == 429;
    // A plain 429 is the provider pacing us, not the job failing: it slows every create to the
    // host (docs/contract.md §3.4) and does not count against retry.max_attempts, up to a
    // wall-clock ceiling (retry.rate_limited_max_s).
    const int failures = rate_limited ? job.step_failures : job.step_failures + 1;
    const auto outcome = o.http_status ? AttemptOutcome::transient : AttemptOutcome::not_sent;
    if (rate_limited) {
      m_core.create_rate.hold_until(Clock::now() + o.retry_after.value_or(seconds(m_core.config.retry.base_s)));
      const auto since = m_core.rate_limited_since.try_emplace(job.id, Clock::now()).first->second;
      const double held_s = std::chrono::duration<double>(Clock::now() - since).count();
      if (held_s > m_core.config.retry.rate_limited_max_s) {
        m_core.rate_limited_since.erase(job.id);
        co_await m_core.fail_create(job.id, attempt, outcome, &r, common::ErrorCode::retries_exhausted,
                                    fmt::format("the provider kept answering 429 (rate limited) for {:.0f}s "
                                                "(retry.rate_limited_max_s); last: {}", held_s, o.message));
        co_return CreateEnd::failed;
      }
    } else {
      m_core.rate_limited_since.erase(job.id);
    }
    if (failures >= m_core.config.retry.max_attempts) {
      co_await m_core.fail_create(job.id, attempt, AttemptOutcome::not_sent, &r, common::ErrorCode::retries_exhausted,
                                  fmt::format("create failed {} times; last: {}", failures, o.message));
      co_return CreateEnd::failed;
    }
    const auto delay = retry_delay(m_core.config.retry, std::max(failures, 1), o.retry_after, m_core.rng);
    auto done = co_await m_core.settle_create(job.id, attempt, outcome, &r, [&](JobStore& s) {
      JobUpdate u;
      u.step_failures = failures;
      if (!s.transition(job.id, JobState::submitting, JobState::queued, u)) {
        return false;
      }
      // The history row's step and its note's code are both "retry" (docs/contract.md §2).
      const std::string retry(common::to_string(common::JobStep::retry));
      s.update(job.id, JobState::queued, {}, retry,
               JobError{retry, fmt::format("create not accepted ({}); retry {} in {:.1f}s", o.message, failures,
                                             std::chrono::duration<double>(delay).count()),
                        o.http_status});
      return true;
    });
    m_core.not_before[job.id] = Clock::now() + delay;
    log::info("job.create_retry", {{"job", job.id}, {"failures", failures}, {"delay_ms", delay.count()},
                                   {"reason", o.message}});
    co_return done.moved ? CreateEnd::requeued : CreateEnd::canceled;
  }
  case CallClass::account:
    m_core.metrics.provider_errors("account").Increment();
    // Not the job's fault: put it back untouched and stop dispatching.
    co_await requeue(job, attempt, AttemptOutcome::account, &r);
    m_core.pause(fmt::format("provider refused the API key or account (HTTP {}): {}", o.http_status.value_or(0), o.message),
                 true);
    co_return CreateEnd::paused;
  case CallClass::job_error:
    m_core.metrics.provider_errors("http_4xx").Increment();
    co_await m_core.fail_create(job.id, attempt, AttemptOutcome::rejected, &r, common::ErrorCode::invalid_request,
                                fmt::format("the provider refused the request: {}", o.message));
    co_return CreateEnd::failed;
  case CallClass::ambiguous:
  case CallClass::transient:
    break;
  }
  // Sent, and maybe billed, but we cannot tell (docs/contract.md §3.2).
  m_core.metrics.provider_errors(o.http_status ? "http_5xx" : "network").Increment();
  co_await m_reconciler.take_over(job, attempt, sent, &r, o.message);
  co_return CreateEnd::reconciling;
}

} // namespace klingd::engine
