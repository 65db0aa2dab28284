"""The log over HTTP and its integrator: checkpoints, proofs, receipts and their access
rules, problem+json on bad input, and events committed out of id order (PostgreSQL)."""
from __future__ import annotations

import base64
import os
import threading

import pytest

from consent.database import run_raw_write
from consent.extensions import db
from consent.ledger import append_event, merkle, on_append
from consent.ledger.chain import _listeners
from consent.ledger.log import integrate, latest_checkpoint, tree_size
from consent.ledger.notes import open_checkpoint, parse_verifier_key
from consent.ledger.receipts import receipt_token
from consent.sites import site_snapshot
from consent.subjects import subject_for_write
from tests.support.api import KEYS
from tests.support.api import decide as decide_as

PROBLEM = "application/problem+json"


def decide(client, site, action="accept_all"):
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": action})
    assert r.status_code == 201
    return r.get_json()["event_id"]


def verifier(runner):
    return parse_verifier_key(runner.invoke(args=["consent", "signing-key", "--site", "shop"])
                              .output.strip())


def test_checkpoint_and_proofs_over_http_verify(client, runner, site):
    ids = [decide(client, site) for _ in range(6)]
    r = client.get("/api/v1/sites/shop/log/checkpoint")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    assert "max-age=" in r.headers["Cache-Control"]
    checkpoint, _ = open_checkpoint(r.get_data(as_text=True), [verifier(runner)])
    assert checkpoint.origin == "consent.local/shop" and checkpoint.size == 6
    for event_id in ids:
        proof = client.get(f"/api/v1/sites/shop/log/inclusion?event={event_id}").get_json()
        leaf = base64.b64decode(proof["leaf_hash"])
        path = [base64.b64decode(p) for p in proof["inclusion_path"]]
        assert merkle.verify_inclusion(leaf, proof["index"], 6, path, checkpoint.root)
    decide(client, site)
    integrate()
    new_note = client.get("/api/v1/sites/shop/log/checkpoint").get_data(as_text=True)
    newer, _ = open_checkpoint(new_note, [verifier(runner)])
    body = client.get("/api/v1/sites/shop/log/consistency?from=6").get_json()
    assert body["to"] == 7 and body["from"] == 6 and body["checkpoint"] == new_note
    path = [base64.b64decode(p) for p in body["consistency_path"]]
    assert merkle.verify_consistency(6, 7, path, checkpoint.root, newer.root)


@pytest.mark.parametrize("query,pointer", [
    ("inclusion?event=nothex", "#/event"), ("inclusion", "#/event"),
    ("inclusion?event=" + "a" * 32 + "&size=0", "#/size"),
    ("inclusion?event=" + "a" * 32 + "&size=x", "#/size"),
    ("consistency?from=-1", "#/from"), ("consistency?from=5&to=2", "#/from"),
])
def test_bad_proof_requests_are_problems(client, site, query, pointer):
    decide(client, site)
    integrate()
    r = client.get(f"/api/v1/sites/shop/log/{query}")
    assert 400 <= r.status_code < 500 and r.mimetype == PROBLEM, r.get_data(as_text=True)
    assert r.get_json()["errors"][0]["pointer"] == pointer


def test_unknown_events_and_sites_are_404(client, site):
    assert client.get("/api/v1/sites/shop/log/inclusion?event=" + "a" * 32).status_code == 404
    assert client.get("/api/v1/sites/nope/log/checkpoint").status_code == 404
    event_id = decide(client, site)
    r = client.get(f"/api/v1/sites/shop/log/inclusion?event={event_id}&size=5")
    assert r.status_code == 422 and r.mimetype == PROBLEM


def test_receipts_need_the_sites_key_or_the_visitors_token(client, site, other_site):
    event_id = decide(client, site)
    url = f"/api/v1/sites/shop/receipts/{event_id}"
    assert client.get(url).status_code == 401
    r = client.get(url, headers={"Authorization": f"Bearer {other_site['api_key']}"})
    assert r.status_code == 403 and r.mimetype == PROBLEM
    assert client.get(url + "?token=forged").status_code == 401
    other = decide(client, site)
    assert client.get(url + "?token=" + receipt_token("shop", other)).status_code == 401
    # Not yet integrated: the receipt endpoint integrates first.
    assert tree_size(site_snapshot("shop").id) == 0
    r = client.get(url + "?token=" + receipt_token("shop", event_id))
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["event"]["event_id"] == event_id and body["log"]["tree_size"] >= 1
    r = client.get(url, headers={"Authorization": f"Bearer {site['api_key']}"})
    assert r.status_code == 200


