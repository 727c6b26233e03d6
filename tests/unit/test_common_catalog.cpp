// The catalog file format: the shipped config/models.json, and catalogs with errors.
#include "common/catalog.hpp"
#include "tests/unit/scratch.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <map>

#include <set>
#include <string>

using namespace klingd;
using namespace klingd::common;

namespace {

const std::string k_shipped = std::string(KLINGD_SOURCE_DIR) + "/config/models.json";

const Catalog& shipped()
{
  static const Catalog c = [] {
    auto r = Catalog::load_file(k_shipped);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    return std::move(r).value();
  }();
  return c;
}

// Every model id in the table of docs/provider.md (braces expanded) and the seeds.
const std::vector<std::string> k_provider_ids = {
  "kling-video/v1/standard/text-to-video",     "kling-video/v1/pro/text-to-video",
  "kling-video/v1.5/standard/text-to-video",   "kling-video/v1.5/pro/text-to-video",
  "kling-video/v1.6/pro/text-to-video",        "klingai/v2-master-text-to-video",
  "klingai/v2.1-master-text-to-video",         "kling-video/v1.6/standard/text-to-video",
  "kling-video/v1/standard/image-to-video",    "kling-video/v1/pro/image-to-video",
  "kling-video/v1.5/standard/image-to-video",  "kling-video/v1.5/pro/image-to-video",
  "kling-video/v1.6/pro/image-to-video",       "klingai/v2-master-image-to-video",
  "klingai/v2.1-master-image-to-video",        "kling-video/v2.1/standard/image-to-video",
  "kling-video/v2.1/pro/image-to-video",       "kling-video/v1.6/standard/image-to-video",
  "kling-video/v1.6/standard/multi-image-to-video",
  "klingai/kling-video-v1.6-standard-effects", "klingai/kling-video-v1.6-pro-effects",
  "klingai/v2.5-turbo/pro/text-to-video",      "klingai/v2.5-turbo/pro/image-to-video",
  "klingai/video-v2-6-pro-text-to-video",      "klingai/video-v2-6-pro-image-to-video",
  "klingai/video-v2-6-pro-motion-control",     "klingai/video-v3-motion-control",
  "klingai/video-o1-image-to-video",           "klingai/video-o1-reference-to-video",
  "klingai/video-o1-video-to-video-edit",      "klingai/video-o1-video-to-video-reference",
  "klingai/video-v3-pro-text-to-video",        "klingai/video-v3-standard-text-to-video",
  "klingai/video-v3-pro-image-to-video",       "klingai/video-v3-standard-image-to-video",
  "klingai/avatar-standard",                   "klingai/avatar-pro",
  // Added to the provider's docs in 2026 (docs/provider.md "Changes"), and the renamed motion control.
  "klingai/video-v3-standard-turbo-text-to-video", "klingai/video-v3-standard-turbo-image-to-video",
  "klingai/video-v3-turbo-pro-text-to-video",      "klingai/video-v3-turbo-pro-image-to-video",
  "klingai/video-v3-omni-720p-text-to-video",      "klingai/video-v3-omni-720p-image-to-video",
  "klingai/video-v3-omni-1080p-text-to-video",     "klingai/video-v3-omni-1080p-image-to-video",
  "klingai/video-v2-6-motion-control",
};

// The models whose schema (api-docs, 2026-06..08) has the `provider` field.
const std::set<std::string> k_takes_provider = {
  "klingai/avatar-pro", "klingai/avatar-standard", "kling-video/v1.6/standard/text-to-video",
  "kling-video/v1.6/standard/image-to-video", "klingai/v2-master-text-to-video", "klingai/v2-master-image-to-video",
  "klingai/v2.1-master-text-to-video", "klingai/v2.1-master-image-to-video", "klingai/v2.5-turbo/pro/text-to-video",
  "klingai/v2.5-turbo/pro/image-to-video", "klingai/video-o1-image-to-video", "klingai/video-o1-reference-to-video",
  "klingai/video-o1-video-to-video-edit", "klingai/video-o1-video-to-video-reference",
  "klingai/video-v2-6-pro-text-to-video", "klingai/video-v2-6-pro-image-to-video",
  "klingai/video-v3-pro-text-to-video", "klingai/video-v3-standard-text-to-video",
  "klingai/video-v3-pro-image-to-video", "klingai/video-v3-standard-image-to-video",
  "klingai/video-v3-omni-720p-text-to-video", "klingai/video-v3-omni-720p-image-to-video",
  "klingai/video-v3-omni-1080p-text-to-video", "klingai/video-v3-omni-1080p-image-to-video",
};

// A minimal valid catalog; tests splice one mistake into it.
std::string catalog_with(const std::string& model_fields, const std::string& top = "")
{
  return R"({ "version": 1, )" + top + R"( "models": [ { "id": "m/one", "kind": "text-to-video", "family": "universal", )"
         + model_fields + " } ] }";
}

std::string error_of(const std::string& text)
{
  auto r = Catalog::parse(text, "test.json");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == "catalog");
  CHECK(r.error().message.rfind("catalog test.json: ", 0) == 0);
  return r.error().message;
}

} // namespace

