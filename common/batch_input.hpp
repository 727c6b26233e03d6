// Batches from a table (docs/contract.md §4.2 "submit --csv", "submit --template --vars"): an
// RFC 4180 CSV reader, and the two ways klingctl turns its rows into job specs — columns named
// after spec fields, or `{column}` placeholders in a template spec. Pure code, no I/O.
#pragma once

#include "common/result.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace klingd::common {

struct CsvRow
{
  std::size_t line = 0; // the line the record starts on, from 1
  std::vector<std::string> cells;
};

struct CsvTable
{
  std::vector<std::string> header; // the first record: column names
  std::vector<CsvRow> rows;
};

// RFC 4180: fields separated by ',', records by CRLF or LF; a field in double quotes may hold
// commas, line breaks and doubled quotes (""). A UTF-8 BOM is skipped; blank lines are skipped.
// Every record must have as many fields as the header; header names must be non-empty and
// unique. Errors (code "invalid") name the line: "line 4: 3 fields, the header has 4".
Result<CsvTable> parse_csv(std::string_view text);

// What a catalog parameter expects ("integer", "number", "boolean", "array", "object", "string",
// "duration", …, as GET /v1/models spells it), or "" when unknown. Asked with the row's model.
using FieldTypeFn = std::function<std::string(const std::string& model, const std::string& field)>;

// A cell as a JSON value of the given type: integer/number → a number, boolean → true/false,
// array/object → parsed JSON, duration → a number when it is one, anything else the string.
// Errors name what was expected.
Result<boost::json::value> typed_cell(std::string_view cell, std::string_view type);

// --csv: one spec from a row whose columns are spec fields. `key`, `output`, `priority`,
// `timeout_s`, `labels.NAME`, `request.NAME`; any other column is a request field (`model`,
// `prompt`, `duration`, …) typed by `types`. Empty cells are left out. Errors name line and column.
Result<boost::json::object> spec_from_csv_row(const CsvTable& table, const CsvRow& row, const FieldTypeFn& types);

// --template: `spec` (a job spec, or a bare request) with every `{column}` in its string values
// (nested too; object keys are not touched) replaced by the row's cell. `{{`/`}}` are literal
// braces. A value that is exactly "{column}" takes the cell typed by what the field needs
// (`priority`, `timeout_s`, and request fields by `types`). In `output`, the daemon's own
// placeholders ({batch}, {key}, {id}, {model}, {date}, {index}, {label.NAME}) that are not
// columns are kept for the daemon, and a cell put there shows literally. Any other unknown
// placeholder is an error naming the line, the field and the columns there are.
Result<boost::json::object> expand_template(const boost::json::object& spec, const CsvTable& table, const CsvRow& row,
                                            const FieldTypeFn& types);

} // namespace klingd::common
