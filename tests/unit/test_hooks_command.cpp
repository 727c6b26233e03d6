// A command hook's child process (daemon/hooks/command.cpp): its output captured and capped, its
// exit code, a program that cannot start, and the timeout killing its whole process group.
#include "daemon/hooks/command.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <doctest/doctest.h>

#include <csignal>

using namespace klingd;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

hooks::CommandResult run(std::vector<std::string> argv, std::vector<std::string> env = {"PATH=/usr/bin:/bin"},
                         std::chrono::milliseconds timeout = 10s, std::size_t cap = 4096)
{
  asio::io_context ctx;
  asio::thread_pool spawner(1);
  auto f = asio::co_spawn(ctx, hooks::run_command(ctx.get_executor(), spawner.get_executor(), argv, env, timeout, cap),
                          asio::use_future);
  ctx.run();
  return f.get();
}

} // namespace

TEST_CASE("hooks: a command's stdout, stderr, exit code and environment")
{
  auto r = run({"sh", "-c", "echo out $KLINGD_JOB_ID; echo err >&2; exit 3"}, {"PATH=/usr/bin:/bin", "KLINGD_JOB_ID=j1"});
  CHECK(r.started);
  CHECK(r.exit_code == 3);
  CHECK_FALSE(r.ok());
  CHECK(r.out == "out j1\n");
  CHECK(r.err == "err\n");
  CHECK(r.describe() == "exit 3");
  auto ok = run({"true"});
  CHECK(ok.ok());
  // Output past the cap is read (the child never blocks on a full pipe) and dropped.
  auto big = run({"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"}, {"PATH=/usr/bin:/bin"}, 10s, 100);
  CHECK(big.ok());
  CHECK(big.out == std::string(100, 'x'));
}

TEST_CASE("hooks: a command that cannot start, and one killed at its timeout with what it started")
{
  auto missing = run({"/nonexistent/hook"});
  CHECK_FALSE(missing.started);
  CHECK(missing.describe().find("cannot start: /nonexistent/hook") == 0);
  // The child starts a grandchild that holds the pipes open: the group is killed, nothing waits.
  auto slow = run({"sh", "-c", "sleep 30 & sleep 30"}, {"PATH=/usr/bin:/bin"}, 300ms);
  CHECK(slow.timed_out);
  CHECK_FALSE(slow.ok());
  CHECK(slow.signal == SIGKILL);
}
