// The downloader's pure checks of what a CDN says: numbers and Content-Range, Retry-After,
// redirects and which URLs may be followed (https only unless allowed). No I/O.
#pragma once

#include "daemon/provider/http_client.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace klingd::engine::checks {

using provider::HttpResponse;

std::optional<std::uint64_t> parse_u64(std::string_view text);

struct ContentRange
{
  std::optional<std::uint64_t> first; // nullopt for "bytes */total"
  std::uint64_t last = 0;
  std::optional<std::uint64_t> total; // nullopt for ".../*"
};

// "bytes 100-199/200", "bytes 100-199/*", "bytes */200".
std::optional<ContentRange> parse_content_range(std::string_view text);

std::optional<std::chrono::seconds> parse_retry_after(const HttpResponse& head);

bool is_redirect(int status);

// Checks the scheme policy; the message names the host only.
std::optional<std::string> refuse_url(std::string_view url, bool allow_http, bool redirected);

std::string host_of(std::string_view url);

} // namespace klingd::engine::checks
