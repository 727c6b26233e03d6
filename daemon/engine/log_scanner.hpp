// LogScanner: pages the provider's request log (GET /v2/logs, newest first) over a time
// window within the log-rate budget. Shared by the reconciler (rows by client request id)
// and the cost collector (rows by generation id). docs/provider.md "Request tracing, cost and
// request logs".
#pragma once

#include "daemon/engine/core.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace klingd::engine {

struct LogScan
{
  bool ok = true;        // every page asked for was answered
  bool complete = false; // the window was read to its start (or the caller had all it wanted)
  int pages = 0;
  std::optional<int> http_status; // of a failed query
};

// How long to wait before the next look for a row: the provider's log is fed by an analytics
// pipeline, so a row may appear some time after the request. Soon, then backing off (capped at
// 60 s, and at a tenth of reconcile.window_s so short windows still get several looks).
Clock::duration log_lookup_delay(const common::Config& config, int checks);

class LogScanner
{
public:
  explicit LogScanner(Core& core) : m_core(core) {}

  // Hands each row of [start, end] for `models` (empty: all) to `on_row`, newest first, until
  // the window's start is reached, `on_row` returns true (nothing more wanted), a query fails,
  // or `max_pages` pages were read (then complete is false).
  boost::asio::awaitable<LogScan> scan(SysTime start, SysTime end, std::vector<std::string> models,
                                       std::function<bool(provider::LogRow&)> on_row, int max_pages);

  // The creation time of the newest row in [since, now + 5 min] for any model, if the log has
  // one yet: evidence of how far the log has caught up.
  boost::asio::awaitable<std::optional<SysTime>> newest_since(SysTime since);

private:
  boost::asio::awaitable<provider::LogPage> page(SysTime start, SysTime end, std::vector<std::string> models,
                                                 int limit, int offset);
  Core& m_core;
};

} // namespace klingd::engine
