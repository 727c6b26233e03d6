"""Socket API (docs/contract.md §4.1) through the real klingd against fake-aimlapi: every route, the
error statuses, idempotent re-submission, all-or-nothing batches, events replay after a
restart, /metrics checked by promtool, socket permissions and stale/live socket handling."""

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd, parse_raw, raw_connect, raw_exchange, raw_read, spec  # noqa: E402


def error_of(r, status):
    assert r.status == status, f"expected {status}: {r}"
    body = r.json()
    assert set(body) == {"error"}, body
    e = body["error"]
    assert isinstance(e["code"], str) and e["code"], e
    assert isinstance(e["message"], str) and e["message"], e
    assert isinstance(e["details"], list), e
    return e


def total_jobs(d):
    return d.get_json("/v1/status")["total"]


def test_routes():
    with Klingd() as d:
        # One spec, a batch, NDJSON.
        r = d.post("/v1/jobs", spec("one", key="k/one", labels={"team": "a"}, output="dir/one.mp4"))
        assert r.status == 201, r
        one = r.json()
        assert set(one) == {"batch", "jobs"}
        assert one["jobs"][0]["duplicate"] is False and one["jobs"][0]["key"] == "k/one"
        assert set(one["jobs"][0]) == {"id", "key", "state", "duplicate"}
        batch = d.submit([spec("b1", labels={"team": "b"}), spec("b2", priority=5)])
        assert len(batch["jobs"]) == 2
        nd = "\n".join(json.dumps(spec(f"n{i}")) for i in range(3)) + "\n"
        r = d.post("/v1/jobs", nd, headers={"Content-Type": "application/x-ndjson"})
        assert r.status == 201 and len(r.json()["jobs"]) == 3, r
        ids = [j["id"] for j in one["jobs"] + batch["jobs"] + r.json()["jobs"]]
        d.wait_terminal(ids, timeout=30)

        # GET one job by id and by (URL-encoded) key; history oldest first.
        j = d.job(one["jobs"][0]["id"])
        for name in ("id", "key", "batch", "state", "model", "request", "output", "priority", "labels",
                     "generation_id", "provider_status", "attempts", "polls", "error", "video", "created_at",
                     "updated_at", "finished_at", "history", "step", "timeout_s", "cost"):
            assert name in j, name
        assert j["state"] == "completed", j
        assert j["video"]["path"] == os.path.join(d.videos_dir, "dir/one.mp4")
        assert os.path.getsize(j["video"]["path"]) == j["video"]["bytes"]
        assert [h["state"] for h in j["history"]] == ["queued", "submitting", "generating", "downloading",
                                                      "completed"], j["history"]
        by_key = d.job("key:" + urllib.parse.quote("k/one", safe=""))
        assert by_key["id"] == j["id"]

        # List: filters, limit and cursor.
        listed = d.get_json("/v1/jobs")
        assert len(listed["jobs"]) == 6 and listed["next"] is None
        assert [x["id"] for x in listed["jobs"]] == sorted(ids)
        page = d.get_json("/v1/jobs?limit=4")
        assert len(page["jobs"]) == 4 and page["next"]
        rest = d.get_json(f"/v1/jobs?limit=4&after={page['next']}")
        assert len(rest["jobs"]) == 2 and rest["next"] is None
        assert [x["id"] for x in page["jobs"] + rest["jobs"]] == sorted(ids)
        assert len(d.get_json(f"/v1/jobs?batch={batch['batch']}")["jobs"]) == 2
        assert [x["id"] for x in d.get_json("/v1/jobs?label=team%3Db")["jobs"]] == [batch["jobs"][0]["id"]]
        assert len(d.get_json("/v1/jobs?state=completed,failed")["jobs"]) == 6
        assert d.get_json("/v1/jobs?state=queued")["jobs"] == []

        # Batch counts.
        b = d.get_json(f"/v1/batches/{batch['batch']}")
        assert b["total"] == 2 and b["done"] is True and b["counts"]["completed"] == 2, b
        assert set(b["counts"]) == set(klingtest.TERMINAL) | {"queued", "submitting", "generating", "downloading"}

        # Status, models, metrics.
        st = d.get_json("/v1/status")
        for name in ("version", "uptime_s", "counts", "in_flight", "paused", "limits", "socket", "db"):
            assert name in st, name
        assert st["counts"]["completed"] == 6 and st["paused"] is None and st["socket"] == d.socket_path
        models = d.get_json("/v1/models")["models"]
        assert any(m["id"] == klingtest.DEFAULT_MODEL for m in models)
        m = d.get("/metrics")
        assert m.status == 200 and m.header("Content-Type").startswith("text/plain"), m
        assert b'klingd_jobs{state="completed"} 6' in m.body, m.body[:2000]

        # Pause / resume: queued jobs wait while paused.
        r = d.post("/v1/pause", {"reason": "maintenance"})
        assert r.status == 200 and r.json()["paused"] == "maintenance", r
        assert d.get_json("/v1/status")["paused"] == "maintenance"
        held = d.submit([spec("held")])["jobs"][0]["id"]
        time.sleep(0.3)
        assert d.job(held)["state"] == "queued"
        # Cancel and retry; a terminal job cannot be canceled.
        r = d.post(f"/v1/jobs/{held}/cancel")
        assert r.status == 200 and r.json()["state"] == "canceled", r
        error_of(d.post(f"/v1/jobs/{held}/cancel"), 409)
        error_of(d.post(f"/v1/jobs/{ids[0]}/cancel"), 409)
        r = d.post(f"/v1/jobs/{held}/retry")
        assert r.status == 200 and r.json()["state"] == "queued", r
        r = d.post("/v1/resume")
        assert r.status == 200 and r.json()["paused"] is None, r
        assert d.wait_terminal([held])[held]["state"] == "completed"

        # Plain curl over the socket, as a user would.
        assert shutil.which("curl"), "curl is missing (scripts/install-deps.sh installs it)"
        out = subprocess.run(["curl", "-sS", "--unix-socket", d.socket_path, "http://klingd/v1/status"],
                             capture_output=True, text=True, timeout=10, check=True)
        assert json.loads(out.stdout)["counts"]["completed"] == 7
        out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "--unix-socket", d.socket_path,
                              "-H", "Content-Type: application/json",
                              "-d", json.dumps(spec("curl", key="from-curl")), "http://klingd/v1/jobs"],
                             capture_output=True, text=True, timeout=10, check=True)
        body, code = out.stdout.rsplit("\n", 1)
        assert code == "201" and json.loads(body)["jobs"][0]["key"] == "from-curl", out.stdout


