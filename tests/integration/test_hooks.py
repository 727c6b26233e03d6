#!/usr/bin/env python3
"""Completion hooks (issue 18 point 4, docs/contract.md §4.7): hooks.on_job_done and
hooks.on_batch_done run a command (argv, job fields in the environment) and/or POST a signed
webhook, once per terminal transition; what is owed is in the store with the transition itself,
so a daemon killed before delivering delivers after its restart, exactly once; a failing webhook
is retried, then recorded failed in the job's history and in `klingctl show`."""

import hashlib
import hmac
import http.server
import json
import os
import stat
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd  # noqa: E402
from test_engine import FAST_FAKE, specs  # noqa: E402

SECRET = "hook-secret-\u00e9"  # non-ASCII: the key is the UTF-8 bytes


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST (headers, body, signature valid?);
    answers `status` (a list is used up one answer per request, then 200)."""

    def __init__(self, status=200, port=0):
        self.requests = []
        self.status = status
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sig = self.headers.get("X-Klingd-Signature", "")
                want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                with outer.lock:
                    outer.requests.append({"headers": dict(self.headers), "body": json.loads(body),
                                           "signed": hmac.compare_digest(sig, want), "path": self.path})
                    s = outer.status
                    code = s.pop(0) if isinstance(s, list) and s else (200 if isinstance(s, list) else s)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, event=None):
        with self.lock:
            return [r for r in self.requests if event is None or r["body"]["event"] == event]


def env_script(d):
    """A command hook that appends its KLINGD_* environment (and whether AIMLAPI_KEY leaked) as
    one JSON line to a file."""
    out = os.path.join(d, "hook-env.jsonl")
    script = os.path.join(d, "hook.py")
    with open(script, "w") as f:
        f.write("#!/usr/bin/env python3\nimport json, os, sys\n"
                f"with open({out!r}, 'a') as f:\n"
                "    f.write(json.dumps({k: v for k, v in os.environ.items()"
                " if k.startswith('KLINGD_') or k in ('AIMLAPI_KEY', 'SECRET_IN_ENV')}) + '\\n')\n"
                "print('hook ran for', os.environ['KLINGD_JOB_ID']); print('to stderr', file=sys.stderr)\n")
    os.chmod(script, os.stat(script).st_mode | stat.S_IXUSR)
    return script, out


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def hooks_config(job=None, batch=None, **extra):
    cfg = {"secret": SECRET, "backoff_s": 0.1, "backoff_max_s": 0.3, "max_attempts": 3}
    if job:
        cfg["on_job_done"] = job
    if batch:
        cfg["on_batch_done"] = batch
    cfg.update(extra)
    return {"hooks": cfg}


def test_job_and_batch_hooks_fire_once_with_env_body_and_signature():
    rx = Receiver()
    try:
        with Klingd(fake_args=FAST_FAKE, start=False, env={"SECRET_IN_ENV": "x"}) as d:
            script, env_out = env_script(d.workdir)
            d.start(hooks_config(job={"command": [script], "webhook": {"url": rx.url}},
                                 batch={"command": [script], "webhook": {"url": rx.url}}))
            d.post("/v1/pause")
            r = d.submit(specs(3, "hk") + [{"key": "hk-labeled", "labels": {"team": "a"},
                                             "request": klingtest.text_request("labeled")}])
            batch = r["batch"]
            ids = [j["id"] for j in r["jobs"]]
            assert d.post(f"/v1/jobs/{ids[0]}/cancel").status == 200
            d.post("/v1/resume")
            jobs = d.wait_terminal(ids)
            assert jobs[ids[0]]["state"] == "canceled" and all(jobs[i]["state"] == "completed" for i in ids[1:])
            d.wait_for(lambda: len(rx.bodies("job.done")) == 4 and len(rx.bodies("batch.done")) == 1
                       and len(read_lines(env_out)) == 5, 30, what="4 job hooks and 1 batch hook")
            # Settled: let a few more runner rounds pass, then nothing more arrived.
            d.wait_for(lambda: all(h["status"] == "delivered" for i in ids for h in d.job(i)["hooks"]), 30,
                       what="hooks settled")
            assert len(rx.bodies()) == 5 and len(read_lines(env_out)) == 5

            by_job = {b["body"]["job"]["job_id"]: b for b in rx.bodies("job.done")}
            assert set(by_job) == set(ids)
            for b in rx.bodies():
                assert b["signed"], b
                assert b["headers"]["Content-Type"] == "application/json"
                assert b["headers"]["X-Klingd-Event"] == b["body"]["event"]
                assert b["path"] == "/hook"
            done = by_job[ids[1]]["body"]["job"]
            assert done["state"] == "completed" and done["batch_id"] == batch and done["key"] == "hk-1"
            assert done["video"]["sha256"] == jobs[ids[1]]["video"]["sha256"]
            assert done["video"]["bytes"] == jobs[ids[1]]["video"]["bytes"]
            assert done["timings"]["completed_at"] and done["timings"]["attempts"] == 1
            assert by_job[ids[0]]["body"]["job"]["state"] == "canceled"
            assert by_job[ids[0]]["body"]["job"]["video"] is None
            assert by_job[ids[3]]["body"]["job"]["labels"] == {"team": "a"}
            bd = rx.bodies("batch.done")[0]["body"]
            assert bd["batch"]["id"] == batch and bd["batch"]["jobs"] == 4
            assert bd["batch"]["counts"] == {"completed": 3, "failed": 0, "canceled": 1}, bd

            envs = read_lines(env_out)
            job_envs = {e["KLINGD_JOB_ID"]: e for e in envs if e["KLINGD_EVENT"] == "job.done"}
            assert set(job_envs) == set(ids)
            e1 = job_envs[ids[1]]
            assert e1["KLINGD_JOB_STATE"] == "completed" and e1["KLINGD_BATCH_ID"] == batch
            assert e1["KLINGD_JOB_KEY"] == "hk-1" and e1["KLINGD_JOB_SHA256"] == jobs[ids[1]]["video"]["sha256"]
            assert e1["KLINGD_JOB_OUTPUT"] == jobs[ids[1]]["video"]["path"] and os.path.exists(e1["KLINGD_JOB_OUTPUT"])
            assert float(e1["KLINGD_JOB_COST_USD"]) == jobs[ids[1]]["cost"]["usd"]
            assert job_envs[ids[0]]["KLINGD_JOB_STATE"] == "canceled" and job_envs[ids[0]]["KLINGD_JOB_OUTPUT"] == ""
            benv = [e for e in envs if e["KLINGD_EVENT"] == "batch.done"]
            assert len(benv) == 1 and benv[0]["KLINGD_BATCH_COMPLETED"] == "3" and benv[0]["KLINGD_BATCH_CANCELED"] == "1"
            for e in envs:
                # Only PATH, HOME, … come from the daemon's environment: no key, nothing else.
                assert "AIMLAPI_KEY" not in e and "SECRET_IN_ENV" not in e, e

            j = d.job(ids[1])
            # Its own two, and the batch's two when it was the job that ended the batch.
            assert [h["step"] for h in j["history"] if h.get("step", "").startswith("hook")] == \
                ["hook_delivered"] * len(j["hooks"])
            assert sorted((h["hook"], h["kind"], h["status"]) for h in j["hooks"] if h["hook"] == "on_job_done") == [
                ("on_job_done", "command", "delivered"), ("on_job_done", "webhook", "delivered")]
            show = d.ctl("show", ids[1], check=0).stdout
            assert "on_job_done webhook (completed): delivered after 1 attempt(s)" in show, show
            log = d.log()
            assert "hook.command_done" in log and "hook ran for" in log and "to stderr" in log
            assert SECRET not in log and "test-key" not in log
    finally:
        rx.close()


def test_failing_webhook_is_retried_then_recorded_failed():
    rx = Receiver(status=500)
    try:
        with Klingd(fake_args=FAST_FAKE, config_overrides=hooks_config(job={"webhook": {"url": rx.url}})) as d:
            jid = d.submit(specs(1, "hf"))["jobs"][0]["id"]
            d.wait_terminal([jid])
            d.wait_for(lambda: d.job(jid)["hooks"] and d.job(jid)["hooks"][0]["status"] == "failed", 30,
                       what="webhook recorded failed")
            j = d.job(jid)
            h = j["hooks"][0]
            assert h["attempts"] == 3 and "HTTP 500" in h["last_error"], h
            assert len(rx.bodies()) == 3 and all(b["signed"] for b in rx.bodies())
            assert len({b["headers"]["X-Klingd-Delivery"] for b in rx.bodies()}) == 1
            failed = [e for e in j["history"] if e.get("step") == "hook_failed"]
            assert len(failed) == 1 and failed[0]["error"]["code"] == "hook_failed", j["history"]
            assert "on_job_done webhook failed after 3 attempt(s)" in failed[0]["error"]["message"]
            show = d.ctl("show", jid, check=0).stdout
            assert "failed after 3 attempt(s)" in show and "HTTP 500" in show, show
    finally:
        rx.close()


def test_owed_hooks_survive_kill_9_and_are_delivered_once_after_restart():
    # The receiver is down (nothing listens on its port) while the jobs end; klingd is killed
    # with the hooks still owed; the receiver comes up and klingd restarts.
    probe = Receiver()
    port = probe.port
    probe.close()
    with Klingd(fake_args=FAST_FAKE, start=False) as d:
        script, env_out = env_script(d.workdir)
        url = f"http://127.0.0.1:{port}/hook"
        # Long pauses between attempts: the first attempt fails (connection refused) and the
        # next one is due only after the restart.
        d.start(hooks_config(job={"webhook": {"url": url}}, batch={"webhook": {"url": url}},
                             backoff_s=1, backoff_max_s=1, max_attempts=50))
        r = d.submit(specs(3, "hc"))
        ids = [j["id"] for j in r["jobs"]]
        d.wait_terminal(ids)
        d.wait_for(lambda: all(h["attempts"] >= 1 for i in ids for h in d.job(i)["hooks"])
                   and sum(len(d.job(i)["hooks"]) for i in ids) == 4, 30, what="first attempts refused")
        assert all(h["status"] == "pending" for i in ids for h in d.job(i)["hooks"])
        d.kill()
        rx = Receiver(port=port)
        try:
            d.start()
            d.wait_for(lambda: all(h["status"] == "delivered" for i in ids for h in d.job(i)["hooks"]), 30,
                       what="owed hooks delivered after restart")
            assert sorted(b["body"]["job"]["job_id"] for b in rx.bodies("job.done")) == sorted(ids)
            assert len(rx.bodies("batch.done")) == 1 and rx.bodies("batch.done")[0]["body"]["batch"]["id"] == r["batch"]
            # Restarted once more: delivered hooks are not run again.
            d.restart()
            d.wait_for(lambda: d.get_json("/v1/status"), 5)
            d.submit(specs(1, "hc-after"))  # a commit with a terminal event wakes the runner
            d.wait_for(lambda: len(rx.bodies("job.done")) == 4, 30, what="the new job's hook")
            assert len(rx.bodies("job.done")) == 4 and len(rx.bodies("batch.done")) == 2
        finally:
            rx.close()


def test_a_retried_job_owes_its_hook_again_and_bad_config_is_refused():
    with Klingd(fake_args=FAST_FAKE, start=False) as d:
        script, env_out = env_script(d.workdir)
        d.start(hooks_config(job={"command": [script]}))
        d.post("/v1/pause")
        jid = d.submit(specs(1, "hr"))["jobs"][0]["id"]
        d.post(f"/v1/jobs/{jid}/cancel")
        d.wait_for(lambda: len(read_lines(env_out)) == 1, 30, what="hook for the cancel")
        d.post("/v1/resume")
        assert d.post(f"/v1/jobs/{jid}/retry").status == 200
        d.wait_terminal([jid])
        d.wait_for(lambda: len(read_lines(env_out)) == 2, 30, what="hook for the completion")
        assert [e["KLINGD_JOB_STATE"] for e in read_lines(env_out)] == ["canceled", "completed"]
        d.stop()
        for bad, words in [({"hooks": {"on_job_done": {"webhook": {"url": "http://127.0.0.1:9/x"}}}}, "secret"),
                           ({"hooks": {"on_job_done": {"command": "echo hi"}}}, "hooks.on_job_done.command"),
                           ({"hooks": {"on_job_done": {"webhook": {"url": "ftp://x"}}, "secret": "s"}},
                            "hooks.on_job_done.webhook.url")]:
            d.write_config(bad)
            p = klingtest.subprocess.run([klingtest.klingd_bin(), "--config", d.config_path, "--check-config"],
                                         capture_output=True, text=True, timeout=30)
            assert p.returncode != 0 and words in (p.stdout + p.stderr), (bad, p.stdout, p.stderr)


def test_a_hook_removed_from_the_config_is_recorded_failed_at_once():
    probe = Receiver()
    url = probe.url
    probe.close()  # nothing listens there: the first attempt is refused
    with Klingd(fake_args=FAST_FAKE, config_overrides=hooks_config(job={"webhook": {"url": url}}, backoff_s=1,
                                                                   backoff_max_s=1, max_attempts=50)) as d:
        jid = d.submit(specs(1, "hx"))["jobs"][0]["id"]
        d.wait_terminal([jid])
        d.wait_for(lambda: d.job(jid)["hooks"] and d.job(jid)["hooks"][0]["attempts"] == 1, 30, what="first attempt")
        d.stop()
        d.start({"hooks": {"backoff_s": 1, "backoff_max_s": 1}})  # no on_job_done any more
        d.wait_for(lambda: d.job(jid)["hooks"][0]["status"] == "failed", 30, what="removed hook settled")
        h = d.job(jid)["hooks"][0]
        assert h["attempts"] == 2 and "hooks.on_job_done.webhook.url is no longer configured" in h["last_error"], h


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(globals()))
