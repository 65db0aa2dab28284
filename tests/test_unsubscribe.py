"""RFC 8058 one-click unsubscribe: minting, the cookie-less POST, the GET page, bad tokens."""
from __future__ import annotations

import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from consent.channels import _unsubscribe_serializer, address_ref
from consent.database import run_write
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.sites import get_site, invalidate_site_cache
from tests.support.api import PROBLEM, bearer, may_i_send
from tests.support.db import count_events

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def mint(client, site, address="reader@example.test", channel="email", **extra):
    r = client.post(f"/api/v1/sites/{site['key']}/unsubscribe-links",
                    json={"channel": channel, "address": address, **extra}, headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def opt_in(client, site, channels, **recipient):
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                    json={"channels": channels, **recipient}, headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)


def allowed(client, site, channel, kind, **recipient) -> bool:
    return may_i_send(client, site, channel, kind, **recipient)["allowed"]


def path_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def test_minted_link_has_the_list_unsubscribe_headers(client, site):
    body = mint(client, site)
    url = body["url"]
    assert url.startswith("http://localhost/unsubscribe/shop/")
    assert body["headers"] == {"List-Unsubscribe": f"<{url}>",
                               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert body["channel"] == "email.promotional"
    assert body["address_ref"] == address_ref(site["key"], "email", "reader@example.test")
    assert "reader" not in url and "example.test" not in url


def test_public_base_url_setting_is_used_for_links(client, site):
    def write():
        s = get_site(site["key"])
        s.settings = {**s.settings, "public_base_url": "https://consent.shop.example/"}
    run_write(write)
    invalidate_site_cache()
    assert mint(client, site)["url"].startswith("https://consent.shop.example/unsubscribe/shop/")


def test_one_click_post_without_cookies_opts_out_with_2xx_and_no_redirect(app, site):
    client = app.test_client(use_cookies=False)
    opt_in(client, site, {"email.promotional": True}, address="reader@example.test",
           channel="email")
    assert allowed(client, site, "email", "promotional", address="reader@example.test")
    url = path_of(mint(client, site)["url"])
    r = client.post(url, data=ONE_CLICK)
    assert 200 <= r.status_code < 300
    assert "Location" not in r.headers and "Set-Cookie" not in r.headers
    assert r.headers["Cache-Control"] == "no-store"
    assert not allowed(client, site, "email", "promotional", address="reader@example.test")
    ev = db.session.execute(db.select(ConsentEvent).order_by(ConsentEvent.id.desc())).scalars().first()
    assert (ev.action, ev.source, ev.channels) == ("unsubscribe", "email_link",
                                                   {"email.promotional": False})
    assert ev.meta == {"via": "one-click"}
    # Providers retry: a second POST answers the same and records nothing new.
    before = count_events()
    again = client.post(url, data=ONE_CLICK)
    assert again.status_code == 200 and count_events() == before


def test_multipart_body_is_accepted_too(app, site):
    client = app.test_client(use_cookies=False)
    opt_in(client, site, {"email.promotional": True}, address="reader@example.test",
           channel="email")
    assert allowed(client, site, "email", "promotional", address="reader@example.test")
    url = path_of(mint(client, site)["url"])
    before = count_events()
    r = client.post(url, data=ONE_CLICK, content_type="multipart/form-data")
    assert r.status_code == 200
    assert not allowed(client, site, "email", "promotional", address="reader@example.test")
    assert count_events() == before + 1


def test_get_shows_confirmation_and_changes_nothing(client, site):
    opt_in(client, site, {"email.promotional": True}, address="reader@example.test",
           channel="email")
    url = path_of(mint(client, site)["url"])
    before = count_events()
    r = client.get(url)
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert 'name="List-Unsubscribe" value="One-Click"' in html
    assert "Promotional email" in html and "Example shop" in html
    assert "Set-Cookie" not in r.headers
    assert client.head(url).status_code == 200
    assert count_events() == before
    assert allowed(client, site, "email", "promotional", address="reader@example.test")
    # The page's button confirms.
    r = client.post(url, data={**ONE_CLICK, "via": "page"})
    assert r.status_code == 200 and 'id="unsubscribed"' in r.get_data(as_text=True)
    assert not allowed(client, site, "email", "promotional", address="reader@example.test")


def test_confirmation_page_speaks_the_visitors_language(client, site):
    url = path_of(mint(client, site)["url"])
    r = client.get(url, headers={"Accept-Language": "de-DE,de;q=0.9"})
    html = r.get_data(as_text=True)
    assert '<html lang="de">' in html and "Werbe-E-Mails" in html and "Abmelden" in html


def test_post_without_the_one_click_body_is_refused(app, site):
    client = app.test_client(use_cookies=False)
    url = path_of(mint(client, site)["url"])
    for data in ({}, {"List-Unsubscribe": "yes"}):
        r = client.post(url, data=data)
        assert r.status_code == 400
    assert count_events() == 0


def test_push_promotional_opt_out_leaves_service_alerts_on(app, site):
    client = app.test_client(use_cookies=False)
    token = "fcm:" + "a" * 40
    opt_in(client, site, {"push.promotional": True, "push.service": True}, address=token,
           channel="push")
    url = path_of(mint(client, site, address=token, channel="push")["url"])
    assert client.post(url, data=ONE_CLICK).status_code == 200
    assert not allowed(client, site, "push", "promotional", address=token)
    assert allowed(client, site, "push", "service", address=token)
    ev = db.session.execute(db.select(ConsentEvent).order_by(ConsentEvent.id.desc())).scalars().first()
    assert ev.source == "push"
    # ...and the other way round.
    opt_in(client, site, {"push.promotional": True}, address=token, channel="push")
    url = path_of(mint(client, site, address=token, channel="push", kind="service")["url"])
    assert client.post(url, data=ONE_CLICK).status_code == 200
    assert allowed(client, site, "push", "promotional", address=token)
    assert not allowed(client, site, "push", "service", address=token)


def test_sms_unsubscribe_link_is_recorded_with_source_sms(app, site):
    client = app.test_client(use_cookies=False)
    url = path_of(mint(client, site, address="+15550004444", channel="sms")["url"])
    assert client.post(url, data=ONE_CLICK).status_code == 200
    ev = db.session.execute(db.select(ConsentEvent)).scalar_one()
    assert (ev.source, ev.channels) == ("sms", {"sms.promotional": False})


def test_unsubscribing_a_known_users_address_opts_the_user_out(client, site):
    opt_in(client, site, {"email.promotional": True}, user_id="user-1")
    assert allowed(client, site, "email", "promotional", user_id="user-1")
    url = path_of(mint(client, site, address="u1@example.test", user_id="user-1")["url"])
    assert client.post(url, data=ONE_CLICK).status_code == 200
    assert not allowed(client, site, "email", "promotional", user_id="user-1")


def test_pages_do_not_reveal_whether_an_address_is_known(app, site):
    client = app.test_client(use_cookies=False)
    known = path_of(mint(client, site, address="known@example.test")["url"])
    # A validly signed token for an address this server never mapped to anyone.
    unknown_token = _unsubscribe_serializer(site["key"]).dumps(
        {"c": "email.promotional", "r": address_ref(site["key"], "email", "ghost@example.test")})
    unknown = f"/unsubscribe/{site['key']}/{unknown_token}"

    def seen(response, url):  # what the page shows, the URL it posts to aside
        return response.status_code, response.get_data(as_text=True).replace(url, "URL")

    assert seen(client.get(known), known) == seen(client.get(unknown), unknown)
    assert seen(client.post(known, data=ONE_CLICK), known) == \
        seen(client.post(unknown, data=ONE_CLICK), unknown)
    # ...and the opt-out is honoured for the unknown address as well: recorded as one,
    # not merely the default refusal of an address nobody ever opted in
    answer = may_i_send(client, site, "email", "promotional", address="ghost@example.test")
    assert (answer["allowed"], answer["reason"]) == (False, "opted_out")


# ---------------------------------------------------------------- refused tokens


def _assert_refused(client, url, status):
    before = count_events()
    for response in (client.get(url), client.post(url, data=ONE_CLICK)):
        assert response.status_code == status, url
        assert "Nothing was changed" in response.get_data(as_text=True)
    r = client.post(url, data=ONE_CLICK, headers={"Accept": "application/json"})
    assert r.status_code == status and r.mimetype == PROBLEM
    assert count_events() == before


def test_tampered_tokens_are_refused(client, site):
    url = path_of(mint(client, site)["url"])
    prefix, token = url.rsplit("/", 1)
    payload, stamp, signature = token.rsplit(".", 2)
    # A middle character: the last one's low bits are base64 padding the decoder ignores.
    flipped = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    for bad in (f"{payload}.{stamp}.{flipped}", token[:-5], token + "x",
                f"{payload}x.{stamp}.{signature}", "garbage", "a.b.c"):
        _assert_refused(client, f"{prefix}/{bad}", 400)
    assert allowed(client, site, "email", "promotional", address="reader@example.test") is False


def test_a_token_cannot_be_moved_to_another_recipient(client, site):
    opt_in(client, site, {"email.promotional": True}, address="victim@example.test",
           channel="email")
    mine = path_of(mint(client, site, address="me@example.test")["url"]).rsplit("/", 1)[1]
    theirs = path_of(mint(client, site, address="victim@example.test")["url"]).rsplit("/", 1)[1]
    their_payload = theirs.rsplit(".", 2)[0]
    _, my_stamp, my_signature = mine.rsplit(".", 2)
    forged = f"{their_payload}.{my_stamp}.{my_signature}"
    _assert_refused(client, f"/unsubscribe/{site['key']}/{forged}", 400)
    assert allowed(client, site, "email", "promotional", address="victim@example.test")


def test_a_token_of_another_site_is_refused(client, site, other_site):
    token = path_of(mint(client, site)["url"]).rsplit("/", 1)[1]
    _assert_refused(client, f"/unsubscribe/{other_site['key']}/{token}", 400)
    other_token = path_of(mint(client, other_site)["url"]).rsplit("/", 1)[1]
    _assert_refused(client, f"/unsubscribe/{site['key']}/{other_token}", 400)


def test_unknown_site_is_not_found(client, site):
    token = path_of(mint(client, site)["url"]).rsplit("/", 1)[1]
    assert client.post(f"/unsubscribe/nosuchsite/{token}", data=ONE_CLICK).status_code == 404


class PastSigner(TimestampSigner):
    """Signs as if it were 400 days ago."""

    def get_timestamp(self) -> int:
        return int(time.time()) - 400 * 86400


def test_expired_tokens_are_refused(client, site):
    real = _unsubscribe_serializer(site["key"])
    old = URLSafeTimedSerializer(real.secret_key, salt=real.salt, signer=PastSigner)
    token = old.dumps({"c": "email.promotional",
                       "r": address_ref(site["key"], "email", "reader@example.test")})
    assert real.loads(token)  # a genuine token, only too old
    _assert_refused(client, f"/unsubscribe/{site['key']}/{token}", 410)


def test_link_lifetime_is_a_site_setting(client, site):
    def write():
        s = get_site(site["key"])
        s.settings = {**s.settings, "unsubscribe_link_days": 30}
    run_write(write)
    invalidate_site_cache()

    class FortyDaysAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 40 * 86400

    real = _unsubscribe_serializer(site["key"])
    token = URLSafeTimedSerializer(real.secret_key, salt=real.salt, signer=FortyDaysAgo).dumps(
        {"c": "email.promotional", "r": "0" * 64})
    _assert_refused(client, f"/unsubscribe/{site['key']}/{token}", 410)
    assert mint(client, site)["expires_at"]


def test_a_login_link_token_is_not_an_unsubscribe_token(client, site):
    r = client.post(f"/api/v1/sites/{site['key']}/login-links", json={"user_id": "u-1"},
                    headers=bearer(site))
    token = r.get_json()["url"].split("token=")[1].split("&")[0]
    _assert_refused(client, f"/unsubscribe/{site['key']}/{token}", 400)


@pytest.mark.parametrize("body, pointer", [
    ({"channel": "email", "kind": "transactional", "address": "a@b.test"}, "#/kind"),
    ({"channel": "fax", "address": "a@b.test"}, "#/channel"),
    ({"channel": "email", "address": "nope"}, "#/address"),
    ({"channel": "email"}, "#/address"),
    ({"channel": "email", "address": "a@b.test", "subject": "short"}, "#/subject"),
])
def test_minting_bad_input(client, site, body, pointer):
    r = client.post(f"/api/v1/sites/{site['key']}/unsubscribe-links", json=body,
                    headers=bearer(site))
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert pointer in [e["pointer"] for e in r.get_json()["errors"]]


def test_minting_needs_the_sites_key(client, site, other_site):
    url = f"/api/v1/sites/{site['key']}/unsubscribe-links"
    body = {"channel": "email", "address": "a@b.test"}
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers=bearer(other_site)).status_code == 403
