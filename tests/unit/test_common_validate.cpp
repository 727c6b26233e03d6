// Request validation and normalisation against the shipped catalog (docs/contract.md §5).
#include "common/catalog.hpp"
#include "common/validate_media.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <string>

using namespace klingd;
using namespace klingd::common;
namespace json = boost::json;

namespace {

const Catalog& catalog()
{
  static const Catalog c = [] {
    auto r = Catalog::load_file(std::string(KLINGD_SOURCE_DIR) + "/config/models.json");
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    return std::move(r).value();
  }();
  return c;
}

std::string base64(const std::string& bytes)
{
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    unsigned n = (unsigned char)bytes[i] << 16 | (unsigned char)bytes[i + 1] << 8 | (unsigned char)bytes[i + 2];
    out += {k[n >> 18], k[(n >> 12) & 63], k[(n >> 6) & 63], k[n & 63]};
  }
  if (i + 1 == bytes.size()) {
    unsigned n = (unsigned char)bytes[i] << 16;
    out += {k[n >> 18], k[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    unsigned n = (unsigned char)bytes[i] << 16 | (unsigned char)bytes[i + 1] << 8;
    out += {k[n >> 18], k[(n >> 12) & 63], k[(n >> 6) & 63], '='};
  }
  return out;
}

const std::string k_png = std::string("\x89PNG\r\n\x1a\n", 8) + std::string("\0\0\0\rIHDR", 8) + "rest-of-png";
const std::string k_jpeg = std::string("\xFF\xD8\xFF\xE0", 4) + "JFIF-rest";
const std::string k_webp = std::string("RIFF\x10\0\0\0WEBPVP8 ", 16) + "rest";

std::string data_uri(std::string_view type, const std::string& bytes)
{
  return "data:image/" + std::string(type) + ";base64," + base64(bytes);
}

json::object accept(std::string_view body, bool allow_unknown = false)
{
  auto r = catalog().validate(json::parse(body), allow_unknown);
  std::string why;
  if (!r.ok()) {
    for (const auto& e : r.error()) why += to_string(e) + "\n";
  }
  REQUIRE_MESSAGE(r.ok(), why);
  return std::move(r).value();
}

std::vector<FieldError> reject(const json::value& body, bool allow_unknown = false)
{
  auto r = catalog().validate(body, allow_unknown);
  REQUIRE_FALSE(r.ok());
  return std::move(r).error();
}

// The seed pages' example bodies, verbatim.
const char* const k_seed_bodies[] = {
  // 000 (v3 pro t2v), curl
  R"({"model": "klingai/video-v3-pro-text-to-video",
      "prompt": "A menacing evil dragon appears in a distance above the tallest mountain, then rushes toward the camera with its jaws open, revealing massive fangs. We see it's coming."})",
  // 000, python/js: multi_prompt
  R"({"model": "klingai/video-v3-pro-text-to-video",
      "multi_prompt": [
        "A cheerful white raccoon runs through a giant sequoia forest. Sunlight streams through the tall trees, soft volumetric light, cinematic camera movement following the raccoon from the side, shallow depth of field, animated film style, 3 seconds.",
        "Close-up of the raccoon's face. The raccoon gently raises its head and looks up toward the towering sequoia treetops. Soft light on the fur, expressive eyes, subtle head movement, cinematic close-up, animated film style, 2 seconds.",
        "First-person view from the raccoon's perspective. Massive sequoia trees sway and rustle in the wind high above. Suddenly, a huge pterodactyl flies across the sky, blurred and partially hidden in mist and haze. Slight handheld camera feel, cinematic motion blur, dramatic atmosphere, animated film style, 3 seconds."
      ],
      "aspect_ratio": "16:9", "duration": 8})",
  // 001 (v3 standard i2v) with last_image_url
  R"({"model": "klingai/video-v3-standard-image-to-video",
      "prompt": "The camera glides smoothly over a calm lake surface, then moves down and gradually dives underwater and moves through a dark, moody world of greenish light and drifting plants. Giant white koi fish emerge from the shadows and turn curiously toward the camera as it passes, their scales shimmering faintly in the murky depths.",
      "image_url": "https://raw.githubusercontent.com/aimlapi/api-docs/main/reference-files/landscape.jpg",
      "last_image_url": "https://cdn.aimlapi.com/flamingo/files/b/monkey/8QpmaTniTlydTzWQcnugy_3ad2bc325cb04e11a11d27034afb554f.png",
      "duration": 10})",
  // 002 (v2 master t2v), python: duration as a string
  R"({"model": "klingai/v2-master-text-to-video",
      "prompt": "A cheerful white raccoon running through a sequoia forest",
      "aspect_ratio": "16:9", "duration": "5", "cfg_scale": 0.9})",
  // 002, js
  R"({"model": "klingai/v2-master-text-to-video",
      "prompt": "A menacing evil dragon appears in a distance above the tallest mountain, then rushes toward the camera with its jaws open, revealing massive fangs. We see it's coming."})",
  // 003 (v1 pro t2v, legacy)
  R"({"model": "kling-video/v1/pro/text-to-video", "aspect_ratio": "16:9", "prompt": "text",
      "duration": 5, "negative_prompt": "text", "cfg_scale": 1})",
  // 004 (v1.6 standard multi-image), python: image_list
  R"({"model": "kling-video/v1.6/standard/multi-image-to-video",
      "prompt": "A graceful ballerina dancing outside a circus tent on green grass, with colorful wildflowers swaying around her as she twirls and poses in the meadow.",
      "image_list": ["https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-1.png",
                     "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-2.png",
                     "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-3.png"],
      "duration": "5"})",
  // 004, js: image_urls
  R"({"model": "kling-video/v1.6/standard/multi-image-to-video",
      "prompt": "A graceful ballerina dancing outside a circus tent on green grass, with colorful wildflowers swaying around her as she twirls and poses in the meadow.",
      "image_urls": ["https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-1.png",
                     "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-2.png",
                     "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-3.png"],
      "duration": "5"})",
};

} // namespace

