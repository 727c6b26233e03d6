// Handlers for the daemon as a whole: events, status, pause/resume, metrics, prune, models.
#include "common/catalog.hpp"
#include "common/config.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "daemon/api/error.hpp"
#include "daemon/api/handlers.hpp"
#include "daemon/api/json_codec.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/store/maintenance.hpp"

#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <charconv>

namespace klingd::api {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {
// store.retention as the API shows it: days per final state, null for forever.
json::object retention_json(const common::Config::Store::Retention& r)
{
  json::object o;
  for (const auto& [name, days] : {std::pair{"completed_days", r.completed_days}, std::pair{"failed_days", r.failed_days},
                                   std::pair{"canceled_days", r.canceled_days}}) {
    o[name] = days ? json::value(*days) : json::value(nullptr);
  }
  return o;
}
} // namespace

asio::awaitable<Response> handle_events(ApiContext ctx, Request req, PathParams)
{
  Response res;
  res.content_type = "application/x-ndjson";
  if (auto since = req.query_value("since")) {
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(since->data(), since->data() + since->size(), n);
    if (ec != std::errc() || p != since->data() + since->size() || n < 0) {
      co_return error_response(ApiError::bad_request,
                               fmt::format("since: must be an event sequence number ≥ 0 (got \"{}\")", *since));
    }
    res.stream_events_after = n;
  } else {
    // Without `since` the stream starts with what happens from now on.
    res.stream_events_after = ctx.store.last_event_seq();
  }
  co_return res;
}

asio::awaitable<Response> handle_status(ApiContext ctx, Request, PathParams)
{
  auto st = ctx.engine.status();
  std::int64_t total = 0;
  json::object o;
  o["version"] = std::string(klingd::version());
  o["uptime_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx.started).count();
  o["counts"] = counts_to_json(ctx.store.counts_by_state(), &total);
  o["total"] = total;
  o["in_flight"] = st.in_flight;
  o["submitting"] = st.submitting;
  o["generating"] = st.generating;
  o["downloading"] = st.downloading;
  o["reconciling"] = st.reconciling;
  o["paused"] = st.paused ? json::value(*st.paused) : json::value(nullptr);
  if (st.balance_usd) {
    o["balance"] = json::object{{"usd", *st.balance_usd}, {"checked_at", st.balance_checked_at.value_or("")}};
  } else {
    o["balance"] = nullptr;
  }
  json::object budget;
  budget["max_usd_per_day"] = st.max_usd_per_day > 0 ? json::value(st.max_usd_per_day) : json::value(nullptr);
  json::array blocked;
  for (const auto& b : st.budget_blocked_batches) {
    blocked.emplace_back(b);
  }
  budget["blocked_batches"] = std::move(blocked);
  o["budget"] = std::move(budget);
  json::object limits;
  limits["max_in_flight"] = st.max_in_flight;
  limits["creates_per_minute"] = st.creates_per_minute;
  limits["download_max_concurrent"] = st.download_max_concurrent;
  limits["max_body_bytes"] = ctx.config.socket.max_body_bytes;
  o["limits"] = std::move(limits);
  o["socket"] = ctx.config.socket.path;
  o["db"] = ctx.config.store.db;
  o["videos_dir"] = ctx.config.store.videos_dir;
  o["provider"] = ctx.config.provider.base_url;
  o["last_event_seq"] = ctx.store.last_event_seq();
  const auto sizes = ctx.store.file_sizes();
  o["db_bytes"] = sizes.db_bytes;
  o["wal_bytes"] = sizes.wal_bytes;
  o["retention"] = retention_json(ctx.config.store.retention);
  co_return json_response(200, o);
}

asio::awaitable<Response> handle_pause(ApiContext ctx, Request req, PathParams)
{
  std::string reason = "paused by user";
  if (!req.body.empty()) {
    boost::system::error_code ec;
    auto v = json::parse(req.body, ec);
    const json::value* r = ec || !v.is_object() ? nullptr : v.get_object().if_contains("reason");
    if (ec || !v.is_object() || (r && !r->is_string())) {
      co_return error_response(ApiError::bad_request, "the body must be empty or {\"reason\": \"…\"}");
    }
    if (r && !r->get_string().empty()) {
      reason = std::string(r->get_string());
    }
  }
  ctx.engine.pause(reason);
  log::info("api.pause", {{"reason", reason}, {"uid", req.peer.uid}});
  json::object o;
  o["paused"] = ctx.engine.status().paused ? json::value(*ctx.engine.status().paused) : json::value(nullptr);
  co_return json_response(200, o);
}

asio::awaitable<Response> handle_resume(ApiContext ctx, Request req, PathParams)
{
  ctx.engine.resume();
  log::info("api.resume", {{"uid", req.peer.uid}});
  json::object o;
  o["paused"] = ctx.engine.status().paused ? json::value(*ctx.engine.status().paused) : json::value(nullptr);
  co_return json_response(200, o);
}

asio::awaitable<Response> handle_metrics(ApiContext ctx, Request, PathParams)
{
  std::int64_t total = 0;
  auto counts = counts_to_json(ctx.store.counts_by_state(), &total);
  for (const auto& kv : counts) {
    ctx.metrics.jobs(kv.key()).Set(static_cast<double>(kv.value().as_int64()));
  }
  auto st = ctx.engine.status();
  ctx.metrics.in_flight().Set(st.in_flight);
  ctx.metrics.paused().Set(st.paused ? 1 : 0);
  const auto spent = ctx.store.cost_summary().total;
  ctx.metrics.spent_usd().Set(spent.usd);
  ctx.metrics.spent_credits().Set(static_cast<double>(spent.credits));
  const auto sizes = ctx.store.file_sizes();
  ctx.metrics.db_bytes().Set(static_cast<double>(sizes.db_bytes));
  ctx.metrics.wal_bytes().Set(static_cast<double>(sizes.wal_bytes));
  Response res;
  res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  res.body = ctx.metrics.serialize();
  co_return res;
}

asio::awaitable<Response> handle_prune(ApiContext ctx, Request req, PathParams)
{
  bool dry_run = false;
  if (!req.body.empty()) {
    boost::system::error_code ec;
    auto v = json::parse(req.body, ec);
    const json::value* d = ec || !v.is_object() ? nullptr : v.get_object().if_contains("dry_run");
    if (ec || !v.is_object() || (d && !d->is_bool()) || v.get_object().size() != (d ? 1u : 0u)) {
      co_return error_response(ApiError::bad_request, "the body must be empty or {\"dry_run\": true|false}");
    }
    dry_run = d && d->as_bool();
  }
  const auto& r = ctx.config.store.retention;
  json::object o;
  o["dry_run"] = dry_run;
  o["retention"] = retention_json(r);
  store::PruneStats stats;
  if (r.any()) {
    stats = co_await store::prune_all(ctx.committer, ctx.store, store::retention_cutoffs(r, now_utc()), dry_run);
  }
  if (!dry_run) {
    log::info("api.prune", {{"jobs_deleted", stats.jobs_deleted}, {"jobs_trimmed", stats.jobs_trimmed},
                            {"events_deleted", stats.events_deleted}, {"uid", req.peer.uid}});
  }
  o["jobs_deleted"] = stats.jobs_deleted;
  o["jobs_trimmed"] = stats.jobs_trimmed;
  o["events_deleted"] = stats.events_deleted;
  o["tombstones"] = stats.tombstones;
  co_return json_response(200, o);
}

asio::awaitable<Response> handle_models(ApiContext ctx, Request, PathParams)
{
  co_return json_response(200, catalog_to_json(ctx.catalog));
}

} // namespace klingd::api
