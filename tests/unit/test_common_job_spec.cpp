// Job specs and submit bodies: every field's rules, per-index errors, NDJSON, JSON limits.
#include "common/catalog.hpp"
#include "common/job_spec.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

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

const std::string k_request = R"({"model":"klingai/video-v3-pro-text-to-video","prompt":"a cat","duration":5})";

Result<JobSpec, std::vector<SpecError>> parse(const std::string& text)
{
  return parse_job_spec(json::parse(text), catalog(), false);
}

std::vector<SpecError> errors_of(const std::string& text)
{
  auto r = parse(text);
  REQUIRE_FALSE(r.ok());
  return r.error();
}

bool has_field(const std::vector<SpecError>& errors, const std::string& field)
{
  for (const auto& e : errors) {
    if (e.field == field) {
      return true;
    }
  }
  return false;
}

std::string spec_with(const std::string& fields)
{
  return R"({"request":)" + k_request + (fields.empty() ? "" : "," + fields) + "}";
}

} // namespace

TEST_CASE("job_spec: a minimal spec gets the defaults")
{
  auto r = parse(spec_with(""));
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : to_string(r.error().front())));
  CHECK(r->model == "klingai/video-v3-pro-text-to-video");
  CHECK_FALSE(r->key);
  CHECK_FALSE(r->output);
  CHECK(r->priority == 0);
  CHECK(r->timeout_s == 86400);
  CHECK(r->labels.empty());
  CHECK(r->request.at("prompt").as_string() == "a cat");
}

TEST_CASE("job_spec: every field given")
{
  auto r = parse(spec_with(R"("key":"k-1","output":"a/b.mp4","priority":-5,"timeout_s":60.5,)"
                           R"("labels":{"team":"x","run":"7"})"));
  REQUIRE(r.ok());
  CHECK(*r->key == "k-1");
  CHECK(*r->output == "a/b.mp4");
  CHECK(r->priority == -5);
  CHECK(r->timeout_s == 60.5);
  REQUIRE(r->labels.size() == 2);
  CHECK(r->labels[0] == std::make_pair(std::string("team"), std::string("x")));
}

TEST_CASE("job_spec: null optional fields mean not given")
{
  auto r = parse(spec_with(R"("key":null,"output":null,"priority":null,"timeout_s":null,"labels":null)"));
  REQUIRE(r.ok());
  CHECK_FALSE(r->key);
}

TEST_CASE("job_spec: each bad field is named")
{
  CHECK(has_field(errors_of(spec_with(R"("colour":"red")")), "colour"));
  CHECK(has_field(errors_of(spec_with(R"("key":"")")), "key"));
  CHECK(has_field(errors_of(spec_with(R"("key":7)")), "key"));
  CHECK(has_field(errors_of(spec_with(R"("key":"a\nb")")), "key"));
  CHECK(has_field(errors_of(spec_with(R"("key":")" + std::string(257, 'k') + "\"")), "key"));
  CHECK(parse(spec_with(R"("key":")" + std::string(256, 'k') + "\"")).ok());
  CHECK(has_field(errors_of(spec_with(R"("output":"../x.mp4")")), "output"));
  CHECK(has_field(errors_of(spec_with(R"("output":"/abs.mp4")")), "output"));
  CHECK(has_field(errors_of(spec_with(R"("output":"a\u0000b.mp4")")), "output"));
  CHECK(has_field(errors_of(spec_with(R"("priority":1.5)")), "priority"));
  CHECK(has_field(errors_of(spec_with(R"("priority":"1")")), "priority"));
  CHECK(has_field(errors_of(spec_with(R"("priority":1001)")), "priority"));
  CHECK(has_field(errors_of(spec_with(R"("priority":18446744073709551615)")), "priority"));
  CHECK(parse(spec_with(R"("priority":1000)")).ok());
  CHECK(has_field(errors_of(spec_with(R"("timeout_s":0)")), "timeout_s"));
  CHECK(has_field(errors_of(spec_with(R"("timeout_s":-1)")), "timeout_s"));
  CHECK(has_field(errors_of(spec_with(R"("timeout_s":2592001)")), "timeout_s"));
  CHECK(parse(spec_with(R"("timeout_s":2592000)")).ok());
  CHECK(has_field(errors_of(spec_with(R"("labels":[])")), "labels"));
  CHECK(has_field(errors_of(spec_with(R"("labels":{"a":1})")), "labels.a"));
  CHECK(has_field(errors_of(spec_with(R"("labels":{"a=b":"c"})")), "labels"));
  std::string many = R"("labels":{)";
  for (int i = 0; i < 33; ++i) {
    many += (i ? "," : "") + ("\"l" + std::to_string(i) + "\":\"v\"");
  }
  CHECK(has_field(errors_of(spec_with(many + "}")), "labels"));
}

