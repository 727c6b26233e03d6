"""fake-aimlapi: the 2026 Kling models (v3 turbo, v3 omni, the renamed motion control), the
`provider` routing field and the route the status reports, meta.usage in the completed status,
the billing endpoints (balance, the cursor-paged ledger with MODEL_USAGE and REFUND rows) and
the credit-flavoured 429."""

import re
import sys

from fakeprov import FakeProvider, run_tests

FAKE = None
IMG = "https://example.com/a.png"
TURBO_T2V = "klingai/video-v3-turbo-pro-text-to-video"
TURBO_I2V = "klingai/video-v3-standard-turbo-image-to-video"
OMNI_T2V = "klingai/video-v3-omni-720p-text-to-video"
OMNI_I2V = "klingai/video-v3-omni-1080p-image-to-video"
SHOTS = [{"prompt": "a fox wakes up", "duration": 3}, {"prompt": "it runs", "duration": "4"}, {"prompt": "it sleeps"}]

ACCEPTED = [
    {"model": TURBO_T2V, "prompt": "x" * 3072, "duration": 15, "aspect_ratio": "9:16"},
    {"model": TURBO_T2V, "multi_prompt": SHOTS, "duration": 10},
    {"model": "klingai/video-v3-standard-turbo-text-to-video", "prompt": "x"},
    {"model": TURBO_I2V, "image_url": IMG, "multi_prompt": SHOTS[:1]},
    {"model": "klingai/video-v3-turbo-pro-image-to-video", "image_url": IMG, "prompt": "x", "duration": "3"},
    {"model": OMNI_T2V, "prompt": "x", "shot_type": "intelligence", "generate_audio": True, "provider": "FAL"},
    {"model": "klingai/video-v3-omni-1080p-text-to-video", "multi_prompt": ["a", "b"], "cfg_scale": 1,
     "negative_prompt": "blur", "provider": "klingai"},
    {"model": OMNI_I2V, "image_url": IMG, "prompt": "x", "generate_audio": False, "tail_image_url": IMG,
     "elements": [{"frontal_image_url": IMG, "reference_image_urls": [IMG, IMG]}, {"video_url": "https://example.com/e.mp4"}]},
    {"model": "klingai/video-v3-omni-720p-image-to-video", "image_url": IMG, "prompt": "x", "provider": "auto"},
    {"model": "klingai/video-v2-6-motion-control", "image_url": IMG, "video_url": IMG, "mode": "pro",
     "character_orientation": "video", "keep_audio": False},
    {"model": "klingai/video-v2-6-pro-motion-control", "image_url": IMG, "video_url": IMG, "mode": "std"},
]

# (body, field the 400 names)
REJECTED = [
    ({"model": TURBO_T2V, "prompt": "x" * 3073}, "prompt"),
    ({"model": TURBO_T2V, "prompt": "x", "multi_prompt": SHOTS}, "prompt"),
    ({"model": TURBO_T2V}, "prompt"),
    ({"model": TURBO_T2V, "multi_prompt": ["a", "b"]}, "multi_prompt.0"),
    ({"model": TURBO_T2V, "multi_prompt": [{"duration": 3}]}, "multi_prompt.0.prompt"),
    ({"model": TURBO_T2V, "multi_prompt": [{"prompt": "a", "duration": 16}]}, "multi_prompt.0.duration"),
    ({"model": TURBO_T2V, "multi_prompt": [{"prompt": "a"}] * 7}, "multi_prompt"),
    ({"model": TURBO_T2V, "prompt": "x", "duration": 2}, "duration"),
    ({"model": TURBO_I2V, "prompt": "x"}, "image_url"),
    ({"model": OMNI_T2V, "prompt": "x", "shot_type": "auto"}, "shot_type"),
    ({"model": OMNI_T2V, "prompt": "x", "provider": "replicate"}, "provider"),
    ({"model": OMNI_I2V, "image_url": IMG, "prompt": "x", "tail_image_url": IMG}, "tail_image_url"),
    ({"model": OMNI_I2V, "image_url": IMG, "prompt": "x", "elements": [{}] * 5}, "elements"),
    ({"model": OMNI_I2V, "image_url": IMG, "prompt": "x", "elements": [{"reference_image_urls": []}]},
     "elements.0.reference_image_urls"),
    ({"model": "klingai/video-v2-6-motion-control", "image_url": IMG, "video_url": IMG, "mode": "max"}, "mode"),
]


