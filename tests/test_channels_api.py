"""Channels API: may I send?, opt-outs and opt-ins, STOP, suppression lists, addresses."""
from __future__ import annotations

import csv
import io
import secrets

import pytest
import sqlalchemy as sa

from consent import subjects
from consent.channels import CHANNELS, ChannelAddress, address_ref
from consent.csvcells import unescape_cell
from consent.database import run_write
from consent.extensions import db
from consent.ledger import ConsentEvent, verify_ledger
from consent.sites import get_site, invalidate_site_cache
from tests.support.api import PROBLEM, bearer, may_i_send
from tests.support.db import count_events


def choose(client, site, channels, **recipient):
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                    json={"channels": channels, **recipient}, headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def sms(client, site, sender, body, **extra):
    return client.post(f"/api/v1/sites/{site['key']}/sms/inbound",
                       data={"From": sender, "Body": body, "To": "+15550000000", **extra},
                       headers=bearer(site))


def events(action=None):
    query = db.select(ConsentEvent).order_by(ConsentEvent.id)
    if action:
        query = query.where(ConsentEvent.action == action)
    return list(db.session.execute(query).scalars())


def visitor(client, site) -> str:
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "reject_all"})
    return r.get_json()["subject"]


# ---------------------------------------------------------------- may I send?


def test_transactional_is_always_allowed_even_after_every_opt_out(client, site):
    subject = visitor(client, site)
    choose(client, site, {k: False for k in CHANNELS}, subject=subject)
    for channel in ("email", "sms", "push"):
        answer = may_i_send(client, site, channel, "transactional", subject=subject)
        assert answer["allowed"] is True
        assert answer["reason"] == "transactional_always_allowed"
    answer = may_i_send(client, site, "email", "transactional", address="nobody@example.com")
    assert answer["allowed"] is True


def test_never_chosen_is_denied_by_privacy_safe_default(client, site):
    subject = visitor(client, site)
    for key in CHANNELS:
        medium, kind = key.split(".")
        answer = may_i_send(client, site, medium, kind, subject=subject)
        state = answer.pop("policy_state")
        assert answer == {"allowed": False, "channel": medium, "kind": kind,
                          "reason": "default_denied", "event_id": None, "decided_at": None}
        assert state["predates_material_version"] is False


def test_site_setting_changes_the_default(client, site):
    def write():
        s = get_site(site["key"])
        s.settings = {**s.settings, "channel_defaults": {"push.service": True}}
    run_write(write)
    invalidate_site_cache()
    subject = visitor(client, site)
    answer = may_i_send(client, site, "push", "service", subject=subject)
    assert answer["allowed"] is True and answer["reason"] == "default_allowed"
    assert may_i_send(client, site, "push", "promotional", subject=subject)["allowed"] is False
    # An explicit opt-out beats the permissive default.
    choose(client, site, {"push.service": False}, subject=subject)
    assert may_i_send(client, site, "push", "service", subject=subject)["reason"] == "opted_out"


def test_answer_changes_immediately_after_each_opt_in_and_opt_out(client, site):
    subject = visitor(client, site)
    for key in CHANNELS:
        medium, kind = key.split(".")
        on = choose(client, site, {key: True}, subject=subject)
        answer = may_i_send(client, site, medium, kind, subject=subject)
        assert answer["allowed"] is True and answer["reason"] == "opted_in"
        assert answer["event_id"] == on["event_id"]
        off = choose(client, site, {key: False}, subject=subject)
        answer = may_i_send(client, site, medium, kind, subject=subject)
        assert answer["allowed"] is False and answer["reason"] == "opted_out"
        assert answer["event_id"] == off["event_id"] and answer["decided_at"]
    recorded = events()
    assert [e.action for e in recorded[1:]] == ["resubscribe", "unsubscribe"] * 4
    assert all(e.source == "api" for e in recorded[1:])
    assert verify_ledger().ok


