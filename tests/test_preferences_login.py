"""Known users: login links minted over the API, linking visitors, choices across devices."""
from __future__ import annotations

import re
import secrets
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from consent.extensions import db
from consent.identity import SubjectLink, _login_serializer, user_ref
from consent.ledger import ConsentEvent, verify_ledger
from consent.subjects import Subject, find_subject
from tests.support.api import PROBLEM, bearer, decide, device
from tests.support.db import count_events
from tests.support.login import CSRF, follow


def mint(client, site, user_id="user-1", **extra) -> dict:
    r = client.post(f"/api/v1/sites/{site['key']}/login-links",
                    json={"user_id": user_id, **extra}, headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(browser, site, **mint_args) -> str:
    """Open a fresh login link in BROWSER; returns the preference page HTML."""
    link = mint(browser, site, **mint_args)
    r = follow(browser, path_of(link["url"]))
    assert r.status_code == 303, r.get_data(as_text=True)
    assert r.headers["Location"].endswith("/preferences?site=shop")
    assert r.headers["Referrer-Policy"] == "no-referrer"
    html = browser.get(r.headers["Location"]).get_data(as_text=True)
    assert "You are signed in as a customer of Example shop." in html
    return html


def save(browser, html, categories=(), channels=()):
    r = browser.post("/preferences?site=shop", data={
        "csrf_token": csrf_of(html), "category": list(categories), "channel": list(channels)})
    assert r.status_code == 303, r.get_data(as_text=True)
    return browser.get(r.headers["Location"]).get_data(as_text=True)


def ask(client, site, channel, kind="promotional", **recipient) -> dict:
    r = client.post(f"/api/v1/sites/{site['key']}/may-i-send",
                    json={"channel": channel, "kind": kind, **recipient}, headers=bearer(site))
    return r.get_json()


KEYS: dict[str, str] = {}  # visitor id -> its device key
TOKENS: dict[str, str] = {}  # visitor id -> its read token


def visit(client, site, action, **extra) -> str:
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": action, **extra})
    body = r.get_json()
    KEYS[body["subject"]], TOKENS[body["subject"]] = body["key"], body["read_token"]
    return body["subject"]


def me(client, site, subject) -> dict:
    return client.get(f"/api/v1/sites/{site['key']}/me/{subject}?r={TOKENS[subject]}").get_json()


def with_cookie(browser, subject) -> None:
    """The widget's consent cookie, visible to this server (same-site deployment)."""
    browser.set_cookie("consent", f"v=1&s={subject}&k={KEYS[subject]}", domain="localhost")


def events(action=None) -> list[ConsentEvent]:
    query = db.select(ConsentEvent).order_by(ConsentEvent.id)
    if action:
        query = query.where(ConsentEvent.action == action)
    return list(db.session.execute(query).scalars())


def subject_row(public_id) -> Subject:
    return db.session.execute(db.select(Subject).where(Subject.public_id == public_id)
                              ).scalar_one()


# ---------------------------------------------------------------- minting


def test_login_link_is_signed_expiring_and_reveals_no_user_id(client, site):
    link = mint(client, site, user_id="customer-9876@shop")
    assert link["url"].startswith("http://localhost/preferences/login?site=shop&token=")
    assert "9876" not in link["url"]
    assert link["expires_at"].endswith("Z")
    assert link["subject"] is None  # a user never seen before has no account yet
    sign_in(client, site, user_id="customer-9876@shop")
    again = mint(client, site, user_id="customer-9876@shop")
    # The account subject holds only a keyed HMAC of the user id.
    row = subject_row(again["subject"])
    assert row.user_ref and "9876" not in row.user_ref


@pytest.mark.parametrize("body, pointer", [
    ({}, "#/user_id"), ({"user_id": ""}, "#/user_id"), ({"user_id": "u" * 201}, "#/user_id"),
    ({"user_id": "u", "ttl_seconds": 5}, "#/ttl_seconds"),
    ({"user_id": "u", "ttl_seconds": 999999}, "#/ttl_seconds"),
    ({"user_id": "u", "subject": "bad id"}, "#/subject"),
    ({"user_id": "u", "subject": "a-visitor-id-00000001"}, "#/key"),  # the id alone
    ({"user_id": "u", "subject": "a-visitor-id-00000001", "key": "short"}, "#/key"),
    ({"user_id": "u", "admin": True}, "#/admin"),
])
def test_minting_bad_input(client, site, body, pointer):
    r = client.post(f"/api/v1/sites/{site['key']}/login-links", json=body, headers=bearer(site))
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert pointer in [e["pointer"] for e in r.get_json()["errors"]]


def test_minting_needs_the_sites_key(client, site, other_site):
    url = f"/api/v1/sites/{site['key']}/login-links"
    assert client.post(url, json={"user_id": "u"}).status_code == 401
    assert client.post(url, json={"user_id": "u"}, headers=bearer(other_site)).status_code == 403


# ---------------------------------------------------------------- using links


def test_signed_in_user_saves_and_senders_see_it(client, site):
    html = sign_in(client, site)
    assert 'name="subject"' not in html  # the session, not a form field, says who
    save(client, html, categories=["analytics"], channels=["sms.promotional"])
    ev = events("preferences")[-1]
    assert ev.source == "preferences"
    assert ask(client, site, "sms", user_id="user-1")["allowed"] is True
    assert ask(client, site, "email", user_id="user-1")["reason"] == "opted_out"


def test_a_login_link_works_once(app, site):
    browser = app.test_client()
    link = mint(browser, site)
    assert follow(browser, path_of(link["url"])).status_code == 303
    again = app.test_client().get(path_of(link["url"]))
    assert again.status_code == 410 and "already used" in again.get_data(as_text=True)
    # Its page was open in another browser before it was spent: pressing Continue there
    # now is refused too.
    late = app.test_client()
    link = mint(late, site)
    page = late.get(path_of(link["url"]))
    assert follow(browser, path_of(link["url"])).status_code == 303
    r = late.post(path_of(link["url"]), data={"csrf_token": CSRF.search(
        page.get_data(as_text=True)).group(1)})
    assert r.status_code == 410 and "already used" in r.get_data(as_text=True)


def test_a_mail_scanner_opening_the_link_spends_nothing(app, site):
    """Mail scanners, link previews and prefetching fetch a link before the person does:
    only the page's button, posted with this browser's CSRF token, spends it."""
    person = app.test_client()
    link = mint(person, site)
    scanner = app.test_client()
    for _ in range(3):
        page = scanner.get(path_of(link["url"]))
        assert page.status_code == 200
        assert "Open your privacy settings for Example shop?" in page.get_data(as_text=True)
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Referrer-Policy"] == "no-referrer"
    assert scanner.head(path_of(link["url"])).status_code == 200
    assert "signed in" not in scanner.get("/preferences?site=shop").get_data(as_text=True)
    # A POST without this browser's CSRF token (a cross-site form, a scanner replaying the
    # form without the page's cookie) is refused and spends nothing either.
    assert app.test_client().post(path_of(link["url"]), data={}).status_code == 403
    r = app.test_client().post(path_of(link["url"]), data={"csrf_token": CSRF.search(
        page.get_data(as_text=True)).group(1)})
    assert r.status_code == 403
    assert follow(person, path_of(link["url"])).status_code == 303
    assert "You are signed in" in person.get("/preferences?site=shop").get_data(as_text=True)


def test_tampered_and_foreign_login_links_are_refused(app, site, other_site):
    browser = app.test_client()
    url = path_of(mint(browser, site)["url"])
    prefix, token = url.split("token=")
    payload, stamp, signature = token.rsplit(".", 2)
    for bad in (token[:-3], f"{payload}x.{stamp}.{signature}", "nonsense"):
        r = browser.get(f"{prefix}token={bad}")
        assert r.status_code == 400 and "Nothing was changed" in r.get_data(as_text=True)
    # The same token presented for another site.
    r = browser.get(f"/preferences/login?site={other_site['key']}&token={token}")
    assert r.status_code == 400
    # An unsubscribe token is not a login link.
    unsub = browser.post(f"/api/v1/sites/{site['key']}/unsubscribe-links",
                         json={"channel": "email", "address": "a@b.test"},
                         headers=bearer(site)).get_json()["url"].rsplit("/", 1)[1]
    assert browser.get(f"/preferences/login?site=shop&token={unsub}").status_code == 400
    assert "signed in" not in browser.get("/preferences?site=shop").get_data(as_text=True)
    # The untouched token still works: nothing above spent it.
    assert follow(browser, url).status_code == 303


def _signed_in_the_past(site_key, payload, seconds_ago):
    real = _login_serializer(site_key)

    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - seconds_ago

    return URLSafeTimedSerializer(real.secret_key, salt=real.salt, signer=Past).dumps(payload)


def test_expired_login_links_are_refused(client, site):
    ref = user_ref(site["key"], "user-1")
    short = _signed_in_the_past(site["key"], {"u": ref, "d": None,
                                              "j": secrets.token_hex(12), "x": 60}, 120)
    r = client.get(f"/preferences/login?site=shop&token={short}")
    assert r.status_code == 410 and "expired" in r.get_data(as_text=True)
    ancient = _signed_in_the_past(site["key"], {"u": ref, "d": None,
                                                "j": secrets.token_hex(12), "x": 900}, 2 * 86400)
    assert client.get(f"/preferences/login?site=shop&token={ancient}").status_code == 410
    assert "signed in" not in client.get("/preferences?site=shop").get_data(as_text=True)
    # The same payload signed just now works: only the age was wrong.
    fresh = _signed_in_the_past(site["key"], {"u": ref, "d": None,
                                              "j": secrets.token_hex(12), "x": 60}, 0)
    assert follow(client, f"/preferences/login?site=shop&token={fresh}").status_code == 303


def test_sign_out(app, client, site):
    html = sign_in(client, site)
    # A copy of the session cookie (taken from the browser, or a shared computer's
    # backup): an outside review found it still signed in after "Sign out".
    copy = app.test_client()
    for cookie in client._cookies.values():
        copy.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    assert "You are signed in" in copy.get("/preferences?site=shop").get_data(as_text=True)
    r = client.post("/preferences/logout?site=shop", data={"csrf_token": csrf_of(html)})
    assert r.status_code == 303
    assert "signed in" not in client.get("/preferences?site=shop").get_data(as_text=True)
    assert "signed in" not in copy.get("/preferences?site=shop").get_data(as_text=True)
    assert client.post("/preferences/logout?site=shop").status_code == 403
    # Signing in again (a new link) works, in this browser and on its own.
    assert "You are signed in" in sign_in(client, site)


# ---------------------------------------------------------------- across devices


def test_a_signed_in_users_choices_apply_wherever_they_sign_in(app, site):
    phone, laptop = app.test_client(), app.test_client()
    # The phone was an anonymous visitor first (the widget's cookie on this domain).
    phone_id = visit(phone, site, "accept_all")
    with_cookie(phone, phone_id)
    html = sign_in(phone, site, user_id="user-1")
    # Opening a login link signs in and nothing else: the device is not linked or changed.
    assert events("link") == [] and subject_row(phone_id).user_ref is None
    assert 'id="device-link"' in html  # the page asks whether to apply to this browser
    # and says whose this makes it (an outside review: someone else's link, opened and
    # confirmed here, put this browser under that account's access and erasure requests)
    assert "whoever the account belongs to can then see and erase" in html
    save(phone, html, categories=["functional"], channels=["sms.promotional"])
    assert me(phone, site, phone_id)["categories"]["analytics"] is True
    assert ask(phone, site, "sms", user_id="user-1")["allowed"] is True

    # The laptop signs in too and sees the account's choices.
    laptop_id = visit(laptop, site, "accept_all")
    with_cookie(laptop, laptop_id)
    html = sign_in(laptop, site, user_id="user-1")
    boxes = {m.group(1): "checked" in m.group(0)
             for m in re.finditer(r'<input type="checkbox" id="([a-z-]+)"[^>]*>', html)}
    assert boxes["category-functional"] and not boxes["category-analytics"]
    assert boxes["channel-sms-promotional"] and not boxes["channel-email-promotional"]
    assert me(laptop, site, laptop_id)["categories"]["analytics"] is True  # untouched

    # A change on the laptop shows on the phone at once.
    save(laptop, html, categories=["functional", "analytics"], channels=[])
    phone_html = phone.get("/preferences?site=shop").get_data(as_text=True)
    assert re.search(r'id="category-analytics"[^>]*checked', phone_html)
    assert not re.search(r'id="channel-sms-promotional"[^>]*checked', phone_html)
    assert ask(phone, site, "sms", user_id="user-1")["reason"] == "opted_out"
    assert verify_ledger().ok


def test_confirming_in_the_browser_links_it_and_later_choices_apply_to_it(app, site):
    phone = app.test_client()
    phone_id = visit(phone, site, "accept_all")
    with_cookie(phone, phone_id)
    html = sign_in(phone, site, user_id="user-1")
    url = "/preferences/link-device?site=shop"
    assert phone.post(url).status_code == 403  # CSRF-protected
    assert phone.post(url, data={"csrf_token": csrf_of(html)}).status_code == 303
    [link] = events("link")
    assert (link.categories, link.channels) == (None, None)  # linking grants nothing
    assert link.meta["link"] == "device" and link.source == "preferences"
    [row] = db.session.execute(db.select(SubjectLink)).scalars().all()
    assert row.subject_id == subject_row(phone_id).id
    assert me(phone, site, phone_id)["categories"]["advertising"] is True  # unchanged
    html = phone.get("/preferences?site=shop").get_data(as_text=True)
    assert 'id="device-linked"' in html and 'id="device-link"' not in html
    # What the person saves now is recorded for the account and for this browser.
    save(phone, html, categories=["functional"])
    assert [e.action for e in events()][-2:] == ["preferences", "preferences"]
    assert me(phone, site, phone_id)["categories"]["advertising"] is False
    assert verify_ledger().ok
    # A browser that did not prove a device of its own has nothing to link.
    other = app.test_client()
    html = sign_in(other, site, user_id="user-1")
    assert 'id="device-link"' not in html
    assert other.post(url, data={"csrf_token": csrf_of(html)}).status_code == 403


def test_identity_link_api(client, site, other_site):
    url = f"/api/v1/sites/{site['key']}/identity-links"
    first = decide(client, site["key"], "reject_all")["subject"]
    r = client.post(url, json={"user_id": "u-5", **device(first)}, headers=bearer(site))
    assert r.status_code == 200
    body = r.get_json()
    assert body["subject"] == first and body["linked"] is True  # adopted as the account
    assert events("link")[-1].meta == {"link": "account"}

    client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                json={"user_id": "u-5", "channels": {"email.promotional": True}},
                headers=bearer(site))
    second_answer = decide(client, site["key"], "accept_all")
    second = second_answer["subject"]
    TOKENS[second] = second_answer["read_token"]
    body = client.post(url, json={"user_id": "u-5", **device(second)},
                       headers=bearer(site)).get_json()
    assert body["subject"] == first and body["linked"] is True
    ev = events("link")[-1]
    # The device keeps its own choices: a link event carries none of the account's.
    assert (ev.categories, ev.channels) == (None, None)
    assert me(client, site, second)["categories"]["advertising"] is True
    assert ev.meta["account"] == subject_row(first).pseudonym
    links = db.session.execute(db.select(SubjectLink)).scalars().all()
    assert [(row.subject_id, row.account_id) for row in links] == [
        (subject_row(second).id, subject_row(first).id)]
    # Linking again with nothing new records nothing.
    before = count_events()
    again = client.post(url, json={"user_id": "u-5", **device(second)}, headers=bearer(site))
    assert again.get_json()["linked"] is False and count_events() == before
    # Another user's account on a shared computer is left alone.
    other = client.post(url, json={"user_id": "u-6", **device(first)},
                        headers=bearer(site)).get_json()
    assert other["subject"] != first and other["linked"] is False
    assert count_events() == before
    # The API key of another site cannot link here.
    assert client.post(url, json={"user_id": "u-5", **device(second)},
                       headers=bearer(other_site)).status_code == 403


