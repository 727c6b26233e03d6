#include "daemon/sd_notify.hpp"

#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace klingd {

bool sd_notify(std::string_view message)
{
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) {
    return false;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::size_t len = std::strlen(path);
  if (len >= sizeof(addr.sun_path) || (path[0] != '/' && path[0] != '@')) {
    return false;
  }
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') {
    addr.sun_path[0] = '\0'; // abstract namespace
  }
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  const ssize_t n = ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), addr_len);
  ::close(fd);
  return n == static_cast<ssize_t>(message.size());
}

std::optional<std::chrono::microseconds> sd_watchdog_interval()
{
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (!usec || !*usec) {
    return std::nullopt;
  }
  if (const char* pid = std::getenv("WATCHDOG_PID"); pid && *pid) {
    if (std::strtol(pid, nullptr, 10) != static_cast<long>(::getpid())) {
      return std::nullopt;
    }
  }
  char* end = nullptr;
  const unsigned long long v = std::strtoull(usec, &end, 10);
  if (end == usec || *end != '\0' || v == 0) {
    return std::nullopt;
  }
  return std::chrono::microseconds(v);
}

} // namespace klingd
