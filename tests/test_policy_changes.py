"""Policy changes (issue 20, finding 3): a version announced for later does not govern
events before its effective date, the site's backend is told (`policy.published`
webhook) and every server answer says whether the consent predates the material version
in force; the archived diff shows what changed."""
from __future__ import annotations

import json
from datetime import timedelta

from consent.audit import verify_all
from consent.database import utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.outbox import OutboxMessage
from tests.support.admin import make_token, post_form
from tests.support.api import bearer, decide, device, may_i_send
from tests.support.outbox import add_endpoint, drain, messages

NEW_TEXT = "Policy text v1\nWe will also share call records with partners."


def publish(client, site, label="2027-01", *, days_ahead=10, material=True, text=NEW_TEXT):
    token = make_token(["policies:write"], site["key"])
    body = {"label": label, "material": material, "text": text,
            "summary": "Call records shared with partners"}
    if days_ahead is not None:
        body["effective_at"] = (utcnow() + timedelta(days=days_ahead)).isoformat()
    r = client.post(f"/api/v1/audit/sites/{site['key']}/policies", json=body,
                    headers=bearer(token))
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def subject_state(client, site, subject):
    r = client.get(f"/api/v1/sites/{site['key']}/subjects/{subject}", headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def last_event() -> ConsentEvent:
    db.session.rollback()
    return db.session.execute(db.select(ConsentEvent).order_by(ConsentEvent.id.desc())
                              .limit(1)).scalar_one()


def test_events_before_the_effective_date_carry_the_version_in_force(client, site, clock):
    publish(client, site)
    # A choice made during the notice period is made under the version in force, even
    # when a client names the announced one.
    subject = decide(client, site["key"], origin=site["origin"])["subject"]
    assert last_event().policy_version == "2026-01"
    decide(client, site["key"], "reject_all", subject=subject, origin=site["origin"],
           policy_version="2027-01")
    assert last_event().policy_version == "2026-01"
    state = subject_state(client, site, subject)["policy_state"]
    assert state["in_force"] == "2026-01" and state["predates_material_version"] is False
    assert state["upcoming"]["version"] == "2027-01" and state["upcoming"]["material"]

    clock.advance(days=11)
    decide(client, site["key"], subject=subject, origin=site["origin"])
    assert last_event().policy_version == "2027-01"


def test_server_answers_flag_consent_that_predates_the_material_version_in_force(
        client, site, clock):
    subject = decide(client, site["key"], origin=site["origin"])["subject"]
    r = client.post(f"/api/v1/sites/{site['key']}/identity-links",
                    json={"user_id": "u-77", **device(subject)}, headers=bearer(site))
    account = r.get_json()["subject"]
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                    json={"user_id": "u-77", "channels": {"email.promotional": True}},
                    headers=bearer(site))
    assert r.status_code == 200
    publish(client, site)

    def answers():
        user = client.get(f"/api/v1/sites/{site['key']}/users/u-77", headers=bearer(site))
        return (subject_state(client, site, account)["policy_state"],
                user.get_json()["policy_state"],
                may_i_send(client, site, "email", user_id="u-77")["policy_state"])

    for state in answers():  # announced, not yet in force: the consent still counts
        assert state["predates_material_version"] is False, state
        assert state["upcoming"]["version"] == "2027-01"
    clock.advance(days=11)
    for state in answers():
        assert state["predates_material_version"] is True, state
        assert (state["in_force"], state["material_version"]) == ("2027-01", "2027-01")
        assert state["upcoming"] is None
        # (may-i-send named no version the opt-in was given under: an outside review)
        assert state["consented_under"] == "2026-01", state
    # Sending is not decided for the site: the opt-in stays recorded, flagged as stale.
    assert may_i_send(client, site, "email", user_id="u-77")["allowed"] is True
    # Consent given again under the new version is current.
    decide(client, site["key"], subject=account, origin=site["origin"])
    assert subject_state(client, site, account)["policy_state"][
        "predates_material_version"] is False


def test_a_choice_recorded_under_the_older_version_after_the_change_is_flagged(
        client, site, clock):
    # The widget's queue sends a choice made under 2026-01 once the visitor is back
    # online, after the material 2027-01 took effect: the ledger records it under 2026-01
    # (what the person saw), so it does not cover processing under 2027-01 either.
    publish(client, site)
    clock.advance(days=11)
    subject = decide(client, site["key"], origin=site["origin"],
                     policy_version="2026-01")["subject"]
    assert last_event().policy_version == "2026-01"
    state = subject_state(client, site, subject)["policy_state"]
    assert state["consented_under"] == "2026-01" and state["material_version"] == "2027-01"
    assert state["predates_material_version"] is True
    decide(client, site["key"], subject=subject, origin=site["origin"])
    assert subject_state(client, site, subject)["policy_state"][
        "predates_material_version"] is False


