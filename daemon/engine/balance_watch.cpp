#include "daemon/engine/balance_watch.hpp"

#include "common/log.hpp"
#include "daemon/metrics/metrics.hpp"

namespace klingd::engine {

namespace asio = boost::asio;

asio::awaitable<void> BalanceWatch::step()
{
  const double every = m_core.config.provider.balance_check_s;
  if (every <= 0 || m_unavailable || m_core.config.api_key.empty()) {
    co_await m_core.sleep(std::chrono::seconds(30)); // a reload may turn it on
    co_return;
  }
  auto b = co_await m_core.provider.balance();
  if (b.outcome.cls == provider::CallClass::ok && b.usd) {
    const bool changed = !m_core.balance_usd || *m_core.balance_usd != *b.usd;
    m_core.balance_usd = b.usd;
    m_core.balance_checked_at = now_text();
    m_core.spent_since_balance = 0;
    m_core.metrics.balance_usd().Set(*b.usd);
    if (changed) {
      log::info("account.balance", {{"usd", *b.usd}});
    }
    if (m_core.paused && m_core.pause_is_balance && *b.usd > m_lifted_at) {
      // The Dispatcher pauses again at once if the next create still does not fit.
      m_lifted_at = *b.usd;
      m_core.resume();
    }
  } else if (b.outcome.http_status == 404) {
    m_unavailable = true;
    log::info("account.balance_unavailable", {{"reason", b.outcome.message}});
  } else {
    log::info("account.balance_failed", {{"status", b.outcome.http_status.value_or(0)}, {"reason", b.outcome.message}});
  }
  co_await m_core.sleep(seconds(every));
}

} // namespace klingd::engine
