// BalanceWatch: reads the account balance (GET /v2/billing) every provider.balance_check_s for
// status, /metrics and the dashboard, and lifts a dispatch pause that the Dispatcher set because
// the next create's expected cost exceeded the balance, once a reading shows more. A provider
// without the endpoint (404) is asked no more. docs/provider.md "Billing".
#pragma once

#include "daemon/engine/core.hpp"

namespace klingd::engine {

class BalanceWatch
{
public:
  explicit BalanceWatch(Core& core) : m_core(core) {}
  boost::asio::awaitable<void> step();

private:
  Core& m_core;
  bool m_unavailable = false;
  double m_lifted_at = -1; // the balance a balance pause was last lifted at (no flapping)
};

} // namespace klingd::engine
