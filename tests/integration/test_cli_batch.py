"""Batches from tables (issue 18, docs/contract.md §4.1, §4.2): klingctl submit --csv and --template --vars
against the real daemon and the fake provider; the daemon's dry run (POST /v1/jobs?dry_run=1) stores
nothing and prices the batch with the budgets' own estimate; the confirmation gate (exit 4); output names
from templates with the hostile-name and collision checks; bulk retry/cancel of a batch with label filters."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd, spec  # noqa: E402

MODEL = klingtest.DEFAULT_MODEL


def write(d, name, text, mode="w"):
    path = os.path.join(d.workdir, name)
    with open(path, mode, newline="") as f:
        f.write(text)
    return path


def price_per_second(d, model=MODEL):
    for m in d.get_json("/v1/models")["models"]:
        if m["id"] == model:
            assert m["price_unit"] == "per_second"
            return m["price_usd"]
    raise AssertionError(model)


def test_csv_dry_run_gate_and_submit():
    # The fake charges $0.20 a second, the catalog says less: the estimate's two sources differ.
    with Klingd(fake_args=("--queued-s", "0.05", "--generating-s", "0.1", "--price", f"{MODEL}=0.2")) as d:
        rows = ["model,prompt,duration,key,output,labels.team",
                f"{MODEL},a red fox,5,fox,{{date}}/{{key}}-{{index}}.mp4,zoo",
                f"{MODEL},\"a cat, sleeping\",10,cat,{{date}}/{{key}}-{{index}}.mp4,zoo",
                f"{MODEL},\"a dog\nrunning\",5,dog,{{date}}/{{key}}-{{index}}.mp4,farm",
                f"{MODEL},an emu,5,emu,{{date}}/{{key}}-{{index}}.mp4,farm"]
        csv = write(d, "rows.csv", "\r\n".join(rows) + "\r\n")
        # Dry run: the counts and the cost the budgets would expect (the catalog's price: no costs recorded yet).
        dry = d.ctl_json("submit", "--csv", csv, "--dry-run")
        price = price_per_second(d)
        assert dry["dry_run"] is True and dry["jobs"] == 4 and dry["new"] == 4 and dry["duplicates"] == 0, dry
        assert dry["by_model"][MODEL]["jobs"] == 4, dry
        assert abs(dry["expected_usd"] - price * 25) < 1e-9, (dry, price)
        assert dry["max_usd"] is None and dry["over_budget"] is False
        p = d.ctl("submit", "--csv", csv, "--dry-run", check=0)
        assert "dry run: 4 job(s), 4 new, 0 already stored" in p.stdout and MODEL in p.stdout, p.stdout
        assert f"expected cost: ${price * 25:.2f}" in p.stdout, p.stdout
        # -f files and single submits have the dry run too.
        lines = json.dumps(spec("f1")) + "\n" + json.dumps(spec("f2", key="f2")) + "\n"
        assert d.ctl_json("submit", "-f", "-", "--dry-run", input=lines)["jobs"] == 2
        one = d.ctl_json("submit", "--model", MODEL, "--prompt", "x", "--duration", "10", "--dry-run")
        assert one["jobs"] == 1 and abs(one["expected_usd"] - price * 10) < 1e-9, one
        # Nothing stored, nothing created.
        assert d.get_json("/v1/status")["total"] == 0
        assert d.get_json("/v1/jobs")["jobs"] == []
        assert d.fake.stats()["create_calls"] == 0

        # The gate: more new jobs than --confirm-over, or an expected cost above --max-usd, needs --yes.
        p = d.ctl("submit", "--csv", csv, "--confirm-over", "3", check=4)
        assert "4 new jobs is more than --confirm-over 3" in p.stderr and "--yes" in p.stderr, p.stderr
        p = d.ctl("submit", "--csv", csv, "--max-usd", "0.5", check=4)
        assert "exceeds the batch's max_usd $0.50" in p.stderr, p.stderr
        dry = d.ctl_json("submit", "--csv", csv, "--max-usd", "0.5", "--dry-run")
        assert dry["max_usd"] == 0.5 and dry["over_budget"] is True, dry
        assert d.get_json("/v1/status")["total"] == 0 and d.fake.stats()["create_calls"] == 0

        # Past the gate: the batch completes, with the outputs resolved before they were stored.
        p = d.ctl("submit", "--csv", csv, "--confirm-over", "3", "--yes", "--wait", check=0)
        assert "4 jobs submitted (4 new, 0 already existed)" in p.stdout, p.stdout
        today = time.strftime("%Y-%m-%d", time.gmtime())
        for i, key in enumerate(["fox", "cat", "dog", "emu"]):
            j = d.job(f"key:{key}")
            assert j["state"] == "completed" and j["output"] == f"{today}/{key}-{i}.mp4", j
            assert os.path.isfile(os.path.join(d.videos_dir, today, f"{key}-{i}.mp4"))
        cat = d.job("key:cat")
        assert cat["request"]["prompt"] == "a cat, sleeping" and cat["request"]["duration"] == 10
        assert cat["labels"] == {"team": "zoo"}
        assert d.job("key:dog")["request"]["prompt"] == "a dog\nrunning"
        assert d.fake.stats()["create_calls"] == 4

        # Again: every key is stored already; the dry run says so and prices nothing.
        dry = d.ctl_json("submit", "--csv", csv, "--dry-run")
        assert dry["new"] == 0 and dry["duplicates"] == 4 and dry["expected_usd"] == 0, dry
        # With three recorded costs for the model and duration, the estimate is their median, as the
        # dispatcher's budget check takes it (docs/contract.md §3.6), not the catalog's price.
        costs = sorted(d.job(f"key:{k}")["cost"]["usd"] for k in ("fox", "dog", "emu"))  # the 5 s jobs
        more = write(d, "more.csv", "model,prompt,duration\n" + "\n".join(f"{MODEL},p{i},5" for i in range(2)) + "\n")
        dry = d.ctl_json("submit", "--csv", more, "--dry-run")
        assert abs(costs[1] - price * 5) > 1e-6, "the fake must charge otherwise than the catalog says here"
        assert abs(dry["expected_usd"] - 2 * costs[1]) < 1e-9, (dry, costs)
        api = d.post("/v1/jobs?dry_run=1", {"jobs": [spec(f"p{i}") for i in range(2)]})
        assert api.status == 200 and api.json()["expected_usd"] == dry["expected_usd"], api
        assert d.get_json("/v1/status")["total"] == 4 and d.fake.stats()["create_calls"] == 4


def test_template_vars_and_their_errors():
    with Klingd() as d:
        tmpl = write(d, "spec.json", json.dumps({
            "request": {"model": MODEL, "prompt": "a {subject} at {time}, {{no placeholder}}", "duration": "{secs}"},
            "key": "tpl-{subject}",
            "priority": "{prio}",
            "output": "{batch}/{model}/{subject}.mp4",
            "labels": {"subject": "{subject}"},
        }))
        vars_csv = write(d, "vars.csv", "\ufeffsubject,time,secs,prio\r\nfox,dawn,5,3\r\n\"owl\",\"night, late\",10,-1\r\n")
        p = d.ctl("submit", "--template", tmpl, "--vars", vars_csv, "--wait", check=0)
        assert "2 jobs submitted" in p.stdout, p.stdout
        fox, owl = d.job("key:tpl-fox"), d.job("key:tpl-owl")
        assert fox["request"]["prompt"] == "a fox at dawn, {no placeholder}", fox["request"]
        assert fox["request"]["duration"] == 5 and fox["priority"] == 3 and owl["priority"] == -1
        assert owl["request"]["prompt"] == "a owl at night, late, {no placeholder}"
        assert fox["output"] == f"{fox['batch']}/video-v3-pro-text-to-video/fox.mp4", fox["output"]
        assert fox["state"] == "completed" and owl["state"] == "completed"
        total = d.get_json("/v1/status")["total"]

        # An unknown placeholder names the row's line, the field and the columns; nothing is sent.
        bad = write(d, "bad.json", json.dumps({"request": {"model": MODEL, "prompt": "a {colour} {subject}"}}))
        p = d.ctl("submit", "--template", bad, "--vars", vars_csv, check=2)
        assert "vars.csv line 2: request.prompt: {colour}: no such column (columns: subject, time, secs, prio)" in p.stderr, p.stderr
        # A cell that is not a number where the catalog needs one.
        nums = write(d, "nums.csv", "subject,time,secs,prio\nfox,dawn,5,high\n")
        p = d.ctl("submit", "--template", tmpl, "--vars", nums, check=2)
        assert "nums.csv line 2: priority: column \"prio\": \"high\" is not a number" in p.stderr, p.stderr
        # Bad CSV: the line is named.
        broken = write(d, "broken.csv", "subject,time,secs,prio\nfox,dawn,5,1\n\"owl,night,5,1\n")
        p = d.ctl("submit", "--template", tmpl, "--vars", broken, check=2)
        assert "broken.csv: line 3: the quoted field of column 1 is never closed" in p.stderr, p.stderr
        short = write(d, "short.csv", "subject,time,secs,prio\nfox,dawn\n")
        p = d.ctl("submit", "--template", tmpl, "--vars", short, check=2)
        assert "short.csv: line 2: 2 field(s), the header has 4" in p.stderr, p.stderr
        # The daemon's own checks name the CSV line of the bad row.
        toolong = write(d, "toolong.csv", "subject,time,secs,prio\nyak,noon,5,1\nemu,noon,99,1\n")
        p = d.ctl("submit", "--template", tmpl, "--vars", toolong, "--yes", check=1)
        assert "line 3 request.duration" in p.stderr, p.stderr
        p = d.ctl("submit", "--template", tmpl, check=2)
        assert "--vars" in p.stderr
        assert d.get_json("/v1/status")["total"] == total


def test_output_templates_hostile_names_and_collisions():
    with Klingd() as d:
        d.post("/v1/pause")
        # A label that climbs out of the videos directory is refused after resolution.
        r = d.post("/v1/jobs", {"jobs": [spec("ok", output="{label.x}/a.mp4", labels={"x": "fine"}),
                                         spec("evil", output="{label.x}/a.mp4", labels={"x": "../../etc"})]})
        assert r.status == 400 and r.json()["error"]["code"] == "invalid_spec", r
        det = r.json()["error"]["details"]
        assert det == [{"index": 1, "field": "output",
                        "message": "\"{label.x}/a.mp4\": resolves to \"../../etc/a.mp4\", which must not contain "
                                   "'.' or '..' segments"}], det
        # The same refusal in a dry run: it validates exactly like a real submit.
        r = d.post("/v1/jobs?dry_run=1", {"jobs": [spec("evil", output="{label.x}.mp4", labels={"x": "/abs"})]})
        assert r.status == 400 and "resolves to \"/abs.mp4\", which must be a relative path" in r.json()["error"]["message"], r
        # Unknown placeholders are refused before anything else is looked at.
        r = d.post("/v1/jobs", spec("x", output="{nope}.mp4"))
        assert r.status == 400 and "unknown placeholder {nope}" in r.json()["error"]["message"], r
        r = d.post("/v1/jobs", spec("x", output="{key}.mp4"))
        assert r.status == 400 and "{key} is used but the job has no key" in r.json()["error"]["message"], r
        # Two jobs of one batch resolving to one name: 400 naming both.
        r = d.post("/v1/jobs", {"jobs": [spec("a", output="{label.t}.mp4", labels={"t": "same"}),
                                         spec("b", output="same.mp4")]})
        assert r.status == 400, r
        assert r.json()["error"]["details"][0]["message"] == "output \"same.mp4\" is also the output of jobs[0] in this batch"
        # Resolving to the name an existing job holds: 409 naming it.
        held = d.submit([spec("holder", output="taken/{label.t}.mp4", labels={"t": "v"})])["jobs"][0]["id"]
        assert d.job(held)["output"] == "taken/v.mp4"
        r = d.post("/v1/jobs?dry_run=1", {"jobs": [spec("c", key="k-c", output="taken/{key}.mp4")]})
        assert r.status == 200, r  # taken/k-c.mp4 is free
        r = d.post("/v1/jobs", {"jobs": [spec("c", output="{label.d}/v.mp4", labels={"d": "taken"})]})
        assert r.status == 409 and held in r.json()["error"]["message"], r
        r = d.post("/v1/jobs?dry_run=1", {"jobs": [spec("c", output="{label.d}/v.mp4", labels={"d": "taken"})]})
        assert r.status == 409, r
        # {index}, {id}, {model}, {batch} resolve at submit: the stored output is the resolved name.
        sub = d.submit([spec(f"i{i}", output="{batch}/{index}-{model}-{id}.mp4") for i in range(2)])
        for i, j in enumerate(sub["jobs"]):
            assert d.job(j["id"])["output"] == f"{sub['batch']}/{i}-video-v3-pro-text-to-video-{j['id']}.mp4"
        # A literal brace is written doubled.
        j = d.submit([spec("lit", output="{{x}}.mp4")])["jobs"][0]["id"]
        assert d.job(j)["output"] == "{x}.mp4"
        # dry_run takes 1/true/0/false only; other query parameters are refused.
        assert d.post("/v1/jobs?dry_run=maybe", spec("q")).status == 400
        assert d.post("/v1/jobs?dryrun=1", spec("q")).status == 400
        total = d.get_json("/v1/status")["total"]
        # NDJSON bodies have the dry run too.
        r = d.request("POST", "/v1/jobs?dry_run=1", body=(json.dumps(spec("n1")) + "\n" + json.dumps(spec("n2")) + "\n").encode(),
                      headers={"Content-Type": "application/x-ndjson"})
        assert r.status == 200 and r.json()["jobs"] == 2, r
        assert d.get_json("/v1/status")["total"] == total
        assert d.fake.stats()["create_calls"] == 0


def test_bulk_cancel_and_retry_with_label_filters():
    with Klingd() as d:
        d.post("/v1/pause")
        batch = d.submit([spec(f"b{i}", labels={"team": "a" if i < 2 else "b", "n": str(i)}) for i in range(4)])["batch"]
        ids = [j["id"] for j in d.get_json(f"/v1/jobs?batch={batch}")["jobs"]]
        # Dry run: the count and the ids, nothing changes.
        p = d.ctl("cancel", "--batch", batch, "--label", "team=a", "--dry-run", check=0)
        assert "would stop 2 job(s)" in p.stdout and ids[0] in p.stdout and ids[1] in p.stdout, p.stdout
        assert d.get_json(f"/v1/batches/{batch}")["counts"]["queued"] == 4
        r = d.ctl_json("cancel", "--batch", batch, "--label", "team=a", "--label", "n=1")
        assert r["matched"] == 1 and r["done"] == 1 and r["ids"] == [ids[1]] and r["refused"] == [], r
        p = d.ctl("cancel", "--batch", batch, "--label", "team=a", check=0)
        assert "1 of 1 job(s) canceled" in p.stdout, p.stdout
        counts = d.get_json(f"/v1/batches/{batch}")["counts"]
        assert counts["canceled"] == 2 and counts["queued"] == 2, counts
        # Retry the canceled ones of team a only; cancel the rest of the batch.
        r = d.ctl_json("retry", "--batch", batch, "--canceled", "--dry-run")
        assert r["matched"] == 2 and r["done"] == 0 and r["states"] == ["canceled"], r
        r = d.ctl_json("cancel", "--batch", batch)
        assert r["matched"] == 2 and sorted(r["ids"]) == sorted(ids[2:]), r
        r = d.ctl_json("retry", "--batch", batch, "--canceled", "--label", "team=a")
        assert r["done"] == 2 and sorted(r["ids"]) == sorted(ids[:2]), r
        d.post("/v1/resume")
        jobs = d.wait_terminal(ids[:2])
        assert all(j["state"] == "completed" for j in jobs.values()), jobs
        assert d.fake.stats()["create_calls"] == 2
        # Through the API: bad filters and unknown batches.
        assert d.post(f"/v1/batches/{batch}/retry?state=queued").status == 400
        assert d.post(f"/v1/batches/{batch}/cancel?label=novalue").status == 400
        assert d.post(f"/v1/batches/{batch}/cancel?colour=red").status == 400
        assert d.post("/v1/batches/NOPE/cancel").status == 404
        d.ctl("retry", "--batch", batch, "ID", check=2)
        d.ctl("retry", "--failed", "ID", check=2)

        # Failed jobs: retry --batch --failed re-creates each one through the engine's retry.
        d.fake.config({"failure_rate": 1})
        failing = d.submit([spec(f"f{i}", labels={"team": "c"}) for i in range(3)])
        fids = [j["id"] for j in failing["jobs"]]
        jobs = d.wait_terminal(fids)
        assert all(j["state"] == "failed" for j in jobs.values()), jobs
        d.fake.config({"failure_rate": 0})
        p = d.ctl("retry", "--batch", failing["batch"], "--failed", "--dry-run", check=0)
        assert "would re-queue 3 job(s)" in p.stdout, p.stdout
        p = d.ctl("retry", "--batch", failing["batch"], "--failed", check=0)
        assert "3 of 3 job(s) retried (failed)" in p.stdout, p.stdout
        jobs = d.wait_terminal(fids)
        assert all(j["state"] == "completed" and j["attempts"] == 2 for j in jobs.values()), jobs
        by_job = d.fake.stats()["create_calls_by_job"]
        assert all(by_job.get(i, {}).get("calls") == 2 for i in fids), by_job
        # Nothing left to retry: matched 0, exit 0.
        r = d.ctl_json("retry", "--batch", failing["batch"], "--failed")
        assert r["matched"] == 0 and r["done"] == 0


def test_bulk_retry_while_a_create_is_reconciled_pays_once():
    """A create the provider billed but whose answer was lost is being reconciled; the batch is
    canceled and retried in bulk meanwhile. Bulk retry goes through Engine::retry per job, so it
    sends no second create: the job ends completed after exactly one create call."""
    from test_engine import FAST_FAKE, specs
    from test_engine_ownership import LONG_WINDOW, ends_completed_with_one_create, wait_reconciling
    with Klingd(config_overrides=LONG_WINDOW, fake_args=FAST_FAKE + ("--logs-delay-s", "2")) as d:
        d.fake.config({"script": [{"kind": "create", "fault": "reset_after_create", "count": 1}]})
        sub = d.submit(specs(1, "bulk-amb"))
        jid = sub["jobs"][0]["id"]
        wait_reconciling(d, jid)
        r = d.ctl_json("cancel", "--batch", sub["batch"])
        assert r["done"] == 1, r
        # While the canceled job's actor winds down, its retry is refused (409) and reported; ask again.
        deadline = time.monotonic() + 15
        while True:
            p = d.ctl("--json", "retry", "--batch", sub["batch"], "--canceled")
            r = json.loads(p.stdout)
            if r["done"] == 1:
                break
            assert p.returncode == 1 and r["refused"][0]["code"] == "conflict", (p.returncode, r)
            assert time.monotonic() < deadline, r
            time.sleep(0.2)
        ends_completed_with_one_create(d, jid, 20)


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
