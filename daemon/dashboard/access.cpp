#include "daemon/dashboard/access.hpp"

#include "common/log.hpp"
#include "daemon/api/error.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <charconv>
#include <chrono>
#include <filesystem>

namespace klingd::dashboard {

namespace {

constexpr std::size_t k_token_bytes = 32;
constexpr std::string_view k_token_file = "dashboard.token";

bool is_token(std::string_view s)
{
  if (s.size() != k_token_bytes * 2) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// Constant time, so the comparison does not tell how much of a guess was right.
bool same_token(std::string_view given, std::string_view token)
{
  return given.size() == token.size() && CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
}

std::string lower(std::string_view s)
{
  std::string out(s);
  for (auto& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string hex(const unsigned char* p, std::size_t n)
{
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out += fmt::format("{:02x}", p[i]);
  }
  return out;
}

// HMAC-SHA256 keyed with the token over what the link grants: this job's video until `expires`.
std::string video_signature(const Access& access, std::string_view job_id, std::int64_t expires)
{
  const auto message = fmt::format("klingd-video\n{}\n{}", job_id, expires);
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), access.token.data(), static_cast<int>(access.token.size()),
            reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac.data(), &len)) {
    return {};
  }
  return hex(mac.data(), len);
}

bool bearer_ok(const Access& access, const api::Request& req)
{
  const auto auth = req.header("authorization");
  return auth.rfind("Bearer ", 0) == 0 && same_token(std::string_view(auth).substr(7), access.token);
}

std::string cookie_value(std::string_view header, std::string_view name)
{
  while (!header.empty()) {
    auto semi = header.find(';');
    auto part = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    while (!part.empty() && part.front() == ' ') {
      part.remove_prefix(1);
    }
    auto eq = part.find('=');
    if (eq != std::string_view::npos && part.substr(0, eq) == name) {
      return std::string(part.substr(eq + 1));
    }
  }
  return {};
}

} // namespace

std::string Access::origin() const
{
  return fmt::format("http://{}:{}", host, bound_port);
}

std::string Access::url() const
{
  return fmt::format("{}/#token={}", origin(), token);
}

std::string Access::cookie_name() const
{
  return fmt::format("klingd_dashboard_{}", bound_port);
}

Result<std::string> load_or_create_token(const std::string& state_dir)
{
  const auto path = (std::filesystem::path(state_dir) / k_token_file).string();
  auto fail = [&](std::string why) { return make_error("dashboard", fmt::format("dashboard token {}: {}", path, why)); };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    std::array<char, 256> buf{};
    auto n = ::read(fd, buf.data(), buf.size());
    struct stat st{};
    const bool loose = ::fstat(fd, &st) == 0 && (st.st_mode & 077) != 0;
    if (loose) {
      // Whoever can read it can drive the dashboard: keep it to the service user.
      ::fchmod(fd, 0600);
      log::warning("dashboard.token_mode_tightened", {{"path", path}});
    }
    ::close(fd);
    std::string_view s(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) {
      s.remove_suffix(1);
    }
    if (!is_token(s)) {
      return fail("is not 64 hex digits; delete it and a new one is made at start");
    }
    return std::string(s);
  }
  if (errno != ENOENT) {
    return fail(std::strerror(errno));
  }
  std::array<unsigned char, k_token_bytes> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    return fail("no random bytes from OpenSSL");
  }
  std::string token = hex(raw.data(), raw.size());
  // O_EXCL: never follow or reuse a file someone else put there.
  fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return fail(fmt::format("cannot create: {}", std::strerror(errno)));
  }
  const std::string line = token + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return fail("cannot write");
  }
  log::info("dashboard.token_created", {{"path", path}});
  return token;
}

Result<Access> open_access(const std::string& state_dir, const std::string& listen)
{
  Access a;
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return make_error("dashboard", fmt::format("dashboard.listen: must be host:port (got \"{}\")", listen));
  }
  a.host = listen.substr(0, colon);
  a.port = listen.substr(colon + 1);
  auto token = load_or_create_token(state_dir);
  if (!token) {
    return token.error();
  }
  a.token = std::move(*token);
  return a;
}

