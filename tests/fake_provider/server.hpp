// Accepts loopback connections (plain or TLS) and runs one coroutine per connection that
// reads requests, asks the App for a Reply and carries it out (including the faults that
// live at the transport level: resets, delays, cut-short bodies).
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <string>

namespace fake {

class App;

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string tls_cert; // PEM; TLS when both are set
  std::string tls_key;
};

// Binds, starts accepting on `ioc` and returns the bound port. Throws on bind errors.
std::uint16_t start_server(boost::asio::io_context& ioc, App& app, const ServerOptions& options);

} // namespace fake
