"""Finding 13.2: `subject=` on the preference center is not an identity.

An attacker who knows the victim's id opens the preference center with it, or posts the
form with it, to read the victim's choices or to opt them in to everything.
"""
from __future__ import annotations

import re

from consent.extensions import db
from consent.ledger import ConsentEvent

ORIGIN = "https://shop.example"
CHANNELS = ["email.promotional", "sms.promotional", "push.promotional", "push.service"]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def victim_events(subject) -> list[ConsentEvent]:
    from consent.subjects import Subject

    db.session.rollback()
    pseudonym = db.session.execute(db.select(Subject.pseudonym).where(
        Subject.public_id == subject)).scalar_one()
    return list(db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.subject == pseudonym)).scalars())


def test_subject_in_the_query_or_form_reaches_nobody(app, site):
    victim_browser, attacker = app.test_client(), app.test_client()
    victim = victim_browser.post("/api/v1/sites/shop/decisions", json={
        "action": "custom", "categories": {"analytics": True}}, headers={"Origin": ORIGIN}
    ).get_json()["subject"]
    before = victim_events(victim)
    # reading: the page shows the defaults, not the victim's analytics choice
    html = attacker.get(f"/preferences?site=shop&subject={victim}").get_data(as_text=True)
    assert not re.search(r'id="category-analytics"[^>]*checked', html)
    assert "Nothing has been recorded for this browser yet." in html
    # writing: every category and channel, with the victim's id in the form and the query
    r = attacker.post(f"/preferences?site=shop&subject={victim}", data={
        "csrf_token": csrf_of(html), "subject": victim,
        "category": ["functional", "analytics", "advertising"], "channel": CHANNELS})
    assert r.status_code == 303
    assert victim_events(victim) == before  # the victim's consent is untouched
    # the widget's entry with the id but without the key proves nothing either
    attacker.post("/preferences/enter?site=shop", data={"subject": victim,
                                                        "key": "guessed-0123456789abcdef"},
                  headers={"Origin": ORIGIN})
    html = attacker.get("/preferences?site=shop").get_data(as_text=True)
    assert not re.search(r'id="category-analytics"[^>]*checked', html)
