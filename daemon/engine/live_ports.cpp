// The engine's ports over the real ProviderClient and Downloader (ports.hpp).
#include "daemon/engine/ports.hpp"

#include "daemon/provider/http_client.hpp"

namespace klingd::engine {

namespace asio = boost::asio;

namespace {

class LiveProvider final : public ProviderPort
{
public:
  LiveProvider(provider::HttpClient& http, provider::ProviderClient::Options options) : m_http(http), m_client(http, std::move(options)) {}

  asio::awaitable<provider::CreateResult> create(common::Family family, std::string body, std::string crid) override
  {
    return m_client.create(family, std::move(body), std::move(crid));
  }
  asio::awaitable<provider::PollResult> poll(common::Family family, std::string generation_id) override
  {
    return m_client.poll(family, std::move(generation_id));
  }
  asio::awaitable<provider::LogPage> logs(std::string start, std::string end, std::vector<std::string> models,
                                          int limit, int offset) override
  {
    return m_client.logs(std::move(start), std::move(end), std::move(models), limit, offset);
  }
  asio::awaitable<provider::Balance> balance() override { return m_client.balance(); }
  asio::awaitable<provider::TransactionPage> transactions(std::optional<std::string> cursor,
                                                          provider::TransactionQuery query) override
  {
    return m_client.transactions(std::move(cursor), std::move(query));
  }
  void set_options(provider::ProviderClient::Options options) override { m_client.set_options(std::move(options)); }
  void close_all() override { m_http.close_all(); }

private:
  provider::HttpClient& m_http;
  provider::ProviderClient m_client;
};

class LiveFetcher final : public FetchPort
{
public:
  LiveFetcher(provider::HttpClient& http, asio::any_io_executor ex) : m_downloader(http, ex) {}
  asio::awaitable<DownloadOutcome> fetch(DownloadTask task) override { return m_downloader.fetch(std::move(task)); }

private:
  Downloader m_downloader;
};

} // namespace

LivePorts make_live_ports(asio::any_io_executor ex, const std::string& ca_file, provider::ProviderClient::Options options)
{
  auto http = std::make_shared<provider::HttpClient>(ex, provider::HttpClient::Options{ca_file});
  LivePorts ports;
  ports.provider = std::make_unique<LiveProvider>(*http, std::move(options));
  ports.fetcher = std::make_unique<LiveFetcher>(*http, ex);
  ports.keep = http;
  return ports;
}

} // namespace klingd::engine
