"""Opt-outs outlive erasure (issue 20, finding 1): suppression records keyed by hash."""
from __future__ import annotations

import sqlalchemy as sa

from consent.channels import address_ref
from consent.database import run_write
from consent.extensions import db
from consent.ledger import ConsentEvent, verify_ledger
from consent.sites import get_site, invalidate_site_cache
from consent.subjects import keyed_ref
from tests.support.admin import make_token
from tests.support.api import bearer, decide, device, may_i_send

EMAIL = "Olive.Optout@example.org"
PHONE = "+15550104242"
USER = "cust-olive"


def opt_out_model(site_key: str) -> None:
    """Promotional e-mail and SMS allowed until the person opts out (000, 002, 003)."""
    def write():
        site = get_site(site_key)
        site.settings = {**(site.settings or {}), "channel_defaults": {
            "email.promotional": True, "sms.promotional": True, "push.promotional": True}}
    run_write(write)
    invalidate_site_cache()


def erase_user(client, site_key: str, user_id: str) -> dict:
    token = make_token(["requests:write"])
    r = client.post(f"/api/v1/audit/sites/{site_key}/requests",
                    json={"kind": "erasure", "user_id": user_id}, headers=bearer(token))
    assert r.status_code == 201, r.get_data(as_text=True)
    r = client.post(f"/api/v1/audit/sites/{site_key}/requests/{r.get_json()['id']}/erase",
                    headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def opted_out_person(client, site) -> None:
    """USER opts out of promotional e-mail (one-click link) and SMS (STOP)."""
    key = site["key"]
    for channel, address in (("email", EMAIL), ("sms", PHONE)):
        r = client.post(f"/api/v1/sites/{key}/channel-addresses",
                        json={"channel": channel, "address": address, "user_id": USER},
                        headers=bearer(site))
        assert r.status_code == 200, r.get_data(as_text=True)
    link = client.post(f"/api/v1/sites/{key}/unsubscribe-links",
                       json={"channel": "email", "kind": "promotional", "address": EMAIL,
                             "user_id": USER}, headers=bearer(site)).get_json()
    path = link["url"].split("://", 1)[1].split("/", 1)[1]
    r = client.post("/" + path, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    r = client.post(f"/api/v1/sites/{key}/sms/inbound", data={"From": PHONE, "Body": "STOP"},
                    headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)


def test_opt_outs_outlive_erasure_by_address_and_by_user_id(app, client, site):
    opt_out_model(site["key"])
    opted_out_person(client, site)
    for who in ({"address": EMAIL}, {"user_id": USER}):
        assert may_i_send(client, site, "email", **who)["reason"] == "opted_out"

    result = erase_user(client, site["key"], USER)

    assert result["result"]["suppressions_kept"] == ["email.promotional", "sms.promotional"]
    assert "suppression records" in result["result"]["suppression_note"]
    for channel, who in (("email", {"address": EMAIL}), ("email", {"user_id": USER}),
                         ("email", {"address": EMAIL.upper()}),
                         ("sms", {"address": PHONE}), ("sms", {"user_id": USER})):
        answer = may_i_send(client, site, channel, **who)
        assert (answer["allowed"], answer["reason"]) == (False, "suppressed"), (channel, who)
        assert answer["decided_at"]  # since when: the time of the opt-out
    # What the person never opted out of follows the site's default again.
    assert may_i_send(client, site, "push", address="device-token-123")["allowed"] is True
    assert may_i_send(client, site, "email", "transactional", address=EMAIL)["allowed"]
    # Senders that sync the suppression list keep the address on it.
    listed = client.get(f"/api/v1/sites/{site['key']}/suppressions?channel=email",
                        headers=bearer(site)).get_json()["suppressions"]
    assert listed == [{"subject": None, "address_ref": address_ref(site["key"], "email", EMAIL),
                       "since": listed[0]["since"]}]
    # The ledger's erase event says which opt-outs were kept; the ledger still verifies.
    erase = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.action == "erase")).scalar_one()
    assert erase.meta["suppressed"] == ["email.promotional", "sms.promotional"]
    assert verify_ledger().ok


def test_a_suppression_record_holds_a_keyed_hash_and_nothing_else(app, client, site):
    opt_out_model(site["key"])
    opted_out_person(client, site)
    erase_user(client, site["key"], USER)
    rows = db.session.execute(sa.text(
        "SELECT ref_kind, ref, channel FROM suppression_records ORDER BY id")).all()
    refs = {(kind, channel): ref for kind, ref, channel in rows}
    assert set(refs) == {("email", "email.promotional"), ("user", "email.promotional"),
                         ("sms", "sms.promotional"), ("user", "sms.promotional")}
    assert refs[("user", "email.promotional")] == keyed_ref(site["key"], "user", USER)
    columns = [c["name"] for c in sa.inspect(db.engine).get_columns("suppression_records")]
    assert sorted(columns) == ["channel", "id", "kept_at", "opted_out_at", "ref", "ref_kind",
                               "site_id"]
    # An insider with the database alone cannot read an address or id out of it.
    dump = " ".join(str(v) for row in db.session.execute(sa.text(
        "SELECT * FROM suppression_records")).all() for v in row)
    for value in (EMAIL.lower(), PHONE, USER, "olive"):
        assert value not in dump.lower()


def test_a_new_opt_in_after_erasure_wins_over_the_kept_opt_out(app, client, site):
    opt_out_model(site["key"])
    opted_out_person(client, site)
    erase_user(client, site["key"], USER)
    # The person comes back and subscribes again from the same address.
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                    json={"channel": "email", "address": EMAIL,
                          "channels": {"email.promotional": True}}, headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)
    answer = may_i_send(client, site, "email", address=EMAIL)
    assert (answer["allowed"], answer["reason"]) == (True, "opted_in")
    listed = client.get(f"/api/v1/sites/{site['key']}/suppressions?channel=email",
                        headers=bearer(site)).get_json()["suppressions"]
    assert listed == []
    # SMS, not re-subscribed, stays suppressed.
    assert may_i_send(client, site, "sms", address=PHONE)["reason"] == "suppressed"


def test_a_new_account_of_an_erased_user_starts_unsubscribed(app, client, site):
    opt_out_model(site["key"])
    opted_out_person(client, site)
    erase_user(client, site["key"], USER)
    # The person signs up again: the site links a new visitor to the same user id. The
    # new account has no channel choice of its own, so the kept opt-out still decides.
    visitor = decide(client, site["key"], "reject_all", origin=site["origin"])["subject"]
    link = client.post(f"/api/v1/sites/{site['key']}/identity-links",
                       json={"user_id": USER, **device(visitor)}, headers=bearer(site))
    assert link.status_code == 200, link.get_data(as_text=True)
    subject = link.get_json()["subject"]
    assert may_i_send(client, site, "email", subject=subject)["reason"] == "suppressed"
    assert may_i_send(client, site, "email", user_id=USER)["reason"] == "suppressed"


def test_erasing_someone_who_never_opted_out_keeps_nothing(app, client, site):
    opt_out_model(site["key"])
    r = client.post(f"/api/v1/sites/{site['key']}/channel-addresses",
                    json={"channel": "email", "address": EMAIL, "user_id": USER},
                    headers=bearer(site))
    assert r.status_code == 200
    result = erase_user(client, site["key"], USER)
    assert result["result"]["suppressions_kept"] == []
    assert db.session.execute(sa.text("SELECT count(*) FROM suppression_records")).scalar() == 0
    assert may_i_send(client, site, "email", address=EMAIL)["reason"] == "default_allowed"
