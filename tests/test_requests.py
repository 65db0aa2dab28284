"""Access and erasure requests: deadlines, signed access links, receipts, crypto-shredding."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from consent import requests as rq
from consent.audit import ExportFilters, verify_export_file, write_export
from consent.database import run_write
from consent.extensions import db
from consent.ledger import ConsentEvent, EventDetails, verify_ledger
from consent.sites import get_site, invalidate_site_cache
from consent.subjects import Subject, keyed_ref
from tests.support.admin import make_token, post_form, record_choice
from tests.support.api import bearer

UA = "Mozilla/5.0 (Erasable; Rare UA 4711)"
PAGE = "https://shop.example/account/orders"
IP = "198.51.100.23"


CONTROLLER = {"name": "Shop GmbH", "contact": "Data Protection Officer",
              "email": "privacy@shop.example", "phone": "tel:+49-30-1234567",
              "address": {"streetAddress": "Hauptstraße 1", "postalCode": "10115",
                          "addressLocality": "Berlin", "addressCountry": "DE"}}


def set_controller(site_key: str) -> None:
    """The controller details a Kantara receipt needs (refused without them)."""
    def write():
        site = get_site(site_key)
        site.settings = {**(site.settings or {}), "controller": CONTROLLER}
    run_write(write)
    invalidate_site_cache()


def set_deadline(site_key: str, rule: dict) -> None:
    def write():
        site = get_site(site_key)
        site.settings = {**(site.settings or {}), "request_deadline": rule}
    run_write(write)
    invalidate_site_cache()


# ---------------------------------------------------------------- deadlines


def test_due_dates_for_days_and_business_days():
    friday = datetime(2026, 5, 1, 10, 0, tzinfo=timezone.utc)  # a Friday
    assert rq.due_date(friday, {"days": 30}) == friday + timedelta(days=30)
    assert rq.due_date(friday, {"days": 45}) == friday + timedelta(days=45)
    # 10 business days from Friday 1 May: Friday 15 May (two weekends skipped).
    assert rq.due_date(friday, {"business_days": 10}) == datetime(2026, 5, 15, 10, 0,
                                                                  tzinfo=timezone.utc)
    # A holiday pushes it one more business day.
    assert rq.due_date(friday, {"business_days": 10, "holidays": ["2026-05-05"]}) == \
        datetime(2026, 5, 18, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("rule", [{"days": 0}, {"weeks": 2}, {"days": 30, "business_days": 3},
                                  {"business_days": 10, "holidays": ["soon"]}, "30 days"])
def test_bad_deadline_rules_are_refused(rule):
    from consent.errors import Invalid

    with pytest.raises(Invalid):
        rq.validate_deadline_rule(rule)


@pytest.mark.parametrize("rule, days", [({"days": 30}, 30), ({"days": 45}, 45),
                                        ({"business_days": 10}, None)])
def test_request_carries_the_site_deadline(site, rule, days):
    set_deadline(site["key"], rule)
    visitor = record_choice(site["key"])
    req = rq.open_request(site["key"], "access", subject=visitor)
    if days:
        assert req.due_at - req.received_at == timedelta(days=days)
    else:
        assert timedelta(days=12) <= req.due_at - req.received_at <= timedelta(days=14)
        assert req.due_at.weekday() < 5
    assert req.deadline_rule == rq.describe_rule(rule)


def test_overdue_requests_show_on_the_dashboard(app, site, admin):
    late = record_choice(site["key"])
    fresh = record_choice(site["key"])
    old = datetime.now(timezone.utc) - timedelta(days=31)
    overdue = rq.open_request(site["key"], "erasure", subject=late, received_at=old)
    rq.open_request(site["key"], "access", subject=fresh)
    page = admin.get(f"/admin/sites/{site['key']}/").data.decode()
    assert 'id="overdue-count">1<' in page
    table = page.split('id="open-requests"')[1].split("</table>")[0]
    assert table.count("<tr class=\"overdue\">") == 1 and "OVERDUE" in table
    assert late in table and fresh in table
    assert f"request_id={overdue.id}" not in table  # links are real paths
    assert f"/requests/{overdue.id}" in table
    listing = admin.get(f"/admin/sites/{site['key']}/requests").data.decode()
    assert "OVERDUE" in listing


# ---------------------------------------------------------------- access


def test_access_by_signed_link_gives_history_page_json_and_receipt(app, site, admin):
    set_controller(site["key"])
    visitor = record_choice(site["key"], "accept_all", ip=IP, user_agent=UA, page_url=PAGE)
    record_choice(site["key"], "custom", subject=visitor, categories={"analytics": True})
    record_choice(site["key"], "accept_all")  # somebody else
    r = post_form(admin, f"/admin/sites/{site['key']}/requests",
                  {"kind": "access", "subject": visitor})
    assert r.status_code == 302
    page = admin.get(r.headers["Location"]).data.decode()
    link = page.split('id="access-link">')[1].split("<")[0]
    path = link.split("://", 1)[1].split("/", 1)[1]
    visitor_client = app.test_client()
    html = visitor_client.get("/" + path)
    assert html.status_code == 200
    # the URL carries the access token: kept out of caches, referrers and search engines
    assert (html.headers["Cache-Control"], html.headers["Referrer-Policy"],
            html.headers["X-Robots-Tag"]) == ("no-store", "no-referrer", "noindex")
    text = html.data.decode()
    assert "accept_all" in text and "custom" in text and "198.51.100.0/24" in text
    body = visitor_client.get(f"/{path}/history.json").get_json()
    assert body["subject"] == visitor
    assert [e["action"] for e in body["events"]] == ["accept_all", "custom"]
    assert body["events"][0]["details"]["user_agent"] == UA
    assert body["events"][0]["policy_url"].endswith(f"/sites/{site['key']}/policies/2026-01")
    assert body["current"]["categories"]["analytics"] is True
    receipt = visitor_client.get(f"/{path}/receipt.json").get_json()
    for key in ("version", "jurisdiction", "consentTimestamp", "collectionMethod",
                "consentReceiptID", "publicKey", "language", "piiPrincipalId",
                "piiControllers", "policyUrl", "services", "sensitive", "spiCat"):
        assert key in receipt
    assert receipt["version"] == "KI-CR-v1.1.0"
    assert receipt["piiPrincipalId"] == visitor
    purposes = {p["purposeCategory"][0] for p in receipt["services"][0]["purposes"]}
    assert purposes == {"essential", "analytics"}  # granted ones only
    # Opening the link answered the request.
    req = db.session.execute(db.select(rq.DataRequest)).scalar_one()
    assert req.status == "completed" and req.completed_by == "subject"
    # A tampered link is refused.
    assert visitor_client.get("/" + path[:-3] + "abc").status_code == 403


def test_access_covers_every_device_of_a_linked_user(app, site):
    from consent.identity import link_user

    phone = record_choice(site["key"], "accept_all")
    laptop = record_choice(site["key"], "reject_all")
    link_user(site["key"], "customer-42", phone)
    link_user(site["key"], "customer-42", laptop)
    req = rq.open_request(site["key"], "access", user_id="customer-42")
    report = rq.access_report(site["key"], rq.request_subject(req))
    assert set(report["devices"]) >= {phone, laptop}
    assert {"accept_all", "reject_all"} <= {e["action"] for e in report["events"]}


def test_request_for_unknown_subject_is_404_and_nothing_is_recorded(app, site):
    token = make_token(["requests:write"])
    r = app.test_client().post(f"/api/v1/audit/sites/{site['key']}/requests",
                               json={"kind": "access", "subject": "x" * 22},
                               headers=bearer(token))
    assert r.status_code == 404
    r = app.test_client().post(f"/api/v1/audit/sites/{site['key']}/requests",
                               json={"kind": "access"}, headers=bearer(token))
    assert r.status_code == 422 and r.get_json()["errors"][0]["pointer"] == "#/subject"
    r = app.test_client().post(f"/api/v1/audit/sites/{site['key']}/requests",
                               json={"kind": "delete", "subject": "x" * 22},
                               headers=bearer(token))
    assert r.status_code == 422
    assert db.session.execute(db.select(db.func.count()).select_from(rq.DataRequest)
                              ).scalar() == 0


def test_api_request_lifecycle(app, site):
    set_controller(site["key"])
    visitor = record_choice(site["key"])
    token = make_token(["requests:write", "audit:read"])
    client = app.test_client()
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests",
                    json={"kind": "access", "subject": visitor}, headers=bearer(token))
    assert r.status_code == 201
    body = r.get_json()
    assert body["status"] == "open" and body["access_link"].count("/my-data/") == 1
    rid = body["id"]
    history = client.get(f"/api/v1/audit/sites/{site['key']}/requests/{rid}/history",
                         headers=bearer(token)).get_json()
    assert history["subject"] == visitor
    receipt = client.get(f"/api/v1/audit/sites/{site['key']}/requests/{rid}/receipt",
                         headers=bearer(token)).get_json()
    assert receipt["piiPrincipalId"] == visitor
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{rid}/close",
                    json={"status": "completed"}, headers=bearer(token))
    assert r.status_code == 200 and r.get_json()["status"] == "completed"
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{rid}/close",
                    json={}, headers=bearer(token))
    assert r.status_code == 409
    listed = client.get(f"/api/v1/audit/sites/{site['key']}/requests?status=completed",
                        headers=bearer(token)).get_json()
    assert [x["id"] for x in listed] == [rid]


# ---------------------------------------------------------------- erasure


def dump_database() -> str:
    """Every row of every table, as text."""
    out = []
    engine = db.engine
    for table in sa.inspect(engine).get_table_names():
        for row in db.session.execute(sa.text(f'SELECT * FROM "{table}"')).all():
            out.append(f"{table}: {tuple(row)}")
    return "\n".join(out)


def export_text(tmp_path, name: str, site_key: str) -> tuple[str, object]:
    path = tmp_path / name
    with open(path, "w", encoding="utf-8", newline="") as fh:
        write_export(fh, ExportFilters(site_key=site_key), "csv")
    return path.read_text(), path


def test_erasure_leaves_no_identifier_while_everything_still_verifies(tmp_path, app, site,
                                                                      admin):
    from consent.channels import Recipient, register_address
    from consent.identity import link_user

    phone = record_choice(site["key"], "accept_all", ip=IP, user_agent=UA, page_url=PAGE)
    laptop = record_choice(site["key"], "custom", categories={"analytics": True}, ip=IP,
                    user_agent=UA, page_url=PAGE)
    bystander = record_choice(site["key"], "reject_all", ip="192.0.2.9", user_agent="Other/1.0")
    link_user(site["key"], "customer-4711", phone)
    link_user(site["key"], "customer-4711", laptop)
    register_address(site["key"], "email", "Erin.Erasable@example.org",
                     Recipient(user_id="customer-4711"))
    user_ref = keyed_ref(site["key"], "user", "customer-4711")
    secrets = [s.secret for s in db.session.execute(db.select(Subject).where(
        Subject.public_id.in_([phone, laptop]))).scalars()]
    from consent.subjects import find_subject, read_token
    phone_token = read_token(find_subject(get_site(site["key"]).id, phone).pseudonym)
    before_text, before_path = export_text(tmp_path, "before.csv", site["key"])
    dump = dump_database()
    identifiers = [phone, laptop, user_ref, "198.51.100.0/24", UA, PAGE] + secrets
    for value in identifiers:
        assert value in dump, value  # the test would notice them

    r = post_form(admin, f"/admin/sites/{site['key']}/requests",
                  {"kind": "erasure", "user_id": "customer-4711"})
    request_url = r.headers["Location"]
    rid = int(request_url.rstrip("/").rsplit("/", 1)[1])
    erase = f"/admin/sites/{site['key']}/requests/{rid}/erase"
    r = post_form(admin, erase, page=erase)  # without the confirmation: asked again
    assert r.status_code == 422 and "It cannot be undone" in r.get_data(as_text=True)
    assert all(value in dump_database() for value in identifiers)
    r = post_form(admin, erase, {"confirm": "yes"}, page=erase)
    assert r.status_code == 302
    shown = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert "Erased: 2 visitor id(s)" in shown and "visitor id(s) erased" in shown

    dump = dump_database()
    for value in identifiers:
        assert value not in dump, value
    from consent.channels import address_ref
    assert address_ref(site["key"], "email", "Erin.Erasable@example.org") not in dump
    # The bystander is untouched.
    assert bystander in dump and "192.0.2.0/24" in dump
    # The erasure is itself an event; the ledger and the earlier export still verify.
    erase_events = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.action == "erase")).scalars().all()
    assert len(erase_events) == 2
    assert verify_ledger().ok
    assert verify_export_file(str(before_path)).ok
    after_text, after_path = export_text(tmp_path, "after.csv", site["key"])
    assert verify_export_file(str(after_path)).ok
    for value in identifiers:
        assert value not in after_text, value
    req = db.session.get(rq.DataRequest, rid)
    assert req.status == "completed" and req.result["erased_subjects"] == 2
    page = admin.get(request_url).data.decode()
    assert "erased" in page and phone not in page
    # The erased visitor is a stranger now: their old cookie id finds nothing.
    assert app.test_client().get(f"/api/v1/sites/{site['key']}/me/{phone}?r={phone_token}"
                                 ).status_code == 404
    # The person's details rows are gone, the bystander's stay.
    assert db.session.execute(db.select(db.func.count()).select_from(EventDetails)
                              ).scalar() == 1


def test_erasure_runs_registered_hooks_and_cannot_run_twice(app, site):
    from consent.errors import Conflict

    seen = []
    hook = rq.on_erase(seen.append)
    try:
        visitor = record_choice(site["key"])
        subject_id = db.session.execute(db.select(Subject.id).where(
            Subject.public_id == visitor)).scalar_one()
        req = rq.open_request(site["key"], "erasure", subject=visitor)
        rq.carry_out_erasure(site["key"], req.id, "token:1")
        assert seen == [subject_id]
        with pytest.raises(Conflict):
            rq.carry_out_erasure(site["key"], req.id, "token:1")
    finally:
        rq._erase_hooks.remove(hook)


def test_api_erasure(app, site):
    visitor = record_choice(site["key"])
    token = make_token(["requests:write"])
    client = app.test_client()
    rid = client.post(f"/api/v1/audit/sites/{site['key']}/requests",
                      json={"kind": "erasure", "subject": visitor},
                      headers=bearer(token)).get_json()["id"]
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{rid}/erase",
                    headers=bearer(token))
    assert r.status_code == 200 and r.get_json()["status"] == "completed"
    assert db.session.execute(db.select(Subject.public_id)).scalars().all() == [None]
    assert verify_ledger().ok
    assert json.dumps(r.get_json()).count(visitor) == 0
