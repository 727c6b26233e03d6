"""Dashboard (docs/contract.md §4.5, issue 11) without a browser: the token (401), the Host check
(DNS rebinding), the Origin check on POST, MP4s with Range (206/416), only completed
jobs' videos reachable, the routes the dashboard does not expose, the token file, and
`klingctl dashboard`."""

import http.client
import json
import os
import stat
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd, spec  # noqa: E402

DASH = {"dashboard": {"listen": "127.0.0.1:0"}}


class Dash:
    """The dashboard of a running Klingd, from the URL `klingctl dashboard` prints."""

    def __init__(self, d):
        self.url = d.ctl("dashboard", check=0).stdout.strip()
        u = urllib.parse.urlsplit(self.url)
        self.port = u.port
        self.token = urllib.parse.parse_qs(u.fragment)["token"][0]
        self.origin = f"http://127.0.0.1:{self.port}"

    def request(self, method, path, headers=None, body=None, auth=True):
        h = {"Host": f"127.0.0.1:{self.port}"}
        if auth:
            h["Authorization"] = "Bearer " + self.token
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return klingtest.Response(r.status, r.getheaders(), r.read())
        finally:
            c.close()


def completed_job(d):
    r = d.submit([spec("a lighthouse in fog")])
    jid = r["jobs"][0]["id"]
    job = d.wait_terminal([jid])[jid]
    assert job["state"] == "completed", job
    return job


def test_token_file_and_klingctl():
    with Klingd(config_overrides=DASH) as d:
        path = os.path.join(d.state_dir, "dashboard.token")
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        token = open(path).read().strip()
        assert len(token) == 64 and all(c in "0123456789abcdef" for c in token), token
        dash = Dash(d)
        assert dash.token == token
        assert dash.url.startswith("http://127.0.0.1:"), dash.url
        info = d.get_json("/v1/dashboard")
        assert info == {"enabled": True, "url": dash.url}, info
        # The same token after a restart (it is kept, not remade).
        d.restart()
        assert Dash(d).token == token
        assert token not in d.log(), "the token must not be logged"


def test_dashboard_off():
    with Klingd() as d:
        assert d.get_json("/v1/dashboard") == {"enabled": False, "url": None}
        p = d.ctl("dashboard", check=1)
        assert "dashboard.listen" in p.stderr, p.stderr
        assert not os.path.exists(os.path.join(d.state_dir, "dashboard.token"))


def test_token_required():
    with Klingd(config_overrides=DASH) as d:
        dash = Dash(d)
        # The URL carries the token in its fragment, which browsers never send.
        assert dash.url == f"http://127.0.0.1:{dash.port}/#token={dash.token}", dash.url
        for path in ("/v1/status", "/v1/jobs", "/v1/events", "/v1/batches", "/v1/cost"):
            r = dash.request("GET", path, auth=False)
            assert r.status == 401, (path, r)
            assert r.json()["error"]["code"] == "unauthorized"
        assert dash.request("GET", "/v1/status", {"Authorization": "Bearer nope"}, auth=False).status == 401
        assert dash.request("GET", "/v1/status", {"Authorization": "Bearer " + "0" * 64}, auth=False).status == 401
        # Neither the query nor a cookie carries it any more.
        assert dash.request("GET", "/v1/status?token=" + dash.token, auth=False).status == 401
        r = dash.request("GET", "/v1/status", {"Cookie": f"klingd_dashboard_{dash.port}={dash.token}"}, auth=False)
        assert r.status == 401, r
        # ... and an old cookie is deleted.
        cookie = r.header("Set-Cookie") or ""
        assert cookie.startswith(f"klingd_dashboard_{dash.port}=;") and "Max-Age=0" in cookie, cookie
        # The page and its assets are static and hold no data: they load without the token,
        # set no cookie, and keep the hardening headers.
        for path in ("/", "/assets/app.js", "/assets/app.css"):
            r = dash.request("GET", path, auth=False)
            assert r.status == 200, (path, r)
            assert r.header("Set-Cookie") is None, (path, r.header("Set-Cookie"))
            assert dash.token.encode() not in r.body
            assert "default-src 'none'" in r.header("Content-Security-Policy")
            assert r.header("Referrer-Policy") == "no-referrer"
        r = dash.request("GET", "/", auth=False)
        assert b"<title>klingd dashboard</title>" in r.body, r
        # The Host check applies to the static page as well.
        assert dash.request("GET", "/", {"Host": "evil.example"}, auth=False).status == 403
        assert dash.request("GET", "/v1/status").status == 200
        assert dash.token not in d.log(), "the token must not be logged"


