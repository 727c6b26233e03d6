// GET /v1/cost: what the videos cost, summed by day, model, batch and label (issue 10).
#include "daemon/api/handlers.hpp"
#include "daemon/api/http.hpp"
#include "daemon/store/job_store.hpp"

#include <boost/json.hpp>

namespace klingd::api {

namespace json = boost::json;

namespace {
json::object row_json(const store::CostRow& r, const char* key_name)
{
  json::object o;
  if (key_name) {
    o[key_name] = r.key;
  }
  o["usd"] = r.usd;
  o["credits"] = r.credits;
  o["jobs"] = r.jobs;
  return o;
}

json::array rows_json(const std::vector<store::CostRow>& rows, const char* key_name)
{
  json::array a;
  for (const auto& r : rows) {
    a.push_back(row_json(r, key_name));
  }
  return a;
}
} // namespace

boost::asio::awaitable<Response> handle_cost(ApiContext ctx, Request, PathParams)
{
  const auto s = ctx.store.cost_summary();
  json::object o;
  o["total"] = row_json(s.total, nullptr);
  o["by_day"] = rows_json(s.by_day, "day");
  o["by_model"] = rows_json(s.by_model, "model");
  o["by_batch"] = rows_json(s.by_batch, "batch");
  o["by_label"] = rows_json(s.by_label, "label");
  co_return json_response(200, o);
}

} // namespace klingd::api
