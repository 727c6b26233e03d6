// Bulk actions on a batch (docs/contract.md §4.1 "POST /v1/batches/{id}/retry|cancel"): the jobs
// of one batch in the given states and with every given label, each retried or canceled through
// the engine's own per-job rules (Engine::retry, Engine::cancel), or only counted (dry_run).
#include "daemon/api/error.hpp"
#include "daemon/api/handlers.hpp"
#include "daemon/engine/engine.hpp"

#include "common/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace klingd::api {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

using common::JobState;

// Jobs acted on at once by one bulk request.
constexpr std::size_t k_bulk_workers = 32;

struct BulkFilter
{
  std::vector<JobState> states;
  std::vector<std::pair<std::string, std::string>> labels; // every one must match
  bool dry_run = false;
};

std::string state_names(const std::vector<JobState>& states)
{
  std::string out;
  for (auto s : states) {
    out += out.empty() ? "" : ", ";
    out += common::to_string(s);
  }
  return out;
}

// The query of a bulk action; `allowed` are the states the action applies to (also the default).
Result<BulkFilter> parse_filter(const Request& req, const std::vector<JobState>& allowed)
{
  BulkFilter f;
  for (const auto& [name, value] : req.query) {
    if (name == "state") {
      std::string_view rest = value;
      while (!rest.empty()) {
        auto comma = rest.find(',');
        auto item = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        auto s = common::parse_job_state(item);
        if (!s || std::find(allowed.begin(), allowed.end(), *s) == allowed.end()) {
          return make_error("bad_request", fmt::format("state: \"{}\" is not one this action applies to ({})", item,
                                                       state_names(allowed)));
        }
        f.states.push_back(*s);
      }
    } else if (name == "label") {
      auto eq = value.find('=');
      if (eq == std::string::npos || eq == 0) {
        return make_error("bad_request", fmt::format("label: expected name=value (got \"{}\")", value));
      }
      f.labels.emplace_back(value.substr(0, eq), value.substr(eq + 1));
    } else if (name == "dry_run") {
      auto flag = query_flag(value);
      if (!flag) {
        return make_error("bad_request", fmt::format("dry_run: must be 1, true, 0 or false (got \"{}\")", value));
      }
      f.dry_run = *flag;
    } else {
      return make_error("bad_request",
                        fmt::format("unknown query parameter \"{}\" (known: state, label, dry_run)", name));
    }
  }
  if (f.states.empty()) {
    f.states = allowed;
  }
  return f;
}

bool labels_match(const std::string& labels_json, const std::vector<std::pair<std::string, std::string>>& wanted)
{
  if (wanted.empty()) {
    return true;
  }
  boost::system::error_code ec;
  auto v = json::parse(labels_json, ec);
  if (ec || !v.is_object()) {
    return false;
  }
  for (const auto& [k, value] : wanted) {
    const auto* have = v.as_object().if_contains(k);
    if (!have || !have->is_string() || have->get_string() != value) {
      return false;
    }
  }
  return true;
}

// The ids of the batch's jobs that the filter selects, oldest first.
std::vector<std::string> select_jobs(store::JobStore& store, const std::string& batch, const BulkFilter& f)
{
  std::vector<std::string> ids;
  store::ListFilter lf;
  lf.batch = batch;
  lf.states = f.states;
  lf.limit = 1000;
  while (true) {
    auto page = store.list(lf);
    for (const auto& j : page.jobs) {
      if (labels_match(j.labels, f.labels)) {
        ids.push_back(j.id);
      }
    }
    if (!page.next) {
      return ids;
    }
    lf.after = page.next;
  }
}

template <typename Op>
asio::awaitable<Response> bulk_action(ApiContext ctx, const Request& req, const std::string& batch,
                                      std::string_view verb, const std::vector<JobState>& allowed, Op op)
{
  if (!ctx.store.batch_exists(batch)) {
    co_return error_response(ApiError::not_found, fmt::format("no batch with id \"{}\"", batch));
  }
  auto filter = parse_filter(req, allowed);
  if (!filter) {
    co_return error_response(ApiError::bad_request, filter.error().message);
  }
  auto ids = select_jobs(ctx.store, batch, *filter);
  json::object res;
  res["batch"] = batch;
  res["action"] = verb;
  res["dry_run"] = filter->dry_run;
  res["states"] = json::array();
  for (auto s : filter->states) {
    res["states"].as_array().push_back(json::string(common::to_string(s)));
  }
  res["matched"] = ids.size();
  json::array done;
  json::array refused;
  if (!filter->dry_run) {
    // A few jobs at a time, so their commits share group commits; each job by its own rules.
    std::vector<std::optional<engine::ActionRefusal>> outcome(ids.size());
    std::size_t next = 0;
    auto worker = [&]() -> asio::awaitable<void> {
      while (next < ids.size()) {
        const std::size_t i = next++;
        engine::ActionResult r = co_await op(ids[i]);
        if (!r) {
          outcome[i] = r.error();
        }
      }
    };
    auto ex = co_await asio::this_coro::executor;
    std::vector<decltype(asio::co_spawn(ex, worker(), asio::deferred))> workers;
    for (std::size_t w = 0; w < std::min<std::size_t>(k_bulk_workers, ids.size()); ++w) {
      workers.push_back(asio::co_spawn(ex, worker(), asio::deferred));
    }
    if (!workers.empty()) {
      auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(workers))
                               .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
      for (const auto& e : errors) {
        if (e) {
          std::rethrow_exception(e); // e.g. a failed commit: answered as for a single job (507)
        }
      }
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (!outcome[i]) {
        done.push_back(json::string(ids[i]));
      } else {
        // e.g. a job that ended meanwhile, or a retry while its actor still winds down (409).
        refused.push_back(json::object{{"id", ids[i]},
                                       {"code", to_string(from_engine(outcome[i]->code))},
                                       {"message", outcome[i]->message}});
      }
    }
    log::info("api.bulk_action", {{"action", verb}, {"batch", batch}, {"matched", ids.size()}, {"done", done.size()},
                                  {"refused", refused.size()}, {"uid", req.peer.uid}});
  } else {
    for (const auto& id : ids) {
      done.push_back(json::string(id));
    }
  }
  res["done"] = filter->dry_run ? 0 : done.size();
  res["ids"] = std::move(done);
  res["refused"] = std::move(refused);
  co_return json_response(200, res);
}

const std::vector<JobState> k_retryable{JobState::failed, JobState::canceled};
const std::vector<JobState> k_cancelable{JobState::queued, JobState::submitting, JobState::generating,
                                         JobState::downloading};

} // namespace

asio::awaitable<Response> handle_batch_retry(ApiContext ctx, Request req, PathParams params)
{
  auto* engine = &ctx.engine;
  co_return co_await bulk_action(ctx, req, params.at(0), "retry", k_retryable,
                                 [engine](std::string id) { return engine->retry(std::move(id)); });
}

asio::awaitable<Response> handle_batch_cancel(ApiContext ctx, Request req, PathParams params)
{
  auto* engine = &ctx.engine;
  co_return co_await bulk_action(ctx, req, params.at(0), "cancel", k_cancelable,
                                 [engine](std::string id) { return engine->cancel(std::move(id)); });
}

} // namespace klingd::api
