// The dashboard's credentials (issue 17): the token only as Authorization: Bearer, signed
// video links bound to one job and a short life, redaction for logs; and the connection caps
// that keep descriptors for the engine.
#include "daemon/api/api_server.hpp"
#include "daemon/api/http.hpp"
#include "daemon/dashboard/access.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace klingd;
using dashboard::Access;

namespace {

Access access()
{
  Access a;
  a.token = std::string(64, 'a');
  a.host = "127.0.0.1";
  a.port = "0";
  a.bound_port = 8787;
  return a;
}

api::Request get(std::string target, std::string auth = {})
{
  api::Request r;
  r.method = "GET";
  r.target = target;
  auto q = target.find('?');
  std::string path = target.substr(0, q);
  std::size_t pos = 1;
  while (pos <= path.size()) {
    auto next = path.find('/', pos);
    r.segments.push_back(path.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) {
      break;
    }
    pos = next + 1;
  }
  if (q != std::string::npos) {
    std::string rest = target.substr(q + 1);
    while (!rest.empty()) {
      auto amp = rest.find('&');
      auto kv = rest.substr(0, amp);
      auto eq = kv.find('=');
      r.query.emplace(kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
      rest = amp == std::string::npos ? "" : rest.substr(amp + 1);
    }
  }
  r.headers["host"] = "127.0.0.1:8787";
  if (!auth.empty()) {
    r.headers["authorization"] = auth;
  }
  r.dashboard = true;
  return r;
}

} // namespace

TEST_CASE("dashboard: the URL carries the token in its fragment, never in the query")
{
  const auto a = access();
  CHECK(a.url() == "http://127.0.0.1:8787/#token=" + a.token);
}

TEST_CASE("dashboard: the token is accepted as Bearer only; the page needs none")
{
  using dashboard::Need;
  const auto a = access();
  CHECK_FALSE(dashboard::check_request(a, get("/v1/status", "Bearer " + a.token), Need::token));
  CHECK(dashboard::check_request(a, get("/v1/status"), Need::token)->status == 401);
  CHECK(dashboard::check_request(a, get("/v1/status?token=" + a.token), Need::token)->status == 401);
  auto cookie = get("/v1/status");
  cookie.headers["cookie"] = "klingd_dashboard_8787=" + a.token;
  CHECK(dashboard::check_request(a, cookie, Need::token)->status == 401);
  CHECK(dashboard::carries_old_cookie(a, cookie));
  CHECK(dashboard::check_request(a, get("/v1/status", "Bearer " + std::string(64, 'b')), Need::token)->status == 401);
  CHECK_FALSE(dashboard::check_request(a, get("/"), Need::nothing));
  auto other_host = get("/");
  other_host.headers["host"] = "evil.example:8787";
  CHECK(dashboard::check_request(a, other_host, Need::nothing)->status == 403);
}

TEST_CASE("dashboard: a video link opens one job's video until it expires")
{
  const auto a = access();
  const std::int64_t now = 1'800'000'000;
  const auto link = dashboard::video_link(a, "J1", now + 600);
  CHECK(link.rfind("/v1/jobs/J1/video?exp=1800000600&sig=", 0) == 0);
  CHECK(link.find(a.token) == std::string::npos);
  CHECK(dashboard::valid_video_link(a, "J1", get(link), now));
  CHECK(dashboard::valid_video_link(a, "J1", get(link), now + 600));
  CHECK_FALSE(dashboard::valid_video_link(a, "J1", get(link), now + 601));              // expired
  CHECK_FALSE(dashboard::valid_video_link(a, "J2", get(link), now));                    // another job
  CHECK_FALSE(dashboard::valid_video_link(a, "J1", get(dashboard::video_link(a, "J1", now + 601)), now)); // too long
  auto forged = link;
  forged.back() = forged.back() == '0' ? '1' : '0';
  CHECK_FALSE(dashboard::valid_video_link(a, "J1", get(forged), now));
  Access other = a;
  other.token = std::string(64, 'c');
  CHECK_FALSE(dashboard::valid_video_link(other, "J1", get(link), now)); // signed with the token
  CHECK_FALSE(dashboard::valid_video_link(a, "J1", get("/v1/jobs/J1/video?exp=x&sig=y"), now));
  CHECK(dashboard::redact_target(link).find("sig=…") != std::string::npos);
  CHECK(dashboard::redact_target("/?token=abc&x=1") == "/?token=…&x=1");
}

TEST_CASE("api: connection caps leave the engine its descriptors")
{
  // Plenty of descriptors: the configured caps.
  auto c = api::connection_caps(65536, 1024, 64, 4);
  CHECK_FALSE(c.lowered);
  CHECK(c.socket == 1024);
  CHECK(c.dashboard == 64);
  CHECK(c.unauthenticated == 16);
  CHECK(c.reserve == 512 + 16);
  // A soft limit of 1024: both caps shrink so that the listeners never eat into the reserve.
  c = api::connection_caps(1024, 1024, 64, 4);
  CHECK(c.lowered);
  CHECK(c.socket + c.dashboard + c.reserve <= 1024);
  CHECK(c.dashboard >= 8);
  CHECK(c.unauthenticated >= 1);
  CHECK(c.unauthenticated < c.dashboard);
  // No dashboard: it takes nothing.
  c = api::connection_caps(1024, 1024, 0, 4);
  CHECK(c.dashboard == 0);
  CHECK(c.socket + c.reserve <= 1024);
}
