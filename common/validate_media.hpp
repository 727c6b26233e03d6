// Checks for media inputs in provider requests: https URLs and base64 data URIs of images.
// Kept apart from the catalog so klingctl can reuse them before reading a local file.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace klingd::common {

// Decodes standard base64 (RFC 4648 §4, '=' padding optional, no whitespace).
// nullopt when a character is outside the alphabet or the length is impossible.
std::optional<std::vector<unsigned char>> decode_base64(std::string_view text);

// "png", "jpeg" or "webp" when `bytes` starts with that format's magic bytes, else "".
std::string_view sniff_image_format(const std::vector<unsigned char>& bytes);

// nullopt when `text` is an absolute https URL with a host; else why not
// ("http URLs are refused, use https", "not a URL", …).
std::optional<std::string> check_https_url(std::string_view text);

// nullopt when `text` is an https URL or a data:image/{png,jpeg,webp};base64,… URI whose
// payload decodes, is at most max_bytes and whose magic bytes match the declared type.
std::optional<std::string> check_image_input(std::string_view text, std::size_t max_bytes);

} // namespace klingd::common