def test_push_promotional_and_service_are_independent(client, site):
    subject = visitor(client, site)
    choose(client, site, {"push.promotional": True, "push.service": True}, subject=subject)
    choose(client, site, {"push.promotional": False}, subject=subject, source="push")
    assert may_i_send(client, site, "push", "promotional", subject=subject)["allowed"] is False
    assert may_i_send(client, site, "push", "service", subject=subject)["allowed"] is True
    choose(client, site, {"push.promotional": True, "push.service": False}, subject=subject)
    assert may_i_send(client, site, "push", "promotional", subject=subject)["allowed"] is True
    assert may_i_send(client, site, "push", "service", subject=subject)["allowed"] is False
    assert events()[2].source == "push"


def test_repeated_report_records_nothing_new(client, site):
    subject = visitor(client, site)
    first = choose(client, site, {"email.promotional": False}, subject=subject)
    again = choose(client, site, {"email.promotional": False}, subject=subject)
    assert first["event_id"] and again["event_id"] is None
    assert len(events("unsubscribe")) == 1
    # The deciding event is still the first one.
    answer = may_i_send(client, site, "email", "promotional", subject=subject)
    assert answer["event_id"] == first["event_id"]


def test_withdrawal_is_prospective_history_stays(client, site):
    subject = visitor(client, site)
    on = choose(client, site, {"email.promotional": True}, subject=subject)
    off = choose(client, site, {"email.promotional": False}, subject=subject)
    h = client.get(f"/api/v1/sites/{site['key']}/subjects/{subject}/history",
                   headers=bearer(site)).get_json()["events"]
    assert [e["event_id"] for e in h[-2:]] == [on["event_id"], off["event_id"]]
    assert h[-2]["channels"] == {"email.promotional": True}
    assert h[-1]["channels"] == {"email.promotional": False}


# ---------------------------------------------------------------- addresses


def test_address_is_stored_only_as_keyed_hmac_and_normalised(client, site):
    r = client.post(f"/api/v1/sites/{site['key']}/channel-addresses",
                    json={"channel": "email", "address": "  Ann.Example@Mail.TEST ",
                          "user_id": "user-42"}, headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)
    ref = r.get_json()["address_ref"]
    assert ref == address_ref(site["key"], "email", "ann.example@mail.test")
    choose(client, site, {"email.promotional": True}, user_id="user-42")
    # The address in another spelling reaches the same person.
    answer = may_i_send(client, site, "email", "promotional", address="ANN.example@mail.test")
    assert answer["allowed"] is True and answer["reason"] == "opted_in"
    # Nothing in the database holds the address itself.
    with db.engine.connect() as conn:
        for table in ("channel_addresses", "consent_events", "subjects", "event_details"):
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                assert "mail.test" not in repr(tuple(row)).lower(), table
    row = db.session.execute(db.select(ChannelAddress)).scalar_one()
    assert row.address_ref == ref and len(ref) == 64


def test_address_refs_are_site_scoped(client, site, other_site):
    assert address_ref(site["key"], "email", "a@b.test") != \
        address_ref(other_site["key"], "email", "a@b.test")
    choose(client, site, {"email.promotional": True}, address="a@b.test", channel="email")
    assert may_i_send(client, site, "email", "promotional", address="a@b.test")["allowed"] is True
    assert may_i_send(client, other_site, "email", "promotional",
               address="a@b.test")["allowed"] is False


def test_phone_numbers_normalise_to_e164(client, site):
    choose(client, site, {"sms.promotional": True}, address="+44 (20) 7946-0958",
           channel="sms")
    for spelling in ("+442079460958", "00442079460958", "442079460958"):
        assert may_i_send(client, site, "sms", "promotional", address=spelling)["allowed"] is True


