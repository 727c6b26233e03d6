// The engine's two ways out: the provider's API and the video downloader, as small
// interfaces. The daemon plugs in the real ProviderClient and Downloader (live_ports.cpp);
// the engine's unit tests plug in scripted ones (tests/unit/engine_script.hpp), so the
// engine's rules — attempt fencing, cancel/retry races, the absence proof, the deadline
// poll — are tested in milliseconds without a network.
#pragma once

#include "common/catalog.hpp"
#include "daemon/engine/downloader.hpp"
#include "daemon/provider/provider_client.hpp"

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>
#include <vector>

namespace klingd::engine {

class ProviderPort
{
public:
  virtual ~ProviderPort() = default;
  // The create call; `client_request_id` goes out as X-Client-Request-Id.
  virtual boost::asio::awaitable<provider::CreateResult> create(common::Family family, std::string body,
                                                                std::string client_request_id) = 0;
  virtual boost::asio::awaitable<provider::PollResult> poll(common::Family family, std::string generation_id) = 0;
  // One page of GET /v2/logs, newest first, for [start, end] and these models (none: all).
  virtual boost::asio::awaitable<provider::LogPage> logs(std::string start, std::string end,
                                                         std::vector<std::string> models, int limit, int offset) = 0;
  // GET /v2/billing: the account's balance.
  virtual boost::asio::awaitable<provider::Balance> balance() = 0;
  // One page of GET /v2/billing/transactions (newest first); `cursor` from the previous page.
  virtual boost::asio::awaitable<provider::TransactionPage> transactions(std::optional<std::string> cursor,
                                                                         provider::TransactionQuery query) = 0;
  virtual void set_options(provider::ProviderClient::Options options) = 0;
  // Drops idle keep-alive connections (shutdown).
  virtual void close_all() = 0;
};

class FetchPort
{
public:
  virtual ~FetchPort() = default;
  virtual boost::asio::awaitable<DownloadOutcome> fetch(DownloadTask task) = 0;
};

// The real ones: an HTTPS keep-alive pool shared by both (CA file from the config).
struct LivePorts
{
  std::shared_ptr<void> keep; // what both use (the HTTP client); declared first, destroyed last
  std::unique_ptr<ProviderPort> provider;
  std::unique_ptr<FetchPort> fetcher;
};
LivePorts make_live_ports(boost::asio::any_io_executor ex, const std::string& ca_file,
                          provider::ProviderClient::Options options);

} // namespace klingd::engine