def test_an_id_not_written_yet_is_proven_by_the_key_the_backend_sends(app, client, site):
    # The backend links a visitor id before any browser wrote with it (its widget's first
    # choice still queued), with the device key of the same cookie: the subject is created
    # with that key, so only that browser can write as it. An outsider who learnt the id
    # and writes with a key of its own does not get it (and cannot sign the user up for
    # promotional e-mail through it).
    unwritten = "not-yet-written-0001"
    r = client.post(f"/api/v1/sites/{site['key']}/identity-links",
                    json={"user_id": "u-8", **device(unwritten)}, headers=bearer(site))
    assert r.status_code == 200 and r.get_json()["linked"] is True
    assert r.get_json()["subject"] == unwritten  # proven by its key: it is the account
    assert events("link")[-1].meta == {"link": "account"}
    client.post(f"/api/v1/sites/{site['key']}/channel-addresses", headers=bearer(site),
                json={"user_id": "u-8", "channel": "email", "address": "u8@example.com"})
    outsider = app.test_client()
    assert outsider.post("/preferences/enter?site=shop", headers={"Origin": site["origin"]},
                         data={"subject": unwritten, "key": secrets.token_urlsafe(16)}
                         ).status_code == 303
    html = outsider.get("/preferences?site=shop").get_data(as_text=True)
    save(outsider, html, categories=["advertising"], channels=["email.promotional"])
    assert ask(client, site, "email", user_id="u-8")["allowed"] is False
    assert ask(client, site, "email", address="u8@example.com")["allowed"] is False
    # The browser the key came from writes as it.
    decide(client, site["key"], "reject_all", subject=unwritten)
    assert events()[-1].subject == subject_row(unwritten).pseudonym


