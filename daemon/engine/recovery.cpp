#include "daemon/engine/recovery.hpp"

#include "common/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace klingd::engine {

namespace asio = boost::asio;
using common::JobState;
using store::Job;

asio::awaitable<void> Recovery::start()
{
  m_core.generation_times.load(m_core.store.generation_times(GenerationTimes::k_samples));
  auto jobs = m_core.store.active_jobs();
  std::size_t resumed = 0;
  for (auto& job : jobs) {
    const bool started = co_await resume_job(std::move(job), "klingd stopped while the create call was in flight");
    resumed += started ? 1 : 0;
  }
  const auto canceled = m_core.store.canceled_with_unsettled_attempt();
  for (const auto& job : canceled) {
    co_await m_reconciler.settle_canceled(job);
  }
  log::info("engine.started", {{"resumed", resumed}, {"active", jobs.size()}, {"canceled_unsettled", canceled.size()}});
}

asio::awaitable<bool> Recovery::resume_job(Job job, std::string reason)
{
  if (job.state == JobState::canceled) {
    co_await m_reconciler.settle_canceled(job);
    co_return false;
  }
  if (job.state == JobState::queued || common::is_terminal(job.state)) {
    co_return false;
  }
  if (job.state == JobState::submitting) {
    co_await m_reconciler.settle_interrupted(job, std::move(reason));
    co_return false;
  }
  co_return m_actors.spawn(std::move(job), /*resumed=*/true);
}

void Recovery::schedule(const std::string& id)
{
  auto& failures = m_failures[id];
  const auto delay = std::min(Millis(1000) * (1 << std::min(failures, 6)), Millis(60000));
  ++failures;
  m_core.not_before[id] = Clock::now() + delay;
  log::warning("job.recovery_scheduled", {{"job", id}, {"in_ms", delay.count()}, {"failures", failures}});
  asio::co_spawn(m_core.ex, recover(id, delay), log::coroutine_failure_handler("engine.recover"));
}

asio::awaitable<void> Recovery::recover(std::string id, Millis delay)
{
  asio::steady_timer t(m_core.ex, delay);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  if (m_core.stopping || m_core.owner(id)) {
    co_return;
  }
  bool failed = false;
  try {
    auto job = m_core.store.get(id);
    bool actor_started = false;
    if (job) {
      log::info("job.recovering", {{"job", id}, {"state", common::to_string(job->state)}});
      // Not inside `||`/`?:`: GCC 12 mishandles co_await in conditional expressions.
      actor_started = co_await resume_job(std::move(*job), "the outcome of the create call could not be recorded");
    }
    // A started actor clears the count when it ends without an error; otherwise the job is
    // done, back in the queue (the dispatcher takes it once its back-off passed) or settled.
    if (!actor_started) {
      m_failures.erase(id);
      m_core.dispatch_wake.notify();
    }
  } catch (const std::exception& e) {
    log::error("job.recovery_failed", {{"job", id}, {"error", e.what()}});
    failed = true;
  }
  if (failed && !m_core.stopping) {
    schedule(id);
  }
}

} // namespace klingd::engine
