#!/usr/bin/env python3
"""Reliability (issue 8, item 2): hostile input over the Unix socket. A table of bad requests
(beyond the ones test_api_routes.py already covers), each answered with the right 4xx and a
clear message; meanwhile the daemon keeps serving and the stored jobs do not change."""

import json
import os
import socket
import sqlite3
import sys
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_HERE, "..", "reliability_support"))
import klingtest  # noqa: E402
import relcheck  # noqa: E402
from klingtest import Klingd, parse_raw, raw_connect, raw_exchange, spec, text_request  # noqa: E402

J = "application/json"


def js(obj):
    return json.dumps(obj).encode()


def jobs_body(*specs):
    return js({"jobs": list(specs)})


def raw(d, data, timeout=15):
    """Sends raw bytes on a new connection; returns (status or None, body bytes) of the first
    response (None: the daemon closed without answering)."""
    return parse_raw(raw_exchange(d, data, timeout, read="response"))


def status_while_sending(d, head, block, blocks=100):
    """Sends `head` and then `blocks` times `block` (however far the daemon lets it get);
    returns the status of its answer, None when there is none."""
    s = raw_connect(d, 20)
    try:
        s.sendall(head)
        for _ in range(blocks):
            s.sendall(block)
    except OSError:
        pass
    try:
        got = parse_raw(s.recv(65536))[0]
    except OSError:
        got = None
    s.close()
    return got


def post(path, body, ctype=J, extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: k\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" %
            (path.encode(), ctype.encode(), len(body), extra)) + body


def req(method, path, extra=b""):
    return b"%s %s HTTP/1.1\r\nHost: k\r\n%s\r\n" % (method.encode(), path.encode(), extra)


DEEP = b'{"jobs": [' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"]}"
BIG_PROMPT = "p" * (1 << 20)
V26 = "klingai/video-v2-6-pro-text-to-video"

