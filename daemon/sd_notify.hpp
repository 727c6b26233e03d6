// The sd_notify protocol without libsystemd: one datagram to $NOTIFY_SOCKET.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace klingd {

// Sends `message` (e.g. "READY=1\nSTATUS=serving") when NOTIFY_SOCKET is set.
// Returns false if it is unset or the send failed (never throws).
bool sd_notify(std::string_view message);

// The watchdog interval systemd asked for ($WATCHDOG_USEC, honouring
// $WATCHDOG_PID), or nullopt when the watchdog is off.
std::optional<std::chrono::microseconds> sd_watchdog_interval();

} // namespace klingd