def test_re_registering_an_address_keeps_its_opt_out(client, site):
    # The shop's user opted in to promotional SMS at checkout...
    choose(client, site, {"sms.promotional": True}, user_id="u-7")
    # ...then STOP arrives from a number nobody had registered yet...
    assert sms(client, site, "+15551230000", "STOP").status_code == 200
    # ...and later the shop maps that number to the user: the STOP must not be lost.
    r = client.post(f"/api/v1/sites/{site['key']}/channel-addresses",
                    json={"channel": "sms", "address": "+15551230000", "user_id": "u-7"},
                    headers=bearer(site))
    body = r.get_json()
    assert body["carried_event_id"]
    answer = may_i_send(client, site, "sms", "promotional", address="+15551230000")
    assert answer["allowed"] is False and answer["event_id"] == body["carried_event_id"]
    assert may_i_send(client, site, "sms", "promotional", user_id="u-7")["allowed"] is False


def test_a_later_opt_in_is_not_overridden_by_an_older_opt_out(client, site):
    sms(client, site, "+15551230001", "STOP")
    choose(client, site, {"sms.promotional": True}, user_id="u-8")
    r = client.post(f"/api/v1/sites/{site['key']}/channel-addresses",
                    json={"channel": "sms", "address": "+15551230001", "user_id": "u-8"},
                    headers=bearer(site))
    assert r.get_json()["carried_event_id"] is None
    assert may_i_send(client, site, "sms", "promotional", address="+15551230001")["allowed"] is True


# ---------------------------------------------------------------- SMS STOP / START


@pytest.mark.parametrize("body", ["STOP", "stop", "  Stop \n", "QUIT", "end", "Revoke",
                                  "OPT OUT", "opt  out", "Cancel", "UNSUBSCRIBE", "\tunsubscribe"])
def test_stop_variants_opt_out_of_promotional_sms(client, site, body):
    number = "+15557654321"
    choose(client, site, {"sms.promotional": True}, address=number, channel="sms")
    assert may_i_send(client, site, "sms", "promotional", address=number)["allowed"] is True
    r = sms(client, site, number, body)
    assert r.status_code == 200
    assert r.get_json()["result"] == "opted_out"
    answer = may_i_send(client, site, "sms", "promotional", address=number)
    assert answer["allowed"] is False and answer["event_id"] == r.get_json()["event_id"]
    ev = events("unsubscribe")[-1]
    assert ev.source == "sms" and ev.channels == {"sms.promotional": False}


def enable_sms_opt_in(site):
    def write():
        s = get_site(site["key"])
        s.settings = {**s.settings, "sms_keywords": {"opt_in": True}}
    run_write(write)
    invalidate_site_cache()


def test_start_is_ignored_unless_the_site_enables_opt_in_by_sms(client, site):
    number = "+15557654320"
    sms(client, site, number, "STOP")
    r = sms(client, site, number, "START")
    assert r.status_code == 200 and r.get_json()["result"] == "ignored"
    assert may_i_send(client, site, "sms", "promotional", address=number)["allowed"] is False


def test_start_turns_promotional_sms_back_on(client, site):
    enable_sms_opt_in(site)
    number = "+15557654322"
    sms(client, site, number, "STOP")
    r = sms(client, site, number, " start ")
    assert r.get_json()["result"] == "opted_in"
    assert may_i_send(client, site, "sms", "promotional", address=number)["allowed"] is True
    assert [(e.action, e.source) for e in events()] == [("unsubscribe", "sms"),
                                                        ("resubscribe", "sms")]


@pytest.mark.parametrize("body", ["STOPPING", "please stop", "stop it", "", "yes", "STARTED"])
def test_other_texts_change_nothing(client, site, body):
    r = sms(client, site, "+15557654323", body)
    assert r.status_code == 200 and r.get_json() == {
        "result": "ignored", "channel": "sms.promotional", "event_id": None}
    assert count_events() == 0


def test_stop_webhook_accepts_json_and_gateway_retries_are_one_event(client, site):
    url = f"/api/v1/sites/{site['key']}/sms/inbound"
    body = {"from": "15550001111", "body": "STOP", "message_id": "SM123"}
    first = client.post(url, json=body, headers=bearer(site))
    retry = client.post(url, json=body, headers=bearer(site))
    assert first.status_code == retry.status_code == 200
    assert first.get_json()["event_id"] == retry.get_json()["event_id"]
    assert len(events("unsubscribe")) == 1


