// The version both binaries report.
#pragma once
#include <string_view>
namespace klingd {
std::string_view version() noexcept;
} // namespace klingd