TEST_CASE("job_spec: request problems come from the catalog, rooted at request")
{
  CHECK(has_field(errors_of(R"({"key":"x"})"), "request"));
  auto errors = errors_of(R"({"request":{"model":"klingai/video-v3-pro-text-to-video","prompt":"a","duration":99}})");
  CHECK(has_field(errors, "request.duration"));
  auto unknown = errors_of(R"({"request":{"model":"no-such-model","prompt":"a"}})");
  REQUIRE_FALSE(unknown.empty());
  CHECK(unknown[0].field.rfind("request", 0) == 0);
  CHECK(parse_job_spec(json::parse(R"({"request":{"model":"no-such-model","prompt":"a"}})"), catalog(), true).ok());
}

TEST_CASE("job_spec: all problems of a spec are reported, not only the first")
{
  auto errors = errors_of(spec_with(R"("key":"","priority":"x","extra":1)"));
  CHECK(errors.size() == 3);
}

TEST_CASE("submit body: one spec, a batch, and NDJSON")
{
  auto one = parse_submit_body(spec_with(""), false, catalog(), false);
  REQUIRE(one.ok());
  CHECK(one->jobs.size() == 1);
  CHECK_FALSE(one->max_usd);

  auto batch = parse_submit_body(R"({"jobs":[)" + spec_with("") + "," + spec_with(R"("key":"b")") +
                                   R"(],"max_usd":2.5})",
                                 false, catalog(), false);
  REQUIRE(batch.ok());
  CHECK(batch->jobs.size() == 2);
  CHECK(*batch->max_usd == 2.5);

  auto nd = parse_submit_body(spec_with("") + "\n\n  \r\n" + spec_with(R"("key":"c")") + "\n", true, catalog(), false);
  REQUIRE(nd.ok());
  CHECK(nd->jobs.size() == 2);
  CHECK(*nd->jobs[1].key == "c");
}

TEST_CASE("submit body: every bad index is listed and nothing is returned")
{
  auto r = parse_submit_body(R"({"jobs":[)" + spec_with("") + "," + spec_with(R"("key":"")") + "," + spec_with("") +
                               "," + spec_with(R"("priority":9999)") + "]}",
                             false, catalog(), false);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.error().size() == 2);
  CHECK(*r.error()[0].index == 1);
  CHECK(r.error()[0].field == "key");
  CHECK(*r.error()[1].index == 3);
  CHECK(to_string(r.error()[1]).rfind("jobs[3].priority: ", 0) == 0);
}

TEST_CASE("submit body: NDJSON errors carry the spec index and the body's line")
{
  auto r = parse_submit_body(spec_with("") + "\n\n{\"request\": oops}\n" + spec_with(R"("key":"")"), true, catalog(),
                             false);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.error().size() == 2);
  CHECK(*r.error()[0].index == 1);
  CHECK(r.error()[0].message.find("line 3, column 13") != std::string::npos);
  CHECK(*r.error()[1].index == 2);
  CHECK(r.error()[1].field == "key");
}

TEST_CASE("submit body: shapes that are wrong as a whole")
{
  auto check_whole = [](const std::string& body, bool ndjson, const std::string& needle) {
    auto r = parse_submit_body(body, ndjson, catalog(), false);
    REQUIRE_FALSE(r.ok());
    CHECK_FALSE(r.error()[0].index);
    CHECK_MESSAGE(to_string(r.error()[0]).find(needle) != std::string::npos, to_string(r.error()[0]));
  };
  check_whole(R"({"jobs":[]})", false, "must not be empty");
  check_whole(R"({"jobs":{}})", false, "must be an array");
  check_whole(R"({"jobs":[1],"extra":true})", false, "extra");
  check_whole(R"({"jobs":[1],"max_usd":-1})", false, "max_usd");
  check_whole("\n \n", true, "no job specs");
  check_whole("{\"jobs\":\n [1,,2]}", false, "line 2, column 5");
  check_whole(R"({"a":1} x)", false, "after the JSON value");
  check_whole(R"({"a":)", false, "unexpected end");
  check_whole(std::string(100, '[') + std::string(100, ']'), false, "nested deeper");
  check_whole("{\"request\":\"\xff\"}", false, "invalid UTF-8");
}

TEST_CASE("parse_json_text: comments are not JSON here")
{
  CHECK_FALSE(parse_json_text("{} // no").ok());
  CHECK(parse_json_text(" {\"a\": [1, 2.5, null]} ").ok());
}

