"""fake-aimlapi: X-Client-Request-Id, tracing and cost headers, and GET /v2/logs with its
filters, paging, delay before a row appears, 429 past the rate limit and the off switch."""

import datetime
import sys
import time

from fakeprov import FakeProvider, run_tests

FAKE = None
T2V = "kling-video/v1/pro/text-to-video"       # 0.1 USD per second in the fake's price table
V3 = "klingai/video-v3-pro-text-to-video"      # 0.12 USD per second


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fresh(**config):
    FAKE.reset()
    FAKE.config({"queued_s": 0, "generating_s": 0.2, **config})


def rows(**params):
    r = FAKE.logs(**params)
    assert r.status == 200, r
    return r.json()


def test_client_request_id_echo_and_tracing_headers():
    fresh()
    r = FAKE.create({"model": T2V, "prompt": "x", "duration": 10}, client_request_id="01JOB_a-b:c.1")
    gid = r.json()["id"]
    assert r.headers["x-client-request-id"] == "01JOB_a-b:c.1"
    assert r.headers["x-inference-id"] == gid
    assert r.headers["x-aimlapi-usd-spent"] == "1" and r.headers["x-aimlapi-credits-used"] == "2000000", r.headers
    p = FAKE.poll(gid, headers={"X-Client-Request-Id": "poll.7"})
    assert p.headers["x-inference-id"] == gid and p.headers["x-client-request-id"] == "poll.7"
    assert "x-aimlapi-usd-spent" not in p.headers
    assert "x-inference-id" not in FAKE.poll("nope").headers
    for bad in ("has space", "x" * 129, "semi;colon", "ünï"):
        r = FAKE.create({"model": T2V, "prompt": "x"}, headers={"X-Client-Request-Id": bad.encode().decode("latin-1")})
        assert r.status == 200 and "x-client-request-id" not in r.headers, bad
    FAKE.config({"create_cost_headers": False})
    r = FAKE.create({"model": T2V, "prompt": "x"})
    assert "x-aimlapi-usd-spent" not in r.headers and "x-aimlapi-credits-used" not in r.headers
    FAKE.config({"prices": {T2V: 0.5}})
    r = FAKE.create({"model": T2V, "prompt": "x"}, client_request_id="priced.1")
    s = FAKE.stats()
    assert s["generations"][-1]["cost"] == {"usd": 2.5, "credits": 5000000}, s["generations"][-1]
    assert s["create_calls_by_job"]["priced"] == {"calls": 1, "recorded": 1}


def test_rows_shape_cost_after_completion_and_failures():
    fresh()
    ok = FAKE.create({"model": T2V, "prompt": "x", "duration": "10"}, client_request_id="jobok.1").json()["id"]
    FAKE.create({"model": T2V}, client_request_id="jobbad.1")  # rejected: failed row, no generation
    doc = rows()
    assert doc["pagination"] == {"limit": 50, "offset": 0, "total": 2, "has_more": False}, doc
    newest, oldest = doc["data"]
    assert set(oldest) == {"created", "status", "origin", "model", "cost", "tokens", "request_id",
                           "inference_id", "client_request_id"}, oldest
    assert newest["client_request_id"] == "jobbad.1" and newest["status"] == "failed"
    assert newest["inference_id"] is None and newest["cost"] == {"usd": 0, "credits": 0}
    assert oldest["client_request_id"] == "jobok.1" and oldest["inference_id"] == ok and oldest["status"] == "succeeded"
    assert oldest["cost"] == {"usd": 0, "credits": 0}, "charged only once the generation completed"
    FAKE.wait_completed(ok)
    assert rows()["data"][1]["cost"] == {"usd": 1, "credits": 2000000}
    assert newest["created"] >= oldest["created"]

    FAKE.config({"failure_rate": 1.0})
    bad = FAKE.create({"model": T2V, "prompt": "y"}, client_request_id="jobfail.1").json()["id"]
    assert FAKE.wait_completed(bad)["status"] == "error"
    row = rows()["data"][0]
    assert row["inference_id"] == bad and row["status"] == "failed" and row["cost"] == {"usd": 0, "credits": 0}


