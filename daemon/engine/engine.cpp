#include "daemon/engine/engine.hpp"

#include "common/catalog.hpp"
#include "common/log.hpp"
#include "common/time.hpp"
#include "daemon/engine/async_semaphore.hpp"
#include "daemon/engine/downloader.hpp"
#include "daemon/engine/schedule.hpp"
#include "daemon/metrics.hpp"
#include "daemon/notifier.hpp"
#include "daemon/provider/http_client.hpp"
#include "daemon/provider/provider_client.hpp"
#include "daemon/store/group_commit.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include <boost/json.hpp>
#include <unordered_map>
#include <unordered_set>

namespace klingd::engine {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using common::JobState;
using provider::CallClass;
using store::Job;
using store::JobError;
using store::JobStore;
using store::JobUpdate;

namespace {

constexpr int k_poll_concurrency = 64;
// Create calls on the wire at once. Without a bound, a batch dispatched at once (max_in_flight
// of 10,000) opened as many TLS connections together: 660 MiB of peak RSS for nothing, since
// the provider answers them no faster. A job waits for a slot while still `queued`, so a crash
// meanwhile leaves nothing ambiguous.
constexpr int k_create_concurrency = 32;
// A generation the provider gave us counts as lost only after this many
// consecutive 404s spread over at least k_lost_after (SPEC §3.3).
constexpr int k_lost_after_404s = 5;
constexpr auto k_lost_after = std::chrono::minutes(2);

JobError make_job_error(common::ErrorCode code, std::string message, std::optional<int> http = std::nullopt)
{
  return JobError{std::string(common::to_string(code)), std::move(message), http};
}

std::string now_text() { return format_rfc3339(now_utc()); }

Millis seconds(double s) { return Millis(static_cast<std::int64_t>(s * 1000.0)); }

bool is_aborted(const boost::system::system_error& e) { return e.code() == asio::error::operation_aborted; }

} // namespace

// One running job: the coroutine that drives it through create, polls and
// download, and what the engine needs to know about it meanwhile.
struct Actor
{
  enum class Phase { creating, polling, downloading, idle };
  std::string id;
  Phase phase = Phase::idle;
  bool in_flight = false;      // counts against provider.max_in_flight
  bool claimed = false;        // picked from the queue, not yet `submitting` in the store
  bool user_canceled = false;
  bool spread_first_poll = false; // resumed at start: spread the first poll
  double expected_cost = 0;       // estimate made at dispatch (budgets)
  std::string batch;              // for the per-batch budget while claimed
  std::int64_t unflushed_polls = 0;
  asio::cancellation_signal cancel;
};

class Engine::Impl
{
public:
  Impl(asio::any_io_executor ex, const common::Config& config, const common::Catalog& catalog, JobStore& store,
       store::GroupCommitter& committer, Metrics& metrics)
    : m_ex(ex),
      m_config(config),
      m_catalog(catalog),
      m_store(store),
      m_committer(committer),
      m_metrics(metrics),
      m_http(ex, provider::HttpClient::Options{config.provider.ca_file}),
      m_provider(m_http, provider_options(config)),
      m_downloader(m_http, ex),
      m_dispatch_wake(ex),
      m_reconcile_wake(ex),
      m_rate(config.provider.creates_per_minute),
      m_poll_slots(ex, k_poll_concurrency),
      m_create_slots(ex, k_create_concurrency),
      m_download_slots(ex, config.download.max_concurrent),
      m_rng(std::random_device{}())
  {
    if (config.api_key.empty()) {
      m_paused = "no API key configured (provider.api_key_file, $CREDENTIALS_DIRECTORY/aimlapi_key or AIMLAPI_KEY)";
      m_pause_is_account = true;
    }
  }

  static provider::ProviderClient::Options provider_options(const common::Config& c)
  {
    return {c.provider.base_url, c.api_key.value(), seconds(c.provider.request_timeout_s)};
  }

  // --- start, stop, control -------------------------------------------------

  asio::awaitable<void> start()
  {
    auto jobs = m_store.active_jobs();
    std::size_t resumed = 0;
    for (auto& job : jobs) {
      const bool started = co_await resume_job(std::move(job), "klingd stopped while the create call was in flight");
      resumed += started ? 1 : 0;
    }
    log::info("engine.started", {{"resumed", resumed}, {"active", jobs.size()}});
    asio::co_spawn(m_ex, dispatcher(), log::coroutine_failure_handler("engine.dispatcher"));
    asio::co_spawn(m_ex, poll_flusher(), log::coroutine_failure_handler("engine.poll_flusher"));
    asio::co_spawn(m_ex, reconciler(), log::coroutine_failure_handler("engine.reconciler"));
    asio::co_spawn(m_ex, cost_collector(), log::coroutine_failure_handler("engine.cost_collector"));
    for (const auto& job : m_store.completed_without_cost(format_rfc3339(now_utc() - std::chrono::hours(24)))) {
      add_cost_lookup(job);
    }
  }

  asio::awaitable<void> shutdown(Millis grace)
  {
    m_stopping = true;
    m_dispatch_wake.notify();
    m_reconcile_wake.notify();
    // Polls and downloads stop at once (both resume after restart); a create
    // in flight is given the grace period, since cutting it would make it ambiguous.
    for (auto& [id, a] : m_actors) {
      if (a->phase != Actor::Phase::creating) {
        a->cancel.emit(asio::cancellation_type::terminal);
      }
    }
    const auto deadline = Clock::now() + grace;
    asio::steady_timer t(m_ex);
    while (!m_actors.empty() && Clock::now() < deadline) {
      t.expires_after(Millis(20));
      co_await t.async_wait(asio::use_awaitable);
    }
    if (!m_actors.empty()) {
      log::warning("engine.shutdown_grace_expired", {{"still_running", m_actors.size()}});
    }
    co_await flush_polls();
    m_http.close_all();
    log::info("engine.stopped");
  }

  void pause(std::string reason, bool account)
  {
    if (!m_paused || *m_paused != reason) {
      log::warning("engine.paused", {{"reason", reason}});
    }
    m_paused = std::move(reason);
    m_pause_is_account = account;
    m_metrics.paused().Set(1);
  }

  void resume()
  {
    if (m_config.api_key.empty()) {
      pause("no API key configured (provider.api_key_file, $CREDENTIALS_DIRECTORY/aimlapi_key or AIMLAPI_KEY)", true);
      return;
    }
    if (m_paused) {
      log::info("engine.resumed", {{"was", *m_paused}});
    }
    m_paused.reset();
    m_pause_is_account = false;
    m_metrics.paused().Set(0);
    m_dispatch_wake.notify();
  }

  void reconfigure(const common::Config& c)
  {
    m_config = c;
    m_provider.set_options(provider_options(c));
    m_rate.set_rate(c.provider.creates_per_minute);
    m_download_slots.set_permits(c.download.max_concurrent);
    // Budgets may have been raised: look at every blocked scope again.
    m_blocked_batches.clear();
    m_budget_block.reset();
    // SPEC §3.4: a reload resumes dispatch paused for an account problem.
    if (m_paused && m_pause_is_account) {
      resume();
    }
    m_dispatch_wake.notify();
  }

  EngineStatus status() const
  {
    EngineStatus s;
    for (const auto& [id, a] : m_actors) {
      switch (a->phase) {
      case Actor::Phase::creating: ++s.submitting; break;
      case Actor::Phase::polling: ++s.generating; break;
      case Actor::Phase::downloading: ++s.downloading; break;
      case Actor::Phase::idle: break;
      }
    }
    s.in_flight = in_flight_total();
    s.reconciling = static_cast<int>(m_reconcile.size());
    s.paused = m_paused ? m_paused : m_budget_block;
    s.budget_blocked_batches.assign(m_blocked_batches.begin(), m_blocked_batches.end());
    s.max_usd_per_day = m_config.budget.max_usd_per_day;
    s.max_in_flight = m_config.provider.max_in_flight;
    s.creates_per_minute = m_config.provider.creates_per_minute;
    s.download_max_concurrent = m_config.download.max_concurrent;
    return s;
  }

