#include "daemon/provider/provider_client.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

using namespace klingd;
using namespace klingd::provider;

namespace {
Result<HttpResponse, TransportError> resp(int status, std::string body,
                                          std::vector<std::pair<std::string, std::string>> headers = {})
{
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}
Result<HttpResponse, TransportError> fail(TransportFailure kind)
{
  return TransportError{kind, "boom"};
}
} // namespace

TEST_CASE("provider: create outcomes are classified as docs/contract.md §3.2 requires")
{
  CHECK(classify_create(resp(200, R"({"id":"abc:kling-video/v1/pro","status":"queued"})")).outcome.cls == CallClass::ok);
  CHECK(classify_create(resp(201, R"({"id":"abc","status":"queued"})")).outcome.cls == CallClass::ok);
  // Nothing reached the provider, or it provably did not accept: safe to re-send.
  CHECK(classify_create(fail(TransportFailure::not_sent)).outcome.cls == CallClass::safe_retry);
  CHECK(classify_create(resp(429, "{}")).outcome.cls == CallClass::safe_retry);
  CHECK(classify_create(resp(502, "{}")).outcome.cls == CallClass::safe_retry);
  CHECK(classify_create(resp(503, "{}")).outcome.cls == CallClass::safe_retry);
  // Sent without a usable answer: may have been billed.
  CHECK(classify_create(fail(TransportFailure::sent_no_answer)).outcome.cls == CallClass::ambiguous);
  CHECK(classify_create(fail(TransportFailure::bad_response)).outcome.cls == CallClass::ambiguous);
  CHECK(classify_create(fail(TransportFailure::body_too_large)).outcome.cls == CallClass::ambiguous);
  CHECK(classify_create(resp(500, "{}")).outcome.cls == CallClass::ambiguous);
  CHECK(classify_create(resp(504, "{}")).outcome.cls == CallClass::ambiguous);
  CHECK(classify_create(resp(200, "not json")).outcome.cls == CallClass::ambiguous);
  CHECK(classify_create(resp(200, R"({"status":"queued"})")).outcome.cls == CallClass::ambiguous);
  // ...unless the tracing header names the generation.
  auto via_header = classify_create(resp(200, "garbage", {{"x-inference-id", "gen-1"}}));
  CHECK(via_header.outcome.cls == CallClass::ok);
  CHECK(via_header.generation_id == "gen-1");
  // The request or the account.
  CHECK(classify_create(resp(400, R"({"message":"Invalid enum value"})")).outcome.cls == CallClass::job_error);
  CHECK(classify_create(resp(404, "{}")).outcome.cls == CallClass::job_error);
  CHECK(classify_create(resp(422, "{}")).outcome.cls == CallClass::job_error);
  CHECK(classify_create(resp(401, "{}")).outcome.cls == CallClass::account);
  CHECK(classify_create(resp(402, "{}")).outcome.cls == CallClass::account);
  CHECK(classify_create(resp(403, "{}")).outcome.cls == CallClass::account);
}

TEST_CASE("provider: create success reads id (string or number), status and cost headers")
{
  auto r = classify_create(resp(200, R"({"id":123456789012345,"status":"waiting"})",
                                {{"X-Aimlapi-Credits-Used", "2100"}, {"x-aimlapi-usd-spent", "0.28"}, {"x-inference-id", "123456789012345"}}));
  REQUIRE(r.outcome.cls == CallClass::ok);
  CHECK(r.generation_id == "123456789012345");
  CHECK(r.provider_status == "waiting");
  CHECK(r.credits == 2100);
  CHECK(r.usd == doctest::Approx(0.28));
  CHECK(r.inference_id == "123456789012345");
}

TEST_CASE("provider: error messages come from every documented shape")
{
  CHECK(error_text(400, R"({"message":"Invalid enum value. Expected 5 | 10, received 7","path":"/v2/video/generations","statusCode":400})")
        == "Invalid enum value. Expected 5 | 10, received 7");
  CHECK(error_text(400, R"({"detail":[{"loc":["body","image_url"],"msg":"field required","type":"value_error.missing"}]})")
        == "image_url: field required");
  CHECK(error_text(400, R"({"error":{"name":"BadRequest","message":"nope"}})") == "nope");
  CHECK(error_text(502, "<html>bad gateway</html>") == "HTTP 502");
  CHECK(error_text(400, std::string(5000, 'x')).size() < 20);
  auto long_msg = error_text(400, "{\"message\":\"" + std::string(5000, 'y') + "\"}");
  CHECK(long_msg.size() < 600);
  // Shapes that say nothing fall back to the status, never to an empty message (found by
  // fuzz_provider_response: a job failed with message "").
  CHECK(error_text(422, R"({"detail":[{"lmc":["body","duration"]}]})") == "HTTP 422");
  CHECK(error_text(422, R"({"detail":[{"loc":["body"]},{"msg":"bad"}]})") == "bad");
  CHECK(error_text(500, R"({"error":{"message":""}})") == "HTTP 500");
  CHECK(error_text(500, R"({"error":"","detail":""})") == "HTTP 500");
}

