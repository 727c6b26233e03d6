#!/usr/bin/env python3
"""SIGHUP reload (issue 7): a raised provider.max_in_flight takes effect without a restart
and without dropping a connection, a broken config is refused (config.reload_refused) and
the old limits stay, and the API key is re-read (a 401 pause ends once the right key is
in place)."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402

# Generations stay "generating" long enough that whatever was created is still in flight
# while we look; shutdown only checkpoints them.
SLOW_FAKE = ("--queued-s", "0.05", "--generating-s", "60")


def status(d):
    return d.get_json("/v1/status")


def hup_and_wait_for(d, log_event, timeout=10):
    """Sends SIGHUP and waits for the `log_event` line that follows it."""
    before = d.log().count(log_event)
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for(lambda: d.log().count(log_event) > before, timeout, what=f"log line {log_event}")


def test_max_in_flight_raised_by_reload_and_broken_config_refused():
    with klingtest.Klingd(config_overrides={"provider.max_in_flight": 1}, fake_args=SLOW_FAKE) as d:
        d.submit([klingtest.spec(f"reload limit {i}") for i in range(6)])
        d.wait_for(lambda: d.fake.stats()["creates_recorded"] >= 1, 20, what="the first create")
        # Give the dispatcher ample time to overstep the limit if it were going to.
        time.sleep(1.0)
        st = status(d)
        assert st["in_flight"] == 1, st
        assert st["limits"]["max_in_flight"] == 1, st
        assert d.fake.stats()["max_in_flight"] == 1
        first = {j["id"] for j in d.get_json("/v1/jobs?state=submitting,generating")["jobs"]}
        assert len(first) == 1, first

        # A stream opened before the reload must survive it and report what the reload unblocks.
        events = d.connection(timeout=15)
        events.request("GET", "/v1/events")
        stream = events.getresponse()
        assert stream.status == 200

        d.write_config({"provider.max_in_flight": 3})
        hup_and_wait_for(d, "config.reloaded")
        d.wait_for(lambda: status(d)["in_flight"] == 3, 20, what="3 jobs in flight after the reload")
        time.sleep(1.0)
        st = status(d)
        assert st["in_flight"] == 3 and st["limits"]["max_in_flight"] == 3, st
        assert d.fake.stats()["max_in_flight"] == 3

        seen = []
        deadline = time.monotonic() + 10
        newly_generating = lambda: [e for e in seen if e["state"] == "generating" and e["job"] not in first]
        while time.monotonic() < deadline and not newly_generating():
            line = stream.readline()
            assert line, "the events stream was closed by the reload"
            if line.strip():
                seen.append(json.loads(line))
        assert newly_generating(), seen
        events.close()

        # A config that does not parse, then one that parses but is invalid: both refused.
        for broken in ('{"provider": {"max_in_flight": 6,', '{"provider": {"max_in_flight": 6}, "no_such_key": 1}'):
            with open(d.config_path, "w") as f:
                f.write(broken)
            hup_and_wait_for(d, "config.reload_refused")
            assert d.running(), "klingd died on a broken config"
            st = status(d)
            assert st["limits"]["max_in_flight"] == 3, st
        time.sleep(0.5)
        assert status(d)["in_flight"] == 3
        assert d.fake.stats()["max_in_flight"] == 3
        # Still serving: new work is accepted and queued behind the old limit.
        r = d.submit([klingtest.spec("after refused reload")])
        assert r["jobs"][0]["state"] == "queued"
        assert d.ctl("status").returncode == 0
        d.stop()


def test_reload_rereads_the_api_key():
    d = klingtest.Klingd(start=False, api_key="test-key")
    with d:
        key_file = d.base_config["provider"]["api_key_file"]
        with open(key_file, "w") as f:
            f.write("wrong-key\n")
        d.start()
        ids = [j["id"] for j in d.submit([klingtest.spec(f"key reload {i}") for i in range(2)])["jobs"]]
        d.wait_for(lambda: status(d)["paused"], 20, what="a pause for the refused key")
        paused = status(d)["paused"]
        assert "401" in paused, paused
        assert "wrong-key" not in paused and "wrong-key" not in d.log(), "the key leaked"
        assert d.fake.stats()["auth_failures"] >= 1
        assert d.fake.stats()["creates_recorded"] == 0
        # Paused for the account, the jobs are kept as they are: none failed.
        assert all(d.job(i)["state"] not in klingtest.TERMINAL for i in ids)

        with open(key_file, "w") as f:
            f.write("test-key\n")
        hup_and_wait_for(d, "config.reloaded")
        jobs = d.wait_terminal(ids, timeout=60)
        assert all(j["state"] == "completed" for j in jobs.values()), jobs
        assert status(d)["paused"] is None
        assert "test-key" not in d.log(), "the key leaked into the log"
        d.stop()


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