def test_policy_published_webhook_reaches_the_site_and_verifies(app, client, site, fast,
                                                                receiver):
    add_endpoint(site["key"], receiver.url, categories=["analytics"])
    published = publish(client, site)
    drain()
    [body] = [b for b in receiver.bodies() if b["type"] == "policy.published"]
    policy = body["policy"]
    assert body["site"] == "shop" and body["subject"] is None
    assert (policy["version"], policy["material"]) == ("2027-01", True)
    assert policy["effective_at"] == published["effective_at"]
    assert policy["summary"] == "Call records shared with partners"
    assert policy["url"].endswith("/sites/shop/policies/2027-01")
    assert policy["diff_url"].endswith("/sites/shop/policies/2027-01/diff")
    assert verify_all().ok
    # An insider who edits the notification (say, to move the effective date) is caught.
    [message] = messages(kind="policy.published")
    payload = json.loads(json.dumps(message.payload))
    payload["policy"]["effective_at"] = "2030-01-01T00:00:00.000000Z"
    db.session.execute(db.update(OutboxMessage).where(OutboxMessage.id == message.id)
                       .values(payload=payload))
    db.session.commit()
    report = verify_all()
    assert not report.ok
    assert any("policy block differs" in str(p) for p in report.problems)


def test_the_archived_diff_shows_what_a_version_changes(client, site):
    publish(client, site)
    page = client.get("/sites/shop/policies/2027-01/diff").get_data(as_text=True)
    assert "<ins>+We will also share call records with partners.</ins>" in page
    assert "Call records shared with partners" in page
    first = client.get("/sites/shop/policies/2026-01/diff")
    assert first.status_code == 200 and "nothing to compare" in first.get_data(as_text=True)
    assert client.get("/sites/shop/policies/nope/diff").status_code == 404


def test_the_preference_center_gives_advance_notice_until_the_effective_date(client, site,
                                                                             clock):
    publish(client, site)
    page = client.get("/preferences?site=shop&lang=en").get_data(as_text=True)
    notice = page.split('id="policy-notice"')[1].split("</p>")[0]
    assert "A new version of this privacy policy (2027-01) takes effect on" in notice
    assert "Call records shared with partners" in notice
    assert 'href="/sites/shop/policies/2027-01/diff"' in notice
    clock.advance(days=11)
    page = client.get("/preferences?site=shop&lang=en").get_data(as_text=True)
    assert 'id="policy-notice"' not in page
    assert 'id="policy-current" href="/sites/shop/policies/2027-01"' in page


def test_the_widget_configuration_carries_the_notice_only_until_the_effective_date(
        client, site, clock):
    plain = client.get("/api/v1/sites/shop/config?locale=en").get_json()
    assert "nt" not in plain["strings"] and "ntTitle" not in plain["strings"]
    publish(client, site)
    during = client.get("/api/v1/sites/shop/config?locale=en").get_json()
    assert during["strings"]["ntTitle"] == "Privacy policy update"
    assert "(2027-01) takes effect on" in during["strings"]["nt"]
    assert during["strings"]["nt"] in during["strings"]["text"]  # first visits read it too
    assert during["strings"]["policy"] == "See what changes"
    assert during["policy"]["url"].endswith("/sites/shop/policies/2027-01/diff")
    assert during["policy"]["version"] == "2026-01"
    clock.advance(days=11)
    after = client.get("/api/v1/sites/shop/config?locale=en").get_json()
    assert "nt" not in after["strings"] and after["policy"]["version"] == "2027-01"
    assert after["policy"]["reconsentAfter"] == during["policy"]["reconsentAfter"]


def test_a_new_version_cannot_take_effect_before_it_is_published(client, site, admin):
    """A change dated in the past would make consents already given stale without the
    widget ever telling of it: the API, the admin form and the publishing function refuse
    it (a client clock a few seconds behind means now); a site's first version may say
    since when its policy applied (the seed profiles do)."""
    token = make_token(["policies:write", "audit:read"], site["key"])
    url = f"/api/v1/audit/sites/{site['key']}/policies"
    body = {"label": "2026-06", "material": True, "text": NEW_TEXT,
            "effective_at": (utcnow() - timedelta(days=30)).isoformat()}
    r = client.post(url, json=body, headers=bearer(token))
    assert r.status_code == 422, r.get_data(as_text=True)
    problem = r.get_json()
    assert "effective_at" in json.dumps(problem["errors"]) and "in the past" in r.get_data(
        as_text=True)
    assert [v["label"] for v in client.get(url, headers=bearer(token)).get_json()] \
        == ["2026-01"]
    body.update(label="2026-12", effective_at=(utcnow() - timedelta(seconds=20)).isoformat())
    r = client.post(url, json=body, headers=bearer(token))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["effective_at"] >= r.get_json()["published_at"]
    # The admin form: a day before today is refused, today means now.
    form = f"/admin/sites/{site['key']}/policies"
    page = post_form(admin, form, {"label": "2026-12b", "text": NEW_TEXT, "material": "y",
                                   "effective_at": (utcnow() - timedelta(days=2)).date()
                                   .isoformat()})
    assert page.status_code == 422 and "in the past" in page.get_data(as_text=True)
    page = post_form(admin, form, {"label": "2026-12c", "text": NEW_TEXT, "material": "y",
                                   "effective_at": utcnow().date().isoformat()})
    assert page.status_code == 302, page.get_data(as_text=True)
    labels = [v["label"] for v in client.get(url, headers=bearer(token)).get_json()]
    assert "2026-12c" in labels and "2026-12b" not in labels
