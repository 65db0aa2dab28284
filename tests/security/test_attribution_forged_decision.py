"""Finding 13.2: knowing a visitor id is not enough to record consent on their behalf.

The attacker knows the victim's id (it is in links, exports and logs) but not the device
key in the victim's cookie. Every way of posting a decision for that id is refused with
the same answer whether the id exists or not, and nothing is recorded.
"""
from __future__ import annotations

import pytest

from consent.extensions import db
from consent.ledger import ConsentEvent

ORIGIN = "https://shop.example"


def decide(client, body, **headers):
    return client.post("/api/v1/sites/shop/decisions", json=body, headers=headers)


def events() -> list[ConsentEvent]:
    db.session.rollback()
    return list(db.session.execute(db.select(ConsentEvent).order_by(ConsentEvent.id)).scalars())


@pytest.fixture
def victim(client, site):
    """A visitor who rejected everything from their own browser."""
    r = decide(client, {"action": "reject_all"}, Origin=ORIGIN)
    assert r.status_code == 201
    KEYS[r.get_json()["subject"]] = r.get_json().get("key")
    return r.get_json()["subject"]


KEYS: dict[str, str] = {}


@pytest.mark.parametrize("headers", [{"Origin": ORIGIN}, {}], ids=["browser", "no-origin"])
@pytest.mark.parametrize("key", [None, "attackers-guess-0123456789012"],
                         ids=["no-key", "wrong-key"])
def test_a_decision_for_a_known_id_without_its_key_is_refused(client, victim, headers, key):
    before = events()
    body = {"action": "accept_all", "subject": victim}
    if key:
        body["key"] = key
    r = decide(client, body, **headers)
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    assert r.get_json()["type"].endswith(":visitor-key")
    assert events() == before  # nothing recorded
    state = client.get(f"/api/v1/sites/shop/subjects/{victim}",
                       headers={"Authorization": "Bearer " + _api_key(client)}).get_json()
    assert state["consent"]["categories"]["advertising"] is False


def _api_key(client) -> str:
    from consent.database import run_write
    from consent.sites import create_api_key, get_site

    return run_write(lambda: create_api_key(get_site("shop")))


def test_the_refusal_does_not_say_whether_the_id_exists(client, victim):
    known = decide(client, {"action": "accept_all", "subject": victim})
    unknown = decide(client, {"action": "accept_all", "subject": "nobody-has-this-id-0123"})
    assert known.status_code == unknown.status_code == 403
    assert known.get_json() == unknown.get_json()


def test_the_device_that_holds_the_key_still_decides(client, victim):
    r = decide(client, {"action": "accept_all", "subject": victim, "key": KEYS[victim]},
               Origin=ORIGIN)
    assert r.status_code == 201 and r.get_json()["consent"]["categories"]["advertising"] is True
