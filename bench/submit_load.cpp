// klingd-bench-submit: the load generator of the concurrent-submit benchmark (bench/run.py).
// N client threads, each on its own keep-alive Unix-socket connection, POST one job at a time
// to /v1/jobs until the deadline and count the 201s. Written in C++ (blocking sockets, one
// pre-rendered request) so that the client costs little next to klingd on a 2-core machine:
// a Python client became the bottleneck it was meant to measure.
// Prints one JSON line: {"clients", "seconds", "acked", "errors", "jobs_per_s"}.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

int connect_unix(const std::string& path)
{
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool write_all(int fd, std::string_view data)
{
  while (!data.empty()) {
    const auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads one response (head + Content-Length body); returns the status, 0 on failure.
// `close_after` is set when the server says Connection: close.
int read_response(int fd, std::string& buf, bool& close_after)
{
  std::size_t head_end;
  while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
    char tmp[8192];
    const auto n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) {
      return 0;
    }
    buf.append(tmp, static_cast<std::size_t>(n));
  }
  const std::string head = buf.substr(0, head_end);
  int status = 0;
  if (std::sscanf(head.c_str(), "HTTP/1.%*d %d", &status) != 1) {
    return 0;
  }
  std::size_t length = 0;
  close_after = false;
  // Header names are case-insensitive; Beast writes them capitalised, but do not rely on it.
  std::string lower = head;
  for (auto& c : lower) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (const auto p = lower.find("\r\ncontent-length:"); p != std::string::npos) {
    length = std::strtoul(lower.c_str() + p + 17, nullptr, 10);
  }
  if (lower.find("\r\nconnection: close") != std::string::npos) {
    close_after = true;
  }
  const std::size_t total = head_end + 4 + length;
  while (buf.size() < total) {
    char tmp[8192];
    const auto n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) {
      return 0;
    }
    buf.append(tmp, static_cast<std::size_t>(n));
  }
  buf.erase(0, total);
  return status;
}

} // namespace

int main(int argc, char** argv)
{
  if (argc != 5) {
    std::fprintf(stderr, "usage: klingd-bench-submit SOCKET CLIENTS SECONDS JOB_SPEC_JSON\n");
    return 2;
  }
  const std::string socket_path = argv[1];
  const int clients = std::atoi(argv[2]);
  const double seconds = std::atof(argv[3]);
  const std::string body = argv[4];
  if (clients <= 0 || seconds <= 0) {
    std::fprintf(stderr, "klingd-bench-submit: CLIENTS and SECONDS must be positive\n");
    return 2;
  }
  const std::string request = "POST /v1/jobs HTTP/1.1\r\nHost: klingd\r\nContent-Type: application/json\r\n"
                              "Content-Length: "
                              + std::to_string(body.size()) + "\r\n\r\n" + body;

  std::atomic<long> acked{0};
  std::atomic<long> errors{0};
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(clients));
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&] {
      int fd = -1;
      std::string buf;
      long ok = 0;
      long bad = 0;
      while (std::chrono::steady_clock::now() < deadline) {
        if (fd < 0) {
          buf.clear();
          fd = connect_unix(socket_path);
          if (fd < 0) {
            ++bad;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
          }
        }
        bool close_after = false;
        const int status = write_all(fd, request) ? read_response(fd, buf, close_after) : 0;
        if (status == 201) {
          ++ok;
        } else {
          ++bad;
        }
        if (status == 0 || close_after) {
          ::close(fd);
          fd = -1;
        }
      }
      if (fd >= 0) {
        ::close(fd);
      }
      acked += ok;
      errors += bad;
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"clients\": %d, \"seconds\": %.3f, \"acked\": %ld, \"errors\": %ld, \"jobs_per_s\": %.1f}\n", clients,
              elapsed, acked.load(), errors.load(), static_cast<double>(acked.load()) / elapsed);
  return 0;
}
