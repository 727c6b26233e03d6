#include "cli/images.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace klingd::cli {

std::string_view sniff_image_type(std::string_view b)
{
  if (b.size() >= 8 && b.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) {
    return "image/png";
  }
  if (b.size() >= 3 && b.substr(0, 3) == "\xFF\xD8\xFF") {
    return "image/jpeg";
  }
  if (b.size() >= 12 && b.substr(0, 4) == "RIFF" && b.substr(8, 4) == "WEBP") {
    return "image/webp";
  }
  return {};
}

std::string base64_encode(std::string_view in)
{
  static constexpr char k_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    auto n = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
             static_cast<unsigned char>(in[i + 2]);
    out += k_alphabet[(n >> 18) & 63];
    out += k_alphabet[(n >> 12) & 63];
    out += k_alphabet[(n >> 6) & 63];
    out += k_alphabet[n & 63];
  }
  if (i + 1 == in.size()) {
    auto n = static_cast<unsigned char>(in[i]) << 16;
    out += k_alphabet[(n >> 18) & 63];
    out += k_alphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    auto n = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += k_alphabet[(n >> 18) & 63];
    out += k_alphabet[(n >> 12) & 63];
    out += k_alphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string image_argument(const std::string& arg)
{
  if (arg.rfind("https://", 0) == 0 || arg.rfind("http://", 0) == 0 || arg.rfind("data:", 0) == 0) {
    return arg;
  }
  std::ifstream in(arg, std::ios::binary);
  if (!in) {
    throw std::runtime_error(fmt::format("image {}: {} (give an https URL or a readable file)", arg, std::strerror(errno)));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string bytes = buf.str();
  auto type = sniff_image_type(bytes);
  if (type.empty()) {
    throw std::runtime_error(fmt::format("image {}: not a PNG, JPEG or WebP file", arg));
  }
  return fmt::format("data:{};base64,{}", type, base64_encode(bytes));
}

} // namespace klingd::cli
