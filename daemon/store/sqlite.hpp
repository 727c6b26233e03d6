// A thin RAII layer over SQLite: one connection (Db), prepared statements
// (Statement, cached and reused, handed out as a Query that resets it when it
// goes out of scope), and transactions/savepoints that roll back unless
// committed. SQLite errors throw SqliteError (I/O or bugs, not input).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

struct sqlite3;
struct sqlite3_stmt;

namespace klingd::store {

class SqliteError : public std::runtime_error
{
public:
  SqliteError(int code, const std::string& what) : std::runtime_error(what), m_code(code) {}
  int code() const { return m_code; }
  // SQLITE_CONSTRAINT and its extended codes.
  bool is_constraint() const { return (m_code & 0xff) == 19; }
  // SQLITE_FULL: the disk (or the database's size limit) is full.
  bool is_full() const { return (m_code & 0xff) == 13; }

private:
  int m_code;
};

class Statement
{
public:
  Statement(sqlite3* db, std::string_view sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based as in SQLite. Text is copied (SQLITE_TRANSIENT).
  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, const char* text) { return bind(index, std::string_view(text)); }
  Statement& bind(int index, const std::string& text) { return bind(index, std::string_view(text)); }
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
  Statement& bind(int index, double value);
  Statement& bind_null(int index);
  template <typename T>
  Statement& bind(int index, const std::optional<T>& v)
  {
    return v ? bind(index, *v) : bind_null(index);
  }

  // Advances; true while a row is available. Throws on error.
  bool step();
  // Steps to completion (for statements without rows).
  void run();
  // Clears bindings and resets, so a cached statement can be reused.
  void reset();

  bool is_null(int col) const;
  std::int64_t int64(int col) const;
  double real(int col) const;
  std::string text(int col) const;
  std::optional<std::string> opt_text(int col) const;
  std::optional<std::int64_t> opt_int64(int col) const;
  std::optional<double> opt_real(int col) const;

private:
  friend class Query;
  friend class Db;
  sqlite3* m_db;
  sqlite3_stmt* m_stmt = nullptr;
  bool m_in_use = false; // a Query holds it
};

// A statement in use. Its destructor resets the statement and clears its
// bindings: a statement left stepped to a row keeps a read transaction open on
// the connection, and while one is open no WAL checkpoint can complete (the
// WAL then grows without bound). Hold it only as long as you read its rows.
class Query
{
public:
  explicit Query(Statement& cached);             // borrows a cached statement
  explicit Query(std::unique_ptr<Statement> own); // owns a one-off statement
  ~Query();
  Query(Query&& other) noexcept;
  Query& operator=(Query&&) = delete;
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  template <typename T>
  Query& bind(int index, T&& value)
  {
    m_st->bind(index, std::forward<T>(value));
    return *this;
  }
  Query& bind_null(int index)
  {
    m_st->bind_null(index);
    return *this;
  }
  bool step() { return m_st->step(); }
  void run() { m_st->run(); }
  void reset() { m_st->reset(); }
  bool is_null(int col) const { return m_st->is_null(col); }
  std::int64_t int64(int col) const { return m_st->int64(col); }
  double real(int col) const { return m_st->real(col); }
  std::string text(int col) const { return m_st->text(col); }
  std::optional<std::string> opt_text(int col) const { return m_st->opt_text(col); }
  std::optional<std::int64_t> opt_int64(int col) const { return m_st->opt_int64(col); }
  std::optional<double> opt_real(int col) const { return m_st->opt_real(col); }

private:
  Statement* m_st;
  std::unique_ptr<Statement> m_own;
};

class Db
{
public:
  struct Options
  {
    std::string synchronous = "full"; // full | normal | extra
    int busy_timeout_ms = 5000;
  };

  // Opens (creating if needed) the database at `path` (":memory:" allowed) in WAL mode.
  Db(const std::string& path, Options options);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Runs one or more statements without results (parsed on every call).
  void exec(std::string_view sql);
  // Runs one statement without results through the statement cache (prepare): for the
  // ones run on every write (BEGIN, COMMIT, SAVEPOINT, RELEASE, PRAGMA synchronous), which
  // sqlite3_exec would parse again each time.
  void run(std::string_view sql);
  // A prepared statement cached by its SQL text, ready to bind; reset when the
  // returned Query is destroyed. (If the cached one is held by a live Query, a
  // one-off statement is prepared instead.)
  Query prepare(std::string_view sql);
  std::int64_t changes() const;
  int user_version();
  sqlite3* handle() { return m_db; }
  const std::string& path() const { return m_path; }

  // Statements of this connection stepped but not yet reset or finished:
  // each holds a read transaction. 0 between operations.
  int busy_statements() const;

  struct FileSizes
  {
    std::int64_t db_bytes = 0;
    std::int64_t wal_bytes = 0; // 0 when there is no -wal file
  };
  FileSizes file_sizes() const;

  // Copies everything in the WAL into the database and truncates the WAL to
  // zero bytes (an idle-time checkpoint). Never waits: returns false when
  // another connection's reader or writer is in the way (try again later), or
  // inside a transaction.
  bool checkpoint_truncate();

private:
  sqlite3* m_db = nullptr;
  std::string m_path;
  int m_busy_timeout_ms = 5000;
  std::unordered_map<std::string, std::unique_ptr<Statement>> m_cache;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back in the destructor unless committed.
class Transaction
{
public:
  explicit Transaction(Db& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

private:
  Db& m_db;
  bool m_done = false;
};

// A nested SAVEPOINT: released on commit(), rolled back (and released) otherwise.
class Savepoint
{
public:
  Savepoint(Db& db, std::string name);
  ~Savepoint();
  Savepoint(const Savepoint&) = delete;
  Savepoint& operator=(const Savepoint&) = delete;
  void commit();

private:
  Db& m_db;
  std::string m_name;
  bool m_done = false;
};

} // namespace klingd::store