TEST_CASE("catalog: the shipped models.json loads and covers every model of docs/provider.md")
{
  const Catalog& c = shipped();
  CHECK(c.origin() == k_shipped);
  std::set<std::string> listed;
  for (const auto& m : c.models()) {
    listed.insert(m.id);
  }
  for (const auto& id : k_provider_ids) {
    CHECK_MESSAGE(c.find(id) != nullptr, id);
  }
  CHECK(listed.size() == c.models().size());
  CHECK(c.models().size() == k_provider_ids.size());
  CHECK(c.find("klingai/video-v4") == nullptr);
}

TEST_CASE("catalog: kinds, families, durations and aspect ratios of the shipped catalog")
{
  const Catalog& c = shipped();
  const ModelInfo* v3 = c.find("klingai/video-v3-pro-text-to-video");
  REQUIRE(v3);
  CHECK(v3->kind == "text-to-video");
  CHECK(v3->family == Family::universal);
  CHECK(v3->durations == std::vector<std::string>{"3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"});
  CHECK(v3->aspect_ratios == std::vector<std::string>{"16:9", "9:16", "1:1"});
  CHECK(v3->default_duration == 5);
  CHECK(v3->duration_wire == WireType::integer);
  REQUIRE(v3->rules.size() == 1);
  CHECK(v3->rules[0].kind == Rule::Kind::exactly_one_of);

  const ModelInfo* v1 = c.find("kling-video/v1/pro/text-to-video");
  REQUIRE(v1);
  CHECK(v1->family == Family::legacy);
  CHECK(v1->duration_wire == WireType::string);
  CHECK(v1->durations == std::vector<std::string>{"5", "10"});
  CHECK(v1->aliases.at("ratio") == "aspect_ratio");
  CHECK(v1->param("external_task_id") != nullptr); // legacy-family field
  CHECK(v1->param("provider") == nullptr);         // universal-family field

  const ModelInfo* multi = c.find("kling-video/v1.6/standard/multi-image-to-video");
  REQUIRE(multi);
  CHECK(multi->kind == "multi-image-to-video");
  CHECK(multi->aliases.at("image_urls") == "image_list");
  REQUIRE(multi->param("image_list"));
  CHECK(multi->param("image_list")->min_items == 2u);
  CHECK(multi->param("image_list")->max_items == 4u);

  const ModelInfo* i2v = c.find("klingai/v2-master-image-to-video");
  REQUIRE(i2v);
  CHECK(i2v->aspect_ratios.empty());
  CHECK(i2v->param("tail_image_url") == nullptr); // only v1, v1.5, v1.6-pro take a tail image
  CHECK(c.find("kling-video/v1.6/pro/image-to-video")->param("tail_image_url") != nullptr);
  REQUIRE(i2v->param("dynamic_masks"));
  CHECK(i2v->param("dynamic_masks")->max_items == 6u);

  CHECK(c.find("klingai/video-v2-6-pro-text-to-video")->param("prompt")->max_length == 2500u);
  CHECK(c.find("klingai/video-v2-6-pro-image-to-video")->param("cfg_scale") == nullptr);
  CHECK(c.find("klingai/avatar-pro")->kind == "avatar");
  CHECK(c.find("klingai/video-v3-motion-control")->kind == "motion-control");
  CHECK(c.find("klingai/kling-video-v1.6-pro-effects")->kind == "effects");
  CHECK(c.find("klingai/video-o1-video-to-video-edit")->kind == "video-edit");
  for (const auto& m : c.models()) {
    CHECK_MESSAGE(m.price_usd.has_value(), m.id);
    CHECK_MESSAGE(!m.kind.empty(), m.id);
  }
}