def test_ambiguous_create_can_be_settled_from_the_log():
    fresh()
    FAKE.config({"script": ["create.reset_after_create=1"]})
    try:
        FAKE.create({"model": V3, "prompt": "z"}, client_request_id="jobamb.1")
        raise AssertionError("expected a reset")
    except OSError:
        pass
    match = [r for r in rows(model=V3)["data"] if r["client_request_id"] == "jobamb.1"]
    assert len(match) == 1 and match[0]["status"] == "succeeded", match
    assert FAKE.poll(match[0]["inference_id"]).status == 200
    FAKE.config({"script": ["create.error_503=1"]})
    FAKE.create({"model": V3, "prompt": "z"}, client_request_id="jobamb.2")
    match = [r for r in rows()["data"] if r["client_request_id"] == "jobamb.2"]
    assert match[0]["status"] == "failed" and match[0]["inference_id"] is None


def test_filters_and_paging():
    fresh()
    for i in range(7):
        FAKE.create({"model": T2V if i % 2 else V3, "prompt": f"p{i}"}, client_request_id=f"page{i}.1")
    FAKE.create({"model": V3}, client_request_id="rej.1")
    assert rows()["pagination"]["total"] == 8
    assert rows(model=T2V)["pagination"]["total"] == 3
    assert rows(model=[T2V, V3])["pagination"]["total"] == 8
    assert rows(status="failed")["pagination"]["total"] == 1
    assert rows(status=["failed", "succeeded"], model=V3)["pagination"]["total"] == 5
    seen = []
    offset = 0
    while True:
        doc = rows(limit=3, offset=offset)
        seen += [r["client_request_id"] for r in doc["data"]]
        assert doc["pagination"]["limit"] == 3 and doc["pagination"]["offset"] == offset
        if not doc["pagination"]["has_more"]:
            break
        offset += 3
    assert seen == ["rej.1"] + [f"page{i}.1" for i in reversed(range(7))], seen
    now = time.time()
    assert rows(period="7d")["pagination"]["total"] == 8
    assert rows(start=iso(now - 60), end=iso(now + 60))["pagination"]["total"] == 8
    assert rows(start=iso(now - 7200), end=iso(now - 3600))["pagination"]["total"] == 0
    assert rows(start="2020-01-01T00:00:00Z", end="2020-02-01T00:00:00+00:00")["pagination"]["total"] == 0
    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"offset": -1}, {"period": "1y"},
                {"status": "done"}, {"start": iso(now)}, {"start": "yesterday", "end": iso(now)},
                {"start": "2020-01-01T00:00:00Z", "end": "2020-06-01T00:00:00Z"}):
        r = FAKE.logs(**bad)
        assert r.status == 400 and r.json()["statusCode"] == 400, (bad, r)
    assert FAKE.request("GET", "/v2/logs", auth=False).status == 401


def test_row_appears_after_the_configured_delay():
    fresh(logs_delay_s=0.5)
    FAKE.create({"model": T2V, "prompt": "x"}, client_request_id="late.1")
    assert rows()["pagination"]["total"] == 0
    time.sleep(0.6)
    assert rows()["data"][0]["client_request_id"] == "late.1"


def test_rate_limit_and_off_switch():
    fresh(logs_rate_limit=5)
    assert [FAKE.logs().status for _ in range(5)] == [200] * 5
    r = FAKE.logs()
    assert r.status == 429 and int(r.headers["retry-after"]) >= 1, r
    s = FAKE.stats()
    assert s["logs_requests"] == 6 and s["logs_rate_limited"] == 1
    FAKE.config({"logs_rate_limit": 200, "logs_enabled": False})
    fresh(logs_enabled=False)
    assert FAKE.logs().status == 404
    assert FAKE.config()["logs_rate_limit"] == 200


def test_default_rate_limit_is_200_per_minute():
    fresh()
    statuses = [FAKE.logs(limit=1).status for _ in range(201)]
    assert statuses[:200] == [200] * 200 and statuses[200] == 429


def test_poll_rows_optional():
    fresh(log_polls=True)
    gid = FAKE.create({"model": T2V, "prompt": "x"}).json()["id"]
    FAKE.poll(gid, headers={"X-Client-Request-Id": "p.1"})
    doc = rows()
    assert doc["pagination"]["total"] == 2 and doc["data"][0]["client_request_id"] == "p.1"
    assert doc["data"][0]["cost"] == {"usd": 0, "credits": 0}


def main():
    global FAKE
    FAKE = FakeProvider()
    try:
        return run_tests(globals())
    finally:
        FAKE.stop()


if __name__ == "__main__":
    sys.exit(main())
