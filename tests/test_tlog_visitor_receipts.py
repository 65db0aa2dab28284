"""The visitor's own proof: `GET .../receipts/<event>?r=<read token>` (the widget's
"Download proof of my choice"). Only the device's read token of the event's own subject
opens it; another visitor's token, a guessed or unkeyed one, an erased visitor's: 404."""
from __future__ import annotations

import base64
import hashlib
import json

import pytest

from consent.extensions import db
from consent.ledger.receipts import check_receipt, receipt_token
from consent.sites import site_snapshot
from consent.subjects import find_subject
from tests.support.api import PROBLEM, bearer, decide


def receipt_url(site_key: str, event_id: str, query: str = "") -> str:
    return f"/api/v1/sites/{site_key}/receipts/{event_id}" + (f"?{query}" if query else "")


def public_key(runner) -> str:
    return runner.invoke(args=["consent", "signing-key", "--site", "shop"]).output.strip()


def test_the_visitors_read_token_downloads_the_proof_of_their_own_choice(client, runner,
                                                                        site):
    answer = decide(client, site["key"], "reject_all")
    r = client.get(receipt_url("shop", answer["event_id"], "r=" + answer["read_token"]))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Disposition"] == (
        f'attachment; filename="consent-proof-shop-{answer["event_id"]}.json"')
    assert "no-store" in r.headers["Cache-Control"]
    body = r.get_json()
    assert body["event"]["event_id"] == answer["event_id"]
    assert body["event"]["action"] == "reject_all"
    checked = check_receipt(body, public_key(runner))
    assert checked.ok, checked.problems
    # a later choice of the same device: the same token opens its proof too
    later = decide(client, site["key"], "accept_all", subject=answer["subject"])
    assert later["read_token"] == answer["read_token"]
    r = client.get(receipt_url("shop", later["event_id"], "r=" + answer["read_token"]))
    assert r.status_code == 200 and r.get_json()["event"]["action"] == "accept_all"


def test_another_visitors_token_never_opens_my_receipt(client, site):
    victim = decide(client, site["key"], "accept_all")
    attacker = decide(client, site["key"], "reject_all")
    r = client.get(receipt_url("shop", victim["event_id"], "r=" + attacker["read_token"]))
    assert r.status_code == 404 and r.mimetype == PROBLEM
    text = r.get_data(as_text=True)
    assert victim["event_id"] in text  # names what was asked for, as for an unknown event
    for leaked in ("inclusion_path", "checkpoint", "prev_hash", "accept_all"):
        assert leaked not in text
    # the same answer as an event that does not exist
    unknown = client.get(receipt_url("shop", "f" * 32, "r=" + attacker["read_token"]))
    assert unknown.status_code == 404
    assert unknown.get_json()["title"] == r.get_json()["title"]
    # their own event still opens with their own token
    own = client.get(receipt_url("shop", attacker["event_id"], "r=" + attacker["read_token"]))
    assert own.status_code == 200


def test_tokens_an_attacker_can_make_are_refused(client, site):
    """Knowing the visitor id, or holding the database (pseudonyms, not the server's key),
    gives no read token."""
    victim = decide(client, site["key"], "accept_all")
    pseudonym = find_subject(site_snapshot("shop").id, victim["subject"]).pseudonym
    unkeyed = base64.urlsafe_b64encode(hashlib.sha256(b"read:" + pseudonym.encode()).digest()[
        :16]).rstrip(b"=").decode()
    for guess in (unkeyed, victim["subject"][:22].ljust(22, "A"), "A" * 22):
        r = client.get(receipt_url("shop", victim["event_id"], "r=" + guess))
        assert r.status_code == 404 and r.mimetype == PROBLEM, guess


@pytest.mark.parametrize("query", ["r=", "r=short", "r=" + "A" * 23, "r=" + "%21" * 22])
def test_a_malformed_read_token_is_a_problem_naming_r(client, site, query):
    answer = decide(client, site["key"], "accept_all")
    r = client.get(receipt_url("shop", answer["event_id"], query))
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert r.get_json()["errors"][0]["pointer"] == "#/r"


def test_without_any_credential_the_answer_is_401(client, site):
    answer = decide(client, site["key"], "accept_all")
    r = client.get(receipt_url("shop", answer["event_id"]))
    assert r.status_code == 401 and r.mimetype == PROBLEM
    # the older capabilities keep working beside the read token
    ok = client.get(receipt_url("shop", answer["event_id"],
                                "token=" + receipt_token("shop", answer["event_id"])))
    assert ok.status_code == 200
    assert client.get(receipt_url("shop", answer["event_id"]), headers=bearer(site)
                      ).status_code == 200
    # a wrong capability without a read token is still 401; with the right one, it opens
    assert client.get(receipt_url("shop", answer["event_id"], "token=forged")
                      ).status_code == 401
    both = client.get(receipt_url("shop", answer["event_id"],
                                  "token=forged&r=" + answer["read_token"]))
    assert both.status_code == 200


def test_a_read_token_opens_nothing_on_another_site(client, site, other_site):
    answer = decide(client, site["key"], "accept_all")
    r = client.get(receipt_url("other", answer["event_id"], "r=" + answer["read_token"]))
    assert r.status_code == 404 and r.mimetype == PROBLEM


def test_an_erased_visitors_token_opens_nothing(client, site):
    from consent.requests import erase_subject

    answer = decide(client, site["key"], "accept_all")
    subject_id = find_subject(site_snapshot("shop").id, answer["subject"]).id
    url = receipt_url("shop", answer["event_id"], "r=" + answer["read_token"])
    assert client.get(url).status_code == 200
    erase_subject("shop", subject_id, "user:1")
    db.session.rollback()
    r = client.get(url)
    assert r.status_code == 404 and r.mimetype == PROBLEM
    # the operator can still prove the (pseudonymous) event
    assert client.get(receipt_url("shop", answer["event_id"]), headers=bearer(site)
                      ).status_code == 200


def test_openapi_documents_the_read_token(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/sites/{site_key}/receipts/{event_id}"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["r"]["in"] == "query" and params["r"]["schema"]["pattern"]
    assert "read token" in params["r"]["description"]
    assert "token" in params
    assert "401" in operation["description"] and "404" in operation["description"]
    assert json.dumps(operation["responses"]["422"])
