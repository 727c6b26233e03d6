#include "daemon/engine/core.hpp"

#include "common/log.hpp"
#include "common/time.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/store/group_commit.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace klingd::engine {

namespace asio = boost::asio;

namespace {
// Creates on the wire at once. Without a bound, a batch dispatched at once (max_in_flight of
// 10,000) opened as many TLS connections together: 660 MiB of peak RSS for nothing, since the
// provider answers them no faster. A job waits for a slot while still `queued`, so a crash
// meanwhile leaves nothing ambiguous.
constexpr int k_create_concurrency = 32;
constexpr int k_poll_concurrency = 64;
// Creates settled since the heap was last handed back (Core::create_settled).
constexpr int k_trim_after_creates = 1000;
} // namespace

void Core::create_settled()
{
  if (++m_creates_since_trim < k_trim_after_creates || create_slots.in_use() > 0) {
    return;
  }
  m_creates_since_trim = 0;
#if defined(__GLIBC__)
  // A burst of creates leaves the heap full of holes: the batch's parsed body and rows, each
  // queued job's row and create frame, freed while the generating jobs' small frames, allocated
  // in between, stay. glibc returns only the top of the heap by itself; malloc_trim gives back
  // every free page (ARCHITECTURE.md, "Memory").
  const auto t0 = Clock::now();
  malloc_trim(0);
  log::debug("engine.heap_trimmed",
             {{"ms", std::chrono::duration_cast<Millis>(Clock::now() - t0).count()}});
#endif
}

void Claims::add(const std::string& batch, double expected)
{
  ++count;
  usd += expected;
  by_batch[batch] += expected;
}

void Claims::remove(const std::string& batch, double expected)
{
  if (count == 0) {
    return;
  }
  --count;
  usd -= expected;
  if (auto it = by_batch.find(batch); it != by_batch.end()) {
    it->second -= expected;
    if (it->second <= 1e-9) {
      by_batch.erase(it);
    }
  }
  if (count == 0) {
    usd = 0; // no rounding drift
    by_batch.clear();
  }
}

double Claims::batch_usd(const std::string& batch) const
{
  auto it = by_batch.find(batch);
  return it == by_batch.end() ? 0.0 : it->second;
}

Core::Core(asio::any_io_executor ex_, const common::Config& config_, const common::Catalog& catalog_,
           store::JobStore& store_, store::GroupCommitter& committer_, Metrics& metrics_, ProviderPort& provider_,
           FetchPort& fetcher_)
  : ex(ex_),
    config(config_),
    catalog(catalog_),
    store(store_),
    committer(committer_),
    metrics(metrics_),
    provider(provider_),
    fetcher(fetcher_),
    dispatch_wake(ex_),
    reconcile_wake(ex_),
    create_rate(config_.provider.creates_per_minute),
    poll_slots(ex_, k_poll_concurrency),
    create_slots(ex_, k_create_concurrency),
    download_slots(ex_, config_.download.max_concurrent),
    rng(std::random_device{}())
{
  if (config.api_key.empty()) {
    paused = k_no_key_reason;
    pause_is_account = true;
  }
}

bool Core::claim(const std::string& id, Owner o)
{
  if (!m_owners.emplace(id, o).second) {
    return false;
  }
  ++m_owned[static_cast<int>(o)];
  return true;
}

void Core::release(const std::string& id, Owner o)
{
  if (auto it = m_owners.find(id); it != m_owners.end() && it->second == o) {
    m_owners.erase(it);
    --m_owned[static_cast<int>(o)];
  }
}

bool Core::transfer(const std::string& id, Owner from, Owner to)
{
  auto it = m_owners.find(id);
  if (it == m_owners.end() || it->second != from) {
    return false;
  }
  it->second = to;
  --m_owned[static_cast<int>(from)];
  ++m_owned[static_cast<int>(to)];
  return true;
}