TEST_CASE("catalog: family_for and the models table")
{
  const Catalog& c = shipped();
  CHECK(c.family_for("kling-video/v1/pro/text-to-video") == Family::legacy);
  CHECK(c.family_for("klingai/video-v3-pro-text-to-video") == Family::universal);
  CHECK(c.family_for("someone/else") == Family::universal);
  CHECK(to_string(Family::legacy) == "legacy");
  CHECK(to_string(Family::universal) == "universal");

  const std::string table = format_catalog_table(c);
  CHECK(table.rfind("MODEL", 0) == 0);
  CHECK(table.find("KIND") != std::string::npos);
  CHECK(table.find("ASPECT RATIOS") != std::string::npos);
  CHECK(table.find("USD/S") != std::string::npos);
  std::size_t lines = 0;
  for (char ch : table) lines += ch == '\n';
  CHECK(lines == c.models().size() + 1);
  auto row = [&](std::string_view id) {
    auto at = table.find(std::string(id) + " ");
    REQUIRE(at != std::string::npos);
    return table.substr(at, table.find('\n', at) - at);
  };
  const std::string v1 = row("kling-video/v1/pro/text-to-video");
  CHECK(v1.find("text-to-video") != std::string::npos);
  CHECK(v1.find("legacy") != std::string::npos);
  CHECK(v1.find("5,10") != std::string::npos);
  CHECK(v1.find("16:9,9:16,1:1") != std::string::npos);
  const std::string v3 = row("klingai/video-v3-pro-image-to-video");
  CHECK(v3.find("universal") != std::string::npos);
  CHECK(v3.find("3-15") != std::string::npos);
  CHECK(v3.substr(v3.size() - 1) == "-"); // no aspect ratio on image-to-video
  CHECK(v3.find(fmt::format("{:.3f}", *c.find("klingai/video-v3-pro-image-to-video")->price_usd)) != std::string::npos);
}

TEST_CASE("catalog: estimated price of a request")
{
  const Catalog& c = shipped();
  boost::json::object r{{"model", "klingai/video-v3-pro-text-to-video"}, {"duration", 10}};
  REQUIRE(c.estimate_usd(r));
  CHECK(*c.estimate_usd(r) == doctest::Approx(10 * *c.find("klingai/video-v3-pro-text-to-video")->price_usd));
  r.erase("duration"); // the default duration, 5 s
  CHECK(*c.estimate_usd(r) == doctest::Approx(5 * *c.find("klingai/video-v3-pro-text-to-video")->price_usd));
  r["duration"] = "10"; // as stored for the legacy family
  CHECK(*c.estimate_usd(r) == doctest::Approx(10 * *c.find("klingai/video-v3-pro-text-to-video")->price_usd));
  CHECK_FALSE(c.estimate_usd(boost::json::object{{"model", "unknown/model"}}));
}

TEST_CASE("catalog: the provider field exactly on the models whose schema has it")
{
  const Catalog& c = shipped();
  for (const auto& m : c.models()) {
    CAPTURE(m.id);
    CHECK(c.takes_provider(m.id) == (k_takes_provider.count(m.id) == 1));
    if (const ParamSpec* p = m.param("provider")) {
      CHECK(p->enum_values.size() == 4);
    }
  }
  CHECK_FALSE(c.takes_provider("someone/else"));
}

