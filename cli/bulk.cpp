// klingctl retry|cancel --batch B [--failed|--canceled] [--label k=v]… [--dry-run]: bulk actions
// through POST /v1/batches/{id}/retry|cancel (docs/contract.md §4.1, §4.2).
#include "cli/commands.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <iostream>

namespace klingd::cli {

namespace json = boost::json;

int cmd_bulk(Session& s, std::string_view action, const BulkOptions& o)
{
  std::string query;
  auto add = [&query](std::string_view name, const std::string& value) {
    query += query.empty() ? "?" : "&";
    query += fmt::format("{}={}", name, url_encode(value));
  };
  if (!o.states.empty()) {
    std::string states;
    for (const auto& st : o.states) {
      states += states.empty() ? st : "," + st;
    }
    add("state", states);
  }
  for (const auto& l : o.labels) {
    if (l.find('=') == std::string::npos || l.front() == '=') {
      throw CliExit(k_exit_usage, fmt::format("--label {}: expected NAME=VALUE", l));
    }
    add("label", l);
  }
  if (o.dry_run) {
    add("dry_run", "1");
  }
  auto res = s.call_ok("POST", fmt::format("/v1/batches/{}/{}{}", url_encode(o.batch), action, query));
  if (s.json()) {
    std::cout << json::serialize(res) << '\n';
    return k_exit_ok;
  }
  const auto& a = res.as_object();
  std::string states;
  for (const auto& st : a.at("states").as_array()) {
    states += states.empty() ? "" : ",";
    states += std::string_view(st.as_string());
  }
  const auto matched = a.at("matched").to_number<std::int64_t>();
  if (o.dry_run) {
    std::cout << fmt::format("dry run: {} would {} {} job(s) of batch {} ({}); nothing changed\n",
                             action == "retry" ? "retry" : "cancel", action == "retry" ? "re-queue" : "stop", matched,
                             o.batch, states);
    for (const auto& id : a.at("ids").as_array()) {
      std::cout << "  " << std::string_view(id.as_string()) << '\n';
    }
    return k_exit_ok;
  }
  const auto& refused = a.at("refused").as_array();
  std::cout << fmt::format("batch {}: {} of {} job(s) {} ({})\n", o.batch, a.at("done").to_number<std::int64_t>(),
                           matched, action == "retry" ? "retried" : "canceled", states);
  for (const auto& r : refused) {
    const auto& ro = r.as_object();
    std::cout << fmt::format("  {} refused: {}\n", std::string_view(ro.at("id").as_string()),
                             std::string_view(ro.at("message").as_string()));
  }
  return refused.empty() ? k_exit_ok : k_exit_failed;
}

} // namespace klingd::cli
