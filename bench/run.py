#!/usr/bin/env python3
"""klingd benchmarks (issue 9): submit throughput, scale, download, restart; WAL size (issue 15).

    bench/run.sh                     # all of them, in a private network namespace when possible
    python3 bench/run.py --only submit,restart --repeat 3
    python3 bench/run.py --only wal            # WAL size after 10,000 jobs against its bound
    python3 bench/run.py --only polls --repeat 1   # learned poll schedule against a fixed 15 s one

Every figure is set against a baseline measured in the same run on the same machine (raw
SQLite, fake-aimlapi's own CPU, curl, klingd on an empty store); the table gives the figure,
the baseline, their ratio, the target and PASS/MISS. Each measurement is repeated (--repeat)
and the median reported: shared machines are noisy and the ratios are what matter.

Binaries: $KLINGD_BUILD_DIR (default build-bench, else build) holds daemon/klingd,
tests/fake_provider/fake-aimlapi and bench/klingd-bench-sqlite. Standard library only; uses
tests/integration/klingtest.py and tests/fake_provider/fakeprov.py. Everything listens on
127.0.0.1 or a Unix socket; every wait is bounded.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "tests", "fake_provider"))
sys.path.insert(0, HERE)

MiB = 1 << 20
GiB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")


def build_dir():
    d = os.environ.get("KLINGD_BUILD_DIR")
    if d:
        return d
    for name in ("build-bench", "build"):
        if os.path.exists(os.path.join(SRC, name, "daemon", "klingd")):
            return os.path.join(SRC, name)
    sys.exit("bench: no build found; set KLINGD_BUILD_DIR")


BUILD = build_dir()
os.environ.setdefault("KLINGD_BIN", os.path.join(BUILD, "daemon", "klingd"))
os.environ.setdefault("FAKE_AIMLAPI_BIN", os.path.join(BUILD, "tests", "fake_provider", "fake-aimlapi"))
os.environ.setdefault("KLINGCTL_BIN", os.path.join(BUILD, "cli", "klingctl"))
SQLITE_BENCH = os.environ.get("KLINGD_BENCH_SQLITE") or os.path.join(BUILD, "bench", "klingd-bench-sqlite")
SUBMIT_LOAD = os.environ.get("KLINGD_BENCH_SUBMIT") or os.path.join(BUILD, "bench", "klingd-bench-submit")

import fakeprov  # noqa: E402
import klingtest  # noqa: E402
import stub_provider  # noqa: E402


# --- measuring -----------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem_kib(pid):
    """{'VmRSS': KiB, 'VmHWM': KiB}"""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def reset_peak_rss(pid):
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def tcp_active_opens():
    """TCP connect()s in this network namespace (every one of them a TLS handshake here)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


def isolated_netns():
    return os.environ.get("KLINGD_BENCH_NETNS") == "1"


def metric_histogram(text, name):
    """Cumulative buckets {le: count} and the count of a label-less histogram in /metrics."""
    buckets, count = {}, 0
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count"):
            count = float(line.rsplit(" ", 1)[1])
    return buckets, count