bool loopback_host(std::string_view host_header, unsigned short port)
{
  std::string h = lower(host_header);
  std::string name;
  std::string port_text;
  if (!h.empty() && h.front() == '[') {
    auto close = h.find(']');
    if (close == std::string::npos) {
      return false;
    }
    name = h.substr(1, close - 1);
    auto rest = h.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return false;
      }
      port_text = rest.substr(1);
    }
  } else {
    auto colon = h.find(':');
    name = h.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = h.substr(colon + 1);
    }
  }
  if (port_text.empty() ? port != 80 : port_text != std::to_string(port)) {
    return false;
  }
  if (name == "localhost" || name == "::1") {
    return true;
  }
  // 127.a.b.c in dotted decimal only: "127.evil.com" must not pass.
  if (name.rfind("127.", 0) != 0) {
    return false;
  }
  int dots = 0;
  for (char c : name) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

std::string video_link(const Access& access, std::string_view job_id, std::int64_t expires)
{
  return fmt::format("/v1/jobs/{}/video?exp={}&sig={}", job_id, expires, video_signature(access, job_id, expires));
}

bool valid_video_link(const Access& access, std::string_view job_id, const api::Request& req, std::int64_t now)
{
  const auto exp_text = req.query_value("exp");
  const auto sig = req.query_value("sig");
  if (!exp_text || !sig) {
    return false;
  }
  std::int64_t expires = 0;
  auto [end, ec] = std::from_chars(exp_text->data(), exp_text->data() + exp_text->size(), expires);
  if (ec != std::errc() || end != exp_text->data() + exp_text->size() || expires < now ||
      expires > now + k_video_link_ttl_s) {
    return false;
  }
  const auto want = video_signature(access, job_id, expires);
  return !want.empty() && same_token(*sig, want);
}

bool carries_old_cookie(const Access& access, const api::Request& req)
{
  return !cookie_value(req.header("cookie"), access.cookie_name()).empty();
}

bool has_credential(const Access& access, const api::Request& req)
{
  if (bearer_ok(access, req)) {
    return true;
  }
  const auto& s = req.segments;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  return s.size() == 4 && s[0] == "v1" && s[1] == "jobs" && s[3] == "video" &&
         valid_video_link(access, s[2], req, now.count());
}

std::optional<api::Response> check_request(const Access& access, const api::Request& req, Need need,
                                           std::string_view video_job)
{
  using api::ApiError;
  const auto host = req.header("host");
  if (!loopback_host(host, access.bound_port)) {
    // A page on another site that rebinds its name to 127.0.0.1 arrives with its own Host.
    return api::error_response(ApiError::forbidden,
                               fmt::format("Host \"{}\" is not this dashboard's loopback address", host));
  }
  bool ok = need == Need::nothing || bearer_ok(access, req);
  if (!ok && need == Need::token_or_video_link) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    ok = valid_video_link(access, video_job, req, now.count());
  }
  if (!ok) {
    return api::error_response(ApiError::unauthorized,
                               "the dashboard needs its token: open the address `klingctl dashboard` prints");
  }
  if (req.method != "GET" && req.method != "HEAD") {
    // A form posted from another page cannot set Authorization, and a script on another
    // origin cannot send it without a CORS preflight we never answer; Origin is checked too.
    const auto origin = lower(req.header("origin"));
    if (origin.empty() || origin != "http://" + lower(host)) {
      return api::error_response(ApiError::forbidden,
                                 fmt::format("Origin \"{}\" is not this dashboard's", req.header("origin")));
    }
  }
  return std::nullopt;
}

std::string redact_target(std::string_view target)
{
  std::string out(target);
  for (std::string_view name : {"token=", "sig="}) {
    for (auto pos = out.find(name); pos != std::string::npos; pos = out.find(name, pos + 1)) {
      if (pos != 0 && out[pos - 1] != '?' && out[pos - 1] != '&') {
        continue;
      }
      const auto from = pos + name.size();
      auto end = out.find('&', pos);
      out.replace(from, (end == std::string::npos ? out.size() : end) - from, "…");
    }
  }
  return out;
}

} // namespace klingd::dashboard
