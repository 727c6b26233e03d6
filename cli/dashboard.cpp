// klingctl dashboard: prints the dashboard's address with its token. The daemon hands it
// out on the socket (GET /v1/dashboard): whoever may use the socket may use the page.
#include "cli/commands.hpp"

#include <boost/json/serialize.hpp>

#include <iostream>

namespace klingd::cli {

int cmd_dashboard(Session& s)
{
  auto res = s.call_ok("GET", "/v1/dashboard");
  if (s.json()) {
    std::cout << boost::json::serialize(res) << '\n';
    return k_exit_ok;
  }
  const auto* url = res.as_object().if_contains("url");
  if (!url || !url->is_string()) {
    throw CliExit(k_exit_failed, "the dashboard is off: set dashboard.listen (e.g. \"127.0.0.1:8787\") in klingd's "
                                 "configuration and restart it");
  }
  std::cout << std::string_view(url->get_string()) << '\n';
  return k_exit_ok;
}

} // namespace klingd::cli
