// Handlers for jobs and batches: submit, list, get, cancel, retry, batch counts.
#include "common/job_spec.hpp"
#include "daemon/api/error.hpp"
#include "daemon/api/handlers.hpp"
#include "daemon/api/json_codec.hpp"
#include "daemon/api/submit_stream.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/store/group_commit.hpp"

#include "common/log.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <charconv>
#include <map>
#include <set>

namespace klingd::api {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

json::object error_detail(std::optional<std::size_t> index, const std::string& field, const std::string& message)
{
  json::object d;
  d["index"] = index ? json::value(*index) : json::value(nullptr);
  d["field"] = field;
  d["message"] = message;
  return d;
}

std::string_view trim(std::string_view s)
{
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// `key:<key>` or an id → the job.
std::optional<store::Job> find_job(store::JobStore& store, const std::string& ref)
{
  if (ref.rfind("key:", 0) == 0) {
    return store.get_by_key(std::string_view(ref).substr(4));
  }
  return store.get(ref);
}

Response job_not_found(const std::string& ref)
{
  if (ref.rfind("key:", 0) == 0) {
    return error_response(ApiError::not_found, fmt::format("no job with key \"{}\"", ref.substr(4)));
  }
  return error_response(ApiError::not_found, fmt::format("no job with id \"{}\"", ref));
}

} // namespace

namespace {

Response spec_errors_response(const std::vector<common::SpecError>& errors)
{
  bool syntax = errors.size() == 1 && errors[0].not_json;
  json::array details;
  std::set<std::size_t> bad;
  for (const auto& e : errors) {
    details.push_back(error_detail(e.index, e.field, e.message));
    if (e.index) {
      bad.insert(*e.index);
    }
  }
  if (syntax) {
    return error_response(ApiError::invalid_json, errors[0].message, std::move(details));
  }
  std::string message;
  if (bad.empty()) {
    message = fmt::format("invalid submission: {}", common::to_string(errors[0]));
  } else if (bad.size() == 1 && errors.size() == 1) {
    message = fmt::format("invalid job spec, nothing stored: {}", common::to_string(errors[0]));
  } else {
    message = fmt::format("{} invalid job spec(s), nothing stored; first: {}", bad.size(), common::to_string(errors[0]));
  }
  return error_response(ApiError::invalid_spec, std::move(message), std::move(details));
}

// The answer of a dry run (docs/contract.md §4.1 "POST /v1/jobs?dry_run=1"): what a real submit
// would create and what the budgets would expect it to cost, the engine's own estimate.
json::object dry_run_summary(ApiContext& ctx, const std::vector<store::NewJob>& jobs, const store::BatchInsert& batch,
                             std::optional<double> max_usd)
{
  std::map<std::string, std::optional<double>> memo; // the estimate depends on model and duration only
  json::object by_model;
  double total = 0;
  std::size_t duplicates = 0;
  std::size_t unpriced = 0;
  for (std::size_t i = 0; i < jobs.size() && i < batch.jobs.size(); ++i) {
    if (batch.jobs[i].duplicate) {
      ++duplicates;
      continue;
    }
    const auto& j = jobs[i];
    json::object key{{"model", j.model}};
    boost::system::error_code ec;
    if (auto r = json::parse(j.request, ec); !ec && r.is_object()) {
      if (const auto* d = r.as_object().if_contains("duration")) {
        key["duration"] = *d;
      }
    }
    auto text = json::serialize(key);
    auto it = memo.find(text);
    if (it == memo.end()) {
      it = memo.emplace(text, ctx.engine.expected_cost(j.model, text)).first;
    }
    auto& row = by_model[j.model];
    if (!row.is_object()) {
      row = json::object{{"jobs", 0}, {"expected_usd", 0.0}, {"unpriced", 0}};
    }
    auto& o = row.as_object();
    o["jobs"] = o["jobs"].to_number<std::int64_t>() + 1;
    if (it->second) {
      o["expected_usd"] = o["expected_usd"].to_number<double>() + *it->second;
      total += *it->second;
    } else {
      o["unpriced"] = o["unpriced"].to_number<std::int64_t>() + 1;
      ++unpriced;
    }
  }
  json::object res;
  res["dry_run"] = true;
  res["jobs"] = jobs.size();
  res["new"] = jobs.size() - duplicates;
  res["duplicates"] = duplicates;
  res["by_model"] = std::move(by_model);
  res["expected_usd"] = total;
  res["unpriced"] = unpriced;
  res["max_usd"] = max_usd ? json::value(*max_usd) : json::value(nullptr);
  res["over_budget"] = max_usd && total > *max_usd;
  return res;
}

} // namespace

asio::awaitable<Response> handle_submit(ApiContext ctx, Request req, PathParams)
{
  bool dry_run = false;
  for (const auto& [name, value] : req.query) {
    if (name != "dry_run") {
      co_return error_response(ApiError::bad_request,
                               fmt::format("unknown query parameter \"{}\" (known: dry_run)", name));
    }
    auto flag = query_flag(value);
    if (!flag) {
      co_return error_response(ApiError::bad_request,
                               fmt::format("dry_run: must be 1, true, 0 or false (got \"{}\")", value));
    }
    dry_run = *flag;
  }
  std::vector<store::NewJob> jobs;
  std::optional<double> max_usd;
  if (req.submit_stream) {
    // NDJSON: already parsed and checked while it arrived.
    if (!req.submit_stream->errors.empty()) {
      co_return spec_errors_response(req.submit_stream->errors);
    }
    jobs = std::move(req.submit_stream->jobs);
    req.submit_stream.reset();
  } else {
    if (req.body.empty()) {
      co_return error_response(ApiError::invalid_json,
                               "the body is empty: send a job spec, {\"jobs\": [...]}, or NDJSON (one spec per line)");
    }
    auto parsed = common::parse_submit_body(req.body, is_ndjson_type(req.content_type), ctx.catalog,
                                            ctx.config.allow_unknown_models);
    // The body's text is not needed any more; the specs hold what is stored.
    std::string().swap(req.body);
    if (!parsed) {
      co_return spec_errors_response(parsed.error());
    }
    auto body = std::move(parsed).value();
    max_usd = body.max_usd;
    jobs.reserve(body.jobs.size());
    for (auto& spec : body.jobs) {
      jobs.push_back(to_new_job(std::move(spec)));
    }
  }

  std::optional<Result<store::BatchInsert, std::vector<store::IndexError>>> inserted;
  // Deferred: the rows are committed at once and the answer waits for the worker's WAL sync,
  // so the loop keeps serving meanwhile (docs/reliability.md). What the engine then does with a
  // job starts with a synchronous commit of its own.
  co_await ctx.committer.run([&](store::JobStore& s) { inserted.emplace(s.insert_batch(jobs, max_usd, dry_run)); },
                             store::GroupCommitter::Sync::deferred);
  if (dry_run && *inserted) {
    auto res = dry_run_summary(ctx, jobs, inserted->value(), max_usd);
    log::info("api.submit_dry_run", {{"jobs", jobs.size()}, {"uid", req.peer.uid}});
    co_return json_response(200, res);
  }
  std::vector<store::NewJob>().swap(jobs); // stored: the answer below can reuse the memory
  if (!*inserted) {
    json::array details;
    bool conflict = false;
    for (const auto& e : inserted->error()) {
      details.push_back(error_detail(e.index, e.field, e.message));
      conflict = conflict || e.claimed;
    }
    const auto& first = inserted->error().front();
    auto message = fmt::format("{} problem(s), nothing stored; first: jobs[{}].{}: {}", inserted->error().size(),
                               first.index, first.field, first.message);
    co_return error_response(conflict ? ApiError::conflict : ApiError::invalid_spec, std::move(message),
                             std::move(details));
  }
  const auto& batch = inserted->value();
  std::size_t created = 0;
  json::array out_jobs;
  for (const auto& j : batch.jobs) {
    json::object o;
    o["id"] = j.id;
    o["key"] = j.key ? json::value(*j.key) : json::value(nullptr);
    o["state"] = common::to_string(j.state);
    o["duplicate"] = j.duplicate;
    created += !j.duplicate;
    out_jobs.push_back(std::move(o));
  }
  if (created > 0) {
    ctx.engine.wake_dispatcher();
  }
  log::info("api.submit", {{"batch", batch.batch}, {"jobs", batch.jobs.size()}, {"created", created},
                           {"duplicates", batch.jobs.size() - created}, {"uid", req.peer.uid}});
  json::object res;
  res["batch"] = batch.batch;
  res["jobs"] = std::move(out_jobs);
  co_return json_response(201, res);
}

asio::awaitable<Response> handle_list(ApiContext ctx, Request req, PathParams)
{
  store::ListFilter filter;
  for (const auto& [name, value] : req.query) {
    if (name != "state" && name != "batch" && name != "label" && name != "limit" && name != "after") {
      co_return error_response(ApiError::bad_request,
                               fmt::format("unknown query parameter \"{}\" (known: state, batch, label, limit, after)", name));
    }
  }
  if (auto states = req.query_value("state")) {
    std::string_view rest = *states;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto item = trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (item.empty()) {
        continue;
      }
      auto s = common::parse_job_state(item);
      if (!s) {
        co_return error_response(
          ApiError::bad_request,
          fmt::format("state: unknown state \"{}\" (states: queued, submitting, generating, downloading, completed, "
                      "failed, canceled)",
                      item));
      }
      filter.states.push_back(*s);
    }
  }
  if (auto b = req.query_value("batch")) {
    filter.batch = *b;
  }
  if (auto l = req.query_value("label")) {
    auto eq = l->find('=');
    if (eq == std::string::npos || eq == 0) {
      co_return error_response(ApiError::bad_request, fmt::format("label: expected name=value (got \"{}\")", *l));
    }
    filter.label = std::make_pair(l->substr(0, eq), l->substr(eq + 1));
  }
  if (auto l = req.query_value("limit")) {
    std::size_t n = 0;
    auto [p, ec] = std::from_chars(l->data(), l->data() + l->size(), n);
    if (ec != std::errc() || p != l->data() + l->size() || n < 1 || n > 1000) {
      co_return error_response(ApiError::bad_request, fmt::format("limit: must be an integer from 1 to 1000 (got \"{}\")", *l));
    }
    filter.limit = n;
  }
  if (auto a = req.query_value("after")) {
    filter.after = *a;
  }
  auto list = ctx.store.list(filter);
  json::array jobs;
  for (const auto& j : list.jobs) {
    jobs.push_back(job_to_json(j, ctx.config));
  }
  json::object res;
  res["jobs"] = std::move(jobs);
  res["next"] = list.next ? json::value(*list.next) : json::value(nullptr);
  co_return json_response(200, res);
}

