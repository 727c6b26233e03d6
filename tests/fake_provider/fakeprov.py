"""Helpers for tests that run against fake-aimlapi (standard library only).

    from fakeprov import FakeProvider, make_tls
    tls = make_tls(tmpdir)                       # throwaway CA + server cert for 127.0.0.1
    with FakeProvider(tls=tls, args=["--queued-s", "0.1"]) as fake:
        r = fake.create({"model": "...", "prompt": "..."}, client_request_id="job1.1")
        fake.stats(); fake.config({"failure_rate": 0.5}); fake.reset()

The binary comes from $FAKE_AIMLAPI_BIN. Everything listens on 127.0.0.1 only.
"""

import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import traceback
import urllib.parse
from collections import namedtuple

TlsFiles = namedtuple("TlsFiles", "ca cert key")

# Errors a request may end with when the fake resets or cuts a connection.
CONNECTION_ERRORS = (ConnectionError, http.client.HTTPException, OSError)


def make_tls(directory):
    """Make a throwaway CA and a server certificate for 127.0.0.1 and localhost in
    `directory` with the openssl CLI. Returns TlsFiles(ca, cert, key) paths."""
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*cmd):
        subprocess.run(["openssl", *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    run("req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2",
        "-subj", "/CN=klingd test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=localhost")
    with open(p("server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid,issuer\n")
    run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-out", p("server.pem"), "-days", "2", "-extfile", p("server.ext"))
    return TlsFiles(p("ca.pem"), p("server.pem"), p("server.key"))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Response({self.status}, {self.body[:200]!r})"


def fake_binary():
    path = os.environ.get("FAKE_AIMLAPI_BIN")
    if path:
        return path
    src = os.environ.get("KLINGD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    for build in ("build-fake", "build"):
        candidate = os.path.join(src, build, "tests", "fake_provider", "fake-aimlapi")
        if os.path.exists(candidate):
            return candidate
    raise RuntimeError("set FAKE_AIMLAPI_BIN to the fake-aimlapi binary")


class FakeProvider:
    """One fake-aimlapi process on 127.0.0.1 and an ephemeral port.

    args: extra command-line flags; tls: TlsFiles from make_tls (HTTPS) or None (HTTP)."""

    def __init__(self, args=(), tls=None, api_key="test-key", workdir=None):
        self.api_key = api_key
        self.tls = tls
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="fake-aimlapi-")
        port_file = os.path.join(self.workdir, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        cmd = [fake_binary(), "--port", "0", "--port-file", port_file, "--api-key", api_key, *args]
        if tls:
            cmd += ["--tls-cert", tls.cert, "--tls-key", tls.key]
        self.log_path = os.path.join(self.workdir, "fake.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("fake-aimlapi did not start:\n" + self.log())
            time.sleep(0.01)
        with open(port_file) as f:
            self.port = int(f.read().strip())
        self.scheme = "https" if tls else "http"
        self.base_url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.ssl_context = ssl.create_default_context(cafile=tls.ca) if tls else None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # --- raw HTTP ---------------------------------------------------------------------------

    def connection(self, timeout=10):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.ssl_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path_or_url, body=None, headers=None, auth=True, timeout=10):
        """One request on a fresh connection. Raises one of CONNECTION_ERRORS when the fake
        resets or truncates; otherwise returns a Response whatever the status."""
        parts = urllib.parse.urlsplit(path_or_url)
        target = parts.path + ("?" + parts.query if parts.query else "") if parts.scheme else path_or_url
        hdrs = dict(headers or {})
        if auth and "Authorization" not in hdrs:
            hdrs["Authorization"] = f"Bearer {self.api_key}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn = self.connection(timeout)
        try:
            conn.request(method, target, body=body, headers=hdrs)
            r = conn.getresponse()
            # Chunked reads: one read() of a large body raised MemoryError in Python 3.11.
            chunks = []
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            if r.length:  # http.client counts down what is still owed: a cut body
                raise http.client.IncompleteRead(b"".join(chunks), r.length)
            return Response(r.status, r.getheaders(), b"".join(chunks))
        finally:
            conn.close()

    # --- provider API -----------------------------------------------------------------------

    UNIVERSAL = "/v2/video/generations"
    LEGACY = "/v2/generate/video/kling/generation"

    def create(self, body, legacy=False, client_request_id=None, headers=None):
        hdrs = dict(headers or {})
        if client_request_id is not None:
            hdrs["X-Client-Request-Id"] = client_request_id
        return self.request("POST", self.LEGACY if legacy else self.UNIVERSAL, body, hdrs)

    def poll(self, generation_id, legacy=False, headers=None):
        query = urllib.parse.urlencode({"generation_id": generation_id})
        return self.request("GET", f"{self.LEGACY if legacy else self.UNIVERSAL}?{query}", headers=headers)

    def logs(self, **params):
        """GET /v2/logs; list values become repeated parameters (model=[a, b])."""
        return self.request("GET", "/v2/logs?" + urllib.parse.urlencode(params, doseq=True))

    def billing(self):
        """GET /v2/billing (the balance)."""
        return self.request("GET", "/v2/billing")

    def transactions(self, **params):
        """GET /v2/billing/transactions (one page; pass cursor= from pagination.next_cursor)."""
        return self.request("GET", "/v2/billing/transactions?" + urllib.parse.urlencode(params))

    def wait_completed(self, generation_id, legacy=False, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.poll(generation_id, legacy)
            if r.status == 200:
                doc = r.json()
                if doc["status"] == "completed" and doc.get("video"):
                    return doc
                if doc["status"] in ("error", "failed"):
                    return doc
            time.sleep(0.05)
        raise AssertionError(f"generation {generation_id} did not finish")

    def download(self, url, headers=None):
        return self.request("GET", url, headers=headers, auth=False)

    # --- admin ------------------------------------------------------------------------------

    def _admin(self, method, path, body=None):
        r = self.request(method, path, body, auth=False)
        if r.status != 200:
            raise RuntimeError(f"{method} {path}: {r.status} {r.body!r}")
        return r.json()

    def stats(self, sha256=True):
        return self._admin("GET", "/__admin/stats" + ("" if sha256 else "?sha256=0"))

    def config(self, changes=None):
        """POST the changes (or GET the configuration when None); returns the configuration."""
        if changes is None:
            return self._admin("GET", "/__admin/config")
        return self._admin("POST", "/__admin/config", changes)

    def reset(self, keep_config=False):
        return self._admin("POST", "/__admin/reset", {"keep_config": keep_config})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_tests(namespace):
    """Run every test_* function in `namespace` in order and print a summary line; returns
    the process exit status (non-zero on any failure), for sys.exit."""
    tests = [(name, fn) for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    passed = failed = 0
    for name, fn in tests:
        started = time.monotonic()
        try:
            fn()
            passed += 1
            print(f"ok   {name} ({time.monotonic() - started:.2f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0
