"""Helpers for integration tests that run the real klingd and klingctl (standard library only).

    import klingtest
    with klingtest.Klingd(config_overrides={"provider": {"max_in_flight": 50}}) as d:
        r = d.post("/v1/jobs", {"request": klingtest.text_request("a cat")})
        assert r.status == 201, r
        d.wait_terminal([j["id"] for j in r.json()["jobs"]])
        out = d.ctl("status")                 # klingctl --socket <ours> status

Binaries come from $KLINGD_BIN, $KLINGCTL_BIN and $FAKE_AIMLAPI_BIN (set by CTest). Each Klingd
has its own temporary directory (socket, state, videos, logs), kept when a test fails and
$KLINGD_KEEP_TMP is set. A fake-aimlapi (tests/fake_provider/fakeprov.py) is started unless one
is passed in. Everything listens on a Unix socket or 127.0.0.1.
"""

import copy
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "fake_provider"))
import fakeprov  # noqa: E402

TERMINAL = ("completed", "failed", "canceled")
DEFAULT_MODEL = "klingai/video-v3-pro-text-to-video"


def binary(env_name, fallback):
    path = os.environ.get(env_name)
    if path:
        return path
    src = os.environ.get("KLINGD_SOURCE_DIR", os.path.join(_HERE, "..", ".."))
    for build in ("build", "build-api"):
        candidate = os.path.join(src, build, fallback)
        if os.path.exists(candidate):
            return candidate
    raise RuntimeError(f"set {env_name} (the path of {os.path.basename(fallback)})")


def klingd_bin():
    return binary("KLINGD_BIN", "daemon/klingd")


def klingctl_bin():
    return binary("KLINGCTL_BIN", "cli/klingctl")


def text_request(prompt="a calm lake at dawn", model=DEFAULT_MODEL, duration=5, **extra):
    r = {"model": model, "prompt": prompt, "duration": duration}
    r.update(extra)
    return r


def spec(prompt="a calm lake at dawn", **fields):
    """A job spec with a valid text-to-video request; keyword arguments add spec fields."""
    s = {"request": text_request(prompt)}
    s.update(fields)
    return s


def deep_merge(base, overrides):
    """Merges `overrides` into a copy of `base`. Keys may be nested dicts or dotted paths
    ("poll.initial_s": 0.1)."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        target = out
        parts = key.split(".")
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        last = parts[-1]
        if isinstance(value, dict) and isinstance(target.get(last), dict):
            target[last] = deep_merge(target[last], value)
        else:
            target[last] = copy.deepcopy(value)
    return out


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<Response {self.status} {self.body[:400]!r}>"


def raw_connect(d, timeout=5):
    """A new connection to klingd `d`'s socket, for tests that write raw bytes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(d.socket_path)
    return s


def _content_length(out):
    head = out.split(b"\r\n\r\n", 1)[0].decode(errors="replace").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def raw_read(s, read="eof"):
    """Reads from `s` until EOF (read="eof": everything the daemon sends before it closes) or
    until one response is complete (read="response": its header and Content-Length body),
    stopping early on a timeout or reset; closes `s`."""
    assert read in ("eof", "response"), read
    out = b""
    try:
        while read == "eof" or b"\r\n\r\n" not in out or \
                len(out) < out.find(b"\r\n\r\n") + 4 + _content_length(out):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out


def raw_exchange(d, data, timeout=5, read="eof"):
    """Sends raw bytes on a new connection to `d`'s socket and returns what raw_read reads."""
    s = raw_connect(d, timeout)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return raw_read(s, read)


