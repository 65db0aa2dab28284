"""The admin's "Messages and GPC" settings (an outside review: these were settable only
by a profile or by hand-written JSON): what GPC turns off, the message defaults, the
scope of an unsubscribe and the SMS reply words, each checked through the surface that
acts on it (the widget API, may-i-send, a gateway's inbound SMS, a one-click
unsubscribe)."""
from __future__ import annotations

import re
from html import unescape

from consent.extensions import db
from consent.site_history import list_changes
from consent.sites import get_site
from tests.support.admin import field_error, post_form
from tests.support.api import bearer, may_i_send
from tests.test_sms_gateways import path_of, register, twilio_form

PAGE = "/admin/sites/{key}/settings/messages"
SAVE = "/admin/sites/{key}/settings/messages"

EVERYTHING = {"gpc_categories": ["analytics", "advertising"], "email_promotional": "on",
              "sms_promotional": "on", "unsubscribe_scope": "all_promotional",
              "sms_stop": "NO MORE\nenough", "sms_start": "MORE", "sms_opt_in": "on"}


def save(admin, site, form: dict):
    key = site["key"]
    return post_form(admin, SAVE.format(key=key), form, page=PAGE.format(key=key))


def test_the_page_shows_what_applies_before_anything_is_set(site, admin):
    html = admin.get(PAGE.format(key=site["key"])).get_data(as_text=True)
    checked = set(re.findall(r'name="gpc_categories" value="(\w+)" checked', html))
    assert checked == {"advertising"}  # the default GPC opts out of
    assert 'name="essential"' not in html and 'value="essential"' not in html
    for name in ("email_promotional", "sms_promotional", "push_promotional", "push_service",
                 "sms_opt_in"):
        assert re.search(rf'name="{name}">', html), name  # there, unchecked
    assert '<option value="channel" selected>' in html


def test_saved_settings_are_what_the_api_the_gateway_and_unsubscribe_do(client, site, admin):
    key = site["key"]
    r = save(admin, site, EVERYTHING)
    assert r.status_code == 302, r.get_data(as_text=True)[:3000]
    stored = get_site(key).settings
    assert stored["gpc_categories"] == ["analytics", "advertising"]
    assert stored["channel_defaults"] == {"email.promotional": True, "sms.promotional": True,
                                          "push.promotional": False, "push.service": False}
    assert stored["unsubscribe_scope"] == "all_promotional"
    assert stored["sms_keywords"] == {"stop": ["NO MORE", "enough"], "start": ["MORE"],
                                      "opt_in": True}
    [change] = [c for c in list_changes(get_site(key).id) if c.kind == "settings:messages"]
    assert "SMS reply words" in change.summary and change.actor.startswith("user:")
    # the form shows what was saved
    html = unescape(admin.get(PAGE.format(key=key)).get_data(as_text=True))
    assert set(re.findall(r'name="gpc_categories" value="(\w+)" checked', html)) == {
        "analytics", "advertising"}
    assert ">NO MORE\nenough</textarea>" in html and 'name="sms_opt_in" checked' in html

    # GPC: the widget's configuration and a decision sent with Sec-GPC
    config = client.get(f"/api/v1/sites/{key}/config").get_json()
    assert sorted(config["gpc"]["categories"]) == ["advertising", "analytics"]
    r = client.post(f"/api/v1/sites/{key}/decisions", json={"action": "accept_all"},
                    headers={"Sec-GPC": "1"})
    categories = r.get_json()["consent"]["categories"]
    assert categories["analytics"] is False and categories["advertising"] is False
    assert categories["functional"] is True

    # message defaults: a person who never chose may get offers by e-mail, not by push
    assert may_i_send(client, site, "email", address="new@example.org")["allowed"] is True
    assert may_i_send(client, site, "push", user_id="nobody-yet")["allowed"] is False

    # the site's own SMS words, as a gateway (Twilio's documented webhook) delivers them
    gateway = register(client, site, "twilio")
    inbound = path_of(gateway["inbound_url"])
    number = "+15551239001"
    assert may_i_send(client, site, "sms", address=number)["allowed"] is True  # default on
    r = client.post(inbound, data=twilio_form(number, "no more", sid="SMa"))
    assert r.headers["X-Consent-Result"] == "opted_out"
    assert may_i_send(client, site, "sms", address=number)["allowed"] is False
    r = client.post(inbound, data=twilio_form(number, "More", sid="SMb"))
    assert r.headers["X-Consent-Result"] == "opted_in"
    assert may_i_send(client, site, "sms", address=number)["allowed"] is True

    # the scope: one e-mail unsubscribe stops every promotional channel of the person
    for channel, address in (("email", "pat@example.org"), ("sms", "+15550107777")):
        r = client.post(f"/api/v1/sites/{key}/channel-addresses",
                        json={"channel": channel, "address": address, "user_id": "pat"},
                        headers=bearer(site))
        assert r.status_code == 200
    link = client.post(f"/api/v1/sites/{key}/unsubscribe-links",
                       json={"channel": "email", "address": "pat@example.org",
                             "user_id": "pat"}, headers=bearer(site)).get_json()
    path = "/" + link["url"].split("://", 1)[1].split("/", 1)[1]
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    for medium in ("email", "sms"):
        assert may_i_send(client, site, medium, user_id="pat")["allowed"] is False, medium

    # and back to the defaults: nothing left behind in the settings
    r = save(admin, site, {"gpc_categories": ["advertising"], "unsubscribe_scope": "channel"})
    assert r.status_code == 302
    db.session.expire_all()
    stored = get_site(key).settings
    assert "unsubscribe_scope" not in stored and "sms_keywords" not in stored
    assert not any(stored["channel_defaults"].values())


def test_bad_input_is_refused_by_its_field_and_changes_nothing(site, admin):
    key = site["key"]
    assert save(admin, site, EVERYTHING).status_code == 302
    before = dict(get_site(key).settings)
    for form, field, said in (
            ({"gpc_categories": []}, "gpc_categories", "at least one category"),
            ({"gpc_categories": ["essential"]}, "gpc_categories", "'essential'"),
            ({"gpc_categories": ["nosuch"]}, "gpc_categories", "'nosuch'"),
            ({"unsubscribe_scope": "everything"}, "unsubscribe_scope", "all_promotional"),
            ({"sms_stop": "x" * 200}, "sms_stop", "characters"),
            ({"sms_start": "\n".join(f"w{i}" for i in range(200))}, "sms_start", "up to")):
        r = save(admin, site, {**EVERYTHING, **form})
        assert r.status_code == 422, form
        html = r.get_data(as_text=True)
        error = field_error(html, field)
        assert error and said in error, (form, error)
        if field == "sms_stop":
            assert "x" * 200 + "</textarea>" in html  # what was typed, kept
        db.session.expire_all()
        assert get_site(key).settings == before, form


def test_a_reader_sees_the_settings_but_cannot_save_them(app, site):
    from tests.support.admin import admin_client

    reader = admin_client(app, ("audit:read",), "reader@example.com")
    html = reader.get(PAGE.format(key=site["key"])).get_data(as_text=True)
    assert "Messages and GPC" in html and "Save messages and gpc" not in html
    r = post_form(reader, SAVE.format(key=site["key"]), EVERYTHING,
                  page=PAGE.format(key=site["key"]))
    assert r.status_code == 403
    db.session.expire_all()
    assert "sms_keywords" not in get_site(site["key"]).settings
