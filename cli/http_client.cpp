#include "cli/http_client.hpp"

#include <fmt/format.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace klingd::cli {

namespace {

std::string lower(std::string_view s)
{
  std::string out(s);
  for (auto& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string_view trim(std::string_view s)
{
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

void set_timeout(int fd, double seconds)
{
  timeval tv{};
  if (seconds > 0) {
    tv.tv_sec = static_cast<time_t>(seconds);
    tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  }
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

} // namespace

HttpClient::HttpClient(std::string socket_path, double timeout_s) : m_path(std::move(socket_path)), m_timeout_s(timeout_s)
{
}

HttpClient::~HttpClient()
{
  close();
}

void HttpClient::close()
{
  if (m_fd >= 0) {
    ::close(m_fd);
    m_fd = -1;
  }
  m_buf.clear();
  m_pos = 0;
}

void HttpClient::connect()
{
  close();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (m_path.size() >= sizeof addr.sun_path) {
    throw Unreachable(fmt::format("{}: path too long for a Unix socket", m_path));
  }
  std::memcpy(addr.sun_path, m_path.c_str(), m_path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error(fmt::format("socket(): {}", std::strerror(errno)));
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    throw Unreachable(fmt::format("{}: {}", m_path, std::strerror(err)));
  }
  set_timeout(fd, m_timeout_s);
  m_fd = fd;
}

void HttpClient::send_all(std::string_view data)
{
  while (!data.empty()) {
    auto n = ::send(m_fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      // The daemon may have answered (413) and closed before reading it all; the
      // caller still reads the answer.
      if (errno == EPIPE || errno == ECONNRESET) {
        return;
      }
      throw std::runtime_error(fmt::format("writing to {}: {}", m_path, std::strerror(errno)));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

bool HttpClient::fill()
{
  if (m_pos > 0 && m_pos == m_buf.size()) {
    m_buf.clear();
    m_pos = 0;
  }
  char tmp[16384];
  for (;;) {
    auto n = ::recv(m_fd, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        throw std::runtime_error(fmt::format("klingd at {} did not answer within {} s", m_path, m_timeout_s));
      }
      throw std::runtime_error(fmt::format("reading from {}: {}", m_path, std::strerror(errno)));
    }
    if (n == 0) {
      return false;
    }
    m_buf.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
}

std::string HttpClient::read_line()
{
  for (;;) {
    auto nl = m_buf.find('\n', m_pos);
    if (nl != std::string::npos) {
      std::string line = m_buf.substr(m_pos, nl - m_pos);
      m_pos = nl + 1;
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      return line;
    }
    if (!fill()) {
      throw std::runtime_error("klingd closed the connection in the middle of a response");
    }
  }
}

std::string HttpClient::read_exact(std::size_t n)
{
  while (m_buf.size() - m_pos < n) {
    if (!fill()) {
      throw std::runtime_error("klingd closed the connection in the middle of a response body");
    }
  }
  std::string out = m_buf.substr(m_pos, n);
  m_pos += n;
  return out;
}

HttpResponse HttpClient::read_head(bool& chunked, long long& content_length, bool& close_after)
{
  HttpResponse res;
  for (;;) {
    auto status_line = read_line();
    // "HTTP/1.1 200 OK"
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
      throw std::runtime_error(fmt::format("not an HTTP response from {}: \"{}\"", m_path, status_line.substr(0, 60)));
    }
    res.status = std::atoi(status_line.c_str() + 9);
    chunked = false;
    content_length = -1;
    close_after = status_line.rfind("HTTP/1.0", 0) == 0;
    for (;;) {
      auto line = read_line();
      if (line.empty()) {
        break;
      }
      auto colon = line.find(':');
      if (colon == std::string::npos) {
        continue;
      }
      auto name = lower(trim(std::string_view(line).substr(0, colon)));
      auto value = std::string(trim(std::string_view(line).substr(colon + 1)));
      if (name == "content-length") {
        content_length = std::atoll(value.c_str());
      } else if (name == "transfer-encoding") {
        chunked = lower(value).find("chunked") != std::string::npos;
      } else if (name == "connection") {
        close_after = lower(value) == "close";
      } else if (name == "content-type") {
        res.content_type = value;
      }
    }
    if (res.status != 100) {
      return res;
    }
  }
}

HttpResponse HttpClient::request(std::string_view method, std::string_view target, std::string_view body,
                                 std::string_view content_type)
{
  std::string head = fmt::format("{} {} HTTP/1.1\r\nHost: klingd\r\nUser-Agent: klingctl\r\nAccept: application/json\r\n",
                                 method, target);
  if (!body.empty() || method == "POST") {
    head += fmt::format("Content-Type: {}\r\nContent-Length: {}\r\n", content_type, body.size());
  }
  head += "\r\n";
  // A kept-alive connection may have been closed by the daemon meanwhile: retry once
  // on a fresh one when nothing at all came back.
  for (int attempt = 0;; ++attempt) {
    bool reused = m_fd >= 0;
    if (!reused) {
      connect();
    }
    send_all(head);
    send_all(body);
    if (m_pos == m_buf.size() && !fill()) {
      close();
      if (reused && attempt == 0) {
        continue;
      }
      throw std::runtime_error(fmt::format("klingd at {} closed the connection without answering", m_path));
    }
    bool chunked = false;
    bool close_after = false;
    long long length = -1;
    auto res = read_head(chunked, length, close_after);
    if (chunked) {
      for (;;) {
        auto size_line = read_line();
        auto size = std::stoull(size_line, nullptr, 16);
        if (size == 0) {
          while (!read_line().empty()) {
          }
          break;
        }
        res.body += read_exact(size);
        read_line();
      }
    } else if (length >= 0) {
      res.body = read_exact(static_cast<std::size_t>(length));
    } else {
      while (fill()) {
      }
      res.body = m_buf.substr(m_pos);
      close_after = true;
    }
    if (close_after) {
      close();
    }
    return res;
  }
}

HttpResponse HttpClient::stream_lines(std::string_view target, const std::function<bool(std::string_view)>& on_line)
{
  close();
  connect();
  send_all(fmt::format("GET {} HTTP/1.1\r\nHost: klingd\r\nUser-Agent: klingctl\r\nAccept: application/x-ndjson\r\n\r\n",
                       target));
  bool chunked = false;
  bool close_after = false;
  long long length = -1;
  auto res = read_head(chunked, length, close_after);
  if (res.status != 200 || !chunked) {
    if (length >= 0) {
      res.body = read_exact(static_cast<std::size_t>(length));
    }
    close();
    return res;
  }
  set_timeout(m_fd, 0); // events may be minutes apart
  std::string pending;
  for (;;) {
    std::string size_line;
    try {
      size_line = read_line();
    } catch (const std::runtime_error&) {
      break; // the daemon went away: the stream ends
    }
    auto size = std::stoull(size_line, nullptr, 16);
    if (size == 0) {
      break;
    }
    pending += read_exact(size);
    read_line();
    std::size_t start = 0;
    for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
      std::string_view line(pending.data() + start, nl - start);
      start = nl + 1;
      if (!line.empty() && !on_line(line)) {
        close();
        return res;
      }
    }
    pending.erase(0, start);
  }
  close();
  return res;
}

} // namespace klingd::cli