def test_stop_webhook_needs_the_sites_api_key(client, site, other_site):
    url = f"/api/v1/sites/{site['key']}/sms/inbound"
    data = {"From": "+15550002222", "Body": "STOP"}
    assert client.post(url, data=data).status_code == 401
    r = client.post(url, data=data, headers=bearer(other_site))
    assert r.status_code == 403 and r.mimetype == PROBLEM
    assert count_events() == 0


def test_stop_from_a_malformed_number_is_refused(client, site):
    r = sms(client, site, "not-a-number", "STOP")
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert r.get_json()["errors"][0]["pointer"] == "#/from"
    assert count_events() == 0


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("body, pointer", [
    ({"channel": "fax", "kind": "promotional", "subject": "x" * 22}, "#/channel"),
    ({"channel": "email", "kind": "marketing", "subject": "x" * 22}, "#/kind"),
    ({"channel": "email", "kind": "service", "subject": "x" * 22}, "#/kind"),
    ({"channel": "email", "kind": "promotional"}, "#/subject"),
    ({"channel": "email", "kind": "promotional", "subject": "x" * 22, "user_id": "u"},
     "#/user_id"),
    ({"channel": "email", "kind": "promotional", "address": "not an address"}, "#/address"),
    ({"channel": "email", "kind": "promotional", "address": "a@b.test", "extra": 1},
     "#/extra"),
])
def test_bad_questions_are_clear_problems(client, site, body, pointer):
    r = client.post(f"/api/v1/sites/{site['key']}/may-i-send", json=body, headers=bearer(site))
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert pointer in [e["pointer"] for e in r.get_json()["errors"]]


def test_an_address_chooses_only_its_own_channels(client, site):
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                    json={"address": "+15550001234", "channel": "sms",
                          "channels": {"email.promotional": True}}, headers=bearer(site))
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["pointer"] == "#/channels"
    assert count_events() == 0


def test_transactional_cannot_be_turned_off_through_the_api(client, site):
    subject = visitor(client, site)
    before = count_events()
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                    json={"subject": subject, "channels": {"email.transactional": False}},
                    headers=bearer(site))
    assert r.status_code == 422
    assert "always on" in r.get_json()["detail"]
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                    json={"subject": subject, "channels": {"email.promotional": "no"}},
                    headers=bearer(site))
    assert r.status_code == 422
    assert count_events() == before


def test_channel_api_needs_the_key_of_this_site(client, site, other_site):
    url = f"/api/v1/sites/{site['key']}/may-i-send"
    body = {"channel": "email", "kind": "promotional", "address": "a@b.test"}
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers=bearer(other_site)).status_code == 403
    r = client.post("/api/v1/sites/nope/may-i-send", json=body, headers=bearer(site))
    assert r.status_code == 404


# ---------------------------------------------------------------- suppression list


def test_suppression_list_csv_and_json(client, site, monkeypatch):
    enable_sms_opt_in(site)
    stop = sms(client, site, "+15559990001", "STOP").get_json()
    sms(client, site, "+15559990002", "STOP")
    sms(client, site, "+15559990002", "START")  # back in: not suppressed
    # one visitor id in 64 starts with "-", which a spreadsheet would run: this one does
    monkeypatch.setattr(subjects, "new_public_id", lambda: "-" + secrets.token_urlsafe(16)[1:])
    subject = visitor(client, site)
    monkeypatch.undo()
    assert subject.startswith("-")
    choose(client, site, {"sms.promotional": False}, subject=subject)  # no number known
    choose(client, site, {"email.promotional": False}, address="x@y.test", channel="email")

    r = client.get(f"/api/v1/sites/{site['key']}/suppressions?channel=sms&format=csv",
                   headers=bearer(site))
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.is_streamed
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert {row["address_ref"] for row in rows} == {
        address_ref(site["key"], "sms", "+15559990001"), ""}
    # written with the spreadsheet mark, which the documented unescape takes off
    assert "'" + subject in {row["subject"] for row in rows}
    assert subject in {unescape_cell(row["subject"]) for row in rows}
    assert all(row["since"].endswith("Z") for row in rows)

    r = client.get(f"/api/v1/sites/{site['key']}/suppressions?channel=sms",
                   headers=bearer(site))
    body = r.get_json()
    assert body["channel"] == "sms.promotional" and len(body["suppressions"]) == 2
    r = client.get(f"/api/v1/sites/{site['key']}/suppressions?channel=email",
                   headers=bearer(site))
    assert [s["address_ref"] for s in r.get_json()["suppressions"]] == [
        address_ref(site["key"], "email", "x@y.test")]
    assert stop["event_id"]


