// Wall-clock time as the API shows it: RFC 3339 UTC with milliseconds.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace klingd {

using SysTime = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>;

SysTime now_utc();
// "2026-11-22T05:40:01.123Z" — fixed width, so text order is time order.
std::string format_rfc3339(SysTime t);
// Accepts the format above and also without fraction or with an offset "+00:00".
std::optional<SysTime> parse_rfc3339(std::string_view text);
// "2026-11-22" (UTC day), for per-day accounting.
std::string format_day(SysTime t);

} // namespace klingd