TEST_CASE("provider: status objects in every documented and seen shape")
{
  auto working = parse_status(R"({"id":"x","status":"generating","video":null,"error":null})");
  REQUIRE(working.ok());
  CHECK(working->kind == GenerationStatus::Kind::working);
  CHECK(working->known_status);
  for (const char* s : {"queued", "waiting", "active", "processing"}) {
    auto st = parse_status(fmt::format(R"({{"status":"{}"}})", s));
    REQUIRE(st.ok());
    CHECK(st->kind == GenerationStatus::Kind::working);
    CHECK(st->known_status);
  }
  auto odd = parse_status(R"({"status":"dreaming"})");
  REQUIRE(odd.ok());
  CHECK(odd->kind == GenerationStatus::Kind::working);
  CHECK_FALSE(odd->known_status);

  auto done = parse_status(R"({"id":"x","status":"completed","video":{"url":"https://cdn.example/v.mp4?ksTime=1","content_type":"video/mp4","file_size":11664920}})");
  REQUIRE(done.ok());
  CHECK(done->kind == GenerationStatus::Kind::completed);
  CHECK(done->video_url == "https://cdn.example/v.mp4?ksTime=1");
  CHECK(done->file_size == 11664920);
  auto done_no_url = parse_status(R"({"status":"completed","video":null})");
  REQUIRE(done_no_url.ok());
  CHECK(done_no_url->kind == GenerationStatus::Kind::completed);
  CHECK_FALSE(done_no_url->video_url);

  auto err1 = parse_status(R"({"status":"error","error":{"name":"ModerationError","message":"prompt rejected"}})");
  REQUIRE(err1.ok());
  CHECK(err1->kind == GenerationStatus::Kind::failed);
  CHECK(err1->error_message == "ModerationError: prompt rejected");
  auto err2 = parse_status(R"({"status":"failed","detail":[{"loc":["body","image_url"],"msg":"bad image","type":"x"}]})");
  REQUIRE(err2.ok());
  CHECK(err2->error_message == "image_url: bad image");
  auto err3 = parse_status(R"({"status":"error"})");
  REQUIRE(err3.ok());
  CHECK(err3->error_message.find("error") != std::string::npos);

  CHECK_FALSE(parse_status("{not json").ok());
  CHECK_FALSE(parse_status("[1,2]").ok());
  CHECK_FALSE(parse_status(R"({"status": 5})").ok());
  CHECK_FALSE(parse_status(R"({"id":"x"})").ok());
}

TEST_CASE("provider: a file_size beyond int64 is no size, never a negative one (found by fuzz_provider_response)")
{
  auto st = parse_status(R"({"status":"completed","video":{"url":"https://c/v.mp4","file_size":18446744073709551615}})");
  REQUIRE(st.ok());
  CHECK_FALSE(st->file_size.has_value());
  auto max = parse_status(R"({"status":"completed","video":{"url":"https://c/v.mp4","file_size":9223372036854775807}})");
  REQUIRE(max.ok());
  CHECK(max->file_size == INT64_MAX);
}

TEST_CASE("provider: poll outcomes")
{
  CHECK(classify_poll(resp(200, R"({"status":"queued"})")).outcome.cls == CallClass::ok);
  CHECK(classify_poll(resp(200, "{garbage")).outcome.cls == CallClass::transient);
  CHECK(classify_poll(resp(500, "{}")).outcome.cls == CallClass::transient);
  CHECK(classify_poll(resp(429, "{}", {{"Retry-After", "7"}})).outcome.retry_after == std::chrono::milliseconds(7000));
  CHECK(classify_poll(fail(TransportFailure::sent_no_answer)).outcome.cls == CallClass::transient);
  CHECK(classify_poll(resp(404, "{}")).outcome.cls == CallClass::job_error);
  CHECK(classify_poll(resp(401, "{}")).outcome.cls == CallClass::account);
}

TEST_CASE("provider: Retry-After as seconds, fractions or an HTTP date")
{
  CHECK(parse_retry_after("120") == std::chrono::milliseconds(120000));
  CHECK(parse_retry_after(" 2 ") == std::chrono::milliseconds(2000));
  CHECK(parse_retry_after("0.5") == std::chrono::milliseconds(500));
  CHECK_FALSE(parse_retry_after("soon"));
  CHECK_FALSE(parse_retry_after("-4"));
  auto past = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT");
  REQUIRE(past);
  CHECK(*past == std::chrono::milliseconds(0));
  // Dates outside system_clock's range once overflowed converting to nanoseconds (UBSan, found
  // by fuzz_provider_response): far past is "now", far future the one-day cap.
  CHECK(parse_retry_after("Wed, 21 Oct 0015 07:28:00 GMT") == std::chrono::milliseconds(0));
  CHECK(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == std::chrono::milliseconds(86400 * 1000));
}

TEST_CASE("provider: request-log pages")
{
  auto page = parse_logs(R"({"data":[
      {"created":"2026-11-22T05:00:00Z","status":"succeeded","model":"m","cost":{"usd":0.84,"credits":1680000},
       "request_id":"r1","inference_id":"gen:m/1","client_request_id":"JOB.1"},
      {"status":"failed","model":"m","cost":{"usd":"0","credits":0},"client_request_id":"JOB2.3"},
      {"model":"no status: skipped"}],
    "pagination":{"limit":100,"offset":0,"total":3,"has_more":true}})");
  REQUIRE(page.ok());
  REQUIRE(page->rows.size() == 2);
  CHECK(page->has_more);
  CHECK(page->rows[0].status == "succeeded");
  CHECK(page->rows[0].inference_id == "gen:m/1");
  CHECK(page->rows[0].client_request_id == "JOB.1");
  CHECK(page->rows[0].usd == doctest::Approx(0.84));
  CHECK(page->rows[0].credits == 1680000);
  CHECK(page->rows[1].status == "failed");
  CHECK(page->rows[1].usd == doctest::Approx(0.0));
  CHECK_FALSE(page->rows[1].inference_id);
  auto bare = parse_logs(R"([{"status":"succeeded","client_request_id":"X.1","inference_id":"42"}])");
  REQUIRE(bare.ok());
  CHECK_FALSE(bare->has_more);
  CHECK(bare->rows.size() == 1);
  CHECK_FALSE(parse_logs("{").ok());
  CHECK_FALSE(parse_logs(R"({"pagination":{}})").ok());
}

TEST_CASE("provider: request-log costs that are not a possible charge are no figure (found while adding parse_logs to the fuzz target)")
{
  auto page = parse_logs(R"([
      {"status":"succeeded","cost":{"usd":"nan","credits":1.5}},
      {"status":"succeeded","cost":{"usd":"inf","credits":1e30}},
      {"status":"succeeded","cost":{"usd":-0.5,"credits":-3}},
      {"status":"succeeded","cost":{"usd":"1e999","credits":"12"}},
      {"status":"succeeded","cost":{"usd":"0.25","credits":525000}}])");
  REQUIRE(page.ok());
  REQUIRE(page->rows.size() == 5);
  for (int i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK_FALSE(page->rows[i].usd);
    CHECK_FALSE(page->rows[i].credits);
  }
  CHECK(page->rows[4].usd == doctest::Approx(0.25));
  CHECK(page->rows[4].credits == 525000);
}