def test_video_links():
    with Klingd(config_overrides=DASH) as d:
        dash = Dash(d)
        job = completed_job(d)
        data = open(job["video"]["path"], "rb").read()
        path = f"/v1/jobs/{job['id']}/video"
        assert dash.request("GET", path, auth=False).status == 401
        assert dash.request("GET", f"/v1/jobs/{job['id']}/video_link", auth=False).status == 401
        link = dash.request("GET", f"/v1/jobs/{job['id']}/video_link").json()
        url = link["url"]
        assert url.startswith(path + "?exp=") and "&sig=" in url, link
        assert 0 < link["expires_in_s"] <= 900, link
        assert dash.token not in url
        r = dash.request("GET", url, auth=False)
        assert r.status == 200 and r.body == data, r.status
        r = dash.request("GET", url, {"Range": "bytes=0-9"}, auth=False)
        assert r.status == 206 and r.body == data[:10]
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        exp, sig = int(q["exp"][0]), q["sig"][0]
        bad_sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        other = completed_job(d)
        for bad in (f"{path}?exp={exp}&sig={bad_sig}",          # forged
                    f"{path}?exp={exp + 1}&sig={sig}",          # a longer life
                    f"{path}?exp={exp - 10000}&sig={sig}",      # expired
                    f"{path}?exp={exp + 10**9}&sig={sig}",      # far future
                    f"{path}?sig={sig}", f"{path}?exp={exp}",
                    f"/v1/jobs/{other['id']}/video?exp={exp}&sig={sig}"):  # another job's video
            assert dash.request("GET", bad, auth=False).status == 401, bad
        # A link opens the video only, nothing else.
        assert dash.request("GET", f"/v1/jobs/{job['id']}?exp={exp}&sig={sig}", auth=False).status == 401
        assert sig not in d.log(), "the signature must not be logged"
        d.post("/v1/pause")
        queued = d.submit([spec("not yet")])["jobs"][0]["id"]
        assert dash.request("GET", f"/v1/jobs/{queued}/video_link").status == 404


def test_host_check():
    with Klingd(config_overrides=DASH) as d:
        dash = Dash(d)
        for host in ("evil.example", f"evil.example:{dash.port}", f"127.0.0.1.evil.example:{dash.port}",
                     "127.0.0.1:1", f"127.evil.com:{dash.port}", ""):
            r = dash.request("GET", "/v1/status", {"Host": host})
            assert r.status == 403, (host, r)
        for host in (f"127.0.0.1:{dash.port}", f"localhost:{dash.port}", f"LOCALHOST:{dash.port}", f"[::1]:{dash.port}"):
            assert dash.request("GET", "/v1/status", {"Host": host}).status == 200, host


def test_origin_on_post():
    with Klingd(config_overrides=DASH) as d:
        dash = Dash(d)
        r = d.submit([spec("x")])
        jid = r["jobs"][0]["id"]
        d.post("/v1/pause")  # keep it queued
        for origin in (None, "null", "http://evil.example", f"http://127.0.0.1:{dash.port + 1}",
                       f"https://127.0.0.1:{dash.port}"):
            h = {} if origin is None else {"Origin": origin}
            r = dash.request("POST", f"/v1/jobs/{jid}/cancel", h)
            assert r.status == 403, (origin, r)
        assert d.job(jid)["state"] != "canceled"
        r = dash.request("POST", f"/v1/jobs/{jid}/cancel", {"Origin": dash.origin})
        assert r.status == 200, r
        assert d.job(jid)["state"] == "canceled"
        r = dash.request("POST", f"/v1/jobs/{jid}/retry", {"Origin": dash.origin})
        assert r.status == 200, r
        # Submitting and pausing stay on the socket.
        r = dash.request("POST", "/v1/jobs", {"Origin": dash.origin, "Content-Type": "application/json"},
                         json.dumps(spec("no")))
        assert r.status == 404, r
        assert dash.request("POST", "/v1/resume", {"Origin": dash.origin}).status == 404
        assert dash.request("GET", "/metrics").status == 404
        assert dash.request("GET", "/v1/dashboard").status == 404


