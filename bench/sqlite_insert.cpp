// klingd-bench-sqlite: the baseline for the submit benchmark (bench/run.py). Inserts the
// rows klingd writes for a submitted job (a batches row, a jobs row, a job_events row, the
// batch's job_count update) straight into SQLite with klingd's pragmas and schema, either
// all in one transaction or one transaction per job, and prints the rate as one JSON line.
// Deliberately independent of daemon/store: it is what klingd is measured against.
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

struct Options
{
  std::string db;
  std::string schema;
  std::string model = "klingai/video-v3-pro-text-to-video";
  std::string request = R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"a calm lake at dawn","duration":5})";
  long rows = 10000;
  bool per_row = false;
};

[[noreturn]] void usage(const char* why)
{
  std::fprintf(stderr,
               "klingd-bench-sqlite: %s\n"
               "usage: klingd-bench-sqlite --db PATH --schema migrations/0001_init.sql [--rows N]\n"
               "                           [--mode batch|per-row] [--model M] [--request JSON]\n",
               why);
  std::exit(2);
}

class Db
{
public:
  explicit Db(const std::string& path)
  {
    if (sqlite3_open(path.c_str(), &m_db) != SQLITE_OK) {
      throw std::runtime_error("cannot open " + path);
    }
  }
  ~Db() { sqlite3_close_v2(m_db); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(const std::string& sql)
  {
    char* err = nullptr;
    if (sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error("sqlite: " + msg);
    }
  }
  sqlite3* get() { return m_db; }

private:
  sqlite3* m_db = nullptr;
};

class Stmt
{
public:
  Stmt(Db& db, const char* sql)
  {
    if (sqlite3_prepare_v3(db.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &m_st, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("sqlite prepare: ") + sqlite3_errmsg(db.get()));
    }
  }
  ~Stmt() { sqlite3_finalize(m_st); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& text(int i, std::string_view v)
  {
    sqlite3_bind_text(m_st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& integer(int i, long long v)
  {
    sqlite3_bind_int64(m_st, i, v);
    return *this;
  }
  Stmt& real(int i, double v)
  {
    sqlite3_bind_double(m_st, i, v);
    return *this;
  }
  void run()
  {
    int rc;
    while ((rc = sqlite3_step(m_st)) == SQLITE_ROW) {
    }
    sqlite3_reset(m_st);
    if (rc != SQLITE_DONE) {
      throw std::runtime_error(std::string("sqlite step: ") + sqlite3_errstr(rc));
    }
  }

private:
  sqlite3_stmt* m_st = nullptr;
};

// Same shape as klingd's ids (26 chars, sortable); uniqueness is all that matters here.
std::string make_id(long n)
{
  char buf[32];
  std::snprintf(buf, sizeof buf, "01BENCH%019ld", n);
  return buf;
}

std::string read_file(const std::string& path)
{
  std::ifstream in(path);
  if (!in) {
    throw std::runtime_error("cannot read " + path);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

} // namespace

int main(int argc, char** argv)
{
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage("missing value");
      }
      return argv[++i];
    };
    if (a == "--db") o.db = value();
    else if (a == "--schema") o.schema = value();
    else if (a == "--rows") o.rows = std::strtol(value().c_str(), nullptr, 10);
    else if (a == "--model") o.model = value();
    else if (a == "--request") o.request = value();
    else if (a == "--mode") {
      const auto m = value();
      if (m != "batch" && m != "per-row") usage("--mode is batch or per-row");
      o.per_row = m == "per-row";
    } else usage("unknown argument");
  }
  if (o.db.empty() || o.schema.empty() || o.rows <= 0) {
    usage("--db, --schema and a positive --rows are required");
  }

  try {
    Db db(o.db);
    // klingd's pragmas (daemon/store/sqlite.cpp), synchronous=FULL as in the default config.
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("PRAGMA synchronous=FULL");
    db.exec("PRAGMA foreign_keys=ON");
    db.exec("PRAGMA temp_store=MEMORY");
    db.exec("PRAGMA wal_autocheckpoint=1000");
    db.exec("BEGIN; " + read_file(o.schema) + "; PRAGMA user_version=1; COMMIT;");

    Stmt batch(db, "INSERT INTO batches (id, created_at, max_usd) VALUES (?, ?, NULL)");
    Stmt job(db,
             "INSERT INTO jobs (id, key, batch, state, model, request, output, priority, timeout_s, labels, created_at, "
             "updated_at) VALUES (?, NULL, ?, 'queued', ?, ?, ?, 0, 86400, '{}', ?, ?)");
    Stmt event(db, "INSERT INTO job_events (job_id, batch, state, step, at) VALUES (?, ?, 'queued', NULL, ?) RETURNING seq");
    Stmt count(db, "UPDATE batches SET job_count = job_count + ? WHERE id = ?");
    const std::string now = "2025-01-01T00:00:00.000Z";

    const auto t0 = std::chrono::steady_clock::now();
    std::string batch_id;
    long in_batch = 0;
    for (long n = 0; n < o.rows; ++n) {
      if (o.per_row || n == 0) {
        db.exec("BEGIN");
        batch_id = make_id(1'000'000'000 + n);
        batch.text(1, batch_id).text(2, now).run();
        in_batch = 0;
      }
      const auto id = make_id(n);
      job.text(1, id).text(2, batch_id).text(3, o.model).text(4, o.request).text(5, id + ".mp4").text(6, now).text(7, now).run();
      event.text(1, id).text(2, batch_id).text(3, now).run();
      ++in_batch;
      if (o.per_row || n + 1 == o.rows) {
        count.integer(1, in_batch).text(2, batch_id).run();
        db.exec("COMMIT");
      }
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"rows\": %ld, \"mode\": \"%s\", \"seconds\": %.6f, \"rows_per_s\": %.1f}\n", o.rows,
                o.per_row ? "per-row" : "batch", s, static_cast<double>(o.rows) / s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "klingd-bench-sqlite: %s\n", e.what());
    return 1;
  }
  return 0;
}
