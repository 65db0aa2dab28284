"""Requests that arrive by e-mail, phone or letter (issue 20, finding 4): staff record them
with the time they were received, the clocks run from receipt, and people the product has
never seen are accepted (matched later, or answered "no data")."""
from __future__ import annotations

from datetime import timedelta

import pytest

from consent.database import iso, utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.requests import DataRequest, due_date
from tests.support.admin import make_token, post_form
from tests.support.api import PROBLEM, bearer, may_i_send


@pytest.fixture
def staff(app):
    return bearer(make_token(["requests:write", "audit:read"]))


def record(client, site, staff, **body):
    return client.post(f"/api/v1/audit/sites/{site['key']}/requests", json=body,
                       headers=staff)


def test_a_request_received_earlier_is_due_from_its_receipt(client, site, staff):
    received = utcnow() - timedelta(days=20)
    r = record(client, site, staff, kind="erasure", user_id="cust-1", via="email",
               received_at=received.isoformat())
    assert r.status_code == 201, r.get_data(as_text=True)
    body = r.get_json()
    assert body["received_at"] == iso(received)
    assert body["due_at"] == iso(received + timedelta(days=30))
    assert body["received_via"] == "email" and body["overdue"] is False
    assert body["recorded_at"] > body["received_at"]
    # A letter that lay 40 days in the post room is overdue the moment it is recorded.
    late = record(client, site, staff, kind="access", user_id="cust-2", via="letter",
                  received_at=(utcnow() - timedelta(days=40)).isoformat()).get_json()
    assert late["overdue"] is True


@pytest.mark.parametrize("received_at", [
    lambda: (utcnow() + timedelta(days=1)).isoformat(),         # the future
    lambda: (utcnow() - timedelta(days=1)).replace(tzinfo=None).isoformat(),  # no zone
    lambda: "yesterday"])
def test_impossible_receipt_times_are_refused_and_record_nothing(client, site, staff,
                                                                 received_at):
    r = record(client, site, staff, kind="access", user_id="u", received_at=received_at())
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert r.get_json()["errors"][0]["pointer"] == "#/received_at"
    assert db.session.execute(db.select(db.func.count()).select_from(DataRequest)).scalar() == 0


def test_a_person_never_seen_is_accepted_and_matched_once_known(client, site, staff):
    r = record(client, site, staff, kind="erasure", address="New.Person@example.org",
               channel="email", via="email")
    assert r.status_code == 201, r.get_data(as_text=True)
    req = r.get_json()
    assert req["known"] is False and req["status"] == "open"
    # Nothing about the address itself is stored, only its keyed hash.
    row = db.session.get(DataRequest, req["id"])
    assert row.subject_id is None and "example.org" not in (row.contact_ref or "")
    # The person turns up (their address is registered for a user): the request is theirs.
    client.post(f"/api/v1/sites/{site['key']}/channel-addresses",
                json={"channel": "email", "address": "new.person@example.org",
                      "user_id": "np-1"}, headers=bearer(site))
    seen = client.get(f"/api/v1/audit/sites/{site['key']}/requests/{req['id']}",
                      headers=staff).get_json()
    assert seen["known"] is True
    done = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{req['id']}/erase",
                       headers=staff).get_json()
    assert done["status"] == "completed" and done["result"]["erased_subjects"] == 1


def test_a_person_never_seen_is_answered_no_data(client, site, staff):
    erase = record(client, site, staff, kind="erasure", user_id="ghost", via="phone").get_json()
    access = record(client, site, staff, kind="access", address="+15550199999",
                    channel="sms", via="phone").get_json()
    assert access["access_link"] is None
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{erase['id']}/erase",
                    headers=staff)
    assert r.status_code == 200 and r.get_json()["result"] == {"no_data": True}
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{access['id']}/close",
                    json={"status": "completed"}, headers=staff)
    assert r.status_code == 200 and r.get_json()["result"] == {"no_data": True}
    assert db.session.execute(db.select(db.func.count()).select_from(ConsentEvent)).scalar() == 0


def test_an_opt_out_by_email_applies_now_and_is_dated_from_receipt(client, site, staff):
    received = utcnow() - timedelta(days=3)
    r = record(client, site, staff, kind="opt-out", address="Writes@example.org",
               channel="email", via="email", received_at=received.isoformat())
    assert r.status_code == 201, r.get_data(as_text=True)
    req = r.get_json()
    assert req["status"] == "completed" and req["result"]["channels"] == ["email.promotional"]
    assert req["due_at"] == iso(due_date(received, {"days": 30}))
    answer = may_i_send(client, site, "email", address="writes@example.org")
    assert (answer["allowed"], answer["reason"]) == (False, "opted_out")
    [event] = db.session.execute(db.select(ConsentEvent)).scalars().all()
    assert (event.action, event.source) == ("unsubscribe", "admin")
    assert event.meta["via"] == "email" and event.meta["received_at"] == iso(received)
    assert db.session.execute(db.select(db.func.count()).select_from(DataRequest)).scalar() == 1


def test_staff_record_a_phoned_request_in_the_admin_with_its_receipt_time(app, site, admin):
    received = (utcnow() - timedelta(days=2)).replace(second=0, microsecond=0)
    r = post_form(admin, f"/admin/sites/{site['key']}/requests", {
        "kind": "access", "via": "phone", "user_id": "caller-9",
        "received_at": received.strftime("%Y-%m-%dT%H:%M")})
    assert r.status_code == 302, r.get_data(as_text=True)
    [req] = db.session.execute(db.select(DataRequest)).scalars().all()
    assert (req.received_at, req.received_via, req.subject_id) == (received, "phone", None)
    assert req.due_at == received + timedelta(days=30)
    page = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert "not known here" in page
    bad = post_form(admin, f"/admin/sites/{site['key']}/requests", {
        "kind": "access", "via": "phone", "user_id": "caller-9",
        "received_at": (utcnow() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")})
    assert bad.status_code in (400, 422)
