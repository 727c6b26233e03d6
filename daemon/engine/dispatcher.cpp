#include "daemon/engine/dispatcher.hpp"

#include "common/catalog.hpp"
#include "common/log.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

namespace klingd::engine {

namespace asio = boost::asio;
using store::Job;

asio::awaitable<void> Dispatcher::step()
{
  if (m_core.paused || m_core.in_flight_total() >= m_core.config.provider.max_in_flight) {
    co_await m_core.dispatch_wake.wait(std::chrono::seconds(5));
    co_return;
  }
  const auto now = Clock::now();
  const auto slot = m_core.create_rate.next_slot(now);
  if (slot > now) {
    co_await m_core.dispatch_wake.wait(slot - now);
    co_return;
  }
  if (round(now) == 0) {
    co_await m_core.dispatch_wake.wait(next_backoff_wait(now));
  }
}

void Dispatcher::reset_budgets()
{
  m_blocked_batches.clear();
  m_budget_block.reset();
}

// Starts as many queued jobs as the limits allow now, best first, from one query. Jobs that
// have an owner (claimed but not yet `submitting` in the store) and jobs backing off are
// skipped; the query reads only as many extra rows as there are of those.
std::size_t Dispatcher::round(Clock::time_point now)
{
  auto& not_before = m_core.not_before;
  for (auto it = not_before.begin(); it != not_before.end();) {
    it = it->second <= now ? not_before.erase(it) : std::next(it);
  }
  const auto room = static_cast<std::size_t>(m_core.config.provider.max_in_flight - m_core.in_flight_total());
  const std::vector<std::string> blocked(m_blocked_batches.begin(), m_blocked_batches.end());
  std::optional<double> today;                         // spend counted against the daily budget
  std::unordered_map<std::string, double> batch_spent; // per batch, this round
  m_budget_block.reset();
  std::size_t started = 0;
  const double max_per_day = m_core.config.budget.max_usd_per_day;
  for (auto& job : m_core.store.next_queued(room + m_core.claims.count + not_before.size(), blocked)) {
    if (started == room || m_core.paused || m_core.create_rate.next_slot(now) > now) {
      break;
    }
    if (m_core.owner(job.id) || not_before.contains(job.id)) {
      continue;
    }
    // Budgets: what is spent or in flight plus this job's expected cost must stay within them;
    // otherwise dispatch of that scope waits. Nothing fails.
    const double expected = expected_cost(job).value_or(0);
    // The provider bills at create: a create the balance cannot pay for waits, like a 402 would
    // make it, but before it is sent (lifted by BalanceWatch once a reading shows more).
    if (m_core.balance_usd && expected > 0 && m_core.spent_since_balance + expected > *m_core.balance_usd) {
      m_core.pause(fmt::format("account balance ${:.2f} (read {}, ${:.2f} dispatched since) is below the next "
                               "create's expected cost ${:.2f}; dispatch goes on once a balance reading shows enough "
                               "(provider.balance_check_s) or on `klingctl resume`",
                               *m_core.balance_usd, m_core.balance_checked_at.value_or("?"),
                               m_core.spent_since_balance, expected),
                   true);
      m_core.pause_is_balance = true;
      break;
    }
    if (max_per_day > 0) {
      if (!today) {
        today = m_core.store.spend_since(format_day(now_utc()) + "T00:00:00.000Z") + m_core.claims.usd;
      }
      if (*today + expected > max_per_day) {
        m_budget_block = fmt::format("daily budget: ${:.2f} spent or in flight today + ${:.2f} for the next job would "
                                     "pass budget.max_usd_per_day ${:.2f}; dispatch resumes at 00:00 UTC or when the "
                                     "budget is raised (reload)",
                                     *today, expected, max_per_day);
        break;
      }
    }
    if (auto budget = m_core.store.batch_budget(job.batch)) {
      auto it = batch_spent.find(job.batch);
      if (it == batch_spent.end()) {
        it = batch_spent.emplace(job.batch, m_core.store.batch_spend(job.batch) + m_core.claims.batch_usd(job.batch)).first;
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
    m_core.create_rate.record(now);
    const std::string id = job.id;
    const std::string batch = job.batch;
    if (!m_actors.spawn(std::move(job), false)) {
      continue;
    }
    if (auto* a = m_actors.find(id)) {
      a->claimed = true;
      a->expected_cost = expected;
      a->batch = batch;
      m_core.claims.add(batch, expected);
    }
    m_core.spent_since_balance += expected;
    ++started;
  }
  if (m_budget_block && m_budget_block != m_logged_budget_block) {
    log::warning("engine.budget_reached", {{"reason", *m_budget_block}});
    m_logged_budget_block = m_budget_block;
  }
  return started;
}

std::optional<double> Dispatcher::expected_cost(const Job& job)
{
  return expected_cost(m_core.store, m_core.catalog, job.model, job.request);
}

// The median recorded cost of recent jobs of the same model and duration, else the catalog's
// price for the request; nullopt when neither is known.
std::optional<double> Dispatcher::expected_cost(store::JobStore& store, const common::Catalog& catalog,
                                                const std::string& model, const std::string& request_json)
{
  boost::system::error_code ec;
  auto request = boost::json::parse(request_json, ec);
  if (ec || !request.is_object()) {
    return std::nullopt;
  }
  const auto* d = request.as_object().if_contains("duration");
  auto costs = store.recent_costs(model, d ? boost::json::serialize(*d) : std::string(), 21);
  if (costs.size() >= 3) {
    std::nth_element(costs.begin(), costs.begin() + static_cast<std::ptrdiff_t>(costs.size() / 2), costs.end());
    return costs[costs.size() / 2];
  }
  return catalog.estimate_usd(request.as_object());
}

Clock::duration Dispatcher::next_backoff_wait(Clock::time_point now) const
{
  Clock::duration wait = std::chrono::seconds(5);
  for (const auto& [id, t] : m_core.not_before) {
    wait = std::min(wait, t - now);
  }
  return std::max(wait, Clock::duration(Millis(1)));
}

} // namespace klingd::engine