def histogram_quantile(before, after, q):
    """Quantile of the observations between two snapshots, interpolated inside the bucket as
    Prometheus does; None when nothing was observed."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0
    if total <= 0:
        return None
    rank = q * total
    lower_le, lower_n = 0.0, 0.0
    for le, n in delta:
        if n >= rank:
            if le == float("inf"):
                return lower_le
            return lower_le + (le - lower_le) * (rank - lower_n) / max(n - lower_n, 1e-9)
        lower_le, lower_n = le, n
    return delta[-1][0]


def median(xs):
    return statistics.median(xs) if xs else None


def wait_until(pred, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- results -------------------------------------------------------------------------------

class Row:
    def __init__(self, bench, figure, value, baseline_name, baseline, ratio, target, ok, note=""):
        self.__dict__.update(locals())
        del self.__dict__["self"]


ROWS = []


def add(bench, figure, value, baseline_name, baseline, ratio, target, ok, note=""):
    r = Row(bench, figure, value, baseline_name, baseline, ratio, target, ok, note)
    ROWS.append(r)
    log(f"{figure}: {value} vs {baseline_name} {baseline} → {ratio} (target {target}) "
        f"{'—' if ok is None else 'PASS' if ok else 'MISS'}")


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}×" if x >= 0.1 else f"{x:.3f}×"


def table():
    head = ["bench", "figure", "klingd", "baseline", "ratio", "target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ROWS:
        res = "—" if r.ok is None else "PASS" if r.ok else "**MISS**"
        lines.append(f"| {r.bench} | {r.figure} | {r.value} | {r.baseline_name}: {r.baseline} | "
                     f"{r.ratio} | {r.target} | {res} |")
    notes = [f"- {r.figure}: {r.note}" for r in ROWS if r.note]
    return "\n".join(lines) + ("\n\nNotes:\n" + "\n".join(notes) if notes else "")


# --- helpers ---------------------------------------------------------------------------------

REQUEST = klingtest.text_request("a calm lake at dawn, bench")


def bench_spec(i):
    return {"request": dict(REQUEST, prompt=f"a calm lake at dawn, bench {i}")}


STATUS_LATENCY = []


def klingd_status(d):
    # A generous timeout: while 10,000 creates ramp up the loop may answer slowly, and how
    # slowly is itself reported (STATUS_LATENCY) rather than failing the run.
    t0 = time.monotonic()
    r = d.get("/v1/status", timeout=120)
    STATUS_LATENCY.append(time.monotonic() - t0)
    assert r.status == 200, r
    return r.json()


def pause(d):
    r = d.post("/v1/pause")
    assert r.status in (200, 204), r


def submit_batch(d, n, start=0, timeout=300):
    body = json.dumps({"jobs": [bench_spec(start + i) for i in range(n)]}).encode()
    t0 = time.monotonic()
    r = d.request("POST", "/v1/jobs", body, {"Content-Type": "application/json"}, timeout=timeout)
    t = time.monotonic() - t0
    assert r.status == 201, f"batch submit: {r}"
    return t, r.json()


def start_timed(d, config_overrides=None):
    """Starts d's klingd like Klingd.start but polls GET /v1/status without sleeping between
    tries; returns seconds from exec to the first 200."""
    if config_overrides is not None or d.config is None:
        d.write_config(config_overrides)
    env = dict(os.environ)
    for k in ("KLINGD_SOCKET", "AIMLAPI_BASE_URL", "AIMLAPI_KEY", "JOURNAL_STREAM", "NOTIFY_SOCKET"):
        env.pop(k, None)
    d._log = open(d.log_path, "ab")
    t0 = time.monotonic()
    d.proc = subprocess.Popen([klingtest.klingd_bin(), "--config", d.config_path], stdout=d._log,
                              stderr=subprocess.STDOUT, env=env)
    deadline = t0 + 30
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            raise RuntimeError(f"klingd exited at start:\n{d.log()[-3000:]}")
        try:
            if d.request("GET", "/v1/status", timeout=5).status == 200:
                return time.monotonic() - t0
        except OSError:
            time.sleep(0.0005)
    raise TimeoutError("klingd did not answer within 30 s")


def teardown(d, fake, wd):
    """Stops klingd (if it started) and the fake, and removes the bench's directory."""
    if d:
        d.stop(check=False)
        d.close()
    fake.stop()
    shutil.rmtree(wd, ignore_errors=True)


def workdir(name):
    base = os.environ.get("KLINGD_BENCH_TMP") or None
    return tempfile.mkdtemp(prefix=f"klingd-bench-{name}-", dir=base)


def subdir(wd, name):
    path = os.path.join(wd, name)
    os.makedirs(path, exist_ok=True)
    return path


def start_fake(wd, args, tls):
    os.makedirs(os.path.join(wd, "fake"), exist_ok=True)
    return fakeprov.FakeProvider(args=args, tls=tls, workdir=os.path.join(wd, "fake"))


# --- 1. submit throughput --------------------------------------------------------------------

def concurrent_submits(d, clients=64, seconds=4.0):
    """jobs/s acknowledged (201) with `clients` concurrent single-job submitters
    (klingd-bench-submit, each client on its own keep-alive connection)."""
    p = subprocess.run([SUBMIT_LOAD, d.socket_path, str(clients), str(seconds), json.dumps(bench_spec(0))],
                       capture_output=True, text=True, check=True, timeout=seconds + 60)
    r = json.loads(p.stdout)
    return r["jobs_per_s"], r["errors"]


def raw_sqlite(mode, rows, wd):
    db = os.path.join(wd, f"raw-{mode}-{time.monotonic_ns()}.db")
    p = subprocess.run([SQLITE_BENCH, "--db", db, "--schema", os.path.join(SRC, "migrations", "0001_init.sql"),
                        "--rows", str(rows), "--mode", mode, "--model", REQUEST["model"],
                        "--request", json.dumps(REQUEST, separators=(",", ":"))],
                       capture_output=True, text=True, check=True, timeout=300)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    return json.loads(p.stdout)["rows_per_s"]


