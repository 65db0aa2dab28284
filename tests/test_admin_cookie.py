"""The admin's "Cookie and links" settings (an outside review: settable only by
hand-written JSON): the consent cookie's name, domain, SameSite and the same-site
deployment, checked against the site's origins and this server's host (a cookie a
browser would refuse is refused here), and the address put in unsubscribe links."""
from __future__ import annotations

from html import unescape

from consent.extensions import db
from consent.sites import get_site
from tests.support.admin import field_error, post_form
from tests.support.api import bearer

PAGE = "/admin/sites/shop/settings/cookie"
DEFAULTS = {"cookie_name": "consent", "cookie_domain": "", "cookie_same_site": "Lax"}


def save(admin, form: dict):
    return post_form(admin, PAGE, {**DEFAULTS, **form}, page=PAGE)


def test_the_cookie_the_widget_writes_follows_the_page(client, site, admin):
    html = unescape(admin.get(PAGE).get_data(as_text=True))
    assert 'name="cookie_name" value="consent"' in html
    r = save(admin, {"cookie_name": "shop_consent", "cookie_domain": ".Shop.Example",
                     "cookie_same_site": "Strict"})
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    assert get_site("shop").settings["cookie"] == {
        "name": "shop_consent", "domain": "shop.example", "same_site": "Strict"}
    config = client.get("/api/v1/sites/shop/config?locale=en").get_json()
    assert config["cookie"] == {"name": "shop_consent", "domain": "shop.example",
                                "sameSite": "Strict"}
    # back to the defaults: nothing stored, nothing more for a first visit to download
    assert save(admin, {}).status_code == 302
    db.session.expire_all()
    assert "cookie" not in get_site("shop").settings
    assert client.get("/api/v1/sites/shop/config?locale=en").get_json()["cookie"] == {
        "name": "consent"}


def test_a_cookie_browsers_would_refuse_is_refused_here(app, client, site, admin,
                                                        monkeypatch):
    before = dict(get_site("shop").settings)
    for form, field, said in (
            ({"cookie_name": "my cookie"}, "cookie_name", "letters, digits"),
            ({"cookie_domain": "other.example"}, "cookie_domain",
             "browsers refuse a cookie for other.example on shop.example"),
            ({"cookie_domain": "example"}, "cookie_domain", "not a domain"),
            ({"cookie_domain": "sub.shop.example"}, "cookie_domain", "on shop.example"),
            ({"cookie_same_site": "Sometimes"}, "cookie_same_site", "Lax, Strict or None"),
            # the test server is "localhost", not under shop.example
            ({"cookie_domain": "shop.example", "cookie_server_set": "on"},
             "cookie_server_set", "(localhost) is not under shop.example"),
            ({"cookie_server_set": "on"}, "cookie_server_set", "never see"),
            ({"public_base_url": "ftp://links.example"}, "public_base_url", "http"),
            ({"public_base_url": "https://links.example/?a=1"}, "public_base_url",
             "no query")):
        r = save(admin, form)
        assert r.status_code == 422, form
        html = unescape(r.get_data(as_text=True))
        error = field_error(html, field)
        assert error and said in error, (form, error)
        db.session.expire_all()
        assert get_site("shop").settings == before, form

    # served from the site's own domain, the same-site deployment is accepted, and the
    # decisions' answers then set the cookie for that domain
    monkeypatch.setitem(app.config, "CONSENT_PUBLIC_URL", "https://consent.shop.example")
    r = save(admin, {"cookie_domain": "shop.example", "cookie_server_set": "on"})
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    answer = client.post("/api/v1/sites/shop/decisions", json={"action": "accept_all"},
                         headers={"Origin": site["origin"]})
    assert "Domain=shop.example" in answer.headers["Set-Cookie"]


def test_links_in_messages_use_the_address_set_here(client, site, admin):
    r = save(admin, {"public_base_url": "https://links.shop.example/"})
    assert r.status_code == 302
    assert get_site("shop").settings["public_base_url"] == "https://links.shop.example"
    link = client.post("/api/v1/sites/shop/unsubscribe-links",
                       json={"channel": "email", "address": "pat@example.org"},
                       headers=bearer(site)).get_json()
    assert link["url"].startswith("https://links.shop.example/"), link
    assert save(admin, {"public_base_url": ""}).status_code == 302
    db.session.expire_all()
    assert "public_base_url" not in get_site("shop").settings


def test_link_lifetimes_set_here_are_the_links(client, site, admin):
    from datetime import datetime, timedelta, timezone

    r = save(admin, {"unsubscribe_link_days": "45", "login_session_minutes": "15"})
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    stored = get_site("shop").settings
    assert (stored["unsubscribe_link_days"], stored["login_session_minutes"]) == (45, 15)
    link = client.post("/api/v1/sites/shop/unsubscribe-links",
                       json={"channel": "email", "address": "pat@example.org"},
                       headers=bearer(site)).get_json()
    expires = datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(timezone.utc) + timedelta(days=45))) < timedelta(hours=1)
    r = save(admin, {"unsubscribe_link_days": "7"})  # a recipient must have 30 days
    assert r.status_code == 422 and 'id="err-unsubscribe_link_days"' in r.get_data(as_text=True)
    assert save(admin, {}).status_code == 302  # the defaults again: nothing stored
    db.session.expire_all()
    stored = get_site("shop").settings
    assert "unsubscribe_link_days" not in stored and "login_session_minutes" not in stored


def test_samesite_none_is_refused_while_a_page_is_plain_http(site, admin):
    from consent.site_admin import update_site_section

    update_site_section("shop", "general", {
        "name": "Example shop", "allowed_origins": ["https://shop.example",
                                                    "http://legacy.shop.example"],
        "locales": ["en"], "default_locale": "en"}, "test")
    r = save(admin, {"cookie_same_site": "None"})
    assert r.status_code == 422
    assert "http://legacy.shop.example is http" in unescape(r.get_data(as_text=True))


def test_a_new_origin_outside_the_cookie_domain_is_refused_until_the_cookie_changes(
        client, site, admin):
    """Origins are set on General, the cookie's Domain on Cookie and links: adding a page
    whose host is outside that Domain would have every browser there refuse the widget's
    cookie (the banner on every page view), so it is refused, naming where to change it."""
    assert save(admin, {"cookie_domain": "shop.example"}).status_code == 302
    general = "/admin/sites/shop/settings/general"
    form = {"name": "Example shop", "locales": "en", "default_locale": "en"}
    r = post_form(admin, general, {**form, "allowed_origins":
                                   "https://shop.example\nhttps://blog.other.example"},
                  page=general)
    assert r.status_code == 422
    html = unescape(r.get_data(as_text=True))
    error = field_error(html, "allowed_origins")
    assert error and "blog.other.example" in error and "Cookie and links" in error
    db.session.expire_all()
    assert get_site("shop").allowed_origins == ["https://shop.example"]
    # a page under the domain is fine; and once the cookie has no Domain, any page is
    ok = "https://shop.example\nhttps://www.shop.example"
    assert post_form(admin, general, {**form, "allowed_origins": ok},
                     page=general).status_code == 302
    assert save(admin, {}).status_code == 302
    assert post_form(admin, general, {**form, "allowed_origins": ok +
                                      "\nhttps://blog.other.example"},
                     page=general).status_code == 302
