"""fake-aimlapi: every fault kind is observable and counted, scripts and probabilities are
deterministic, and the admin counters are exact."""

import json
import sys
import time

from fakeprov import CONNECTION_ERRORS, FakeProvider, run_tests

FAKE = None
T2V = "kling-video/v1/pro/text-to-video"


def body(n=0):
    return {"model": T2V, "prompt": f"fault test {n}"}


def script(kind, fault, count=1):
    FAKE.config({"script": [{"kind": kind, "fault": fault, "count": count}]})


def expect_connection_error(fn):
    try:
        r = fn()
    except CONNECTION_ERRORS:
        return
    raise AssertionError(f"expected a reset or cut connection, got {r}")


def fresh():
    FAKE.reset()
    FAKE.config({"queued_s": 0, "generating_s": 0, "slow_delay_s": 0.3, "retry_after_s": 2})


def test_create_faults():
    fresh()
    for fault, status in (("error_500", 500), ("error_502", 502), ("error_503", 503), ("error_504", 504)):
        script("create", fault)
        r = FAKE.create(body(), client_request_id="jobA.1")
        assert r.status == status and r.json()["statusCode"] == status, (fault, r)
    script("create", "rate_limit")
    r = FAKE.create(body())
    assert r.status == 429 and r.headers["retry-after"] == "2", r.headers
    script("create", "rate_limit_no_retry_after")
    r = FAKE.create(body())
    assert r.status == 429 and "retry-after" not in r.headers
    script("create", "reset")
    expect_connection_error(lambda: FAKE.create(body(), client_request_id="jobB.1"))
    s = FAKE.stats()
    assert s["creates_recorded"] == 0 and s["create_calls"] == 7, s
    assert s["create_calls_by_job"]["jobA"] == {"calls": 4, "recorded": 0}

    # The ambiguous ones: recorded and billed although the client learns nothing useful.
    script("create", "reset_after_create")
    expect_connection_error(lambda: FAKE.create(body(1), client_request_id="jobC.1"))
    script("create", "error_500_after_create")
    assert FAKE.create(body(2), client_request_id="jobD.1").status == 500
    script("create", "error_504_after_create")
    assert FAKE.create(body(3), client_request_id="jobE.1").status == 504
    script("create", "malformed_json")
    r = FAKE.create(body(4), client_request_id="jobF.1")
    assert r.status == 200
    try:
        json.loads(r.body)
        raise AssertionError("body should not parse")
    except ValueError:
        pass
    script("create", "slow")
    started = time.monotonic()
    assert FAKE.create(body(5)).status == 200
    assert time.monotonic() - started >= 0.3
    s = FAKE.stats()
    assert s["creates_recorded"] == 5, s
    for job in "CDEF":
        assert s["create_calls_by_job"][f"job{job}"] == {"calls": 1, "recorded": 1}, s["create_calls_by_job"]
    assert s["faults"]["create"] == {
        "error_500": 1, "error_502": 1, "error_503": 1, "error_504": 1, "rate_limit": 1,
        "rate_limit_no_retry_after": 1, "reset": 1, "reset_after_create": 1,
        "error_500_after_create": 1, "error_504_after_create": 1, "malformed_json": 1, "slow": 1}, s["faults"]
    assert s["faults_total"] == 12


def test_poll_faults():
    fresh()
    gid = FAKE.create(body()).json()["id"]
    for fault, status in (("error_500", 500), ("error_503", 503), ("rate_limit", 429), ("not_found", 404)):
        script("poll", fault)
        assert FAKE.poll(gid).status == status, fault
    script("poll", "reset")
    expect_connection_error(lambda: FAKE.poll(gid))
    script("poll", "garbage_status")
    doc = FAKE.poll(gid).json()
    assert doc["status"] not in ("queued", "generating", "completed", "error", "waiting", "active", "processing"), doc
    script("poll", "malformed_json")
    r = FAKE.poll(gid)
    assert r.status == 200
    try:
        json.loads(r.body)
        raise AssertionError("body should not parse")
    except ValueError:
        pass
    script("poll", "slow")
    started = time.monotonic()
    assert FAKE.poll(gid).json()["status"] == "completed"
    assert time.monotonic() - started >= 0.3
    s = FAKE.stats()
    assert s["faults"]["poll"] == {"error_500": 1, "error_503": 1, "rate_limit": 1, "not_found": 1, "reset": 1,
                                   "garbage_status": 1, "malformed_json": 1, "slow": 1}, s["faults"]
    # Only the last poll reported the completion, so the generation left "in flight" there.
    assert s["polls"] == 8 and s["in_flight"] == 0 and s["max_in_flight"] == 1, s