def bench_submit(repeat):
    wd = workdir("submit")
    try:
        raw_batch = median([raw_sqlite("batch", 10000, wd) for _ in range(repeat)])
        raw_row = median([raw_sqlite("per-row", 300, wd) for _ in range(repeat)])
        with klingtest.Klingd(workdir=subdir(wd, "k"), config_overrides={"log": {"level": "warning"}}) as d:
            # No create call may run during the submit bench: dispatch is paused before any job exists.
            pause(d)
            rates = []
            for i in range(repeat):
                t, _ = submit_batch(d, 10000, start=i * 10000)
                rates.append(10000 / t)
            batch_rate = median(rates)
            conc = []
            errs = 0
            for _ in range(repeat):
                rate, e = concurrent_submits(d)
                conc.append(rate)
                errs += e
            conc_rate = median(conc)
            assert klingd_status(d)["counts"].get("submitting", 0) == 0
        r = batch_rate / raw_batch
        add("submit", "10,000-job batch, jobs/s", f"{batch_rate:,.0f}", "raw SQLite, 1 txn", f"{raw_batch:,.0f}",
            fmt_ratio(r), "≥ 0.50×", r >= 0.5)
        r = conc_rate / raw_row
        add("submit", "64 clients × 1 job, jobs/s", f"{conc_rate:,.0f}", "raw SQLite, 1 txn/row", f"{raw_row:,.0f}",
            fmt_ratio(r), "≥ 5×", r >= 5,
            f"{errs} failed requests" if errs else "")
    finally:
        shutil.rmtree(wd, ignore_errors=True)


# --- 2. scale --------------------------------------------------------------------------------

def bench_scale(repeat, jobs=10000, window_s=10.0):
    wd = workdir("scale")
    tls = fakeprov.make_tls(os.path.join(wd, "tls"))
    fake = start_fake(wd, ["--queued-s", "0.5", "--generating-s", "3600", "--idle-timeout-s", "600"], tls)
    d = None
    try:
        d = klingtest.Klingd(fake=fake, workdir=subdir(wd, "k"), config_overrides={
            "provider": {"max_in_flight": jobs, "creates_per_minute": 1000000, "request_timeout_s": 30},
            "poll": {"initial_s": 1, "factor": 1.5, "max_s": 2, "jitter": 0.1, "slow_after_s": 3600, "slow_s": 2},
        })
        pid = d.proc.pid
        time.sleep(0.5)
        idle_rss = mem_kib(pid)["VmRSS"]
        t0 = time.monotonic()
        submit_batch(d, jobs)
        STATUS_LATENCY.clear()
        wait_until(lambda: klingd_status(d)["counts"].get("generating", 0) >= jobs, 300, 0.5,
                   f"{jobs} jobs generating")
        ramp = time.monotonic() - t0
        ramp_status_max = max(STATUS_LATENCY)
        ramp_peak = fake.stats(sha256=False)["connections_peak"]
        log(f"scale: {jobs} jobs generating after {ramp:.1f}s")
        time.sleep(3)  # every job past its first poll: the steady 1 → 1.5 → 2 s cadence

        samples = []
        for _ in range(repeat):
            m0 = d.get("/metrics").body.decode()
            s0 = fake.stats(sha256=False)
            opens0 = tcp_active_opens()
            k0, f0, w0 = cpu_seconds(pid), cpu_seconds(fake.proc.pid), time.monotonic()
            time.sleep(window_s)
            k1, f1, w1 = cpu_seconds(pid), cpu_seconds(fake.proc.pid), time.monotonic()
            opens1 = tcp_active_opens()
            s1 = fake.stats(sha256=False)
            m1 = d.get("/metrics").body.decode()
            polls = s1["polls"] - s0["polls"]
            # Our own stats requests fall outside [opens0, opens1]: every connect() counted is klingd's.
            handshakes = opens1 - opens0
            h0, _ = metric_histogram(m0, "klingd_poll_lateness_seconds")
            h1, _ = metric_histogram(m1, "klingd_poll_lateness_seconds")
            samples.append({
                "klingd_us": (k1 - k0) / max(polls, 1) * 1e6,
                "fake_us": (f1 - f0) / max(polls, 1) * 1e6,
                "polls_per_s": polls / (w1 - w0),
                "hs_per_1000": handshakes / max(polls, 1) * 1000,
                "p50": histogram_quantile(h0, h1, 0.5) if h1 else None,
                "p99": histogram_quantile(h0, h1, 0.99) if h1 else None,
                "klingd_cores": (k1 - k0) / (w1 - w0),
            })
            log(f"scale window: {samples[-1]}")
        mem = mem_kib(pid)
        st = klingd_status(d)
        assert st["counts"].get("generating", 0) >= jobs, st

        def med(k):
            vals = [s[k] for s in samples if s[k] is not None]
            return median(vals)

        rss = mem["VmRSS"] / 1024
        hwm = mem["VmHWM"] / 1024
        add("scale", f"RSS with {jobs:,} generating (peak)", f"{rss:.1f} MiB ({hwm:.1f})",
            "klingd idle", f"{idle_rss / 1024:.1f} MiB", fmt_ratio(rss / (idle_rss / 1024)), "≤ 64 MiB", hwm <= 64)
        cpu = med("klingd_us")
        add("scale", "CPU per status poll", f"{cpu:.0f} µs", "fake-aimlapi per poll served", f"{med('fake_us'):.0f} µs",
            fmt_ratio(cpu / med("fake_us")), "≤ 100 µs", cpu <= 100,
            f"{med('polls_per_s'):,.0f} polls/s, klingd at {med('klingd_cores'):.2f} cores; ramp to {jobs:,} "
            f"generating took {ramp:.1f} s (GET /v1/status took up to {ramp_status_max:.1f} s meanwhile; "
            f"{ramp_peak:,} connections open at once at the fake)")
        if isolated_netns():
            hs = med("hs_per_1000")
            add("scale", "TLS handshakes per 1,000 polls", f"{hs:.2f}", "one per poll (no keep-alive)", "1000",
                fmt_ratio(hs / 1000), "≤ 1", hs <= 1)
        else:
            add("scale", "TLS handshakes per 1,000 polls", "n/a", "one per poll", "1000", "n/a", "≤ 1", None,
                "not in a private network namespace (run bench/run.sh as root or with user namespaces)")
        p50, p99 = med("p50"), med("p99")
        if p50 is None:
            add("scale", "poll lateness p50 / p99", "n/a", "poll interval", "2 s", "n/a", "p99 ≤ 0.05×", None,
                "klingd exports no klingd_poll_lateness_seconds")
        else:
            add("scale", "poll lateness p50 / p99", f"{p50 * 1000:.1f} / {p99 * 1000:.1f} ms",
                "poll interval (max_s)", "2 s", f"{fmt_ratio(p50 / 2)} / {fmt_ratio(p99 / 2)}", "p99 ≤ 0.05×",
                p99 / 2 <= 0.05)
    finally:
        teardown(d, fake, wd)