TEST_CASE("validate: every seed example body is accepted")
{
  for (const char* body : k_seed_bodies) {
    CAPTURE(body);
    auto out = accept(body);
    CHECK(out.at("model") == json::parse(body).at("model"));
  }
}

TEST_CASE("validate: normalisation of the seed bodies, exactly")
{
  // image_urls → image_list, "5" → 5 on the universal family; order and everything else kept.
  CHECK(json::value(accept(k_seed_bodies[7])) == json::parse(R"({"model": "kling-video/v1.6/standard/multi-image-to-video",
      "prompt": "A graceful ballerina dancing outside a circus tent on green grass, with colorful wildflowers swaying around her as she twirls and poses in the meadow.",
      "image_list": ["https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-1.png",
                     "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-2.png",
                     "https://storage.googleapis.com/falserverless/example_inputs/veo31-r2v-input-3.png"],
      "duration": 5})"));
  CHECK(json::serialize(accept(k_seed_bodies[3]))
        == R"({"model":"klingai/v2-master-text-to-video","prompt":"A cheerful white raccoon running through a sequoia forest","aspect_ratio":"16:9","duration":5,"cfg_scale":9E-1})");
  // The legacy family gets duration as a string.
  CHECK(json::serialize(accept(k_seed_bodies[5]))
        == R"({"model":"kling-video/v1/pro/text-to-video","aspect_ratio":"16:9","prompt":"text","duration":"5","negative_prompt":"text","cfg_scale":1})");
  // v3 image-to-video: last_image_url is sent as the schema's tail_image_url.
  auto v3 = accept(k_seed_bodies[2]);
  CHECK_FALSE(v3.contains("last_image_url"));
  CHECK(v3.at("tail_image_url")
        == "https://cdn.aimlapi.com/flamingo/files/b/monkey/8QpmaTniTlydTzWQcnugy_3ad2bc325cb04e11a11d27034afb554f.png");
  CHECK(v3.at("duration") == 10);
  // Already normal: unchanged.
  CHECK(json::value(accept(k_seed_bodies[1])) == json::parse(k_seed_bodies[1]));
}

TEST_CASE("validate: other normalisations")
{
  CHECK(json::serialize(accept(R"({"model": "kling-video/v1/pro/text-to-video", "prompt": "p", "ratio": "9:16", "duration": 10})"))
        == R"({"model":"kling-video/v1/pro/text-to-video","prompt":"p","aspect_ratio":"9:16","duration":"10"})");
  CHECK(json::serialize(accept(R"({"model": "kling-video/v1/pro/text-to-video", "prompt": "p", "duration": "10"})"))
        == R"({"model":"kling-video/v1/pro/text-to-video","prompt":"p","duration":"10"})");
  CHECK(json::serialize(accept(R"({"model": "klingai/video-v3-pro-text-to-video", "prompt": "p", "duration": 12.0})"))
        == R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"p","duration":12})");
  CHECK(json::serialize(accept(R"({"model": "klingai/video-o1-image-to-video", "prompt": "p", "image_url": "https://x.test/a.png", "tail_image_url": "https://x.test/b.png"})"))
        == R"({"model":"klingai/video-o1-image-to-video","prompt":"p","image_url":"https://x.test/a.png","last_image_url":"https://x.test/b.png"})");
  // ratio → aspect_ratio applies wherever the model has aspect_ratio.
  CHECK(accept(R"({"model": "klingai/video-v3-pro-text-to-video", "prompt": "p", "ratio": "1:1"})").at("aspect_ratio") == "1:1");
  // An unknown model, when allowed, is kept verbatim.
  const char* other = R"({"model": "someone/new-model", "prompt": 3, "whatever": {"x": [1]}})";
  CHECK(json::value(accept(other, true)) == json::parse(other));
}

TEST_CASE("validate: valid requests across kinds")
{
  const std::string png = data_uri("png", k_png);
  const std::string jpeg = data_uri("jpeg", k_jpeg);
  const std::string webp = data_uri("webp", k_webp);
  accept(R"({"model": "kling-video/v1.6/pro/text-to-video", "prompt": "p", "camera_control": "down_back",
             "advanced_camera_control": {"movement_type": "zoom", "movement_value": -10}})");
  accept(R"({"model": "klingai/v2-master-text-to-video", "prompt": "p", "provider": "fal"})");
  accept(R"({"model": "kling-video/v1/standard/image-to-video", "image_url": ")" + png + R"(", "tail_image_url": ")" + jpeg
         + R"(", "static_mask": ")" + webp + R"(", "dynamic_masks": [{"mask": "https://x.test/m.png", "trajectories": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}],
             "camera_control": {"type": "simple", "config": {"zoom": 5, "pan": -2.5}}})");
  accept(R"({"model": "klingai/kling-video-v1.6-pro-effects", "image_url": ["https://x.test/a.png", "https://x.test/b.png"], "effect_scene": "hug"})");
  accept(R"({"model": "klingai/kling-video-v1.6-standard-effects", "image_url": "https://x.test/a.png", "effect_scene": "squish", "duration": 10})");
  accept(R"({"model": "klingai/video-v3-motion-control", "image_url": "https://x.test/a.png", "video_url": "https://x.test/v.mp4",
             "character_orientation": "video", "keep_audio": true, "mode": "pro"})");
  accept(R"({"model": "klingai/video-o1-reference-to-video", "prompt": "p", "image_list": ["https://x.test/a.png"],
             "elements": [{"frontal_image_url": "https://x.test/f.png", "reference_image_urls": ["https://x.test/r.png"]}]})");
  accept(R"({"model": "klingai/video-o1-video-to-video-edit", "prompt": "p", "video_url": "https://x.test/v.mp4", "keep_audio": false})");
  accept(R"({"model": "klingai/avatar-pro", "image_url": "https://x.test/a.png", "audio_url": "https://x.test/a.mp3"})");
  accept(R"({"model": "klingai/video-v3-pro-image-to-video", "multi_prompt": ["a", "b"], "image_url": "https://x.test/a.png",
             "shot_type": "intelligent", "generate_audio": false, "duration": "3", "cfg_scale": 0})");
  accept(R"({"model": "klingai/video-v2-6-pro-text-to-video", "prompt": ")" + std::string(2500, 'x') + R"("})");
  // 2500 characters, not bytes: "é" is two bytes.
  std::string accented;
  for (int i = 0; i < 2500; ++i) accented += "\xC3\xA9";
  accept(R"({"model": "klingai/video-v2-6-pro-text-to-video", "prompt": ")" + accented + R"("})");
}

