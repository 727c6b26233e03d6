// klingd: the daemon. Runs in the foreground; see README.md and docs/contract.md §4.3.
#include "common/catalog.hpp"
#include "common/config.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "daemon/daemon.hpp"
#include "daemon/store/backup.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <sys/prctl.h>
#include <sys/resource.h>

#include <csignal>
#include <cstdio>

namespace {

// The API key lives in this process's memory: no core dump and no ptrace by other
// processes of the same user (PR_SET_DUMPABLE 0 also makes /proc/<pid>/mem, environ, fd
// root-owned). `--allow-core-dumps` keeps the default for debugging (docs/security.md).
int set_dumpable(bool allow)
{
  if (!allow) {
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  }
  return ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
}

// Every connection and download is a descriptor: take the hard limit as the soft one
// (1024 is a common soft default). The connection caps are computed from the result.
void raise_nofile_limit()
{
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl); // may be refused (seccomp); the caps then fit the old limit
  }
}

} // namespace

int main(int argc, char** argv)
{
  using namespace klingd;
  std::signal(SIGPIPE, SIG_IGN);
  // Past RLIMIT_FSIZE the kernel sends SIGXFSZ, whose default action kills the daemon mid-write;
  // ignored, write() fails with EFBIG and the download is retried like any full disk.
  std::signal(SIGXFSZ, SIG_IGN);

  CLI::App app{"klingd: turns batches of Kling video jobs into verified MP4 files"};
  std::string config_path;
  bool check_config = false;
  bool show_version = false;
  std::string backup_path;
  bool allow_core_dumps = false;
  app.add_option("-c,--config", config_path, "Configuration file (JSON with comments)");
  app.add_flag("--check-config", check_config, "Validate the configuration and print the effective values (key redacted)");
  app.add_flag("--version", show_version, "Print the version and exit");
  app.add_option("--backup", backup_path,
                 "Write a consistent copy of the database (store.db) to PATH and exit; safe while klingd runs")
    ->type_name("PATH");
  app.add_flag("--allow-core-dumps", allow_core_dumps,
               "Debugging only: leave the process dumpable (core files and ptrace may then expose the API key)");
  CLI11_PARSE(app, argc, argv);

  if (show_version) {
    std::printf("klingd %s\n", std::string(version()).c_str());
    return 0;
  }
  // Before the key is read.
  const int dumpable = set_dumpable(allow_core_dumps);
  log::init_from_environment();

  auto config = common::load_config(config_path, common::current_environment());
  if (!config) {
    std::fprintf(stderr, "klingd: %s\n", config.error().message.c_str());
    return 2;
  }
  if (check_config) {
    auto catalog = load_catalog(*config);
    if (!catalog) {
      std::fprintf(stderr, "klingd: %s\n", catalog.error().message.c_str());
      return 2;
    }
    std::fputs(common::to_json_text(*config).c_str(), stdout);
    std::fprintf(stderr, "klingd: configuration OK (%s; catalog %s with %zu models)\n", config->source.c_str(),
                 catalog->origin().c_str(), catalog->models().size());
    return 0;
  }
  if (!backup_path.empty()) {
    auto r = store::backup_database(config->store.db, backup_path);
    if (!r) {
      std::fprintf(stderr, "klingd: %s\n", r.error().message.c_str());
      return 1;
    }
    std::fprintf(stderr, "klingd: backed up %s to %s (%lld bytes, schema version %d)\n", config->store.db.c_str(),
                 backup_path.c_str(), static_cast<long long>(r->bytes), r->schema_version);
    return 0;
  }
  log::Level level;
  if (log::parse_level(config->log.level, level)) {
    log::set_level(level);
  }
  raise_nofile_limit();
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  log::info("klingd.process", {{"dumpable", dumpable}, {"nofile", static_cast<unsigned long long>(nofile.rlim_cur)}});
  return run_daemon(std::move(*config), config_path);
}
