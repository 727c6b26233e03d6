#include "common/batch_input.hpp"

#include "common/placeholders.hpp"

#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <set>

namespace klingd::common {

namespace json = boost::json;

namespace {

Error invalid(std::string message)
{
  return make_error("invalid", std::move(message));
}

bool blank_record(const std::vector<std::string>& cells)
{
  return cells.size() == 1 && cells[0].empty();
}

} // namespace

Result<CsvTable> parse_csv(std::string_view text)
{
  if (text.substr(0, 3) == "\xEF\xBB\xBF") {
    text.remove_prefix(3);
  }
  CsvTable table;
  std::vector<std::string> cells(1);
  std::size_t line = 1;
  std::size_t record_line = 1;
  bool quoted_record = false; // a quoted field was seen: never a blank line
  bool have_header = false;
  auto end_record = [&]() -> std::optional<Error> {
    if (blank_record(cells) && !quoted_record) {
      // a blank line: skipped
    } else if (!have_header) {
      std::set<std::string> seen;
      for (std::size_t i = 0; i < cells.size(); ++i) {
        if (cells[i].empty()) {
          return invalid(fmt::format("line {}: column {} of the header has no name", record_line, i + 1));
        }
        if (!seen.insert(cells[i]).second) {
          return invalid(fmt::format("line {}: the header names column \"{}\" twice", record_line, cells[i]));
        }
      }
      table.header = std::move(cells);
      have_header = true;
    } else if (cells.size() != table.header.size()) {
      return invalid(fmt::format("line {}: {} field(s), the header has {}", record_line, cells.size(),
                                 table.header.size()));
    } else {
      table.rows.push_back({record_line, std::move(cells)});
    }
    cells.assign(1, std::string());
    quoted_record = false;
    return std::nullopt;
  };

  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    std::string& cell = cells.back();
    if (c == '"' && cell.empty()) {
      // A quoted field: up to the closing quote, "" is one quote, line breaks are kept.
      const std::size_t opened = line;
      quoted_record = true;
      ++i;
      bool closed = false;
      while (i < text.size()) {
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            cell += '"';
            i += 2;
            continue;
          }
          closed = true;
          ++i;
          break;
        }
        if (text[i] == '\n') {
          ++line;
        }
        cell += text[i++];
      }
      if (!closed) {
        return invalid(fmt::format("line {}: the quoted field of column {} is never closed", opened, cells.size()));
      }
      if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
        return invalid(fmt::format("line {}: text after the closing quote of column {} (a field is either quoted "
                                   "whole or not at all)",
                                   line, cells.size()));
      }
      continue;
    }
    if (c == ',') {
      cells.emplace_back();
      ++i;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
        ++i;
      }
      ++i;
      if (auto e = end_record()) {
        return *e;
      }
      ++line;
      record_line = line;
    } else if (c == '"') {
      return invalid(fmt::format("line {}: a quote inside the unquoted field of column {} (quote the whole field "
                                 "and double the quote: \"say \"\"hi\"\"\")",
                                 line, cells.size()));
    } else {
      cell += c;
      ++i;
    }
  }
  if (auto e = end_record()) {
    return *e;
  }
  if (!have_header) {
    return invalid("the CSV is empty: the first line must name the columns");
  }
  return table;
}

Result<json::value> typed_cell(std::string_view cell, std::string_view type)
{
  if (type == "integer" || type == "number" || type == "duration") {
    double d = 0;
    auto [p, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), d);
    const bool is_number = !cell.empty() && ec == std::errc() && p == cell.data() + cell.size() && std::isfinite(d);
    if (!is_number) {
      if (type == "duration") {
        return json::value(json::string(cell));
      }
      return invalid(fmt::format("\"{}\" is not a number ({} expected)", cell, type == "integer" ? "an integer" : "a number"));
    }
    if (d == std::trunc(d) && std::fabs(d) < 9.0e15) {
      return json::value(static_cast<std::int64_t>(d));
    }
    return json::value(d);
  }
  if (type == "boolean") {
    if (cell == "true") {
      return json::value(true);
    }
    if (cell == "false") {
      return json::value(false);
    }
    return invalid(fmt::format("\"{}\" is not true or false", cell));
  }
  if (type == "array" || type == "object" || type == "any_of") {
    boost::system::error_code ec;
    auto v = json::parse(cell, ec);
    if (!ec && (v.is_array() || v.is_object())) {
      return v;
    }
    if (type != "any_of") {
      return invalid(fmt::format("\"{}\" is not a JSON {}", cell, type));
    }
  }
  return json::value(json::string(cell));
}

namespace {

std::string spec_field_type(const std::string& field)
{
  if (field == "priority") {
    return "integer";
  }
  if (field == "timeout_s") {
    return "number";
  }
  return "string";
}

std::string row_model(const CsvTable& table, const CsvRow& row)
{
  for (std::size_t c = 0; c < table.header.size(); ++c) {
    if (table.header[c] == "model" || table.header[c] == "request.model") {
      return row.cells[c];
    }
  }
  return {};
}

} // namespace

