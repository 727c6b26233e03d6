// The model catalog (docs/contract.md §5): which Kling models exist, which endpoint family each is
// called with, and the parameters each accepts. The catalog is data (config/models.json),
// checked itself when loaded, so a typo in it stops klingd at start, not a paid request.
// validate() is the single place where a provider request body is checked and normalised.
#pragma once

#include "common/result.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace klingd::common {

// Endpoint family: universal = POST/GET /v2/video/generations,
// legacy = POST/GET /v2/generate/video/kling/generation.
enum class Family { universal, legacy };

// "universal" or "legacy" (the spelling used in models.json).
std::string_view to_string(Family family);

// One problem in a request. `field` is a JSON path rooted at "request" ("request.duration",
// "request.image_list[2]", or "request" itself for rules spanning several fields); `message`
// does not repeat the field (to_string(FieldError) joins them as "field: message").
struct FieldError
{
  std::string field;
  std::string message;
};

// "request.duration: must be one of 5, 10 (got 7)".
std::string to_string(const FieldError& error);

// What a parameter value must look like. Media types (image, video, audio) are strings with
// extra checks: an https URL, or for images also a base64 data URI of a PNG/JPEG/WebP.
enum class ParamType { string, integer, number, boolean, duration, image, video, audio, array, object, any_of };

// "string", "integer", … (the spelling used in models.json).
std::string_view to_string(ParamType type);

struct NamedParam;

// The schema of one parameter (or of an array item / nested object property).
struct ParamSpec
{
  ParamType type = ParamType::string;
  bool required = false;
  bool deprecated = false;
  std::string description;
  std::vector<boost::json::value> enum_values; // empty: any value of the type
  std::optional<double> minimum;               // integer, number, duration
  std::optional<double> maximum;
  std::optional<std::size_t> min_length;       // strings, in characters (code points)
  std::optional<std::size_t> max_length;
  std::optional<std::size_t> min_items;        // arrays
  std::optional<std::size_t> max_items;
  std::shared_ptr<const ParamSpec> items;      // arrays: the schema of every item
  std::vector<NamedParam> properties;          // objects, in catalog order
  bool allow_extra = false;                    // objects: keep undeclared keys instead of refusing them
  std::vector<ParamSpec> alternatives;         // any_of: the value matches the first alternative of its JSON kind
  std::optional<boost::json::value> default_value; // documentation and cost estimates; never injected
};

struct NamedParam
{
  std::string name;
  ParamSpec spec;
};

// A constraint across fields of one request.
struct Rule
{
  enum class Kind {
    exactly_one_of,  // e.g. prompt xor multi_prompt
    at_least_one_of,
    at_most_one_of,
    array_when,      // fields[0] is an array iff `when_field` is one of `when_values`, else a single value
    requires_value,  // fields[0] may be given only when `when_field` (given, else its default) equals `equal`
  };
  Kind kind = Kind::exactly_one_of;
  std::vector<std::string> fields;
  std::string when_field;
  std::vector<std::string> when_values;
  boost::json::value equal; // requires_value
};

// How `duration` goes on the wire: the docs type it as an integer but some pages (and the
// legacy schema) write it as a string. Clients may send either; validate() sends this one.
enum class WireType { integer, string };

enum class PriceUnit { per_second, per_video };

struct ModelInfo
{
  std::string id;
  std::string kind; // text-to-video, image-to-video, multi-image-to-video, effects, …
  Family family = Family::universal;
  std::string description;
  std::vector<std::string> durations;     // allowed durations in seconds, ascending ("5", "10"); empty: none
  std::vector<std::string> aspect_ratios; // allowed aspect_ratio values; empty: the model takes none
  std::optional<int> default_duration;    // what the provider uses when duration is omitted
  WireType duration_wire = WireType::integer;
  std::optional<double> price_usd;        // an estimate for budgets; the provider's headers are the truth
  PriceUnit price_unit = PriceUnit::per_second;
  std::vector<NamedParam> params;         // every accepted field but `model`, family fields included
  std::map<std::string, std::string, std::less<>> aliases; // accepted name → the name that is sent
  std::vector<Rule> rules;
  bool allow_extra = false;               // keep undeclared fields instead of refusing them

  // The parameter called `name` (not resolving aliases), or nullptr.
  const ParamSpec* param(std::string_view name) const;
};

