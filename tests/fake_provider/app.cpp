// Routing, the shared reply builders and the admin API.
#include "tests/fake_provider/app.hpp"

#include "tests/fake_provider/support.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/url.hpp>
#include <fmt/format.h>

namespace fake {

namespace asio = boost::asio;
namespace json = boost::json;

App::App(asio::any_io_executor executor, FakeConfig startup,
         std::shared_ptr<const std::string> base_mp4, std::string scheme)
  : m_executor(std::move(executor))
  , m_startup(startup)
  , m_config(std::move(startup))
  , m_base_mp4(std::move(base_mp4))
  , m_scheme(std::move(scheme))
  , m_hasher(std::make_unique<VideoHasher>())
{
  m_url_secret = fmt::format("{:016x}{:016x}", mix64(m_config.seed ^ 0x5ec2e7),
                             mix64(m_config.seed + 0x5ec2e7));
  m_opened_wall = wall_now();
}

App::~App() = default;

void App::set_startup_script(std::vector<ScriptStep> steps)
{
  m_startup_script = std::move(steps);
  m_state.faults.set_script(m_startup_script);
}

void App::on_connection_open()
{
  ++m_connections_open;
  m_connections_peak = std::max(m_connections_peak, m_connections_open);
}

Reply App::json_reply(http::status status, const json::value& body, const ApiCall& call) const
{
  Reply reply;
  reply.response.result(status);
  reply.response.set(http::field::content_type, "application/json; charset=utf-8");
  if (!call.client_request_id.empty()) {
    reply.response.set("x-client-request-id", call.client_request_id);
  }
  reply.response.body() = json::serialize(body);
  return reply;
}

Reply App::error_reply(http::status status, std::string_view message, const ApiCall& call) const
{
  int code = static_cast<int>(status);
  json::value status_code = m_config.status_code_as_string ? json::value(std::to_string(code))
                                                           : json::value(code);
  return json_reply(status,
                    json::object{{"message", message},
                                 {"path", call.path},
                                 {"requestId", call.request_id},
                                 {"statusCode", std::move(status_code)},
                                 {"timestamp", iso8601(wall_now())}},
                    call);
}

std::optional<Reply> App::generic_fault_reply(FaultType fault, const ApiCall& call) const
{
  switch (fault) {
  case FaultType::error_500:
  case FaultType::error_500_after_create:
    return error_reply(http::status::internal_server_error, "Internal server error", call);
  case FaultType::error_502:
    return error_reply(http::status::bad_gateway, "Bad gateway", call);
  case FaultType::error_503:
    return error_reply(http::status::service_unavailable, "Service temporarily unavailable", call);
  case FaultType::error_504:
  case FaultType::error_504_after_create:
    return error_reply(http::status::gateway_timeout, "Generation timeout", call);
  case FaultType::rate_limit_account:
    // Upstream Kling reports arrears and empty resource packs as 429; waiting does not help.
    return error_reply(http::status::too_many_requests, m_config.account_429_message, call);
  case FaultType::rate_limit:
  case FaultType::rate_limit_no_retry_after: {
    Reply reply = error_reply(http::status::too_many_requests, "Too many requests", call);
    if (fault == FaultType::rate_limit) {
      reply.response.set(http::field::retry_after,
                         fmt::format("{}", std::max(0.0, m_config.retry_after_s)));
    }
    return reply;
  }
  case FaultType::reset:
  case FaultType::reset_after_create: {
    Reply reply;
    reply.reset = true;
    return reply;
  }
  default:
    return std::nullopt;
  }
}

Reply App::malformed_reply(const json::value& intended, const ApiCall& call) const
{
  // A real-looking JSON prefix cut mid-token: parsers must fail, not guess.
  std::string text = json::serialize(intended);
  text.resize(text.size() / 2);
  text += "\"<!-- upstream";
  Reply reply = json_reply(http::status::ok, json::object{}, call);
  reply.response.body() = std::move(text);
  return reply;
}

Reply App::read_reply(const json::value& body, FaultType fault, const ApiCall& call) const
{
  if (fault == FaultType::malformed_json) {
    return malformed_reply(body, call);
  }
  Reply reply = json_reply(http::status::ok, body, call);
  if (fault == FaultType::slow) {
    reply.delay_s = m_config.slow_delay_s;
  }
  return reply;
}

asio::awaitable<Reply> App::handle(Request request)
{
  ++m_state.requests;
  std::string target(request.target());
  std::string path = target.substr(0, target.find('?'));
  const auto method = request.method();

  if (path.starts_with("/__admin/")) {
    co_return co_await handle_admin(request);
  }
  if (path.starts_with("/cdn/")) {
    co_return handle_download(request);
  }

  ApiCall call;
  call.request_id = make_request_id(m_config.seed, ++m_request_ordinal);
  call.path = path;
  std::string host(request[http::field::host]);
  call.base_url = m_scheme + "://" + (host.empty() ? std::string("127.0.0.1") : host);
  if (auto it = request.find("x-client-request-id"); it != request.end()) {
    if (valid_client_request_id(it->value())) {
      call.client_request_id = std::string(it->value());
    }
  }

  const bool universal = path == "/v2/video/generations";
  const bool legacy = path == "/v2/generate/video/kling/generation";
  const bool logs = path == "/v2/logs";
  const bool billing = path == "/v2/billing" || path == "/v2/billing/transactions";
  if (!universal && !legacy && !logs && !billing) {
    co_return error_reply(http::status::not_found,
                          fmt::format("Cannot {} {}", std::string_view(request.method_string()), path),
                          call);
  }

  std::string_view auth = request[http::field::authorization];
  const bool bearer = auth.size() > 7 && (auth.substr(0, 7) == "Bearer " || auth.substr(0, 7) == "bearer ");
  if (!bearer || auth.substr(7) != m_config.api_key) {
    ++m_state.auth_failures;
    co_return error_reply(http::status::unauthorized, "Invalid API key", call);
  }

  if (logs && method == http::verb::get) {
    co_return handle_logs(request, call);
  }
  if (billing && method == http::verb::get) {
    co_return handle_billing(request, call, path == "/v2/billing/transactions");
  }
  if ((universal || legacy) && method == http::verb::post) {
    co_return handle_create(request, legacy, call);
  }
  if ((universal || legacy) && method == http::verb::get) {
    co_return handle_poll(request, call);
  }
  co_return error_reply(http::status::not_found,
                        fmt::format("Cannot {} {}", std::string_view(request.method_string()), path),
                        call);
}

asio::awaitable<json::value> App::stats_json(bool with_sha)
{
  const double now = mono_now();
  if (with_sha) {
    for (std::size_t i = 0; i < m_state.generations.size(); ++i) {
      Generation& g = *m_state.generations[i];
      if (g.sha256 || g.phase_at(now) != Phase::completed) {
        continue;
      }
      // Hash in slices, yielding to the loop between them; re-find the generation after
      // each pause (a reset may have run meanwhile).
      auto layout = g.video;
      const std::uint64_t epoch = m_epoch;
      std::optional<std::string> sha;
      while (!(sha = m_hasher->step(*layout, k_hash_slice))) {
        co_await asio::post(m_executor, asio::use_awaitable);
        if (epoch != m_epoch) {
          break;
        }
      }
      if (epoch == m_epoch && i < m_state.generations.size()) {
        m_state.generations[i]->sha256 = std::move(*sha);
      }
    }
  }

  while (!m_state.finish_times.empty() && m_state.finish_times.top() <= now) {
    m_state.finish_times.pop();
  }
  json::array bodies;
  std::uint64_t duplicates = 0;
  for (const auto& b : m_state.bodies) {
    bodies.push_back(json::object{{"body", b.body}, {"calls", b.calls}, {"recorded", b.recorded}});
    duplicates += b.recorded > 1 ? 1 : 0;
  }
  auto counts_json = [](const std::map<std::string, CallCount>& counts) {
    json::object out;
    for (const auto& [key, c] : counts) {
      out[key] = json::object{{"calls", c.calls}, {"recorded", c.recorded}};
    }
    return out;
  };
  json::array generations;
  for (const auto& g : m_state.generations) {
    Phase phase = g->phase_at(now);
    generations.push_back(json::object{
      {"id", g->id},
      {"model", g->model},
      {"family", g->legacy_family ? "legacy" : "universal"},
      {"client_request_id", g->client_request_id.empty() ? json::value(nullptr) : json::value(g->client_request_id)},
      {"status", g->status_word(phase, now)},
      {"created", iso8601(g->created_wall)},
      {"duration", g->duration},
      {"finished", iso8601(g->finished_wall())},
      {"file_size", g->video->size()},
      {"sha256", g->sha256 ? json::value(*g->sha256) : json::value(nullptr)},
      {"cost", json::object{{"usd", g->usd}, {"credits", g->credits}}},
      {"charged", json::object{{"usd", g->charged_usd}, {"credits", g->charged_credits}}},
      {"refunded", g->refunded},
      {"provider_asked", g->route_asked.empty() ? json::value(nullptr) : json::value(g->route_asked)},
      {"provider_served", g->served},
      {"polls", g->polls},
      {"downloads", g->downloads},
    });
  }
  const auto& s = m_state;
  co_return json::object{
    {"requests", s.requests},
    {"auth_failures", s.auth_failures},
    {"create_calls", s.create_calls},
    {"creates_recorded", s.creates_recorded},
    {"creates_rejected", s.creates_rejected},
    {"create_calls_by_body", std::move(bodies)},
    {"duplicate_bodies", duplicates},
    {"create_calls_by_job", counts_json(s.by_job)},
    {"create_calls_by_client_request_id", counts_json(s.by_client_request_id)},
    {"polls", s.polls},
    {"polls_unknown", s.polls_unknown},
    {"downloads", s.downloads},
    {"downloads_completed", s.downloads_completed},
    {"downloads_rejected", s.downloads_rejected},
    {"bytes_served", s.bytes_served},
    {"logs_requests", s.logs_requests},
    {"logs_rate_limited", s.logs_rate_limited},
    {"billing_requests", s.billing_requests},
    {"balance_usd", current_balance()},
    {"faults", s.faults.injected_json()},
    {"faults_total", s.faults.injected_total()},
    {"script_pending", s.faults.script_json()},
    {"in_flight", s.in_flight},
    {"max_in_flight", s.max_in_flight},
    {"generating", s.finish_times.size()},
    {"max_generating", s.max_generating},
    {"creates_per_minute_peak", s.creates_per_minute_peak},
    {"connections_open", m_connections_open},
    {"connections_peak", m_connections_peak},
    {"generations", std::move(generations)},
  };
}

asio::awaitable<Reply> App::handle_admin(const Request& request)
{
  ApiCall call;
  call.path = std::string(request.target());
  auto url = boost::urls::parse_origin_form(request.target());
  std::string path = url ? std::string(url->path()) : call.path;
  auto bad = [&](std::string message) {
    return json_reply(http::status::bad_request, json::object{{"error", std::move(message)}}, call);
  };
  json::object body;
  if (request.method() == http::verb::post && !request.body().empty()) {
    boost::system::error_code ec;
    json::value v = json::parse(request.body(), ec);
    if (ec || !v.is_object()) {
      co_return bad("the body must be a JSON object");
    }
    body = std::move(v.get_object());
  }

  if (path == "/__admin/stats" && request.method() == http::verb::get) {
    bool with_sha = true;
    if (url) {
      for (auto param : url->params()) {
        if (param.key == "sha256" && (param.value == "0" || param.value == "false")) {
          with_sha = false;
        }
      }
    }
    co_return json_reply(http::status::ok, co_await stats_json(with_sha), call);
  }
  if (path == "/__admin/config" && (request.method() == http::verb::get || request.method() == http::verb::post)) {
    if (request.method() == http::verb::post) {
      std::optional<std::vector<ScriptStep>> script;
      auto err = apply_config(m_config, body, script);
      if (!err.empty()) {
        co_return bad(std::move(err));
      }
      if (script) {
        m_state.faults.set_script(*script);
      }
    }
    json::object out = config_to_json(m_config);
    out["script_pending"] = m_state.faults.script_json();
    co_return json_reply(http::status::ok, out, call);
  }
  if (path == "/__admin/reset" && request.method() == http::verb::post) {
    auto keep = body.if_contains("keep_config");
    if (!(keep && keep->is_bool() && keep->get_bool())) {
      m_config = m_startup;
    }
    m_state = State{};
    m_opened_wall = wall_now();
    if (!(keep && keep->is_bool() && keep->get_bool())) {
      m_state.faults.set_script(m_startup_script);
    }
    ++m_epoch;
    co_return json_reply(http::status::ok, json::object{{"reset", true}}, call);
  }
  co_return json_reply(http::status::not_found, json::object{{"error", "unknown admin endpoint"}}, call);
}

} // namespace fake
