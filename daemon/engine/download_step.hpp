// DownloadStep: fetches a finished generation's MP4 into the store (docs/contract.md §3.5)
// through the FetchPort, refreshes an expired signed URL by polling once before counting a
// failure, retries transient failures within retry.max_attempts. The partial file is named
// for its generation (`<output>.<tag>.part`): a part of an earlier generation is never
// resumed into a later one's file, and every path that ends a download without it removes it.
#pragma once

#include "daemon/engine/actor.hpp"
#include "daemon/engine/poller.hpp"

#include <filesystem>

namespace klingd::engine {

enum class DownloadEnd { completed, failed };

class DownloadStep
{
public:
  DownloadStep(Core& core, Poller& poller) : m_core(core), m_poller(poller) {}

  boost::asio::awaitable<DownloadEnd> run(store::Job job, Actor& a);

  static std::filesystem::path final_path(const common::Config& config, const store::Job& job);
  // The .part for the job's current generation.
  static std::filesystem::path part_path(const common::Config& config, const store::Job& job);
  // Removes the .part of the job's current generation (and the unnamed one of older versions).
  // Called on every path that gives a generation's download up: failure, cancel, retry.
  static void remove_parts(const common::Config& config, const store::Job& job);

private:
  enum class Refresh { refreshed, unchanged, failed_job };
  boost::asio::awaitable<Refresh> refresh_url(store::Job& job, Actor& a);
  boost::asio::awaitable<void> fail(const store::Job& job, Actor& a, common::ErrorCode code, std::string message,
                                    std::optional<int> http = std::nullopt);

  Core& m_core;
  Poller& m_poller;
};

} // namespace klingd::engine
