#include "daemon/metrics/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <sstream>

namespace klingd {

namespace p = prometheus;

Metrics::Metrics()
  : m_registry(std::make_shared<p::Registry>()),
    m_creates(p::BuildCounter().Name("klingd_creates_total").Help("Create calls by outcome").Register(*m_registry)),
    m_polls(p::BuildCounter().Name("klingd_polls_total").Help("Status polls sent").Register(*m_registry)),
    m_downloads(p::BuildCounter().Name("klingd_downloads_total").Help("Download attempts by outcome").Register(*m_registry)),
    m_download_bytes(p::BuildCounter().Name("klingd_download_bytes_total").Help("Video bytes downloaded").Register(*m_registry)),
    m_provider_errors(p::BuildCounter().Name("klingd_provider_errors_total").Help("Provider errors by class").Register(*m_registry)),
    m_latency(p::BuildHistogram().Name("klingd_api_request_duration_seconds").Help("Socket API request latency by route").Register(*m_registry)),
    m_poll_lateness(p::BuildHistogram().Name("klingd_poll_lateness_seconds").Help("How late status polls start against their schedule").Register(*m_registry)),
    m_jobs(p::BuildGauge().Name("klingd_jobs").Help("Jobs by state").Register(*m_registry)),
    m_in_flight(p::BuildGauge().Name("klingd_in_flight").Help("Jobs submitting or generating").Register(*m_registry)),
    m_paused(p::BuildGauge().Name("klingd_dispatch_paused").Help("1 while dispatch of new creates is paused").Register(*m_registry)),
    m_spent_usd(p::BuildGauge().Name("klingd_spent_usd").Help("Recorded spend of all jobs, USD").Register(*m_registry)),
    m_balance_usd(p::BuildGauge().Name("klingd_balance_usd").Help("Account balance the provider last reported (GET /v2/billing), USD").Register(*m_registry)),
    m_spent_credits(p::BuildGauge().Name("klingd_spent_credits").Help("Recorded spend of all jobs, credits").Register(*m_registry)),
    m_db_bytes(p::BuildGauge().Name("klingd_db_bytes").Help("Size of the SQLite database file").Register(*m_registry)),
    m_wal_bytes(p::BuildGauge().Name("klingd_db_wal_bytes").Help("Size of the SQLite write-ahead log (-wal file)").Register(*m_registry))
{
}

p::Counter& Metrics::creates(std::string_view outcome) { return m_creates.Add({{"outcome", std::string(outcome)}}); }
p::Counter& Metrics::polls() { return m_polls.Add({}); }
p::Counter& Metrics::downloads(std::string_view outcome) { return m_downloads.Add({{"outcome", std::string(outcome)}}); }
p::Counter& Metrics::download_bytes() { return m_download_bytes.Add({}); }
p::Counter& Metrics::provider_errors(std::string_view c) { return m_provider_errors.Add({{"class", std::string(c)}}); }

p::Histogram& Metrics::request_latency(std::string_view route)
{
  static const p::Histogram::BucketBoundaries k_buckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  return m_latency.Add({{"route", std::string(route)}}, k_buckets);
}

p::Histogram& Metrics::poll_lateness()
{
  // Fine at the low end: a healthy loop fires within a millisecond; seconds mean overload.
  static const p::Histogram::BucketBoundaries k_buckets{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
  return m_poll_lateness.Add({}, k_buckets);
}

p::Gauge& Metrics::jobs(std::string_view state) { return m_jobs.Add({{"state", std::string(state)}}); }
p::Gauge& Metrics::in_flight() { return m_in_flight.Add({}); }
p::Gauge& Metrics::paused() { return m_paused.Add({}); }
p::Gauge& Metrics::spent_usd() { return m_spent_usd.Add({}); }
p::Gauge& Metrics::balance_usd() { return m_balance_usd.Add({}); }
p::Gauge& Metrics::spent_credits() { return m_spent_credits.Add({}); }
p::Gauge& Metrics::db_bytes() { return m_db_bytes.Add({}); }
p::Gauge& Metrics::wal_bytes() { return m_wal_bytes.Add({}); }

std::string Metrics::serialize() const
{
  std::ostringstream out;
  p::TextSerializer().Serialize(out, m_registry->Collect());
  return out.str();
}

} // namespace klingd
