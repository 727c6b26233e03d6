#include "common/validate_media.hpp"

#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include <array>
#include <cstring>

namespace klingd::common {

namespace {

// Signed CDN URLs run to a few hundred characters; anything this long is not a URL.
constexpr std::size_t k_max_url_length = 16384;

constexpr std::array<int, 256> make_base64_table()
{
  std::array<int, 256> t{};
  t.fill(-1);
  const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) {
    t[static_cast<unsigned char>(alphabet[i])] = i;
  }
  return t;
}

constexpr std::array<int, 256> k_base64 = make_base64_table();

bool starts_with_ci(std::string_view s, std::string_view prefix)
{
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (c != prefix[i]) {
      return false;
    }
  }
  return true;
}

std::string shorten(std::string_view s)
{
  return s.size() > 40 ? fmt::format("{}…", s.substr(0, 40)) : std::string(s);
}

} // namespace

std::optional<std::vector<unsigned char>> decode_base64(std::string_view text)
{
  while (!text.empty() && text.back() == '=') {
    text.remove_suffix(1);
  }
  if (text.size() % 4 == 1) {
    return std::nullopt;
  }
  std::vector<unsigned char> out;
  out.reserve(text.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = k_base64[static_cast<unsigned char>(c)];
    if (v < 0) {
      return std::nullopt;
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<unsigned char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string_view sniff_image_format(const std::vector<unsigned char>& bytes)
{
  static constexpr unsigned char k_png[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (bytes.size() >= sizeof k_png && std::memcmp(bytes.data(), k_png, sizeof k_png) == 0) {
    return "png";
  }
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    return "jpeg";
  }
  if (bytes.size() >= 12 && std::memcmp(bytes.data(), "RIFF", 4) == 0
      && std::memcmp(bytes.data() + 8, "WEBP", 4) == 0) {
    return "webp";
  }
  return "";
}

std::optional<std::string> check_https_url(std::string_view text)
{
  if (text.size() > k_max_url_length) {
    return fmt::format("URL is {} characters long; at most {}", text.size(), k_max_url_length);
  }
  if (starts_with_ci(text, "http://")) {
    return fmt::format("http URLs are refused, use https (got \"{}\")", shorten(text));
  }
  auto url = boost::urls::parse_absolute_uri(text);
  if (!url) {
    return fmt::format("must be an https URL (got \"{}\")", shorten(text));
  }
  if (url->scheme_id() != boost::urls::scheme::https) {
    return fmt::format("must be an https URL (got scheme \"{}\")", shorten(url->scheme()));
  }
  if (!url->has_authority() || url->encoded_host().empty()) {
    return fmt::format("URL has no host (got \"{}\")", shorten(text));
  }
  return std::nullopt;
}

std::optional<std::string> check_image_input(std::string_view text, std::size_t max_bytes)
{
  if (!starts_with_ci(text, "data:")) {
    auto err = check_https_url(text);
    if (err && !starts_with_ci(text, "http://") && text.size() <= k_max_url_length) {
      return fmt::format("must be an https URL or a data:image/png|jpeg|webp;base64 URI (got \"{}\")", shorten(text));
    }
    return err;
  }
  const auto comma = text.find(',');
  if (comma == std::string_view::npos) {
    return std::string("data URI has no ',' before its payload");
  }
  const std::string_view header = text.substr(5, comma - 5);
  const std::string_view payload = text.substr(comma + 1);
  std::string_view declared;
  for (auto [prefix, format] : {std::pair{"image/png;base64", "png"}, {"image/jpeg;base64", "jpeg"},
                                {"image/jpg;base64", "jpeg"}, {"image/webp;base64", "webp"}}) {
    if (header.size() == std::strlen(prefix) && starts_with_ci(header, prefix)) {
      declared = format;
    }
  }
  if (declared.empty()) {
    return fmt::format("data URI must be data:image/png, image/jpeg or image/webp with ;base64 (got \"data:{}\")",
                       shorten(header));
  }
  // Refuse oversized payloads before decoding them.
  if (payload.size() / 4 * 3 > max_bytes + 3) {
    return fmt::format("image is about {} bytes; at most {} bytes", payload.size() / 4 * 3, max_bytes);
  }
  auto bytes = decode_base64(payload);
  if (!bytes) {
    return std::string("data URI payload is not valid base64");
  }
  if (bytes->size() > max_bytes) {
    return fmt::format("image is {} bytes; at most {} bytes", bytes->size(), max_bytes);
  }
  const std::string_view actual = sniff_image_format(*bytes);
  if (actual.empty()) {
    return fmt::format("data URI declares image/{} but the data is not a PNG, JPEG or WebP image", declared);
  }
  if (actual != declared) {
    return fmt::format("data URI declares image/{} but the data is a {} image", declared, actual);
  }
  return std::nullopt;
}

} // namespace klingd::common
