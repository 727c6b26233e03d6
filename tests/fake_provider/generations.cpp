#include "tests/fake_provider/generations.hpp"

#include "tests/fake_provider/support.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>

namespace fake {

namespace json = boost::json;

Phase Generation::phase_at(double mono) const
{
  double elapsed = mono - created_mono;
  if (elapsed < queued_s) {
    return Phase::queued;
  }
  if (elapsed < queued_s + generating_s) {
    return Phase::generating;
  }
  return fails ? Phase::failed : Phase::completed;
}

std::string Generation::status_word(Phase phase, double mono) const
{
  switch (phase) {
  case Phase::queued:
    return legacy_statuses ? "waiting" : "queued";
  case Phase::generating:
    if (!legacy_statuses) {
      return "generating";
    }
    // The older examples show `active` and then `processing`.
    return mono - created_mono < queued_s + generating_s / 2 ? "active" : "processing";
  case Phase::completed:
    return "completed";
  case Phase::failed:
    return failure_status;
  }
  return "queued";
}

namespace {

std::string uuid_from(std::uint64_t a, std::uint64_t b)
{
  // Version-4 / variant-1 bits set, as a real random UUID would have.
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xffff,
                     b >> 48, b & 0xffffffffffffULL);
}

} // namespace

std::string make_generation_id(const std::string& shape, std::uint64_t seed, std::uint64_t serial,
                               std::string_view model)
{
  static constexpr std::string_view k_shapes[] = {"nanoid", "uuid", "uuid_model", "numeric"};
  std::string_view chosen = shape;
  if (shape == "rotate") {
    chosen = k_shapes[(serial - 1) % 4];
  }
  std::uint64_t a = mix64(seed ^ mix64(serial * 2 + 0x1d));
  std::uint64_t b = mix64(a ^ serial);
  if (chosen == "uuid") {
    return uuid_from(a, b);
  }
  if (chosen == "uuid_model") {
    return uuid_from(a, b) + ":" + std::string(model);
  }
  if (chosen == "numeric") {
    // 19 digits, like the long numeric task ids some Kling routes return.
    return fmt::format("{}", 1000000000000000000ULL + a % 8000000000000000000ULL);
  }
  static constexpr std::string_view k_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  std::string id;
  for (int i = 0; i < 21; ++i) {
    std::uint64_t word = i < 10 ? a : b;
    id.push_back(k_alphabet[(word >> ((i % 10) * 6)) & 63]);
  }
  return id;
}

std::string make_request_id(std::uint64_t seed, std::uint64_t ordinal)
{
  std::uint64_t a = mix64(seed ^ mix64(ordinal + 0x7e9));
  return uuid_from(a, mix64(a + 1));
}

namespace {

void write_canonical(const json::value& v, std::string& out)
{
  if (v.is_object()) {
    std::vector<std::pair<std::string_view, const json::value*>> items;
    for (const auto& [k, val] : v.get_object()) {
      items.emplace_back(k, &val);
    }
    std::sort(items.begin(), items.end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
    out.push_back('{');
    bool first = true;
    for (const auto& [k, val] : items) {
      if (!first) {
        out.push_back(',');
      }
      first = false;
      out += json::serialize(json::string(k));
      out.push_back(':');
      write_canonical(*val, out);
    }
    out.push_back('}');
  } else if (v.is_array()) {
    out.push_back('[');
    bool first = true;
    for (const auto& item : v.get_array()) {
      if (!first) {
        out.push_back(',');
      }
      first = false;
      write_canonical(item, out);
    }
    out.push_back(']');
  } else {
    out += json::serialize(v);
  }
}

} // namespace

std::string canonical_json(const json::value& v)
{
  std::string out;
  write_canonical(v, out);
  return out;
}

} // namespace fake