def test_error_statuses():
    with Klingd() as d:
        d.submit([spec("seed", key="seed")])
        before = total_jobs(d)
        # 400: not JSON, with line and column.
        e = error_of(d.post("/v1/jobs", '{"request":\n  {"model": }}'), 400)
        assert e["code"] == "invalid_json" and "line 2, column" in e["message"], e
        # 400: an invalid batch stores nothing and lists each bad index.
        bad = [spec("ok"), spec("bad", key=""), spec("ok2"), {"request": {"model": "nope"}},
               spec("x", output="../../etc/passwd.mp4"), spec("y", colour="red")]
        e = error_of(d.post("/v1/jobs", {"jobs": bad}), 400)
        assert e["code"] == "invalid_spec", e
        assert sorted({x["index"] for x in e["details"]}) == [1, 3, 4, 5], e["details"]
        fields = {(x["index"], x["field"]) for x in e["details"]}
        assert (1, "key") in fields and (4, "output") in fields and (5, "colour") in fields, fields
        # Duplicate keys inside one batch: nothing stored either.
        e = error_of(d.post("/v1/jobs", {"jobs": [spec("a", key="dup"), spec("b", key="dup")]}), 400)
        assert any(x["field"] == "key" for x in e["details"]), e
        # Two jobs may not claim one output path.
        e = error_of(d.post("/v1/jobs", {"jobs": [spec("a", output="same.mp4"), spec("b", output="same.mp4")]}), 400)
        assert total_jobs(d) == before
        # Other 400s.
        for body in (b"", b"[]", b'{"jobs": []}', b"{\"request\": \"\xff\"}", b"[" * 200 + b"]" * 200, b"null"):
            error_of(d.post("/v1/jobs", body, headers={"Content-Type": "application/json"}), 400)
        error_of(d.get("/v1/jobs?limit=0"), 400)
        error_of(d.get("/v1/jobs?limit=1001"), 400)
        error_of(d.get("/v1/jobs?state=done"), 400)
        error_of(d.get("/v1/jobs?label=novalue"), 400)
        error_of(d.get("/v1/events?since=-1"), 400)
        assert total_jobs(d) == before
        # 404s.
        assert error_of(d.get("/v1/jobs/NOPE"), 404)["code"] == "not_found"
        error_of(d.get("/v1/jobs/key:nope"), 404)
        error_of(d.post("/v1/jobs/NOPE/cancel"), 404)
        error_of(d.post("/v1/jobs/NOPE/retry"), 404)
        error_of(d.get("/v1/batches/NOPE"), 404)
        error_of(d.get("/v2/whatever"), 404)
        error_of(d.get("/"), 404)
        # 405 with Allow, HEAD included.
        r = d.request("DELETE", "/v1/jobs")
        assert error_of(r, 405)["code"] == "method_not_allowed" and set(r.header("Allow").split(", ")) == {"GET", "POST"}
        r = d.request("HEAD", "/v1/status")
        assert r.status == 405 and r.header("Allow") == "GET", r
        # 413: announced too large (refused before reading), and a chunked body over the limit.
        limit = d.get_json("/v1/status")["limits"]["max_body_bytes"]
        out = raw_exchange(d, f"POST /v1/jobs HTTP/1.1\r\nHost: k\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 413"), out[:200]
        assert b"payload_too_large" in out
        # 431: a header over the limit.
        out = raw_exchange(d, b"GET /v1/status HTTP/1.1\r\nHost: k\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 431"), out[:200]
        # 400: not HTTP at all.
        out = raw_exchange(d, b"HELLO THERE\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400"), out[:200]
        # The daemon still serves and nothing changed.
        assert total_jobs(d) == before