class Catalog
{
public:
  // Reads and checks a catalog file. Error.message names the file and the JSON path of
  // what is wrong, e.g. "catalog /x/models.json: models[3].family: must be one of …".
  static Result<Catalog> load_file(const std::string& path);

  // As load_file, from text; `origin` names the text in errors. Comments are allowed.
  static Result<Catalog> parse(std::string_view json_text, std::string_view origin);

  // The model with this exact id, or nullptr.
  const ModelInfo* find(std::string_view model_id) const;

  // Every model, in catalog order.
  const std::vector<ModelInfo>& models() const { return m_models; }

  // Where the catalog came from (the `origin` given to parse, or the file path).
  const std::string& origin() const { return m_origin; }

  // Checks a provider request body (the `request` of a job spec) and returns the normalised
  // body that is stored and sent verbatim: aliases renamed to the documented field, duration
  // typed as the model expects, everything else unchanged and in the client's order.
  // Errors: one per problem, each naming the field and what is allowed. Unknown models are
  // refused unless allow_unknown_models; then only the basic checks apply (object, model, size).
  Result<boost::json::object, std::vector<FieldError>> validate(const boost::json::value& request,
                                                                bool allow_unknown_models) const;

  // The endpoint family to call the model with; unknown models (when allowed) → universal.
  Family family_for(std::string_view model_id) const;

  // Seconds of video a normalised request asks for: `duration`, else the sum of its
  // `multi_prompt` shots' durations, else the model's default; nullopt when none applies.
  std::optional<std::int64_t> video_seconds(const boost::json::object& request) const;
  // Estimated price of a normalised request in USD (price × video_seconds), or nullopt when
  // the model is unknown or has no price.
  std::optional<double> estimate_usd(const boost::json::object& request) const;

  // True when the model's schema has the `provider` routing field (kling|klingai|fal|auto).
  bool takes_provider(std::string_view model_id) const;

  // The config default provider.route applied to a (validated) request: when `route` is not
  // empty, the model takes `provider` and the request does not set it, adds
  // "provider": route and returns true. A request that sets provider, a model without the
  // field, an unknown model and an empty route are left alone (false).
  bool apply_route(boost::json::object& request, std::string_view route) const;

private:
  std::vector<ModelInfo> m_models;
  std::map<std::string, std::size_t, std::less<>> m_index;
  std::string m_origin;
};

// Largest image a data URI may carry, decoded.
inline constexpr std::size_t k_max_image_bytes = 10u << 20;
// Largest request body validate() accepts (roughly, the sum of its strings and keys):
// several 10 MiB images in base64 fit, anything larger is a mistake.
inline constexpr std::size_t k_max_request_bytes = 60u << 20;

// A plain-text table for `klingctl models`: id, kind, family, durations, aspect ratios, price.
std::string format_catalog_table(const Catalog& catalog);

// "provider" values a request or provider.route may hold.
inline constexpr std::string_view k_provider_routes[] = {"kling", "klingai", "fal", "auto"};

// What the request asks for in `provider` (nullopt when it does not set it).
std::optional<std::string> requested_route(const boost::json::object& request);

// One difference between the catalog and the provider's model list (GET /v1/models?include=pricing).
struct CatalogDrift
{
  enum class Kind {
    missing,        // a catalog model the provider does not list (neither as id nor alias)
    renamed,        // listed only as an alias of another id
    price,          // the listed price per second differs from the catalog's
    unpriced,       // listed without a usable per-second price
    not_in_catalog, // a Kling model the provider lists that the catalog lacks
  };
  Kind kind = Kind::missing;
  std::string model;
  std::string detail; // human text: "catalog $0.12/s, provider $0.14/s"
};

// A model as the drift check sees it (klingctl builds these from klingd's GET /v1/models).
struct PricedModel
{
  std::string id;
  std::optional<double> usd_per_second; // nullopt: no price, or priced per video
};

// Compares models with the provider's answer to GET /v1/models?include=pricing.
// Pricing: `fixed` with a unit per second (price / per), or `variants` (each price / per,
// a range); other shapes count as unpriced. Error when the body is not a model list.
Result<std::vector<CatalogDrift>> catalog_drift(const std::vector<PricedModel>& models, std::string_view models_body);
// The same for a loaded catalog.
Result<std::vector<CatalogDrift>> catalog_drift(const Catalog& catalog, std::string_view models_body);

// "missing", "renamed", … (for tables and JSON).
std::string_view to_string(CatalogDrift::Kind kind);

} // namespace klingd::common