def test_new_models_accepted_and_refused_naming_the_field():
    for body in ACCEPTED:
        r = FAKE.create(body)
        assert r.status == 200, (body["model"], r)
        assert r.json()["model"] == body["model"]
    for body, field in REJECTED:
        r = FAKE.create(body)
        assert r.status == 400, (body, r)
        assert re.match(rf"{re.escape(field)}\b", r.json()["message"]), (field, r.json()["message"])


def test_turbo_fields_are_undocumented_there():
    FAKE.config({"strict_fields": True})
    try:
        for extra in ({"negative_prompt": "n"}, {"cfg_scale": 0.5}, {"generate_audio": False},
                      {"shot_type": "customize"}, {"provider": "kling"}):
            r = FAKE.create({"model": TURBO_T2V, "prompt": "x", **extra})
            assert r.status == 400 and r.json()["message"].startswith(next(iter(extra))), (extra, r)
        assert FAKE.create({"model": OMNI_T2V, "prompt": "x", "provider": "fal"}).status == 200
    finally:
        FAKE.config({"strict_fields": False})


def test_route_asked_and_served_and_where_the_status_says_it():
    FAKE.config({"queued_s": 0, "generating_s": 0})
    cases = [(OMNI_T2V, "fal", "fal"), (OMNI_T2V, "Kling", "kling"), (OMNI_T2V, None, "kling"),
             (TURBO_T2V, None, "kling")]
    for model, asked, served in cases:
        body = {"model": model, "prompt": "x", **({"provider": asked} if asked else {})}
        doc = FAKE.wait_completed(FAKE.create(body).json()["id"])
        assert doc["provider"] == served, (body, doc)
    FAKE.config({"auto_route": "fal"})  # the Kling side is down: auto falls back to fal
    doc = FAKE.wait_completed(FAKE.create({"model": OMNI_T2V, "prompt": "x", "provider": "auto"}).json()["id"])
    assert doc["provider"] == "fal", doc
    doc = FAKE.wait_completed(FAKE.create({"model": OMNI_T2V, "prompt": "x", "provider": "kling"}).json()["id"])
    assert doc["provider"] == "kling", doc  # native only: no fallback
    FAKE.config({"status_provider_field": "meta.provider"})
    doc = FAKE.wait_completed(FAKE.create({"model": OMNI_T2V, "prompt": "x"}).json()["id"])
    assert "provider" not in doc and doc["meta"]["provider"] == "fal", doc
    FAKE.config({"status_provider_field": "none", "auto_route": "kling"})
    doc = FAKE.wait_completed(FAKE.create({"model": OMNI_T2V, "prompt": "x"}).json()["id"])
    assert "provider" not in doc and "provider" not in doc["meta"], doc
    FAKE.config({"status_provider_field": "provider"})
    stats = FAKE.stats(sha256=False)["generations"][-8:]
    assert [g["provider_asked"] for g in stats] == ["fal", "Kling", None, None, "auto", "kling", None, None], stats
    assert [g["provider_served"] for g in stats] == ["fal", "kling", "kling", "kling", "fal", "kling", "fal", "kling"]