def parse_raw(out):
    """(status, body bytes) of a raw response; (None, out) when it is not one."""
    if not out.startswith(b"HTTP/1.1 "):
        return None, out
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head[9:12]), body


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket."""

    def __init__(self, path, timeout=10):
        super().__init__("klingd", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Klingd:
    """One klingd process with its own config, state and socket in a temporary directory."""

    def __init__(self, config_overrides=None, fake=None, fake_args=("--queued-s", "0.05", "--generating-s", "0.1"),
                 tls=False, api_key="test-key", workdir=None, start=True, env=None):
        self.workdir = workdir or tempfile.mkdtemp(prefix="klingd-it-")
        self.socket_path = os.path.join(self.workdir, "run", "klingd.sock")
        self.state_dir = os.path.join(self.workdir, "state")
        self.videos_dir = os.path.join(self.state_dir, "videos")
        self.db_path = os.path.join(self.state_dir, "klingd.db")
        self.config_path = os.path.join(self.workdir, "klingd.json")
        self.log_path = os.path.join(self.workdir, "klingd.log")
        self.env = env or {}
        self.api_key = api_key
        self._own_fake = fake is None
        if fake is None:
            tls_files = fakeprov.make_tls(os.path.join(self.workdir, "tls")) if tls else None
            os.makedirs(os.path.join(self.workdir, "fake"), exist_ok=True)
            fake = fakeprov.FakeProvider(args=list(fake_args), tls=tls_files, api_key=api_key,
                                         workdir=os.path.join(self.workdir, "fake"))
        self.fake = fake
        key_file = os.path.join(self.workdir, "api_key")
        with open(key_file, "w") as f:
            f.write(api_key + "\n")
        os.chmod(key_file, 0o600)
        provider = {
            "base_url": fake.base_url,
            "api_key_file": key_file,
            "request_timeout_s": 5,
            "max_in_flight": 20,
            "creates_per_minute": 100000,
            "allow_http": not fake.tls,
        }
        if fake.tls:
            provider["ca_file"] = fake.tls.ca
        self.base_config = {
            "provider": provider,
            "poll": {"initial_s": 0.05, "factor": 1.5, "max_s": 0.2, "jitter": 0.1, "slow_after_s": 3600, "slow_s": 1},
            "retry": {"max_attempts": 5, "base_s": 0.05, "max_s": 0.5},
            "download": {"allow_http": not fake.tls, "timeout_s": 20},
            "store": {"state_dir": self.state_dir},
            "socket": {"path": self.socket_path},
            "log": {"level": "info"},
        }
        self.config = None
        self.proc = None
        self._log = None
        self.failed = False
        if start:
            self.start(config_overrides)

    # --- process -------------------------------------------------------------------------------

    def write_config(self, config_overrides=None):
        self.config = deep_merge(self.base_config, config_overrides)
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)

    def start(self, config_overrides=None, timeout=15):
        """Writes the config (base + overrides; None keeps the previous overrides) and starts
        klingd; returns once GET /v1/status answers 200."""
        if config_overrides is not None or self.config is None:
            self.write_config(config_overrides)
        env = dict(os.environ)
        for k in ("KLINGD_SOCKET", "AIMLAPI_BASE_URL", "AIMLAPI_KEY", "JOURNAL_STREAM", "NOTIFY_SOCKET"):
            env.pop(k, None)
        env.update(self.env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([klingd_bin(), "--config", self.config_path], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"klingd exited with {self.proc.returncode} at start:\n{self.log()[-4000:]}")
            try:
                r = self.request("GET", "/v1/status", timeout=2)
                if r.status == 200:
                    return self
                last = r
            except OSError as e:
                last = e
            time.sleep(0.02)
        raise RuntimeError(f"klingd did not answer on {self.socket_path} within {timeout}s ({last}):\n"
                           f"{self.log()[-4000:]}")

    def stop(self, sig=signal.SIGTERM, timeout=20, check=True):
        """Stops klingd with `sig`; with SIGTERM and check, asserts a clean exit 0. Returns the exit code."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"klingd did not exit within {timeout}s of signal {sig}:\n{self.log()[-4000:]}")
        rc = self.proc.returncode
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None
        if check and sig in (signal.SIGTERM, signal.SIGINT):
            assert rc == 0, f"klingd exited with {rc}:\n{self.log()[-4000:]}"
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL, check=False)

    def restart(self, config_overrides=None):
        self.stop()
        return self.start(config_overrides)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self):
        try:
            if self.running():
                self.stop(check=False)
        finally:
            if self._own_fake:
                self.fake.stop()
            if self.failed and os.environ.get("KLINGD_KEEP_TMP"):
                print(f"kept {self.workdir}", file=sys.stderr)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is not None:
            self.failed = True
            print(f"--- klingd log (last 4000 chars) ---\n{self.log()[-4000:]}", file=sys.stderr)
        self.close()

    # --- socket API ---------------------------------------------------------------------------

    def connection(self, timeout=10):
        return UnixHTTPConnection(self.socket_path, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        """One request on a fresh connection. `body` may be bytes, str, or anything JSON-able."""
        headers = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def get_json(self, path):
        r = self.get(path)
        assert r.status == 200, f"GET {path}: {r}"
        return r.json()

    def submit(self, specs, max_usd=None):
        """POSTs {"jobs": specs}; asserts 201; returns the response JSON."""
        body = {"jobs": specs}
        if max_usd is not None:
            body["max_usd"] = max_usd
        r = self.post("/v1/jobs", body)
        assert r.status == 201, f"submit: {r}"
        return r.json()

    def job(self, ref):
        return self.get_json("/v1/jobs/" + ref)

    def events(self, since=0, stop=None, timeout=10):
        """Reads GET /v1/events?since= until `stop(events)` is true (default: nothing more
        arrives within 0.5 s); returns the events read."""
        conn = self.connection(timeout)
        out = []
        try:
            conn.request("GET", f"/v1/events?since={since}")
            # Without `stop`, a pause of 0.5 s means the replay is over.
            conn.sock.settimeout(0.5 if stop is None else timeout)
            r = conn.getresponse()
            assert r.status == 200, r.status
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    line = r.readline()
                except (socket.timeout, TimeoutError):
                    if stop is None:
                        break
                    continue
                if not line:
                    break
                if line.strip():
                    out.append(json.loads(line))
                    if stop is not None and stop(out):
                        break
        finally:
            conn.close()
        return out

    def wait_for(self, predicate, timeout=30, interval=0.05, what="condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def wait_terminal(self, ids, timeout=60):
        """Waits until every job in `ids` is terminal; returns {id: job}."""
        pending = set(ids)
        jobs = {}

        def check():
            for i in list(pending):
                j = self.job(i)
                if j["state"] in TERMINAL:
                    jobs[i] = j
                    pending.discard(i)
            return not pending

        try:
            self.wait_for(check, timeout, 0.1, f"{len(pending)} jobs to end")
        except AssertionError as e:
            # Say what the stragglers are doing: a bare timeout on a CI log is not a diagnosis.
            left = []
            for i in sorted(pending)[:5]:
                j = self.job(i)
                left.append({k: j.get(k) for k in ("id", "key", "state", "step", "attempts", "generation_id", "error")}
                            | {"history": [(h.get("at"), h.get("state"), h.get("step"), (h.get("error") or {}).get("code")) for h in j.get("history", [])][-8:]})
            raise AssertionError(f"{e}; {len(pending)} still pending, first: {left}") from None
        return jobs

    def wait_batch(self, batch, timeout=60):
        return self.wait_for(lambda: (lambda b: b if b["done"] else None)(self.get_json(f"/v1/batches/{batch}")),
                             timeout, 0.1, f"batch {batch}")

    # --- klingctl -----------------------------------------------------------------------------

    def ctl(self, *args, input=None, timeout=60, env=None, socket_arg=True, check=None):
        """Runs klingctl (with --socket <ours> unless socket_arg is False). `check`: the exit
        code expected (asserted). Returns CompletedProcess with text stdout/stderr."""
        cmd = [klingctl_bin()]
        if socket_arg:
            cmd += ["--socket", self.socket_path]
        cmd += list(args)
        e = dict(os.environ)
        e.pop("KLINGD_SOCKET", None)
        e.update(env or {})
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=e)
        if check is not None:
            assert p.returncode == check, (f"klingctl {' '.join(args)}: exit {p.returncode}, expected {check}\n"
                                           f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
        return p

    def ctl_json(self, *args, **kw):
        p = self.ctl("--json", *args, check=kw.pop("check", 0), **kw)
        return json.loads(p.stdout)


class Traffic:
    """Other jobs' creates, one every `every` seconds, so the provider's request log keeps
    gaining rows (same model) while a create is being settled."""

    def __init__(self, d, every=0.5, limit=60):
        self.d, self.every, self.limit = d, every, limit
        self.ids = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for i in range(self.limit):
            if self._stop.wait(self.every):
                return
            r = self.d.submit([{"key": f"traffic-{i}", "request": text_request(f"traffic {i}")}])
            self.ids.append(r["jobs"][0]["id"])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# Engine tests: a fast fake, batches of specs, every job, the invariants each test ends with.
FAST_FAKE = ("--queued-s", "0.05", "--generating-s", "0.15")


def specs(n, prefix="job", **request_extra):
    return [{"key": f"{prefix}-{i}", "request": text_request(f"{prefix} prompt {i}", **request_extra)} for i in range(n)]


def all_jobs(d):
    out, after = [], None
    while True:
        page = d.get_json("/v1/jobs?limit=1000" + (f"&after={after}" if after else ""))
        out += page["jobs"]
        after = page["next"]
        if not after:
            return out


def check_store(d, jobs, fake_stats):
    """The invariants every test ends with: files are what they claim, no .part files,
    the database is intact, no job paid twice."""
    gens = {g["id"]: g for g in fake_stats["generations"]}
    for j in jobs:
        if j["state"] == "completed":
            v = j["video"]
            data = open(v["path"], "rb").read()
            assert hashlib.sha256(data).hexdigest() == v["sha256"], j["id"]
            assert len(data) == v["bytes"]
            assert data[4:8] == b"ftyp"
            g = gens[j["generation_id"]]
            # The file is this job's own generation, not another's.
            assert g["sha256"] == v["sha256"], (j["id"], g["id"])
            assert g["client_request_id"].startswith(j["id"] + "."), (j["id"], g["client_request_id"])
    parts = glob.glob(os.path.join(d.videos_dir, "**", "*.part"), recursive=True)
    assert not parts, parts
    con = sqlite3.connect(d.db_path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    for prefix, c in fake_stats["create_calls_by_job"].items():
        assert c["recorded"] <= 1, f"job {prefix} was billed {c['recorded']} times"


# systemd units (tests of systemd/): configured as cmake/install.cmake does, then read.
SYSTEMD_DIR = os.path.join(os.environ.get("KLINGD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")), "systemd")


def systemd_analyze():
    path = shutil.which("systemd-analyze")
    if not path:
        raise AssertionError("systemd-analyze not found: scripts/install-deps.sh --test installs the systemd package")
    return path


def configure_unit(template, out_dir, name):
    """Substitutes every @VAR@ as cmake/install.cmake does; fails on any left over, so a
    placeholder added to a unit without its CMake variable is caught."""
    values = {
        "KLINGD_BIN_DIR": os.path.dirname(os.path.abspath(klingd_bin())),
        "KLINGD_SYSCONF_DIR": "/etc/klingd",
        "KLINGD_DOC_DIR": "/usr/share/doc/klingd",
        "KLINGD_EXAMPLE_CONFIG": "/usr/share/doc/klingd/klingd.jsonc",
        "KLINGD_RUNTIME_SOCKET": "/run/klingd/klingd.sock",
    }
    with open(os.path.join(SYSTEMD_DIR, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"{template}: unknown placeholders {left}"
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def unit_settings(path):
    """The unit's [Service] assignments as {key: [values…]}."""
    out = {}
    section = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


def run_tool(cmd, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=e)


def user_env(tmp):
    # `--user` mode wants $XDG_RUNTIME_DIR even offline; CI has no session.
    d = os.path.join(tmp, "xdg")
    os.makedirs(d, mode=0o700, exist_ok=True)
    return {"XDG_RUNTIME_DIR": d}


def run_tests(namespace):
    """Runs every test_* function of `namespace` in order, or only those named on the
    command line; returns the exit status for sys.exit (fakeprov.run_tests does the work)."""
    only = set(sys.argv[1:])
    return fakeprov.run_tests({n: f for n, f in namespace.items() if not only or n in only})
