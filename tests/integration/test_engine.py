#!/usr/bin/env python3
"""The engine end to end (issue 5): real klingd + fake-aimlapi over HTTPS on loopback,
time compressed with fractional-second settings."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import FAST_FAKE, Klingd, all_jobs, check_store, specs, text_request  # noqa: E402

def test_batch_of_200_completes_with_limits_respected():
    with Klingd(config_overrides={"provider": {"max_in_flight": 12, "creates_per_minute": 6000}},
                fake_args=FAST_FAKE, tls=True) as d:
        r = d.submit(specs(200, "b200"))
        ids = [j["id"] for j in r["jobs"]]
        jobs = d.wait_terminal(ids, timeout=120)
        states = {j["state"] for j in jobs.values()}
        assert states == {"completed"}, states
        st = d.fake.stats()
        assert st["create_calls"] == 200, st["create_calls"]
        assert st["duplicate_bodies"] == 0
        # Never more than max_in_flight generations held at once.
        assert st["max_in_flight"] <= 12, st["max_in_flight"]
        assert st["creates_per_minute_peak"] <= 6000
        check_store(d, list(jobs.values()), st)
        # Keep-alive: far fewer connections than requests.
        assert st["connections_peak"] < 60, st["connections_peak"]
        status = d.get_json("/v1/status")
        assert status["in_flight"] == 0


def test_create_rate_limit_is_respected():
    # 30 creates per minute: a burst of 30, then nothing until the window passes.
    with Klingd(config_overrides={"provider": {"max_in_flight": 100, "creates_per_minute": 30}},
                fake_args=FAST_FAKE) as d:
        d.submit(specs(40, "rate"))
        time.sleep(2.5)
        st = d.fake.stats()
        assert st["create_calls"] == 30, st["create_calls"]
        assert st["creates_per_minute_peak"] <= 30


def test_create_calls_on_the_wire_are_bounded():
    """At most 32 create calls are out at once (k_create_concurrency), whatever max_in_flight
    allows: each create here is held 2 s by the provider, so the 33rd waits for a slot — as a
    `queued` job, so nothing is ambiguous if klingd dies meanwhile."""
    with Klingd(config_overrides={"provider": {"max_in_flight": 500}},
                fake_args=FAST_FAKE + ("--slow-delay-s", "2")) as d:
        d.fake.config({"faults": {"create": {"slow": 1.0}}})
        ids = [j["id"] for j in d.submit(specs(80, "wire"))["jobs"]]
        d.wait_for(lambda: d.fake.stats()["create_calls"] >= 32, 10, 0.05, "32 creates")
        time.sleep(0.5)
        assert d.fake.stats()["create_calls"] == 32, d.fake.stats()["create_calls"]
        counts = d.get_json("/v1/status")["counts"]
        assert counts["submitting"] == 32 and counts["queued"] == 48, counts
        d.fake.config({"faults": {}})
        jobs = d.wait_terminal(ids, timeout=60)
        assert all(j["state"] == "completed" for j in jobs.values())
        assert d.fake.stats()["create_calls"] == 80


def test_priority_then_age():
    with Klingd(config_overrides={"provider": {"max_in_flight": 1}}, fake_args=FAST_FAKE) as d:
        d.post("/v1/pause")
        low = d.submit(specs(3, "low"))["jobs"]
        high = d.submit([{"key": "high", "priority": 10, "request": text_request("urgent")}])["jobs"]
        d.post("/v1/resume")
        jobs = d.wait_terminal([j["id"] for j in low + high], timeout=30)
        order = sorted(jobs.values(), key=lambda j: j["finished_at"])
        assert order[0]["key"] == "high", [j["key"] for j in order]
        assert [j["key"] for j in order[1:]] == ["low-0", "low-1", "low-2"]


def test_every_fault_kind_is_survived():
    faults = {
        "create": {"error_502": 0.08, "error_503": 0.08, "rate_limit": 0.08, "rate_limit_no_retry_after": 0.04},
        "poll": {"error_500": 0.05, "error_503": 0.05, "reset": 0.05, "malformed_json": 0.05, "garbage_status": 0.05,
                 "slow": 0.03, "rate_limit": 0.04, "not_found": 0.03},
        "download": {"truncated": 0.1, "expired_url": 0.1, "error_503": 0.05, "reset": 0.03},
    }
    cfg = {"retry": {"max_attempts": 12, "base_s": 0.02, "max_s": 0.2}, "provider": {"max_in_flight": 20}}
    with Klingd(config_overrides=cfg, fake_args=FAST_FAKE + ("--slow-delay-s", "0.3", "--retry-after-s", "0.1",
                                                             "--seed", "7"), tls=True) as d:
        d.fake.config({"faults": faults})
        r = d.submit(specs(80, "faulty"))
        jobs = d.wait_terminal([j["id"] for j in r["jobs"]], timeout=180)
        bad = [(j["key"], j["error"]) for j in jobs.values() if j["state"] != "completed"]
        assert not bad, bad
        st = d.fake.stats()
        for kind in ("create", "poll", "download"):
            for fault in faults[kind]:
                assert st["faults"].get(kind, {}).get(fault, 0) > 0, f"fault {kind}.{fault} never fired"
        # Safe faults record nothing: exactly one billed create per job.
        assert st["creates_recorded"] == 80, st["creates_recorded"]
        check_store(d, list(jobs.values()), st)
        log = d.log()
        assert "event=job.url_refreshed" in log
        assert "resumed=true" in log, "no truncated download was resumed with Range"


def test_ambiguous_creates_fail_and_are_never_resent():
    # Without reconciliation (window 0) the policy applies at once.
    with Klingd(config_overrides={"reconcile": {"window_s": 0}}, fake_args=FAST_FAKE) as d:
        d.fake.config({"script": [{"kind": "create", "fault": "reset_after_create", "count": 1},
                                  {"kind": "create", "fault": "error_500_after_create", "count": 1},
                                  {"kind": "create", "fault": "error_504", "count": 1}]})
        d.post("/v1/pause")
        r = d.submit(specs(6, "amb"))
        d.post("/v1/resume")
        jobs = d.wait_terminal([j["id"] for j in r["jobs"]], timeout=30)
        failed = [j for j in jobs.values() if j["state"] == "failed"]
        assert len(failed) == 3, [(j["key"], j["state"]) for j in jobs.values()]
        for j in failed:
            assert j["error"]["code"] == "ambiguous_create", j["error"]
            assert j["attempts"] == 1
        st = d.fake.stats()
        assert st["create_calls"] == 6, st["create_calls"]  # nothing re-sent
        check_store(d, list(jobs.values()), st)
        # The user may ask for it explicitly: retry sends a new attempt.
        again = d.post(f"/v1/jobs/{failed[0]['id']}/retry")
        assert again.status == 200, again
        j = d.wait_terminal([failed[0]["id"]])[failed[0]["id"]]
        assert j["state"] == "completed" and j["attempts"] == 2, j


def test_ambiguous_policy_retry_resends():
    with Klingd(config_overrides={"on_ambiguous_create": "retry", "reconcile": {"window_s": 0}},
                fake_args=FAST_FAKE) as d:
        d.fake.config({"script": [{"kind": "create", "fault": "reset", "count": 1}]})
        r = d.submit(specs(1, "amb-retry"))
        j = d.wait_terminal([r["jobs"][0]["id"]])[r["jobs"][0]["id"]]
        assert j["state"] == "completed" and j["attempts"] == 2, j


def test_invalid_request_from_provider_fails_the_job():
    with Klingd(config_overrides={"allow_unknown_models": True}, fake_args=FAST_FAKE) as d:
        r = d.submit([{"request": {"model": "klingai/not-a-model", "prompt": "x"}}])
        j = d.wait_terminal([r["jobs"][0]["id"]])[r["jobs"][0]["id"]]
        assert j["state"] == "failed" and j["error"]["code"] == "invalid_request", j
        assert j["error"]["http_status"] == 400
        assert "model" in j["error"]["message"]


def test_provider_failure_is_reported():
    with Klingd(fake_args=FAST_FAKE + ("--failure-rate", "1", "--failure-style", "detail")) as d:
        r = d.submit(specs(2, "pf"))
        jobs = d.wait_terminal([j["id"] for j in r["jobs"]])
        for j in jobs.values():
            assert j["state"] == "failed" and j["error"]["code"] == "provider_failed", j
            assert j["error"]["message"]
        # A retry must create anew: the provider said this generation failed.
        j0 = list(jobs.values())[0]
        d.fake.config({"failure_rate": 0})
        assert d.post(f"/v1/jobs/{j0['id']}/retry").status == 200
        j = d.wait_terminal([j0["id"]])[j0["id"]]
        assert j["state"] == "completed" and j["attempts"] == 2


def test_account_error_pauses_instead_of_failing():
    with Klingd(fake_args=FAST_FAKE) as d:
        d.fake.config({"credits_exhausted": True})
        r = d.submit(specs(5, "acct"))
        ids = [j["id"] for j in r["jobs"]]
        status = d.wait_for(lambda: (lambda s: s if s["paused"] else None)(d.get_json("/v1/status")), 10,
                            what="dispatch to pause")
        assert "403" in status["paused"], status["paused"]
        time.sleep(0.5)
        states = {d.job(i)["state"] for i in ids}
        assert states == {"queued"}, states  # nothing failed, nothing lost
        d.fake.config({"credits_exhausted": False})
        assert d.post("/v1/resume").status == 200
        jobs = d.wait_terminal(ids)
        assert {j["state"] for j in jobs.values()} == {"completed"}


def test_expired_url_is_refreshed_and_truncated_download_resumes():
    with Klingd(fake_args=FAST_FAKE + ("--video-bytes", "3000000"), tls=True) as d:
        d.fake.config({"script": [{"kind": "download", "fault": "expired_url", "count": 1},
                                  {"kind": "download", "fault": "truncated", "count": 1}]})
        r = d.submit(specs(1, "refresh"))
        jid = r["jobs"][0]["id"]
        j = d.wait_terminal([jid])[jid]
        assert j["state"] == "completed", j
        assert j["video"]["bytes"] == 3000000
        history = d.job(jid)["history"]
        assert any(h.get("step") == "url_refresh" for h in history), history
        st = d.fake.stats()
        assert st["faults"]["download"]["expired_url"] == 1 and st["faults"]["download"]["truncated"] == 1
        check_store(d, [j], st)
        assert "resumed=true" in d.log()


def test_api_answers_while_large_downloads_run():
    """Issue 19: four 96 MiB downloads at once over TLS, written and hashed on the worker thread
    through bounded buffer pools; the API keeps answering on the loop meanwhile, and every file is
    byte-exact (check_store hashes each against the fake's generation)."""
    size = 96 << 20
    with Klingd(config_overrides={"download": {"max_concurrent": 4}},
                fake_args=FAST_FAKE + ("--video-bytes", str(size)), tls=True) as d:
        ids = [j["id"] for j in d.submit(specs(4, "bigdl"))["jobs"]]
        answered_during = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = {j["state"] for j in all_jobs(d)}
            if states <= set(klingtest.TERMINAL):
                break
            r = d.get("/v1/status", timeout=10)
            assert r.status == 200, r
            if "downloading" in states:
                answered_during += 1
            time.sleep(0.002)
        # The loop answered (the job list, then the status) while a download was running.
        assert answered_during >= 1
        jobs = d.wait_terminal(ids, timeout=120)
        assert {j["state"] for j in jobs.values()} == {"completed"}, jobs
        assert all(j["video"]["bytes"] == size for j in jobs.values())
        check_store(d, list(jobs.values()), d.fake.stats())


def test_sigkill_in_every_state_then_restart():
    """SIGKILL while jobs are queued, submitting, generating and downloading; after a restart
    every job ends terminal with no duplicate create, no .part file and an intact database."""
    # A create cut by the kill before it reached the provider leaves no log row: a short
    # reconcile window lets the policy settle it within the test's time.
    cfg = {"provider": {"max_in_flight": 8}, "shutdown": {"grace_s": 2}, "reconcile": {"window_s": 3}}
    with Klingd(config_overrides=cfg, fake_args=("--queued-s", "0.2", "--generating-s", "1.0",
                                                 "--slow-delay-s", "1.5", "--video-bytes", "20000000"),
                tls=True) as d:
        # Some creates hang (slow, recorded first) so the kill lands while they are in flight.
        d.fake.config({"faults": {"create": {"slow": 0.3}}})
        r = d.submit(specs(24, "kill"))
        ids = [j["id"] for j in r["jobs"]]
        seen = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not {"queued", "submitting", "generating"} <= seen:
            seen |= {j["state"] for j in all_jobs(d)}
            time.sleep(0.02)
        assert {"queued", "submitting", "generating"} <= seen, seen
        d.kill()
        d.fake.config({"faults": {"create": {}}})
        d.start()
        # Kill again once something is downloading.
        d.wait_for(lambda: any(j["state"] == "downloading" for j in all_jobs(d)), 30, 0.01, "a download")
        d.kill()
        d.start()
        jobs = d.wait_terminal(ids, timeout=120)
        st = d.fake.stats()
        check_store(d, list(jobs.values()), st)
        for j in jobs.values():
            if j["state"] == "failed":
                # Only a create cut by the kill may end this way, under the default policy.
                assert j["error"]["code"] == "ambiguous_create", j
            else:
                assert j["state"] == "completed", j
        for prefix, c in st["create_calls_by_job"].items():
            assert c["calls"] == 1, f"job {prefix}: {c['calls']} create calls"


def test_clean_restart_resumes_generating_jobs_without_new_creates():
    with Klingd(fake_args=("--queued-s", "0.5", "--generating-s", "2")) as d:
        r = d.submit(specs(10, "clean"))
        ids = [j["id"] for j in r["jobs"]]
        d.wait_for(lambda: all(d.job(i)["state"] == "generating" for i in ids), 20, what="all generating")
        d.stop()  # SIGTERM: exit 0 asserted
        d.start()
        jobs = d.wait_terminal(ids, timeout=30)
        assert {j["state"] for j in jobs.values()} == {"completed"}
        assert d.fake.stats()["create_calls"] == 10


def test_cancel_stops_polling_and_retry_resumes_the_paid_generation():
    with Klingd(fake_args=("--queued-s", "0.2", "--generating-s", "1.5")) as d:
        r = d.submit(specs(1, "cancel"))
        jid = r["jobs"][0]["id"]
        d.wait_for(lambda: d.job(jid)["state"] == "generating", 10, what="generating")
        assert d.post(f"/v1/jobs/{jid}/cancel").status == 200
        assert d.job(jid)["state"] == "canceled"
        assert d.post(f"/v1/jobs/{jid}/cancel").status == 409
        polls = d.fake.stats()["polls"]
        time.sleep(0.5)
        assert d.fake.stats()["polls"] == polls, "a canceled job is still polled"
        assert d.post(f"/v1/jobs/{jid}/retry").status == 200
        j = d.wait_terminal([jid])[jid]
        assert j["state"] == "completed", j
        assert d.fake.stats()["create_calls"] == 1  # the paid generation was resumed, not re-created


def test_generation_timeout():
    with Klingd(fake_args=("--queued-s", "0.1", "--generating-s", "30")) as d:
        r = d.submit([{"timeout_s": 0.8, "request": text_request("slow one")}])
        jid = r["jobs"][0]["id"]
        j = d.wait_terminal([jid], timeout=15)[jid]
        assert j["state"] == "failed" and j["error"]["code"] == "timeout", j


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(globals()))