namespace {

// What a reader makes of `body` fed in pieces of `piece` bytes: the keys of the specs it
// passed on (with their indexes), or its errors as text.
std::string read_in_pieces(const std::string& body, std::size_t piece)
{
  std::string seen;
  NdjsonSpecReader reader(catalog(), false, [&](JobSpec&& spec, std::size_t index) {
    seen += std::to_string(index) + ":" + spec.key.value_or("-") + ":" + spec.request.at("prompt").as_string().c_str() + " ";
  });
  for (std::size_t i = 0; i < body.size(); i += piece) {
    reader.feed(std::string_view(body).substr(i, piece));
  }
  auto done = reader.finish();
  if (!done) {
    std::string out = "errors:";
    for (const auto& e : done.error()) {
      out += " " + to_string(e);
    }
    return out;
  }
  return seen + "count=" + std::to_string(*done);
}

std::string nd_spec(const std::string& key, const std::string& prompt)
{
  return R"({"key":")" + key + R"(","request":{"model":"klingai/video-v3-pro-text-to-video","prompt":")" + prompt +
         R"(","duration":5}})";
}

} // namespace

TEST_CASE("NDJSON reader: any split of the body into pieces gives the same specs")
{
  // CRLF, a blank line, multi-byte UTF-8 across piece boundaries, no newline at the end.
  const std::string body = nd_spec("a", "première") + "\r\n\r\n" + nd_spec("b", "日本の猫") + "\n   \n" +
                           nd_spec("c", "x") + "\n" + nd_spec("d", "last line, no newline");
  const std::string whole = read_in_pieces(body, body.size());
  CHECK(whole == "0:a:première 1:b:日本の猫 2:c:x 3:d:last line, no newline count=4");
  for (std::size_t piece = 1; piece <= 64; ++piece) {
    CAPTURE(piece);
    CHECK(read_in_pieces(body, piece) == whole);
  }
}

TEST_CASE("NDJSON reader: errors name index and body line whatever the pieces; nothing is passed on after one")
{
  const std::string body = nd_spec("a", "ok") + "\n\n{\"request\": oops}\n" + nd_spec("", "empty key") + "\n" +
                           nd_spec("e", "fine but after errors") + "\n";
  const std::string whole = read_in_pieces(body, body.size());
  CHECK(whole.rfind("errors: jobs[1]: invalid JSON at line 3, column 13", 0) == 0);
  CHECK(whole.find("jobs[2].key: ") != std::string::npos);
  for (std::size_t piece : {1, 2, 3, 7, 13, 100}) {
    CAPTURE(piece);
    CHECK(read_in_pieces(body, piece) == whole);
  }
  // The sink saw the first spec only (before the bad line), never the last one.
  std::size_t passed = 0;
  NdjsonSpecReader reader(catalog(), false, [&](JobSpec&&, std::size_t) { ++passed; });
  reader.feed(body);
  CHECK(reader.failed());
  CHECK_FALSE(reader.finish().ok());
  CHECK(passed == 1);
}

TEST_CASE("NDJSON reader: more than the batch limit is refused as a whole")
{
  NdjsonSpecReader reader(catalog(), false, [](JobSpec&&, std::size_t) {});
  // Blank lines do not count; the limit is on specs. A cheap line that fails validation
  // still counts as a spec line.
  for (std::size_t i = 0; i <= k_max_batch_jobs; ++i) {
    reader.feed("{}\n");
  }
  auto done = reader.finish();
  REQUIRE_FALSE(done.ok());
  REQUIRE(done.error().size() == 1);
  CHECK(to_string(done.error()[0]).find("at most 100000 jobs") != std::string::npos);
}

TEST_CASE("parse_json_text: a member given twice in one object is refused, naming it and where")
{
  auto r = parse_json_text(R"({"request": {"model": "m", "prompt": "a cat",
  "prompt": "a dog"}})");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("member \"prompt\" is given twice") != std::string::npos);
  CHECK(r.error().message.find("line 2") != std::string::npos);
  // An escaped spelling is the same name.
  CHECK_FALSE(parse_json_text(R"({"key": "a", "k\u0065y": "b"})").ok());
  // The same name in different objects, or twice in an array of objects, is fine.
  CHECK(parse_json_text(R"({"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 1}, {"x": 2}]})").ok());
  // Through a submit body: the whole body is refused as invalid JSON, for NDJSON with the line.
  auto nd = parse_submit_body(spec_with("") + "\n" + R"({"key": "a", "key": "b", "request": {}})" + "\n", true,
                              catalog(), false);
  REQUIRE_FALSE(nd.ok());
  CHECK(*nd.error()[0].index == 1);
  CHECK(nd.error()[0].message.find("line 2") != std::string::npos);
  CHECK(nd.error()[0].message.find("\"key\" is given twice") != std::string::npos);
}
