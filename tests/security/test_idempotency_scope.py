"""Issue 13, finding 3: idempotency keys belong to one person (and one SMS sender).

Replaying somebody else's `client_event_id` must not answer with their event, and an SMS
STOP whose gateway message id was already used by another number must still opt that
number out. The API reports what was actually recorded.
"""
from __future__ import annotations

from consent.database import run_write
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.sites import get_site, invalidate_site_cache

ORIGIN = "https://shop.example"


def decide(client, site, body):
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", json=body,
                    headers={"Origin": ORIGIN})
    assert r.status_code in (200, 201), r.get_data(as_text=True)
    return r


def sms(client, site, sender, body, message_id):
    return client.post(f"/api/v1/sites/{site['key']}/sms/inbound",
                       json={"from": sender, "body": body, "message_id": message_id},
                       headers={"Authorization": f"Bearer {site['api_key']}"})


def enable_sms_opt_in(site):
    # START re-subscribes only where the operator enables opt-in by SMS (issue 15).
    def write():
        s = get_site(site["key"])
        s.settings = {**s.settings, "sms_keywords": {"opt_in": True}}
    run_write(write)
    invalidate_site_cache()


def may_i_send(client, site, phone):
    r = client.post(f"/api/v1/sites/{site['key']}/may-i-send",
                    json={"channel": "sms", "kind": "promotional", "address": phone},
                    headers={"Authorization": f"Bearer {site['api_key']}"})
    assert r.status_code == 200, r.get_data(as_text=True)
    return "yes" if r.get_json()["allowed"] else "no"


def test_replaying_another_visitors_key_does_not_answer_with_their_event(client, site):
    victim = decide(client, site, {"action": "accept_all",
                                   "client_event_id": "shared-key-0001"})
    assert victim.status_code == 201
    own = decide(client, site, {"action": "reject_all"}).get_json()  # the attacker's visitor
    attacker = decide(client, site, {"action": "reject_all", "subject": own["subject"],
                                     "key": own["key"], "client_event_id": "shared-key-0001"})
    body = attacker.get_json()
    # The attacker's own decision is recorded; nothing of the victim's comes back.
    assert attacker.status_code == 201 and body["duplicate"] is False
    assert body["event_id"] != victim.get_json()["event_id"]
    assert body["subject"] == own["subject"] != victim.get_json()["subject"]
    assert body["consent"]["categories"]["advertising"] is False
    assert db.session.execute(db.select(db.func.count()).select_from(ConsentEvent)
                              ).scalar() == 3


def test_the_same_visitor_replaying_its_key_gets_its_own_first_event(client, site):
    first = decide(client, site, {"action": "accept_all", "client_event_id": "retry-key-0001"})
    retry = decide(client, site, {"action": "accept_all", "subject": first.get_json()["subject"],
                                  "key": first.get_json()["key"],
                                  "client_event_id": "retry-key-0001"})
    assert retry.status_code == 200 and retry.get_json()["duplicate"] is True
    assert retry.get_json()["event_id"] == first.get_json()["event_id"]


def test_stop_with_a_message_id_another_number_used_still_opts_out(client, site):
    enable_sms_opt_in(site)
    first = sms(client, site, "+15550001111", "START", "SM-shared-1")
    assert first.status_code == 200 and first.get_json()["result"] == "opted_in"
    assert sms(client, site, "+15550002222", "START", "SM-own-2").status_code == 200
    assert may_i_send(client, site, "+15550002222") == "yes"
    r = sms(client, site, "+15550002222", "STOP", "SM-shared-1")
    assert r.status_code == 200 and r.get_json()["result"] == "opted_out"
    assert r.get_json()["event_id"] not in (None, first.get_json()["event_id"])
    assert may_i_send(client, site, "+15550002222") == "no"
    assert may_i_send(client, site, "+15550001111") == "yes"


def test_a_replayed_message_id_reports_what_was_recorded(client, site):
    enable_sms_opt_in(site)
    first = sms(client, site, "+15550003333", "STOP", "SM-replay-1")
    assert first.get_json()["result"] == "opted_out"
    # Same sender, same gateway message id, different text: nothing new is recorded,
    # and the answer says what the recorded message did.
    replay = sms(client, site, "+15550003333", "START", "SM-replay-1")
    assert replay.status_code == 200
    assert replay.get_json()["result"] == "opted_out"
    assert replay.get_json()["event_id"] == first.get_json()["event_id"]
    assert may_i_send(client, site, "+15550003333") == "no"