TEST_CASE("catalog: the 2026 models, their shapes and prices")
{
  const Catalog& c = shipped();
  for (const char* id : {"klingai/video-v3-standard-turbo-text-to-video", "klingai/video-v3-turbo-pro-image-to-video",
                         "klingai/video-v3-omni-720p-text-to-video", "klingai/video-v3-omni-1080p-image-to-video"}) {
    CAPTURE(id);
    const ModelInfo* m = c.find(id);
    REQUIRE(m);
    CHECK(m->family == Family::universal);
    CHECK(m->durations.front() == "3");
    CHECK(m->durations.back() == "15");
    CHECK(m->default_duration == 5);
    REQUIRE(m->price_usd);
    CHECK(m->price_unit == PriceUnit::per_second);
    CHECK(*c.estimate_usd(boost::json::object{{"model", id}, {"duration", 7}}) == doctest::Approx(7 * *m->price_usd));
    CHECK(*c.estimate_usd(boost::json::object{{"model", id}}) == doctest::Approx(5 * *m->price_usd));
  }
  const ModelInfo* turbo = c.find("klingai/video-v3-turbo-pro-text-to-video");
  REQUIRE(turbo->param("multi_prompt"));
  REQUIRE(turbo->param("multi_prompt")->items);
  CHECK(turbo->param("multi_prompt")->items->type == ParamType::object);
  CHECK(turbo->param("prompt")->max_length == 3072u);
  for (const char* absent : {"negative_prompt", "cfg_scale", "generate_audio", "shot_type", "tail_image_url", "provider"}) {
    CHECK_MESSAGE(turbo->param(absent) == nullptr, absent);
  }
  const ModelInfo* omni = c.find("klingai/video-v3-omni-720p-image-to-video");
  CHECK(omni->param("shot_type")->enum_values.size() == 3);
  CHECK(omni->param("elements")->max_items == 4u);
  REQUIRE(omni->rules.size() == 2);
  CHECK(omni->rules[1].kind == Rule::Kind::requires_value);

  // The renamed motion control: both ids, the same parameters, the new defaults.
  const ModelInfo* renamed = c.find("klingai/video-v2-6-motion-control");
  const ModelInfo* former = c.find("klingai/video-v2-6-pro-motion-control");
  REQUIRE(renamed);
  REQUIRE(former);
  CHECK(renamed->params.size() == former->params.size());
  CHECK(renamed->price_usd == former->price_usd);
  CHECK(renamed->param("character_orientation")->default_value == boost::json::value("video"));
  CHECK(renamed->param("mode")->enum_values.size() == 2);
}

TEST_CASE("catalog: apply_route fills provider only where it belongs")
{
  const Catalog& c = shipped();
  boost::json::object v3{{"model", "klingai/video-v3-pro-text-to-video"}, {"prompt", "p"}};
  CHECK_FALSE(c.apply_route(v3, ""));                      // no route configured: nothing sent
  CHECK_FALSE(v3.contains("provider"));
  CHECK(c.apply_route(v3, "fal"));
  CHECK(v3.at("provider") == "fal");
  CHECK(requested_route(v3) == std::optional<std::string>("fal"));
  CHECK_FALSE(c.apply_route(v3, "kling"));                 // the request's own choice wins
  CHECK(v3.at("provider") == "fal");

  boost::json::object turbo{{"model", "klingai/video-v3-turbo-pro-text-to-video"}, {"prompt", "p"}};
  CHECK_FALSE(c.apply_route(turbo, "auto"));               // turbo has no provider field
  CHECK_FALSE(turbo.contains("provider"));
  CHECK_FALSE(requested_route(turbo));

  boost::json::object unknown{{"model", "someone/else"}};
  CHECK_FALSE(c.apply_route(unknown, "auto"));
  CHECK_FALSE(unknown.contains("provider"));

  // What apply_route adds validates.
  boost::json::object omni{{"model", "klingai/video-v3-omni-1080p-text-to-video"}, {"prompt", "p"}};
  CHECK(c.apply_route(omni, "klingai"));
  CHECK(c.validate(omni, false).ok());
}

