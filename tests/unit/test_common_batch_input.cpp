// CSV reading (RFC 4180, BOM, CRLF, errors naming the line) and the two ways rows become specs:
// --csv columns and --template placeholders (docs/contract.md §4.2).
#include "common/batch_input.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <string>

using namespace klingd;
using namespace klingd::common;
namespace json = boost::json;

namespace {

CsvTable table(std::string_view text)
{
  auto t = parse_csv(text);
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.error().message));
  return std::move(t).value();
}

std::string csv_error(std::string_view text)
{
  auto t = parse_csv(text);
  REQUIRE_FALSE(t.ok());
  return t.error().message;
}

// What the catalog says for the test's model: duration is a duration, cfg_scale a number,
// generate_audio a boolean, image_list an array.
std::string types(const std::string& model, const std::string& field)
{
  if (model != "klingai/video-v3-pro-text-to-video") {
    return "";
  }
  if (field == "duration") return "duration";
  if (field == "cfg_scale") return "number";
  if (field == "seed") return "integer";
  if (field == "generate_audio") return "boolean";
  if (field == "image_list") return "array";
  return "string";
}

json::object expand(const std::string& tmpl, const CsvTable& t, std::size_t row = 0)
{
  auto r = expand_template(json::parse(tmpl).as_object(), t, t.rows.at(row), types);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  return std::move(r).value();
}

std::string expand_error(const std::string& tmpl, const CsvTable& t, std::size_t row = 0)
{
  auto r = expand_template(json::parse(tmpl).as_object(), t, t.rows.at(row), types);
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

} // namespace

TEST_CASE("csv: quotes, embedded commas and newlines, doubled quotes, BOM, CRLF")
{
  auto t = table("\xEF\xBB\xBFname,prompt\r\na,\"x, y\"\r\nb,\"two\nlines\"\r\n\"c\",\"say \"\"hi\"\"\"\r\n");
  REQUIRE(t.header == std::vector<std::string>{"name", "prompt"});
  REQUIRE(t.rows.size() == 3);
  CHECK(t.rows[0].cells == std::vector<std::string>{"a", "x, y"});
  CHECK(t.rows[1].cells == std::vector<std::string>{"b", "two\nlines"});
  CHECK(t.rows[2].cells == std::vector<std::string>{"c", "say \"hi\""});
  // Each row knows the line it starts on (the embedded newline moves the next one down).
  CHECK(t.rows[0].line == 2);
  CHECK(t.rows[1].line == 3);
  CHECK(t.rows[2].line == 5);
}

TEST_CASE("csv: empty fields, blank lines, no final newline, a quoted empty field")
{
  auto t = table("a,b,c\n1,,3\n\n,\"\",\n4,5,6");
  REQUIRE(t.rows.size() == 3);
  CHECK(t.rows[0].cells == std::vector<std::string>{"1", "", "3"});
  CHECK(t.rows[1].cells == std::vector<std::string>{"", "", ""});
  CHECK(t.rows[1].line == 4);
  CHECK(t.rows[2].cells == std::vector<std::string>{"4", "5", "6"});
  auto one = table("prompt\n\"\"\nx\n");
  REQUIRE(one.rows.size() == 2); // a quoted empty field is a row, a blank line is not
  CHECK(one.rows[0].cells == std::vector<std::string>{""});
}

TEST_CASE("csv: errors name the line")
{
  CHECK(csv_error("a,b\n1,2\n3\n") == "line 3: 1 field(s), the header has 2");
  CHECK(csv_error("a,b\n1,2,3\n") == "line 2: 3 field(s), the header has 2");
  CHECK(csv_error("a,b\n1,\"open\nstill open\n").find("line 2: the quoted field of column 2 is never closed") == 0);
  CHECK(csv_error("a,b\n1,\"x\"y\n").find("line 2: text after the closing quote of column 2") == 0);
  CHECK(csv_error("a,b\n1,x\"y\n").find("line 2: a quote inside the unquoted field of column 2") == 0);
  CHECK(csv_error("a,a\n1,2\n") == "line 1: the header names column \"a\" twice");
  CHECK(csv_error("a,,c\n") == "line 1: column 2 of the header has no name");
  CHECK(csv_error("").find("empty") != std::string::npos);
  CHECK(csv_error("\n\n").find("empty") != std::string::npos);
}

TEST_CASE("csv: cells typed by what the field needs")
{
  CHECK(typed_cell("5", "duration")->as_int64() == 5);
  CHECK(typed_cell("5s", "duration")->as_string() == "5s"); // the daemon's check names it
  CHECK(typed_cell("0.5", "number")->as_double() == 0.5);
  CHECK(typed_cell("-3", "integer")->as_int64() == -3);
  CHECK(typed_cell("true", "boolean")->as_bool());
  CHECK(typed_cell("[\"a\",\"b\"]", "array")->as_array().size() == 2);
  CHECK(typed_cell("42", "string")->as_string() == "42");
  CHECK(typed_cell("42", "")->as_string() == "42");
  CHECK(typed_cell("x", "number").error().message == "\"x\" is not a number (a number expected)");
  CHECK_FALSE(typed_cell("nan", "number").ok());
  CHECK_FALSE(typed_cell("", "integer").ok());
  CHECK(typed_cell("yes", "boolean").error().message == "\"yes\" is not true or false");
}

