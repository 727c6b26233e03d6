// Engine: drives jobs through create → poll → download (docs/contract.md §3). A thin façade
// over its parts (ARCHITECTURE.md "Life of a job"): Dispatcher, ActorSet with CreateStep,
// Poller and DownloadStep, Reconciler, CostCollector, Recovery, sharing one Core.
// The socket API talks to it only through this interface.
#pragma once

#include "common/config.hpp"
#include "common/result.hpp"
#include "daemon/store/job_store.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
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

class ProviderPort;
class FetchPort;

struct EngineStatus
{
  int submitting = 0;    // create calls in flight
  int generating = 0;    // jobs being polled
  int downloading = 0;   // downloads running
  int in_flight = 0;     // submitting + generating (what max_in_flight limits)
  int reconciling = 0;   // ambiguous creates being settled
  std::optional<std::string> paused; // null, or why dispatch of new creates is stopped (incl. the daily budget)
  std::vector<std::string> budget_blocked_batches; // batches waiting because their max_usd is reached
  double max_usd_per_day = 0;
  int max_in_flight = 0;
  double creates_per_minute = 0;
  int download_max_concurrent = 0;
  std::optional<double> balance_usd;             // as GET /v2/billing last said
  std::optional<std::string> balance_checked_at; // when (RFC 3339)
};

// Why cancel or retry refused a job; the API maps each to its status (api::from_engine).
enum class ActionError { not_found, conflict };
std::string_view to_string(ActionError error);

struct ActionRefusal
{
  ActionError code;
  std::string message;
};
using ActionResult = Result<store::Job, ActionRefusal>;

class Engine
{
public:
  Engine(boost::asio::any_io_executor ex, const common::Config& config, const common::Catalog& catalog,
         store::JobStore& store, store::GroupCommitter& committer, Metrics& metrics);
  // With other ports than the real provider and downloader (the engine's unit tests).
  Engine(boost::asio::any_io_executor ex, const common::Config& config, const common::Catalog& catalog,
         store::JobStore& store, store::GroupCommitter& committer, Metrics& metrics, ProviderPort& provider,
         FetchPort& fetcher);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Resumes every non-terminal job (docs/contract.md §3.7) and starts the dispatcher.
  boost::asio::awaitable<void> start();

  // New queued jobs were committed: dispatch them when limits allow.
  void wake_dispatcher();

  // Cancels a non-terminal job. Refused: not_found, conflict (already terminal).
  boost::asio::awaitable<ActionResult> cancel(std::string id);
  // Re-queues a failed or canceled job; resumes polling instead when it holds a
  // generation the provider never reported failed; and while the create of its last attempt
  // is still unsettled (it may have been billed), returns it to `submitting` to wait for that
  // settlement instead of sending another. Refused: not_found, conflict.
  boost::asio::awaitable<ActionResult> retry(std::string id);

  // The expected cost of a create of `request_json` (normalised request text) for `model`: the
  // figure the budgets use (docs/contract.md §3.6); nullopt when nothing is known.
  std::optional<double> expected_cost(const std::string& model, const std::string& request_json) const;

  // Stops / restarts dispatch of new create calls. Polls and downloads go on.
  void pause(std::string reason);
  void resume();
  EngineStatus status() const;

  // Applies a reloaded configuration (limits, poll and retry settings, the key).
  void reconfigure(const common::Config& config);

  // Stops dispatching, lets in-flight requests finish within `grace`, then
  // cancels the rest; every job stays resumable.
  boost::asio::awaitable<void> shutdown(std::chrono::milliseconds grace);

private:
  class Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace klingd::engine
