// GET /v2/logs: the provider's request log, as docs/provider.md documents it.
#include "tests/fake_provider/app.hpp"

#include "tests/fake_provider/support.hpp"

#include <boost/json.hpp>
#include <boost/url.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace fake {

namespace json = boost::json;

namespace {

std::optional<std::int64_t> parse_int(std::string_view s)
{
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty()) {
    return std::nullopt;
  }
  return v;
}

constexpr double k_max_window_s = 92.0 * 86400.0;

} // namespace

Reply App::handle_logs(const Request& request, const ApiCall& call)
{
  if (!m_config.logs_enabled) {
    return error_reply(http::status::not_found, "Cannot GET /v2/logs", call);
  }
  ++m_state.logs_requests;
  const double now_mono = mono_now();
  auto& times = m_state.logs_times;
  while (!times.empty() && times.front() <= now_mono - 60.0) {
    times.pop_front();
  }
  if (static_cast<int>(times.size()) >= m_config.logs_rate_limit) {
    ++m_state.logs_rate_limited;
    Reply reply = error_reply(http::status::too_many_requests, "Too many requests", call);
    double wait = times.empty() ? 60.0 : times.front() + 60.0 - now_mono;
    reply.response.set(http::field::retry_after, fmt::format("{}", std::max(1.0, std::ceil(wait))));
    return reply;
  }
  times.push_back(now_mono);

  const FaultType fault = m_state.faults.decide(EndpointKind::logs, m_config);
  if (auto reply = generic_fault_reply(fault, call)) {
    return std::move(*reply);
  }

  std::optional<std::string> period;
  std::optional<std::string> start_text;
  std::optional<std::string> end_text;
  std::vector<std::string> models;
  std::vector<std::string> statuses;
  std::int64_t limit = 50;
  std::int64_t offset = 0;
  auto url = boost::urls::parse_origin_form(request.target());
  if (!url) {
    return error_reply(http::status::bad_request, "Invalid query string", call);
  }
  for (auto param : url->params()) {
    if (param.key == "period") {
      period = param.value;
    } else if (param.key == "start") {
      start_text = param.value;
    } else if (param.key == "end") {
      end_text = param.value;
    } else if (param.key == "model") {
      models.push_back(param.value);
    } else if (param.key == "status") {
      if (param.value != "succeeded" && param.value != "failed") {
        return error_reply(http::status::bad_request,
                           fmt::format("status: Invalid enum value. Expected 'succeeded' | 'failed', received '{}'",
                                       param.value),
                           call);
      }
      statuses.push_back(param.value);
    } else if (param.key == "limit") {
      auto n = parse_int(param.value);
      if (!n || *n < 1 || *n > 100) {
        return error_reply(http::status::bad_request, "limit: Number must be between 1 and 100", call);
      }
      limit = *n;
    } else if (param.key == "offset") {
      auto n = parse_int(param.value);
      if (!n || *n < 0) {
        return error_reply(http::status::bad_request, "offset: Number must be greater than or equal to 0", call);
      }
      offset = *n;
    }
  }

  const double now_wall = wall_now();
  double window_start = now_wall - 86400.0;
  double window_end = now_wall;
  if (start_text || end_text) {
    if (period) {
      return error_reply(http::status::bad_request, "period: give period or start and end, not both", call);
    }
    if (!start_text || !end_text) {
      return error_reply(http::status::bad_request,
                         start_text ? "end: Required with start" : "start: Required with end", call);
    }
    auto s = parse_iso8601(*start_text);
    auto e = parse_iso8601(*end_text);
    if (!s) {
      return error_reply(http::status::bad_request, "start: Invalid ISO-8601 date", call);
    }
    if (!e) {
      return error_reply(http::status::bad_request, "end: Invalid ISO-8601 date", call);
    }
    if (*e < *s) {
      return error_reply(http::status::bad_request, "end: must not be before start", call);
    }
    if (*e - *s > k_max_window_s) {
      return error_reply(http::status::bad_request, "end: the window must not exceed 92 days", call);
    }
    window_start = *s;
    window_end = *e;
  } else if (period) {
    if (*period == "24h") {
      window_start = now_wall - 86400.0;
    } else if (*period == "7d") {
      window_start = now_wall - 7 * 86400.0;
    } else {
      return error_reply(http::status::bad_request,
                         fmt::format("period: Invalid enum value. Expected '24h' | '7d', received '{}'", *period),
                         call);
    }
  }

  auto row_status = [&](const LogRow& row) {
    if (!row.generation) {
      return "failed";
    }
    const Generation& g = *row.generation;
    return g.fails && g.phase_at(now_mono) == Phase::failed ? "failed" : "succeeded";
  };
  auto contains = [](const std::vector<std::string>& list, std::string_view v) {
    return list.empty() || std::find(list.begin(), list.end(), v) != list.end();
  };

  std::vector<const LogRow*> matching;
  for (auto it = m_state.log_rows.rbegin(); it != m_state.log_rows.rend(); ++it) {
    const LogRow& row = *it;
    if (now_mono < row.created_mono + m_config.logs_delay_s) {
      continue; // the analytics pipeline has not caught up yet
    }
    if (row.created_wall < window_start || row.created_wall > window_end
        || !contains(models, row.model) || !contains(statuses, row_status(row))) {
      continue;
    }
    matching.push_back(&row);
  }

  json::array data;
  const auto total = static_cast<std::int64_t>(matching.size());
  for (std::int64_t i = offset; i < std::min(total, offset + limit); ++i) {
    const LogRow& row = *matching[static_cast<std::size_t>(i)];
    const Generation* g = row.generation;
    // The provider records a video's charge once it completed; failures cost nothing.
    const bool charged = g && !row.is_poll && g->phase_at(now_mono) == Phase::completed;
    data.push_back(json::object{
      {"created", iso8601(row.created_wall)},
      {"status", row_status(row)},
      {"origin", "api"},
      {"model", row.model},
      {"cost", json::object{{"usd", charged ? g->usd : 0.0}, {"credits", charged ? g->credits : 0}}},
      {"tokens", 0},
      {"request_id", row.request_id},
      {"inference_id", g ? json::value(g->id) : json::value(nullptr)},
      {"client_request_id",
       row.client_request_id.empty() ? json::value(nullptr) : json::value(row.client_request_id)},
    });
  }
  json::object body{
    {"data", std::move(data)},
    {"pagination", json::object{{"limit", limit},
                                {"offset", offset},
                                {"total", total},
                                {"has_more", offset + limit < total}}},
  };
  return read_reply(body, fault, call);
}

} // namespace fake