# (what, raw request, expected status, a word the error message must contain or None)
ROWS = [
    # --- malformed and truncated JSON
    ("truncated inside a string", post("/v1/jobs", b'{"request": {"model": "kl'), 400, "JSON"),
    ("truncated after a comma", post("/v1/jobs", b'{"jobs": [{"request": {}},'), 400, "JSON"),
    ("garbage after the document", post("/v1/jobs", js(spec("x")) + b" trailing"), 400, "JSON"),
    ("two documents", post("/v1/jobs", js(spec("x")) + js(spec("y"))), 400, "JSON"),
    ("comment in a body", post("/v1/jobs", b'/* hi */ ' + js(spec("x"))), 400, "JSON"),
    ("trailing comma", post("/v1/jobs", b'{"jobs": [' + js(spec("x")) + b',]}'), 400, "JSON"),
    ("NaN literal", post("/v1/jobs", b'{"request": {"model": "m", "duration": NaN}}'), 400, "JSON"),
    ("single quotes", post("/v1/jobs", b"{'request': {}}"), 400, "JSON"),
    ("NDJSON with one bad line", post("/v1/jobs", js(spec("a")) + b"\n{oops\n" + js(spec("b")) + b"\n",
                                      "application/x-ndjson"), 400, "line 2"),
    ("NDJSON cut in the last line", post("/v1/jobs", js(spec("a")) + b"\n" + js(spec("b"))[:20],
                                         "application/x-ndjson"), 400, None),
    # --- wrong types
    ("request is a string", post("/v1/jobs", js({"request": "make a video"})), 400, "request"),
    ("request is an array", post("/v1/jobs", js({"request": [text_request()]})), 400, "request"),
    ("prompt is a number", post("/v1/jobs", js({"request": text_request(42)})), 400, "prompt"),
    ("duration is true", post("/v1/jobs", js({"request": text_request(duration=True)})), 400, "duration"),
    ("duration out of the catalog", post("/v1/jobs", js({"request": text_request(duration=99)})), 400, "duration"),
    ("priority is a string", post("/v1/jobs", js(spec(priority="high"))), 400, "priority"),
    ("priority is 1e300", post("/v1/jobs", b'{"request": %s, "priority": 1e300}' % js(text_request())), 400,
     "priority"),
    ("timeout_s negative", post("/v1/jobs", js(spec(timeout_s=-5))), 400, "timeout_s"),
    ("timeout_s a string", post("/v1/jobs", js(spec(timeout_s="1h"))), 400, "timeout_s"),
    ("labels is an array", post("/v1/jobs", js(spec(labels=["a", "b"]))), 400, "labels"),
    ("a label value is a number", post("/v1/jobs", js(spec(labels={"n": 1}))), 400, "labels"),
    ("key is a number", post("/v1/jobs", js(spec(key=12345))), 400, "key"),
    ("jobs is an object", post("/v1/jobs", js({"jobs": {"0": spec("x")}})), 400, "jobs"),
    ("body is a number", post("/v1/jobs", b"42"), 400, None),
    ("body is a string", post("/v1/jobs", b'"make me a video"'), 400, None),
    # --- huge strings and deep nesting
    # v2.6 documents prompt ≤ 2500 characters (v3 documents no limit: the body limit bounds it).
    ("1 MB prompt", post("/v1/jobs", js({"request": text_request(BIG_PROMPT, model=V26)})), 400, "prompt"),
    ("2501-character prompt", post("/v1/jobs", js({"request": text_request("p" * 2501, model=V26)})), 400,
     "prompt"),
    ("100 KB key", post("/v1/jobs", js(spec(key="k" * 100000))), 400, "key"),
    ("1 MB label value", post("/v1/jobs", js(spec(labels={"big": "v" * (1 << 20)}))), 400, "label"),
    ("10 KB model id", post("/v1/jobs", js({"request": text_request(model="m" * 10000)})), 400, "model"),
    ("nesting 5000 deep", post("/v1/jobs", DEEP), 400, None),
    ("a batch of 50 001 specs", None, None, None),  # built below (needs the limit), replaced in the test
    # --- invalid UTF-8 and control characters
    ("invalid UTF-8 in key", post("/v1/jobs", b'{"key": "k\xc3\x28", "request": %s}' % js(text_request())), 400,
     None),
    ("overlong UTF-8 in output", post("/v1/jobs", b'{"output": "\xc0\xaf.mp4", "request": %s}' % js(text_request())),
     400, None),
    ("lone surrogate escape", post("/v1/jobs", b'{"request": %s}' % js(text_request()).replace(
        b'"prompt": "a calm', b'"prompt": "\\ud800 a calm')), 400, None),
    ("NUL in output (escaped)", post("/v1/jobs", js(spec(output="a\u0000.mp4"))), 400, "output"),
    ("newline in key", post("/v1/jobs", js(spec(key="a\nb"))), 400, "key"),
    # --- path traversal in output
    ("output a/../../x.mp4", post("/v1/jobs", js(spec(output="a/../../x.mp4"))), 400, "output"),
    ("output absolute", post("/v1/jobs", js(spec(output="/etc/cron.d/x.mp4"))), 400, "output"),
    ("output ..", post("/v1/jobs", js(spec(output=".."))), 400, "output"),
    ("output with backslashes", post("/v1/jobs", js(spec(output="..\\..\\x.mp4"))), 400, "output"),
    ("output is a directory", post("/v1/jobs", js(spec(output="dir/"))), 400, "output"),
    ("output of 2000 bytes", post("/v1/jobs", js(spec(output="d/" * 1000 + "x.mp4"))), 400, "output"),
    ("output claimed by a stored job", "CLAIMED", 409, "output"),
    # --- duplicate keys
    ("key repeated three times in a batch", post("/v1/jobs", jobs_body(spec("a", key="k3"), spec("b", key="k3"),
                                                                       spec("c", key="k3"))), 400, "key"),
    ("a member name twice in one request", post("/v1/jobs", js(spec())[:-2] + b', "prompt": "another"}}'), 400,
     '"prompt" is given twice'),
    ("a member name twice in an NDJSON line", post("/v1/jobs", js(spec()) + b"\n" + b'{"key": "a", "k\\u0065y": "b"}\n',
                                                  "application/x-ndjson"), 400, '"key" is given twice'),
    # --- unknown routes and methods, bad queries and framing
    ("PUT /v1/jobs", req("PUT", "/v1/jobs", b"Content-Length: 0\r\n"), 405, None),
    ("PATCH a job", req("PATCH", "/v1/jobs/ANY", b"Content-Length: 0\r\n"), 405, None),
    ("POST /v1/status", req("POST", "/v1/status", b"Content-Length: 0\r\n"), 405, None),
    ("GET a cancel route", req("GET", "/v1/jobs/ANY/cancel"), 405, None),
    ("dot segments in the path", req("GET", "/v1/jobs/../status"), 404, None),
    ("encoded NUL in an id", req("GET", "/v1/jobs/%00"), 404, None),
    ("unknown verb", req("BREW", "/v1/jobs"), 405, None),
    ("absolute-form target", req("GET", "http://evil.example/v1/status"), 400, "target"),
    ("limit not a number", req("GET", "/v1/jobs?limit=abc"), 400, "limit"),
    ("limit overflows", req("GET", "/v1/jobs?limit=99999999999999999999999"), 400, "limit"),
    ("an unknown state among good ones", req("GET", "/v1/jobs?state=queued,bogus"), 400, "state"),
    ("a label filter without a name", req("GET", "/v1/jobs?label==v"), 400, "label"),
    ("bad percent-encoding", req("GET", "/v1/jobs?state=%zz"), 400, None),
    ("events since is not a number", req("GET", "/v1/events?since=abc"), 400, "since"),
    ("Content-Length and chunked", b"POST /v1/jobs HTTP/1.1\r\nHost: k\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, None),
    ("two different Content-Lengths", b"POST /v1/jobs HTTP/1.1\r\nHost: k\r\nContent-Length: 5\r\n"
     b"Content-Length: 6\r\n\r\nhello!", 400, None),
    ("negative Content-Length", b"POST /v1/jobs HTTP/1.1\r\nHost: k\r\nContent-Length: -1\r\n\r\n", 400, None),
    ("bad chunk size", b"POST /v1/jobs HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
     400, None),
    ("100 KB target", req("GET", "/v1/jobs/" + "x" * 100000), 431, None),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, None),
]


