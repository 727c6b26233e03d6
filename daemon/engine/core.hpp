// What the engine's parts share: their dependencies (config, catalog, store, committer,
// metrics, the provider and downloader ports), the limits every part respects (rate windows,
// slots), dispatch pause, and the owner registry — one owner per job at a time (its actor,
// the reconciler, or nobody; docs/contract.md §3.2). Each part (dispatcher.hpp,
// create_step.hpp, poller.hpp, download_step.hpp, reconciler.hpp, cost_collector.hpp,
// recovery.hpp) holds a reference to the one Core of its Engine.
#pragma once

#include "common/config.hpp"
#include "common/job.hpp"
#include "common/time.hpp"
#include "daemon/engine/async_semaphore.hpp"
#include "daemon/engine/generation_times.hpp"
#include "daemon/engine/ports.hpp"
#include "daemon/engine/schedule.hpp"
#include "daemon/notifier/notifier.hpp"
#include "daemon/store/job_store.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace klingd {
class Metrics;
namespace common {
class Catalog;
}
namespace store {
class GroupCommitter;
}
} // namespace klingd

namespace klingd::engine {

// Who drives a job. An id has at most one owner; nobody else moves it, except a user's cancel
// (which only ever stops work) and a retry that the owner rules allow (Engine::retry).
enum class Owner { actor, reconciler };

// Expected cost of jobs picked for dispatch but not yet `submitting` in the store (waiting for
// a create slot): the store's spend figures do not count them yet, the budgets must.
struct Claims
{
  std::size_t count = 0;
  double usd = 0;
  std::unordered_map<std::string, double> by_batch;

  void add(const std::string& batch, double expected);
  void remove(const std::string& batch, double expected);
  double batch_usd(const std::string& batch) const;
};

// How a create attempt's settlement went: `settled` false means the fence refused it (the
// attempt was settled already, or is no longer the job's current one) and nothing was written.
struct Settlement
{
  bool settled = false;
  bool moved = false; // what `next` returned
};

class Core
{
public:
  Core(boost::asio::any_io_executor ex, const common::Config& config, const common::Catalog& catalog,
       store::JobStore& store, store::GroupCommitter& committer, Metrics& metrics, ProviderPort& provider,
       FetchPort& fetcher);

  boost::asio::any_io_executor ex;
  common::Config config;
  const common::Catalog& catalog;
  store::JobStore& store;
  store::GroupCommitter& committer;
  Metrics& metrics;
  ProviderPort& provider;
  FetchPort& fetcher;

  Notifier dispatch_wake;
  Notifier reconcile_wake;
  RateWindow create_rate;
  RateWindow logs_rate{60}; // request-log queries: well under the documented 200 per minute
  AsyncSemaphore poll_slots;
  AsyncSemaphore create_slots;
  AsyncSemaphore download_slots;
  std::mt19937_64 rng;

  GenerationTimes generation_times; // learned per model (poll.learn); loaded by Recovery::start
  std::unordered_map<std::string, Clock::time_point> not_before; // queued jobs backing off
  Claims claims;
  int in_flight = 0; // actors counted against provider.max_in_flight
  bool stopping = false;

  // --- owners ---
  // Takes `id` for `o`; false (and nothing changes) when someone owns it already.
  bool claim(const std::string& id, Owner o);
  // Gives `id` up, only if `o` owns it.
  void release(const std::string& id, Owner o);
  std::optional<Owner> owner(const std::string& id) const;
  std::size_t owned_by(Owner o) const;
  // Counted against provider.max_in_flight: actors that are submitting or generating, and
  // creates being settled (they may turn out to be generating).
  int in_flight_total() const { return in_flight + static_cast<int>(owned_by(Owner::reconciler)); }

  // Moves `id` from owner `from` to `to`; false when `from` does not own it.
  bool transfer(const std::string& id, Owner from, Owner to);

  // Set by the Engine: starts an actor for a job (false when the job has an owner already),
  // and hands a job whose step failed (the store could not commit) to recovery.
  std::function<bool(store::Job job, bool resumed)> start_actor;
  std::function<void(const std::string& id)> recover;
  std::function<void(const std::string& id)> recover_succeeded; // its actor ended without an error
  // Runs one job's step outside its actor; a failure hands the job to `recover` instead of
  // ending the loop that ran it.
  boost::asio::awaitable<void> guarded(std::string id, boost::asio::awaitable<void> step);

  // --- account balance (BalanceWatch) ---
  std::optional<double> balance_usd;
  std::optional<std::string> balance_checked_at;
  double spent_since_balance = 0; // expected cost of creates dispatched since that reading
  // Jobs whose creates are answered plain 429, since when (retry.rate_limited_max_s).
  std::unordered_map<std::string, Clock::time_point> rate_limited_since;

  // --- pause ---
  std::optional<std::string> paused;
  bool pause_is_account = false;
  bool pause_is_balance = false; // lifted by the next balance reading that shows enough
  void pause(std::string reason, bool account);
  void resume();

  // --- shared steps ---
  boost::asio::awaitable<void> sleep(Clock::duration d);
  // Runs one of the engine's loops a step at a time until the engine stops; a step that throws
  // (the store could not commit: disk full, I/O error) is logged and the loop goes on after a
  // pause growing from 1 s to 30 s, instead of ending for good.
  boost::asio::awaitable<void> keep_running(const char* name, std::function<boost::asio::awaitable<void>()> step);
  // Settles create attempt `attempt` of `job_id` with `outcome` (and the figures of `r`), then
  // runs `next` for the job's next state — both in one savepoint, fenced by the attempt
  // (JobStore::settle_attempt): a stale settlement writes nothing and `next` does not run.
  boost::asio::awaitable<Settlement> settle_create(const std::string& job_id, int attempt,
                                                   common::AttemptOutcome outcome, const provider::CreateResult* r,
                                                   std::function<bool(store::JobStore&)> next);

  // Settles the attempt and fails the job (`submitting` → failed) with `code`; a canceled job
  // only gets the settlement.
  boost::asio::awaitable<void> fail_create(const std::string& job_id, int attempt, common::AttemptOutcome outcome,
                                           const provider::CreateResult* r, common::ErrorCode code,
                                           std::string message);

  // A create step ended and gave its slot back: after a burst of them (1,000 since the last
  // time), once no create is on the wire, hands the heap's free pages back to the system.
  void create_settled();

private:
  int m_creates_since_trim = 0;
  std::unordered_map<std::string, Owner> m_owners;
  std::size_t m_owned[2] = {0, 0}; // by Owner: in_flight_total() runs every dispatch round
};

// The ids in `entries` (id → something with a `next_check`) whose next_check has come; `next`
// becomes the earliest other next_check, at most 5 s away.
template <typename Map>
std::vector<std::string> due_now(const Map& entries, Clock::time_point now, Clock::time_point& next)
{
  std::vector<std::string> due;
  next = now + std::chrono::seconds(5);
  for (const auto& [id, entry] : entries) {
    if (entry.next_check <= now) {
      due.push_back(id);
    } else {
      next = std::min(next, entry.next_check);
    }
  }
  return due;
}

store::JobError make_job_error(common::ErrorCode code, std::string message, std::optional<int> http = std::nullopt);
std::string now_text();
inline Millis seconds(double s) { return Millis(static_cast<std::int64_t>(s * 1000.0)); }
// The pause reason when no key is configured.
inline constexpr const char* k_no_key_reason =
  "no API key configured (provider.api_key_file, $CREDENTIALS_DIRECTORY/aimlapi_key or AIMLAPI_KEY)";

} // namespace klingd::engine