TEST_CASE("catalog: drift against the provider's model list")
{
  const Catalog& c = shipped();
  const double v3_pro = *c.find("klingai/video-v3-pro-text-to-video")->price_usd;
  // A canned GET /v1/models?include=pricing answer: every catalog model listed at its price,
  // then a few deliberate differences.
  boost::json::array data;
  for (const auto& m : c.models()) {
    if (m.id == "klingai/avatar-pro" || m.id == "klingai/video-v2-6-pro-motion-control") continue;
    boost::json::object item{{"id", m.id}, {"aliases", boost::json::array{}}, {"type", "internal/video-generations/submit"}};
    boost::json::object pricing{{"kind", "fixed"}, {"currency", "USD"},
                                {"units", boost::json::array{boost::json::object{{"name", "second"}, {"price", *m.price_usd}, {"per", 1}}}}};
    if (m.id == "klingai/video-v3-pro-text-to-video") {
      pricing["units"] = boost::json::array{boost::json::object{{"unit", "second"}, {"price", v3_pro * 2}, {"per", 1}}};
    }
    if (m.id == "klingai/video-v3-omni-1080p-text-to-video") {
      pricing = {{"kind", "variants"}, {"dimensions", boost::json::array{"generate_audio"}},
                 {"variants", boost::json::array{
                   boost::json::object{{"when", {{"generate_audio", false}}}, {"price", 0.10}, {"unit", "second"}, {"per", 1}},
                   boost::json::object{{"when", {{"generate_audio", true}}}, {"price", 0.15}, {"unit", "second"}, {"per", 1}}}}};
    }
    if (m.id == "klingai/avatar-standard") pricing = {{"kind", "variable"}};
    if (m.id == "klingai/video-v2-6-motion-control") item["aliases"] = boost::json::array{"klingai/video-v2-6-pro-motion-control"};
    item["pricing"] = std::move(pricing);
    data.push_back(std::move(item));
  }
  data.push_back(boost::json::object{{"id", "klingai/video-v4-pro-text-to-video"}, {"aliases", boost::json::array{}}});
  data.push_back(boost::json::object{{"id", "openai/gpt-4o"}, {"aliases", boost::json::array{"gpt-4o"}}});
  const std::string body = boost::json::serialize(boost::json::object{{"object", "list"}, {"data", std::move(data)}});

  auto r = catalog_drift(c, body);
  REQUIRE(r.ok());
  std::map<std::string, CatalogDrift> by_model;
  for (const auto& d : *r) by_model[d.model] = d;
  CHECK(by_model.size() == r->size());
  CHECK(by_model.size() == 5);
  CHECK(by_model.at("klingai/avatar-pro").kind == CatalogDrift::Kind::missing);
  CHECK(by_model.at("klingai/video-v2-6-pro-motion-control").kind == CatalogDrift::Kind::renamed);
  CHECK(by_model.at("klingai/video-v2-6-pro-motion-control").detail.find("klingai/video-v2-6-motion-control") != std::string::npos);
  CHECK(by_model.at("klingai/video-v3-pro-text-to-video").kind == CatalogDrift::Kind::price);
  CHECK(by_model.at("klingai/video-v3-pro-text-to-video").detail == fmt::format("catalog ${:.4g}/s, provider ${:.4g}/s", v3_pro, v3_pro * 2));
  CHECK(by_model.at("klingai/avatar-standard").kind == CatalogDrift::Kind::unpriced);
  CHECK(by_model.at("klingai/video-v4-pro-text-to-video").kind == CatalogDrift::Kind::not_in_catalog);
  CHECK(to_string(CatalogDrift::Kind::not_in_catalog) == "not_in_catalog");
  // omni 1080p at 0.12 lies within the quoted 0.10..0.15: no drift.
  CHECK(by_model.count("klingai/video-v3-omni-1080p-text-to-video") == 0);

  CHECK_FALSE(catalog_drift(c, "{\"data\": 3}").ok());
  CHECK_FALSE(catalog_drift(c, "not json").ok());
}

