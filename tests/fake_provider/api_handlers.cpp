// The provider's generation endpoints: create (both families) and poll.
#include "tests/fake_provider/app.hpp"

#include "tests/fake_provider/model_table.hpp"
#include "tests/fake_provider/support.hpp"

#include <boost/json.hpp>
#include <boost/url.hpp>
#include <fmt/format.h>

#include <cmath>

namespace fake {

namespace json = boost::json;

namespace {

std::string job_prefix(const std::string& client_request_id)
{
  // <job id>.<attempt>: the job is everything before the last '.'.
  auto dot = client_request_id.rfind('.');
  return dot == std::string::npos ? client_request_id : client_request_id.substr(0, dot);
}

std::string usd_text(double usd)
{
  return fmt::format("{}", usd);
}

} // namespace

void App::note_create_call(double now)
{
  ++m_state.create_calls;
  auto& times = m_state.create_times;
  times.push_back(now);
  while (!times.empty() && times.front() <= now - 60.0) {
    times.pop_front();
  }
  m_state.creates_per_minute_peak = std::max<std::uint64_t>(m_state.creates_per_minute_peak, times.size());
}

void App::add_log_row(const ApiCall& call, std::string model, Generation* generation, bool is_poll)
{
  LogRow row;
  row.created_wall = wall_now();
  row.created_mono = mono_now();
  row.model = std::move(model);
  row.request_id = call.request_id;
  row.client_request_id = call.client_request_id;
  row.generation = generation;
  row.is_poll = is_poll;
  m_state.log_rows.push_back(std::move(row));
}

Generation& App::record_generation(const json::value& body, bool legacy, const ApiCall& call)
{
  auto g = std::make_unique<Generation>();
  g->serial = m_state.generations.size() + 1;
  g->model = std::string(body.at("model").get_string());
  g->id = make_generation_id(m_config.id_shape, m_config.seed, g->serial, g->model);
  g->legacy_family = legacy;
  g->client_request_id = call.client_request_id;
  g->request_id = call.request_id;
  g->created_wall = wall_now();
  g->created_mono = mono_now();
  g->queued_s = m_config.queued_s;
  g->legacy_statuses = m_config.status_style == "legacy";
  g->fails = unit_random(m_config.seed, 0xfa11, g->serial) < m_config.failure_rate;
  g->detail_error = m_config.failure_style == "detail"
                    || (m_config.failure_style == "mixed" && unit_random(m_config.seed, 0xde7a, g->serial) < 0.5);
  g->failure_status = m_config.failure_status;
  g->no_url_polls_left = m_config.completed_without_url_polls;
  g->duration = requested_duration(body);
  {
    auto by_model = m_config.generating_s_by_model.find(g->model);
    const double base = by_model != m_config.generating_s_by_model.end() ? by_model->second : m_config.generating_s;
    const double spread = (2 * unit_random(m_config.seed, 0x9e7e, g->serial) - 1) * m_config.generating_jitter;
    g->generating_s = (base + m_config.generating_per_video_s * g->duration) * (1 + spread);
  }
  auto price = m_config.prices.find(g->model);
  double rate = price != m_config.prices.end() ? price->second : usd_per_second(g->model);
  g->usd = std::round(rate * g->duration * 1e6) / 1e6;
  g->credits = std::llround(g->usd * m_config.credits_per_usd);
  g->charged_usd = std::round(g->usd * m_config.charge_factor * 1e6) / 1e6;
  g->charged_credits = std::llround(g->charged_usd * m_config.credits_per_usd);
  g->refunded = !g->fails && unit_random(m_config.seed, 0x4ef0, g->serial) < m_config.refund_rate;
  if (auto p = body.get_object().if_contains("provider"); p && p->is_string()) {
    g->route_asked = std::string(p->get_string());
  }
  // kling/klingai: native only; fal: the mirror; auto (the default): Kling, or the fallback
  // when auto_route says so. Models without the field always run on Kling.
  const auto route = takes_provider(g->model) ? route_of(g->route_asked).value_or("auto") : std::string("kling");
  g->served = route == "fal" || (route == "auto" && m_config.auto_route == "fal") ? "fal" : "kling";
  g->url_token = sha256_hex(g->id).substr(0, 32);
  g->video = std::make_shared<VideoLayout>(m_base_mp4, g->id, m_config.video_bytes);

  auto& s = m_state;
  ++s.creates_recorded;
  ++s.in_flight;
  s.max_in_flight = std::max(s.max_in_flight, s.in_flight);
  const double now = g->created_mono;
  while (!s.finish_times.empty() && s.finish_times.top() <= now) {
    s.finish_times.pop();
  }
  s.finish_times.push(now + g->queued_s + g->generating_s);
  s.max_generating = std::max<std::uint64_t>(s.max_generating, s.finish_times.size());
  if (!call.client_request_id.empty()) {
    ++s.by_job[job_prefix(call.client_request_id)].recorded;
    ++s.by_client_request_id[call.client_request_id].recorded;
  }
  Generation& ref = *g;
  s.by_id.emplace(g->id, g.get());
  s.generations.push_back(std::move(g));
  return ref;
}

Reply App::handle_create(const Request& request, bool legacy, const ApiCall& call)
{
  note_create_call(mono_now());
  if (!call.client_request_id.empty()) {
    ++m_state.by_job[job_prefix(call.client_request_id)].calls;
    ++m_state.by_client_request_id[call.client_request_id].calls;
  }

  boost::system::error_code ec;
  json::value body = json::parse(request.body(), ec);
  BodyCount* body_count = nullptr;
  std::string model;
  if (!ec) {
    auto key = canonical_json(body);
    auto [it, inserted] = m_state.body_index.emplace(key, m_state.bodies.size());
    if (inserted) {
      m_state.bodies.push_back(BodyCount{body});
    }
    body_count = &m_state.bodies[it->second];
    ++body_count->calls;
    if (body.is_object()) {
      if (auto m = body.get_object().if_contains("model"); m && m->is_string()) {
        model = std::string(m->get_string());
      }
    }
  }

  if (m_config.credits_exhausted) {
    add_log_row(call, model, nullptr, false);
    return error_reply(http::status::forbidden, "Insufficient credits: top up your balance", call);
  }

  const FaultType fault = m_state.faults.decide(EndpointKind::create, m_config);
  if (fault == FaultType::lost) {
    // Lost on its way to the API (an edge proxy dropped it): nothing recorded, no log row.
    Reply reply;
    reply.reset = true;
    reply.delay_s = m_config.slow_delay_s;
    return reply;
  }
  const bool after_create = fault == FaultType::reset_after_create
                            || fault == FaultType::error_500_after_create
                            || fault == FaultType::error_504_after_create;
  if (!after_create) {
    if (auto reply = generic_fault_reply(fault, call)) {
      // The request reached the provider and failed there: its log shows a failed row.
      add_log_row(call, model, nullptr, false);
      return std::move(*reply);
    }
  }

  if (ec) {
    ++m_state.creates_rejected;
    add_log_row(call, model, nullptr, false);
    return error_reply(http::status::bad_request, "body: Invalid JSON", call);
  }
  if (auto err = validate_create(body, legacy, m_config.strict_fields)) {
    ++m_state.creates_rejected;
    add_log_row(call, model, nullptr, false);
    return error_reply(http::status::bad_request, err->message, call);
  }
  if (m_config.enforce_balance) {
    auto price = m_config.prices.find(model);
    const double rate = price != m_config.prices.end() ? price->second : usd_per_second(model);
    if (rate * requested_duration(body) * m_config.charge_factor > current_balance() + 1e-9) {
      ++m_state.creates_rejected;
      add_log_row(call, model, nullptr, false);
      return error_reply(http::status::forbidden,
                         fmt::format("Insufficient balance: ${:.2f} left, top up your balance", current_balance()), call);
    }
  }

  Generation& g = record_generation(body, legacy, call);
  ++body_count->recorded;
  add_log_row(call, model, &g, false);

  if (after_create) {
    // Recorded and billed, but the client learns nothing useful: the ambiguous case.
    return std::move(*generic_fault_reply(fault, call));
  }
  bool terminal = false;
  json::object status = status_object(g, call, false, terminal);
  if (fault == FaultType::malformed_json) {
    return malformed_reply(status, call);
  }
  Reply reply = json_reply(legacy ? http::status::created : http::status::ok, status, call);
  reply.response.set("x-inference-id", g.id);
  if (m_config.create_cost_headers) {
    reply.response.set("x-aimlapi-credits-used", std::to_string(g.credits));
    reply.response.set("x-aimlapi-usd-spent", usd_text(g.usd));
  }
  if (fault == FaultType::slow) {
    reply.delay_s = m_config.slow_delay_s;
  }
  return reply;
}

std::string App::url_signature(std::string_view path, std::string_view ks_time) const
{
  return sha256_hex(fmt::format("{}|{}|{}", m_url_secret, path, ks_time)).substr(0, 32);
}

std::string App::signed_video_url(const Generation& g, const std::string& base_url) const
{
  if (g.served == "fal") {
    // The fal mirror's CDN: unsigned, shaped like the seeds' flamingo links; its lifetime
    // (fal_url_ttl_s from completion) is not in the URL.
    return fmt::format("{}/cdn/flamingo/files/{}/{}_output.mp4", base_url, g.serial, g.url_token);
  }
  // Shaped like the native Kling CDN links in the seeds: a long opaque cacheKey, a signature
  // and a hex expiry (here in milliseconds, so tests can use sub-second lifetimes).
  std::string path = fmt::format("/cdn/kangaroo/muse/{}/VIDEO/{}.mp4", g.serial, g.url_token);
  auto expiry_ms = static_cast<std::uint64_t>((wall_now() + m_config.url_ttl_s) * 1000.0);
  std::string ks_time = fmt::format("{:x}", expiry_ms);
  std::string cache_key;
  for (int i = 0; i < 4; ++i) {
    cache_key += sha256_hex(fmt::format("{}{}{}", m_url_secret, g.id, i));
  }
  return fmt::format("{}{}?cacheKey={}&x-kcdn-pid=112781&ksSecret={}&ksTime={}", base_url, path,
                     cache_key, url_signature(path, ks_time), ks_time);
}

json::object App::status_object(Generation& g, const ApiCall& call, bool from_poll, bool& terminal)
{
  const double now = mono_now();
  const Phase phase = g.phase_at(now);
  terminal = false;
  json::object out{{"id", g.id}, {"status", g.status_word(phase, now)}, {"model", g.model}};
  json::value video = nullptr;
  json::value error = nullptr;
  json::value meta = nullptr;
  if (phase == Phase::completed) {
    if (g.no_url_polls_left > 0) {
      // `completed` before the file is ready: the client must poll again. Only polls
      // use up these answers, so a create answering `completed` at once does not.
      g.no_url_polls_left -= from_poll ? 1 : 0;
    } else {
      terminal = true;
      video = json::object{{"url", signed_video_url(g, call.base_url)},
                           {"file_size", g.video->size()},
                           {"content_type", "video/mp4"},
                           {"file_name", "output.mp4"},
                           {"duration", g.duration}};
      out["duration"] = g.duration;
      if (m_config.meta_usage) {
        meta = json::object{{"usage", json::object{{"credits_used", g.charged_credits}, {"usd_spent", g.charged_usd}}}};
      }
    }
  } else if (phase == Phase::failed) {
    terminal = true;
    if (g.detail_error) {
      error = json::object{
        {"detail", json::array{json::object{{"loc", json::array{"body", "prompt"}},
                                            {"msg", "The prompt was rejected by content moderation"},
                                            {"type", "value_error.moderation"}}}}};
    } else {
      error = json::object{{"name", "GenerationError"},
                           {"message", "The generation failed on the provider side"}};
    }
  }
  if (m_config.status_provider_field == "meta.provider") {
    if (!meta.is_object()) {
      meta = json::object{};
    }
    meta.get_object()["provider"] = g.served;
  } else if (m_config.status_provider_field == "provider") {
    out["provider"] = g.served;
  }
  out["video"] = std::move(video);
  out["error"] = std::move(error);
  out["meta"] = std::move(meta);
  return out;
}

Reply App::handle_poll(const Request& request, const ApiCall& call)
{
  ++m_state.polls;
  const FaultType fault = m_state.faults.decide(EndpointKind::poll, m_config);
  if (auto reply = generic_fault_reply(fault, call)) {
    return std::move(*reply);
  }
  if (fault == FaultType::not_found) {
    return error_reply(http::status::not_found, "Generation not found", call);
  }

  std::optional<std::string> id;
  if (auto url = boost::urls::parse_origin_form(request.target())) {
    for (auto param : url->params()) {
      if (param.key == "generation_id") {
        id = param.value;
      }
    }
  }
  if (!id || id->empty()) {
    return error_reply(http::status::bad_request, "generation_id: Required", call);
  }
  auto it = m_state.by_id.find(*id);
  if (it == m_state.by_id.end()) {
    ++m_state.polls_unknown;
    return error_reply(static_cast<http::status>(m_config.unknown_id_status),
                       fmt::format("Generation {} not found", *id), call);
  }
  Generation& g = *it->second;
  ++g.polls;
  if (m_config.log_polls) {
    add_log_row(call, g.model, &g, true);
  }
  bool terminal = false;
  json::object status = status_object(g, call, true, terminal);
  if (fault == FaultType::malformed_json) {
    return malformed_reply(status, call);
  }
  if (fault == FaultType::failed_status) {
    // The provider reports the generation failed, whatever it said before (e.g. a video
    // withdrawn after it completed).
    status["status"] = g.failure_status;
    status["video"] = nullptr;
    status.erase("duration");
    status["error"] = json::object{{"name", "GenerationError"}, {"message", "The generation failed on the provider side"}};
  }
  if (fault == FaultType::garbage_status) {
    status["status"] = "gen_state_7"; // not a documented status: clients must keep polling
    terminal = false;
  }
  if (terminal && !g.reported_terminal) {
    g.reported_terminal = true;
    --m_state.in_flight;
  }
  Reply reply = json_reply(http::status::ok, status, call);
  reply.response.set("x-inference-id", g.id);
  if (m_config.poll_cost_headers) {
    reply.response.set("x-aimlapi-credits-used", "0");
    reply.response.set("x-aimlapi-usd-spent", "0");
  }
  if (fault == FaultType::slow) {
    reply.delay_s = m_config.slow_delay_s;
  }
  return reply;
}

} // namespace fake
