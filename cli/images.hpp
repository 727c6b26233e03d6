// Local image files for --image/--tail-image/--images: read and sent inline as
// base64 data URIs, so the provider never needs to reach the user's disk.
#pragma once

#include <string>
#include <string_view>

namespace klingd::cli {

// `arg` as it goes into the request: URLs (http, https, data) unchanged; anything
// else is a file path, read and encoded as data:image/{png,jpeg,webp};base64,….
// Throws std::runtime_error naming the file when it cannot be read or is not a
// PNG, JPEG or WebP (by its magic bytes, not its name).
std::string image_argument(const std::string& arg);

// The media type of an image by its first bytes, or empty.
std::string_view sniff_image_type(std::string_view bytes);

std::string base64_encode(std::string_view bytes);

} // namespace klingd::cli
