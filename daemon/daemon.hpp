// Daemon: wires config → store (migrations) → catalog → engine → socket API,
// runs the single event loop, and handles signals and sd_notify.
#pragma once

#include "common/config.hpp"
#include "common/result.hpp"

#include <string>

namespace klingd {

// Loads the model catalog named by config.models_file, or the built-in one.
// Errors name the file and the problem.
namespace common {
class Catalog;
}
Result<common::Catalog> load_catalog(const common::Config& config);

// Runs klingd until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP.
// Returns the process exit code: 0 after a clean shutdown, 1 when start-up failed.
int run_daemon(common::Config config, std::string config_path);

} // namespace klingd
