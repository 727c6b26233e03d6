#include "tests/fake_provider/model_table.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>

namespace fake {

namespace json = boost::json;

namespace {

enum class Kind {
  text,         // non-empty string (max_len when set)
  media,        // URL or base64 data: a non-empty string
  string_enum,  // one of `options`
  int_set,      // integer (or digit string, as the docs write defaults) in `ints`
  int_range,    // integer (or digit string) in [min, max]
  number_range, // number in [min, max]
  boolean,
  media_list,       // array of `min`..`max` non-empty strings
  object_list,      // array of at most `max` items
  camera_preset,    // t2v camera_control: a preset name
  camera_object,    // i2v camera_control: {type, config}
  advanced_camera,  // {movement_type, movement_value}
  effects_image,    // a string, or two strings for the two-person scenes
  shot_list,        // v3 turbo multi_prompt: 1..6 of {prompt* (<= max_len), duration 1..15}
  element_list,     // v3 omni elements: <= 4 of {reference_image_urls (1..4), frontal_image_url, video_url}
  any,
};

struct Param {
  std::string_view name;
  Kind kind;
  bool required = false;
  std::vector<std::string_view> options = {};
  std::vector<int> ints = {};
  double min = 0;
  double max = 0;
};

struct ModelSpec {
  std::string_view id;
  std::vector<Param> params;
  double usd_per_second;
  bool prompt_xor_multi = false; // v3: exactly one of prompt / multi_prompt
  int default_duration = 5;
  bool takes_provider = false;   // the schema lists `provider` (kling | klingai | fal | auto)
  bool tail_needs_silence = false; // v3 omni i2v: tail_image_url only with generate_audio false
};

const std::vector<std::string_view> k_aspect = {"16:9", "9:16", "1:1"};

Param prompt(bool required) { return {"prompt", Kind::text, required}; }
Param prompt_max(int max_len) { return {"prompt", Kind::text, true, {}, {}, 0, double(max_len)}; }
Param negative() { return {"negative_prompt", Kind::text}; }
Param cfg() { return {"cfg_scale", Kind::number_range, false, {}, {}, 0, 1}; }
Param aspect() { return {"aspect_ratio", Kind::string_enum, false, k_aspect}; }
Param dur_5_10() { return {"duration", Kind::int_set, false, {}, {5, 10}}; }
Param media(std::string_view name, bool required) { return {name, Kind::media, required}; }
Param boolean(std::string_view name) { return {name, Kind::boolean}; }
Param image_list(bool required, int min, int max)
{
  return {"image_list", Kind::media_list, required, {}, {}, double(min), double(max)};
}
Param objects(std::string_view name, int max) { return {name, Kind::object_list, false, {}, {}, 0, double(max)}; }

std::vector<Param> t2v_classic()
{
  return {prompt(true), aspect(), dur_5_10(), negative(), cfg(),
          {"camera_control", Kind::camera_preset, false,
           {"down_back", "forward_up", "right_turn_forward", "left_turn_forward"}},
          {"advanced_camera_control", Kind::advanced_camera}};
}

std::vector<Param> i2v_classic(bool tail_image)
{
  std::vector<Param> p = {media("image_url", true), prompt(false), dur_5_10(), negative(), cfg(),
                          media("static_mask", false), objects("dynamic_masks", 6),
                          {"camera_control", Kind::camera_object}};
  if (tail_image) {
    p.push_back(media("tail_image_url", false));
  }
  return p;
}

std::vector<Param> v3(bool image)
{
  std::vector<Param> p = {prompt(false),
                          {"multi_prompt", Kind::media_list, false, {}, {}, 1, 6},
                          {"duration", Kind::int_range, false, {}, {}, 3, 15},
                          {"shot_type", Kind::string_enum, false, {"customize", "intelligent"}},
                          boolean("generate_audio"), negative(), cfg()};
  if (image) {
    p.push_back(media("image_url", true));
    p.push_back(media("tail_image_url", false));
    p.push_back(media("last_image_url", false)); // shown in the v3 i2v seed example
    p.push_back(objects("elements", 4));
  } else {
    p.push_back(aspect());
  }
  return p;
}

// v3 turbo (schemas of 2026-06): prompt <= 3072, multi_prompt as {prompt, duration} shots, and
// none of negative_prompt, cfg_scale, generate_audio, shot_type, tail_image_url, provider.
std::vector<Param> v3_turbo(bool image)
{
  std::vector<Param> p = {{"prompt", Kind::text, false, {}, {}, 0, 3072},
                          {"multi_prompt", Kind::shot_list, false, {}, {}, 1, 6},
                          {"duration", Kind::int_range, false, {}, {}, 3, 15}};
  p.push_back(image ? media("image_url", true) : aspect());
  return p;
}

// v3 omni: v3 with shot_type `intelligence` too; image-to-video adds a tail frame and elements.
std::vector<Param> v3_omni(bool image)
{
  std::vector<Param> p = {prompt(false),
                          {"multi_prompt", Kind::media_list, false, {}, {}, 1, 6},
                          {"duration", Kind::int_range, false, {}, {}, 3, 15},
                          {"shot_type", Kind::string_enum, false, {"customize", "intelligent", "intelligence"}},
                          boolean("generate_audio"), negative(), cfg()};
  if (image) {
    p.push_back(media("image_url", true));
    p.push_back(media("tail_image_url", false));
    p.push_back({"elements", Kind::element_list, false, {}, {}, 0, 4});
  } else {
    p.push_back(aspect());
  }
  return p;
}

std::vector<Param> motion()
{
  return {media("image_url", true), media("video_url", true), prompt(false),
          {"character_orientation", Kind::string_enum, false, {"image", "video"}},
          boolean("keep_audio"), {"mode", Kind::string_enum, false, {"std", "pro"}}};
}

std::vector<Param> effects()
{
  return {{"image_url", Kind::effects_image, true},
          {"effect_scene", Kind::text, true},
          dur_5_10()};
}

const std::vector<ModelSpec>& models()
{
  static const std::vector<ModelSpec> k_models = [] {
    std::vector<ModelSpec> m;
    for (auto id : {"kling-video/v1/standard/text-to-video", "kling-video/v1.5/standard/text-to-video"}) {
      m.push_back({id, t2v_classic(), 0.05});
    }
    for (auto id : {"kling-video/v1/pro/text-to-video", "kling-video/v1.5/pro/text-to-video",
                    "kling-video/v1.6/pro/text-to-video"}) {
      m.push_back({id, t2v_classic(), 0.1});
    }
    for (auto id : {"klingai/v2-master-text-to-video", "klingai/v2.1-master-text-to-video"}) {
      m.push_back({id, t2v_classic(), 0.28});
    }
    m.push_back({"kling-video/v1.6/standard/text-to-video",
                 {prompt(true), aspect(), dur_5_10(), negative(), cfg()}, 0.05});
    for (auto id : {"kling-video/v1/standard/image-to-video", "kling-video/v1.5/standard/image-to-video"}) {
      m.push_back({id, i2v_classic(true), 0.05});
    }
    for (auto id : {"kling-video/v1/pro/image-to-video", "kling-video/v1.5/pro/image-to-video",
                    "kling-video/v1.6/pro/image-to-video"}) {
      m.push_back({id, i2v_classic(true), 0.1});
    }
    for (auto id : {"klingai/v2-master-image-to-video", "klingai/v2.1-master-image-to-video"}) {
      m.push_back({id, i2v_classic(false), 0.28});
    }
    m.push_back({"kling-video/v2.1/standard/image-to-video", i2v_classic(false), 0.06});
    m.push_back({"kling-video/v2.1/pro/image-to-video", i2v_classic(false), 0.1});
    m.push_back({"kling-video/v1.6/standard/image-to-video",
                 {media("image_url", true), prompt(true), dur_5_10(), negative(), cfg()}, 0.05});
    m.push_back({"kling-video/v1.6/standard/multi-image-to-video",
                 {image_list(true, 2, 4), prompt(false), aspect(), dur_5_10(), negative()}, 0.05});
    m.push_back({"klingai/kling-video-v1.6-standard-effects", effects(), 0.05});
    m.push_back({"klingai/kling-video-v1.6-pro-effects", effects(), 0.1});
    m.push_back({"klingai/v2.5-turbo/pro/text-to-video",
                 {prompt(true), dur_5_10(), negative(), cfg(), aspect()}, 0.07});
    m.push_back({"klingai/v2.5-turbo/pro/image-to-video",
                 {prompt(true), media("image_url", true), dur_5_10(), negative(), cfg()}, 0.07});
    m.push_back({"klingai/video-v2-6-pro-text-to-video",
                 {prompt_max(2500), aspect(), dur_5_10(), negative(), cfg(), boolean("generate_audio")},
                 0.08});
    m.push_back({"klingai/video-v2-6-pro-image-to-video",
                 {prompt_max(2500), media("image_url", true), dur_5_10(), negative(),
                  boolean("generate_audio")},
                 0.08});
    m.push_back({"klingai/video-v2-6-motion-control", motion(), 0.1});
    m.push_back({"klingai/video-v2-6-pro-motion-control", motion(), 0.1}); // the former id, still served
    m.push_back({"klingai/video-v3-motion-control", motion(), 0.12});
    m.push_back({"klingai/video-o1-image-to-video",
                 {prompt(true), media("image_url", true), media("last_image_url", false), dur_5_10()},
                 0.11});
    m.push_back({"klingai/video-o1-reference-to-video",
                 {prompt(true), image_list(false, 1, 7), objects("elements", 4), aspect(), dur_5_10()},
                 0.11});
    m.push_back({"klingai/video-o1-video-to-video-edit",
                 {prompt(true), media("video_url", true), image_list(false, 1, 7),
                  objects("elements", 4), boolean("keep_audio")},
                 0.11});
    m.push_back({"klingai/video-o1-video-to-video-reference",
                 {prompt(true), media("video_url", true), image_list(false, 1, 7),
                  objects("elements", 4), aspect(), dur_5_10(), boolean("keep_audio")},
                 0.11});
    m.push_back({"klingai/video-v3-pro-text-to-video", v3(false), 0.12, true});
    m.push_back({"klingai/video-v3-standard-text-to-video", v3(false), 0.09, true});
    m.push_back({"klingai/video-v3-pro-image-to-video", v3(true), 0.12, true});
    m.push_back({"klingai/video-v3-standard-image-to-video", v3(true), 0.09, true});
    m.push_back({"klingai/video-v3-standard-turbo-text-to-video", v3_turbo(false), 0.09, true});
    m.push_back({"klingai/video-v3-standard-turbo-image-to-video", v3_turbo(true), 0.09, true});
    m.push_back({"klingai/video-v3-turbo-pro-text-to-video", v3_turbo(false), 0.12, true});
    m.push_back({"klingai/video-v3-turbo-pro-image-to-video", v3_turbo(true), 0.12, true});
    m.push_back({"klingai/video-v3-omni-720p-text-to-video", v3_omni(false), 0.09, true});
    m.push_back({"klingai/video-v3-omni-720p-image-to-video", v3_omni(true), 0.09, true, 5, false, true});
    m.push_back({"klingai/video-v3-omni-1080p-text-to-video", v3_omni(false), 0.12, true});
    m.push_back({"klingai/video-v3-omni-1080p-image-to-video", v3_omni(true), 0.12, true, 5, false, true});
    m.push_back({"klingai/avatar-standard",
                 {media("image_url", true), media("audio_url", true), prompt(false)}, 0.06});
    m.push_back({"klingai/avatar-pro",
                 {media("image_url", true), media("audio_url", true), prompt(false)}, 0.12});
    // The schemas that list `provider` (api-docs, 2026-06..08).
    static constexpr std::string_view k_routed[] = {
      "klingai/avatar-pro", "klingai/avatar-standard", "kling-video/v1.6/standard/text-to-video",
      "kling-video/v1.6/standard/image-to-video", "klingai/v2-master-text-to-video",
      "klingai/v2-master-image-to-video", "klingai/v2.1-master-text-to-video",
      "klingai/v2.1-master-image-to-video", "klingai/v2.5-turbo/pro/text-to-video",
      "klingai/v2.5-turbo/pro/image-to-video", "klingai/video-o1-image-to-video",
      "klingai/video-o1-reference-to-video", "klingai/video-o1-video-to-video-edit",
      "klingai/video-o1-video-to-video-reference", "klingai/video-v2-6-pro-text-to-video",
      "klingai/video-v2-6-pro-image-to-video", "klingai/video-v3-pro-text-to-video",
      "klingai/video-v3-standard-text-to-video", "klingai/video-v3-pro-image-to-video",
      "klingai/video-v3-standard-image-to-video", "klingai/video-v3-omni-720p-text-to-video",
      "klingai/video-v3-omni-720p-image-to-video", "klingai/video-v3-omni-1080p-text-to-video",
      "klingai/video-v3-omni-1080p-image-to-video"};
    for (auto& spec : m) {
      spec.takes_provider = std::find(std::begin(k_routed), std::end(k_routed), spec.id) != std::end(k_routed);
    }
    return m;
  }();
  return k_models;
}

const ModelSpec* find(std::string_view id)
{
  for (const auto& m : models()) {
    if (m.id == id) {
      return &m;
    }
  }
  return nullptr;
}

std::string describe(const json::value& v)
{
  switch (v.kind()) {
  case json::kind::string:
    return fmt::format("'{}'", std::string_view(v.get_string()));
  case json::kind::null:
    return "null";
  case json::kind::bool_:
    return v.get_bool() ? "true" : "false";
  case json::kind::array:
    return "array";
  case json::kind::object:
    return "object";
  default:
    return json::serialize(v);
  }
}

std::string type_name(const json::value& v)
{
  switch (v.kind()) {
  case json::kind::string:
    return "string";
  case json::kind::null:
    return "null";
  case json::kind::bool_:
    return "boolean";
  case json::kind::array:
    return "array";
  case json::kind::object:
    return "object";
  default:
    return "number";
  }
}

std::optional<double> number_of(const json::value& v)
{
  if (v.is_double()) {
    return v.get_double();
  }
  if (v.is_int64()) {
    return double(v.get_int64());
  }
  if (v.is_uint64()) {
    return double(v.get_uint64());
  }
  return std::nullopt;
}

// Integers also arrive as digit strings ("5"): the docs write the default that way and the
// legacy schema typed duration as a string.
std::optional<int> integer_of(const json::value& v)
{
  if (v.is_string()) {
    std::string_view s = v.get_string();
    if (s.empty() || s.size() > 6 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    return std::stoi(std::string(s));
  }
  auto n = number_of(v);
  if (!n || std::floor(*n) != *n || std::fabs(*n) > 1e6) {
    return std::nullopt;
  }
  return int(*n);
}

ValidationError expected(const Param& p, std::string_view what, const json::value& v)
{
  return {std::string(p.name),
          fmt::format("{}: Expected {}, received {}", p.name, what, type_name(v))};
}

bool non_empty_string(const json::value& v)
{
  return v.is_string() && !v.get_string().empty();
}

// An array of p.min..p.max items, or the error naming p.
std::optional<ValidationError> array_of_size(const Param& p, const json::value& v)
{
  if (!v.is_array()) {
    return expected(p, "array", v);
  }
  const auto n = v.get_array().size();
  if (double(n) < p.min || double(n) > p.max) {
    return ValidationError{std::string(p.name), fmt::format("{}: Array must contain {} to {} element(s), received {}",
                                                            p.name, p.min, p.max, n)};
  }
  return std::nullopt;
}

std::optional<ValidationError> check_param(const Param& p, const json::value& v)
{
  switch (p.kind) {
  case Kind::text:
  case Kind::media:
    if (!v.is_string()) {
      return expected(p, "string", v);
    }
    if (v.get_string().empty()) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}: String must contain at least 1 character(s)", p.name)};
    }
    if (p.max > 0 && double(v.get_string().size()) > p.max) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}: String must contain at most {} character(s)", p.name, p.max)};
    }
    return std::nullopt;
  case Kind::string_enum:
  case Kind::camera_preset:
    if (!v.is_string()
        || std::find(p.options.begin(), p.options.end(), std::string_view(v.get_string()))
             == p.options.end()) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}: Invalid enum value. Expected '{}', received {}", p.name,
                                         fmt::join(p.options, "' | '"), describe(v))};
    }
    return std::nullopt;
  case Kind::int_set: {
    auto n = integer_of(v);
    if (!n || std::find(p.ints.begin(), p.ints.end(), *n) == p.ints.end()) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}: Invalid enum value. Expected {}, received {}", p.name,
                                         fmt::join(p.ints, " | "), describe(v))};
    }
    return std::nullopt;
  }
  case Kind::int_range: {
    auto n = integer_of(v);
    if (!n || *n < p.min || *n > p.max) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}: Expected an integer from {} to {}, received {}", p.name,
                                         p.min, p.max, describe(v))};
    }
    return std::nullopt;
  }
  case Kind::number_range: {
    auto n = number_of(v);
    if (!n) {
      return expected(p, "number", v);
    }
    if (*n < p.min || *n > p.max) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}: Number must be between {} and {}, received {}", p.name,
                                         p.min, p.max, *n)};
    }
    return std::nullopt;
  }
  case Kind::boolean:
    if (!v.is_bool()) {
      return expected(p, "boolean", v);
    }
    return std::nullopt;
  case Kind::media_list: {
    if (auto err = array_of_size(p, v)) {
      return err;
    }
    const auto& a = v.get_array();
    for (const auto& item : a) {
      if (!non_empty_string(item)) {
        return ValidationError{std::string(p.name),
                               fmt::format("{}: every element must be a non-empty string", p.name)};
      }
    }
    return std::nullopt;
  }
  case Kind::object_list:
    if (!v.is_array()) {
      return expected(p, "array", v);
    }
    if (double(v.get_array().size()) > p.max) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}: Array must contain at most {} element(s)", p.name, p.max)};
    }
    return std::nullopt;
  case Kind::camera_object:
    if (!v.is_object() || !v.get_object().contains("type")) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}: Expected an object with \"type\" and \"config\"", p.name)};
    }
    return std::nullopt;
  case Kind::advanced_camera: {
    if (!v.is_object()) {
      return expected(p, "object", v);
    }
    static const std::vector<std::string_view> k_moves = {"horizontal", "vertical", "pan",
                                                          "tilt",       "roll",     "zoom"};
    const auto& o = v.get_object();
    auto type = o.if_contains("movement_type");
    if (!type || !type->is_string()
        || std::find(k_moves.begin(), k_moves.end(), std::string_view(type->get_string())) == k_moves.end()) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}.movement_type: Invalid enum value. Expected '{}'", p.name,
                                         fmt::join(k_moves, "' | '"))};
    }
    auto value = o.if_contains("movement_value");
    auto n = value ? number_of(*value) : std::nullopt;
    if (!n || *n < -10 || *n > 10) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}.movement_value: Expected a number from -10 to 10", p.name)};
    }
    return std::nullopt;
  }
  case Kind::effects_image:
    if (non_empty_string(v)) {
      return std::nullopt;
    }
    if (v.is_array() && v.get_array().size() == 2
        && std::all_of(v.get_array().begin(), v.get_array().end(), non_empty_string)) {
      return std::nullopt;
    }
    return ValidationError{std::string(p.name),
                           fmt::format("{}: Expected a string or an array of two strings", p.name)};
  case Kind::shot_list: {
    if (auto err = array_of_size(p, v)) {
      return err;
    }
    const auto& a = v.get_array();
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string at = fmt::format("{}.{}", p.name, i);
      if (!a[i].is_object()) {
        return ValidationError{at, fmt::format("{}: Expected object, received {}", at, type_name(a[i]))};
      }
      const auto& shot = a[i].get_object();
      const auto* text = shot.if_contains("prompt");
      if (!text) {
        return ValidationError{at + ".prompt", fmt::format("{}.prompt: Required", at)};
      }
      if (!non_empty_string(*text) || text->get_string().size() > 3072) {
        return ValidationError{at + ".prompt",
                               fmt::format("{}.prompt: Expected a string of 1 to 3072 character(s)", at)};
      }
      if (const auto* d = shot.if_contains("duration")) {
        auto n = integer_of(*d);
        if (!n || *n < 1 || *n > 15) {
          return ValidationError{at + ".duration",
                                 fmt::format("{}.duration: Expected an integer from 1 to 15, received {}", at,
                                             describe(*d))};
        }
      }
    }
    return std::nullopt;
  }
  case Kind::element_list: {
    if (!v.is_array()) {
      return expected(p, "array", v);
    }
    const auto& a = v.get_array();
    if (double(a.size()) > p.max) {
      return ValidationError{std::string(p.name),
                             fmt::format("{}: Array must contain at most {} element(s)", p.name, p.max)};
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string at = fmt::format("{}.{}", p.name, i);
      if (!a[i].is_object()) {
        return ValidationError{at, fmt::format("{}: Expected object, received {}", at, type_name(a[i]))};
      }
      const auto& e = a[i].get_object();
      if (const auto* refs = e.if_contains("reference_image_urls")) {
        if (!refs->is_array() || refs->get_array().empty() || refs->get_array().size() > 4
            || !std::all_of(refs->get_array().begin(), refs->get_array().end(), non_empty_string)) {
          return ValidationError{at + ".reference_image_urls",
                                 fmt::format("{}.reference_image_urls: Expected 1 to 4 image URLs", at)};
        }
      }
      for (const char* key : {"frontal_image_url", "video_url"}) {
        if (const auto* u = e.if_contains(key); u && !non_empty_string(*u)) {
          return ValidationError{fmt::format("{}.{}", at, key),
                                 fmt::format("{}.{}: Expected string, received {}", at, key, type_name(*u))};
        }
      }
    }
    return std::nullopt;
  }
  case Kind::any:
    return std::nullopt;
  }
  return std::nullopt;
}

