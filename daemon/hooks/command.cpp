#include "daemon/hooks/command.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace klingd::hooks {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators; // NOLINT: || and && on awaitables

std::string CommandResult::describe() const
{
  if (!started) {
    return "cannot start: " + spawn_error;
  }
  if (timed_out) {
    return "timed out (killed)";
  }
  if (signal != 0) {
    return fmt::format("killed by signal {}", signal);
  }
  return fmt::format("exit {}", exit_code);
}

namespace {

std::string errno_text(int err)
{
  return std::error_code(err, std::system_category()).message();
}

// Reads until EOF, keeping the first `cap` bytes.
asio::awaitable<void> drain(asio::posix::stream_descriptor& sd, std::string& into, std::size_t cap)
{
  std::array<char, 4096> buf{};
  for (;;) {
    boost::system::error_code ec;
    const auto n = co_await sd.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (n > 0 && into.size() < cap) {
      into.append(buf.data(), std::min(n, cap - into.size()));
    }
    if (ec) {
      co_return;
    }
  }
}

// Waits for `pid` to exit and reaps it.
asio::awaitable<int> reap(asio::any_io_executor ex, pid_t pid)
{
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  std::optional<asio::posix::stream_descriptor> fd;
  if (pidfd >= 0) {
    fd.emplace(ex, pidfd);
  }
  asio::steady_timer poll(ex);
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) {
      co_return r == pid ? status : 0;
    }
    if (fd) {
      co_await fd->async_wait(asio::posix::stream_descriptor::wait_read, asio::use_awaitable);
    } else {
      poll.expires_after(std::chrono::milliseconds(20));
      co_await poll.async_wait(asio::use_awaitable);
    }
  }
}

struct Pipe
{
  int r = -1, w = -1;
  bool open() { int fds[2]; if (::pipe2(fds, O_CLOEXEC) != 0) return false; r = fds[0]; w = fds[1]; return true; }
};

} // namespace

asio::awaitable<CommandResult> run_command(asio::any_io_executor ex, asio::any_io_executor spawn_ex,
                                           const std::vector<std::string>& argv,
                                           const std::vector<std::string>& env, std::chrono::milliseconds timeout,
                                           std::size_t max_output)
{
  CommandResult res;
  Pipe out, err;
  if (argv.empty() || !out.open() || !err.open()) {
    res.spawn_error = argv.empty() ? "no command" : "pipe: " + errno_text(errno);
    for (int fd : {out.r, out.w, err.r, err.w}) {
      if (fd >= 0) ::close(fd);
    }
    co_return res;
  }
  std::vector<char*> av, ev;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  for (const auto& e : env) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out.w, 1);
  posix_spawn_file_actions_adddup2(&fa, err.w, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0); // its own group: the timeout kills what it started too
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const int rc = co_await asio::co_spawn(
    spawn_ex, [&]() -> asio::awaitable<int> { co_return ::posix_spawnp(&pid, av[0], &fa, &attr, av.data(), ev.data()); },
    asio::use_awaitable);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(out.w);
  ::close(err.w);
  asio::posix::stream_descriptor out_sd(ex, out.r);
  asio::posix::stream_descriptor err_sd(ex, err.r);
  if (rc != 0) {
    res.spawn_error = fmt::format("{}: {}", argv[0], errno_text(rc));
    co_return res;
  }
  res.started = true;

  asio::steady_timer deadline(ex);
  deadline.expires_after(timeout);
  int status = 0;
  auto finished = co_await ((reap(ex, pid) && drain(out_sd, res.out, max_output) && drain(err_sd, res.err, max_output)) ||
                            deadline.async_wait(asio::use_awaitable));
  if (finished.index() == 0) {
    status = std::get<0>(finished);
  } else {
    res.timed_out = true;
    ::kill(-pid, SIGKILL);
    status = co_await reap(ex, pid);
  }
  if (WIFEXITED(status)) {
    res.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    res.signal = WTERMSIG(status);
  }
  co_return res;
}

} // namespace klingd::hooks
