// The Engine façade: builds the parts around one Core, runs their loops, and answers the
// API's requests (cancel, retry, pause, status, reload, shutdown).
#include "daemon/engine/engine.hpp"

#include "common/log.hpp"
#include "daemon/engine/actors.hpp"
#include "daemon/engine/balance_watch.hpp"
#include "daemon/engine/cost_collector.hpp"
#include "daemon/engine/dispatcher.hpp"
#include "daemon/engine/ledger.hpp"
#include "daemon/engine/log_scanner.hpp"
#include "daemon/engine/ports.hpp"
#include "daemon/engine/reconciler.hpp"
#include "daemon/engine/recovery.hpp"
#include "daemon/store/group_commit.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

namespace klingd::engine {

namespace asio = boost::asio;
using common::JobState;
using store::Job;
using store::JobStore;
using store::JobUpdate;

namespace {
provider::ProviderClient::Options provider_options(const common::Config& c)
{
  return {c.provider.base_url, c.api_key.value(), seconds(c.provider.request_timeout_s)};
}

ActionRefusal refuse(ActionError code, std::string message)
{
  return ActionRefusal{code, std::move(message)};
}
} // namespace

std::string_view to_string(ActionError error)
{
  switch (error) {
  case ActionError::not_found:
    return "not_found";
  case ActionError::conflict:
    return "conflict";
  }
  return "conflict";
}

class Engine::Impl
{
public:
  Impl(asio::any_io_executor ex, const common::Config& config, const common::Catalog& catalog, JobStore& store,
       store::GroupCommitter& committer, Metrics& metrics, LivePorts live, ProviderPort* provider, FetchPort* fetcher)
    : m_live(std::move(live)),
      m_core(ex, config, catalog, store, committer, metrics, provider ? *provider : *m_live.provider,
             fetcher ? *fetcher : *m_live.fetcher),
      m_scanner(m_core),
      m_reconciler(m_core, m_scanner),
      m_create(m_core, m_reconciler),
      m_poller(m_core),
      m_download(m_core, m_poller),
      m_actors(m_core, m_create, m_poller, m_download),
      m_dispatcher(m_core, m_actors),
      m_costs(m_core, m_scanner),
      m_recovery(m_core, m_actors, m_reconciler),
      m_balance(m_core),
      m_ledger(m_core)
  {
    m_core.start_actor = [this](Job job, bool resumed) { return m_actors.spawn(std::move(job), resumed); };
    m_core.recover = [this](const std::string& id) { m_recovery.schedule(id); };
    m_core.recover_succeeded = [this](const std::string& id) { m_recovery.succeeded(id); };
    m_actors.on_completed = [this](const Job& job) { m_costs.add(job); };
  }

  asio::awaitable<void> start()
  {
    co_await m_recovery.start();
    spawn_loop("dispatcher", [this] { return m_dispatcher.step(); });
    spawn_loop("poll_flusher", [this] { return m_actors.flush_step(); });
    spawn_loop("reconciler", [this] { return m_reconciler.step(); });
    spawn_loop("cost_collector", [this] { return m_costs.step(); });
    spawn_loop("balance", [this] { return m_balance.step(); });
    spawn_loop("ledger", [this] { return m_ledger.step(); });
    for (const auto& job : m_core.store.completed_without_cost(format_rfc3339(now_utc() - std::chrono::hours(24)))) {
      m_costs.add(job);
    }
  }

  asio::awaitable<void> shutdown(Millis grace)
  {
    m_core.stopping = true;
    m_core.dispatch_wake.notify();
    m_core.reconcile_wake.notify();
    m_actors.stop_all_but_creating();
    const auto deadline = Clock::now() + grace;
    asio::steady_timer t(m_core.ex);
    while (!m_actors.empty() && Clock::now() < deadline) {
      t.expires_after(Millis(20));
      co_await t.async_wait(asio::use_awaitable);
    }
    if (!m_actors.empty()) {
      log::warning("engine.shutdown_grace_expired", {{"still_running", m_actors.size()}});
    }
    co_await m_actors.flush_polls();
    m_core.provider.close_all();
    log::info("engine.stopped");
  }

  void wake() { m_core.dispatch_wake.notify(); }
  void pause(std::string reason, bool account) { m_core.pause(std::move(reason), account); }
  void resume() { m_core.resume(); }

