// Logging: one line per event on stderr, `key=value` fields, with sd-daemon
// `<N>` priority prefixes when running under journald (JOURNAL_STREAM set).
#pragma once

#include <fmt/format.h>

#include <exception>
#include <initializer_list>
#include <string>
#include <string_view>

namespace klingd::log {

enum class Level { debug = 0, info = 1, warning = 2, error = 3 };

// Parses "debug", "info", "warning" (or "warn"), "error"; nullopt-like false on other text.
bool parse_level(std::string_view text, Level& out);
std::string_view to_string(Level level);

// Messages below this level are dropped. Default: info.
void set_level(Level level);
Level level();

// Decides the line format once: journald prefixes (no timestamp, journald adds it)
// when JOURNAL_STREAM is set, else an RFC 3339 timestamp at the start of each line.
void init_from_environment();

struct Field
{
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v ? v : "") {}
  template <typename T>
  Field(std::string_view k, const T& v) : key(k), value(fmt::format("{}", v))
  {
  }
  std::string_view key;
  std::string value;
};

// Writes `event` with its fields. Values with spaces, quotes or `=` are quoted;
// control characters are escaped so one event is always one line.
void write(Level level, std::string_view event, std::initializer_list<Field> fields = {});

inline void debug(std::string_view e, std::initializer_list<Field> f = {}) { write(Level::debug, e, f); }
inline void info(std::string_view e, std::initializer_list<Field> f = {}) { write(Level::info, e, f); }
inline void warning(std::string_view e, std::initializer_list<Field> f = {}) { write(Level::warning, e, f); }
inline void error(std::string_view e, std::initializer_list<Field> f = {}) { write(Level::error, e, f); }

// A completion handler for long-lived coroutines (co_spawn): logs the exception
// that ended one as event=coroutine.failed what=<what>, instead of losing it.
inline auto coroutine_failure_handler(std::string what)
{
  return [what = std::move(what)](std::exception_ptr e) {
    if (!e) {
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      error("coroutine.failed", {{"what", what}, {"error", ex.what()}});
    }
  };
}

// Formats one line without writing it (for tests).
std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields, bool journal);

} // namespace klingd::log
