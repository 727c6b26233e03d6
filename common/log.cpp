#include "common/log.hpp"

#include "common/time.hpp"

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace klingd::log {

namespace {

Level g_level = Level::info;
bool g_journal = false;

bool needs_quotes(std::string_view v)
{
  if (v.empty()) {
    return true;
  }
  for (unsigned char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) {
      return true;
    }
  }
  return false;
}

void append_value(std::string& out, std::string_view v)
{
  if (!needs_quotes(v)) {
    out += v;
    return;
  }
  out += '"';
  for (unsigned char c : v) {
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    default:
      if (c < 0x20 || c == 0x7f) {
        out += fmt::format("\\x{:02x}", c);
      } else {
        out += static_cast<char>(c);
      }
    }
  }
  out += '"';
}

int syslog_priority(Level level)
{
  switch (level) {
  case Level::debug: return 7;
  case Level::info: return 6;
  case Level::warning: return 4;
  case Level::error: return 3;
  }
  return 6;
}

} // namespace

bool parse_level(std::string_view text, Level& out)
{
  if (text == "debug") { out = Level::debug; return true; }
  if (text == "info") { out = Level::info; return true; }
  if (text == "warning" || text == "warn") { out = Level::warning; return true; }
  if (text == "error") { out = Level::error; return true; }
  return false;
}

std::string_view to_string(Level level)
{
  switch (level) {
  case Level::debug: return "debug";
  case Level::info: return "info";
  case Level::warning: return "warning";
  case Level::error: return "error";
  }
  return "info";
}

void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

void init_from_environment()
{
  const char* js = std::getenv("JOURNAL_STREAM");
  g_journal = js != nullptr && *js != '\0';
}

std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields, bool journal)
{
  std::string line;
  line.reserve(128);
  if (journal) {
    line += fmt::format("<{}>", syslog_priority(level));
  } else {
    line += format_rfc3339(now_utc());
    line += ' ';
  }
  line += "level=";
  line += to_string(level);
  line += " event=";
  append_value(line, event);
  for (const auto& f : fields) {
    line += ' ';
    line += f.key;
    line += '=';
    append_value(line, f.value);
  }
  line += '\n';
  return line;
}

void write(Level level, std::string_view event, std::initializer_list<Field> fields)
{
  if (level < g_level) {
    return;
  }
  const std::string line = format_line(level, event, fields, g_journal);
  // One write(2) per line so concurrent writers (and journald) never see torn lines.
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) {
      break;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

} // namespace klingd::log