  void reconfigure(const common::Config& c)
  {
    m_core.config = c;
    m_core.provider.set_options(provider_options(c));
    m_core.create_rate.set_rate(c.provider.creates_per_minute);
    m_core.download_slots.set_permits(c.download.max_concurrent);
    m_dispatcher.reset_budgets();
    // docs/contract.md §3.4: a reload resumes dispatch paused for an account problem.
    if (m_core.paused && m_core.pause_is_account) {
      m_core.resume();
    }
    m_core.dispatch_wake.notify();
  }

  std::optional<double> expected_cost(const std::string& model, const std::string& request_json) const
  {
    return Dispatcher::expected_cost(m_core.store, m_core.catalog, model, request_json);
  }

  EngineStatus status() const
  {
    EngineStatus s;
    m_actors.count_phases(s);
    s.in_flight = m_core.in_flight_total();
    s.reconciling = static_cast<int>(m_reconciler.size());
    s.paused = m_core.paused ? m_core.paused : m_dispatcher.budget_block();
    s.budget_blocked_batches = m_dispatcher.blocked_batches();
    s.max_usd_per_day = m_core.config.budget.max_usd_per_day;
    s.max_in_flight = m_core.config.provider.max_in_flight;
    s.creates_per_minute = m_core.config.provider.creates_per_minute;
    s.download_max_concurrent = m_core.config.download.max_concurrent;
    s.balance_usd = m_core.balance_usd;
    s.balance_checked_at = m_core.balance_checked_at;
    return s;
  }

