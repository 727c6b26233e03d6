// A command hook's child process (docs/contract.md §4.7): posix_spawnp of an argv (no shell) in
// its own process group, stdin /dev/null, stdout and stderr read through pipes on the loop and
// kept up to a cap, the exit awaited through a pidfd (a 20 ms waitpid poll where the kernel has
// none), the whole group killed at the timeout. Nothing blocks the loop: posix_spawnp itself (a
// vfork that waits for the child's exec, long on a loaded machine) runs on `spawn_ex`, a thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace klingd::hooks {

struct CommandResult
{
  bool started = false;
  std::string spawn_error; // why it did not start
  int exit_code = -1;      // when it exited
  int signal = 0;          // when a signal ended it
  bool timed_out = false;
  std::string out, err;    // the first max_output bytes of each
  bool ok() const { return started && !timed_out && signal == 0 && exit_code == 0; }
  std::string describe() const; // "exit 3", "killed by signal 9", "timed out after …", "cannot start: …"
};

boost::asio::awaitable<CommandResult> run_command(boost::asio::any_io_executor ex,
                                                  boost::asio::any_io_executor spawn_ex,
                                                  const std::vector<std::string>& argv,
                                                  const std::vector<std::string>& env,
                                                  std::chrono::milliseconds timeout, std::size_t max_output);

} // namespace klingd::hooks
