// klingd: the daemon. Runs in the foreground; see README.md and SPEC §4.3.
#include "common/catalog.hpp"
#include "common/config.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "daemon/daemon.hpp"
#include "daemon/store/backup.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>

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
  app.add_option("-c,--config", config_path, "Configuration file (JSON with comments)");
  app.add_flag("--check-config", check_config, "Validate the configuration and print the effective values (key redacted)");
  app.add_flag("--version", show_version, "Print the version and exit");
  app.add_option("--backup", backup_path,
                 "Write a consistent copy of the database (store.db) to PATH and exit; safe while klingd runs")
    ->type_name("PATH");
  CLI11_PARSE(app, argc, argv);

  if (show_version) {
    std::printf("klingd %s\n", std::string(version()).c_str());
    return 0;
  }
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
  return run_daemon(std::move(*config), config_path);
}
