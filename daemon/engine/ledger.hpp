// Ledger: the provider's billing ledger (GET /v2/billing/transactions) is the authoritative
// record of what each generation cost: a MODEL_USAGE charge row settles the job's cost, a
// REFUND row its refund (spend figures and budgets count cost minus refund). Read every
// provider.balance_check_s from the newest row already seen, a few cursor pages at a time within
// the request-log rate budget; a provider without the endpoint (404) is asked no more.
// docs/provider.md "Changes in the provider's docs since this page was first written".
#pragma once

#include "daemon/engine/core.hpp"

#include <optional>
#include <set>
#include <string>

namespace klingd::engine {

class Ledger
{
public:
  explicit Ledger(Core& core) : m_core(core) {}
  boost::asio::awaitable<void> step();

private:
  boost::asio::awaitable<void> read_new_rows();

  Core& m_core;
  bool m_unavailable = false;
  std::optional<SysTime> m_since;   // created_at of the newest row settled (start: a day back)
  std::set<std::string> m_seen_at_since; // rows at exactly m_since already settled
};

} // namespace klingd::engine