def test_a_visitor_id_alone_links_nothing(app, client, site):
    """Finding: the visitor id is not a credential (it appears in links, logs and exports,
    and whoever talks to the site's frontend chooses which id it sends). Had the id alone
    been enough, a user who put someone else's id in their own cookie could have had that
    browser linked to their account, and then read its history with an access request or
    erase it."""
    victim = decide(client, site["key"], "accept_all", page_url="https://shop.example/x")
    # the attacker's own browser, linked to their account as it should be
    own = decide(client, site["key"], "reject_all")["subject"]
    assert client.post(f"/api/v1/sites/{site['key']}/identity-links", headers=bearer(site),
                       json={"user_id": "attacker", **device(own)}).status_code == 200
    attacker_key = secrets.token_urlsafe(24)
    before = count_events()
    for url in ("identity-links", "login-links"):
        r = client.post(f"/api/v1/sites/{site['key']}/{url}", headers=bearer(site), json={
            "user_id": "attacker", "subject": victim["subject"], "key": attacker_key})
        assert r.status_code == 403 and r.mimetype == PROBLEM, r.get_data(as_text=True)
        assert "does not prove this visitor id" in r.get_json()["detail"]
    r = client.post(f"/api/v1/sites/{site['key']}/identity-links", headers=bearer(site),
                    json={"user_id": "attacker", "subject": victim["subject"]})
    assert r.status_code == 422 and "#/key" in [e["pointer"] for e in r.get_json()["errors"]]
    assert count_events() == before
    victim_row = subject_row(victim["subject"])
    assert db.session.execute(db.select(SubjectLink).where(
        SubjectLink.subject_id == victim_row.id)).first() is None
    assert victim_row.user_ref is None
    # The attacker's account, whatever it asks for, covers their own browser only.
    from consent.requests import _subjects_of
    from consent.subjects import find_subject_by_user

    account = find_subject_by_user(victim_row.site_id, site["key"], "attacker")
    assert [s.public_id for s in _subjects_of(account)] == [own]


