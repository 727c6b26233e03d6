#include "daemon/engine/download_checks.hpp"
#include "daemon/engine/downloader.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <fmt/format.h>

#include <charconv>

namespace klingd::engine::checks {

std::optional<std::uint64_t> parse_u64(std::string_view text)
{
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return value;
}

std::optional<ContentRange> parse_content_range(std::string_view text)
{
  constexpr std::string_view prefix = "bytes ";
  if (text.substr(0, prefix.size()) != prefix) {
    return std::nullopt;
  }
  text.remove_prefix(prefix.size());
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return std::nullopt;
  }
  ContentRange out;
  const auto range = text.substr(0, slash);
  const auto total = text.substr(slash + 1);
  if (total != "*") {
    out.total = parse_u64(total);
    if (!out.total) {
      return std::nullopt;
    }
  }
  if (range != "*") {
    const auto dash = range.find('-');
    if (dash == std::string_view::npos) {
      return std::nullopt;
    }
    out.first = parse_u64(range.substr(0, dash));
    const auto last = parse_u64(range.substr(dash + 1));
    if (!out.first || !last || *last < *out.first) {
      return std::nullopt;
    }
    out.last = *last;
  }
  return out;
}

std::optional<std::chrono::seconds> parse_retry_after(const HttpResponse& head)
{
  // Delta seconds only; an HTTP-date is rare from CDNs and the engine has its own backoff.
  if (auto value = head.header("Retry-After")) {
    if (auto secs = parse_u64(*value)) {
      return std::chrono::seconds(std::min<std::uint64_t>(*secs, 86400));
    }
  }
  return std::nullopt;
}

bool is_redirect(int status)
{
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::optional<std::string> refuse_url(std::string_view url, bool allow_http, bool redirected)
{
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    return redirected ? "redirect to an invalid URL" : "invalid video URL";
  }
  const auto scheme = parsed->scheme_id();
  if (scheme == boost::urls::scheme::https) {
    return std::nullopt;
  }
  if (scheme == boost::urls::scheme::http) {
    if (allow_http) {
      return std::nullopt;
    }
    return fmt::format("{}http URL refused (host {}; download.allow_http is false)",
                       redirected ? "redirect to " : "", std::string_view(parsed->host()));
  }
  return fmt::format("{}unsupported URL scheme '{}'", redirected ? "redirect to " : "",
                     std::string_view(parsed->scheme()));
}

std::string host_of(std::string_view url)
{
  auto parsed = boost::urls::parse_uri(url);
  return parsed ? std::string(parsed->host()) : std::string("?");
}

} // namespace klingd::engine::checks

namespace klingd::engine {

std::string_view to_string(DownloadStatus status)
{
  switch (status) {
  case DownloadStatus::ok: return "ok";
  case DownloadStatus::url_expired: return "url_expired";
  case DownloadStatus::transient: return "transient";
  case DownloadStatus::fatal: return "fatal";
  }
  return "unknown";
}

} // namespace klingd::engine
