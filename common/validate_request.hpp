// The value checks behind Catalog::validate, shared with the catalog loader (which uses
// them to check each parameter's documented default against its own schema).
#pragma once

#include "common/catalog.hpp"

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <vector>

namespace klingd::common {

// Checks `value` against `spec`; returns the normalised value (durations typed as `wire`,
// integral numbers given as 5.0 made integers), or nullopt after appending one FieldError
// per problem to `errors`, each rooted at `path`.
std::optional<boost::json::value> check_value(const ParamSpec& spec, const boost::json::value& value,
                                              const std::string& path, WireType wire,
                                              std::vector<FieldError>& errors);

// "a string", "a number", … for "(got …)" in messages.
std::string_view json_kind_name(const boost::json::value& value);

} // namespace klingd::common
