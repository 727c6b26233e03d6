// The Prometheus metrics klingd exports on GET /metrics (prometheus-cpp core:
// registry and text exposition; served by our own socket server).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <string_view>

namespace klingd {

class Metrics
{
public:
  Metrics();

  // Outcome of each create call: accepted, or its provider::CallClass — safe_retry (provably
  // not accepted, sent again), ambiguous, job_error (the request refused), account.
  prometheus::Counter& creates(std::string_view outcome);
  prometheus::Counter& polls();
  // Outcome of each download attempt: ok, url_expired, transient, fatal.
  prometheus::Counter& downloads(std::string_view outcome);
  prometheus::Counter& download_bytes();
  // Provider errors by class: network, http_5xx, http_429, http_4xx, account, malformed.
  prometheus::Counter& provider_errors(std::string_view error_class);
  // Socket API request latency by route (a fixed route name, not the raw path).
  prometheus::Histogram& request_latency(std::string_view route);
  // How late each status poll starts against its schedule (timer lag plus the wait for a
  // poll slot): what bench/ reports as poll lateness p50/p99 at scale (issue 9).
  prometheus::Histogram& poll_lateness();
  prometheus::Gauge& jobs(std::string_view state);
  prometheus::Gauge& in_flight();
  prometheus::Gauge& paused();
  // Recorded spend (what the provider's headers or request log said), in total.
  prometheus::Gauge& spent_usd();
  // The account balance GET /v2/billing last reported, USD.
  prometheus::Gauge& balance_usd();
  prometheus::Gauge& spent_credits();
  // Sizes of the database file and of its write-ahead log (bounded: docs/operations.md).
  prometheus::Gauge& db_bytes();
  prometheus::Gauge& wal_bytes();

  // Prometheus text exposition format (version 0.0.4).
  std::string serialize() const;

private:
  std::shared_ptr<prometheus::Registry> m_registry;
  prometheus::Family<prometheus::Counter>& m_creates;
  prometheus::Family<prometheus::Counter>& m_polls;
  prometheus::Family<prometheus::Counter>& m_downloads;
  prometheus::Family<prometheus::Counter>& m_download_bytes;
  prometheus::Family<prometheus::Counter>& m_provider_errors;
  prometheus::Family<prometheus::Histogram>& m_latency;
  prometheus::Family<prometheus::Histogram>& m_poll_lateness;
  prometheus::Family<prometheus::Gauge>& m_jobs;
  prometheus::Family<prometheus::Gauge>& m_in_flight;
  prometheus::Family<prometheus::Gauge>& m_paused;
  prometheus::Family<prometheus::Gauge>& m_spent_usd;
  prometheus::Family<prometheus::Gauge>& m_balance_usd;
  prometheus::Family<prometheus::Gauge>& m_spent_credits;
  prometheus::Family<prometheus::Gauge>& m_db_bytes;
  prometheus::Family<prometheus::Gauge>& m_wal_bytes;
};

} // namespace klingd