bool is_common_field(std::string_view name, bool legacy_family, bool takes_provider)
{
  if (name == "model" || (name == "provider" && takes_provider)) {
    return true;
  }
  return legacy_family && (name == "type" || name == "ratio" || name == "external_task_id");
}

} // namespace

std::optional<ValidationError> validate_create(const json::value& body, bool legacy_family,
                                               bool strict)
{
  if (!body.is_object()) {
    return ValidationError{"body", "body: Expected object, received " + type_name(body)};
  }
  const auto& o = body.get_object();
  auto model_value = o.if_contains("model");
  if (!model_value) {
    return ValidationError{"model", "model: Required"};
  }
  if (!model_value->is_string()) {
    return ValidationError{"model", "model: Expected string, received " + type_name(*model_value)};
  }
  const ModelSpec* spec = find(model_value->get_string());
  if (!spec) {
    return ValidationError{"model", fmt::format("model: Invalid enum value, received {}",
                                                describe(*model_value))};
  }
  if (auto provider = o.if_contains("provider"); provider && spec->takes_provider) {
    // Case-insensitive, as the schemas say.
    if (!provider->is_string() || !route_of(provider->get_string())) {
      return ValidationError{"provider", "provider: Invalid enum value. Expected 'kling' | "
                                         "'klingai' | 'fal' | 'auto', received " + describe(*provider)};
    }
  }
  if (legacy_family) {
    if (auto ratio = o.if_contains("ratio")) {
      if (!ratio->is_string() || std::find(k_aspect.begin(), k_aspect.end(),
                                           std::string_view(ratio->get_string())) == k_aspect.end()) {
        return ValidationError{"ratio", "ratio: Invalid enum value. Expected '16:9' | '9:16' | "
                                        "'1:1', received " + describe(*ratio)};
      }
    }
  }

  // image_urls is an alias of image_list (one seed example uses it).
  const bool has_list = o.contains("image_list");
  const bool has_urls = o.contains("image_urls");
  const Param* list_param = nullptr;
  for (const auto& p : spec->params) {
    if (p.name == "image_list") {
      list_param = &p;
    }
  }
  if (list_param && has_list && has_urls) {
    return ValidationError{"image_list", "image_list: give image_list or its alias image_urls, not both"};
  }

  for (const auto& p : spec->params) {
    std::string_view field = p.name;
    const json::value* v = o.if_contains(p.name);
    if (!v && p.name == "image_list" && has_urls) {
      v = o.if_contains("image_urls");
      field = "image_urls";
    }
    if (!v || (v->is_null() && !p.required)) {
      if (p.required && !(spec->prompt_xor_multi && p.name == "prompt")) {
        return ValidationError{std::string(field), fmt::format("{}: Required", field)};
      }
      continue;
    }
    if (auto err = check_param(p, *v)) {
      if (field != p.name) {
        err->field = std::string(field);
        err->message.replace(0, p.name.size(), field);
      }
      return err;
    }
  }

  if (spec->tail_needs_silence && o.contains("tail_image_url") && !o.at("tail_image_url").is_null()) {
    const auto* audio = o.if_contains("generate_audio");
    if (!audio || !audio->is_bool() || audio->get_bool()) {
      return ValidationError{"tail_image_url", "tail_image_url: Not supported when generate_audio is enabled; "
                                               "set generate_audio to false to use a tail frame"};
    }
  }

  if (spec->prompt_xor_multi) {
    bool has_prompt = o.contains("prompt") && !o.at("prompt").is_null();
    bool has_multi = o.contains("multi_prompt") && !o.at("multi_prompt").is_null();
    if (has_prompt == has_multi) {
      return ValidationError{"prompt", has_prompt
                                         ? "prompt: Either prompt or multi_prompt must be provided, but not both"
                                         : "prompt: Either prompt or multi_prompt must be provided"};
    }
  }

  if (strict) {
    for (const auto& [key, value] : o) {
      std::string_view name = key;
      bool documented = is_common_field(name, legacy_family, spec->takes_provider)
                        || (list_param && name == "image_urls")
                        || std::any_of(spec->params.begin(), spec->params.end(),
                                       [&](const Param& p) { return p.name == name; });
      if (!documented) {
        return ValidationError{std::string(name),
                               fmt::format("{}: Unrecognized key for model {}", name, spec->id)};
      }
    }
  }
  return std::nullopt;
}