def test_small_body_limit_and_chunked():
    with Klingd({"socket": {"max_body_bytes": 4096}}) as d:
        big = {"jobs": [spec("p" * 100) for _ in range(100)]}
        e = error_of(d.post("/v1/jobs", big), 413)
        assert "4096" in e["message"], e
        # Chunked, no Content-Length: the limit is enforced while reading.
        payload = json.dumps(big).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 1000]), payload[i:i + 1000])
                          for i in range(0, len(payload), 1000))
        out = raw_exchange(d, b"POST /v1/jobs HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n"
                              b"Content-Type: application/json\r\n\r\n" + chunks + b"0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 413"), out[:200]
        assert total_jobs(d) == 0


def send_in_pieces(d, head, body, piece, pause=0.002, chunked=True):
    """Sends a request whose body goes out in `piece`-byte writes (as HTTP chunks, or raw
    with a Content-Length), pausing between writes; returns the parsed response."""
    s = raw_connect(d, 30)
    if chunked:
        s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
    else:
        s.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), piece):
        part = body[i:i + piece]
        s.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        time.sleep(pause)
    if chunked:
        s.sendall(b"0\r\n\r\n")
    status, answer = parse_raw(raw_read(s, read="response"))
    return status, json.loads(answer)


NDJSON_HEAD = b"POST /v1/jobs HTTP/1.1\r\nHost: k\r\nContent-Type: application/x-ndjson\r\n"


def test_ndjson_streams_in_pieces():
    """NDJSON is read as it arrives (SubmitStream): lines split across writes and chunks,
    CRLF, blank lines, multi-byte UTF-8 cut in two, a last line without a newline."""
    with Klingd() as d:
        d.post("/v1/pause")
        prompts = [f"streamed {i} – ünïcödé 猫" for i in range(40)]
        lines = [json.dumps(spec(p, key=f"stream-{i}"), ensure_ascii=False) for i, p in enumerate(prompts)]
        body = ("\r\n".join(lines[:20]) + "\r\n\r\n" + "\n".join(lines[20:])).encode()
        status, r = send_in_pieces(d, NDJSON_HEAD, body, 7)
        assert status == 201, r
        assert [j["key"] for j in r["jobs"]] == [f"stream-{i}" for i in range(40)]
        stored = [d.job(j["id"])["request"]["prompt"] for j in r["jobs"]]
        assert stored == prompts
        # The same with a Content-Length body in odd pieces, and keys already there: duplicates.
        status, again = send_in_pieces(d, NDJSON_HEAD, body, 1000, chunked=False)
        assert status == 201 and all(j["duplicate"] for j in again["jobs"]), again
        assert total_jobs(d) == 40


def test_ndjson_bad_lines_store_nothing():
    with Klingd() as d:
        d.post("/v1/pause")
        lines = [json.dumps(spec(f"fine {i}")) for i in range(6)]
        lines[2] = '{"request": oops}'
        lines[4] = json.dumps(spec("bad priority", priority=99999))
        status, r = send_in_pieces(d, NDJSON_HEAD, ("\n".join(lines) + "\n").encode(), 5)
        assert status == 400, r
        e = r["error"]
        assert e["code"] == "invalid_spec" and "nothing stored" in e["message"], e
        assert [x["index"] for x in e["details"]] == [2, 4], e
        assert "line 3" in e["details"][0]["message"], e
        assert e["details"][1]["field"] == "priority", e
        assert total_jobs(d) == 0
        # Over the body limit while streaming: 413, nothing stored, the daemon serves on.
    with Klingd({"socket": {"max_body_bytes": 4096}}) as d:
        d.post("/v1/pause")
        body = ("\n".join(json.dumps(spec(f"p{i}" * 20)) for i in range(100)) + "\n").encode()
        out = raw_exchange(d, NDJSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
            b"%x\r\n%s\r\n" % (len(body[i:i + 500]), body[i:i + 500]) for i in range(0, len(body), 500)) + b"0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 413"), out[:200]
        assert total_jobs(d) == 0
        status, r = send_in_pieces(d, NDJSON_HEAD, (json.dumps(spec("small")) + "\n").encode(), 50)
        assert status == 201, r


