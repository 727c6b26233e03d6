"""Socket API under load: 100 concurrent clients submitting and reading while 1,000 jobs are
in flight, without a single error; a slow-loris client is cut off with 408 meanwhile."""

import concurrent.futures
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd, spec  # noqa: E402

IN_FLIGHT = 1000
CLIENTS = 100


def client(d, n):
    """One client's session: submit, read back, list, status. Returns a list of problems."""
    problems = []
    r = d.post("/v1/jobs", {"jobs": [spec(f"c{n}-{i}", key=f"client-{n}-{i}", labels={"client": str(n)})
                                     for i in range(3)]}, timeout=30)
    if r.status != 201:
        return [f"client {n}: submit {r}"]
    ids = [j["id"] for j in r.json()["jobs"]]
    for path in (f"/v1/jobs/{ids[0]}", f"/v1/jobs?label=client%3D{n}", "/v1/status", f"/v1/batches/{r.json()['batch']}"):
        g = d.get(path, timeout=30)
        if g.status != 200:
            problems.append(f"client {n}: GET {path}: {g}")
    listed = d.get_json(f"/v1/jobs?label=client%3D{n}")["jobs"]
    if sorted(j["id"] for j in listed) != sorted(ids):
        problems.append(f"client {n}: listed {len(listed)} jobs, expected {len(ids)}")
    # Re-submitting is idempotent under load too.
    again = d.post("/v1/jobs", {"jobs": [spec(f"c{n}-{i}", key=f"client-{n}-{i}") for i in range(3)]}, timeout=30)
    if again.status != 201 or not all(j["duplicate"] for j in again.json()["jobs"]):
        problems.append(f"client {n}: resubmit {again}")
    return problems


def test_hundred_clients_while_thousand_in_flight():
    overrides = {
        "provider": {"max_in_flight": IN_FLIGHT + 400},
        # 1,000 generating jobs polled every few seconds, not ten times a second.
        "poll": {"initial_s": 5, "max_s": 10},
        "shutdown": {"grace_s": 1},
        "log": {"level": "warning"},
    }
    with Klingd(overrides, fake_args=("--queued-s", "0", "--generating-s", "300")) as d:
        # A slow-loris client: half a header, then nothing.
        loris = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        loris.connect(d.socket_path)
        loris.sendall(b"GET /v1/status HTTP/1.1\r\nHost: k\r\nX-Slow: ")
        loris_started = time.monotonic()

        t0 = time.monotonic()
        batch = d.submit([spec(f"bulk {i}") for i in range(IN_FLIGHT)])
        assert len(batch["jobs"]) == IN_FLIGHT
        print(f"submitted {IN_FLIGHT} jobs in {time.monotonic() - t0:.2f}s")
        # The engine may hold the loop for seconds while it dispatches 1,000 creates at once.
        d.wait_for(lambda: d.get("/v1/status", timeout=60).json()["counts"]["generating"] >= IN_FLIGHT, 90, 0.2,
                   f"{IN_FLIGHT} jobs generating")
        print(f"{IN_FLIGHT} in flight after {time.monotonic() - t0:.2f}s")

        t1 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(lambda n: client(d, n), range(CLIENTS)))
        problems = [p for r in results for p in r]
        print(f"{CLIENTS} clients done in {time.monotonic() - t1:.2f}s")
        assert not problems, "\n".join(problems[:20])
        st = d.get_json("/v1/status")
        assert st["total"] == IN_FLIGHT + 3 * CLIENTS, st
        assert st["counts"]["failed"] == 0, st

        # The slow-loris connection got 408 once the header deadline passed.
        loris.settimeout(max(1.0, 12 - (time.monotonic() - loris_started)))
        answer = b""
        try:
            while True:
                chunk = loris.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except socket.timeout:
            pass
        loris.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert d.get("/v1/status").status == 200


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1])


def test_ndjson_batch_is_held_once():
    """A 40 MB NDJSON batch (10,000 specs with 4 KB prompts): klingd's peak resident memory
    grows by less than 1.6× the body. Reading the body into a string and then parsing it
    holds the batch twice (measured: 2.1×); parsing lines as they arrive holds each spec
    once, as the row it will be stored as (measured: 1.27×)."""
    with Klingd() as d:
        d.post("/v1/pause")  # nothing is sent: only the submit's own memory counts
        body = "".join(json.dumps(spec(f"held once {i} " + "x" * 4000, key=f"once-{i}")) + "\n"
                       for i in range(10000)).encode()
        before = vm_hwm_kib(d.proc.pid)
        r = d.post("/v1/jobs", body, headers={"Content-Type": "application/x-ndjson"}, timeout=120)
        assert r.status == 201 and len(r.json()["jobs"]) == 10000, r
        growth = (vm_hwm_kib(d.proc.pid) - before) * 1024
        print(f"body {len(body) / 2**20:.1f} MiB, peak RSS growth {growth / 2**20:.1f} MiB "
              f"({growth / len(body):.2f}x the body)")
        if os.environ.get("KLINGD_SANITIZED"):
            # ASan's redzones and freed-memory quarantine are what RSS would measure here.
            print("the 1.6x bound is checked in the plain build, not under ASan")
        else:
            assert growth < 1.6 * len(body), f"peak grew {growth / len(body):.2f}x the body"
        assert d.get_json("/v1/status")["total"] == 10000


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