TEST_CASE("validate: bad requests are rejected naming the field")
{
  const std::string v1 = R"("model": "kling-video/v1/pro/text-to-video", "prompt": "p")";
  const std::string v3 = R"("model": "klingai/video-v3-pro-text-to-video")";
  const std::string i2v = R"("model": "klingai/v2-master-image-to-video", "image_url": "https://x.test/a.png")";
  const std::string multi = R"("model": "kling-video/v1.6/standard/multi-image-to-video")";
  const std::string fx = R"("model": "klingai/kling-video-v1.6-standard-effects")";
  const std::string motion = R"("model": "klingai/video-v2-6-pro-motion-control", "image_url": "https://x.test/a.png")";
  const std::string u = R"("https://x.test/a.png")";
  const std::string big = data_uri("png", k_png + std::string(k_max_image_bytes, 'x'));
  struct Case
  {
    std::string body;
    std::string field;
    std::string message; // a substring of the message
  };
  const std::vector<Case> cases = {
    {"[]", "request", "must be an object (got an array)"},
    {"{}", "request.model", "required"},
    {R"({"model": 5, "prompt": "p"})", "request.model", "must be a string (got a number)"},
    {R"({"model": ""})", "request.model", "printable characters"},
    {R"({"model": "kling-video/v9/ultra"})", "request.model", "unknown model \"kling-video/v9/ultra\""},
    {R"({"model": "kling-video/v1/pro/text-to-video"})", "request.prompt", "required for model kling-video/v1/pro/text-to-video"},
    {R"({"model": "kling-video/v1/pro/text-to-video", "prompt": 42})", "request.prompt", "must be a string (got a number)"},
    {R"({"model": "kling-video/v1/pro/text-to-video", "prompt": ""})", "request.prompt", "must not be empty"},
    {R"({"model": "kling-video/v1/pro/text-to-video", "prompt": null})", "request.prompt", "must be a string (got null)"},
    {"{" + v1 + R"(, "duration": 7})", "request.duration", "must be one of 5, 10 (got 7)"},
    {"{" + v1 + R"(, "duration": "7"})", "request.duration", "must be one of 5, 10 (got 7)"},
    {"{" + v1 + R"(, "duration": "five"})", "request.duration", "whole number of seconds"},
    {"{" + v1 + R"(, "duration": 5.5})", "request.duration", "whole number of seconds"},
    {"{" + v1 + R"(, "duration": true})", "request.duration", "whole number of seconds"},
    {"{" + v3 + R"(, "prompt": "p", "duration": 16})", "request.duration", "must be between 3 and 15 (got 16)"},
    {"{" + v3 + R"(, "prompt": "p", "duration": 2})", "request.duration", "must be between 3 and 15 (got 2)"},
    {"{" + v1 + R"(, "aspect_ratio": "4:3"})", "request.aspect_ratio", "must be one of 16:9, 9:16, 1:1 (got \"4:3\")"},
    {"{" + v1 + R"(, "ratio": "4:3"})", "request.ratio", "must be one of 16:9, 9:16, 1:1"},
    {"{" + v1 + R"(, "ratio": "1:1", "aspect_ratio": "1:1"})", "request.ratio", "alias of aspect_ratio"},
    {"{" + v1 + R"(, "cfg_scale": 1.5})", "request.cfg_scale", "must be between 0 and 1 (got 1.5"},
    {"{" + v1 + R"(, "cfg_scale": -0.1})", "request.cfg_scale", "must be between 0 and 1"},
    {"{" + v1 + R"(, "cfg_scale": "0.5"})", "request.cfg_scale", "must be a number (got a string)"},
    {"{" + v1 + R"(, "foo": 1})", "request.foo", "unknown field for model kling-video/v1/pro/text-to-video (allowed: model, "},
    {"{" + v1 + R"(, "provider": "fal"})", "request.provider", "unknown field"}, // not in the v1 schema
    {R"({"model": "kling-video/v1.6/pro/text-to-video", "prompt": "p", "provider": "fal"})", "request.provider", "unknown field"},
    {"{" + v1 + R"(, "camera_control": "spin"})", "request.camera_control", "must be one of down_back, forward_up"},
    {"{" + v1 + R"(, "advanced_camera_control": {"movement_type": "spin", "movement_value": 1}})",
     "request.advanced_camera_control.movement_type", "must be one of horizontal, vertical, pan, tilt, roll, zoom"},
    {"{" + v1 + R"(, "advanced_camera_control": {"movement_type": "pan", "movement_value": 11}})",
     "request.advanced_camera_control.movement_value", "must be between -10 and 10 (got 11)"},
    {"{" + v1 + R"(, "advanced_camera_control": {"movement_type": "pan"}})", "request.advanced_camera_control.movement_value", "required"},
    {"{" + v1 + R"(, "advanced_camera_control": {"movement_type": "pan", "movement_value": 1, "speed": 2}})",
     "request.advanced_camera_control.speed", "unknown field (allowed: movement_type, movement_value)"},
    {"{" + v1 + R"(, "advanced_camera_control": "zoom"})", "request.advanced_camera_control", "must be an object (got a string)"},
    {"{" + v3 + R"(, "prompt": "p", "multi_prompt": ["a"]})", "request", "give exactly one of prompt or multi_prompt (got more than one)"},
    {"{" + v3 + "}", "request", "give exactly one of prompt or multi_prompt (got none)"},
    {"{" + v3 + R"(, "multi_prompt": "a"})", "request.multi_prompt", "must be an array of strings (got a string)"},
    {"{" + v3 + R"(, "multi_prompt": ["a", 2]})", "request.multi_prompt[1]", "must be a string (got a number)"},
    {"{" + v3 + R"(, "multi_prompt": ["a","b","c","d","e","f","g"]})", "request.multi_prompt", "must have between 1 and 6 items (got 7)"},
    {"{" + v3 + R"(, "prompt": "p", "shot_type": "auto"})", "request.shot_type", "must be one of customize, intelligent"},
    {"{" + v3 + R"(, "prompt": "p", "generate_audio": "yes"})", "request.generate_audio", "must be a boolean (got a string)"},
    {"{" + v3 + R"(, "prompt": "p", "image_url": "https://x.test/a.png"})", "request.image_url", "unknown field"},
    {R"({"model": "klingai/video-v2-6-pro-text-to-video", "prompt": ")" + std::string(2501, 'x') + R"("})", "request.prompt",
     "must be at most 2500 characters (got 2501)"},
    {R"({"model": "klingai/v2-master-image-to-video"})", "request.image_url", "required"},
    {"{" + i2v + R"(, "image_url": 1})", "request.image_url", "must be an image"},
    {R"({"model": "klingai/v2-master-image-to-video", "image_url": "http://x.test/a.png"})", "request.image_url", "http URLs are refused, use https"},
    {R"({"model": "klingai/v2-master-image-to-video", "image_url": "ftp://x.test/a.png"})", "request.image_url", "must be an https URL"},
    {R"({"model": "klingai/v2-master-image-to-video", "image_url": "a.png"})", "request.image_url", "must be an https URL"},
    {R"({"model": "klingai/v2-master-image-to-video", "image_url": "data:image/gif;base64,R0lGODlh"})", "request.image_url", "image/png, image/jpeg or image/webp"},
    {R"({"model": "klingai/v2-master-image-to-video", "image_url": "data:image/png;base64,%%%"})", "request.image_url", "not valid base64"},
    {R"({"model": "klingai/v2-master-image-to-video", "image_url": ")" + data_uri("png", k_jpeg) + R"("})", "request.image_url", "declares image/png but the data is a jpeg image"},
    {R"({"model": "klingai/v2-master-image-to-video", "image_url": ")" + data_uri("webp", "GIF89a-not-webp") + R"("})", "request.image_url", "not a PNG, JPEG or WebP"},
    {R"({"model": "klingai/v2-master-image-to-video", "image_url": ")" + big + R"("})", "request.image_url", "at most 10485760 bytes"},
    {"{" + i2v + R"(, "tail_image_url": "https://x.test/b.png"})", "request.tail_image_url", "unknown field"},
    {"{" + i2v + R"(, "dynamic_masks": [{},{},{},{},{},{},{}]})", "request.dynamic_masks", "at most 6 items (got 7)"},
    {"{" + i2v + R"(, "dynamic_masks": [{"mask": "https://x.test/m.png", "trajectories": [{"x": 1, "y": 1}, {"x": "a", "y": 1}]}]})",
     "request.dynamic_masks[0].trajectories[1].x", "must be an integer"},
    {"{" + i2v + R"(, "camera_control": {"type": "simple", "config": {"zoom": 20}}})", "request.camera_control.config.zoom", "between -10 and 10"},
    {"{" + i2v + R"(, "camera_control": "down_back"})", "request.camera_control", "must be an object"},
    {"{" + i2v + R"(, "ratio": "1:1"})", "request.ratio", "unknown field"},
    {"{" + multi + R"(, "image_list": [)" + u + "]}", "request.image_list", "must have between 2 and 4 items (got 1)"},
    {"{" + multi + R"(, "image_list": [)" + u + "," + u + "," + u + "," + u + "," + u + "]}", "request.image_list", "(got 5)"},
    {"{" + multi + R"(, "image_list": [)" + u + "," + u + R"(, "http://x.test/c.png"]})", "request.image_list[2]", "http URLs are refused"},
    {"{" + multi + R"(, "image_urls": [)" + u + R"(, "nope"]})", "request.image_urls[1]", "must be an https URL"},
    {"{" + multi + R"(, "image_urls": [)" + u + "," + u + R"(], "image_list": [)" + u + "," + u + "]}", "request.image_urls", "alias of image_list"},
    {"{" + multi + "}", "request.image_list", "required"},
    {"{" + fx + R"(, "image_url": [)" + u + "," + u + R"(], "effect_scene": "squish"})", "request.image_url", "must be a single value when effect_scene is squish"},
    {"{" + fx + R"(, "image_url": )" + u + R"(, "effect_scene": "kiss"})", "request.image_url", "must be an array when effect_scene is kiss"},
    {"{" + fx + R"(, "image_url": [)" + u + "," + u + "," + u + R"(], "effect_scene": "hug"})", "request.image_url", "exactly 2 items (got 3)"},
    {"{" + fx + R"(, "image_url": 5, "effect_scene": "hug"})", "request.image_url", "must be an image (https URL or base64 data URI) or an array of images (got a number)"},
    {"{" + fx + R"(, "image_url": )" + u + "}", "request.effect_scene", "required"},
    {"{" + motion + "}", "request.video_url", "required"},
    {"{" + motion + R"(, "video_url": "http://x.test/v.mp4"})", "request.video_url", "http URLs are refused"},
    {"{" + motion + R"(, "video_url": "data:video/mp4;base64,AAAA"})", "request.video_url", "must be an https URL"},
    {"{" + motion + R"(, "video_url": "https://x.test/v.mp4", "mode": "fast"})", "request.mode", "must be one of std, pro"},
    {"{" + motion + R"(, "video_url": "https://x.test/v.mp4", "character_orientation": "left"})", "request.character_orientation", "must be one of image, video"},
    {R"({"model": "klingai/avatar-standard", "image_url": "https://x.test/a.png"})", "request.audio_url", "required"},
    {R"({"model": "klingai/video-o1-reference-to-video", "prompt": "p", "elements": [{},{},{},{},{}]})", "request.elements", "at most 4 items (got 5)"},
    {R"({"model": "klingai/video-o1-reference-to-video", "prompt": "p", "elements": [{"frontal_image_url": "http://x.test/a.png"}]})",
     "request.elements[0].frontal_image_url", "http URLs are refused"},
    {R"({"model": "klingai/video-o1-reference-to-video", "prompt": "p", "image_list": [)" + u + "," + u + "," + u + "," + u + "," + u + "," + u + "," + u + "," + u + "]}",
     "request.image_list", "between 1 and 7 items (got 8)"},
    {R"({"model": "klingai/video-o1-image-to-video", "prompt": "p", "image_url": "https://x.test/a.png", "duration": 8})", "request.duration", "must be one of 5, 10 (got 8)"},
    {R"({"model": "klingai/video-v3-pro-text-to-video", "prompt": "p", "provider": "replicate"})", "request.provider", "must be one of kling, klingai, fal, auto"},
    {R"({"model": "klingai/video-v3-pro-text-to-video", "prompt": "p", "external_task_id": "t1"})", "request.external_task_id", "unknown field"},
    {R"({"model": "klingai/video-v3-standard-image-to-video", "prompt": "p", "image_url": "https://x.test/a.png", "last_image_url": "https://x.test/b.png", "tail_image_url": "https://x.test/b.png"})",
     "request.last_image_url", "alias of tail_image_url"},
  };
  CHECK(cases.size() >= 30);
  for (const auto& c : cases) {
    CAPTURE(c.body.substr(0, 300));
    const auto errors = reject(json::parse(c.body));
    REQUIRE(!errors.empty());
    bool found = false;
    for (const auto& e : errors) {
      if (e.field == c.field && e.message.find(c.message) != std::string::npos) found = true;
    }
    std::string all;
    for (const auto& e : errors) all += to_string(e) + "\n";
    CHECK_MESSAGE(found, "wanted ", c.field, ": …", c.message, "…\ngot:\n", all);
  }
}

namespace {

struct Row
{
  std::string body;
  std::string field;   // empty: accepted
  std::string message; // a substring of the message
};

void check_rows(const std::vector<Row>& rows)
{
  for (const auto& row : rows) {
    CAPTURE(row.body.substr(0, 300));
    auto r = catalog().validate(json::parse(row.body), false);
    std::string all;
    if (!r.ok()) {
      for (const auto& e : r.error()) all += to_string(e) + "\n";
    }
    if (row.field.empty()) {
      CHECK_MESSAGE(r.ok(), all);
      continue;
    }
    REQUIRE_FALSE(r.ok());
    bool found = false;
    for (const auto& e : r.error()) {
      found = found || (e.field == row.field && e.message.find(row.message) != std::string::npos);
    }
    CHECK_MESSAGE(found, "wanted ", row.field, ": …", row.message, "…\ngot:\n", all);
  }
}

std::string m(std::string_view id, std::string_view rest)
{
  return fmt::format(R"({{"model": "{}", {}}})", id, rest);
}

} // namespace

TEST_CASE("validate: v3 turbo models, one row per documented parameter")
{
  const std::string shots = R"("multi_prompt": [{"prompt": "a fox wakes", "duration": 4}, {"prompt": "it runs", "duration": "3"}, {"prompt": "it sleeps"}])";
  const std::string img = R"("image_url": "https://x.test/a.png")";
  std::vector<Row> rows;
  for (const char* t2v : {"klingai/video-v3-standard-turbo-text-to-video", "klingai/video-v3-turbo-pro-text-to-video"}) {
    rows.push_back({m(t2v, R"("prompt": "p")"), "", ""});
    rows.push_back({m(t2v, R"("prompt": ")" + std::string(3072, 'x') + R"(", "duration": 15, "aspect_ratio": "9:16")"), "", ""});
    rows.push_back({m(t2v, shots + R"(, "duration": "10", "aspect_ratio": "1:1")"), "", ""});
    rows.push_back({m(t2v, R"("prompt": ")" + std::string(3073, 'x') + R"(")"), "request.prompt", "at most 3072 characters (got 3073)"});
    rows.push_back({m(t2v, R"("prompt": "p", )" + shots), "request", "give exactly one of prompt or multi_prompt (got more than one)"});
    rows.push_back({m(t2v, R"("duration": 5)"), "request", "give exactly one of prompt or multi_prompt (got none)"});
    rows.push_back({m(t2v, R"("multi_prompt": ["a", "b"])"), "request.multi_prompt[0]", "must be an object (got a string)"});
    rows.push_back({m(t2v, R"("multi_prompt": [])"), "request.multi_prompt", "between 1 and 6 items (got 0)"});
    rows.push_back({m(t2v, R"("multi_prompt": [{"prompt":"a"},{"prompt":"a"},{"prompt":"a"},{"prompt":"a"},{"prompt":"a"},{"prompt":"a"},{"prompt":"a"}])"),
                    "request.multi_prompt", "between 1 and 6 items (got 7)"});
    rows.push_back({m(t2v, R"("multi_prompt": [{"duration": 3}])"), "request.multi_prompt[0].prompt", "required"});
    rows.push_back({m(t2v, R"("multi_prompt": [{"prompt": "a", "duration": 16}])"), "request.multi_prompt[0].duration", "between 1 and 15 (got 16)"});
    rows.push_back({m(t2v, R"("multi_prompt": [{"prompt": "a", "duration": 0}])"), "request.multi_prompt[0].duration", "between 1 and 15 (got 0)"});
    rows.push_back({m(t2v, R"("multi_prompt": [{"prompt": ")" + std::string(3073, 'y') + R"("}])"), "request.multi_prompt[0].prompt", "at most 3072"});
    rows.push_back({m(t2v, R"("multi_prompt": [{"prompt": "a", "camera": "pan"}])"), "request.multi_prompt[0].camera", "unknown field (allowed: prompt, duration)"});
    rows.push_back({m(t2v, R"("prompt": "p", "duration": 2)"), "request.duration", "between 3 and 15 (got 2)"});
    rows.push_back({m(t2v, R"("prompt": "p", "duration": 16)"), "request.duration", "between 3 and 15 (got 16)"});
    rows.push_back({m(t2v, R"("prompt": "p", "aspect_ratio": "4:3")"), "request.aspect_ratio", "must be one of 16:9, 9:16, 1:1"});
    rows.push_back({m(t2v, R"("prompt": "p", )" + img), "request.image_url", "unknown field"});
    for (const char* absent : {R"("negative_prompt": "n")", R"("cfg_scale": 0.5)", R"("generate_audio": false)",
                               R"("shot_type": "customize")", R"("tail_image_url": "https://x.test/b.png")", R"("provider": "kling")"}) {
      const std::string name = std::string(absent).substr(1, std::string(absent).find('"', 1) - 1);
      rows.push_back({m(t2v, R"("prompt": "p", )" + std::string(absent)), "request." + name, "unknown field for model"});
    }
  }
  for (const char* i2v : {"klingai/video-v3-standard-turbo-image-to-video", "klingai/video-v3-turbo-pro-image-to-video"}) {
    rows.push_back({m(i2v, img + R"(, "prompt": "p", "duration": 3)"), "", ""});
    rows.push_back({m(i2v, img + ", " + shots), "", ""});
    rows.push_back({m(i2v, R"("prompt": "p")"), "request.image_url", "required"});
    rows.push_back({m(i2v, R"("prompt": "p", "image_url": "http://x.test/a.png")"), "request.image_url", "http URLs are refused"});
    rows.push_back({m(i2v, img + R"(, "prompt": "p", "aspect_ratio": "16:9")"), "request.aspect_ratio", "unknown field"});
    rows.push_back({m(i2v, img + R"(, "prompt": "p", "tail_image_url": "https://x.test/b.png")"), "request.tail_image_url", "unknown field"});
    rows.push_back({m(i2v, img + R"(, "prompt": "p", "elements": [])"), "request.elements", "unknown field"});
    rows.push_back({m(i2v, img), "request", "give exactly one of prompt or multi_prompt"});
  }
  check_rows(rows);
  // Sent as given, durations typed as integers.
  CHECK(json::serialize(accept(m("klingai/video-v3-turbo-pro-text-to-video", shots)))
        == R"({"model":"klingai/video-v3-turbo-pro-text-to-video","multi_prompt":[{"prompt":"a fox wakes","duration":4},{"prompt":"it runs","duration":3},{"prompt":"it sleeps"}]})");
}

TEST_CASE("validate: v3 omni models, one row per documented parameter")
{
  const std::string img = R"("image_url": "https://x.test/a.png")";
  std::vector<Row> rows;
  for (const char* id : {"klingai/video-v3-omni-720p-text-to-video", "klingai/video-v3-omni-1080p-text-to-video",
                         "klingai/video-v3-omni-720p-image-to-video", "klingai/video-v3-omni-1080p-image-to-video"}) {
    const bool i2v = std::string_view(id).find("image-to-video") != std::string_view::npos;
    const std::string base = i2v ? img + ", " : std::string();
    rows.push_back({m(id, base + R"("prompt": "p")"), "", ""});
    rows.push_back({m(id, base + R"("multi_prompt": ["a", "b"], "duration": 15, "shot_type": "intelligence", "generate_audio": true,
                      "negative_prompt": "blur", "cfg_scale": 1, "provider": "auto")"), "", ""});
    for (const char* p : {"kling", "klingai", "fal", "auto"}) {
      rows.push_back({m(id, base + R"("prompt": "p", "provider": ")" + std::string(p) + "\""), "", ""});
    }
    for (const char* shot : {"customize", "intelligent", "intelligence"}) {
      rows.push_back({m(id, base + R"("prompt": "p", "shot_type": ")" + std::string(shot) + "\""), "", ""});
    }
    rows.push_back({m(id, base + R"("prompt": "p", "provider": "replicate")"), "request.provider", "must be one of kling, klingai, fal, auto"});
    rows.push_back({m(id, base + R"("prompt": "p", "provider": "KLING")"), "request.provider", "must be one of kling, klingai, fal, auto"});
    rows.push_back({m(id, base + R"("prompt": "p", "shot_type": "auto")"), "request.shot_type", "must be one of customize, intelligent, intelligence"});
    rows.push_back({m(id, base + R"("prompt": "p", "duration": 2)"), "request.duration", "between 3 and 15 (got 2)"});
    rows.push_back({m(id, base + R"("prompt": "p", "cfg_scale": 1.1)"), "request.cfg_scale", "between 0 and 1"});
    rows.push_back({m(id, base + R"("prompt": "p", "generate_audio": 1)"), "request.generate_audio", "must be a boolean"});
    rows.push_back({m(id, base + R"("multi_prompt": [{"prompt": "a"}])"), "request.multi_prompt[0]", "must be a string (got an object)"});
    rows.push_back({m(id, base + R"("prompt": "p", "multi_prompt": ["a"])"), "request", "got more than one"});
    rows.push_back({m(id, base + R"("prompt": "p", "mode": "pro")"), "request.mode", "unknown field"});
    if (i2v) {
      rows.push_back({m(id, img + R"(, "prompt": "p", "generate_audio": false, "tail_image_url": "https://x.test/b.png",
                        "elements": [{"frontal_image_url": "https://x.test/f.png", "reference_image_urls": ["https://x.test/r1.png", "https://x.test/r2.png"]},
                                     {"video_url": "https://x.test/e.mp4"}])"), "", ""});
      rows.push_back({m(id, R"("prompt": "p")"), "request.image_url", "required"});
      rows.push_back({m(id, img + R"(, "prompt": "p", "tail_image_url": "https://x.test/b.png")"), "request.tail_image_url",
                      "is allowed only with generate_audio false (got true, its default)"});
      rows.push_back({m(id, img + R"(, "prompt": "p", "generate_audio": true, "tail_image_url": "https://x.test/b.png")"), "request.tail_image_url",
                      "is allowed only with generate_audio false (got true)"});
      rows.push_back({m(id, img + R"(, "prompt": "p", "elements": [{}, {}, {}, {}, {}])"), "request.elements", "at most 4 items (got 5)"});
      rows.push_back({m(id, img + R"(, "prompt": "p", "elements": [{"reference_image_urls": []}])"), "request.elements[0].reference_image_urls",
                      "between 1 and 4 items (got 0)"});
      rows.push_back({m(id, img + R"(, "prompt": "p", "elements": [{"reference_image_urls": ["https://x.test/1.png", "https://x.test/2.png", "https://x.test/3.png", "https://x.test/4.png", "https://x.test/5.png"]}])"),
                      "request.elements[0].reference_image_urls", "between 1 and 4 items (got 5)"});
      rows.push_back({m(id, img + R"(, "prompt": "p", "elements": [{"video_url": "http://x.test/e.mp4"}])"), "request.elements[0].video_url", "http URLs are refused"});
      rows.push_back({m(id, img + R"(, "prompt": "p", "elements": [{"colour": "red"}])"), "request.elements[0].colour",
                      "unknown field (allowed: reference_image_urls, frontal_image_url, video_url)"});
      rows.push_back({m(id, img + R"(, "prompt": "p", "aspect_ratio": "16:9")"), "request.aspect_ratio", "unknown field"});
    } else {
      rows.push_back({m(id, R"("prompt": "p", "aspect_ratio": "9:16")"), "", ""});
      rows.push_back({m(id, R"("prompt": "p", "aspect_ratio": "4:3")"), "request.aspect_ratio", "must be one of 16:9, 9:16, 1:1"});
      rows.push_back({m(id, R"("prompt": "p", )" + img), "request.image_url", "unknown field"});
      rows.push_back({m(id, R"("prompt": "p", "tail_image_url": "https://x.test/b.png")"), "request.tail_image_url", "unknown field"});
      rows.push_back({m(id, R"("prompt": "p", "elements": [])"), "request.elements", "unknown field"});
    }
  }
  check_rows(rows);
}

TEST_CASE("validate: motion control under both ids, mode and orientation")
{
  const std::string base = R"("image_url": "https://x.test/a.png", "video_url": "https://x.test/v.mp4")";
  std::vector<Row> rows;
  for (const char* id : {"klingai/video-v2-6-motion-control", "klingai/video-v2-6-pro-motion-control", "klingai/video-v3-motion-control"}) {
    rows.push_back({m(id, base), "", ""});
    rows.push_back({m(id, base + R"(, "prompt": "a stage", "character_orientation": "image", "keep_audio": false, "mode": "std")"), "", ""});
    rows.push_back({m(id, base + R"(, "character_orientation": "video", "mode": "pro")"), "", ""});
    rows.push_back({m(id, base + R"(, "mode": "fast")"), "request.mode", "must be one of std, pro"});
    rows.push_back({m(id, base + R"(, "character_orientation": "left")"), "request.character_orientation", "must be one of image, video"});
    rows.push_back({m(id, base + R"(, "keep_audio": "yes")"), "request.keep_audio", "must be a boolean"});
    rows.push_back({m(id, base + R"(, "duration": 5)"), "request.duration", "unknown field"});
    rows.push_back({m(id, base + R"(, "provider": "fal")"), "request.provider", "unknown field"});
    rows.push_back({m(id, R"("image_url": "https://x.test/a.png")"), "request.video_url", "required"});
    rows.push_back({m(id, R"("video_url": "https://x.test/v.mp4")"), "request.image_url", "required"});
  }
  check_rows(rows);
  // The id the user sent is the id that is sent.
  for (const char* id : {"klingai/video-v2-6-motion-control", "klingai/video-v2-6-pro-motion-control"}) {
    CHECK(accept(m(id, base)).at("model") == id);
  }
}

TEST_CASE("validate: every problem is reported at once")
{
  const auto errors = reject(json::parse(
    R"({"model": "kling-video/v1/pro/text-to-video", "duration": 7, "cfg_scale": 3, "foo": 1, "aspect_ratio": "2:1"})"));
  std::vector<std::string> fields;
  for (const auto& e : errors) fields.push_back(e.field);
  CHECK(fields == std::vector<std::string>{"request.duration", "request.cfg_scale", "request.foo", "request.aspect_ratio", "request.prompt"});
  CHECK(to_string(errors[0]) == "request.duration: must be one of 5, 10 (got 7)");
}

TEST_CASE("validate: unknown models follow allow_unknown_models, with basic checks")
{
  CHECK(reject(json::parse(R"({"model": "x/y"})"))[0].field == "request.model");
  accept(R"({"model": "x/y"})", true);
  CHECK(reject(json::parse(R"({"model": 1})"), true)[0].field == "request.model");
  CHECK(reject(json::parse(R"({"prompt": "p"})"), true)[0].field == "request.model");
  CHECK(reject(json::parse(R"("x/y")"), true)[0].field == "request");
  CHECK(reject(json::parse(R"({"model": "x\ny"})"), true)[0].field == "request.model");
  CHECK(reject(json::parse(R"({"model": ")" + std::string(201, 'm') + R"("})"), true)[0].field == "request.model");
  json::object huge{{"model", "x/y"}, {"blob", std::string(k_max_request_bytes, 'a')}};
  const auto errors = reject(huge, true);
  CHECK(errors[0].field == "request");
  CHECK(errors[0].message.find("bytes") != std::string::npos);
}

TEST_CASE("validate: data URIs of each image format")
{
  CHECK_FALSE(check_image_input(data_uri("png", k_png), k_max_image_bytes));
  CHECK_FALSE(check_image_input(data_uri("jpeg", k_jpeg), k_max_image_bytes));
  CHECK_FALSE(check_image_input(data_uri("jpg", k_jpeg), k_max_image_bytes));
  CHECK_FALSE(check_image_input(data_uri("webp", k_webp), k_max_image_bytes));
  CHECK_FALSE(check_image_input("DATA:IMAGE/PNG;BASE64," + base64(k_png), k_max_image_bytes));
  CHECK(check_image_input(data_uri("webp", k_png), k_max_image_bytes));
  CHECK(check_image_input("data:image/png," + base64(k_png), k_max_image_bytes));
  CHECK(check_image_input("data:image/png;base64" + base64(k_png), k_max_image_bytes));
  CHECK(check_image_input(data_uri("png", k_png), 10)); // over a small limit
  CHECK_FALSE(check_image_input("https://cdn.example.com/a.png?sig=1", k_max_image_bytes));
  CHECK(check_image_input("https://", k_max_image_bytes));
  CHECK(check_image_input("HTTP://x.test/a.png", k_max_image_bytes)->find("http URLs are refused") == 0);
}

TEST_CASE("validate: base64 decoding")
{
  for (const std::string s : {"", "a", "ab", "abc", "abcd", "\xff\x00\x10"}) {
    auto d = decode_base64(base64(s));
    REQUIRE(d);
    CHECK(std::string(d->begin(), d->end()) == s);
  }
  CHECK(decode_base64("YWJj")); // unpadded is fine
  CHECK(decode_base64("YWI"));
  CHECK_FALSE(decode_base64("Y"));
  CHECK_FALSE(decode_base64("YW J j"));
  CHECK_FALSE(decode_base64("YW-j"));
  CHECK(sniff_image_format(std::vector<unsigned char>(k_png.begin(), k_png.end())) == "png");
  CHECK(sniff_image_format(std::vector<unsigned char>(k_jpeg.begin(), k_jpeg.end())) == "jpeg");
  CHECK(sniff_image_format(std::vector<unsigned char>(k_webp.begin(), k_webp.end())) == "webp");
  CHECK(sniff_image_format({'G', 'I', 'F'}) == "");
}
