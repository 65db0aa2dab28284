"""Finding 13.1: login-link CSRF.

The attacker mints a login link for their own account and gets the victim to open it.
Opening it must not link the victim's device to the attacker's account, nor change its
choices; the attacker's access and erasure requests must not reach the victim's device.
"""
from __future__ import annotations

import pytest

from consent import requests as rq
from consent.extensions import db
from consent.identity import SubjectLink
from consent.ledger import ConsentEvent
from consent.sites import get_site
from consent.subjects import Subject, find_subject
from tests.support.login import follow

ORIGIN = "https://shop.example"


def auth(site):
    return {"Authorization": f"Bearer {site['api_key']}"}


@pytest.mark.parametrize("attacker_has_an_account", [False, True])
def test_opening_someone_elses_login_link_links_and_changes_nothing(app, site,
                                                                    attacker_has_an_account):
    victim = app.test_client()
    answer = victim.post("/api/v1/sites/shop/decisions", json={"action": "reject_all"},
                         headers={"Origin": ORIGIN}).get_json()
    device = answer["subject"]
    # the victim's consent cookie, seen by the preference center (same-site deployment)
    victim.set_cookie("consent", f"v=1&s={device}&k={answer.get('key')}", domain="localhost")
    backend = app.test_client()
    if attacker_has_an_account:
        backend.post("/api/v1/sites/shop/channel-choices", headers=auth(site), json={
            "user_id": "attacker", "channels": {"email.promotional": True}})
        own = backend.post("/api/v1/sites/shop/decisions",
                           json={"action": "accept_all"}).get_json()
        backend.post("/api/v1/sites/shop/identity-links", headers=auth(site), json={
            "user_id": "attacker", "subject": own["subject"], "key": own["key"]})
    link = backend.post("/api/v1/sites/shop/login-links", json={"user_id": "attacker"},
                        headers=auth(site)).get_json()["url"]
    db.session.rollback()
    events_before = db.session.execute(db.select(db.func.count()).select_from(ConsentEvent)
                                       ).scalar()

    r = follow(victim, "/" + link.split("://", 1)[1].split("/", 1)[1])
    assert r.status_code == 303

    db.session.rollback()
    assert db.session.execute(db.select(db.func.count()).select_from(ConsentEvent)
                              ).scalar() == events_before  # no link event, nothing granted
    site_id = get_site("shop").id
    row = find_subject(site_id, device)
    assert row.user_ref is None  # not made the attacker's account
    assert db.session.execute(db.select(SubjectLink).where(SubjectLink.subject_id == row.id)
                              ).first() is None
    me = backend.get(f"/api/v1/sites/shop/subjects/{device}", headers=auth(site)).get_json()
    assert me["consent"]["categories"]["advertising"] is False
    assert me["consent"]["source"] == "banner" and me["channels"] == {}
    # the attacker's access request does not return the victim's device, nor erase it
    account = db.session.execute(db.select(Subject).where(
        Subject.user_ref.is_not(None))).scalars().all()
    assert device not in {s.public_id for s in account}
    req = rq.open_request("shop", "erasure", user_id="attacker")
    report = rq.access_report("shop", rq.request_subject(req))
    assert device not in str(report)
    rq.carry_out_erasure("shop", req.id, "attacker-support-ticket")
    db.session.rollback()
    still = find_subject(site_id, device)
    assert still is not None and still.erased_at is None