  asio::awaitable<Result<Job>> cancel(std::string id)
  {
    for (int tries = 0; tries < 3; ++tries) {
      auto job = m_store.get(id);
      if (!job) {
        co_return make_error("not_found", fmt::format("no job {}", id));
      }
      if (common::is_terminal(job->state)) {
        co_return make_error("conflict", fmt::format("job {} is already {}", id, common::to_string(job->state)));
      }
      bool moved = false;
      auto* actor = find_actor(id);
      const std::int64_t polls = actor ? std::exchange(actor->unflushed_polls, 0) : 0;
      co_await m_committer.run([&](JobStore& s) {
        JobUpdate u;
        u.step = std::optional<std::string>{};
        moved = s.transition(id, job->state, JobState::canceled, u);
        if (polls) {
          s.add_polls(id, polls);
        }
      });
      if (!moved) {
        continue; // the job moved on meanwhile: look again
      }
      log::info("job.canceled", {{"job", id}, {"was", common::to_string(job->state)}});
      if ((actor = find_actor(id))) {
        actor->user_canceled = true;
        // A create in flight is not cut: its answer is still recorded (we may have paid for it).
        if (actor->phase != Actor::Phase::creating) {
          actor->cancel.emit(asio::cancellation_type::terminal);
        }
      }
      m_dispatch_wake.notify();
      co_return *m_store.get(id);
    }
    co_return make_error("conflict", fmt::format("job {} keeps changing state; try again", id));
  }

  asio::awaitable<Result<Job>> retry(std::string id)
  {
    auto job = m_store.get(id);
    if (!job) {
      co_return make_error("not_found", fmt::format("no job {}", id));
    }
    if (job->state != JobState::failed && job->state != JobState::canceled) {
      co_return make_error("conflict", fmt::format("job {} is {}; only failed or canceled jobs can be retried", id,
                                                   common::to_string(job->state)));
    }
    if (find_actor(id)) {
      co_return make_error("conflict", fmt::format("job {} is still winding down; try again in a moment", id));
    }
    const bool resume_polling = job->generation_id && !job->provider_failed;
    bool moved = false;
    co_await m_committer.run([&](JobStore& s) {
      JobUpdate u;
      u.error = std::optional<JobError>{};
      u.step = std::optional<std::string>{};
      u.step_failures = 0;
      if (resume_polling) {
        // Never create again for a generation we hold: poll it (SPEC §4.1 retry).
        u.accepted_at = now_text(); // a fresh timeout window
        u.clear_video = true;
        moved = s.transition(id, job->state, JobState::generating, u);
      } else {
        u.clear_generation = true;
        u.clear_video = true;
        moved = s.transition(id, job->state, JobState::queued, u);
      }
    });
    if (!moved) {
      co_return make_error("conflict", fmt::format("job {} changed state meanwhile; try again", id));
    }
    auto fresh = *m_store.get(id);
    log::info("job.retried", {{"job", id}, {"resume_polling", resume_polling}});
    if (resume_polling) {
      spawn_actor(fresh, false);
    } else {
      m_not_before.erase(id);
      m_dispatch_wake.notify();
    }
    co_return fresh;
  }

  void wake_dispatcher() { m_dispatch_wake.notify(); }

private:
  // --- dispatcher ----------------------------------------------------------

  // Runs one of the engine's loops, a step at a time, until the engine stops. A step that
  // throws (the store could not commit: disk full, I/O error) is logged and the loop goes on
  // after a pause growing from 1 s to 30 s, instead of ending for good.
  asio::awaitable<void> keep_running(const char* name, asio::awaitable<void> (Impl::*step)())
  {
    int failures = 0;
    while (!m_stopping) {
      bool failed = false;
      try {
        co_await (this->*step)();
      } catch (const std::exception& e) {
        log::error("engine.loop_failed", {{"loop", name}, {"error", e.what()}, {"failures", failures + 1}});
        failed = true;
      }
      if (!failed) {
        failures = 0;
        continue;
      }
      co_await sleep(std::min(Millis(1000) * (1 << std::min(failures, 5)), Millis(30000)));
      ++failures;
    }
  }

  asio::awaitable<void> dispatcher()
  {
    co_await keep_running("dispatcher", &Impl::dispatch_step);
  }

  asio::awaitable<void> dispatch_step()
  {
    if (m_paused || in_flight_total() >= m_config.provider.max_in_flight) {
      co_await m_dispatch_wake.wait(std::chrono::seconds(5));
      co_return;
    }
    const auto now = Clock::now();
    const auto slot = m_rate.next_slot(now);
    if (slot > now) {
      co_await m_dispatch_wake.wait(slot - now);
      co_return;
    }
    if (dispatch_round(now) == 0) {
      co_await m_dispatch_wake.wait(next_backoff_wait(now));
    }
  }

  // Starts as many queued jobs as the limits allow now, best first, from one
  // query. Jobs claimed but not yet `submitting` in the store, and jobs backing
  // off, are skipped; the query reads only as many extra rows as there are of those.
  std::size_t dispatch_round(Clock::time_point now)
  {
    for (auto it = m_not_before.begin(); it != m_not_before.end();) {
      it = it->second <= now ? m_not_before.erase(it) : std::next(it);
    }
    const auto room = static_cast<std::size_t>(m_config.provider.max_in_flight - in_flight_total());
    const std::vector<std::string> blocked(m_blocked_batches.begin(), m_blocked_batches.end());
    std::optional<double> today;                            // spend counted against the daily budget
    std::unordered_map<std::string, double> batch_spent;    // per batch, this round
    m_budget_block.reset();
    std::size_t started = 0;
    for (auto& job : m_store.next_queued(room + m_claimed + m_not_before.size(), blocked)) {
      if (started == room || m_paused || m_rate.next_slot(now) > now) {
        break;
      }
      if (m_actors.contains(job.id) || m_not_before.contains(job.id)) {
        continue;
      }
      // Budgets (issue 10): what is spent or in flight plus this job's expected
      // cost must stay within them; otherwise dispatch of that scope waits. Nothing fails.
      const double expected = expected_cost(job).value_or(0);
      if (m_config.budget.max_usd_per_day > 0) {
        if (!today) {
          today = m_store.spend_since(format_day(now_utc()) + "T00:00:00.000Z") + m_claimed_usd;
        }
        if (*today + expected > m_config.budget.max_usd_per_day) {
          m_budget_block = fmt::format("daily budget: ${:.2f} spent or in flight today + ${:.2f} for the next job would "
                                       "pass budget.max_usd_per_day ${:.2f}; dispatch resumes at 00:00 UTC or when the "
                                       "budget is raised (reload)",
                                       *today, expected, m_config.budget.max_usd_per_day);
          break;
        }
      }
      if (auto budget = m_store.batch_budget(job.batch)) {
        auto it = batch_spent.find(job.batch);
        if (it == batch_spent.end()) {
          const auto claimed = m_claimed_usd_by_batch.find(job.batch);
          it = batch_spent
                 .emplace(job.batch, m_store.batch_spend(job.batch)
                                       + (claimed == m_claimed_usd_by_batch.end() ? 0.0 : claimed->second))
                 .first;
        }
        if (it->second + expected > *budget) {
          m_blocked_batches.insert(job.batch);
          log::warning("engine.batch_budget_reached", {{"batch", job.batch}, {"spent_usd", it->second},
                                                      {"next_usd", expected}, {"max_usd", *budget}});
          continue;
        }
        it->second += expected;
      }
      if (today) {
        *today += expected;
      }
      m_rate.record(now);
      const std::string id = job.id;
      const std::string batch = job.batch;
      spawn_actor(std::move(job), false);
      if (auto* a = find_actor(id)) {
        a->expected_cost = expected;
        a->batch = batch;
        m_claimed_usd += expected;
        m_claimed_usd_by_batch[batch] += expected;
      }
      ++started;
    }
    if (m_budget_block) {
      log_budget_block();
    }
    return started;
  }

  void log_budget_block()
  {
    if (m_budget_block != m_logged_budget_block) {
      log::warning("engine.budget_reached", {{"reason", *m_budget_block}});
      m_logged_budget_block = m_budget_block;
    }
  }

