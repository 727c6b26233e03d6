#include "common/version.hpp"
namespace klingd {
std::string_view version() noexcept { return KLINGD_VERSION; }
} // namespace klingd