TEST_CASE("provider: a 429 that speaks of the account is an account problem, a plain 429 is not")
{
  const char* account_bodies[] = {
    R"({"message":"Insufficient balance: not enough credits for this request","statusCode":429})",
    R"({"message":"Your account is in arrears","statusCode":429})",
    R"({"message":"Resource pack depleted or expired","statusCode":"429"})",
    R"({"error":{"message":"You have run out of CREDITS, please top up"}})",
    R"({"code":1102,"message":"Account exception"})",
    R"({"code":"1101","message":"request refused"})",
  };
  for (const char* body : account_bodies) {
    CAPTURE(body);
    CHECK(classify_create(resp(429, body)).outcome.cls == CallClass::account);
    CHECK(classify_poll(resp(429, body)).outcome.cls == CallClass::account);
  }
  const char* plain_bodies[] = {
    "{}",
    R"({"message":"Too many requests","statusCode":429})",
    R"({"code":1303,"message":"Concurrency limit reached, try again later"})",
    "rate limited",
  };
  for (const char* body : plain_bodies) {
    CAPTURE(body);
    CHECK(classify_create(resp(429, body)).outcome.cls == CallClass::safe_retry);
    CHECK(classify_poll(resp(429, body)).outcome.cls == CallClass::transient);
  }
  // The words only turn a 429 into an account problem; other statuses keep their class.
  CHECK(classify_create(resp(400, R"({"message":"credits field is invalid"})")).outcome.cls == CallClass::job_error);
  CHECK(classify_create(resp(503, R"({"message":"balance service down"})")).outcome.cls == CallClass::safe_retry);
  CHECK(speaks_of_account("Insufficient Balance"));
  CHECK_FALSE(speaks_of_account("Too many requests"));
}