# --- 3. download -----------------------------------------------------------------------------

def make_big_mp4(path, size):
    """The fixture MP4 followed by one `free` box padding the file to exactly `size` bytes
    (sparse: the padding costs no disk)."""
    with open(os.path.join(SRC, "tests", "fixtures", "base.mp4"), "rb") as f:
        head = f.read()
    pad = size - len(head)
    with open(path, "wb") as f:
        f.write(head)
        f.write(struct.pack(">I4s", pad, b"free"))
        f.truncate(size)


def start_nginx(wd, tls, root):
    """nginx as an unprivileged process (nobody when we are root) with its own config on
    127.0.0.1; returns (proc, port)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise RuntimeError("nginx not installed (apt-get install -y nginx)")
    prefix = os.path.join(wd, "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/tmp_body;
  proxy_temp_path {prefix}/tmp_proxy;
  fastcgi_temp_path {prefix}/tmp_fcgi;
  uwsgi_temp_path {prefix}/tmp_uwsgi;
  scgi_temp_path {prefix}/tmp_scgi;
  types {{ video/mp4 mp4; }}
  sendfile on;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {tls.cert};
    ssl_certificate_key {tls.key};
    root {root};
  }}
}}
""")
    cmd = [nginx, "-p", prefix, "-c", conf, "-e", os.path.join(prefix, "logs", "error.log")]
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(wd):
            os.chmod(dirpath, 0o755)
            for fn in filenames:
                os.chmod(os.path.join(dirpath, fn), 0o644)
        os.chmod(prefix, 0o777)
        os.chmod(os.path.join(prefix, "logs"), 0o777)
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {proc.stderr.read().decode()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_until(up, 10, 0.05, "nginx")
    return proc, port


def curl_download(url, ca, dest):
    p = subprocess.run(["curl", "-sS", "--fail", "--cacert", ca, "-o", dest, "-w", "%{time_total} %{size_download}",
                        url], capture_output=True, text=True, timeout=300, check=True)
    t, n = p.stdout.split()
    os.unlink(dest)
    return int(n) / float(t)


def aria2_download(url, ca, dest):
    """aria2c as a second baseline: one connection (-x1 -s1), no preallocation, timed around the process
    like curl's own total; None where aria2c is not installed."""
    aria2 = shutil.which("aria2c")
    if not aria2:
        return None
    t0 = time.monotonic()
    subprocess.run([aria2, "-q", "-x1", "-s1", "--ca-certificate", ca, "--file-allocation=none",
                    "--allow-overwrite=true", "--auto-file-renaming=false", "-d", os.path.dirname(dest),
                    "-o", os.path.basename(dest), url], capture_output=True, timeout=300, check=True)
    secs = time.monotonic() - t0
    n = os.path.getsize(dest)
    os.unlink(dest)
    return n / secs


def klingd_download(d, size):
    """Submits one job, waits for `downloading`, resets the peak RSS, waits for `completed`.
    Returns (bytes/s from the job's history, peak RSS growth in KiB)."""
    pid = d.proc.pid
    jid = d.submit([bench_spec(time.monotonic_ns())])["jobs"][0]["id"]
    wait_until(lambda: d.job(jid)["state"] != "queued" and d.job(jid)["state"] != "submitting"
               and d.job(jid)["state"] != "generating", 60, 0.005, "download start")
    reset_peak_rss(pid)
    before = mem_kib(pid)["VmRSS"]
    job = wait_until(lambda: (lambda j: j if j["state"] in klingtest.TERMINAL else None)(d.job(jid)), 300, 0.05,
                     "download end")
    after = mem_kib(pid)["VmHWM"]
    assert job["state"] == "completed", job
    assert job["video"]["bytes"] == size, job["video"]
    at = {h["state"]: h["at"] for h in job["history"]}
    secs = rfc3339_diff(at["downloading"], at["completed"])
    os.unlink(job["video"]["path"])
    return size / secs, after - before


def rfc3339_diff(a, b):
    from datetime import datetime

    def parse(s):
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(b) - parse(a)).total_seconds()


