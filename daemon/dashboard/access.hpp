// Who may use the dashboard (docs/contract.md §4.5, issues 11 and 17; docs/security.md): a browser on
// this machine that holds the token kept in <state_dir>/dashboard.token. The socket is
// trusted (its file mode decides who connects); the TCP listener is reachable by every
// local user and by any web page the browser has open, hence the token, the Host check
// (DNS rebinding) and the Origin check on POST (cross-site form posts).
//
// The token never travels in a cookie (cookies are not isolated by port, so every other
// server on 127.0.0.1 would receive it): `klingctl dashboard` prints it in the URL's
// fragment, which the browser keeps to itself; the page sends it as
// `Authorization: Bearer`. A <video> cannot send a header, so it gets a per-job link
// signed with the token that expires after k_video_link_ttl.
#pragma once

#include "common/result.hpp"
#include "daemon/api/http.hpp"

#include <cstdint>
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
  // The page's address with the token in the fragment, what `klingctl dashboard` prints.
  std::string url() const;
  // The cookie that earlier versions set (the token, port in the name): requests that
  // still carry it are answered with a Set-Cookie that deletes it.
  std::string cookie_name() const;
};

// How long a signed video link is valid.
inline constexpr std::int64_t k_video_link_ttl_s = 600;

// Splits `listen` (validated by the config: loopback host:port) and reads the token,
// creating it (32 random bytes, hex, mode 0600) on first start.
Result<Access> open_access(const std::string& state_dir, const std::string& listen);

// Reads <state_dir>/dashboard.token, creating it when missing.
Result<std::string> load_or_create_token(const std::string& state_dir);

// What a request may reach: the page and its assets (static, no data) need no token;
// a job's video takes a signed link or the token; everything else the token.
enum class Need { nothing, token, token_or_video_link };

// Checks Host, then what `need` asks for, then (for anything but GET/HEAD) Origin.
// `video_job` is the job whose video the request names (Need::token_or_video_link).
// nullopt: allowed; otherwise the refusal.
std::optional<api::Response> check_request(const Access& access, const api::Request& req, Need need,
                                           std::string_view video_job = {});

// Whether the request carries the token (Authorization: Bearer) or a valid video link:
// such a connection counts as authenticated for the connection caps.
bool has_credential(const Access& access, const api::Request& req);

// Whether the request still carries the cookie of an earlier version (see cookie_name).
bool carries_old_cookie(const Access& access, const api::Request& req);

// "/v1/jobs/<id>/video?exp=<unix s>&sig=<hex>", valid until `expires` (unix seconds).
std::string video_link(const Access& access, std::string_view job_id, std::int64_t expires);

// Whether `req`'s exp/sig query parameters sign `job_id` and have not expired at `now`.
bool valid_video_link(const Access& access, std::string_view job_id, const api::Request& req, std::int64_t now);

// `target` with the values of token= and sig= hidden, for logs.
std::string redact_target(std::string_view target);

// Whether `host_header` names a loopback host (127.0.0.0/8, localhost, [::1]) at `port`.
bool loopback_host(std::string_view host_header, unsigned short port);

} // namespace klingd::dashboard