  // A cancel only ever stops work: the job becomes `canceled` at once, a create in flight is
  // not cut (its answer is still recorded: we may have paid for it), and a create being settled
  // stays with the reconciler, whose settlement records what it finds on the canceled job.
  asio::awaitable<ActionResult> cancel(std::string id)
  {
    for (int tries = 0; tries < 3; ++tries) {
      auto job = m_core.store.get(id);
      if (!job) {
        co_return refuse(ActionError::not_found, fmt::format("no job {}", id));
      }
      if (common::is_terminal(job->state)) {
        co_return refuse(ActionError::conflict, fmt::format("job {} is already {}", id, common::to_string(job->state)));
      }
      bool moved = false;
      auto* actor = m_actors.find(id);
      const std::int64_t polls = actor ? std::exchange(actor->unflushed_polls, 0) : 0;
      co_await m_core.committer.run([&](JobStore& s) {
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
      if ((actor = m_actors.find(id))) {
        actor->user_canceled = true;
        if (actor->phase != Actor::Phase::creating) {
          actor->cancel.emit(asio::cancellation_type::terminal);
        }
      }
      m_core.dispatch_wake.notify();
      co_return *m_core.store.get(id);
    }
    co_return refuse(ActionError::conflict, fmt::format("job {} keeps changing state; try again", id));
  }

  asio::awaitable<ActionResult> retry(std::string id)
  {
    auto job = m_core.store.get(id);
    if (!job) {
      co_return refuse(ActionError::not_found, fmt::format("no job {}", id));
    }
    if (job->state != JobState::failed && job->state != JobState::canceled) {
      co_return refuse(ActionError::conflict, fmt::format("job {} is {}; only failed or canceled jobs can be retried", id,
                                                   common::to_string(job->state)));
    }
    if (m_actors.find(id) || m_core.owner(id) == Owner::actor) {
      co_return refuse(ActionError::conflict, fmt::format("job {} is still winding down; try again in a moment", id));
    }
    const auto last = m_core.store.last_attempt(id);
    const auto outcome = last ? common::parse_attempt_outcome(last->outcome) : std::nullopt;
    if (outcome && common::is_unsettled(*outcome)) {
      co_return co_await retry_unsettled(*job);
    }
    const bool resume_polling = job->generation_id && !job->provider_failed;
    if (!resume_polling) {
      DownloadStep::remove_parts(m_core.config, *job); // the old generation's part, if any
    }
    bool moved = false;
    co_await m_core.committer.run([&](JobStore& s) {
      const auto la = s.last_attempt(id);
      const auto o = la ? common::parse_attempt_outcome(la->outcome) : std::nullopt;
      if (o && common::is_unsettled(*o)) {
        return; // fenced: an unsettled create appeared meanwhile
      }
      JobUpdate u;
      u.error = std::optional<store::JobError>{};
      u.step = std::optional<std::string>{};
      u.step_failures = 0;
      if (resume_polling) {
        // Never create again for a generation we hold: poll it (docs/contract.md §4.1 retry).
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
      co_return refuse(ActionError::conflict, fmt::format("job {} changed state meanwhile; try again", id));
    }
    auto fresh = *m_core.store.get(id);
    log::info("job.retried", {{"job", id}, {"resume_polling", resume_polling}});
    if (resume_polling) {
      m_actors.spawn(fresh, false);
    } else {
      m_core.not_before.erase(id);
      m_core.dispatch_wake.notify();
    }
    co_return fresh;
  }

private:
  // The job's last create may have been billed and is not settled yet (it was canceled while
  // the reconciler looked): never a second create now. The job goes back to `submitting` to
  // wait for the settlement, which then moves it on as if it had never been canceled: to
  // `generating` with the generation found, to `queued` if nothing was billed.
  asio::awaitable<ActionResult> retry_unsettled(const Job& job)
  {
    if (job.state != JobState::canceled) {
      co_return refuse(ActionError::conflict, fmt::format("job {}'s create is still being settled; try again later", job.id));
    }
    bool moved = false;
    co_await m_core.committer.run([&](JobStore& s) {
      const auto la = s.last_attempt(job.id);
      const auto o = la ? common::parse_attempt_outcome(la->outcome) : std::nullopt;
      if (!o || !common::is_unsettled(*o)) {
        return; // settled meanwhile: the caller may try again
      }
      JobUpdate u;
      u.step = std::optional<std::string>(common::to_string(common::JobStep::reconciling));
      moved = s.transition(job.id, JobState::canceled, JobState::submitting, u);
    });
    if (!moved) {
      co_return refuse(ActionError::conflict, fmt::format("job {} changed state meanwhile; try again", job.id));
    }
    auto fresh = *m_core.store.get(job.id);
    log::info("job.retried", {{"job", job.id}, {"waits_for_settlement", true}});
    if (!m_reconciler.holds(job.id)) {
      co_await m_core.guarded(job.id, m_reconciler.settle_interrupted(fresh, "retried while its create was unsettled"));
    }
    co_return *m_core.store.get(job.id);
  }

  void spawn_loop(const char* name, std::function<asio::awaitable<void>()> step)
  {
    asio::co_spawn(m_core.ex, m_core.keep_running(name, std::move(step)),
                   log::coroutine_failure_handler(fmt::format("engine.{}", name)));
  }

  LivePorts m_live; // empty when the caller supplies the ports
  Core m_core;
  LogScanner m_scanner;
  Reconciler m_reconciler;
  CreateStep m_create;
  Poller m_poller;
  DownloadStep m_download;
  ActorSet m_actors;
  Dispatcher m_dispatcher;
  CostCollector m_costs;
  Recovery m_recovery;
  BalanceWatch m_balance;
  Ledger m_ledger;
};

Engine::Engine(asio::any_io_executor ex, const common::Config& config, const common::Catalog& catalog,
               store::JobStore& store, store::GroupCommitter& committer, Metrics& metrics)
  : m_impl(std::make_unique<Impl>(ex, config, catalog, store, committer, metrics,
                                  make_live_ports(ex, config.provider.ca_file, provider_options(config)), nullptr,
                                  nullptr))
{
}

Engine::Engine(asio::any_io_executor ex, const common::Config& config, const common::Catalog& catalog,
               store::JobStore& store, store::GroupCommitter& committer, Metrics& metrics, ProviderPort& provider,
               FetchPort& fetcher)
  : m_impl(std::make_unique<Impl>(ex, config, catalog, store, committer, metrics, LivePorts{}, &provider, &fetcher))
{
}

Engine::~Engine() = default;

asio::awaitable<void> Engine::start() { return m_impl->start(); }
void Engine::wake_dispatcher() { m_impl->wake(); }
asio::awaitable<ActionResult> Engine::cancel(std::string id) { return m_impl->cancel(std::move(id)); }
asio::awaitable<ActionResult> Engine::retry(std::string id) { return m_impl->retry(std::move(id)); }
void Engine::pause(std::string reason) { m_impl->pause(std::move(reason), false); }
void Engine::resume() { m_impl->resume(); }
EngineStatus Engine::status() const { return m_impl->status(); }
std::optional<double> Engine::expected_cost(const std::string& model, const std::string& request_json) const
{
  return m_impl->expected_cost(model, request_json);
}
void Engine::reconfigure(const common::Config& config) { m_impl->reconfigure(config); }
asio::awaitable<void> Engine::shutdown(std::chrono::milliseconds grace) { return m_impl->shutdown(grace); }

} // namespace klingd::engine