Result<json::object> spec_from_csv_row(const CsvTable& table, const CsvRow& row, const FieldTypeFn& types)
{
  json::object spec;
  json::object request;
  json::object labels;
  const std::string model = row_model(table, row);
  for (std::size_t c = 0; c < table.header.size(); ++c) {
    const std::string& name = table.header[c];
    const std::string& cell = row.cells[c];
    if (cell.empty()) {
      continue;
    }
    auto fail = [&](const std::string& why) {
      return invalid(fmt::format("line {}: column \"{}\": {}", row.line, name, why));
    };
    if (name == "key" || name == "output" || name == "priority" || name == "timeout_s") {
      auto v = typed_cell(cell, spec_field_type(name));
      if (!v) {
        return fail(v.error().message);
      }
      spec[name] = std::move(v).value();
    } else if (name.rfind("labels.", 0) == 0) {
      if (name.size() == 7) {
        return fail("labels.NAME needs a name");
      }
      labels[name.substr(7)] = cell;
    } else {
      const std::string field = name.rfind("request.", 0) == 0 ? name.substr(8) : name;
      if (field.empty()) {
        return fail("request.NAME needs a name");
      }
      auto v = typed_cell(cell, field == "model" ? "string" : types ? types(model, field) : "");
      if (!v) {
        return fail(v.error().message);
      }
      request[field] = std::move(v).value();
    }
  }
  spec["request"] = std::move(request);
  if (!labels.empty()) {
    spec["labels"] = std::move(labels);
  }
  return spec;
}

namespace {

struct Expander
{
  const CsvTable& table;
  const CsvRow& row;
  const FieldTypeFn& types;
  std::string model;

  const std::string* cell(std::string_view column) const
  {
    for (std::size_t c = 0; c < table.header.size(); ++c) {
      if (table.header[c] == column) {
        return &row.cells[c];
      }
    }
    return nullptr;
  }

  Error fail(const std::string& path, const std::string& why) const
  {
    return invalid(fmt::format("line {}: {}: {}", row.line, path, why));
  }

  std::string columns() const
  {
    std::string out;
    for (const auto& h : table.header) {
      out += out.empty() ? "" : ", ";
      out += h;
    }
    return out;
  }

  // The type a whole-placeholder value at `path` takes ("" when left a string).
  std::string type_at(const std::string& path) const
  {
    if (path == "priority" || path == "timeout_s") {
      return spec_field_type(path);
    }
    if (path.rfind("request.", 0) == 0 && path.find('.', 8) == std::string::npos && path.find('[') == std::string::npos &&
        types) {
      return types(model, path.substr(8));
    }
    return {};
  }

  Result<json::value> string_value(std::string_view text, const std::string& path) const
  {
    const bool output = path == "output";
    // Exactly "{column}": the cell, typed as the field needs.
    if (text.size() > 2 && text.front() == '{' && text.back() == '}' &&
        text.substr(1, text.size() - 2).find_first_of("{}") == std::string_view::npos) {
      if (const auto* c = cell(text.substr(1, text.size() - 2)); c && !output) {
        auto type = type_at(path);
        if (!type.empty() && type != "string") {
          auto v = typed_cell(*c, type);
          if (!v) {
            return fail(path, fmt::format("column \"{}\": {}", text.substr(1, text.size() - 2), v.error().message));
          }
          return v;
        }
      }
    }
    std::string out;
    std::string problem;
    auto why = scan_placeholders(
      text, [&](std::string_view lit) { out += output ? escape_braces(lit) : std::string(lit); },
      [&](std::string_view name) {
        if (const auto* c = cell(name)) {
          out += output ? escape_braces(*c) : *c;
        } else if (output && is_output_placeholder(name)) {
          out += '{';
          out += name;
          out += '}';
        } else if (problem.empty()) {
          problem = fmt::format("{{{}}}: no such column (columns: {})", name, columns());
        }
      });
    if (!why.empty()) {
      return fail(path, why);
    }
    if (!problem.empty()) {
      return fail(path, problem);
    }
    return json::value(json::string(out));
  }

  Result<json::value> value(const json::value& v, const std::string& path) const
  {
    if (v.is_string()) {
      return string_value(v.get_string(), path);
    }
    if (v.is_array()) {
      json::array out;
      const auto& a = v.get_array();
      for (std::size_t i = 0; i < a.size(); ++i) {
        auto e = value(a[i], fmt::format("{}[{}]", path, i));
        if (!e) {
          return e;
        }
        out.push_back(std::move(e).value());
      }
      return json::value(std::move(out));
    }
    if (v.is_object()) {
      json::object out;
      for (const auto& kv : v.get_object()) {
        auto e = value(kv.value(), path.empty() ? std::string(kv.key()) : path + "." + std::string(kv.key()));
        if (!e) {
          return e;
        }
        out[kv.key()] = std::move(e).value();
      }
      return json::value(std::move(out));
    }
    return v;
  }
};

} // namespace

Result<json::object> expand_template(const json::object& spec, const CsvTable& table, const CsvRow& row,
                                     const FieldTypeFn& types)
{
  json::object whole;
  if (spec.contains("request")) {
    whole = spec;
  } else {
    whole["request"] = spec;
  }
  Expander x{table, row, types, {}};
  // The model first: the other request fields are typed by it.
  if (const auto* r = whole["request"].if_object(); r && r->contains("model")) {
    auto m = x.value(r->at("model"), "request.model");
    if (!m) {
      return std::move(m).error();
    }
    if (m->is_string()) {
      x.model = std::string(m->get_string());
    }
  }
  auto out = x.value(whole, "");
  if (!out) {
    return std::move(out).error();
  }
  return std::move(out).value().as_object();
}

} // namespace klingd::common