TEST_CASE("provider: meta.usage and the serving route in a status")
{
  auto st = parse_status(R"({"id":"g","status":"completed","video":{"url":"https://cdn.test/v.mp4"},"error":null,
                            "meta":{"usage":{"credits_used":120000,"usd_spent":0.06}},"model":"klingai/x","provider":"FAL"})");
  REQUIRE(st);
  CHECK(st->usage_usd == doctest::Approx(0.06));
  CHECK(st->usage_credits == 120000);
  CHECK(st->served_by == "fal");
  // meta.provider when there is no top-level one; a decimal string for usd; no usage at all.
  auto nested = parse_status(R"({"status":"completed","video":{"url":"https://cdn.test/v.mp4"},
                                "meta":{"provider":"kling","usage":{"credits_used":1,"usd_spent":"0.5"}}})");
  REQUIRE(nested);
  CHECK(nested->served_by == "kling");
  CHECK(nested->usage_usd == doctest::Approx(0.5));
  auto bare = parse_status(R"({"status":"generating","meta":null})");
  REQUIRE(bare);
  CHECK_FALSE(bare->usage_usd);
  CHECK_FALSE(bare->usage_credits);
  CHECK_FALSE(bare->served_by);
  // Figures that are no possible charge are no figure.
  for (const char* usage : {R"({"credits_used":-1,"usd_spent":-0.5})", R"({"credits_used":1.5e300,"usd_spent":"nan"})",
                            R"({"credits_used":"7","usd_spent":1e300})", R"({"credits_used":null,"usd_spent":[1]})"}) {
    CAPTURE(usage);
    auto odd = parse_status(fmt::format(R"({{"status":"completed","meta":{{"usage":{}}}}})", usage));
    REQUIRE(odd);
    CHECK_FALSE(odd->usage_usd);
    CHECK_FALSE(odd->usage_credits);
  }
}

TEST_CASE("provider: balance and transaction pages")
{
  auto b = parse_balance(R"({"current_balance":123.45,"currency":"USD"})");
  REQUIRE(b);
  CHECK(b->usd == doctest::Approx(123.45));
  CHECK(b->currency == "USD");
  CHECK(parse_balance(R"({"current_balance":-2.5})")->usd == doctest::Approx(-2.5)); // arrears
  CHECK(parse_balance(R"({"current_balance":"7.25"})")->usd == doctest::Approx(7.25));
  CHECK_FALSE(parse_balance(R"({"currency":"USD"})"));
  CHECK_FALSE(parse_balance(R"({"current_balance":"lots"})"));
  CHECK_FALSE(parse_balance("[]"));
  CHECK_FALSE(parse_balance("nope"));

  auto t = parse_transactions(R"({"data":[
      {"created_at":"2026-08-17T10:00:00.000Z","direction":"TOPUP","type":"REFUND","amount":{"usd":0.6,"credits":1200000},
       "model":"klingai/video-v3-pro-text-to-video","reference_id":"V1StGXR8Z5jdHi6BmyT8k"},
      {"created_at":"2026-08-17T09:59:00.000Z","direction":"CHARGE","type":"MODEL_USAGE","amount":{"usd":0.6,"credits":1200000},
       "model":"klingai/video-v3-pro-text-to-video","reference_id":"V1StGXR8Z5jdHi6BmyT8k"},
      {"created_at":"2026-08-01T00:00:00.000Z","direction":"TOPUP","type":"PAYMENT","amount":{"usd":-5,"credits":1.5},
       "model":null,"reference_id":null},
      {"direction":"CHARGE"},
      "junk"],
    "pagination":{"next_cursor":"eyJ2IjoxfQ","has_more":true}})");
  REQUIRE(t);
  REQUIRE(t->rows.size() == 3);
  CHECK(t->rows[0].type == "REFUND");
  CHECK(t->rows[0].direction == "TOPUP");
  CHECK(t->rows[0].reference_id == "V1StGXR8Z5jdHi6BmyT8k");
  CHECK(t->rows[0].usd == doctest::Approx(0.6));
  CHECK(t->rows[1].type == "MODEL_USAGE");
  CHECK(t->rows[1].credits == 1200000);
  CHECK(t->rows[1].created_at == "2026-08-17T09:59:00.000Z");
  CHECK_FALSE(t->rows[2].usd);     // negative: no figure
  CHECK_FALSE(t->rows[2].credits); // fractional credits: no figure
  CHECK_FALSE(t->rows[2].model);
  CHECK(t->next_cursor == "eyJ2IjoxfQ");
  CHECK(t->has_more);
  auto last = parse_transactions(R"({"data":[],"pagination":{"next_cursor":null,"has_more":true}})");
  REQUIRE(last);
  CHECK_FALSE(last->next_cursor);
  CHECK_FALSE(last->has_more); // no cursor to go on with
  CHECK_FALSE(parse_transactions(R"({"rows":[]})"));
  CHECK_FALSE(parse_transactions("{"));
}