def test_a_visitor_id_alone_maps_no_address(app, client, site):
    """Outside review: channel-addresses and unsubscribe-links tied an address to a
    visitor id given alone. The address's access requests cover the visitor it maps to,
    so the attacker's address on the victim's id returned the victim's history. They now
    need the id's device key, as identity-links does."""
    victim = decide(client, site["key"], "accept_all", page_url="https://shop.example/x")
    before = count_events()
    for url in ("channel-addresses", "unsubscribe-links"):
        body = {"channel": "email", "address": "mallory@evil.example",
                "subject": victim["subject"]}
        r = client.post(f"/api/v1/sites/{site['key']}/{url}", headers=bearer(site), json=body)
        assert r.status_code == 422, r.get_data(as_text=True)
        assert "#/key" in [e["pointer"] for e in r.get_json()["errors"]]
        r = client.post(f"/api/v1/sites/{site['key']}/{url}", headers=bearer(site),
                        json={**body, "key": secrets.token_urlsafe(24)})
        assert r.status_code == 403 and r.mimetype == PROBLEM, r.get_data(as_text=True)
    assert count_events() == before
    from consent.channels import ChannelAddress

    assert db.session.execute(db.select(ChannelAddress)).first() is None
    # With the key of the victim's own cookie (the victim's own sign-up form) it maps.
    r = client.post(f"/api/v1/sites/{site['key']}/channel-addresses", headers=bearer(site),
                    json={"channel": "email", "address": "victim@example.com",
                          "subject": victim["subject"], "key": victim["key"]})
    assert r.status_code == 200 and r.get_json()["subject"] == victim["subject"]