def test_receipt_verifies_offline_and_a_forged_one_does_not(client, runner, site, tmp_path):
    import json

    event_id = decide(client, site)
    body = client.get(f"/api/v1/sites/shop/receipts/{event_id}",
                      headers={"Authorization": f"Bearer {site['api_key']}"}).get_json()
    key = runner.invoke(args=["consent", "signing-key", "--site", "shop"]).output.strip()
    good = tmp_path / "r.json"
    good.write_text(json.dumps(body))
    r = runner.invoke(args=["consent", "verify-receipt", str(good), "--public-key", key])
    assert r.exit_code == 0 and "is entry 0 of the log" in r.output
    body["event"]["categories"] = {"advertising": True}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(body))
    r = runner.invoke(args=["consent", "verify-receipt", str(bad), "--public-key", key])
    assert r.exit_code == 1 and "site shop" in r.output


def test_the_well_known_keys_list_current_and_previous(app, client, runner):
    app.config["CONSENT_SIGNING_KEY_PREVIOUS"] = "ed25519:" + base64.b64encode(
        b"\x01" * 32).decode()
    text = client.get("/.well-known/consent-signing-keys").get_data(as_text=True)
    lines = text.strip().split("\n")
    assert lines[0].endswith(" current") and lines[1].endswith(" previous")


def test_openapi_documents_the_log(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/sites/{site_key}/log/inclusion",
                 "/api/v1/sites/{site_key}/log/consistency",
                 "/api/v1/sites/{site_key}/log/checkpoint",
                 "/api/v1/sites/{site_key}/receipts/{event_id}"):
        assert path in spec["paths"], path


@pytest.mark.skipif(os.environ.get("CONSENT_TEST_DB") != "postgresql",
                    reason="SQLite runs one writer at a time: a lower id cannot commit "
                           "after a higher one there")
def test_an_event_committing_after_a_higher_id_was_integrated_is_not_lost(app, client, site):
    from consent.ledger import stream_for
    from consent.subjects import Subject

    shop = site_snapshot("shop")

    def post(subject):
        # a visitor id needs its device key (tests.support.api mints one per named id)
        assert decide_as(client, "shop", "accept_all", subject=subject)["duplicate"] is False

    def stream_of(public_id):
        pseudonym = db.session.execute(db.select(Subject.pseudonym).where(
            Subject.public_id == public_id)).scalar_one()
        return stream_for(pseudonym, shop.ledger_streams)

    post("slow-writer-000001")
    others = [f"fast-writer-{i:06d}" for i in range(8)]
    for subject in others:
        post(subject)
    # Writers of other streams only: the held transaction locks its own stream's head.
    others = [o for o in others if stream_of(o) != stream_of("slow-writer-000001")]
    release, inserted = threading.Event(), threading.Event()

    def hold(ev):
        if (ev.meta or {}).get("hold"):
            inserted.set()
            assert release.wait(30)

    on_append(hold)
    errors = []

    def slow_writer():
        with app.app_context():
            try:
                def write():
                    subject = subject_for_write(shop.id, "slow-writer-000001",
                                                KEYS["slow-writer-000001"]).ref
                    append_event(shop, subject, action="accept_all", source="api",
                                 categories={"analytics": True}, meta={"hold": True})

                run_raw_write(write, attempts=1)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    try:
        assert inserted.wait(30)
        # Later writers commit higher ids while the first still holds its lower one.
        for subject in others:
            post(subject)
        integrate()
        total = 1 + 8 + len(others) + 1
        assert tree_size(shop.id) == total - 1
    finally:
        release.set()
        thread.join(30)
        _listeners.remove(hold)
    assert not errors
    integrate()
    assert tree_size(shop.id) == total
    db.session.remove()
    assert latest_checkpoint(shop.id).size == total


def test_the_kantara_receipt_carries_the_proof_of_its_event(client, runner, site, tmp_path):
    import json

    from consent.requests import consent_receipt
    from consent.subjects import find_subject

    r = client.post("/api/v1/sites/shop/decisions",
                    json={"action": "reject_all", "subject": "kantara-visitor-001",
                          "key": "kantara-visitor-device-key"})
    event_id = r.get_json()["event_id"]
    subject = find_subject(site_snapshot("shop").id, "kantara-visitor-001")
    from tests.test_requests import set_controller

    set_controller("shop")  # (a receipt needs the controller's contact details)
    receipt = consent_receipt("shop", subject)
    assert receipt["consentReceiptID"].replace("-", "") == event_id  # its UUID form
    assert receipt["proof"]["event"]["event_id"] == event_id
    path = tmp_path / "kantara.json"
    path.write_text(json.dumps(receipt))
    key = runner.invoke(args=["consent", "signing-key", "--site", "shop"]).output.strip()
    checked = runner.invoke(args=["consent", "verify-receipt", str(path), "--public-key", key])
    assert checked.exit_code == 0, checked.output
