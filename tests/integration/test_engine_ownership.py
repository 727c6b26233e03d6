#!/usr/bin/env python3
"""Who owns a job at each moment (issue 14): cancel/retry while a create is being
reconciled, creates that never reached the provider, the last look at the deadline, and a
stale .part of an earlier generation. Real klingd + fake-aimlapi on loopback, time
compressed. Each test states what it proves; each failed on the engine before the fix."""

import glob
import hashlib
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd, text_request  # noqa: E402
from klingtest import FAST_FAKE, specs  # noqa: E402

# Long enough that no test here ever reaches the end of the window: what settles a create
# must be the request log, never the clock.
LONG_WINDOW = {"reconcile": {"window_s": 300}}


def creates_of(d, jid):
    """{calls, recorded} of the create calls the fake saw for job `jid` (any attempt)."""
    return d.fake.stats(sha256=False)["create_calls_by_job"].get(jid, {"calls": 0, "recorded": 0})


def generation(d, gid):
    for g in d.fake.stats()["generations"]:
        if g["id"] == gid:
            return g
    raise AssertionError(f"the fake has no generation {gid}")


def faults(d, kind, fault):
    return d.fake.stats(sha256=False)["faults"].get(kind, {}).get(fault, 0)


def wait_ends(d, ids, timeout):
    """Waits until the jobs are terminal; returns {id: job}. On timeout fails naming the state
    each unfinished one is stuck in."""
    try:
        return d.wait_terminal(ids, timeout=timeout)
    except AssertionError:
        stuck = []
        for jid in ids:
            j = d.job(jid)
            if j["state"] not in klingtest.TERMINAL:
                stuck.append(f"job {jid} still {j['state']}/{j['step']} (attempts {j['attempts']}, "
                             f"creates {creates_of(d, jid)})")
        raise AssertionError(f"after {timeout}s: " + "; ".join(stuck)) from None


def wait_end(d, jid, timeout):
    return wait_ends(d, [jid], timeout)[jid]


def wait_reconciling(d, jid):
    d.wait_for(lambda: d.job(jid).get("step") == "reconciling", 10, 0.02, "the create to be reconciled")
    assert d.job(jid)["state"] == "submitting"


def cancel_while_reconciling(d, key):
    """Submits one job whose create the provider records and bills but whose answer is lost
    (reset_after_create); cancels it with `klingctl cancel` while it is being reconciled."""
    d.fake.config({"script": [{"kind": "create", "fault": "reset_after_create", "count": 1}]})
    jid = d.submit(specs(1, key))["jobs"][0]["id"]
    wait_reconciling(d, jid)
    d.ctl("cancel", jid, check=0)
    return jid


def ends_completed_with_one_create(d, jid, timeout):
    """Waits for the job: completed, with its own video, after exactly one create call."""
    j = wait_end(d, jid, timeout)
    c = creates_of(d, jid)
    assert c["calls"] == 1, f"job {jid} sent {c['calls']} create calls ({c['recorded']} billed); expected 1"
    assert_own_video(d, j)
    return j


def retry_until_accepted(d, jid, timeout=15):
    """`klingctl retry`; a job still settling its create may refuse it for a moment (conflict):
    asked again until accepted."""
    deadline = time.monotonic() + timeout
    while True:
        p = d.ctl("retry", jid)
        if p.returncode == 0:
            return
        assert time.monotonic() < deadline, f"retry never accepted: {p.returncode} {p.stdout} {p.stderr}"
        time.sleep(0.2)


