"""SMS gateways from the admin (an outside review: only the API and the CLI registered
them): register one with its signing secret, get the inbound URL once, and a STOP that
the gateway signs with its own library opts the number out; remove it after a
confirmation, and the URL is refused."""
from __future__ import annotations

import re
from html import unescape

from tests.support.admin import field_error, post_form
from tests.test_sms_gateways import (TWILIO_TOKEN, may_send, opt_in, path_of, twilio_form,
                                     twilio_post)

PAGE = "/admin/sites/shop/settings/sms"
REGISTER = "/admin/sites/shop/sms-gateways"


def test_register_use_and_remove_a_gateway_from_the_admin(client, site, admin):
    html = admin.get(PAGE).get_data(as_text=True)
    assert "No SMS gateway yet." in html
    r = post_form(admin, REGISTER, {"provider": "twilio", "signing_secret": TWILIO_TOKEN},
                  page=PAGE)
    assert r.status_code == 200, r.get_data(as_text=True)[:2000]
    shown = unescape(r.get_data(as_text=True))
    url = re.search(r'<code class="secret" id="secret">([^<]+)</code>', shown).group(1)
    assert re.fullmatch(r"http://localhost/api/v1/sites/shop/sms/twilio/[\w-]{20,}", url)
    assert TWILIO_TOKEN not in shown  # the secret typed is never shown back
    listed = admin.get(PAGE).get_data(as_text=True)
    assert "<td>twilio</td><td>yes</td>" in listed and url not in listed

    # Twilio signs the request with its own library: the number is opted out
    opt_in(client, site, "+15551239101")
    r = twilio_post(client, url, twilio_form("+15551239101", "STOP"))
    assert r.headers["X-Consent-Result"] == "opted_out"
    assert not may_send(client, site, "+15551239101")
    # and an unsigned request to the same URL is refused
    assert client.post(path_of(url), data=twilio_form("+15551239101", "STOP")).status_code \
        == 403

    # removing it takes a confirmation; then the URL is refused
    confirm = admin.get("/admin/sites/shop/sms-gateways/twilio/remove")
    assert "Remove the twilio gateway?" in confirm.get_data(as_text=True)
    r = post_form(admin, "/admin/sites/shop/sms-gateways/twilio/remove", {},
                  page="/admin/sites/shop/sms-gateways/twilio/remove")
    assert r.status_code == 422  # not confirmed
    r = post_form(admin, "/admin/sites/shop/sms-gateways/twilio/remove", {"confirm": "yes"},
                  page="/admin/sites/shop/sms-gateways/twilio/remove")
    assert r.status_code == 302
    assert "No SMS gateway yet." in admin.get(PAGE).get_data(as_text=True)
    r = twilio_post(client, url, twilio_form("+15551239102", "STOP", sid="SMz"))
    assert r.status_code in (401, 403, 404) and "X-Consent-Result" not in r.headers
    assert admin.get("/admin/sites/shop/sms-gateways/twilio/remove").status_code == 404


def test_bad_registrations_are_refused_by_their_field(site, admin):
    for form, field, said in (
            ({"provider": "sinch"}, "provider", "unknown SMS gateway 'sinch'"),
            ({"provider": "twilio", "signing_secret": "short"}, "signing_secret",
             "8-256 characters"),
            ({"provider": "vonage", "signature_method": "sha256"}, "signing_secret",
             "needs the signature secret"),
            ({"provider": "vonage", "signing_secret": "s" * 20, "signature_method": "crc32"},
             "signature_method", "unknown Vonage signature method")):
        r = post_form(admin, REGISTER, form, page=PAGE)
        assert r.status_code == 422, form
        html = unescape(r.get_data(as_text=True))
        error = field_error(html, field)
        assert error and said in error, (form, error)
        assert "No SMS gateway yet." in html


def test_a_reader_sees_the_gateways_but_cannot_register_or_remove(app, site, admin):
    from tests.support.admin import admin_client

    post_form(admin, REGISTER, {"provider": "plivo"}, page=PAGE)
    reader = admin_client(app, ("audit:read",), "reader@example.com")
    html = reader.get(PAGE).get_data(as_text=True)
    assert "<td>plivo</td><td>no: the URL's token alone</td>" in unescape(html)
    assert "Register the gateway" not in html and "Remove…" not in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert reader.post(REGISTER, data={"provider": "twilio", "csrf_token": token}
                       ).status_code == 403
    assert reader.post("/admin/sites/shop/sms-gateways/plivo/remove",
                       data={"confirm": "yes", "csrf_token": token}).status_code == 403
    assert "<td>plivo</td>" in admin.get(PAGE).get_data(as_text=True)