TEST_CASE("csv: --csv columns map onto spec fields")
{
  auto t = table("model,prompt,duration,key,output,priority,labels.team,request.cfg_scale,generate_audio\n"
                 "klingai/video-v3-pro-text-to-video,a cat,10,k1,{key}.mp4,5,blue,0.5,false\n"
                 "klingai/video-v3-pro-text-to-video,a dog,,,,,,,\n");
  auto spec = spec_from_csv_row(t, t.rows[0], types);
  REQUIRE(spec.ok());
  CHECK(json::serialize(*spec) ==
        R"({"key":"k1","output":"{key}.mp4","priority":5,"request":{"model":"klingai/video-v3-pro-text-to-video","prompt":"a cat","duration":10,"cfg_scale":5E-1,"generate_audio":false},"labels":{"team":"blue"}})");
  auto sparse = spec_from_csv_row(t, t.rows[1], types);
  REQUIRE(sparse.ok());
  CHECK(json::serialize(*sparse) == R"({"request":{"model":"klingai/video-v3-pro-text-to-video","prompt":"a dog"}})");
  auto bad = table("model,priority\nm,high\n");
  CHECK(spec_from_csv_row(bad, bad.rows[0], types).error().message ==
        "line 2: column \"priority\": \"high\" is not a number (an integer expected)");
}

TEST_CASE("template: placeholders in nested strings, escapes, typed whole values")
{
  auto t = table("subject,secs,cfg,shot,team\nfox,10,0.7,b.png,red\n");
  auto spec = expand(R"({"request": {"model": "klingai/video-v3-pro-text-to-video", "prompt": "a {subject} {{literally}}",
                         "duration": "{secs}", "cfg_scale": "{cfg}", "image_list": ["https://x/{shot}"]},
                         "key": "{subject}-{secs}", "priority": "{secs}", "labels": {"team": "{team}"}})",
                     t);
  const auto& r = spec.at("request").as_object();
  CHECK(r.at("prompt").as_string() == "a fox {literally}");
  CHECK(r.at("duration").as_int64() == 10);
  CHECK(r.at("cfg_scale").as_double() == 0.7);
  CHECK(r.at("image_list").as_array()[0].as_string() == "https://x/b.png");
  CHECK(spec.at("key").as_string() == "fox-10");
  CHECK(spec.at("priority").as_int64() == 10);
  CHECK(spec.at("labels").as_object().at("team").as_string() == "red");
  // A value with more than the placeholder stays a string; so does a string field.
  auto s = expand(R"({"model": "klingai/video-v3-pro-text-to-video", "prompt": "{secs}", "duration": "{secs} "})", t);
  CHECK(s.at("request").as_object().at("prompt").as_string() == "10");
  CHECK(s.at("request").as_object().at("duration").as_string() == "10 ");
  // The model itself may come from a column, and types the rest.
  auto m = table("model,secs\nklingai/video-v3-pro-text-to-video,5\n");
  CHECK(expand(R"({"model": "{model}", "duration": "{secs}"})", m).at("request").as_object().at("duration").as_int64() == 5);
}

TEST_CASE("template: the output keeps the daemon's placeholders and escapes cells")
{
  auto t = table("subject,key\nf{o}x,k7\n");
  auto spec = expand(R"({"request": {"model": "m", "prompt": "p"},
                         "output": "{batch}/{model}/{subject}-{key}-{index}-{label.team}-{{x}}.mp4"})",
                     t);
  // {key} is a column here, so the column wins; the braces of the cell are escaped for the daemon.
  CHECK(spec.at("output").as_string() == "{batch}/{model}/f{{o}}x-k7-{index}-{label.team}-{{x}}.mp4");
}

TEST_CASE("template: unknown placeholders and bad braces name the line, field and columns")
{
  auto t = table("subject,secs\nfox,5\ncat,x\n");
  CHECK(expand_error(R"({"model": "m", "prompt": "a {colour} {subject}"})", t) ==
        "line 2: request.prompt: {colour}: no such column (columns: subject, secs)");
  CHECK(expand_error(R"({"request": {"model": "m"}, "output": "{colour}.mp4"})", t) ==
        "line 2: output: {colour}: no such column (columns: subject, secs)");
  CHECK(expand_error(R"({"request": {"model": "m"}, "labels": {"a": "x}"}})", t).find("line 2: labels.a: a '}' at position 2 closes nothing") == 0);
  CHECK(expand_error(R"({"request": {"model": "m", "prompt": ["ok", "{subject"]}})", t).find("line 2: request.prompt[1]: the '{' at position 1 is never closed") == 0);
  CHECK(expand_error(R"({"model": "klingai/video-v3-pro-text-to-video", "cfg_scale": "{secs}"})", t, 1) ==
        "line 3: request.cfg_scale: column \"secs\": \"x\" is not a number (a number expected)");
}