asio::awaitable<Response> handle_get(ApiContext ctx, Request req, PathParams params)
{
  auto job = find_job(ctx.store, params.at(0));
  if (!job) {
    co_return job_not_found(params.at(0));
  }
  auto o = job_to_json(*job, ctx.config);
  json::array history;
  for (const auto& e : ctx.store.history(job->id)) {
    history.push_back(history_to_json(e));
  }
  o["history"] = std::move(history);
  json::array hooks; // docs/contract.md §4.7: the completion hooks its terminal transitions owed
  for (const auto& h : ctx.store.hooks_of_job(job->id)) {
    hooks.push_back(json::object{{"hook", h.scope == "job" ? "on_job_done" : "on_batch_done"},
                                 {"kind", h.kind},
                                 {"state", common::to_string(h.state)},
                                 {"status", h.status},
                                 {"attempts", h.attempts},
                                 {"created_at", h.created_at},
                                 {"finished_at", h.finished_at ? json::value(*h.finished_at) : json::value(nullptr)},
                                 {"last_error", h.last_error ? json::value(*h.last_error) : json::value(nullptr)}});
  }
  o["hooks"] = std::move(hooks);
  co_return json_response(200, o);
}

namespace {

template <typename Op>
asio::awaitable<Response> job_action(ApiContext ctx, std::string ref, Op op, std::string_view verb, long uid)
{
  auto job = find_job(ctx.store, ref);
  if (!job) {
    co_return job_not_found(ref);
  }
  engine::ActionResult r = co_await op(job->id);
  if (!r) {
    const auto& e = r.error();
    log::info("api.job_action_refused", {{"action", verb}, {"job", job->id}, {"code", engine::to_string(e.code)}, {"uid", uid}});
    co_return error_response(from_engine(e.code), e.message);
  }
  log::info("api.job_action", {{"action", verb}, {"job", job->id}, {"state", common::to_string(r->state)}, {"uid", uid}});
  co_return json_response(200, job_to_json(r.value(), ctx.config));
}

} // namespace