def test_an_unknown_visitor_id_without_its_key_creates_nobody(app, client, site):
    """Outside review: a visitor id the backend named before any browser wrote with it
    was created without a key, and the first outsider to write with the id and a key of
    their own took it over (its choices, its e-mail opt-in). Named without its key, an
    unknown id is now 404 and nothing is created."""
    unknown = "never-recorded-00001"
    # (POST /age and guardian-consents share the look-up: the OpenAPI scenario's 404)
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices", headers=bearer(site),
                    json={"subject": unknown, "channels": {"email.promotional": True}})
    assert r.status_code == 404 and r.mimetype == PROBLEM, r.get_data(as_text=True)
    assert "device key" in r.get_json()["detail"]
    assert db.session.execute(db.select(Subject).where(Subject.public_id == unknown)
                              ).first() is None
    # The id then belongs to the first browser that writes with it and its own key.
    mine = decide(client, site["key"], "reject_all", subject=unknown)
    assert mine["subject"] == unknown


def test_login_link_with_the_visitor_id_links_at_mint(client, site):
    visitor = decide(client, site["key"], "accept_all")["subject"]
    link = mint(client, site, user_id="user-2", **device(visitor))
    assert link["subject"] == visitor  # the visitor became the account
    assert find_subject(subject_row(visitor).site_id, visitor).user_ref is not None
    assert [e.action for e in events()] == ["accept_all", "link"]
