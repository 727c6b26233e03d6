#!/usr/bin/env python3
"""Reliability (issue 8, item 6): the API key never appears in any log, database file (with its
-wal and -shm), error, answer or metrics output — through faults, an account pause, a reload and
every way of passing the key; the socket and its directory have the configured modes.
(The other test_reliability_* files run the same canary scan over their own runs.)"""

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_HERE, "..", "reliability_support"))
import klingtest  # noqa: E402
import relcheck  # noqa: E402
from klingtest import Klingd, text_request  # noqa: E402

FAKE = ("--queued-s", "0.05", "--generating-s", "0.1")


def specs(n, prefix):
    return [{"key": f"{prefix}-{i}", "request": text_request(f"{prefix} {i}")} for i in range(n)]


def outputs(d):
    """Everything a user or a scraper can read from klingd."""
    out = [(path, d.get(path).body) for path in ("/v1/status", "/metrics", "/v1/jobs?limit=1000", "/v1/models")]
    out.append(("/v1/events", json.dumps(d.events(since=0))))
    for j in d.get_json("/v1/jobs?limit=1000")["jobs"]:
        out.append((f"/v1/jobs/{j['id']}", d.get(f"/v1/jobs/{j['id']}").body))
    for args in (("status",), ("ls",), ("--json", "status"), ("--json", "ls")):
        p = d.ctl(*args)
        out.append(("klingctl " + " ".join(args), p.stdout + p.stderr))
    return out


def test_key_never_written_anywhere():
    key = relcheck.canary_key()
    cfg = {"log": {"level": "debug"}, "retry": {"max_attempts": 20, "base_s": 0.02, "max_s": 0.2}}
    with Klingd(config_overrides=cfg, fake_args=FAKE, tls=True, api_key=key) as d:
        seen = []
        p = subprocess.run([klingtest.klingd_bin(), "--check-config", "--config", d.config_path],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 0, p
        seen.append(("--check-config", p.stdout + p.stderr))
        d.fake.config({"faults": {"create": {"error_503": 0.2, "rate_limit": 0.1},
                                  "poll": {"error_500": 0.2, "malformed_json": 0.1},
                                  "download": {"truncated": 0.2, "expired_url": 0.2}}})
        ids = [j["id"] for j in d.submit(specs(10, "sec"))["jobs"]]
        d.wait_terminal(ids, timeout=60)
        # The account is refused (401): dispatch pauses with a reason that must not quote the key.
        d.fake.config({"api_key": "another-key", "faults": {"create": {}, "poll": {}, "download": {}}})
        more = [j["id"] for j in d.submit(specs(3, "paused"))["jobs"]]
        d.wait_for(lambda: d.get_json("/v1/status")["paused"], 15, 0.05, "dispatch to pause")
        seen += outputs(d)
        d.fake.config({"api_key": key})
        d.proc.send_signal(signal.SIGHUP)  # reload re-reads the key file and resumes
        d.wait_terminal(more, timeout=30)
        # Scan the database and its WAL while they are live, then after a clean stop.
        seen += outputs(d)
        live = relcheck.find_secret(key, [d.state_dir, d.log_path], seen)
        d.stop()
        stopped = relcheck.find_secret(key, [d.state_dir, d.log_path])
        assert not live and not stopped, f"API key found in {live + stopped}"
        assert "401" in d.log()  # the pause really happened
        print(f"scanned {len(seen)} answers and outputs, the log and {len(os.listdir(d.state_dir))} state files")


def test_key_from_environment_and_credentials_directory():
    for how in ("AIMLAPI_KEY", "CREDENTIALS_DIRECTORY"):
        key = relcheck.canary_key()
        creds = tempfile.mkdtemp(prefix="klingd-creds-")
        env = {"AIMLAPI_KEY": key} if how == "AIMLAPI_KEY" else {"CREDENTIALS_DIRECTORY": creds}
        with open(os.path.join(creds, "aimlapi_key"), "w") as f:
            f.write(key + "\n")
        with Klingd(fake_args=FAKE, api_key=key, env=env, start=False) as d:
            d.base_config["provider"].pop("api_key_file")
            d.start({"log": {"level": "debug"}})
            ids = [j["id"] for j in d.submit(specs(2, how))["jobs"]]
            jobs = d.wait_terminal(ids, timeout=30)
            assert {j["state"] for j in jobs.values()} == {"completed"}, how  # the key was used
            seen = outputs(d)
            p = subprocess.run([klingtest.klingd_bin(), "--check-config", "--config", d.config_path],
                               capture_output=True, text=True, timeout=20, env=dict(os.environ, **env))
            seen.append(("--check-config", p.stdout + p.stderr))
            d.stop()
            leaks = relcheck.find_secret(key, [d.state_dir, d.log_path], seen)
            assert not leaks, f"{how}: API key found in {leaks}"


def test_socket_modes_default_and_configured():
    with Klingd(fake_args=FAKE) as d:
        # Default socket.mode 0660: owner and group may connect, nobody else; the directory
        # klingd creates is 0750, and so is the state directory.
        assert stat.S_IMODE(os.stat(d.socket_path).st_mode) == 0o660
        assert stat.S_IMODE(os.stat(os.path.dirname(d.socket_path)).st_mode) == 0o750
        assert stat.S_IMODE(os.stat(d.state_dir).st_mode) == 0o750
        # Another mode after a restart is applied exactly, whatever the umask.
        d.stop()
        old = os.umask(0)
        try:
            d.start({"socket": {"mode": "0640"}})
        finally:
            os.umask(old)
        assert stat.S_IMODE(os.stat(d.socket_path).st_mode) == 0o640


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