def test_video_range():
    with Klingd(config_overrides=DASH) as d:
        dash = Dash(d)
        job = completed_job(d)
        data = open(job["video"]["path"], "rb").read()
        n = len(data)
        path = f"/v1/jobs/{job['id']}/video"
        r = dash.request("GET", path)
        assert r.status == 200 and r.body == data, r.status
        assert r.header("Content-Type") == "video/mp4" and r.header("Accept-Ranges") == "bytes"
        r = dash.request("GET", path, {"Range": "bytes=0-99"})
        assert r.status == 206 and r.body == data[:100], r.status
        assert r.header("Content-Range") == f"bytes 0-99/{n}"
        r = dash.request("GET", path, {"Range": "bytes=100-"})
        assert r.status == 206 and r.body == data[100:]
        assert r.header("Content-Range") == f"bytes 100-{n - 1}/{n}"
        r = dash.request("GET", path, {"Range": "bytes=-10"})
        assert r.status == 206 and r.body == data[-10:]
        r = dash.request("GET", path, {"Range": f"bytes=10-{n + 1000}"})
        assert r.status == 206 and r.body == data[10:]
        for bad in (f"bytes={n}-", f"bytes={n + 5}-{n + 10}", "bytes=-0"):
            r = dash.request("GET", path, {"Range": bad})
            assert r.status == 416, (bad, r)
            assert r.header("Content-Range") == f"bytes */{n}"
        r = dash.request("HEAD", path)
        assert r.status == 200 and r.body == b"" and int(r.header("Content-Length")) == n
        # Several requests on one keep-alive connection: the body length was exact.
        c = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=10)
        for _ in range(3):
            c.request("GET", path, headers={"Authorization": "Bearer " + dash.token, "Range": "bytes=5-9"})
            resp = c.getresponse()
            assert resp.status == 206 and resp.read() == data[5:10]
        c.close()


def test_only_completed_jobs_videos():
    with Klingd(config_overrides=DASH) as d:
        dash = Dash(d)
        job = completed_job(d)
        d.post("/v1/pause")
        queued = d.submit([spec("not yet")])["jobs"][0]["id"]
        # A file in the state directory next to the videos: not reachable by any path.
        for path in (f"/v1/jobs/{queued}/video", "/v1/jobs/nope/video", "/v1/jobs/..%2Fklingd.db/video",
                     "/v1/jobs/%2E%2E/video", "/klingd.db", "/videos/" + os.path.basename(job["video"]["path"]),
                     "/assets/../klingd.db", "/assets/dashboard.token", "/dashboard.token",
                     "/v1/jobs/" + urllib.parse.quote(job["video"]["path"], safe="") + "/video",
                     f"/v1/jobs/key:{job['id']}/video"):
            r = dash.request("GET", path)
            assert r.status == 404, (path, r)
            assert dash.token.encode() not in r.body and b"SQLite" not in r.body
        # The video of a completed job is gone from disk: 404, not 500.
        os.unlink(job["video"]["path"])
        assert dash.request("GET", f"/v1/jobs/{job['id']}/video").status == 404


def test_batches_and_api_through_dashboard():
    with Klingd(config_overrides=DASH) as d:
        dash = Dash(d)
        r = d.submit([spec("a"), spec("b")])
        d.wait_batch(r["batch"])
        b = dash.request("GET", "/v1/batches").json()["batches"]
        assert b[0]["batch"] == r["batch"] and b[0]["total"] == 2 and b[0]["counts"]["completed"] == 2, b
        assert dash.request("GET", f"/v1/jobs?batch={r['batch']}&limit=1").json()["next"]
        assert dash.request("GET", "/v1/jobs/" + r["jobs"][0]["id"]).json()["history"]
        assert dash.request("GET", "/v1/cost").status == 200
        assert d.get_json("/v1/batches")["batches"][0]["batch"] == r["batch"]


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