asio::awaitable<void> Core::guarded(std::string id, asio::awaitable<void> step)
{
  bool failed = false;
  try {
    co_await std::move(step);
  } catch (const std::exception& e) {
    log::error("job.step_failed", {{"job", id}, {"error", e.what()}});
    failed = true;
  }
  if (failed && !stopping && recover) {
    recover(id);
  }
}

asio::awaitable<void> Core::fail_create(const std::string& job_id, int attempt, common::AttemptOutcome outcome,
                                        const provider::CreateResult* r, common::ErrorCode code, std::string message)
{
  store::JobUpdate u;
  u.error = make_job_error(code, message, r ? r->outcome.http_status : std::nullopt);
  auto done = co_await settle_create(job_id, attempt, outcome, r, [&](store::JobStore& s) {
    return s.transition(job_id, common::JobState::submitting, common::JobState::failed, u);
  });
  if (done.moved) {
    log::warning("job.failed", {{"job", job_id}, {"code", common::to_string(code)}, {"message", message}});
  }
}

std::optional<Owner> Core::owner(const std::string& id) const
{
  auto it = m_owners.find(id);
  return it == m_owners.end() ? std::nullopt : std::optional<Owner>(it->second);
}

std::size_t Core::owned_by(Owner o) const
{
  return m_owned[static_cast<int>(o)];
}

void Core::pause(std::string reason, bool account)
{
  if (!paused || *paused != reason) {
    log::warning("engine.paused", {{"reason", reason}});
  }
  paused = std::move(reason);
  pause_is_account = account;
  pause_is_balance = false;
  metrics.paused().Set(1);
}

void Core::resume()
{
  if (config.api_key.empty()) {
    pause(k_no_key_reason, true);
    return;
  }
  if (paused) {
    log::info("engine.resumed", {{"was", *paused}});
  }
  paused.reset();
  pause_is_account = false;
  pause_is_balance = false;
  metrics.paused().Set(0);
  dispatch_wake.notify();
}

asio::awaitable<void> Core::sleep(Clock::duration d)
{
  asio::steady_timer t(ex, d);
  co_await t.async_wait(asio::use_awaitable);
}

asio::awaitable<void> Core::keep_running(const char* name, std::function<asio::awaitable<void>()> step)
{
  int failures = 0;
  while (!stopping) {
    bool failed = false;
    try {
      co_await step();
    } catch (const std::exception& e) {
      log::error("engine.loop_failed", {{"loop", name}, {"error", e.what()}, {"failures", failures + 1}});
      failed = true;
    }
    if (!failed) {
      failures = 0;
      continue;
    }
    co_await sleep(std::min(Millis(1000) * (1 << std::min(failures, 5)), Millis(30000)));
    ++failures;
  }
}

asio::awaitable<Settlement> Core::settle_create(const std::string& job_id, int attempt, common::AttemptOutcome outcome,
                                                const provider::CreateResult* r,
                                                std::function<bool(store::JobStore&)> next)
{
  Settlement out;
  co_await committer.run([&](store::JobStore& s) {
    store::Attempt at;
    at.job_id = job_id;
    at.attempt = attempt;
    at.outcome = std::string(common::to_string(outcome));
    if (r) {
      at.http_status = r->outcome.http_status;
      at.generation_id = r->generation_id;
      at.inference_id = r->inference_id;
      at.credits = r->credits;
      at.usd = r->usd;
    }
    out.settled = s.settle_attempt(at);
    if (out.settled) {
      out.moved = next(s);
    }
  });
  if (!out.settled) {
    log::warning("job.stale_settlement", {{"job", job_id}, {"attempt", attempt},
                                          {"outcome", common::to_string(outcome)}});
  }
  co_return out;
}

store::JobError make_job_error(common::ErrorCode code, std::string message, std::optional<int> http)
{
  return store::JobError{std::string(common::to_string(code)), std::move(message), http};
}

std::string now_text() { return format_rfc3339(now_utc()); }

} // namespace klingd::engine
