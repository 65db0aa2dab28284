"""Request kinds the policies name (issue 20, finding 5): correction (001, 002), account
cancellation (001) and the US opt-out of sale/sharing (000 Art. 15), each with its
deadline, status and a signed receipt."""
from __future__ import annotations

from datetime import timedelta

import pytest

from consent.database import iso, utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent, verify_ledger
from consent.requests import due_date, verify_request_receipt
from consent.subjects import Subject
from tests.support.admin import make_token, post_form
from tests.support.api import bearer, decide, device


@pytest.fixture
def staff(app):
    return bearer(make_token(["requests:write", "audit:read"]))


def open_req(client, site, staff, **body):
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests", json=body, headers=staff)
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def receipt(client, site, staff, rid):
    r = client.get(f"/api/v1/audit/sites/{site['key']}/requests/{rid}/request-receipt",
                   headers=staff)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_a_correction_has_its_deadline_status_and_signed_receipt(client, site, staff):
    received = utcnow() - timedelta(days=2)
    req = open_req(client, site, staff, kind="correction", user_id="c-1", via="phone",
                   received_at=received.isoformat(), note="wrong billing name")
    assert req["due_at"] == iso(received + timedelta(days=30)) and req["status"] == "open"
    first = receipt(client, site, staff, req["id"])
    assert (first["kind"], first["status"], first["due_at"]) == ("correction", "open",
                                                                  req["due_at"])
    assert "Correction" in first["what"] and verify_request_receipt(first)
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{req['id']}/close",
                    json={"status": "completed", "note": "name corrected in billing"},
                    headers=staff)
    assert r.status_code == 200 and r.get_json()["status"] == "completed"
    done = receipt(client, site, staff, req["id"])
    assert done["status"] == "completed" and done["completed_at"] and verify_request_receipt(done)
    # A receipt edited after the fact (say, its deadline) no longer verifies.
    assert not verify_request_receipt({**done, "due_at": iso(utcnow() + timedelta(days=90))})


def test_an_account_cancellation_closes_the_account_and_erases_its_data(client, site, staff):
    visitor = decide(client, site["key"], origin=site["origin"])["subject"]
    client.post(f"/api/v1/sites/{site['key']}/identity-links",
                json={"user_id": "leaving-1", **device(visitor)}, headers=bearer(site))
    req = open_req(client, site, staff, kind="cancellation", user_id="leaving-1", via="email")
    # Not completed by a click: it is carried out.
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{req['id']}/close",
                    json={"status": "completed"}, headers=staff)
    assert r.status_code == 409
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{req['id']}/carry-out",
                    headers=staff)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["status"] == "completed"
    assert r.get_json()["result"]["erased_subjects"] >= 1
    assert db.session.execute(db.select(Subject).where(
        Subject.public_id == visitor)).scalar_one_or_none() is None
    assert receipt(client, site, staff, req["id"])["status"] == "completed"
    assert verify_ledger().ok


def test_an_opt_out_of_sale_or_sharing_is_due_in_15_business_days_and_applied(
        client, site, staff):
    visitor = decide(client, site["key"], origin=site["origin"])["subject"]
    client.post(f"/api/v1/sites/{site['key']}/identity-links",
                json={"user_id": "ca-1", **device(visitor)}, headers=bearer(site))
    received = utcnow() - timedelta(days=1)
    req = open_req(client, site, staff, kind="opt-out-sale", user_id="ca-1", via="email",
                   received_at=received.isoformat())
    assert req["deadline_rule"] == "15 business days"
    assert req["due_at"] == iso(due_date(received, {"business_days": 15}))
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{req['id']}/carry-out",
                    headers=staff)
    assert r.status_code == 200, r.get_data(as_text=True)
    done = r.get_json()
    assert done["status"] == "completed" and done["result"]["categories"] == ["advertising"]
    event = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.event_id == done["result"]["event_id"])).scalar_one()
    assert (event.action, event.categories) == ("withdraw", {"advertising": False})
    assert event.meta["opt_out"] == "sale_sharing"
    user = client.get(f"/api/v1/sites/{site['key']}/users/ca-1", headers=bearer(site))
    assert user.get_json()["consent"]["categories"]["advertising"] is False
    assert user.get_json()["consent"]["categories"]["analytics"] is True  # only sale/sharing


def test_the_admin_records_and_carries_out_the_new_kinds(app, site, admin):
    r = post_form(admin, f"/admin/sites/{site['key']}/requests",
                  {"kind": "opt-out-sale", "via": "phone", "user_id": "nobody-yet"})
    assert r.status_code == 302, r.get_data(as_text=True)
    page = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert 'id="carry-out"' in page and 'id="request-receipt"' in page
    rid = r.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    # carrying it out asks first (the confirmation page), then the button confirms
    ask = admin.get(f"/admin/sites/{site['key']}/requests/{rid}/erase")
    assert ask.status_code == 200 and 'name="confirm"' in ask.get_data(as_text=True)
    done = post_form(admin, f"/admin/sites/{site['key']}/requests/{rid}/erase",
                     {"confirm": "yes"})
    assert done.status_code == 302
    signed = admin.get(f"/admin/sites/{site['key']}/requests/{rid}/request-receipt.json")
    body = signed.get_json()
    assert body["status"] == "completed" and body["result"] == {"no_data": True}
    assert verify_request_receipt(body)