KLINGD_DL_CONFIG = {"poll": {"initial_s": 0.05, "max_s": 0.1}, "download": {"timeout_s": 600}}


def report_download(label, baseline_name, kl, cu, growth, ar=None):
    r = kl / cu
    add("download", f"{label}: throughput", f"{kl / MiB:,.0f} MiB/s", baseline_name, f"{cu / MiB:,.0f} MiB/s",
        fmt_ratio(r), "≥ 0.90×", r >= 0.9,
        "klingd's time includes SHA-256, the MP4 check and the fsync of 1 GiB; curl only writes")
    if ar:
        r = kl / ar
        add("download", f"{label}: throughput vs aria2c", f"{kl / MiB:,.0f} MiB/s", "aria2c -x1 -s1, same URL",
            f"{ar / MiB:,.0f} MiB/s", fmt_ratio(r), "≥ 0.90×", r >= 0.9,
            "aria2c timed around its process (start-up included), one connection, no preallocation")
    add("download", f"{label}: peak RSS growth", f"{growth / 1024:.1f} MiB", "file size", "1024 MiB",
        fmt_ratio(growth / 1024 / 1024), "≤ 16 MiB", growth / 1024 <= 16)


def bench_download(repeat, size=GiB, fake_variant=True):
    wd = workdir("download")
    nginx = stub = d = None
    try:
        tls = fakeprov.make_tls(os.path.join(wd, "tls"))
        root = os.path.join(wd, "www")
        os.makedirs(root)
        make_big_mp4(os.path.join(root, "bench.mp4"), size)
        nginx, port = start_nginx(wd, tls, root)
        url = f"https://127.0.0.1:{port}/bench.mp4"
        stub = stub_provider.StubProvider(url, size, tls)
        d = klingtest.Klingd(fake=stub, workdir=subdir(wd, "k"), config_overrides=KLINGD_DL_CONFIG)
        kl, cu, ar, growth = [], [], [], []
        for _ in range(repeat):
            cu.append(curl_download(url, tls.ca, os.path.join(wd, "curl.mp4")))
            a = aria2_download(url, tls.ca, os.path.join(wd, "aria2.mp4"))
            if a:
                ar.append(a)
            rate, g = klingd_download(d, size)
            kl.append(rate)
            growth.append(g)
        report_download("nginx 1 GiB", "curl, same URL", median(kl), median(cu), max(growth),
                        median(ar) if ar else None)
        d.stop(check=False)
        d.close()
        d = None

        if fake_variant:
            fake = start_fake(wd, ["--queued-s", "0", "--generating-s", "0.05", "--video-bytes", str(size)], tls)
            try:
                d = klingtest.Klingd(fake=fake, workdir=subdir(wd, "k2"), config_overrides=KLINGD_DL_CONFIG)
                doc = fake.create(REQUEST).json()
                video = fake.wait_completed(doc["id"])["video"]["url"]
                kl, cu, growth = [], [], []
                for _ in range(repeat):
                    cu.append(curl_download(video, tls.ca, os.path.join(wd, "curl.mp4")))
                    rate, g = klingd_download(d, size)
                    kl.append(rate)
                    growth.append(g)
                report_download("fake 1 GiB", "curl, same fake", median(kl), median(cu), max(growth))
            finally:
                if d:
                    d.stop(check=False)
                    d.close()
                    d = None
                fake.stop()
    finally:
        if d:
            d.stop(check=False)
            d.close()
        if stub:
            stub.stop()
        if nginx:
            nginx.terminate()
            try:
                nginx.wait(5)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        shutil.rmtree(wd, ignore_errors=True)


