// Dispatcher: picks queued jobs (priority, then age) and gives each an actor, within
// provider.max_in_flight, provider.creates_per_minute, dispatch pause and the budgets
// (docs/contract.md §3.6; budgets: README "Budgets"). A job with an owner, or backing off,
// is never picked.
#pragma once

#include "daemon/engine/actors.hpp"

#include <optional>
#include <set>
#include <string>

namespace klingd::engine {

class Dispatcher
{
public:
  Dispatcher(Core& core, ActorSet& actors) : m_core(core), m_actors(actors) {}

  boost::asio::awaitable<void> step();
  // A reload may have raised the budgets: look at every blocked scope again.
  void reset_budgets();

  std::optional<std::string> budget_block() const { return m_budget_block; }
  std::vector<std::string> blocked_batches() const { return {m_blocked_batches.begin(), m_blocked_batches.end()}; }

  // The expected cost of one create, as the budgets count it (also the submit dry run's figure).
  static std::optional<double> expected_cost(store::JobStore& store, const common::Catalog& catalog,
                                             const std::string& model, const std::string& request_json);

private:
  std::size_t round(Clock::time_point now);
  std::optional<double> expected_cost(const store::Job& job);
  Clock::duration next_backoff_wait(Clock::time_point now) const;

  Core& m_core;
  ActorSet& m_actors;
  std::optional<std::string> m_budget_block; // why the daily budget stops dispatch, if it does
  std::optional<std::string> m_logged_budget_block;
  std::set<std::string> m_blocked_batches;   // batches whose max_usd is reached
};

} // namespace klingd::engine
