#include "daemon/engine/ledger.hpp"

#include "common/log.hpp"
#include "daemon/store/group_commit.hpp"

#include <fmt/format.h>

#include <map>

namespace klingd::engine {

namespace asio = boost::asio;

namespace {
constexpr int k_max_pages = 10; // per reading; the rest waits for the next one

std::string row_key(const provider::Transaction& t)
{
  return fmt::format("{}|{}|{}", t.type, t.reference_id.value_or(""), t.created_at);
}
} // namespace

asio::awaitable<void> Ledger::step()
{
  const double every = m_core.config.provider.balance_check_s;
  if (every <= 0 || m_unavailable || m_core.config.api_key.empty()) {
    co_await m_core.sleep(std::chrono::seconds(30)); // a reload may turn it on
    co_return;
  }
  co_await read_new_rows();
  co_await m_core.sleep(seconds(every));
}

asio::awaitable<void> Ledger::read_new_rows()
{
  const SysTime since = m_since.value_or(now_utc() - std::chrono::hours(24));
  provider::TransactionQuery q;
  q.from = format_rfc3339(since);
  q.limit = 100;
  std::optional<std::string> cursor;
  struct Settle
  {
    std::optional<double> charge_usd;
    std::optional<std::int64_t> charge_credits;
    std::optional<double> refund_usd;
  };
  std::map<std::string, Settle> by_generation;
  std::optional<SysTime> newest;
  std::set<std::string> at_newest;
  for (int page = 0; page < k_max_pages; ++page) {
    const auto slot = m_core.logs_rate.next_slot(Clock::now());
    if (slot > Clock::now()) {
      co_await m_core.sleep(slot - Clock::now());
    }
    m_core.logs_rate.record(Clock::now());
    auto r = co_await m_core.provider.transactions(cursor, q);
    if (r.outcome.cls != provider::CallClass::ok) {
      if (r.outcome.http_status == 404) {
        m_unavailable = true;
        log::info("account.ledger_unavailable", {{"reason", r.outcome.message}});
      } else {
        log::info("account.ledger_failed", {{"status", r.outcome.http_status.value_or(0)}, {"reason", r.outcome.message}});
      }
      break;
    }
    for (const auto& t : r.rows) {
      const auto at = parse_rfc3339(t.created_at);
      if (!at || !t.reference_id || !t.usd) {
        continue;
      }
      const std::string key = row_key(t);
      if (*at == since && m_seen_at_since.contains(key)) {
        continue; // settled at the last reading
      }
      if (!newest || *at > *newest) {
        newest = at;
        at_newest.clear();
      }
      if (*at == *newest) {
        at_newest.insert(key);
      }
      auto& s = by_generation[*t.reference_id];
      if (t.type == "MODEL_USAGE" && t.direction == "CHARGE") {
        s.charge_usd = *t.usd;
        s.charge_credits = t.credits;
      } else if (t.type == "REFUND") {
        s.refund_usd = *t.usd;
      }
    }
    if (!r.has_more || !r.next_cursor) {
      break;
    }
    cursor = r.next_cursor;
  }
  if (by_generation.empty()) {
    co_return;
  }
  int settled = 0;
  co_await m_core.committer.run([&](store::JobStore& s) {
    for (const auto& [generation, v] : by_generation) {
      auto job = s.get_by_generation(generation);
      if (!job || (!v.charge_usd && !v.refund_usd)) {
        continue;
      }
      store::JobUpdate u;
      if (v.charge_usd) {
        u.cost_usd = *v.charge_usd;
        if (v.charge_credits) u.cost_credits = *v.charge_credits;
      }
      if (v.refund_usd) {
        u.refund_usd = *v.refund_usd;
      }
      settled += s.update(job->id, job->state, u) ? 1 : 0;
    }
  });
  if (newest && (!m_since || *newest > *m_since)) {
    m_since = newest;
    m_seen_at_since = std::move(at_newest);
  } else if (newest) {
    m_seen_at_since.insert(at_newest.begin(), at_newest.end());
  }
  if (settled) {
    log::info("account.ledger_settled", {{"jobs", settled}});
  }
}

} // namespace klingd::engine