# --- 4. restart ------------------------------------------------------------------------------

def bench_restart(repeat, jobs=10000, initial_s=2.0):
    generating = max(1, jobs // 5)
    wd = workdir("restart")
    tls = fakeprov.make_tls(os.path.join(wd, "tls"))
    fake = start_fake(wd, ["--queued-s", "0.2", "--generating-s", "3600", "--idle-timeout-s", "600"], tls)
    config = {
        "provider": {"max_in_flight": generating, "creates_per_minute": 1000000, "request_timeout_s": 30},
        "poll": {"initial_s": initial_s, "factor": 1.5, "max_s": 10, "jitter": 0.1},
    }
    d = empty = None
    try:
        # Baseline: the same binary and config starting on an empty store.
        empty = klingtest.Klingd(fake=fake, workdir=subdir(wd, "empty"), start=False)
        base = []
        for _ in range(repeat):
            base.append(start_timed(empty, config))
            empty.stop()
        empty.close()
        empty = None

        d = klingtest.Klingd(fake=fake, workdir=subdir(wd, "k"), config_overrides=config)
        submit_batch(d, jobs)
        wait_until(lambda: klingd_status(d)["counts"].get("generating", 0) >= generating, 300, 0.5,
                   f"{generating} generating")
        counts = klingd_status(d)["counts"]
        log(f"restart store: {counts}")
        ready, first = [], []
        for _ in range(repeat):
            d.stop()
            polls0 = {g["id"]: g["polls"] for g in fake.stats(sha256=False)["generations"]}
            t_exec = time.monotonic()
            ready.append(start_timed(d))

            def all_polled():
                gens = fake.stats(sha256=False)["generations"]
                return all(g["polls"] > polls0.get(g["id"], 0) for g in gens if g["id"] in polls0)
            wait_until(all_polled, 120, 0.1, "every generating job's first poll")
            first.append(time.monotonic() - t_exec)
        r = median(ready) / median(base)
        add("restart", f"exec → API answers, {jobs:,} non-terminal", f"{median(ready) * 1000:.0f} ms",
            "empty store", f"{median(base) * 1000:.0f} ms", fmt_ratio(r), "≤ 1 s", median(ready) <= 1.0,
            f"store: {counts.get('queued', 0)} queued, {counts.get('generating', 0)} generating")
        f = median(first)
        add("restart", f"exec → every generating job polled ({generating:,})", f"{f:.2f} s",
            "poll.initial_s (spread window)", f"{initial_s:g} s", fmt_ratio(f / initial_s),
            "≤ 1 s + initial_s", f <= 1.0 + initial_s * 1.1)
    finally:
        for k in (d, empty):
            if k:
                k.stop(check=False)
                k.close()
        fake.stop()
        shutil.rmtree(wd, ignore_errors=True)


# --- 5. WAL size (issue 15) ------------------------------------------------------------------

WAL_BOUND = 16 * MiB  # docs/operations.md, "Database files"


def bench_wal(repeat, jobs=10000):
    """Runs `jobs` jobs from submit to completed (each ~5 commits plus the API's reads) and
    samples the -wal file meanwhile: its peak against the 16 MiB bound, and its size once
    the store has been idle a few seconds (truncated to 0)."""
    wd = workdir("wal")
    fake = start_fake(wd, ["--queued-s", "0.01", "--generating-s", "0.05", "--idle-timeout-s", "600"], None)
    d = None
    try:
        d = klingtest.Klingd(fake=fake, workdir=subdir(wd, "k"), config_overrides={
            "provider": {"max_in_flight": 500, "creates_per_minute": 1000000, "request_timeout_s": 30},
            "poll": {"initial_s": 0.05, "factor": 1.5, "max_s": 0.5, "jitter": 0.1, "slow_after_s": 3600, "slow_s": 1},
            "download": {"allow_http": True, "max_concurrent": 16},
        })
        wal = d.db_path + "-wal"
        peak = 0
        t0 = time.monotonic()
        chunk = 1000
        for start in range(0, jobs, chunk):
            submit_batch(d, min(chunk, jobs - start), start)
            peak = max(peak, os.path.getsize(wal) if os.path.exists(wal) else 0)
        while True:
            st = klingd_status(d)
            peak = max(peak, os.path.getsize(wal) if os.path.exists(wal) else 0)
            done = sum(st["counts"].get(k, 0) for k in klingtest.TERMINAL)
            if done >= jobs:
                break
            if time.monotonic() - t0 > 1800:
                raise TimeoutError(f"{done}/{jobs} jobs done after 30 min")
            time.sleep(0.2)
        run_s = time.monotonic() - t0
        completed = st["counts"].get("completed", 0)
        time.sleep(5)  # idle: the daemon truncates the WAL
        idle = os.path.getsize(wal) if os.path.exists(wal) else 0
        db = os.path.getsize(d.db_path)
        log(f"wal: {jobs} jobs in {run_s:.0f}s, WAL peak {peak / MiB:.1f} MiB, idle {idle} B, db {db / MiB:.1f} MiB")
        add("wal", f"WAL size after {jobs:,} jobs (peak while running / idle)", f"{peak / MiB:.1f} MiB / {idle} B",
            "bound", "16 MiB", fmt_ratio(peak / WAL_BOUND), "peak ≤ 16 MiB, idle 0", peak <= WAL_BOUND and idle == 0,
            f"{completed:,} of {jobs:,} completed in {run_s:.0f} s; database file {db / MiB:.1f} MiB "
            f"(before issue 15 the WAL only grew: 306 MB after 2,000 jobs)")
    finally:
        teardown(d, fake, wd)


def bench_polls(repeat, scale=30.0, per_model=10):
    """Learned poll schedule (issue 19.3) against a fixed 15 s schedule. The fake runs each
    model at a realistic generation time (docs/provider.md: one to seven minutes and more;
    ±15 % per generation), time compressed `scale`-fold (1 s here = `scale` s there) with
    the schedules scaled alike. Baseline: poll every 15 s (scaled), nothing learned. klingd:
    the same settings with poll.learn, after one learning wave of half as many jobs; the
    measured wave is the next. Figures: polls per job and completion-detection lag (the
    `downloading` event minus the fake's finish time), in unscaled seconds."""
    models = {"klingai/video-v3-standard-turbo-text-to-video": 60, "klingai/video-v3-pro-text-to-video": 180,
              "klingai/video-v2-6-pro-text-to-video": 420}
    fixed = 15.0 / scale

    def wave(d, fake, n, tag):
        specs = []
        for m in models:
            specs += [{"key": f"{tag}-{m}-{i}", "request": klingtest.text_request(f"{tag} {i}", model=m)}
                      for i in range(n)]
        r = d.submit(specs)
        ids = [j["id"] for j in r["jobs"]]
        jobs = d.wait_terminal(ids, timeout=max(models.values()) / scale * 3 + 60)
        gens = {g["id"]: g for g in fake.stats()["generations"]}
        polls, lags = [], []
        for jid, j in jobs.items():
            assert j["state"] == "completed", j
            g = gens[j["generation_id"]]
            seen = next(h["at"] for h in d.job(jid)["history"] if h["state"] == "downloading")
            polls.append(j["polls"])
            lags.append(rfc3339_diff(g["finished"], seen) * scale)
        return statistics.mean(polls), statistics.mean(lags), max(lags)

    def run(learn):
        wd = workdir("polls")
        fake = start_fake(wd, ["--queued-s", "0", "--idle-timeout-s", "600"], None)
        fake.config({"generating_s_by_model": {m: t / scale for m, t in models.items()}, "generating_jitter": 0.15,
                     "log_polls": False})
        d = None
        try:
            d = klingtest.Klingd(fake=fake, workdir=subdir(wd, "k"), config_overrides={
                "provider": {"max_in_flight": 1000, "creates_per_minute": 1000000},
                "poll": {"initial_s": fixed, "factor": 1.0, "max_s": fixed, "jitter": 0.0, "learn": learn,
                         "slow_after_s": 86400, "slow_s": fixed},
                "download": {"allow_http": True},
            })
            if learn:
                wave(d, fake, max(3, per_model // 2), "learn")
            return wave(d, fake, per_model, "measure")
        finally:
            teardown(d, fake, wd)

    base = [run(False) for _ in range(repeat)]
    ours = [run(True) for _ in range(repeat)]
    bp, bl, bmax = (median([r[i] for r in base]) for i in range(3))
    op, ol, omax = (median([r[i] for r in ours]) for i in range(3))
    log(f"polls: fixed 15 s {bp:.1f} polls/job, lag {bl:.1f} s (max {bmax:.1f}); learned {op:.1f}, lag {ol:.1f} s "
        f"(max {omax:.1f})")
    add("polls", "status polls per job (generation 1–7 min, ±15 %)", f"{op:.1f}", "fixed 15 s schedule", f"{bp:.1f}",
        fmt_ratio(op / bp), "≤ 0.5×", op <= 0.5 * bp,
        f"{per_model} jobs per model ({', '.join(f'{t // 60} min' for t in models.values())}), time compressed "
        f"{scale:.0f}×, after a learning wave")
    add("polls", "completion-detection lag, mean (max)", f"{ol:.1f} s ({omax:.1f} s)", "fixed 15 s schedule",
        f"{bl:.1f} s ({bmax:.1f} s)", fmt_ratio(ol / bl if bl else None), "≤ 1×", ol <= bl)


# --- 7. cold build of the daemon (issue 19.5) -------------------------------------------------

def bench_build(repeat):
    """Cold build of the `klingd` target alone (configure + ninja in an empty directory, no
    compiler cache, -j nproc), once with KLINGD_FAST_BUILD (Asio/Beast compiled once,
    precompiled headers) and, as the baseline in the same run, once without it. Minutes each:
    run once whatever --repeat says."""
    wd = workdir("build")
    env = dict(os.environ, CCACHE_DISABLE="1")
    env.pop("CMAKE_CXX_COMPILER_LAUNCHER", None)

    def cold(fast):
        out = os.path.join(wd, "fast" if fast else "plain")
        subprocess.run(["cmake", "-S", SRC, "-B", out, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                        f"-DKLINGD_FAST_BUILD={'ON' if fast else 'OFF'}", "-DCMAKE_CXX_COMPILER_LAUNCHER="],
                       check=True, capture_output=True, env=env)
        t = time.monotonic()
        subprocess.run(["ninja", "-C", out, f"-j{os.cpu_count()}", "klingd"], check=True, capture_output=True,
                       env=env)
        secs = time.monotonic() - t
        log(f"build: klingd cold, KLINGD_FAST_BUILD={'ON' if fast else 'OFF'}: {secs:.0f} s")
        return secs

    try:
        plain = cold(False)
        fast = cold(True)
        add("build", "cold build of klingd alone (-j" + str(os.cpu_count()) + ")", f"{fast:.0f} s",
            "same, KLINGD_FAST_BUILD=OFF", f"{plain:.0f} s", fmt_ratio(fast / plain), "≤ 0.80×",
            fast <= 0.8 * plain, "configure excluded; no compiler cache")
    finally:
        shutil.rmtree(wd, ignore_errors=True)


# --- main ------------------------------------------------------------------------------------

BENCHES = {"submit": bench_submit, "scale": bench_scale, "download": bench_download, "restart": bench_restart,
           "wal": bench_wal, "polls": bench_polls, "build": bench_build}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(BENCHES), help="comma list of: " + ", ".join(BENCHES))
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--jobs", type=int, default=10000, help="jobs in the scale and restart stores (issue 9: 10,000)")
    args = ap.parse_args()
    for name in ("KLINGD_BIN", "FAKE_AIMLAPI_BIN"):
        if not os.path.exists(os.environ[name]):
            sys.exit(f"bench: {os.environ[name]} missing (build first)")
    for path in (SQLITE_BENCH, SUBMIT_LOAD):
        if not os.path.exists(path):
            sys.exit(f"bench: {path} missing (ninja klingd-bench-sqlite klingd-bench-submit)")
    t0 = time.monotonic()
    failed = []
    for name in args.only.split(","):
        log(f"--- {name}")
        try:
            if name in ("scale", "restart", "wal"):
                BENCHES[name](args.repeat, jobs=args.jobs)
            else:
                BENCHES[name](args.repeat)
        except Exception as e:  # one broken bench must not hide the others' figures
            import traceback
            traceback.print_exc()
            failed.append(name)
            add(name, "(bench failed)", "error", "—", "—", "n/a", "—", False, f"{type(e).__name__}: {e}")
    head = subprocess.run(["git", "-C", SRC, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    print(f"\nklingd benchmarks — {time.strftime('%Y-%m-%d')}, commit {head.strip()}, {os.cpu_count()} CPUs, "
          f"--repeat {args.repeat}, median of runs, {time.monotonic() - t0:.0f} s\n")
    print(table())
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in ROWS], f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
