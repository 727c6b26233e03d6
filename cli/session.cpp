// Session: finding the daemon's socket and turning its answers into exit codes.
#include "cli/commands.hpp"

#include "common/config.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <sys/stat.h>

#include <iostream>

namespace klingd::cli {

namespace json = boost::json;

Session::Session(const Globals& g) : m_json(g.json)
{
  if (!g.socket.empty()) {
    m_candidates = {g.socket};
  } else {
    m_candidates = common::client_socket_candidates(common::current_environment());
  }
}

HttpClient& Session::client()
{
  if (!m_client) {
    // The first candidate that exists; if none does, say where we looked.
    for (const auto& p : m_candidates) {
      struct stat st{};
      if (::stat(p.c_str(), &st) == 0) {
        m_client = std::make_unique<HttpClient>(p);
        break;
      }
    }
    if (!m_client) {
      std::string where;
      for (const auto& p : m_candidates) {
        where += fmt::format("\n  {}: no such file", p);
      }
      throw CliExit(k_exit_unreachable,
                    fmt::format("cannot reach klingd; looked at:{}\n(is klingd running? set --socket or KLINGD_SOCKET)",
                                where));
    }
  }
  return *m_client;
}

HttpResponse Session::call(std::string_view method, std::string_view target, std::string_view body,
                           std::string_view content_type)
{
  auto& c = client();
  try {
    return c.request(method, target, body, content_type);
  } catch (const Unreachable& e) {
    std::string where;
    for (const auto& p : m_candidates) {
      if (p == c.socket_path()) {
        where += fmt::format("\n  {}", e.what());
        break; // later candidates were not looked at
      }
      where += fmt::format("\n  {}: no such file", p);
    }
    throw CliExit(k_exit_unreachable, fmt::format("cannot reach klingd; looked at:{}", where));
  } catch (const CliExit&) {
    throw;
  } catch (const std::exception& e) {
    throw CliExit(k_exit_unreachable, fmt::format("talking to klingd at {}: {}", c.socket_path(), e.what()));
  }
}

json::value Session::call_ok(std::string_view method, std::string_view target, std::string_view body,
                             std::string_view content_type, const std::vector<std::size_t>* index_to_line)
{
  auto res = call(method, target, body, content_type);
  boost::system::error_code ec;
  auto v = json::parse(res.body, ec);
  if (res.status >= 200 && res.status < 300) {
    if (ec) {
      throw CliExit(k_exit_failed, fmt::format("klingd answered {} with a body that is not JSON", res.status));
    }
    return v;
  }
  if (m_json) {
    std::cout << res.body << std::flush;
  }
  const json::object* err = nullptr;
  if (!ec && v.is_object()) {
    if (auto* e = v.get_object().if_contains("error"); e && e->is_object()) {
      err = &e->get_object();
    }
  }
  if (!err) {
    throw CliExit(k_exit_failed, fmt::format("klingd answered HTTP {}: {}", res.status, res.body.substr(0, 500)));
  }
  std::string msg = err->contains("message") && err->at("message").is_string()
                      ? std::string(err->at("message").get_string())
                      : fmt::format("HTTP {}", res.status);
  if (auto* details = err->if_contains("details"); details && details->is_array()) {
    std::size_t shown = 0;
    for (const auto& d : details->get_array()) {
      if (!d.is_object()) {
        continue;
      }
      if (++shown > 50) {
        msg += fmt::format("\n  … and {} more", details->get_array().size() - 50);
        break;
      }
      const auto& o = d.get_object();
      std::string where;
      if (auto* i = o.if_contains("index"); i && i->is_number()) {
        auto idx = i->to_number<std::size_t>();
        where = index_to_line && idx < index_to_line->size() ? fmt::format("line {}", (*index_to_line)[idx])
                                                             : fmt::format("jobs[{}]", idx);
      }
      if (auto* f = o.if_contains("field"); f && f->is_string() && !f->get_string().empty()) {
        where += where.empty() ? std::string(f->get_string()) : fmt::format(" {}", std::string_view(f->get_string()));
      }
      std::string text = o.contains("message") && o.at("message").is_string() ? std::string(o.at("message").get_string()) : "";
      msg += where.empty() ? fmt::format("\n  {}", text) : fmt::format("\n  {}: {}", where, text);
    }
  }
  throw CliExit(k_exit_failed, msg);
}

void Session::stream(std::string_view target, const std::function<bool(std::string_view)>& on_line)
{
  auto& c = client();
  HttpResponse res;
  try {
    res = c.stream_lines(target, on_line);
  } catch (const Unreachable& e) {
    throw CliExit(k_exit_unreachable, fmt::format("cannot reach klingd: {}", e.what()));
  } catch (const std::exception& e) {
    throw CliExit(k_exit_unreachable, fmt::format("talking to klingd at {}: {}", c.socket_path(), e.what()));
  }
  if (res.status != 200) {
    boost::system::error_code ec;
    auto v = json::parse(res.body, ec);
    std::string msg = fmt::format("klingd answered HTTP {}", res.status);
    if (!ec && v.is_object() && v.get_object().contains("error")) {
      if (auto* m = v.at("error").as_object().if_contains("message"); m && m->is_string()) {
        msg = std::string(m->get_string());
      }
    }
    throw CliExit(k_exit_failed, msg);
  }
}

std::string url_encode(std::string_view s)
{
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

} // namespace klingd::cli
