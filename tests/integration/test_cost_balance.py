#!/usr/bin/env python3
"""The provider's money and routing end to end against fake-aimlapi (issue 16): meta.usage as a
job's cost, the account balance in status/metrics and holding dispatch before a create it
cannot pay for, plain 429s that pace without failing, credit-flavoured 429s that pause, and the
`provider` route asked and served."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import klingtest  # noqa: E402
from klingtest import Klingd  # noqa: E402
from klingtest import FAST_FAKE, specs  # noqa: E402


def test_meta_usage_is_the_cost_when_the_create_carries_none():
    """No cost headers on the create and no request log: the completed status's meta.usage is
    what the job records as its cost (the fake's actual charge)."""
    with Klingd(fake_args=FAST_FAKE + ("--no-create-cost-headers", "--logs-enabled", "false")) as d:
        ids = [j["id"] for j in d.submit(specs(2, "usage"))["jobs"]]
        jobs = d.wait_terminal(ids, timeout=30)
        gens = {g["id"]: g for g in d.fake.stats(sha256=False)["generations"]}
        for j in jobs.values():
            assert j["state"] == "completed", j
            g = gens[j["generation_id"]]
            assert j["cost"] and abs(j["cost"]["usd"] - g["charged"]["usd"]) < 1e-9, (j["cost"], g)


def test_balance_is_shown_and_holds_a_create_it_cannot_pay_for():
    """With $1 on the account (one 5 s v3 pro video costs more than half of that), the first job
    goes, the next waits with the balance in status — nothing failed — and all complete once
    the account is topped up."""
    cfg = {"provider": {"balance_check_s": 0.2, "max_in_flight": 1}}
    with Klingd(config_overrides=cfg, fake_args=FAST_FAKE + ("--balance-usd", "1")) as d:
        d.wait_for(lambda: d.get_json("/v1/status")["balance"] is not None, 10, 0.05, "a balance reading")
        st = d.get_json("/v1/status")
        assert abs(st["balance"]["usd"] - 1.0) < 1e-9, st["balance"]
        metrics = d.get("/metrics").body.decode()
        assert "klingd_balance_usd 1" in metrics, [ln for ln in metrics.splitlines() if "balance" in ln]
        out = d.ctl("status").stdout
        assert "balance:  $1.00" in out, out
        ids = [j["id"] for j in d.submit(specs(3, "bal"))["jobs"]]
        d.wait_for(lambda: "account balance" in (d.get_json("/v1/status")["paused"] or ""), 20, 0.05,
                   "dispatch held by the balance")
        counts = d.get_json("/v1/status")["counts"]
        assert counts.get("failed", 0) == 0 and counts.get("queued", 0) >= 1, counts
        d.fake.config({"balance_usd": 100})
        jobs = d.wait_terminal(ids, timeout=30)
        assert all(j["state"] == "completed" for j in jobs.values()), jobs
        assert d.fake.stats(sha256=False)["create_calls"] == 3, "each job was created once"
        assert d.get_json("/v1/status")["paused"] is None


def test_plain_429_paces_without_failing_and_a_credit_429_pauses():
    """Creates answered 429 more often than retry.max_attempts still complete (pacing is not a
    failure); a 429 that speaks of credits pauses dispatch with the provider's words, like 402."""
    cfg = {"retry": {"max_attempts": 2, "base_s": 0.02, "max_s": 0.1}}
    with Klingd(config_overrides=cfg, fake_args=FAST_FAKE + ("--retry-after-s", "0.05")) as d:
        d.fake.config({"script": [{"kind": "create", "fault": "rate_limit", "count": 4}]})
        jid = d.submit(specs(1, "paced"))["jobs"][0]["id"]
        j = d.wait_terminal([jid], timeout=30)[jid]
        assert j["state"] == "completed", j
        d.fake.config({"script": [{"kind": "create", "fault": "rate_limit_account", "count": 1}]})
        jid2 = d.submit(specs(1, "arrears"))["jobs"][0]["id"]
        d.wait_for(lambda: d.get_json("/v1/status")["paused"], 15, 0.05, "the account pause")
        paused = d.get_json("/v1/status")["paused"]
        assert "429" in paused, paused
        assert d.job(jid2)["state"] == "queued"
        d.ctl("resume")
        assert d.wait_terminal([jid2], timeout=30)[jid2]["state"] == "completed"


def test_route_asked_and_served_are_recorded_and_shown():
    """provider.route "auto" goes out with a model that takes `provider`; the fake serves it from
    fal; the job records both, and `klingctl show` prints them."""
    with Klingd(config_overrides={"provider": {"route": "auto"}}, fake_args=FAST_FAKE) as d:
        d.fake.config({"auto_route": "fal"})
        jid = d.submit(specs(1, "route"))["jobs"][0]["id"]
        j = d.wait_terminal([jid], timeout=30)[jid]
        assert j["state"] == "completed", j
        assert j["route"] == {"asked": "auto", "served": "fal"}, j["route"]
        g = d.fake.stats(sha256=False)["generations"][0]
        assert g["provider_asked"] == "auto" and g["provider_served"] == "fal", g
        out = d.ctl("show", jid).stdout
        assert "asked auto, served by fal" in out, out


def test_the_billing_ledger_settles_actual_costs_and_refunds():
    """The provider charges 1.25× its list price (the create's cost headers show the list price)
    and refunds every video: the ledger (GET /v2/billing/transactions) is the authority, so each
    job ends with the charged cost and its refund, and /v1/cost counts cost minus refunds."""
    cfg = {"provider": {"balance_check_s": 0.2}}
    with Klingd(config_overrides=cfg, fake_args=FAST_FAKE) as d:
        d.fake.config({"charge_factor": 1.25, "refund_rate": 1})
        ids = [j["id"] for j in d.submit(specs(3, "ledger"))["jobs"]]
        d.wait_terminal(ids, timeout=30)

        def settled():
            jobs = [d.job(i) for i in ids]
            return all(j["cost"] and j["cost"].get("refunded_usd") is not None for j in jobs) and jobs
        jobs = d.wait_for(settled, 20, 0.1, "the ledger's charges and refunds on every job")
        gens = {g["id"]: g for g in d.fake.stats(sha256=False)["generations"]}
        for j in jobs:
            g = gens[j["generation_id"]]
            assert abs(j["cost"]["usd"] - g["charged"]["usd"]) < 1e-9, (j["cost"], g["charged"])
            assert g["refunded"] and abs(j["cost"]["refunded_usd"] - g["charged"]["usd"]) < 1e-9, (j["cost"], g)
        assert abs(d.get_json("/v1/cost")["total"]["usd"]) < 1e-9
        out = d.ctl("show", ids[0]).stdout
        assert "refunded" in out, out


if __name__ == "__main__":
    sys.exit(klingtest.run_tests(dict(globals())))