asio::awaitable<Response> handle_cancel(ApiContext ctx, Request req, PathParams params)
{
  auto* engine = &ctx.engine;
  co_return co_await job_action(
    ctx, params.at(0), [engine](std::string id) { return engine->cancel(std::move(id)); }, "cancel", req.peer.uid);
}

asio::awaitable<Response> handle_retry(ApiContext ctx, Request req, PathParams params)
{
  auto* engine = &ctx.engine;
  co_return co_await job_action(
    ctx, params.at(0), [engine](std::string id) { return engine->retry(std::move(id)); }, "retry", req.peer.uid);
}

asio::awaitable<Response> handle_batch(ApiContext ctx, Request req, PathParams params)
{
  const auto& id = params.at(0);
  if (!ctx.store.batch_exists(id)) {
    co_return error_response(ApiError::not_found, fmt::format("no batch with id \"{}\"", id));
  }
  std::int64_t total = 0;
  auto counts = counts_to_json(ctx.store.batch_counts(id), &total);
  std::int64_t terminal = counts["completed"].as_int64() + counts["failed"].as_int64() + counts["canceled"].as_int64();
  json::object res;
  res["batch"] = id;
  res["counts"] = std::move(counts);
  res["total"] = total;
  res["done"] = terminal == total;
  co_return json_response(200, res);
}

} // namespace klingd::api