def test_fal_served_videos_come_from_another_cdn():
    FAKE.config({"queued_s": 0, "generating_s": 0})
    kling = FAKE.wait_completed(FAKE.create({"model": OMNI_T2V, "prompt": "x", "provider": "kling"}).json()["id"])
    fal = FAKE.wait_completed(FAKE.create({"model": OMNI_T2V, "prompt": "x", "provider": "fal"}).json()["id"])
    assert "/cdn/kangaroo/" in kling["video"]["url"] and "ksSecret=" in kling["video"]["url"], kling
    url = fal["video"]["url"]
    assert re.search(r"/cdn/flamingo/files/\d+/[0-9a-f]+_output\.mp4$", url), url
    r = FAKE.download(url)
    assert r.status == 200 and r.body[4:8] == b"ftyp" and len(r.body) == fal["video"]["file_size"], r
    assert FAKE.download(url.replace("_output", "_other")).status == 404
    FAKE.config({"fal_url_ttl_s": 0})  # its own lifetime, not the signed links'
    assert FAKE.download(url).status == 403
    assert FAKE.download(FAKE.poll(kling["id"]).json()["video"]["url"]).status == 200
    FAKE.config({"fal_url_ttl_s": 86400})


def test_meta_usage_in_the_completed_status():
    FAKE.config({"queued_s": 0, "generating_s": 0, "prices": {TURBO_T2V: 0.2}, "credits_per_usd": 1000})
    r = FAKE.create({"model": TURBO_T2V, "prompt": "x", "duration": 6})
    assert r.headers["x-aimlapi-usd-spent"] == "1.2", r.headers
    doc = FAKE.wait_completed(r.json()["id"])
    assert doc["meta"]["usage"] == {"credits_used": 1200, "usd_spent": 1.2}, doc
    FAKE.config({"charge_factor": 0.5})  # the actual charge differs from the list price
    doc = FAKE.wait_completed(FAKE.create({"model": TURBO_T2V, "prompt": "x", "duration": 6}).json()["id"])
    assert doc["meta"]["usage"] == {"credits_used": 600, "usd_spent": 0.6}, doc
    FAKE.config({"meta_usage": False, "charge_factor": 1.0})
    doc = FAKE.wait_completed(FAKE.create({"model": TURBO_T2V, "prompt": "x"}).json()["id"])
    assert doc["meta"] is None, doc
    FAKE.config({"meta_usage": True})


def ledger(**params):
    rows, pages, cursor = [], 0, None
    while True:
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        r = FAKE.transactions(**q)
        assert r.status == 200, r
        doc = r.json()
        assert set(doc["pagination"]) == {"next_cursor", "has_more"}, doc
        rows += doc["data"]
        pages += 1
        if not doc["pagination"]["has_more"]:
            assert doc["pagination"]["next_cursor"] is None
            return rows, pages
        cursor = doc["pagination"]["next_cursor"]