  // The median recorded cost of recent jobs of the same model and duration,
  // else the catalog's price for the request; nullopt when neither is known.
  std::optional<double> expected_cost(const Job& job)
  {
    boost::system::error_code ec;
    auto request = boost::json::parse(job.request, ec);
    if (ec || !request.is_object()) {
      return std::nullopt;
    }
    const auto* d = request.as_object().if_contains("duration");
    auto costs = m_store.recent_costs(job.model, d ? boost::json::serialize(*d) : std::string(), 21);
    if (costs.size() >= 3) {
      std::nth_element(costs.begin(), costs.begin() + static_cast<std::ptrdiff_t>(costs.size() / 2), costs.end());
      return costs[costs.size() / 2];
    }
    return m_catalog.estimate_usd(request.as_object());
  }

  Clock::duration next_backoff_wait(Clock::time_point now) const
  {
    Clock::duration wait = std::chrono::seconds(5);
    for (const auto& [id, t] : m_not_before) {
      wait = std::min(wait, t - now);
    }
    return std::max(wait, Clock::duration(Millis(1)));
  }

  // --- actors ---------------------------------------------------------------

  Actor* find_actor(const std::string& id)
  {
    auto it = m_actors.find(id);
    return it == m_actors.end() ? nullptr : it->second.get();
  }

  void set_in_flight(Actor& a, bool on)
  {
    if (a.in_flight != on) {
      a.in_flight = on;
      m_in_flight += on ? 1 : -1;
      m_metrics.in_flight().Set(m_in_flight);
      if (!on) {
        m_dispatch_wake.notify();
      }
    }
  }

  void unclaim(Actor& a)
  {
    if (a.claimed) {
      a.claimed = false;
      --m_claimed;
      if (!a.batch.empty()) {
        // From now on the store counts it (`submitting` with its estimate), or it never left.
        m_claimed_usd -= a.expected_cost;
        if (auto it = m_claimed_usd_by_batch.find(a.batch); it != m_claimed_usd_by_batch.end()) {
          it->second -= a.expected_cost;
          if (it->second <= 1e-9) {
            m_claimed_usd_by_batch.erase(it);
          }
        }
      }
      if (m_claimed == 0) {
        m_claimed_usd = 0; // no rounding drift
        m_claimed_usd_by_batch.clear();
      }
    }
  }

  void spawn_actor(Job job, bool resumed)
  {
    auto actor = std::make_unique<Actor>();
    actor->id = job.id;
    actor->spread_first_poll = resumed;
    if (job.state == JobState::queued) {
      actor->claimed = true;
      ++m_claimed;
    }
    if (job.state == JobState::queued || job.state == JobState::generating) {
      // Counted from the moment it is picked, so the dispatcher never overshoots.
      actor->in_flight = true;
      ++m_in_flight;
      m_metrics.in_flight().Set(m_in_flight);
    }
    Actor& a = *actor;
    m_actors.emplace(job.id, std::move(actor));
    const std::string id = job.id;
    asio::co_spawn(m_ex, run_actor(std::move(job)),
                   asio::bind_cancellation_slot(a.cancel.slot(), [this, id](std::exception_ptr e) {
                     actor_finished(id, e);
                   }));
  }

