// The fake's own copy of the provider's Kling model table and its create-body checks, written
// from the seed pages and docs/provider.md. Deliberately not shared with the daemon's catalog: the
// fake is the independent witness the daemon's validation is tested against.
#pragma once

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fake {

struct ValidationError {
  std::string field; // the body field at fault, e.g. "aspect_ratio"
  std::string message;
};

// Checks one create body. `legacy_family` also admits the legacy-only fields (type, ratio,
// external_task_id); `strict` rejects fields the model does not document (the provider
// itself ignores them).
std::optional<ValidationError> validate_create(const boost::json::value& body,
                                               bool legacy_family, bool strict);

// The routing a `provider` value asks for, lower-cased (kling | klingai | fal | auto), or
// nullopt for anything else (the schemas call the field case-insensitive).
std::optional<std::string> route_of(std::string_view provider);
// True if the model's schema lists the `provider` field.
bool takes_provider(std::string_view model);

// True if the model id is in the table.
bool known_model(std::string_view model);
// The fake's list price for the model in USD per second of video (0 for unknown models).
double usd_per_second(std::string_view model);
// The video length a valid body asks for (its duration, else the model's default).
int requested_duration(const boost::json::value& body);
std::vector<std::string_view> all_models();

} // namespace fake
