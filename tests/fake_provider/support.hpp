// Small helpers shared by the fake provider's parts: clocks, ISO-8601, deterministic
// randomness and hashing. Kept free of Beast/Asio so every file can include it cheaply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fake {

// Seconds since the Unix epoch (wall clock), with fractions; used for timestamps clients see.
double wall_now();
// Seconds on a monotonic clock; used for everything that measures elapsed time.
double mono_now();

// "2026-01-20T10:00:00.123Z" (UTC, milliseconds).
std::string iso8601(double wall_seconds);
// Accepts "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.fff]]" with "Z", "+hh:mm" or no zone (UTC);
// nullopt on anything else.
std::optional<double> parse_iso8601(std::string_view text);

// splitmix64 finaliser: a cheap, well-mixed hash of one 64-bit word.
std::uint64_t mix64(std::uint64_t x);
// Deterministic value in [0, 1) derived from the seed and two coordinates, so a decision for
// "the n-th request of kind k" does not depend on how other requests interleave.
double unit_random(std::uint64_t seed, std::uint64_t a, std::uint64_t b);

std::string to_hex(const unsigned char* data, std::size_t size);
std::string sha256_hex(std::string_view data);

// True for 1-128 characters of A-Z a-z 0-9 . _ : - (the provider's X-Client-Request-Id rule).
bool valid_client_request_id(std::string_view value);

} // namespace fake
