// The provider client's I/O half: the requests, each answer handed to provider_parse.cpp.
#include "daemon/provider/provider_client.hpp"

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <fmt/format.h>

#include <algorithm>

namespace klingd::provider {

ProviderClient::ProviderClient(HttpClient& http, Options options) : m_http(http), m_options(std::move(options)) {}

std::string ProviderClient::endpoint(common::Family family) const
{
  return m_options.base_url
         + (family == common::Family::legacy ? "/v2/generate/video/kling/generation" : "/v2/video/generations");
}

boost::asio::awaitable<CreateResult> ProviderClient::create(common::Family family, std::string body,
                                                            std::string client_request_id)
{
  HttpRequest req;
  req.method = "POST";
  req.url = endpoint(family);
  req.headers = {{"Authorization", "Bearer " + m_options.api_key},
                 {"Content-Type", "application/json"},
                 {"Accept", "application/json"},
                 {"X-Client-Request-Id", client_request_id}};
  req.body = std::move(body);
  req.timeout = m_options.timeout;
  req.idempotent = false;
  auto r = co_await m_http.request(std::move(req));
  co_return classify_create(r);
}

boost::asio::awaitable<PollResult> ProviderClient::poll(common::Family family, std::string generation_id)
{
  HttpRequest req;
  req.method = "GET";
  req.url = endpoint(family) + "?generation_id="
            + boost::urls::encode(generation_id, boost::urls::unreserved_chars);
  req.headers = {{"Authorization", "Bearer " + m_options.api_key}, {"Accept", "application/json"}};
  req.timeout = m_options.timeout;
  req.idempotent = true;
  auto r = co_await m_http.request(std::move(req));
  co_return classify_poll(r);
}

} // namespace klingd::provider

namespace klingd::provider {

boost::asio::awaitable<LogPage> ProviderClient::logs(std::string start, std::string end,
                                                     std::vector<std::string> models, int limit, int offset)
{
  auto enc = [](std::string_view v) { return boost::urls::encode(v, boost::urls::unreserved_chars); };
  std::string url = m_options.base_url + "/v2/logs?start=" + enc(start) + "&end=" + enc(end)
                    + fmt::format("&limit={}&offset={}", limit, offset);
  for (const auto& m : models) {
    url += "&model=" + enc(m); // repeated, never comma-joined (docs/provider.md)
  }
  HttpRequest req;
  req.method = "GET";
  req.url = std::move(url);
  req.headers = {{"Authorization", "Bearer " + m_options.api_key}, {"Accept", "application/json"}};
  req.timeout = m_options.timeout;
  auto r = co_await m_http.request(std::move(req));
  co_return classify_logs(r);
}

} // namespace klingd::provider

namespace klingd::provider {

namespace {

// One GET of a billing endpoint; `classify` turns the answer into the page type.
template <typename Page>
boost::asio::awaitable<Page> get_billing(HttpClient& http, const ProviderClient::Options& options, std::string url,
                                         Page (*classify)(const Result<HttpResponse, TransportError>&))
{
  HttpRequest req;
  req.method = "GET";
  req.url = std::move(url);
  req.headers = {{"Authorization", "Bearer " + options.api_key}, {"Accept", "application/json"}};
  req.timeout = options.timeout;
  req.idempotent = true;
  auto r = co_await http.request(std::move(req));
  co_return classify(r);
}

} // namespace

boost::asio::awaitable<Balance> ProviderClient::balance()
{
  co_return co_await get_billing<Balance>(m_http, m_options, m_options.base_url + "/v2/billing", classify_balance);
}

boost::asio::awaitable<TransactionPage> ProviderClient::transactions(std::optional<std::string> cursor,
                                                                     TransactionQuery query)
{
  auto enc = [](std::string_view v) { return boost::urls::encode(v, boost::urls::unreserved_chars); };
  std::string url = m_options.base_url + fmt::format("/v2/billing/transactions?limit={}", std::clamp(query.limit, 1, 100));
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"from", &query.from},
                                    {"to", &query.to}, {"direction", &query.direction}, {"type", &query.type}}) {
    if (!value->empty()) {
      url += fmt::format("&{}={}", name, enc(*value));
    }
  }
  if (cursor && !cursor->empty()) {
    url += "&cursor=" + enc(*cursor); // verbatim: the provider accepts only the form it issued
  }
  co_return co_await get_billing<TransactionPage>(m_http, m_options, std::move(url), classify_transactions);
}

} // namespace klingd::provider