std::optional<std::string> route_of(std::string_view provider)
{
  std::string lower;
  for (char c : provider) {
    lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  }
  if (lower == "kling" || lower == "klingai" || lower == "fal" || lower == "auto") {
    return lower;
  }
  return std::nullopt;
}

bool takes_provider(std::string_view model)
{
  const ModelSpec* spec = find(model);
  return spec && spec->takes_provider;
}

bool known_model(std::string_view model)
{
  return find(model) != nullptr;
}

double usd_per_second(std::string_view model)
{
  const ModelSpec* spec = find(model);
  return spec ? spec->usd_per_second : 0.0;
}

int requested_duration(const json::value& body)
{
  int fallback = 5;
  if (!body.is_object()) {
    return fallback;
  }
  if (auto v = body.get_object().if_contains("duration")) {
    if (auto n = integer_of(*v)) {
      return *n;
    }
  }
  if (auto m = body.get_object().if_contains("model"); m && m->is_string()) {
    if (const ModelSpec* spec = find(m->get_string())) {
      return spec->default_duration;
    }
  }
  return fallback;
}

std::vector<std::string_view> all_models()
{
  std::vector<std::string_view> ids;
  for (const auto& m : models()) {
    ids.push_back(m.id);
  }
  return ids;
}

} // namespace fake
