#include "daemon/store/sqlite.hpp"

#include "common/log.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <filesystem>

namespace klingd::store {

namespace {
[[noreturn]] void fail(sqlite3* db, int rc, std::string_view what)
{
  const char* msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  throw SqliteError(db ? sqlite3_extended_errcode(db) : rc, fmt::format("sqlite: {}: {}", what, msg));
}
} // namespace

Statement::Statement(sqlite3* db, std::string_view sql) : m_db(db)
{
  int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &m_stmt, nullptr);
  if (rc != SQLITE_OK) {
    fail(db, rc, fmt::format("prepare \"{}\"", sql.substr(0, 80)));
  }
}

Statement::~Statement() { sqlite3_finalize(m_stmt); }

Statement& Statement::bind(int index, std::string_view text)
{
  int rc = sqlite3_bind_text(m_stmt, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) {
    fail(m_db, rc, "bind text");
  }
  return *this;
}

Statement& Statement::bind(int index, std::int64_t value)
{
  int rc = sqlite3_bind_int64(m_stmt, index, value);
  if (rc != SQLITE_OK) {
    fail(m_db, rc, "bind int");
  }
  return *this;
}

Statement& Statement::bind(int index, double value)
{
  int rc = sqlite3_bind_double(m_stmt, index, value);
  if (rc != SQLITE_OK) {
    fail(m_db, rc, "bind double");
  }
  return *this;
}

Statement& Statement::bind_null(int index)
{
  int rc = sqlite3_bind_null(m_stmt, index);
  if (rc != SQLITE_OK) {
    fail(m_db, rc, "bind null");
  }
  return *this;
}

bool Statement::step()
{
  int rc = sqlite3_step(m_stmt);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  fail(m_db, rc, fmt::format("step \"{}\"", std::string_view(sqlite3_sql(m_stmt)).substr(0, 80)));
}

void Statement::run()
{
  while (step()) {
  }
}

void Statement::reset()
{
  sqlite3_reset(m_stmt);
  sqlite3_clear_bindings(m_stmt);
}

Query::Query(Statement& cached) : m_st(&cached) { m_st->m_in_use = true; }

Query::Query(std::unique_ptr<Statement> own) : m_st(own.get()), m_own(std::move(own)) { m_st->m_in_use = true; }

Query::Query(Query&& other) noexcept : m_st(other.m_st), m_own(std::move(other.m_own)) { other.m_st = nullptr; }

Query::~Query()
{
  if (m_st) {
    m_st->reset();
    m_st->m_in_use = false;
  }
}

bool Statement::is_null(int col) const { return sqlite3_column_type(m_stmt, col) == SQLITE_NULL; }
std::int64_t Statement::int64(int col) const { return sqlite3_column_int64(m_stmt, col); }
double Statement::real(int col) const { return sqlite3_column_double(m_stmt, col); }

std::string Statement::text(int col) const
{
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(m_stmt, col));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(m_stmt, col))) : std::string();
}

std::optional<std::string> Statement::opt_text(int col) const
{
  if (is_null(col)) {
    return std::nullopt;
  }
  return text(col);
}

std::optional<std::int64_t> Statement::opt_int64(int col) const
{
  if (is_null(col)) {
    return std::nullopt;
  }
  return int64(col);
}

std::optional<double> Statement::opt_real(int col) const
{
  if (is_null(col)) {
    return std::nullopt;
  }
  return real(col);
}

Db::Db(const std::string& path, Options options) : m_path(path), m_busy_timeout_ms(options.busy_timeout_ms)
{
  int rc = sqlite3_open_v2(path.c_str(), &m_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = m_db ? sqlite3_errmsg(m_db) : sqlite3_errstr(rc);
    sqlite3_close_v2(m_db);
    m_db = nullptr;
    throw SqliteError(rc, fmt::format("sqlite: cannot open {}: {}", path, msg));
  }
  sqlite3_extended_result_codes(m_db, 1);
  sqlite3_busy_timeout(m_db, options.busy_timeout_ms);
  if (path != ":memory:") {
    // WAL needs a real file; check that the switch happened (a read-only or odd FS can refuse).
    Statement st(m_db, "PRAGMA journal_mode=WAL");
    if (!st.step() || st.text(0) != "wal") {
      throw SqliteError(SQLITE_ERROR, fmt::format("sqlite: {} could not be switched to WAL mode", path));
    }
  }
  exec(fmt::format("PRAGMA synchronous={}", options.synchronous == "normal" ? "NORMAL" : options.synchronous == "extra" ? "EXTRA" : "FULL"));
  exec("PRAGMA foreign_keys=ON");
  // Savepoint sub-journals (every group-committed write has one) in memory, not in temp
  // files created, written and unlinked on each commit (strace showed one per commit).
  exec("PRAGMA temp_store=MEMORY");
  // Checkpoints happen from our loop at commit time (PASSIVE, every ~1000 pages = 4 MB
  // of WAL), and the WAL file is cut back to 4 MB when it is restarted after one, so
  // it stays bounded under load (docs/operations.md, "Database files"). Neither works
  // while a statement of ours is left stepped to a row: Query resets them.
  exec("PRAGMA wal_autocheckpoint=1000");
  exec("PRAGMA journal_size_limit=4194304");
}