def test_balance_and_ledger_with_refunds_and_cursor_paging():
    FAKE.reset()
    FAKE.config({"queued_s": 0, "generating_s": 0, "balance_usd": 10, "prices": {OMNI_T2V: 0.1},
                 "credits_per_usd": 1000, "refund_rate": 0.5, "seed": 3})
    assert FAKE.billing().json() == {"current_balance": 10, "currency": "USD"}
    ids = [FAKE.create({"model": OMNI_T2V, "prompt": f"p{i}", "duration": 5}).json()["id"] for i in range(6)]
    FAKE.config({"failure_rate": 1.0})
    failed = FAKE.create({"model": OMNI_T2V, "prompt": "fails"}).json()["id"]
    FAKE.config({"failure_rate": 0.0})
    for g in ids + [failed]:
        FAKE.wait_completed(g)
    refunded = {g["id"] for g in FAKE.stats(sha256=False)["generations"] if g["refunded"]}
    assert 0 < len(refunded) < 6, refunded

    rows, pages = ledger(limit=2)
    assert pages >= 4
    assert [r["created_at"] for r in rows] == sorted((r["created_at"] for r in rows), reverse=True)
    usage = [r for r in rows if r["type"] == "MODEL_USAGE"]
    refunds = [r for r in rows if r["type"] == "REFUND"]
    assert sorted(r["reference_id"] for r in usage) == sorted(ids), "one charge per completed generation, none for the failed"
    assert {r["reference_id"] for r in refunds} == refunded
    assert all(r["direction"] == "CHARGE" and r["amount"] == {"usd": 0.5, "credits": 500} and r["model"] == OMNI_T2V
               for r in usage), usage
    assert all(r["direction"] == "TOPUP" for r in refunds)
    assert rows[-1]["type"] == "INIT" and rows[-1]["reference_id"] is None and rows[-1]["amount"]["usd"] == 10
    expected = 10 - 0.5 * 6 + 0.5 * len(refunded)
    assert abs(FAKE.billing().json()["current_balance"] - expected) < 1e-9

    # Filters, and cursors that are not ours.
    only_refunds, _ = ledger(type="REFUND")
    assert only_refunds == refunds
    charges, _ = ledger(direction="CHARGE", limit=100)
    assert charges == usage
    for bad in ({"cursor": "abc.def"}, {"limit": 0}, {"limit": 101}, {"type": "GIFT"}, {"direction": "UP"},
                {"offset": 2}, {"from": "yesterday"}, {"from": "2026-08-02T00:00:00Z", "to": "2026-08-01T00:00:00Z"}):
        r = FAKE.transactions(**bad)
        assert r.status == 400 and set(r.json()) == {"message", "path", "requestId", "statusCode", "timestamp"}, (bad, r)
    assert FAKE.request("GET", "/v2/billing", auth=False).status == 401
    FAKE.config({"billing_enabled": False})
    assert FAKE.billing().status == 404
    FAKE.config({"billing_enabled": True, "refund_rate": 0.0})


def test_enforced_balance_refuses_a_create_it_cannot_pay():
    FAKE.reset()
    FAKE.config({"queued_s": 0, "generating_s": 0, "balance_usd": 1.0, "enforce_balance": True,
                 "prices": {OMNI_T2V: 0.1}})
    assert FAKE.create({"model": OMNI_T2V, "prompt": "x", "duration": 10}).status == 200  # $1.00: exactly affordable
    FAKE.wait_completed(FAKE.stats(sha256=False)["generations"][0]["id"])
    r = FAKE.create({"model": OMNI_T2V, "prompt": "x", "duration": 3})
    assert r.status == 403 and "balance" in r.json()["message"].lower(), r
    assert FAKE.billing().json()["current_balance"] == 0
    FAKE.reset()


def test_credit_flavoured_429():
    FAKE.config({"script": ["create.rate_limit_account=1", "poll.rate_limit_account=1", "billing.rate_limit_account=1"]})
    for r in (FAKE.create({"model": TURBO_T2V, "prompt": "x"}), FAKE.poll("whatever"), FAKE.billing()):
        assert r.status == 429, r
        assert "retry-after" not in r.headers
        assert re.search(r"balance|credit", r.json()["message"], re.I), r.json()
    FAKE.config({"account_429_message": "Account in arrears"})
    FAKE.config({"script": ["create.rate_limit_account=1"]})
    assert FAKE.create({"model": TURBO_T2V, "prompt": "x"}).json()["message"] == "Account in arrears"
    faults = FAKE.stats(sha256=False)["faults"]
    assert faults["create"]["rate_limit_account"] == 2 and faults["billing"]["rate_limit_account"] == 1, faults
    # A plain 429 still says nothing about money.
    FAKE.config({"script": ["create.rate_limit=1"]})
    r = FAKE.create({"model": TURBO_T2V, "prompt": "x"})
    assert r.status == 429 and not re.search(r"balance|credit", r.json()["message"], re.I)


def main():
    global FAKE
    FAKE = FakeProvider(args=["--queued-s", "0", "--generating-s", "0", "--seed", "5"])
    try:
        return run_tests(globals())
    finally:
        FAKE.stop()


if __name__ == "__main__":
    sys.exit(main())