  void actor_finished(const std::string& id, std::exception_ptr e)
  {
    bool failed = false;
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const boost::system::system_error& ex) {
        if (!is_aborted(ex)) {
          log::error("job.actor_failed", {{"job", id}, {"error", ex.what()}});
          failed = true;
        }
      } catch (const std::exception& ex) {
        log::error("job.actor_failed", {{"job", id}, {"error", ex.what()}});
        failed = true;
      }
    } else {
      m_recover_failures.erase(id);
    }
    auto it = m_actors.find(id);
    if (it == m_actors.end()) {
      return;
    }
    Actor& a = *it->second;
    if (a.unflushed_polls) {
      m_orphan_polls[id] += a.unflushed_polls;
    }
    unclaim(a);
    set_in_flight(a, false);
    if (a.user_canceled && !m_stopping) {
      // A canceled download leaves no partial file behind.
      if (auto job = m_store.get(id); job && job->state == JobState::canceled) {
        std::error_code ec;
        fs::remove(part_path(*job), ec);
      }
    }
    m_actors.erase(it);
    if (failed && !m_stopping) {
      schedule_recovery(id);
    }
    m_dispatch_wake.notify();
  }

  // --- recovery from store failures ------------------------------------------
  //
  // A job whose actor (or reconciliation step) ended with an error — in practice the store
  // could not commit: disk full, I/O error — is left as the store has it, which is exactly
  // what a crash at that moment would leave, and is picked up again the way a restart picks
  // it up (settle_interrupted_create for `submitting`: a create whose answer could not be
  // recorded is reconciled, never blindly re-sent). The pause grows from 1 s to 60 s while
  // it keeps failing; a queued job backs off for as long.

  void schedule_recovery(const std::string& id)
  {
    auto& failures = m_recover_failures[id];
    const auto delay = std::min(Millis(1000) * (1 << std::min(failures, 6)), Millis(60000));
    ++failures;
    m_not_before[id] = Clock::now() + delay;
    log::warning("job.recovery_scheduled", {{"job", id}, {"in_ms", delay.count()}, {"failures", failures}});
    asio::co_spawn(m_ex, recover(id, delay), log::coroutine_failure_handler("engine.recover"));
  }

  asio::awaitable<void> recover(std::string id, Millis delay)
  {
    asio::steady_timer t(m_ex, delay);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (m_stopping || m_actors.contains(id) || m_reconcile.contains(id)) {
      co_return;
    }
    bool failed = false;
    try {
      auto job = m_store.get(id);
      bool actor_started = false;
      if (job) {
        log::info("job.recovering", {{"job", id}, {"state", common::to_string(job->state)}});
        // Not inside `||`/`?:`: GCC 12 mishandles co_await in conditional expressions.
        actor_started = co_await resume_job(std::move(*job), "the outcome of the create call could not be recorded");
      }
      // A started actor clears the count when it ends without an error; otherwise the job is
      // done, back in the queue (the dispatcher takes it once its back-off passed) or settled.
      if (!actor_started) {
        m_recover_failures.erase(id);
        m_dispatch_wake.notify();
      }
    } catch (const std::exception& e) {
      log::error("job.recovery_failed", {{"job", id}, {"error", e.what()}});
      failed = true;
    }
    if (failed && !m_stopping) {
      schedule_recovery(id);
    }
  }

  // Picks a job up as the store has it, at start or after a failed step: a queued (or
  // terminal) job is left to the dispatcher, a `submitting` one may have had its create sent
  // (SPEC §3.2: settled, `reason` says why it is in doubt), any other gets an actor. True when
  // an actor was started.
  asio::awaitable<bool> resume_job(Job job, std::string reason)
  {
    if (job.state == JobState::queued || common::is_terminal(job.state)) {
      co_return false;
    }
    if (job.state == JobState::submitting) {
      co_await settle_interrupted_create(job, std::move(reason));
      co_return false;
    }
    spawn_actor(std::move(job), /*resumed=*/true);
    co_return true;
  }

  // Runs one job's step outside its actor (reconciliation); a failure hands the job to
  // recovery instead of ending the loop that ran it.
  asio::awaitable<void> guarded(std::string id, asio::awaitable<void> step)
  {
    bool failed = false;
    try {
      co_await std::move(step);
    } catch (const std::exception& e) {
      log::error("job.step_failed", {{"job", id}, {"error", e.what()}});
      failed = true;
    }
    if (failed && !m_stopping) {
      schedule_recovery(id);
    }
  }

  // Drives one job until it is terminal, back in the queue, or the engine stops.
  asio::awaitable<void> run_actor(Job job)
  {
    for (;;) {
      Actor* a = find_actor(job.id);
      if (!a || m_stopping) {
        co_return;
      }
      switch (job.state) {
      case JobState::queued:
        co_await do_create(job, *a);
        break;
      case JobState::generating:
        co_await do_poll(job, *a);
        break;
      case JobState::downloading:
        co_await do_download(job, *a);
        break;
      default:
        co_return;
      }
      auto fresh = m_store.get(job.id);
      if (!fresh || fresh->state == job.state || common::is_terminal(fresh->state) || fresh->state == JobState::queued
          || fresh->state == JobState::submitting) {
        co_return;
      }
      job = std::move(*fresh);
    }
  }

  // --- create ---------------------------------------------------------------

  asio::awaitable<void> do_create(const Job& job, Actor& a)
  {
    co_await m_create_slots.acquire();
    AsyncSemaphore::Permit permit(m_create_slots);
    if (m_stopping || m_paused || a.user_canceled) {
      co_return; // still `queued` in the store: nothing to undo
    }
    a.phase = Actor::Phase::creating;
    std::string crid;
    int attempt = 0;
    co_await m_committer.run([&](JobStore& s) {
      JobUpdate u;
      u.step = std::optional<std::string>{};
      u.error = std::optional<JobError>{};
      u.cost_estimate_usd = a.expected_cost;
      if (!s.transition(job.id, JobState::queued, JobState::submitting, u)) {
        return; // canceled meanwhile
      }
      const auto current = s.get(job.id);
      crid = fmt::format("{}.{}", job.id, current->attempts + 1);
      attempt = s.begin_attempt(job.id, crid);
    });
    unclaim(a);
    if (attempt == 0) {
      co_return;
    }
    // Durable now: the job is `submitting` with a pending attempt row.
    if (m_stopping || m_paused) {
      // Not sent: put it back rather than leave an attempt that looks ambiguous.
      co_await finish_create(job, attempt, "not_sent", nullptr, [&](JobStore& s) {
        return s.transition(job.id, JobState::submitting, JobState::queued);
      });
      co_return;
    }
    const auto* model = m_catalog.find(job.model);
    const auto family = model ? model->family : m_catalog.family_for(job.model);
    log::debug("job.create", {{"job", job.id}, {"attempt", attempt}, {"model", job.model}});
    auto r = co_await m_provider.create(family, job.request, crid);
    m_metrics.creates(r.outcome.cls == CallClass::ok ? "accepted" : provider::to_string(r.outcome.cls)).Increment();
    co_await handle_create_result(job, a, attempt, std::move(r));
  }

  // Records the attempt's outcome and the job's next state in one commit.
  template <typename F>
  asio::awaitable<bool> finish_create(const Job& job, int attempt, std::string outcome,
                                      const provider::CreateResult* r, F&& next_state)
  {
    bool moved = false;
    co_await m_committer.run([&](JobStore& s) {
      store::Attempt at;
      at.job_id = job.id;
      at.attempt = attempt;
      at.outcome = outcome;
      if (r) {
        at.http_status = r->outcome.http_status;
        at.generation_id = r->generation_id;
        at.inference_id = r->inference_id;
        at.credits = r->credits;
        at.usd = r->usd;
      }
      s.finish_attempt(at);
      moved = next_state(s);
    });
    co_return moved;
  }

  asio::awaitable<void> handle_create_result(const Job& job, Actor& a, int attempt, provider::CreateResult r)
  {
    const auto& o = r.outcome;
    switch (o.cls) {
    case CallClass::ok: {
      JobUpdate u;
      u.generation_id = *r.generation_id;
      u.provider_status = r.provider_status.value_or("queued");
      u.accepted_at = now_text();
      u.step_failures = 0;
      if (r.usd) u.cost_usd = *r.usd;
      if (r.credits) u.cost_credits = *r.credits;
      bool to_generating = false;
      co_await finish_create(job, attempt, "accepted", &r, [&](JobStore& s) {
        to_generating = s.transition(job.id, JobState::submitting, JobState::generating, u);
        if (!to_generating) {
          // Canceled while the create was in flight: keep what we paid for, so
          // a retry polls this generation instead of creating another.
          s.update(job.id, JobState::canceled, u);
        }
        return to_generating;
      });
      log::info("job.accepted", {{"job", job.id}, {"attempt", attempt}, {"generation", *r.generation_id},
                                 {"canceled", !to_generating}});
      co_return;
    }
    case CallClass::safe_retry: {
      m_metrics.provider_errors(o.http_status == 429 ? "http_429" : o.http_status ? "http_5xx" : "network").Increment();
      const int failures = job.step_failures + 1;
      if (o.http_status == 429) {
        // A 429 slows every create to this host for a while (SPEC §3.4).
        m_rate.hold_until(Clock::now() + o.retry_after.value_or(seconds(m_config.retry.base_s)));
      }
      if (failures >= m_config.retry.max_attempts) {
        co_await fail_create(job, attempt, "not_sent", &r, common::ErrorCode::retries_exhausted,
                             fmt::format("create failed {} times; last: {}", failures, o.message));
        co_return;
      }
      const auto delay = retry_delay(m_config.retry, failures, o.retry_after, m_rng);
      co_await finish_create(job, attempt, o.http_status ? "transient" : "not_sent", &r, [&](JobStore& s) {
        JobUpdate u;
        u.step_failures = failures;
        const bool moved = s.transition(job.id, JobState::submitting, JobState::queued, u);
        if (moved) {
          s.update(job.id, JobState::queued, {}, std::string("retry"),
                   JobError{"retry", fmt::format("create not accepted ({}); retry {} in {:.1f}s", o.message, failures,
                                                 std::chrono::duration<double>(delay).count()),
                            o.http_status});
        }
        return moved;
      });
      m_not_before[job.id] = Clock::now() + delay;
      log::info("job.create_retry", {{"job", job.id}, {"failures", failures}, {"delay_ms", delay.count()},
                                     {"reason", o.message}});
      co_return;
    }
    case CallClass::account: {
      m_metrics.provider_errors("account").Increment();
      // Not the job's fault: put it back untouched and stop dispatching.
      co_await finish_create(job, attempt, "account", &r, [&](JobStore& s) {
        return s.transition(job.id, JobState::submitting, JobState::queued);
      });
      pause(fmt::format("provider refused the API key or account (HTTP {}): {}", o.http_status.value_or(0), o.message),
            true);
      co_return;
    }
    case CallClass::job_error:
      m_metrics.provider_errors("http_4xx").Increment();
      co_await fail_create(job, attempt, "rejected", &r, common::ErrorCode::invalid_request,
                           fmt::format("the provider refused the request: {}", o.message));
      co_return;
    case CallClass::ambiguous:
    case CallClass::transient:
      m_metrics.provider_errors(o.http_status ? "http_5xx" : "network").Increment();
      co_await handle_ambiguous(job, attempt, &r, o.message);
      co_return;
    }
    (void)a;
  }

  asio::awaitable<void> fail_create(const Job& job, int attempt, std::string outcome, const provider::CreateResult* r,
                                    common::ErrorCode code, std::string message)
  {
    JobUpdate u;
    u.error = make_job_error(code, message, r ? r->outcome.http_status : std::nullopt);
    co_await finish_create(job, attempt, std::move(outcome), r, [&](JobStore& s) {
      return s.transition(job.id, JobState::submitting, JobState::failed, u);
    });
    log::warning("job.failed", {{"job", job.id}, {"code", common::to_string(code)}, {"message", message}});
  }

  // SPEC §3.2: the create may have been billed and we cannot tell. First ask
  // the provider's request log (reconciliation); only what stays unknown for
  // reconcile.window_s follows on_ambiguous_create.
  asio::awaitable<void> handle_ambiguous(const Job& job, int attempt, const provider::CreateResult* r, std::string why)
  {
    if (m_config.reconcile.window_s <= 0) {
      co_await apply_ambiguous_policy(job, attempt, r, why);
      co_return;
    }
    co_await finish_create(job, attempt, "ambiguous", r, [&](JobStore& s) {
      JobUpdate u;
      u.step = std::optional<std::string>("reconciling");
      return s.update(job.id, JobState::submitting, u, std::string("reconciling"),
                      JobError{"ambiguous_create", why, r ? r->outcome.http_status : std::nullopt});
    });
    log::warning("job.reconciling", {{"job", job.id}, {"attempt", attempt}, {"reason", why}});
    add_reconcile(job, attempt, now_utc());
  }

  asio::awaitable<void> apply_ambiguous_policy(const Job& job, int attempt, const provider::CreateResult* r, std::string why)
  {
    if (m_config.on_ambiguous_create == "retry") {
      const int failures = job.step_failures + 1;
      if (failures >= m_config.retry.max_attempts) {
        co_await fail_create(job, attempt, "ambiguous", r, common::ErrorCode::retries_exhausted,
                             fmt::format("create outcome unknown {} times; last: {}", failures, why));
        co_return;
      }
      co_await finish_create(job, attempt, "ambiguous", r, [&](JobStore& s) {
        JobUpdate u;
        u.step_failures = failures;
        u.step = std::optional<std::string>{};
        return s.transition(job.id, JobState::submitting, JobState::queued, u);
      });
      m_not_before[job.id] = Clock::now() + retry_delay(m_config.retry, failures, std::nullopt, m_rng);
      log::warning("job.create_ambiguous_resend", {{"job", job.id}, {"attempt", attempt}, {"reason", why}});
      m_dispatch_wake.notify();
      co_return;
    }
    co_await fail_create(job, attempt, "ambiguous", r, common::ErrorCode::ambiguous_create,
                         fmt::format("the create call's outcome is unknown ({}); it was not sent again so this video "
                                     "is never paid twice — `klingctl retry {}` sends it again",
                                     why, job.id));
  }

  // A job found `submitting` at start: its create may or may not have gone out.
  asio::awaitable<void> settle_interrupted_create(const Job& job, std::string reason)
  {
    auto attempts = m_store.attempts(job.id);
    const store::Attempt* last = attempts.empty() ? nullptr : &attempts.back();
    if (last && last->outcome == "ambiguous" && job.step == "reconciling" && m_config.reconcile.window_s > 0) {
      // Already being reconciled before the restart: go on where it was.
      add_reconcile(job, last->attempt, parse_rfc3339(last->started_at).value_or(now_utc()));
      co_return;
    }
    if (!last || (last->outcome != "pending" && last->outcome != "ambiguous")) {
      // No create was in flight: back to the queue.
      co_await m_committer.run([&](JobStore& s) {
        JobUpdate u;
        u.step = std::optional<std::string>{};
        s.transition(job.id, JobState::submitting, JobState::queued, u);
      });
      co_return;
    }
    const auto started = parse_rfc3339(last->started_at).value_or(now_utc());
    if (m_config.reconcile.window_s > 0) {
      co_await finish_create(job, last->attempt, "ambiguous", nullptr, [&](JobStore& s) {
        JobUpdate u;
        u.step = std::optional<std::string>("reconciling");
        return s.update(job.id, JobState::submitting, u, std::string("reconciling"),
                        JobError{"ambiguous_create", reason, std::nullopt});
      });
      add_reconcile(job, last->attempt, started);
      co_return;
    }
    co_await apply_ambiguous_policy(job, last->attempt, nullptr, reason);
  }

  // --- reconciliation through GET /v2/logs ----------------------------------

  struct Pending
  {
    std::string job_id;
    int attempt = 0;
    std::string client_request_id;
    std::string model;
    SysTime started;            // when the attempt was sent (wall clock: survives restarts)
    Clock::time_point next_check;
    int checks = 0;
  };

  void add_reconcile(const Job& job, int attempt, SysTime started)
  {
    Pending p;
    p.job_id = job.id;
    p.attempt = attempt;
    p.client_request_id = fmt::format("{}.{}", job.id, attempt);
    p.model = job.model;
    p.started = started;
    p.next_check = Clock::now() + reconcile_delay(0);
    m_reconcile[job.id] = std::move(p);
    m_reconcile_wake.notify();
  }

  // The provider's log is fed by an analytics pipeline: a row may appear some
  // time after the request. Ask soon, then back off (capped at 60 s, and at a
  // tenth of the window so short windows still get several looks).
  Clock::duration reconcile_delay(int checks) const
  {
    const double cap = std::min(60.0, std::max(0.05, m_config.reconcile.window_s / 10));
    const double base = std::min(cap, 1.0);
    return seconds(std::min(cap, base * std::pow(2.0, checks)));
  }

  // --- cost of jobs whose create answer carried no cost headers -------------
  // The provider records a video's charge once it completed; its request-log
  // row then has the cost. Looked up in batches like reconciliation.

  struct CostLookup
  {
    std::string job_id;
    std::string generation_id;
    std::string model;
    SysTime accepted;
    Clock::time_point next_check;
    int checks = 0;
  };

  void add_cost_lookup(const Job& job)
  {
    if (job.cost_usd || !job.generation_id) {
      return;
    }
    CostLookup c;
    c.job_id = job.id;
    c.generation_id = *job.generation_id;
    c.model = job.model;
    c.accepted = job.accepted_at ? parse_rfc3339(*job.accepted_at).value_or(now_utc()) : now_utc();
    c.next_check = Clock::now() + reconcile_delay(0);
    m_cost_lookups[job.id] = std::move(c);
    m_reconcile_wake.notify();
  }

  // The ids in `entries` whose next_check has come; `next` is set to the earliest other
  // next_check, at most 5 s away.
  template <typename Map>
  static std::vector<std::string> due_now(const Map& entries, Clock::time_point now, Clock::time_point& next)
  {
    std::vector<std::string> due;
    next = now + std::chrono::seconds(5);
    for (const auto& [id, entry] : entries) {
      if (entry.next_check <= now) {
        due.push_back(id);
      } else {
        next = std::min(next, entry.next_check);
      }
    }
    return due;
  }

  asio::awaitable<void> cost_collector()
  {
    co_await keep_running("cost_collector", &Impl::cost_step);
  }

  asio::awaitable<void> cost_step()
  {
    constexpr int k_give_up_after_checks = 20; // ~15 min with the capped backoff
    const auto now = Clock::now();
    Clock::time_point next;
    std::vector<std::string> due = due_now(m_cost_lookups, now, next);
    if (due.empty()) {
      co_await m_reconcile_wake.wait(next - now);
      co_return;
    }
    std::unordered_map<std::string, std::string> by_generation; // generation id → job id
    std::vector<std::string> models;
    SysTime earliest = now_utc();
    for (const auto& id : due) {
      const auto& c = m_cost_lookups.at(id);
      by_generation[c.generation_id] = id;
      if (std::find(models.begin(), models.end(), c.model) == models.end()) {
        models.push_back(c.model);
      }
      earliest = std::min(earliest, c.accepted);
    }
    const std::string start = format_rfc3339(earliest - std::chrono::minutes(5));
    const std::string end = format_rfc3339(now_utc() + std::chrono::minutes(5));
    std::vector<std::pair<std::string, provider::LogRow>> found;
    for (int page = 0; page < 20 && found.size() < by_generation.size(); ++page) {
      const auto slot = m_logs_rate.next_slot(Clock::now());
      if (slot > Clock::now()) {
        co_await sleep(slot - Clock::now());
      }
      m_logs_rate.record(Clock::now());
      auto r = co_await m_provider.logs(start, end, models, 100, page * 100);
      if (r.outcome.cls != CallClass::ok) {
        break;
      }
      for (auto& row : r.rows) {
        if (row.inference_id && row.usd && by_generation.contains(*row.inference_id)) {
          found.emplace_back(by_generation.at(*row.inference_id), std::move(row));
        }
      }
      if (!r.has_more) {
        break;
      }
    }
    if (!found.empty()) {
      co_await m_committer.run([&](JobStore& s) {
        for (const auto& [id, row] : found) {
          JobUpdate u;
          u.cost_usd = *row.usd;
          if (row.credits) u.cost_credits = *row.credits;
          s.update(id, JobState::completed, u);
        }
      });
      for (const auto& [id, row] : found) {
        m_cost_lookups.erase(id);
        log::info("job.cost_recorded", {{"job", id}, {"usd", *row.usd}});
      }
    }
    for (const auto& id : due) {
      auto it = m_cost_lookups.find(id);
      if (it == m_cost_lookups.end()) {
        continue;
      }
      if (++it->second.checks >= k_give_up_after_checks) {
        log::warning("job.cost_unknown", {{"job", id}, {"generation", it->second.generation_id}});
        m_cost_lookups.erase(it);
      } else {
        it->second.next_check = Clock::now() + reconcile_delay(it->second.checks);
      }
    }
  }

  int in_flight_total() const { return m_in_flight + static_cast<int>(m_reconcile.size()); }

  asio::awaitable<void> reconciler()
  {
    co_await keep_running("reconciler", &Impl::reconcile_step);
  }

  asio::awaitable<void> reconcile_step()
  {
    const auto now = Clock::now();
    Clock::time_point next;
    std::vector<std::string> due = due_now(m_reconcile, now, next);
    if (due.empty()) {
      co_await m_reconcile_wake.wait(next - now);
      co_return;
    }
    co_await reconcile_round(std::move(due));
  }

  // One look at the log for every due attempt: few queries (all models at
  // once, paged), well under the provider's 200 requests per minute.
  asio::awaitable<void> reconcile_round(std::vector<std::string> due)
  {
    std::unordered_map<std::string, std::string> by_crid; // client request id → job id
    std::vector<std::string> models;
    SysTime earliest = now_utc();
    for (const auto& id : due) {
      const auto& p = m_reconcile.at(id);
      by_crid[p.client_request_id] = id;
      if (std::find(models.begin(), models.end(), p.model) == models.end()) {
        models.push_back(p.model);
      }
      earliest = std::min(earliest, p.started);
    }
    const std::string start = format_rfc3339(earliest - std::chrono::minutes(5));
    const std::string end = format_rfc3339(now_utc() + std::chrono::minutes(5));
    std::unordered_map<std::string, provider::LogRow> found;
    bool failed_query = false;
    constexpr int k_page = 100;
    constexpr int k_max_pages = 20;
    for (int page = 0; page < k_max_pages && found.size() < by_crid.size(); ++page) {
      const auto slot = m_logs_rate.next_slot(Clock::now());
      if (slot > Clock::now()) {
        co_await sleep(slot - Clock::now());
      }
      m_logs_rate.record(Clock::now());
      auto r = co_await m_provider.logs(start, end, models, k_page, page * k_page);
      if (r.outcome.cls != CallClass::ok) {
        if (r.outcome.http_status == 429) {
          m_logs_rate.hold_until(Clock::now() + r.outcome.retry_after.value_or(std::chrono::seconds(10)));
        }
        // 404 means no request log here: the window simply runs out.
        failed_query = r.outcome.http_status != 404;
        log::info("reconcile.logs_failed", {{"status", r.outcome.http_status.value_or(0)}, {"reason", r.outcome.message}});
        break;
      }
      for (auto& row : r.rows) {
        if (row.client_request_id && by_crid.contains(*row.client_request_id)
            && !found.contains(*row.client_request_id)) {
          found.emplace(*row.client_request_id, std::move(row));
        }
      }
      if (!r.has_more) {
        break;
      }
    }
    (void)failed_query;
    for (const auto& [crid, id] : by_crid) {
      auto it = m_reconcile.find(id);
      if (it == m_reconcile.end()) {
        continue;
      }
      Pending p = it->second;
      auto row = found.find(crid);
      if (row != found.end() && row->second.inference_id
          && (row->second.status == "succeeded" || row->second.status == "failed")) {
        // A row that names a generation means the create was accepted, whatever became of
        // the generation since (a `failed` row may be a generation that failed after it
        // was accepted): poll it and let its own status decide. Re-sending here could pay
        // a second time.
        m_reconcile.erase(it);
        co_await guarded(p.job_id, adopt_reconciled(p, row->second));
      } else if (row != found.end() && row->second.status == "failed") {
        m_reconcile.erase(it);
        co_await guarded(p.job_id, resend_reconciled(p));
      } else if (std::chrono::duration<double>(now_utc() - p.started).count() >= m_config.reconcile.window_s) {
        m_reconcile.erase(it);
        co_await guarded(p.job_id, expire_reconcile(p));
      } else {
        it->second.next_check = Clock::now() + reconcile_delay(++it->second.checks);
      }
    }
    m_dispatch_wake.notify();
  }

  asio::awaitable<void> expire_reconcile(const Pending& p)
  {
    auto job = m_store.get(p.job_id);
    if (job && job->state == JobState::submitting) {
      co_await apply_ambiguous_policy(*job, p.attempt, nullptr,
                                      fmt::format("no trace of the create in the provider's request log after {}s",
                                                  m_config.reconcile.window_s));
    }
  }

  asio::awaitable<void> adopt_reconciled(const Pending& p, const provider::LogRow& row)
  {
    JobUpdate u;
    u.generation_id = *row.inference_id;
    u.provider_status = "queued";
    u.accepted_at = now_text();
    u.step = std::optional<std::string>{};
    u.error = std::optional<JobError>{};
    u.step_failures = 0;
    if (row.usd && *row.usd > 0) u.cost_usd = *row.usd;
    if (row.credits && *row.credits > 0) u.cost_credits = *row.credits;
    bool moved = false;
    co_await m_committer.run([&](JobStore& s) {
      store::Attempt at;
      at.job_id = p.job_id;
      at.attempt = p.attempt;
      at.outcome = row.status == "succeeded" ? "reconciled_succeeded" : "reconciled_accepted";
      at.generation_id = row.inference_id;
      at.inference_id = row.inference_id;
      s.finish_attempt(at);
      moved = s.transition(p.job_id, JobState::submitting, JobState::generating, u);
      if (!moved) {
        // Canceled meanwhile: keep the generation we paid for, for a retry.
        u.step.reset();
        u.error.reset();
        s.update(p.job_id, JobState::canceled, u);
      }
    });
    log::info("job.reconciled", {{"job", p.job_id}, {"attempt", p.attempt}, {"outcome", "adopted"},
                                 {"row_status", row.status}, {"generation", *row.inference_id}});
    if (moved) {
      if (auto job = m_store.get(p.job_id)) {
        spawn_actor(std::move(*job), false);
      }
    }
  }

  asio::awaitable<void> resend_reconciled(const Pending& p)
  {
    // The provider logged the create as failed and named no generation: nothing was
    // accepted or billed, so it may be sent again.
    auto job = m_store.get(p.job_id);
    if (!job || job->state != JobState::submitting) {
      co_return;
    }
    const int failures = job->step_failures + 1;
    if (failures >= m_config.retry.max_attempts) {
      co_await fail_create(*job, p.attempt, "reconciled_failed", nullptr, common::ErrorCode::retries_exhausted,
                           fmt::format("create failed {} times (last one logged as failed by the provider)", failures));
      co_return;
    }
    co_await finish_create(*job, p.attempt, "reconciled_failed", nullptr, [&](JobStore& s) {
      JobUpdate u;
      u.step = std::optional<std::string>{};
      u.error = std::optional<JobError>{};
      u.step_failures = failures;
      return s.transition(p.job_id, JobState::submitting, JobState::queued, u);
    });
    log::info("job.reconciled", {{"job", p.job_id}, {"attempt", p.attempt}, {"outcome", "failed_resend"}});
    m_dispatch_wake.notify();
  }

  // --- polling --------------------------------------------------------------

  asio::awaitable<void> sleep(Clock::duration d)
  {
    asio::steady_timer t(m_ex, d);
    co_await t.async_wait(asio::use_awaitable);
  }

  Clock::time_point generating_deadline(const Job& job, Clock::time_point& accepted_steady) const
  {
    // accepted_at is wall-clock; map it onto the steady clock once.
    const auto accepted = job.accepted_at ? parse_rfc3339(*job.accepted_at) : std::nullopt;
    const auto since = accepted ? std::chrono::duration_cast<Clock::duration>(now_utc() - *accepted) : Clock::duration{};
    accepted_steady = Clock::now() - std::max(since, Clock::duration{});
    return accepted_steady + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(job.timeout_s));
  }

  // What one poll leaves for the next: the waiting loop in do_poll keeps only this between
  // polls, so 10,000 generating jobs hold 10,000 small coroutine frames; poll_once's large frame
  // (the answer, the updates it commits) exists only while a poll is out.
  struct PollState
  {
    std::string last_status;
    bool logged_unknown = false;
    int failures = 0;
    int consecutive_404 = 0;
    Clock::time_point first_404{};
    bool done = false;          // the job left `generating` (or failed)
    Clock::duration delay{};    // until the next poll
  };

  asio::awaitable<void> do_poll(const Job& job, Actor& a)
  {
    a.phase = Actor::Phase::polling;
    set_in_flight(a, true);
    Clock::time_point accepted;
    const auto deadline = generating_deadline(job, accepted);
    PollSchedule schedule(m_config.poll);
    PollState ps;
    ps.delay = schedule.next(Clock::now() - accepted, m_rng);
    if (a.spread_first_poll) {
      // After a restart, spread the first polls over one interval, not all at once.
      std::uniform_int_distribution<std::int64_t> spread(0, std::max<std::int64_t>(1, seconds(m_config.poll.initial_s).count()));
      ps.delay = Millis(spread(m_rng));
      a.spread_first_poll = false;
    }
    ps.last_status = job.provider_status.value_or("");

    for (;;) {
      const auto now = Clock::now();
      if (now >= deadline) {
        co_await fail_generating(job, a, common::ErrorCode::timeout,
                                 fmt::format("the generation did not finish within timeout_s={}s of being accepted",
                                             job.timeout_s));
        co_return;
      }
      const auto due = now + std::min<Clock::duration>(ps.delay, deadline - now);
      co_await sleep(due - now);
      if (Clock::now() >= deadline) {
        continue;
      }
      co_await poll_once(job, a, due, schedule, accepted, ps);
      if (ps.done) {
        co_return;
      }
    }
  }

  // One status poll and what follows from its answer: ps.delay becomes the schedule's next
  // interval on a "still running" answer, a back-off on a failure.
  asio::awaitable<void> poll_once(const Job& job, Actor& a, Clock::time_point due, PollSchedule& schedule,
                                  Clock::time_point accepted, PollState& ps)
  {
    provider::PollResult r;
    {
      co_await m_poll_slots.acquire();
      AsyncSemaphore::Permit permit(m_poll_slots);
      // Lateness is measured when the poll can actually go out: loop lag and queueing
      // for a poll slot both make it late (metrics.hpp, poll_lateness).
      m_metrics.poll_lateness().Observe(std::chrono::duration<double>(Clock::now() - due).count());
      r = co_await m_provider.poll(m_catalog.family_for(job.model), *job.generation_id);
    }
    ++a.unflushed_polls;
    m_metrics.polls().Increment();
    const auto& o = r.outcome;
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
        co_await commit_with_polls(a, [&](JobStore& s) {
          s.transition(job.id, JobState::generating, JobState::downloading, u);
        });
        ps.done = true;
        co_return;
      }
      if (st.kind == provider::GenerationStatus::Kind::failed) {
        JobUpdate u;
        u.provider_status = st.status;
        u.provider_failed = true;
        u.error = make_job_error(common::ErrorCode::provider_failed, st.error_message);
        co_await commit_with_polls(a, [&](JobStore& s) {
          s.transition(job.id, JobState::generating, JobState::failed, u);
        });
        log::warning("job.failed", {{"job", job.id}, {"code", "provider_failed"}, {"message", st.error_message}});
        ps.done = true;
        co_return;
      }
      if (st.status != ps.last_status) {
        // A real change costs a (group) commit; an unchanged poll costs nothing.
        ps.last_status = st.status;
        JobUpdate u;
        u.provider_status = st.status;
        co_await commit_with_polls(a, [&](JobStore& s) { s.update(job.id, JobState::generating, u); });
      }
      ps.delay = schedule.next(Clock::now() - accepted, m_rng);
      co_return;
    }
    if (o.cls == CallClass::job_error) {
      // 404 (or another 4xx) for an id the provider gave us: lost only after
      // several in a row spread over minutes; the provider may lag.
      if (ps.consecutive_404++ == 0) {
        ps.first_404 = Clock::now();
      }
      if (ps.consecutive_404 >= k_lost_after_404s && Clock::now() - ps.first_404 >= k_lost_after) {
        co_await fail_generating(job, a, common::ErrorCode::provider_failed,
                                 fmt::format("the provider no longer knows generation {} ({} answers in a row: {})",
                                             *job.generation_id, ps.consecutive_404, o.message),
                                 o.http_status);
        ps.done = true;
        co_return;
      }
      ps.delay = std::max<Clock::duration>(retry_delay(m_config.retry, ps.consecutive_404, o.retry_after, m_rng),
                                           k_lost_after / k_lost_after_404s);
      co_return;
    }
    if (o.cls == CallClass::account) {
      m_metrics.provider_errors("account").Increment();
      pause(fmt::format("provider refused the API key or account (HTTP {}): {}", o.http_status.value_or(0), o.message),
            true);
    } else {
      m_metrics.provider_errors(o.http_status == 429 ? "http_429" : o.http_status >= 500 ? "http_5xx"
                                : o.http_status                                        ? "malformed"
                                                                                       : "network")
        .Increment();
    }
    // Polls are not attempts: a paid generation is never abandoned over
    // failed polls; they back off until the job's own deadline (SPEC §3.3).
    ++ps.failures;
    ps.delay = retry_delay(m_config.retry, ps.failures, o.retry_after, m_rng);
    log::info("job.poll_failed", {{"job", job.id}, {"failures", ps.failures}, {"delay_ms",
              std::chrono::duration_cast<Millis>(ps.delay).count()}, {"reason", o.message}});
  }

  asio::awaitable<void> fail_generating(const Job& job, Actor& a, common::ErrorCode code, std::string message,
                                        std::optional<int> http = std::nullopt)
  {
    JobUpdate u;
    u.error = make_job_error(code, message, http);
    co_await commit_with_polls(a, [&](JobStore& s) { s.transition(job.id, job.state, JobState::failed, u); });
    log::warning("job.failed", {{"job", job.id}, {"code", common::to_string(code)}, {"message", message}});
  }

  // Commits `fn` together with the polls this job counted since the last write.
  template <typename F>
  asio::awaitable<void> commit_with_polls(Actor& a, F&& fn)
  {
    const std::int64_t polls = std::exchange(a.unflushed_polls, 0);
    const std::string id = a.id;
    co_await m_committer.run([&](JobStore& s) {
      fn(s);
      if (polls) {
        s.add_polls(id, polls);
      }
    });
  }

  // Poll counters are flushed lazily (SPEC §3.1), a few seconds at a time.
  asio::awaitable<void> poll_flusher()
  {
    co_await keep_running("poll_flusher", &Impl::flush_step);
  }

  asio::awaitable<void> flush_step()
  {
    co_await sleep(std::chrono::seconds(5));
    co_await flush_polls();
  }

  asio::awaitable<void> flush_polls()
  {
    std::vector<std::pair<std::string, std::int64_t>> dirty;
    for (auto& [id, a] : m_actors) {
      if (a->unflushed_polls) {
        dirty.emplace_back(id, std::exchange(a->unflushed_polls, 0));
      }
    }
    for (auto& [id, n] : m_orphan_polls) {
      dirty.emplace_back(id, n);
    }
    m_orphan_polls.clear();
    if (dirty.empty()) {
      co_return;
    }
    try {
      co_await m_committer.run([&](JobStore& s) {
        for (const auto& [id, n] : dirty) {
          s.add_polls(id, n);
        }
      });
    } catch (const std::exception&) {
      for (const auto& [id, n] : dirty) {
        m_orphan_polls[id] += n; // counted again at the next flush
      }
      throw;
    }
  }

  // --- download -------------------------------------------------------------

  fs::path final_path(const Job& job) const { return fs::path(m_config.store.videos_dir) / job.output; }
  fs::path part_path(const Job& job) const { return fs::path(final_path(job).string() + ".part"); }

  asio::awaitable<void> do_download(Job job, Actor& a)
  {
    a.phase = Actor::Phase::downloading;
    set_in_flight(a, false);
    co_await m_download_slots.acquire();
    AsyncSemaphore::Permit permit(m_download_slots);
    int failures = job.step_failures;
    bool refreshed = false; // a fresh URL was fetched since the last counted failure
    const auto family = m_catalog.family_for(job.model);
    for (;;) {
      if (!job.video_url) {
        co_await fail_download(job, a, common::ErrorCode::download_failed, "no video URL to download");
        co_return;
      }
      DownloadTask task;
      task.url = *job.video_url;
      task.final_path = final_path(job);
      task.store_root = m_config.store.videos_dir;
      if (job.video_file_size) {
        task.expected_size = static_cast<std::uint64_t>(*job.video_file_size);
      }
      task.max_bytes = m_config.download.max_bytes;
      task.allow_http = m_config.download.allow_http;
      task.timeout = seconds(m_config.download.timeout_s);
      auto out = co_await m_downloader.fetch(task);
      m_metrics.downloads(out.status == DownloadStatus::ok ? "ok" : out.status == DownloadStatus::url_expired ? "url_expired"
                          : out.status == DownloadStatus::transient ? "transient" : "fatal").Increment();
      if (out.status == DownloadStatus::ok) {
        m_metrics.download_bytes().Increment(static_cast<double>(out.bytes));
      }
      switch (out.status) {
      case DownloadStatus::ok: {
        JobUpdate u;
        u.video_path = task.final_path.string();
        u.video_bytes = static_cast<std::int64_t>(out.bytes);
        u.video_sha256 = out.sha256_hex;
        u.step_failures = 0;
        co_await commit_with_polls(a, [&](JobStore& s) {
          s.transition(job.id, JobState::downloading, JobState::completed, u);
        });
        log::info("job.completed", {{"job", job.id}, {"bytes", out.bytes}, {"sha256", out.sha256_hex},
                                    {"resumed", out.resumed}});
        add_cost_lookup(job);
        co_return;
      }
      case DownloadStatus::fatal:
        co_await fail_download(job, a, common::ErrorCode::download_failed, out.message, out.http_status);
        co_return;
      case DownloadStatus::url_expired:
        if (!refreshed) {
          // Signed CDN URLs expire: ask the provider for a fresh one before counting a failure.
          refreshed = true;
          auto fresh = co_await refresh_url(job, a, family);
          if (fresh == RefreshResult::failed_job) {
            co_return;
          }
          if (fresh == RefreshResult::refreshed) {
            continue;
          }
        }
        refreshed = false;
        [[fallthrough]];
      case DownloadStatus::transient: {
        ++failures;
        if (failures >= m_config.retry.max_attempts) {
          co_await fail_download(job, a, common::ErrorCode::retries_exhausted,
                                 fmt::format("download failed {} times; last: {}", failures, out.message),
                                 out.http_status);
          co_return;
        }
        const auto delay = retry_delay(m_config.retry, failures,
                                       out.retry_after ? std::optional<Millis>(*out.retry_after) : std::nullopt, m_rng);
        log::info("job.download_retry", {{"job", job.id}, {"failures", failures}, {"delay_ms", delay.count()},
                                         {"reason", out.message}});
        co_await sleep(delay);
        break;
      }
      }
    }
  }

  enum class RefreshResult { refreshed, unchanged, failed_job };

  asio::awaitable<RefreshResult> refresh_url(Job& job, Actor& a, common::Family family)
  {
    provider::PollResult r;
    {
      co_await m_poll_slots.acquire();
      AsyncSemaphore::Permit permit(m_poll_slots);
      r = co_await m_provider.poll(family, *job.generation_id);
    }
    ++a.unflushed_polls;
    m_metrics.polls().Increment();
    if (r.outcome.cls != CallClass::ok) {
      co_return RefreshResult::unchanged;
    }
    const auto& st = *r.status;
    if (st.kind == provider::GenerationStatus::Kind::failed) {
      JobUpdate u;
      u.provider_failed = true;
      u.provider_status = st.status;
      u.error = make_job_error(common::ErrorCode::provider_failed, st.error_message);
      co_await commit_with_polls(a, [&](JobStore& s) { s.transition(job.id, JobState::downloading, JobState::failed, u); });
      co_return RefreshResult::failed_job;
    }
    if (!st.video_url) {
      co_return RefreshResult::unchanged;
    }
    job.video_url = *st.video_url;
    if (st.file_size) {
      job.video_file_size = *st.file_size;
    }
    JobUpdate u;
    u.video_url = *st.video_url;
    if (st.file_size) u.video_file_size = *st.file_size;
    co_await commit_with_polls(a, [&](JobStore& s) {
      s.update(job.id, JobState::downloading, u, std::string("url_refresh"));
    });
    log::info("job.url_refreshed", {{"job", job.id}});
    co_return RefreshResult::refreshed;
  }

  asio::awaitable<void> fail_download(const Job& job, Actor& a, common::ErrorCode code, std::string message,
                                      std::optional<int> http = std::nullopt)
  {
    std::error_code ec;
    fs::remove(part_path(job), ec);
    JobUpdate u;
    u.error = make_job_error(code, "download: " + message, http && *http ? http : std::nullopt);
    co_await commit_with_polls(a, [&](JobStore& s) { s.transition(job.id, JobState::downloading, JobState::failed, u); });
    log::warning("job.failed", {{"job", job.id}, {"code", common::to_string(code)}, {"message", message}});
  }

  // --- helpers --------------------------------------------------------------

  asio::any_io_executor m_ex;
  common::Config m_config;
  const common::Catalog& m_catalog;
  JobStore& m_store;
  store::GroupCommitter& m_committer;
  Metrics& m_metrics;
  provider::HttpClient m_http;
  provider::ProviderClient m_provider;
  Downloader m_downloader;
  Notifier m_dispatch_wake;
  Notifier m_reconcile_wake;
  RateWindow m_rate;
  RateWindow m_logs_rate{60}; // request-log queries: well under the documented 200 per minute
  AsyncSemaphore m_poll_slots;
  AsyncSemaphore m_create_slots;
  AsyncSemaphore m_download_slots;
  std::mt19937_64 m_rng;

  std::unordered_map<std::string, std::unique_ptr<Actor>> m_actors;
  std::unordered_map<std::string, Clock::time_point> m_not_before; // queued jobs backing off
  std::unordered_map<std::string, int> m_recover_failures;         // jobs recovering from store failures
  // Expected cost of jobs picked for dispatch but not yet `submitting` in the store (waiting
  // for a create slot): the store's spend figures do not include them yet.
  double m_claimed_usd = 0;
  std::unordered_map<std::string, double> m_claimed_usd_by_batch;
  std::unordered_map<std::string, Pending> m_reconcile;             // ambiguous creates being settled
  std::unordered_map<std::string, CostLookup> m_cost_lookups;       // completed jobs whose cost is still unknown
  std::unordered_map<std::string, std::int64_t> m_orphan_polls;     // polls of finished actors, not yet written
  int m_in_flight = 0;
  std::size_t m_claimed = 0; // actors whose job is still `queued` in the store
  std::optional<std::string> m_paused;
  std::optional<std::string> m_budget_block;        // why the daily budget stops dispatch, if it does
  std::optional<std::string> m_logged_budget_block;
  std::set<std::string> m_blocked_batches;          // batches whose max_usd is reached
  bool m_pause_is_account = false;
  bool m_stopping = false;
};

Engine::Engine(asio::any_io_executor ex, const common::Config& config, const common::Catalog& catalog,
               store::JobStore& store, store::GroupCommitter& committer, Metrics& metrics)
  : m_impl(std::make_unique<Impl>(ex, config, catalog, store, committer, metrics))
{
}

Engine::~Engine() = default;

asio::awaitable<void> Engine::start() { return m_impl->start(); }
void Engine::wake_dispatcher() { m_impl->wake_dispatcher(); }
asio::awaitable<Result<store::Job>> Engine::cancel(std::string id) { return m_impl->cancel(std::move(id)); }
asio::awaitable<Result<store::Job>> Engine::retry(std::string id) { return m_impl->retry(std::move(id)); }
void Engine::pause(std::string reason) { m_impl->pause(std::move(reason), false); }
void Engine::resume() { m_impl->resume(); }
EngineStatus Engine::status() const { return m_impl->status(); }
void Engine::reconfigure(const common::Config& config) { m_impl->reconfigure(config); }
asio::awaitable<void> Engine::shutdown(std::chrono::milliseconds grace) { return m_impl->shutdown(grace); }

} // namespace klingd::engine
