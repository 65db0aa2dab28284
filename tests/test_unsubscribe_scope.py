"""Scope of an unsubscribe per site (issue 20, finding 7): where the policy speaks of
"promotional communications" as one thing (000), one unsubscribe stops them all."""
from __future__ import annotations

from consent.database import run_write
from consent.sites import get_site, invalidate_site_cache
from tests.support.api import bearer, may_i_send


def settings(site_key: str, **values) -> None:
    def write():
        site = get_site(site_key)
        site.settings = {**(site.settings or {}), **values}
    run_write(write)
    invalidate_site_cache()


def setup(client, site):
    settings(site["key"], channel_defaults={"email.promotional": True,
                                            "sms.promotional": True,
                                            "push.promotional": True})
    for channel, address in (("email", "pat@example.org"), ("sms", "+15550107777")):
        r = client.post(f"/api/v1/sites/{site['key']}/channel-addresses",
                        json={"channel": channel, "address": address, "user_id": "pat"},
                        headers=bearer(site))
        assert r.status_code == 200


def one_click(client, site, address):
    link = client.post(f"/api/v1/sites/{site['key']}/unsubscribe-links",
                       json={"channel": "email", "address": address, "user_id": "pat"},
                       headers=bearer(site)).get_json()
    path = "/" + link["url"].split("://", 1)[1].split("/", 1)[1]
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_by_default_an_unsubscribe_stops_only_its_own_channel(client, site):
    setup(client, site)
    one_click(client, site, "pat@example.org")
    assert may_i_send(client, site, "email", user_id="pat")["allowed"] is False
    assert may_i_send(client, site, "sms", user_id="pat")["allowed"] is True
    assert may_i_send(client, site, "push", user_id="pat")["allowed"] is True


def test_all_promotional_scope_stops_every_promotional_channel(client, site):
    setup(client, site)
    settings(site["key"], unsubscribe_scope="all_promotional")
    one_click(client, site, "pat@example.org")
    for medium in ("email", "sms", "push"):
        answer = may_i_send(client, site, medium, user_id="pat")
        assert (answer["allowed"], answer["reason"]) == (False, "opted_out"), medium
        assert may_i_send(client, site, medium, "transactional", user_id="pat")["allowed"]


def test_all_promotional_scope_applies_to_stop_but_start_only_to_sms(client, site):
    setup(client, site)
    # START re-subscribes only where the site turned opt-in words on
    settings(site["key"], unsubscribe_scope="all_promotional", sms_keywords={"opt_in": True})
    sms = f"/api/v1/sites/{site['key']}/sms/inbound"
    assert client.post(sms, data={"From": "+15550107777", "Body": "STOP"},
                       headers=bearer(site)).status_code == 200
    assert may_i_send(client, site, "email", user_id="pat")["allowed"] is False
    assert client.post(sms, data={"From": "+15550107777", "Body": "START"},
                       headers=bearer(site)).status_code == 200
    assert may_i_send(client, site, "sms", user_id="pat")["allowed"] is True
    assert may_i_send(client, site, "email", user_id="pat")["allowed"] is False
