"""Submits acknowledged after the WAL sync on the committer's worker thread (docs/reliability.md,
"Submits: the WAL sync off the loop"): concurrent single-job submits while klingd is SIGKILLed;
every submit answered 201 is in the store after the restart, with the id it was answered with."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd, spec  # noqa: E402


def test_acknowledged_submits_survive_sigkill():
    with Klingd() as d:
        # Nothing dispatches before the kill (a pause does not outlive the process).
        assert d.post("/v1/pause").status == 200
        acked = {}  # key -> job id answered with 201
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        def submitter(t):
            i = 0
            while not stop.is_set():
                key = f"crash-{t}-{i}"
                i += 1
                try:
                    r = d.post("/v1/jobs", spec(f"prompt {t} {i}", key=key), timeout=5)
                except OSError:
                    return  # the daemon is gone: this submit was never answered
                if r.status != 201:
                    errors.append(r)
                    return
                job = r.json()["jobs"][0]
                assert job["state"] == "queued" and not job["duplicate"], job
                with lock:
                    acked[key] = job["id"]

        threads = [threading.Thread(target=submitter, args=(t,)) for t in range(16)]
        for th in threads:
            th.start()
        # Kill mid-stream: some submits are answered, others in flight (committed, not yet synced).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 200:
                    break
            time.sleep(0.01)
        d.kill()
        stop.set()
        for th in threads:
            th.join(30)
        assert not errors, errors[:3]
        with lock:
            answered = dict(acked)
        assert len(answered) >= 200, len(answered)
        d.start()
        for key, jid in answered.items():
            r = d.get(f"/v1/jobs/key:{key}")
            assert r.status == 200, f"acknowledged {key} ({jid}) lost after SIGKILL: {r}"
            j = r.json()
            assert j["id"] == jid and j["history"][0]["state"] == "queued", j
        assert "store.wal_sync_failed" not in d.log()


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(globals()))