TEST_CASE("catalog: a minimal catalog with sets, family params and aliases")
{
  auto r = Catalog::parse(R"({
    // comments are allowed in an operator's catalog
    "version": 1,
    "families": { "legacy": { "duration_wire": "string", "params": { "external_task_id": { "type": "string" } } } },
    "aliases": { "ratio": "aspect_ratio" },
    "param_sets": { "base": { "prompt": { "type": "string", "required": true },
                              "aspect_ratio": { "type": "string", "enum": ["16:9"] } } },
    "models": [ { "id": "a/b", "kind": "text-to-video", "family": "legacy", "params_from": ["base"],
                  "params": { "aspect_ratio": null, "duration": { "type": "duration", "enum": [10, 5] } },
                  "price": { "usd_per_video": 0.3 } } ],
  })", "mini");
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  const ModelInfo* m = r->find("a/b");
  REQUIRE(m);
  CHECK(m->param("aspect_ratio") == nullptr); // removed with null
  CHECK(m->aliases.empty());                  // so the ratio alias has no target
  CHECK(m->param("external_task_id") != nullptr);
  CHECK(m->durations == std::vector<std::string>{"5", "10"});
  CHECK(m->duration_wire == WireType::string);
  CHECK(m->price_unit == PriceUnit::per_video);
  CHECK(*r->estimate_usd(boost::json::object{{"model", "a/b"}, {"duration", "10"}}) == doctest::Approx(0.3));
}

