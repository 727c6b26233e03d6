// Who may use the dashboard (SPEC §4.5, issue 11): a browser on this machine that holds
// the token kept in <state_dir>/dashboard.token. The socket is trusted (its file mode
// decides who connects); the TCP listener is reachable by every local user and by any
// web page the browser has open, hence the token, the Host check (DNS rebinding) and
// the Origin check on POST (cross-site form posts).
#pragma once

#include "common/result.hpp"
#include "daemon/api/http.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace klingd::dashboard {

struct Access
{
  std::string token;  // 64 lower-case hex digits
  std::string host;   // as configured: 127.0.0.1, localhost, [::1]
  std::string port;   // as configured; "0" picks a free port
  unsigned short bound_port = 0; // set once listening

  // http://host:port of the listener.
  std::string origin() const;
  // The page's address with the token, what `klingctl dashboard` prints.
  std::string url() const;
  // Cookies ignore ports: two daemons on one host must not overwrite each other's.
  std::string cookie_name() const;
};

// Splits `listen` (validated by the config: loopback host:port) and reads the token,
// creating it (32 random bytes, hex, mode 0600) on first start.
Result<Access> open_access(const std::string& state_dir, const std::string& listen);

// Reads <state_dir>/dashboard.token, creating it when missing.
Result<std::string> load_or_create_token(const std::string& state_dir);

// Checks Host, token and (for anything but GET/HEAD) Origin. nullopt: allowed;
// `token_in_query` tells the caller to set the cookie. Otherwise the refusal.
std::optional<api::Response> check_request(const Access& access, const api::Request& req, bool* token_in_query);

// `target` with the token's value hidden, for logs.
std::string redact_target(std::string_view target);

// Whether `host_header` names a loopback host (127.0.0.0/8, localhost, [::1]) at `port`.
bool loopback_host(std::string_view host_header, unsigned short port);

} // namespace klingd::dashboard
