// fake-aimlapi: wires flags, the App and the server together. See README.md for the flags.
#include "tests/fake_provider/app.hpp"
#include "tests/fake_provider/server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string_view>

namespace fake {
extern const unsigned char k_base_mp4[];
extern const std::size_t k_base_mp4_size;
} // namespace fake

namespace {

namespace json = boost::json;

constexpr std::string_view k_usage = R"(usage: fake-aimlapi [flags]

  --port N               listen on 127.0.0.1:N (0: ephemeral, the default)
  --port-file PATH       write the bound port there once listening
  --tls-cert PEM --tls-key PEM   serve HTTPS instead of HTTP
  --base-mp4 PATH        base video (default: the fixture built into the binary)
  --config FILE          apply a JSON object of settings (same keys as POST /__admin/config)
  --fault KIND.FAULT=P   fault probability, e.g. --fault create.reset_after_create=0.2
  --script KIND.FAULT=N  the next N requests of KIND get FAULT
  --price MODEL=USD      list price in USD per second of video
  --<key> VALUE          any /__admin/config key with '-' for '_', e.g. --queued-s 0.3
  --<bool-key> / --no-<bool-key>   set a boolean key true / false
See tests/fake_provider/README.md.
)";

[[noreturn]] void die(const std::string& message)
{
  fmt::print(stderr, "fake-aimlapi: {}\n", message);
  std::exit(2);
}

json::value flag_value(const std::string& text)
{
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (!ec && (v.is_number() || v.is_bool())) {
    return v;
  }
  return json::string(text);
}

void apply_or_die(fake::FakeConfig& config, const json::object& patch,
                  std::optional<std::vector<fake::ScriptStep>>& script)
{
  auto err = fake::apply_config(config, patch, script);
  if (!err.empty()) {
    die(err);
  }
}

void raise_fd_limit()
{
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

} // namespace

int main(int argc, char** argv)
{
  try {
    fake::FakeConfig config;
    fake::ServerOptions server;
    std::string port_file;
    std::string base_path;
    std::optional<std::vector<fake::ScriptStep>> script;
    std::vector<fake::ScriptStep> script_steps;
    json::object fault_rates;

    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        fmt::print("{}", k_usage);
        return 0;
      }
      if (!arg.starts_with("--")) {
        die(fmt::format("unexpected argument '{}'", arg));
      }
      std::string name = arg.substr(2);
      std::optional<std::string> value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else if (i + 1 < argc && !std::string_view(argv[i + 1]).starts_with("--")) {
        value = argv[++i];
      }
      auto need = [&]() -> const std::string& {
        if (!value) {
          die(fmt::format("--{} needs a value", name));
        }
        return *value;
      };
      if (name == "port") {
        server.port = static_cast<std::uint16_t>(std::stoul(need()));
      } else if (name == "port-file") {
        port_file = need();
      } else if (name == "tls-cert") {
        server.tls_cert = need();
      } else if (name == "tls-key") {
        server.tls_key = need();
      } else if (name == "base-mp4") {
        base_path = need();
      } else if (name == "config") {
        std::ifstream in(need());
        std::stringstream text;
        text << in.rdbuf();
        boost::system::error_code ec;
        json::value v = json::parse(text.str(), ec);
        if (!in || ec || !v.is_object()) {
          die(fmt::format("--config {}: not a readable JSON object", *value));
        }
        apply_or_die(config, v.get_object(), script);
      } else if (name == "fault" || name == "script") {
        fake::EndpointKind kind{};
        fake::FaultType type{};
        double number = 0;
        auto err = fake::parse_fault_spec(need(), kind, type, number);
        if (!err.empty()) {
          die(fmt::format("--{}: {}", name, err));
        }
        if (name == "fault") {
          auto& rates = fault_rates[fake::to_string(kind)];
          if (!rates.is_object()) {
            rates = json::object{};
          }
          rates.get_object()[fake::to_string(type)] = number;
        } else {
          script_steps.push_back({kind, type, static_cast<int>(number)});
        }
      } else if (name == "price") {
        auto eq = need().rfind('=');
        if (eq == std::string::npos) {
          die("--price expects MODEL=USD_PER_SECOND");
        }
        apply_or_die(config,
                     json::object{{"prices", json::object{{value->substr(0, eq), flag_value(value->substr(eq + 1))}}}},
                     script);
      } else {
        std::string key = name;
        bool negated = false;
        if (key.starts_with("no-") && !value) {
          key = key.substr(3);
          negated = true;
        }
        std::replace(key.begin(), key.end(), '-', '_');
        json::value v = value ? flag_value(*value) : json::value(!negated);
        auto err = fake::apply_config(config, json::object{{key, v}}, script);
        if (!err.empty() && value && !v.is_string()) {
          // "--api-key 123" is a string that happens to look like a number.
          err = fake::apply_config(config, json::object{{key, json::string(*value)}}, script);
        }
        if (!err.empty()) {
          die(fmt::format("--{}: {}", name, err));
        }
      }
    }
    if (!fault_rates.empty()) {
      apply_or_die(config, json::object{{"faults", fault_rates}}, script);
    }

    std::string base(reinterpret_cast<const char*>(fake::k_base_mp4), fake::k_base_mp4_size);
    if (!base_path.empty()) {
      std::ifstream in(base_path, std::ios::binary);
      std::stringstream text;
      text << in.rdbuf();
      if (!in) {
        die(fmt::format("--base-mp4 {}: cannot read", base_path));
      }
      base = text.str();
    }

    raise_fd_limit();
    boost::asio::io_context ioc(1);
    fake::App app(ioc.get_executor(), config, std::make_shared<const std::string>(std::move(base)),
                  server.tls_cert.empty() ? "http" : "https");
    if (script) {
      script_steps.insert(script_steps.begin(), script->begin(), script->end());
    }
    app.set_startup_script(script_steps);
    const std::uint16_t port = fake::start_server(ioc, app, server);

    if (!port_file.empty()) {
      // Write then rename, so a watcher never reads a half-written number.
      std::string tmp = port_file + ".tmp";
      {
        std::ofstream out(tmp);
        out << port << '\n';
      }
      if (std::rename(tmp.c_str(), port_file.c_str()) != 0) {
        die(fmt::format("cannot write --port-file {}", port_file));
      }
    }
    fmt::print(stderr, "fake-aimlapi listening on {}://{}:{}\n", server.tls_cert.empty() ? "http" : "https",
               server.host, port);

    boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) { ioc.stop(); });
    ioc.run();
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "fake-aimlapi: {}\n", e.what());
    return 1;
  }
}
