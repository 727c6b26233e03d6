// klingctl cost: what the videos cost (GET /v1/cost), by day, model, batch and label.
#include "cli/commands.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <iostream>

namespace klingd::cli {

namespace json = boost::json;

namespace {
void print_section(const json::object& res, const char* title, const char* list, const char* key)
{
  const auto* rows = res.if_contains(list);
  if (!rows || !rows->is_array() || rows->as_array().empty()) {
    return;
  }
  std::cout << fmt::format("\n{}\n", title);
  for (const auto& r : rows->as_array()) {
    const auto& o = r.as_object();
    std::cout << fmt::format("  {:<44} ${:>10.2f} {:>12} credits {:>6} jobs\n", json::value_to<std::string>(o.at(key)),
                             o.at("usd").to_number<double>(), o.at("credits").to_number<std::int64_t>(),
                             o.at("jobs").to_number<std::int64_t>());
  }
}
} // namespace

int cmd_cost(Session& s)
{
  auto res = s.call_ok("GET", "/v1/cost");
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
    return k_exit_ok;
  }
  const auto& o = res.as_object();
  const auto& total = o.at("total").as_object();
  std::cout << fmt::format("total: ${:.2f} ({} credits) for {} jobs\n", total.at("usd").to_number<double>(),
                           total.at("credits").to_number<std::int64_t>(), total.at("jobs").to_number<std::int64_t>());
  print_section(o, "by day (UTC)", "by_day", "day");
  print_section(o, "by model", "by_model", "model");
  print_section(o, "by batch", "by_batch", "batch");
  print_section(o, "by label", "by_label", "label");
  return k_exit_ok;
}

} // namespace klingd::cli
