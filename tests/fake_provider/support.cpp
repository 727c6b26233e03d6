#include "tests/fake_provider/support.hpp"

#include <openssl/evp.h>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace fake {

double wall_now()
{
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

double mono_now()
{
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string iso8601(double wall_seconds)
{
  auto whole = static_cast<std::time_t>(wall_seconds);
  auto millis = static_cast<int>((wall_seconds - static_cast<double>(whole)) * 1000.0);
  if (millis < 0) {
    millis = 0;
  }
  std::tm tm{};
  gmtime_r(&whole, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

namespace {

bool take_digits(std::string_view& s, std::size_t n, int& out)
{
  if (s.size() < n) {
    return false;
  }
  out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9') {
      return false;
    }
    out = out * 10 + (s[i] - '0');
  }
  s.remove_prefix(n);
  return true;
}

bool take_char(std::string_view& s, char c)
{
  if (s.empty() || s.front() != c) {
    return false;
  }
  s.remove_prefix(1);
  return true;
}

} // namespace

std::optional<double> parse_iso8601(std::string_view s)
{
  std::tm tm{};
  int year = 0, month = 0, day = 0;
  if (!take_digits(s, 4, year) || !take_char(s, '-') || !take_digits(s, 2, month)
      || !take_char(s, '-') || !take_digits(s, 2, day)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31) {
    return std::nullopt;
  }
  int hour = 0, minute = 0, second = 0;
  double fraction = 0.0;
  int offset_seconds = 0;
  if (!s.empty() && (s.front() == 'T' || s.front() == 't' || s.front() == ' ')) {
    s.remove_prefix(1);
    if (!take_digits(s, 2, hour) || !take_char(s, ':') || !take_digits(s, 2, minute)) {
      return std::nullopt;
    }
    if (take_char(s, ':')) {
      if (!take_digits(s, 2, second)) {
        return std::nullopt;
      }
      if (take_char(s, '.')) {
        double scale = 0.1;
        bool any = false;
        while (!s.empty() && s.front() >= '0' && s.front() <= '9') {
          fraction += (s.front() - '0') * scale;
          scale /= 10;
          s.remove_prefix(1);
          any = true;
        }
        if (!any) {
          return std::nullopt;
        }
      }
    }
    if (take_char(s, 'Z') || take_char(s, 'z')) {
      // UTC
    } else if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
      int sign = s.front() == '-' ? -1 : 1;
      s.remove_prefix(1);
      int oh = 0, om = 0;
      if (!take_digits(s, 2, oh)) {
        return std::nullopt;
      }
      take_char(s, ':');
      if (!take_digits(s, 2, om)) {
        return std::nullopt;
      }
      offset_seconds = sign * (oh * 3600 + om * 60);
    }
  }
  if (!s.empty() || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<double>(timegm(&tm)) - offset_seconds + fraction;
}

std::uint64_t mix64(std::uint64_t x)
{
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

double unit_random(std::uint64_t seed, std::uint64_t a, std::uint64_t b)
{
  std::uint64_t h = mix64(seed ^ mix64(a ^ mix64(b)));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

std::string to_hex(const unsigned char* data, std::size_t size)
{
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(k_digits[data[i] >> 4]);
    out.push_back(k_digits[data[i] & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view data)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return to_hex(md, len);
}

bool valid_client_request_id(std::string_view value)
{
  if (value.empty() || value.size() > 128) {
    return false;
  }
  for (char c : value) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

} // namespace fake