Db::~Db()
{
  m_cache.clear();
  if (m_db) {
    sqlite3_close_v2(m_db);
  }
}

void Db::exec(std::string_view sql)
{
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(m_db, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw SqliteError(sqlite3_extended_errcode(m_db), fmt::format("sqlite: {}: {}", s.substr(0, 80), msg));
  }
}

void Db::run(std::string_view sql) { prepare(sql).run(); }

Query Db::prepare(std::string_view sql)
{
  auto it = m_cache.find(std::string(sql));
  if (it == m_cache.end()) {
    it = m_cache.emplace(std::string(sql), std::make_unique<Statement>(m_db, sql)).first;
  } else if (it->second->m_in_use) {
    return Query(std::make_unique<Statement>(m_db, sql));
  }
  return Query(*it->second);
}

int Db::busy_statements() const
{
  int n = 0;
  for (sqlite3_stmt* s = sqlite3_next_stmt(m_db, nullptr); s; s = sqlite3_next_stmt(m_db, s)) {
    n += sqlite3_stmt_busy(s) ? 1 : 0;
  }
  return n;
}

Db::FileSizes Db::file_sizes() const
{
  FileSizes out;
  if (m_path == ":memory:") {
    return out;
  }
  std::error_code ec;
  auto db = std::filesystem::file_size(m_path, ec);
  out.db_bytes = ec ? 0 : static_cast<std::int64_t>(db);
  auto wal = std::filesystem::file_size(m_path + "-wal", ec);
  out.wal_bytes = ec ? 0 : static_cast<std::int64_t>(wal);
  return out;
}

bool Db::checkpoint_truncate()
{
  if (!sqlite3_get_autocommit(m_db) || m_path == ":memory:") {
    return false;
  }
  // TRUNCATE waits through the busy handler for other connections' readers; on the
  // loop thread we must not wait, so no busy handler for this call.
  sqlite3_busy_timeout(m_db, 0);
  int log_frames = 0;
  int done_frames = 0;
  const int rc = sqlite3_wal_checkpoint_v2(m_db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, &done_frames);
  sqlite3_busy_timeout(m_db, m_busy_timeout_ms);
  if (rc == SQLITE_OK) {
    return true;
  }
  if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) {
    log::warning("sqlite.checkpoint_failed", {{"error", sqlite3_errstr(rc)}});
  }
  return false;
}

std::int64_t Db::changes() const { return sqlite3_changes64(m_db); }

int Db::user_version()
{
  Statement st(m_db, "PRAGMA user_version");
  st.step();
  return static_cast<int>(st.int64(0));
}

Transaction::Transaction(Db& db) : m_db(db) { m_db.run("BEGIN IMMEDIATE"); }

Transaction::~Transaction()
{
  // A failed COMMIT may already have rolled the transaction back (SQLITE_FULL, SQLITE_IOERR).
  if (!m_done && !sqlite3_get_autocommit(m_db.handle())) {
    try {
      m_db.run("ROLLBACK");
    } catch (const std::exception& e) {
      log::error("sqlite.rollback_failed", {{"error", e.what()}});
    }
  }
}

void Transaction::commit()
{
  m_db.run("COMMIT");
  m_done = true;
}

Savepoint::Savepoint(Db& db, std::string name) : m_db(db), m_name(std::move(name))
{
  m_db.run("SAVEPOINT " + m_name);
}

Savepoint::~Savepoint()
{
  if (!m_done && !sqlite3_get_autocommit(m_db.handle())) {
    try {
      m_db.run("ROLLBACK TO " + m_name);
      m_db.run("RELEASE " + m_name);
    } catch (const std::exception& e) {
      log::error("sqlite.rollback_failed", {{"error", e.what()}});
    }
  }
}

void Savepoint::commit()
{
  m_db.run("RELEASE " + m_name);
  m_done = true;
}

} // namespace klingd::store
