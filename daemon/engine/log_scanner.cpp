#include "daemon/engine/log_scanner.hpp"

#include "common/log.hpp"

#include <algorithm>
#include <cmath>

namespace klingd::engine {

namespace asio = boost::asio;
using provider::CallClass;

Clock::duration log_lookup_delay(const common::Config& config, int checks)
{
  const double cap = std::min(60.0, std::max(0.05, config.reconcile.window_s / 10));
  const double base = std::min(cap, 1.0);
  return seconds(std::min(cap, base * std::pow(2.0, checks)));
}

asio::awaitable<provider::LogPage> LogScanner::page(SysTime start, SysTime end, std::vector<std::string> models,
                                                    int limit, int offset)
{
  const auto slot = m_core.logs_rate.next_slot(Clock::now());
  if (slot > Clock::now()) {
    co_await m_core.sleep(slot - Clock::now());
  }
  m_core.logs_rate.record(Clock::now());
  auto r = co_await m_core.provider.logs(format_rfc3339(start), format_rfc3339(end), std::move(models), limit, offset);
  if (r.outcome.cls != CallClass::ok) {
    if (r.outcome.http_status == 429) {
      m_core.logs_rate.hold_until(Clock::now() + r.outcome.retry_after.value_or(std::chrono::seconds(10)));
    }
    log::info("reconcile.logs_failed", {{"status", r.outcome.http_status.value_or(0)}, {"reason", r.outcome.message}});
  }
  co_return r;
}

asio::awaitable<LogScan> LogScanner::scan(SysTime start, SysTime end, std::vector<std::string> models,
                                          std::function<bool(provider::LogRow&)> on_row, int max_pages)
{
  constexpr int k_page = 100;
  LogScan out;
  for (int page_no = 0; page_no < max_pages; ++page_no) {
    auto r = co_await page(start, end, models, k_page, page_no * k_page);
    ++out.pages;
    if (r.outcome.cls != CallClass::ok) {
      out.ok = false;
      out.http_status = r.outcome.http_status;
      co_return out;
    }
    for (auto& row : r.rows) {
      if (on_row(row)) {
        out.complete = true;
        co_return out;
      }
    }
    if (!r.has_more) {
      out.complete = true;
      co_return out;
    }
  }
  co_return out;
}

asio::awaitable<std::optional<SysTime>> LogScanner::newest_since(SysTime since)
{
  auto r = co_await page(since, now_utc() + std::chrono::minutes(5), {}, 1, 0);
  std::optional<SysTime> newest;
  if (r.outcome.cls == CallClass::ok) {
    for (const auto& row : r.rows) {
      if (auto t = row.created ? parse_rfc3339(*row.created) : std::nullopt; t && (!newest || *t > *newest)) {
        newest = t;
      }
    }
  }
  co_return newest;
}

} // namespace klingd::engine