def snapshot(d):
    """Every stored job, its events and its labels, straight from the database (read-only)."""
    con = sqlite3.connect(f"file:{d.db_path}?mode=ro", uri=True)
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in ("jobs", "job_events", "job_labels", "batches", "create_attempts")}
    finally:
        con.close()


def test_hostile_requests_table():
    key = relcheck.canary_key()
    with Klingd(api_key=key, config_overrides={"provider": {"max_in_flight": 1}}) as d:
        # Seed jobs, then hold dispatch so that nothing changes by itself during the table.
        first = d.submit([spec("seed a", key="seed-a", output="claimed.mp4", labels={"t": "1"}),
                          spec("seed b", key="k3")])
        d.wait_batch(first["batch"], timeout=30)
        assert d.post("/v1/pause").status == 200
        d.submit([spec("queued while paused", key="held")])
        before = snapshot(d)
        api_before = d.get("/v1/jobs?limit=1000").body

        limit = d.get_json("/v1/status")["limits"]["max_body_bytes"]
        rows = []
        for what, data, status, word in ROWS:
            if data == "CLAIMED":
                data = post("/v1/jobs", js(spec("thief", output="claimed.mp4")))
            if data is None:
                # Many specs, under the byte limit: the batch size limit (or the catalog) says no.
                many = [{"request": {"model": "x"}}] * 50001
                data, status, word = post("/v1/jobs", js({"jobs": many})), 400, None
            rows.append((what, data, status, word))

        # Slow clients run alongside the table: they must not hold up anyone else.
        slow = {}

        def slow_loris():
            s = raw_connect(d, 30)
            t0 = time.monotonic()
            try:
                for b in b"GET /v1/status HTTP/1.1\r\nHost: k\r\nX-Drip: " + b"a" * 200:
                    s.send(bytes([b]))
                    time.sleep(0.25)
                    if time.monotonic() - t0 > 25:
                        break
            except OSError:
                pass
            try:
                out = s.recv(4096)
            except OSError:
                out = b""
            slow["loris"] = (parse_raw(out)[0], time.monotonic() - t0)
            s.close()

        def idle_crowd():
            socks = []
            for _ in range(300):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(d.socket_path)
                socks.append(s)
            slow["crowd_status"] = d.get("/v1/status").status
            time.sleep(2)
            for s in socks:
                s.close()

        threads = [threading.Thread(target=slow_loris), threading.Thread(target=idle_crowd)]
        for t in threads:
            t.start()

        results = []
        for what, data, status, word in rows:
            t0 = time.monotonic()
            got, body = raw(d, data)
            ok = got == status
            message = ""
            if got is not None and 400 <= got < 500:
                try:
                    e = json.loads(body)["error"]
                    message = e["message"]
                    ok = ok and isinstance(e["code"], str) and bool(message)
                    if word:
                        text = (message + " " + json.dumps(e.get("details", []))).lower()
                        ok = ok and word.lower() in text
                except (ValueError, KeyError, TypeError):
                    ok = False
                    message = f"<not a JSON error: {body[:80]!r}>"
            results.append((ok, what, status, got, message, time.monotonic() - t0))
            # After every row the daemon still answers.
            assert d.get("/v1/status").status == 200, f"daemon stopped serving after: {what}"

        # 100 MB really sent (not just announced): refused, and the connection does not wedge.
        size = 100 << 20
        t0 = time.monotonic()
        got = status_while_sending(d, b"POST /v1/jobs HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n"
                                      b"Content-Length: %d\r\n\r\n" % size, b" " * (1 << 20))
        results.append((got == 413, "100 MB body actually sent", 413, got, f"limit {limit}", time.monotonic() - t0))
        # The same as chunked, without any Content-Length.
        t0 = time.monotonic()
        got = status_while_sending(d, b"POST /v1/jobs HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n\r\n",
                                   b"100000\r\n" + b" " * 0x100000 + b"\r\n")
        results.append((got == 413, "100 MB chunked body", 413, got, "", time.monotonic() - t0))

        for t in threads:
            t.join(60)
        loris_status, loris_s = slow.get("loris", (None, 0))
        results.append((loris_status == 408 and loris_s < 15, "slow-loris header (1 byte / 0.25 s)", 408,
                        loris_status, f"cut after {loris_s:.1f}s", loris_s))
        results.append((slow.get("crowd_status") == 200, "300 idle connections, then a request", 200,
                        slow.get("crowd_status"), "", 0))

        width = max(len(r[1]) for r in results)
        for ok, what, status, got, message, secs in results:
            print(f"{'ok ' if ok else 'BAD'} {what:{width}}  want {status} got {got}  {secs:5.2f}s  {message[:90]!r}")
        print(f"{sum(r[0] for r in results)}/{len(results)} rows as expected")

        # Nothing stored changed, and the daemon still works.
        assert snapshot(d) == before, "stored jobs changed"
        assert d.get("/v1/jobs?limit=1000").body == api_before
        assert d.post("/v1/resume").status == 200
        held = d.job("key:held")["id"]
        assert d.wait_terminal([held], timeout=30)[held]["state"] == "completed"
        bad = [r for r in results if not r[0]]
        assert not bad, "\n".join(f"{r[1]}: want {r[2]} got {r[3]} {r[4]!r}" for r in bad)
        assert len(results) >= 40
        leaks = relcheck.find_secret(key, [d.state_dir, d.log_path])
        assert not leaks, leaks


def test_unreadable_ca_file_is_a_clear_startup_error():
    """A provider.ca_file that is not a PEM bundle stops klingd at start with exit 1 and a
    startup_failed line naming the file (it used to end in std::terminate: an abort, exit 134)."""
    d = Klingd(start=False, tls=True)
    try:
        bad = os.path.join(d.workdir, "not-a-ca.pem")
        with open(bad, "w") as f:
            f.write("this is not a certificate\n")
        try:
            d.start({"provider": {"ca_file": bad}}, timeout=10)
            raise AssertionError("klingd started with an unreadable CA file")
        except RuntimeError as e:
            text = str(e)
        assert "exited with 1 at start" in text, text
        assert "klingd.startup_failed" in text and "cannot load CA file" in text and bad in text, text
        assert "terminate" not in text, text
    finally:
        d.fake.stop()


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