def test_resubmitted_batch_creates_nothing():
    with Klingd() as d:
        specs = [spec(f"r{i}", key=f"rerun-{i}") for i in range(5)]
        first = d.submit(specs)
        assert not any(j["duplicate"] for j in first["jobs"])
        d.wait_batch(first["batch"])
        creates = d.fake.stats()
        again = d.submit(specs)
        assert all(j["duplicate"] for j in again["jobs"]), again
        assert [j["id"] for j in again["jobs"]] == [j["id"] for j in first["jobs"]]
        assert all(j["state"] == "completed" for j in again["jobs"])
        assert total_jobs(d) == 5
        time.sleep(0.3)
        assert d.fake.stats() == creates or total_jobs(d) == 5
        # A mix: only the new one is created.
        mixed = d.submit(specs[:2] + [spec("new", key="rerun-new")])
        assert [j["duplicate"] for j in mixed["jobs"]] == [True, True, False]
        assert total_jobs(d) == 6


def test_events_replay_after_restart():
    with Klingd() as d:
        jobs = d.submit([spec("e1"), spec("e2")])
        d.wait_batch(jobs["batch"])
        events = d.events(since=0)
        assert len(events) == 10, events
        assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        for e in events:
            assert {"seq", "job", "batch", "state", "at"} <= set(e), e
            assert e["batch"] == jobs["batch"]
        last = events[-1]["seq"]
        assert events[-1]["state"] == "completed"
        d.restart()
        assert d.events(since=0) == events
        assert d.events(since=events[4]["seq"]) == events[5:]
        # A live stream (no since) gets only what happens next.
        conn = d.connection(timeout=10)
        conn.request("GET", "/v1/events")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "application/x-ndjson"
        new = d.submit([spec("e3")])["jobs"][0]["id"]
        seen = []
        while len(seen) < 5:
            line = r.readline()
            assert line, "stream ended early"
            seen.append(json.loads(line))
        conn.close()
        assert all(e["job"] == new and e["seq"] > last for e in seen), seen
        assert [e["state"] for e in seen] == ["queued", "submitting", "generating", "downloading", "completed"]


def test_metrics_promtool():
    with Klingd() as d:
        d.wait_batch(d.submit([spec("m")])["batch"])
        d.get("/v1/status")
        text = d.get("/metrics").body
        for name in (b"klingd_jobs", b"klingd_creates_total", b"klingd_api_request_duration_seconds"):
            assert name in text, name
        promtool = shutil.which("promtool")
        assert promtool, "promtool is missing (scripts/install-deps.sh --test installs the prometheus package)"
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
        # promtool exits 1 for lint warnings too; only real parse errors matter here.
        assert b"error while linting" not in p.stderr and b"parse" not in p.stderr.lower(), p.stderr
        print(p.stdout.decode(), p.stderr.decode())


def test_socket_permissions_stale_and_live():
    with Klingd({"socket": {"mode": "0600"}}) as d:
        mode = stat.S_IMODE(os.stat(d.socket_path).st_mode)
        assert mode == 0o600, oct(mode)
        assert stat.S_IMODE(os.stat(os.path.dirname(d.socket_path)).st_mode) == 0o750
        # A second daemon on the same socket refuses to start and leaves the first alone.
        second_state = os.path.join(d.workdir, "state2")
        cfg = klingtest.deep_merge(d.config, {"store": {"state_dir": second_state}})
        cfg_path = os.path.join(d.workdir, "second.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        p = subprocess.run([klingtest.klingd_bin(), "--config", cfg_path], capture_output=True, text=True, timeout=20)
        assert p.returncode != 0, p
        assert d.get("/v1/status").status == 200
        # A stale socket file (SIGKILL leaves it) is replaced at the next start.
        d.kill()
        assert os.path.exists(d.socket_path)
        d.start()
        assert d.get("/v1/status").status == 200
        assert "api.request" in d.log() and "uid=" in d.log()


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