def test_download_faults():
    fresh()
    gid = FAKE.create(body()).json()["id"]
    url = FAKE.poll(gid).json()["video"]["url"]
    script("download", "truncated")
    expect_connection_error(lambda: FAKE.download(url))
    script("download", "expired_url")
    assert FAKE.download(url).status == 403
    script("download", "error_502")
    assert FAKE.download(url).status == 502
    script("download", "reset")
    expect_connection_error(lambda: FAKE.download(url))
    r = FAKE.download(url)
    assert r.status == 200
    s = FAKE.stats()
    assert s["faults"]["download"] == {"truncated": 1, "expired_url": 1, "error_502": 1, "reset": 1}
    assert s["downloads_completed"] == 1 and s["bytes_served"] == len(r.body) + len(r.body) // 2, s


def test_logs_faults():
    fresh()
    script("logs", "error_503")
    assert FAKE.logs().status == 503
    script("logs", "malformed_json")
    r = FAKE.logs()
    try:
        json.loads(r.body)
        raise AssertionError("body should not parse")
    except ValueError:
        pass
    assert FAKE.logs().status == 200
    assert FAKE.stats()["faults"]["logs"] == {"error_503": 1, "malformed_json": 1}


def test_script_counts_then_stops():
    fresh()
    script("create", "error_503", 3)
    statuses = [FAKE.create(body(i)).status for i in range(5)]
    assert statuses == [503, 503, 503, 200, 200], statuses
    assert FAKE.stats()["script_pending"] == []


def outcome_sequence(n):
    out = []
    for i in range(n):
        try:
            out.append(FAKE.create(body(i)).status)
        except CONNECTION_ERRORS:
            out.append("reset")
    return out


def test_probabilities_are_seeded_and_deterministic():
    fresh()
    FAKE.config({"faults": {"create": {"error_503": 0.3, "reset": 0.2}}})
    first = outcome_sequence(60)
    FAKE.reset(keep_config=True)
    second = outcome_sequence(60)
    assert first == second
    assert 8 <= first.count(503) <= 30 and 4 <= first.count("reset") <= 22, first
    s = FAKE.stats()
    assert s["faults"]["create"] == {"error_503": first.count(503), "reset": first.count("reset")}
    assert s["creates_recorded"] == first.count(200)
    FAKE.config({"faults": {"create": {}}})


def test_admin_counters_exact():
    fresh()
    FAKE.config({"queued_s": 0.5, "generating_s": 0.5})
    same = body(99)
    r1 = FAKE.create(same, client_request_id="job-1.1")
    r2 = FAKE.create(same, client_request_id="job-1.2")       # a duplicate spend, visible below
    r3 = FAKE.create(body(100), client_request_id="job-2.1", legacy=True)
    FAKE.create({"model": T2V}, client_request_id="job-3.1")  # rejected
    FAKE.request("POST", FAKE.UNIVERSAL, same, {"Authorization": "Bearer nope"})
    for r in (r1, r2):
        FAKE.poll(r.json()["id"])
    FAKE.poll("unknown")
    s = FAKE.stats()
    assert s["create_calls"] == 4 and s["creates_recorded"] == 3 and s["creates_rejected"] == 1, s
    assert s["auth_failures"] == 1 and s["polls"] == 3 and s["polls_unknown"] == 1
    by_body = {json.dumps(b["body"], sort_keys=True): (b["calls"], b["recorded"]) for b in s["create_calls_by_body"]}
    assert by_body[json.dumps(same, sort_keys=True)] == (2, 2) and s["duplicate_bodies"] == 1, by_body
    assert s["create_calls_by_job"] == {"job-1": {"calls": 2, "recorded": 2}, "job-2": {"calls": 1, "recorded": 1},
                                        "job-3": {"calls": 1, "recorded": 0}}, s["create_calls_by_job"]
    assert s["create_calls_by_client_request_id"]["job-1.2"] == {"calls": 1, "recorded": 1}
    assert s["max_in_flight"] == 3 and s["in_flight"] == 3 and s["max_generating"] == 3
    assert s["creates_per_minute_peak"] == 4
    gens = {g["id"]: g for g in s["generations"]}
    g3 = gens[r3.json()["id"]]
    assert g3["family"] == "legacy" and g3["client_request_id"] == "job-2.1" and g3["status"] == "queued"
    assert g3["model"] == T2V and g3["sha256"] is None  # not finished yet


def test_many_concurrent_keep_alive_connections():
    fresh()
    conns = []
    try:
        for _ in range(300):
            c = FAKE.connection()
            c.connect()
            conns.append(c)
        for c in conns:
            c.request("GET", "/__admin/config")
        for c in conns:
            c.getresponse().read()
        for c in conns:  # reused on the same connections
            c.request("GET", "/__admin/config")
            assert c.getresponse().status == 200
        assert FAKE.stats()["connections_open"] >= 300
    finally:
        for c in conns:
            c.close()


def main():
    global FAKE
    FAKE = FakeProvider(args=["--seed", "42"])
    try:
        return run_tests(globals())
    finally:
        FAKE.stop()


if __name__ == "__main__":
    sys.exit(main())