TEST_CASE("catalog: a catalog with errors is refused naming the path of each")
{
  struct Case
  {
    std::string text;
    std::string expected;
  };
  const std::vector<Case> cases = {
    {"{ \"version\": 1, \"models\": [", "not valid JSON"},
    {"[1, 2]", "(top level): must be an object"},
    {R"({ "models": [] })", "version: must be 1 (got nothing)"},
    {R"({ "version": 2, "models": [] })", "version: must be 1 (got 2)"},
    {R"({ "version": 1, "models": [] })", "models: must be a non-empty array"},
    {catalog_with(R"("params": {})", R"("colour": 1,)"), "colour: unknown key"},
    {R"({ "version": 1, "models": [ { "id": "m", "kind": "text-to-video", "family": "cloud", "params": { "prompt": { "type": "string" } } } ] })",
     "models[0].family: must be one of universal, legacy (got \"cloud\")"},
    {R"({ "version": 1, "models": [ { "kind": "text-to-video", "family": "universal", "params": { "p": { "type": "string" } } } ] })",
     "models[0].id: required"},
    {R"({ "version": 1, "models": [ { "id": "m", "kind": "poem", "family": "universal", "params": { "p": { "type": "string" } } } ] })",
     "models[0].kind: must be one of"},
    {catalog_with(R"("params": { "prompt": { "type": "text" } })"), "models[0].params.prompt.type: must be one of string"},
    {catalog_with(R"("params": { "prompt": { "required": true } })"), "models[0].params.prompt.type: required"},
    {catalog_with(R"("params": { "duration": { "type": "duration", "enum": [5, "ten"] } })"),
     "models[0].params.duration.enum[1]: must be an integer"},
    {catalog_with(R"("params": { "duration": { "type": "duration" } })"), "models[0].params.duration: a duration needs an enum"},
    {catalog_with(R"("params": { "duration": { "type": "integer", "enum": [5] } })"), "models[0].params.duration: must have type duration"},
    {catalog_with(R"("params": { "cfg_scale": { "type": "number", "minimum": 0, "maximum": 1, "default": 2 } })"),
     "models[0].params.cfg_scale.default: must be between 0 and 1 (got 2)"},
    {catalog_with(R"("params": { "cfg_scale": { "type": "number", "minimum": 3, "maximum": 1 } })"),
     "models[0].params.cfg_scale.minimum: is greater than maximum"},
    {catalog_with(R"("params": { "list": { "type": "array" } })"), "models[0].params.list.items: required for an array"},
    {catalog_with(R"("params": { "p": { "type": "string", "max_items": 3 } })"), "models[0].params.p.max_items: only array parameters"},
    {catalog_with(R"("params": { "p": { "type": "string", "max_length": -1 } })"), "models[0].params.p.max_length: must be a non-negative integer"},
    {catalog_with(R"("params": { "p": { "type": "boolean", "colour": "red" } })"), "models[0].params.p.colour: unknown key"},
    {catalog_with(R"("params": { "Bad-Name": { "type": "string" } })"), "models[0].params.Bad-Name: a parameter name"},
    {catalog_with(R"("params": { "model": { "type": "string" } })"), "models[0].params.model: a parameter name"},
    {catalog_with(R"("params": { "p": { "type": "string" } }, "params_from": ["nope"])"), "models[0].params_from: no param_sets entry named \"nope\""},
    {catalog_with(R"("params": { "p": { "type": "string" } }, "aliases": { "q": "missing" })"), "models[0].aliases.q: must name a parameter"},
    {catalog_with(R"("params": { "p": { "type": "string" } }, "rules": [ { "exactly_one_of": ["p", "q"] } ])"),
     "models[0].rules[0]: names no parameter of this model (\"q\")"},
    {catalog_with(R"("params": { "p": { "type": "string", "required": true }, "q": { "type": "string" } }, "rules": [ { "exactly_one_of": ["p", "q"] } ])"),
     "\"p\" is required, so the rule can never hold"},
    {catalog_with(R"("params": { "p": { "type": "string" } }, "rules": [ { "sometimes": ["p"] } ])"), "models[0].rules[0].sometimes: unknown key"},
    {catalog_with(R"("params": { "p": { "type": "string" } }, "price": { "usd_per_second": -1 })"), "models[0].price: must be a finite number"},
    {catalog_with(R"("params": { "p": { "type": "string" } }, "price": { "usd_per_second": 1, "usd_per_video": 2 })"), "models[0].price: give exactly one of"},
    {catalog_with(R"("params": { "p": { "type": "string" } }, "duration_wire": "float")"), "models[0].duration_wire: must be one of integer, string"},
    {catalog_with(R"("params": { "p": { "any_of": [ { "type": "string" } ] } })"), "models[0].params.p.any_of: must be an array of at least 2"},
    {catalog_with(R"("params": { "p": { "type": "string" } }, "rules": [ { "requires": "p", "field": "q", "equal": false } ])"),
     "models[0].rules[0].field: names no parameter of this model (\"q\")"},
    {catalog_with(R"("params": { "p": { "type": "string" }, "q": { "type": "boolean" } }, "rules": [ { "requires": "p", "field": "q" } ])"),
     "models[0].rules[0].equal: required with requires"},
    {R"({ "version": 1, "models": [ { "id": "m", "kind": "avatar", "family": "universal", "params": { "p": { "type": "string" } } },
                                    { "id": "m", "kind": "avatar", "family": "universal", "params": { "p": { "type": "string" } } } ] })",
     "models[1].id: \"m\" is listed twice"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    const std::string message = error_of(c.text);
    CHECK_MESSAGE(message.find(c.expected) != std::string::npos, message);
  }
}

TEST_CASE("catalog: several errors are reported together")
{
  const std::string message = error_of(catalog_with(R"("params": { "a": { "type": "x" }, "b": { "type": "y" } })"));
  CHECK(message.find("models[0].params.a.type") != std::string::npos);
  CHECK(message.find("models[0].params.b.type") != std::string::npos);
}

TEST_CASE("catalog: load_file names the file")
{
  test::ScratchDir dir;
  auto missing = Catalog::load_file(dir.file("nope.json"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find(dir.file("nope.json")) != std::string::npos);
  CHECK(missing.error().message.find("cannot read") != std::string::npos);

  const std::string bad = dir.write("models.json", catalog_with(R"("params": { "p": { "type": "str" } })"));
  auto r = Catalog::load_file(bad);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("catalog " + bad + ": models[0].params.p.type") == 0);
}