def test_suppression_list_is_per_channel_kind(client, site):
    subject = visitor(client, site)
    choose(client, site, {"push.promotional": False, "push.service": True}, subject=subject)
    promo = client.get(f"/api/v1/sites/{site['key']}/suppressions?channel=push",
                       headers=bearer(site)).get_json()
    service = client.get(f"/api/v1/sites/{site['key']}/suppressions?channel=push&kind=service",
                         headers=bearer(site)).get_json()
    assert [s["subject"] for s in promo["suppressions"]] == [subject]
    assert service["suppressions"] == []


def test_suppression_list_bad_input(client, site, other_site):
    base = f"/api/v1/sites/{site['key']}/suppressions"
    for query in ("?channel=fax", "?channel=email&kind=transactional", "?channel=email&format=xml",
                  "", "?channel=email&kind=service"):
        r = client.get(base + query, headers=bearer(site))
        assert r.status_code == 422 and r.mimetype == PROBLEM, query
    assert client.get(base + "?channel=email").status_code == 401
    assert client.get(base + "?channel=email", headers=bearer(other_site)).status_code == 403


def test_suppression_list_is_streamed_in_pieces(client, site):
    def write():
        from consent.channels import subject_for_address
        from consent.ledger import append_event
        from consent.sites import site_snapshot

        snap = site_snapshot(site["key"])
        for i in range(1200):
            ref = address_ref(snap.key, "email", f"person{i}@bulk.test")
            subject = subject_for_address(snap, "email", ref)
            append_event(snap, subject, action="unsubscribe", source="api",
                         channels={"email.promotional": False})
    run_write(write)
    r = client.get(f"/api/v1/sites/{site['key']}/suppressions?channel=email&format=csv",
                   headers=bearer(site))
    chunks = list(r.response)
    assert len(chunks) >= 3  # rows are written in batches, not built as one string
    lines = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks).splitlines()
    assert len(lines) == 1201
    r = client.get(f"/api/v1/sites/{site['key']}/suppressions?channel=email",
                   headers=bearer(site))
    assert len(r.get_json()["suppressions"]) == 1200


# ---------------------------------------------------------------- erasure


def test_erasure_forgets_the_address_refs(client, site):
    sms(client, site, "+15550003333", "STOP")
    assert db.session.execute(sa.select(sa.func.count()).select_from(ChannelAddress)).scalar() == 1

    def write():
        from consent.channels import subject_for_ref
        from consent.ledger import append_event
        from consent.sites import site_snapshot

        snap = site_snapshot(site["key"])
        subject = subject_for_ref(snap.id, "sms", address_ref(snap.key, "sms", "+15550003333"))
        append_event(snap, subject, action="erase", source="admin")
    run_write(write)
    assert db.session.execute(sa.select(sa.func.count()).select_from(ChannelAddress)).scalar() == 0


@pytest.mark.parametrize("body", ["null", "[]", "\"STOP\"", "7"])
def test_sms_inbound_that_is_not_an_object_is_a_422(client, site, body):
    r = client.post(f"/api/v1/sites/{site['key']}/sms/inbound", data=body,
                    content_type="application/json", headers=bearer(site))
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert count_events() == 0
