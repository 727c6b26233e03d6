#include "daemon/store/backup.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

namespace klingd::store {

namespace fs = std::filesystem;

namespace {

// Closes a connection however the function returns.
struct Conn
{
  sqlite3* db = nullptr;
  ~Conn() { sqlite3_close_v2(db); }
  std::string error() const { return db ? sqlite3_errmsg(db) : "out of memory"; }
};

Result<Ok> fsync_path(const std::string& path, int flags)
{
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) {
      ::close(fd);
    }
    return make_error("backup", fmt::format("cannot sync {}: {}", path, std::strerror(err)));
  }
  ::close(fd);
  return Ok{};
}

Result<Ok> exec(Conn& c, const char* sql, const std::string& what)
{
  char* err = nullptr;
  if (sqlite3_exec(c.db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : c.error();
    sqlite3_free(err);
    return make_error("backup", fmt::format("{}: {}", what, msg));
  }
  return Ok{};
}

} // namespace

Result<BackupInfo> backup_database(const std::string& source, const std::string& dest)
{
  std::error_code ec;
  if (!fs::is_regular_file(source, ec)) {
    return make_error("backup", fmt::format("no database at {}", source));
  }
  if (dest.empty()) {
    return make_error("backup", "the backup path is empty");
  }
  if (fs::weakly_canonical(dest, ec) == fs::weakly_canonical(source, ec)) {
    return make_error("backup", fmt::format("the backup path {} is the database itself", dest));
  }
  const std::string partial = dest + ".partial";
  fs::remove(partial, ec);

  Conn src;
  if (sqlite3_open_v2(source.c_str(), &src.db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    return make_error("backup", fmt::format("cannot open {}: {}", source, src.error()));
  }
  sqlite3_busy_timeout(src.db, 5000);
  Conn dst;
  if (sqlite3_open_v2(partial.c_str(), &dst.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    return make_error("backup", fmt::format("cannot create {}: {}", partial, dst.error()));
  }
  auto fail = [&](std::string msg) -> Result<BackupInfo> {
    sqlite3_close_v2(dst.db);
    dst.db = nullptr;
    fs::remove(partial, ec);
    return make_error("backup", std::move(msg));
  };

  // One step copies every page inside a single read transaction: a consistent
  // snapshot however much the daemon writes meanwhile. BUSY/LOCKED (another
  // connection holding a lock for a moment) is retried.
  int rc = SQLITE_OK;
  for (int tries = 0; tries < 50; ++tries) {
    sqlite3_backup* b = sqlite3_backup_init(dst.db, "main", src.db, "main");
    if (!b) {
      return fail(fmt::format("cannot back up {}: {}", source, dst.error()));
    }
    rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (rc != SQLITE_DONE) {
    return fail(fmt::format("backup of {} failed: {}", source, sqlite3_errstr(rc)));
  }
  BackupInfo info;
  {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(dst.db, "PRAGMA quick_check", -1, &st, nullptr) != SQLITE_OK) {
      return fail(fmt::format("cannot check {}: {}", partial, dst.error()));
    }
    std::string verdict = sqlite3_step(st) == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(st, 0)) : "";
    sqlite3_finalize(st);
    if (verdict != "ok") {
      return fail(fmt::format("the copy of {} fails its integrity check: {}", source, verdict));
    }
    if (sqlite3_prepare_v2(dst.db, "PRAGMA user_version", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
      info.schema_version = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
  }
  // A single file: no -wal beside it to lose when the copy is moved.
  if (auto r = exec(dst, "PRAGMA journal_mode=DELETE", partial); !r) {
    return fail(r.error().message);
  }
  sqlite3_close_v2(dst.db);
  dst.db = nullptr;
  if (auto r = fsync_path(partial, O_RDONLY); !r) {
    fs::remove(partial, ec);
    return r.error();
  }
  fs::rename(partial, dest, ec);
  if (ec) {
    fs::remove(partial, ec);
    return make_error("backup", fmt::format("cannot move the copy to {}: {}", dest, ec.message()));
  }
  const auto parent = fs::path(dest).parent_path();
  (void)fsync_path(parent.empty() ? "." : parent.string(), O_RDONLY | O_DIRECTORY);
  info.bytes = static_cast<std::int64_t>(fs::file_size(dest, ec));
  return info;
}

} // namespace klingd::store