def assert_own_video(d, j):
    """The job's file is exactly its own generation's video, as the provider made it."""
    assert j["state"] == "completed", (j["state"], j["error"])
    g = generation(d, j["generation_id"])
    data = open(j["video"]["path"], "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    assert digest == j["video"]["sha256"], "the recorded sha256 is not the file's"
    assert digest == g["sha256"], (f"the file of job {j['id']} is not the video of its generation {g['id']} "
                                   f"({len(data)} bytes, sha256 {digest[:16]}…, the provider's {g['sha256'][:16]}…)")


# --- 1. cancel and retry while the create is being reconciled ----------------------------------

def test_cancel_then_retry_while_reconciling_pays_once():
    """A create recorded and billed by the provider whose answer was lost (reset_after_create)
    is being reconciled (the log row shows up 2 s later); `klingctl cancel` then `klingctl retry`
    meanwhile must not send a second paid create: the job ends completed with the one create the
    provider billed. (Before the fix the retry queued the job and a second create went out.)"""
    with Klingd(config_overrides=LONG_WINDOW, fake_args=FAST_FAKE + ("--logs-delay-s", "2")) as d:
        jid = cancel_while_reconciling(d, "cancel-retry")
        assert d.job(jid)["state"] == "canceled"
        retry_until_accepted(d, jid)
        j = ends_completed_with_one_create(d, jid, 20)
        assert j["generation_id"] == d.fake.stats(sha256=False)["generations"][0]["id"]


def test_cancel_while_reconciling_keeps_the_generation_for_a_retry():
    """Canceled while its create is reconciled and not retried: the job stays canceled, and the
    generation the log names is recorded on it (generation_id), so a later retry polls that
    generation instead of creating: completed with one create in all. (A guard: this already
    held before the fix; the restart variant below did not.)"""
    with Klingd(config_overrides=LONG_WINDOW, fake_args=FAST_FAKE + ("--logs-delay-s", "1.5")) as d:
        jid = cancel_while_reconciling(d, "cancel-keep")
        gid = d.fake.stats(sha256=False)["generations"][0]["id"]
        d.wait_for(lambda: d.job(jid)["generation_id"] == gid, 15, 0.1, "the logged generation on the canceled job")
        assert d.job(jid)["state"] == "canceled"
        d.ctl("retry", jid, check=0)
        j = ends_completed_with_one_create(d, jid, 15)
        assert j["generation_id"] == gid


def test_cancel_while_reconciling_then_restart_keeps_the_generation():
    """As above, but klingd is stopped cleanly (SIGTERM) right after the cancel, before the log
    row is visible: after the restart the canceled job's unsettled create is still settled
    through the log, the job stays canceled with the generation recorded, and a retry polls it:
    one create in all. (Before the fix canceled jobs were not looked at after a restart: the
    generation was never recorded.)"""
    with Klingd(config_overrides=LONG_WINDOW, fake_args=FAST_FAKE + ("--logs-delay-s", "1.5")) as d:
        jid = cancel_while_reconciling(d, "cancel-restart")
        d.stop()  # SIGTERM: exit 0 asserted
        d.start()
        gid = d.fake.stats(sha256=False)["generations"][0]["id"]
        d.wait_for(lambda: d.job(jid)["generation_id"] == gid, 15, 0.1,
                   "the logged generation on the canceled job after the restart")
        assert d.job(jid)["state"] == "canceled"
        d.ctl("retry", jid, check=0)
        ends_completed_with_one_create(d, jid, 15)


# --- 2. creates that never reached the provider -------------------------------------------------

def test_creates_that_never_reached_the_provider_are_resent_on_absence_proof():
    """Two creates the provider never saw (fake fault `lost`: held, then reset; nothing recorded,
    no log row): job A's is cut by SIGKILL (its attempt is left `pending`), job B's times out
    after provider.request_timeout_s (ambiguous). Once the request log holds rows of later
    requests (other jobs' creates) and none carries their X-Client-Request-Id, the creates
    provably never arrived: both are re-sent long before reconcile.window_s (300 s) and complete
    with one billed create each, never failing ambiguous_create. (Before the fix both waited in
    `reconciling` for the whole window.)"""
    # Proof once the log shows a row created after send + 2 s (request timeout) + 2 s (slack).
    cfg = dict(LONG_WINDOW, provider={"request_timeout_s": 2},
               reconcile=dict(LONG_WINDOW["reconcile"], absence_slack_s=2))
    with Klingd(config_overrides=cfg, fake_args=FAST_FAKE + ("--slow-delay-s", "30")) as d:
        d.fake.config({"script": [{"kind": "create", "fault": "lost", "count": 1}]})
        a = d.submit(specs(1, "lost-a"))["jobs"][0]["id"]
        d.wait_for(lambda: faults(d, "create", "lost") == 1, 10, 0.02, "A's create to be held")
        d.kill()
        d.fake.config({"script": [{"kind": "create", "fault": "lost", "count": 1}]})
        d.start()
        b = d.submit(specs(1, "lost-b"))["jobs"][0]["id"]
        d.wait_for(lambda: faults(d, "create", "lost") == 2, 10, 0.02, "B's create to be held")
        with klingtest.Traffic(d) as traffic:
            jobs = wait_ends(d, [a, b], 30)
        logged = {row.get("client_request_id") for row in d.fake.logs(limit=100).json()["data"]}
        assert f"{a}.1" not in logged and f"{b}.1" not in logged, "a lost create left a log row"
        for jid, j in jobs.items():
            assert j["state"] == "completed", (jid, j["state"], j["error"])
            c = creates_of(d, jid)
            assert c == {"calls": 2, "recorded": 1}, (jid, c)  # the lost one, then the one resent
            assert_own_video(d, j)
        others = wait_ends(d, traffic.ids, 15)
        assert all(j["state"] == "completed" for j in others.values())


def test_canceled_job_with_an_unsettled_create_is_settled_after_a_restart():
    """A job canceled while its (billed) create is reconciled, then klingd is SIGKILLed: at the
    next start the unsettled create of the canceled job is still settled through the log, so a
    retry uses the billed generation: one create in all. (Before the fix canceled jobs were
    skipped at start and the retry created again: 2 creates, both billed.)"""
    with Klingd(config_overrides=LONG_WINDOW, fake_args=FAST_FAKE + ("--logs-delay-s", "1.5")) as d:
        jid = cancel_while_reconciling(d, "cancel-kill")
        d.kill()
        d.start()
        assert d.job(jid)["state"] == "canceled"
        retry_until_accepted(d, jid)
        ends_completed_with_one_create(d, jid, 20)


# --- 3. the last look at the deadline ------------------------------------------------------------

def test_timeout_takes_a_last_look_at_the_deadline():
    """The generation completes after 0.6 s but the poll schedule would first look after 30 s;
    at the job's deadline (timeout_s 2) klingd polls once more, sees `completed` and downloads
    it instead of failing `timeout` unseen. (Before the fix: failed timeout with zero polls.)"""
    cfg = {"poll": {"initial_s": 30, "max_s": 30, "jitter": 0}}
    with Klingd(config_overrides=cfg, fake_args=("--queued-s", "0.1", "--generating-s", "0.5")) as d:
        jid = d.submit([{"key": "last-look", "timeout_s": 2, "request": text_request("last look")}])["jobs"][0]["id"]
        j = wait_end(d, jid, 10)
        assert j["state"] == "completed", (j["state"], j["error"], f"polls {generation(d, j['generation_id'])['polls']}")
        assert_own_video(d, j)


def test_timeout_after_downtime_takes_a_last_look():
    """klingd is stopped while the job is generating and started again after its timeout_s has
    passed; the generation completed meanwhile. At start one poll sees `completed` and the job
    downloads it instead of failing `timeout` unseen. (Before the fix: failed timeout at once.)"""
    with Klingd(fake_args=("--queued-s", "0.1", "--generating-s", "1.0")) as d:
        jid = d.submit([{"key": "downtime", "timeout_s": 2.5, "request": text_request("downtime")}])["jobs"][0]["id"]
        d.wait_for(lambda: d.job(jid)["state"] == "generating", 10, 0.02, "generating")
        d.stop()  # SIGTERM: a clean stop, exit 0 asserted
        time.sleep(3.0)  # past the deadline; the generation completed at ~1.1 s
        d.start()
        j = wait_end(d, jid, 10)
        assert j["state"] == "completed", (j["state"], j["error"], f"polls {generation(d, j['generation_id'])['polls']}")
        assert_own_video(d, j)


# --- 4. a stale .part of an earlier generation --------------------------------------------------

def test_retry_never_resumes_onto_a_part_of_an_earlier_generation():
    """The first generation's download is cut half-way (a 1 MB .part stays for a Range resume),
    then the URL refresh reports the generation failed (fake poll fault `failed_status`): the job
    fails provider_failed. `retry` creates a second generation; its file must be that
    generation's own bytes, not the old .part with the new video's tail appended by a Range
    resume. (Before the fix the spliced file — the old 1 MB prefix, then the new video from
    byte 1,000,000 — was marked completed.)"""
    cfg = {"retry": {"max_attempts": 50, "base_s": 0.2, "max_s": 0.4}}
    with Klingd(config_overrides=cfg, fake_args=FAST_FAKE + ("--video-bytes", "2000000")) as d:
        # Cut, then every download says "URL expired": klingd keeps refreshing the URL (a poll
        # each round) until the refresh poll reports the generation failed.
        d.fake.config({"script": [{"kind": "download", "fault": "truncated", "count": 1},
                                  {"kind": "download", "fault": "expired_url", "count": 1000}]})
        jid = d.submit(specs(1, "stale-part"))["jobs"][0]["id"]
        d.wait_for(lambda: faults(d, "download", "truncated") == 1, 10, 0.01, "the cut download")
        # From now on every poll of this job is a URL refresh.
        d.fake.config({"script": [{"kind": "download", "fault": "expired_url", "count": 1000},
                                  {"kind": "poll", "fault": "failed_status", "count": 1}]})
        first = wait_end(d, jid, 15)
        assert first["state"] == "failed" and first["error"]["code"] == "provider_failed", first
        # The next generation is larger, as generations' videos are: its bytes differ from the
        # first one's from the padding box header on (equal sizes would share the whole prefix).
        d.fake.config({"script": [], "video_bytes": 3000000})
        d.ctl("retry", jid, check=0)
        j = wait_end(d, jid, 15)
        assert creates_of(d, jid) == {"calls": 2, "recorded": 2}, creates_of(d, jid)
        assert j["generation_id"] != first["generation_id"]
        assert j["video"]["bytes"] == 3000000
        assert_own_video(d, j)
        parts = glob.glob(os.path.join(d.videos_dir, "**", "*.part"), recursive=True)
        assert not parts, parts


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(globals()))
