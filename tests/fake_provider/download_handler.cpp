// The fake CDN: signed, expiring video URLs with Range support.
#include "tests/fake_provider/app.hpp"

#include "tests/fake_provider/support.hpp"

#include <boost/url.hpp>
#include <fmt/format.h>

#include <charconv>

namespace fake {

namespace {

Reply text_reply(http::status status, std::string_view text)
{
  Reply reply;
  reply.response.result(status);
  reply.response.set(http::field::content_type, "text/plain; charset=utf-8");
  reply.response.body() = std::string(text);
  return reply;
}

std::optional<std::uint64_t> parse_u64(std::string_view s, int base = 10)
{
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty()) {
    return std::nullopt;
  }
  return v;
}

struct ByteRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0; // exclusive
};

enum class RangeResult { none, ok, unsatisfiable };

// One range of "bytes=a-b", "bytes=a-" or "bytes=-n"; several ranges are answered with the
// whole file (RFC 9110 lets a server ignore Range).
RangeResult parse_range(std::string_view header, std::uint64_t size, ByteRange& out)
{
  if (header.empty()) {
    return RangeResult::none;
  }
  if (!header.starts_with("bytes=") || header.find(',') != std::string_view::npos) {
    return RangeResult::none;
  }
  header.remove_prefix(6);
  auto dash = header.find('-');
  if (dash == std::string_view::npos) {
    return RangeResult::none;
  }
  auto first = header.substr(0, dash);
  auto last = header.substr(dash + 1);
  if (first.empty()) {
    auto n = parse_u64(last);
    if (!n) {
      return RangeResult::none;
    }
    if (*n == 0 || size == 0) {
      return RangeResult::unsatisfiable;
    }
    out.begin = size - std::min(*n, size);
    out.end = size;
    return RangeResult::ok;
  }
  auto a = parse_u64(first);
  if (!a) {
    return RangeResult::none;
  }
  std::uint64_t b = size == 0 ? 0 : size - 1;
  if (!last.empty()) {
    auto parsed = parse_u64(last);
    if (!parsed || *parsed < *a) {
      return RangeResult::none;
    }
    b = std::min(*parsed, b);
  }
  if (*a >= size) {
    return RangeResult::unsatisfiable;
  }
  out.begin = *a;
  out.end = b + 1;
  return RangeResult::ok;
}

} // namespace

Reply App::handle_download(const Request& request)
{
  ++m_state.downloads;
  auto reject = [&](http::status status, std::string_view text) {
    ++m_state.downloads_rejected;
    return text_reply(status, text);
  };
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    return reject(http::status::method_not_allowed, "Method Not Allowed");
  }

  ApiCall call; // the CDN knows nothing of API request ids
  const FaultType fault = m_state.faults.decide(EndpointKind::download, m_config);
  if (auto reply = generic_fault_reply(fault, call)) {
    if (!reply->reset) {
      ++m_state.downloads_rejected;
    }
    return std::move(*reply);
  }
  if (fault == FaultType::expired_url) {
    return reject(static_cast<http::status>(m_config.expired_url_status), "Request has expired");
  }

  auto url = boost::urls::parse_origin_form(request.target());
  if (!url) {
    return reject(http::status::not_found, "Not Found");
  }
  std::string path(url->encoded_path());
  // /cdn/kangaroo/muse/<serial>/VIDEO/<token>.mp4
  constexpr std::string_view k_prefix = "/cdn/kangaroo/muse/";
  Generation* g = nullptr;
  if (path.starts_with(k_prefix)) {
    std::string_view rest = std::string_view(path).substr(k_prefix.size());
    auto slash = rest.find('/');
    auto serial = parse_u64(rest.substr(0, slash));
    if (serial && *serial >= 1 && *serial <= m_state.generations.size()) {
      Generation* candidate = m_state.generations[*serial - 1].get();
      if (rest.substr(slash == std::string_view::npos ? rest.size() : slash)
          == fmt::format("/VIDEO/{}.mp4", candidate->url_token)) {
        g = candidate;
      }
    }
  }
  // /cdn/flamingo/files/<serial>/<token>_output.mp4: the fal mirror's unsigned links.
  constexpr std::string_view k_fal_prefix = "/cdn/flamingo/files/";
  bool fal = false;
  if (!g && path.starts_with(k_fal_prefix)) {
    std::string_view rest = std::string_view(path).substr(k_fal_prefix.size());
    auto slash = rest.find('/');
    auto serial = parse_u64(rest.substr(0, slash));
    if (serial && *serial >= 1 && *serial <= m_state.generations.size()) {
      Generation* candidate = m_state.generations[*serial - 1].get();
      if (candidate->served == "fal"
          && rest.substr(slash == std::string_view::npos ? rest.size() : slash)
               == fmt::format("/{}_output.mp4", candidate->url_token)) {
        g = candidate;
        fal = true;
      }
    }
  }
  if (!g || g->phase_at(mono_now()) != Phase::completed) {
    return reject(http::status::not_found, "Not Found");
  }
  if (fal && wall_now() > g->finished_wall() + m_config.fal_url_ttl_s) {
    return reject(static_cast<http::status>(m_config.expired_url_status), "Request has expired");
  }

  std::string ks_time;
  std::string ks_secret;
  for (auto param : url->params()) {
    if (param.key == "ksTime") {
      ks_time = param.value;
    } else if (param.key == "ksSecret") {
      ks_secret = param.value;
    }
  }
  auto expiry_ms = parse_u64(ks_time, 16);
  if (!fal && (!expiry_ms || ks_secret != url_signature(path, ks_time))) {
    return reject(static_cast<http::status>(m_config.bad_signature_status), "Access Denied");
  }
  if (!fal && static_cast<double>(*expiry_ms) < wall_now() * 1000.0) {
    return reject(static_cast<http::status>(m_config.expired_url_status), "Request has expired");
  }

  const std::uint64_t size = g->video->size();
  ByteRange range{0, size};
  auto range_result = parse_range(request[http::field::range], size, range);
  if (range_result == RangeResult::unsatisfiable) {
    Reply reply = reject(http::status::range_not_satisfiable, "Range Not Satisfiable");
    reply.response.set(http::field::content_range, fmt::format("bytes */{}", size));
    return reply;
  }

  Reply reply;
  reply.response.result(range_result == RangeResult::ok ? http::status::partial_content : http::status::ok);
  reply.response.set(http::field::content_type, "video/mp4");
  reply.response.set(http::field::accept_ranges, "bytes");
  reply.response.set(http::field::etag, fmt::format("\"{}-{}\"", g->url_token, size));
  if (range_result == RangeResult::ok) {
    reply.response.set(http::field::content_range,
                       fmt::format("bytes {}-{}/{}", range.begin, range.end - 1, size));
  }
  reply.response.content_length(range.end - range.begin);
  VideoStream stream;
  stream.layout = g->video;
  stream.begin = range.begin;
  stream.end = range.end;
  stream.head_only = request.method() == http::verb::head;
  if (fault == FaultType::truncated) {
    stream.cut_after = (range.end - range.begin) / 2;
  }
  if (fault == FaultType::slow) {
    reply.delay_s = m_config.slow_delay_s;
  }
  ++g->downloads;
  reply.video = std::move(stream);
  return reply;
}

} // namespace fake
