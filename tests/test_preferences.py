"""The preference center page: what it shows, saving, CSRF, languages, who the visitor is."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from consent.channels import CHANNELS
from consent.database import run_write
from consent.extensions import db
from consent.i18n import SUPPORTED
from consent.ledger import ConsentEvent, verify_ledger
from consent.policies import publish_policy
from consent.sites import get_site, invalidate_site_cache
from tests.support.api import bearer, without_notice
from tests.support.db import count_events

CATEGORIES = ("essential", "functional", "analytics", "advertising")


def last_event() -> ConsentEvent:
    return db.session.execute(db.select(ConsentEvent).order_by(ConsentEvent.id.desc())
                              ).scalars().first()


class Inputs(HTMLParser):
    """Collects the form controls of a page, and the ids and tags of everything."""

    def __init__(self):
        super().__init__()
        self.inputs: dict[str, dict] = {}
        self.structure: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.structure.append(f"{tag}#{attrs.get('id', '')}.{attrs.get('class', '')}")
        if tag == "input" and attrs.get("id"):
            self.inputs[attrs["id"]] = attrs


def parse(html: str) -> Inputs:
    parser = Inputs()
    parser.feed(html)
    return parser


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def page(client, query="site=shop", **headers):
    r = client.get(f"/preferences?{query}", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_data(as_text=True)


def save(client, html, *, categories=(), channels=(), query="site=shop", extra=None, **headers):
    data = {"csrf_token": csrf_of(html), "category": list(categories),
            "channel": list(channels)}
    # (the hidden fields a browser sends with the form)
    for name in ("subject", "revision"):
        hidden = re.search(rf'name="{name}" value="([^"]+)"', html)
        if hidden:
            data[name] = hidden.group(1)
    offered = re.findall(r'name="offered" value="([^"]+)"', html)
    if offered:
        data["offered"] = offered
    data.update(extra or {})
    return client.post(f"/preferences?{query}", data=data, headers=headers)


KEYS: dict[str, str] = {}  # visitor id -> its device key
TOKENS: dict[str, str] = {}  # visitor id -> its read token


def widget_decision(client, site, action="reject_all", **extra) -> str:
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": action, **extra})
    assert r.status_code == 201
    body = r.get_json()
    KEYS[body["subject"]], TOKENS[body["subject"]] = body["key"], body["read_token"]
    return body["subject"]


def enter(client, site, subject, key=None, **extra):
    """Follow the widget's link to the preference center, as its script posts it."""
    r = client.post(f"/preferences/enter?site={site['key']}",
                    data={"subject": subject, "key": key or KEYS[subject], **extra},
                    headers={"Origin": site["origin"]})
    assert r.status_code == 303 and r.headers["Location"].startswith("/preferences?site=")
    return r


def me(client, site, subject) -> dict:
    r = client.get(f"/api/v1/sites/{site['key']}/me/{subject}?r={TOKENS[subject]}")
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


# ---------------------------------------------------------------- what the page shows


def test_page_shows_categories_channels_transactional_and_policy(client, site):
    html = page(client)
    controls = parse(html).inputs
    for key in CATEGORIES:
        assert controls[f"category-{key}"]["name"] == "category"
    assert "disabled" in controls["category-essential"]
    assert "checked" in controls["category-essential"]
    for key in ("functional", "analytics", "advertising"):
        assert "checked" not in controls[f"category-{key}"]  # nothing pre-ticked
        assert "disabled" not in controls[f"category-{key}"]
    for key in CHANNELS:
        box = controls[f"channel-{key.replace('.', '-')}"]
        assert box["value"] == key and "checked" not in box and "disabled" not in box
    transactional = controls["channel-transactional"]
    assert "checked" in transactional and "disabled" in transactional
    assert "name" not in transactional  # never submitted: cannot be turned off
    assert "Transactional and account messages" in html
    assert "do not depend on your consent" in html
    assert 'href="/sites/shop/policies/2026-01"' in html
    assert 'href="/sites/shop/policies/"' in html
    assert "Not chosen yet" in html
    assert html.count(">Always on<") == 2  # essential cookies and transactional messages


def test_unknown_or_missing_site_is_a_friendly_error(client, site):
    r = client.get("/preferences?site=nosuchsite")
    assert r.status_code == 404 and r.mimetype == "text/html"
    r = client.get("/preferences")
    assert r.status_code == 422 and "site" in r.get_data(as_text=True)


def test_a_subject_parameter_names_nobody(client, site):
    subject = widget_decision(client, site, "accept_all")
    for query in (f"site=shop&subject={subject}", "site=shop&subject=short"):
        html = page(client, query)
        assert "Nothing has been recorded for this browser yet." in html
        assert "checked" not in parse(html).inputs["category-advertising"]


# ---------------------------------------------------------------- saving


def test_saving_records_one_event_with_every_choice(client, site):
    html = page(client)
    r = save(client, html, categories=["analytics"], channels=["email.promotional", "push.service"])
    assert r.status_code == 303 and "/preferences?site=shop" in r.headers["Location"]
    assert count_events() == 1
    ev = last_event()
    assert (ev.action, ev.source, ev.policy_version, ev.locale) == (
        "preferences", "preferences", "2026-01", "en")
    assert ev.categories == {"essential": True, "functional": False, "analytics": True,
                             "advertising": False}
    assert ev.channels == {"email.promotional": True, "sms.promotional": False,
                           "push.promotional": False, "push.service": True}
    # The page now shows the choices and when they were made.
    html = page(client, "site=shop&saved=1")
    controls = parse(html).inputs
    assert "checked" in controls["category-analytics"]
    assert "checked" in controls["channel-email-promotional"]
    assert "checked" in controls["channel-push-service"]
    assert "checked" not in controls["channel-sms-promotional"]
    stamp = ev.recorded_at.strftime("%Y-%m-%d %H:%M UTC")
    assert html.count(stamp) >= 8  # every category but essential, every channel, the policy line
    assert 'id="saved"' in html and 'id="policy-yours">2026-01' in html
    assert verify_ledger().ok


def test_every_channel_toggles_and_is_recorded(client, site):
    html = page(client)
    for key in CHANNELS:
        r = save(client, html, channels=[key])
        assert r.status_code == 303
        assert last_event().channels == {k: k == key for k in CHANNELS}
        html = page(client)
        assert "checked" in parse(html).inputs[f"channel-{key.replace('.', '-')}"]
    r = save(client, html, channels=[])
    assert last_event().channels == {k: False for k in CHANNELS}
    assert count_events() == len(CHANNELS) + 1


def test_may_i_send_follows_the_page_immediately(client, site):
    subject = widget_decision(client, site)
    enter(client, site, subject)
    ask = {"channel": "sms", "kind": "promotional", "subject": subject}
    url = f"/api/v1/sites/{site['key']}/may-i-send"
    assert client.post(url, json=ask, headers=bearer(site)).get_json()["allowed"] is False
    save(client, page(client), channels=["sms.promotional"])
    answer = client.post(url, json=ask, headers=bearer(site)).get_json()
    assert answer["allowed"] is True and answer["event_id"] == last_event().event_id
    save(client, page(client), channels=[])
    assert client.post(url, json=ask, headers=bearer(site)).get_json()["reason"] == "opted_out"


def test_transactional_cannot_be_turned_off(client, site):
    html = page(client)
    r = save(client, html, channels=["email.transactional"])
    assert r.status_code == 422
    assert "always on" in r.get_data(as_text=True)
    r = save(client, html, extra={"transactional": "off"})
    assert r.status_code == 422
    assert count_events() == 0


def test_unknown_category_or_channel_is_refused(client, site):
    html = page(client)
    assert save(client, html, categories=["tracking"]).status_code == 422
    assert save(client, html, channels=["fax.promotional"]).status_code == 422
    assert count_events() == 0


def test_essential_stays_on_even_if_the_form_omits_it(client, site):
    save(client, page(client), categories=[])
    assert last_event().categories["essential"] is True


def test_form_posts_without_csrf_token_are_refused(client, site):
    page(client)  # the session has a token; the attacker's form does not send it
    for data in ({"category": ["analytics"]}, {"category": ["analytics"], "csrf_token": "forged"}):
        r = client.post("/preferences?site=shop", data=data)
        assert r.status_code == 403
        assert "Nothing was changed" in r.get_data(as_text=True)
    # A fresh browser without any session is refused too.
    fresh = client.application.test_client()
    assert fresh.post("/preferences?site=shop", data={"channel": ["sms.promotional"]}
                      ).status_code == 403
    assert count_events() == 0


def test_withdrawal_is_prospective(client, site):
    subject = widget_decision(client, site, "accept_all")
    enter(client, site, subject)
    save(client, page(client), categories=["functional"])
    h = client.get(f"/api/v1/sites/{site['key']}/subjects/{subject}/history",
                   headers=bearer(site)).get_json()["events"]
    assert [e["action"] for e in h] == ["accept_all", "preferences"]
    assert h[0]["categories"]["advertising"] is True  # the grant stays in the history
    mine = me(client, site, subject)
    assert mine["categories"]["advertising"] is False and mine["source"] == "preferences"


# ---------------------------------------------------------------- who the visitor is


def test_visitor_from_the_widgets_link(client, site):
    subject = widget_decision(client, site, "custom", categories={"analytics": True})
    enter(client, site, subject, **{"return": f"{site['origin']}/cart?step=2"})
    html = page(client)
    controls = parse(html).inputs
    assert "checked" in controls["category-analytics"]
    assert "checked" not in controls["category-advertising"]
    assert "These are the choices recorded for this browser." in html
    assert f'id="back" href="{site["origin"]}/cart?step=2">Back to Example shop' in html
    assert 'name="subject"' not in html  # the session, not a form field, says who
    save(client, html, categories=["analytics", "advertising"])
    assert me(client, site, subject)["categories"]["advertising"] is True
    # The session remembers the visitor for the next visit, and the way back.
    html = page(client)
    assert "checked" in parse(html).inputs["category-advertising"] and 'id="back"' in html


def test_the_widgets_link_needs_the_key_and_a_page_of_the_site(client, site):
    subject = widget_decision(client, site, "accept_all")
    # a wrong key (or none) proves nobody: the page shows the defaults
    for key in ("w" * 22, None):
        r = client.post("/preferences/enter?site=shop", data={"subject": subject, "key": key},
                        headers={"Origin": site["origin"]})
        assert r.status_code == 303
        assert "Nothing has been recorded" in page(client)
    # a page elsewhere cannot choose whose preferences this browser sees (login CSRF)
    for origin in ("https://evil.example", None):
        r = client.post("/preferences/enter?site=shop",
                        data={"subject": subject, "key": KEYS[subject]},
                        headers={"Origin": origin} if origin else {})
        assert r.status_code == 403 and "Nothing was changed" in r.get_data(as_text=True)
    assert "Nothing has been recorded" in page(client)
    # a way back to another site is not kept
    enter(client, site, subject, **{"return": "https://evil.example/phish"})
    assert 'id="back"' not in page(client)


def test_a_site_that_allows_any_origin_refuses_the_widgets_link_and_says_why(client, site):
    # With `*` every page passes the origin test, so none proves it is the site's own: the
    # way in is refused (login CSRF), as a clear page or problem+json, changing nothing.
    import sqlalchemy as sa

    from consent.sites import Site

    subject = widget_decision(client, site, "accept_all")

    def allow_any():
        db.session.execute(sa.update(Site).where(Site.key == "shop").values(
            allowed_origins=["*"]))

    run_write(allow_any)
    invalidate_site_cache()
    for origin in (site["origin"], "https://evil.example", None):
        r = client.post("/preferences/enter?site=shop",
                        data={"subject": subject, "key": KEYS[subject]},
                        headers={"Origin": origin} if origin else {})
        html = r.get_data(as_text=True)
        assert r.status_code == 403 and r.mimetype == "text/html", origin
        assert "lets its consent banner run on any website" in html
        assert "Nothing was changed" in html
        assert 'id="problem-link" href="/preferences?site=shop"' in html
        assert "Nothing has been recorded" in page(client)  # no visitor was entered
    r = client.post("/preferences/enter?site=shop", data={"subject": subject,
                                                          "key": KEYS[subject]},
                    headers={"Origin": site["origin"], "Accept": "application/problem+json"})
    body = r.get_json()
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    assert body["type"] == "tag:consent-manager,2026:any-origin-entry"
    assert body["link"] == {"href": "/preferences?site=shop",
                            "title": "Privacy settings of Example shop"}
    # (the widget's decisions from any origin are still accepted: only this way in)
    assert client.post("/api/v1/sites/shop/decisions", json={"action": "reject_all"},
                       headers={"Origin": "https://elsewhere.example"}).status_code == 201


def test_subject_from_the_widget_cookie(client, site):
    subject = widget_decision(client, site, "accept_all")
    client.set_cookie("consent", f"v=1&s={subject}&c=essential.analytics&d=&t=1&e=2",
                      domain="localhost")
    assert "Nothing has been recorded" in page(client)  # the id alone names nobody
    client.set_cookie("consent", f"v=1&s={subject}&k={KEYS[subject]}&c=essential&t=1&e=2",
                      domain="localhost")
    html = page(client)
    assert "checked" in parse(html).inputs["category-advertising"]
    save(client, html, categories=[])
    assert me(client, site, subject)["categories"]["advertising"] is False


def test_cookie_name_is_a_site_setting(client, site):
    def write():
        s = get_site(site["key"])
        s.settings = {**s.settings, "cookie": {"name": "shop_consent"}}
    run_write(write)
    invalidate_site_cache()
    subject = widget_decision(client, site, "accept_all")
    client.set_cookie("consent", f"v=1&s={'x' * 22}&k={'y' * 22}", domain="localhost")
    client.set_cookie("shop_consent", f"v=1&s={subject}&k={KEYS[subject]}", domain="localhost")
    assert "checked" in parse(page(client)).inputs["category-advertising"]


def test_after_an_erasure_the_page_starts_afresh_and_keeps_the_new_visitor(client, site):
    # An outside review: the session still named the erased visitor (entered from the
    # widget), so the page showed nothing after each save, and every save made another
    # visitor nobody could reach.
    from consent.requests import erase_subject
    from consent.subjects import Subject

    subject = widget_decision(client, site, "accept_all")
    enter(client, site, subject)
    row = db.session.execute(db.select(Subject).where(Subject.public_id == subject)
                             ).scalar_one()
    erase_subject(site["key"], row.id, "test")
    db.session.remove()
    html = page(client)
    assert "Nothing has been recorded for this browser yet." in html
    subjects = db.session.execute(db.select(db.func.count()).select_from(Subject)).scalar()
    save(client, html, categories=["analytics"], channels=["email.promotional"])
    html = page(client)
    assert "These are the choices recorded for this browser." in html
    assert "checked" in parse(html).inputs["category-analytics"]
    save(client, html, categories=["analytics", "advertising"])
    html = page(client)
    assert "checked" in parse(html).inputs["category-advertising"]
    assert db.session.execute(db.select(db.func.count()).select_from(Subject)
                              ).scalar() == subjects + 1  # one new visitor, kept


def test_new_visitor_saving_creates_a_subject(client, site):
    html = page(client)
    assert "Nothing has been recorded for this browser yet." in html
    save(client, html, channels=["push.promotional"])
    html = page(client)
    assert "These are the choices recorded for this browser." in html
    assert "checked" in parse(html).inputs["channel-push-promotional"]


# ---------------------------------------------------------------- languages


def test_every_supported_language_has_every_string():
    from consent.i18n import LOCALES_DIR

    catalogs = {loc: json.loads((LOCALES_DIR / f"pages.{loc}.json").read_text("utf-8"))
                for loc in SUPPORTED}
    keys = set(catalogs["en"])
    for loc, strings in catalogs.items():
        assert set(strings) == keys, loc
        assert all(isinstance(v, str) and v.strip() for v in strings.values()), loc
    for loc in ("de", "fr", "es"):
        different = sum(catalogs[loc][k] != catalogs["en"][k] for k in keys)
        assert different == len(keys), loc  # every string really translated


@pytest.mark.parametrize("lang, title", [("de", "Datenschutzeinstellungen"),
                                         ("fr", "Préférences de confidentialité"),
                                         ("es", "Preferencias de privacidad")])
def test_same_page_in_every_language(client, site, lang, title):
    english = page(client)
    other = page(client, f"site=shop&lang={lang}")
    assert f'<html lang="{lang}">' in other and title in other
    assert parse(other).structure == parse(english).structure  # the same look
    by_header = page(client, **{"Accept-Language": f"{lang};q=0.9, en;q=0.1"})
    assert f'<html lang="{lang}">' in by_header
    save(client, other, channels=["email.promotional"], query=f"site=shop&lang={lang}")
    assert last_event().locale == lang


# ---------------------------------------------------------------- policy versions


def test_policy_in_force_and_archived_versions(client, site):
    subject = widget_decision(client, site, "accept_all")

    def publish():
        publish_policy(get_site(site["key"]).id, "2026-06", text="Policy text v2",
                       material=True)
    run_write(publish)
    invalidate_site_cache()
    enter(client, site, subject)
    html = page(client)
    assert 'id="policy-current" href="/sites/shop/policies/2026-06"' in html
    assert 'id="policy-yours">2026-01' in html  # what the visitor agreed to
    assert 'href="/sites/shop/policies/2026-01"' in html  # the archived version
    save(client, html, categories=["analytics"])
    assert last_event().policy_version == "2026-06"


# ---------------------------------------------------------------- GPC


def test_gpc_keeps_advertising_off_and_says_so(client, site):
    html = page(client, **{"Sec-GPC": "1"})
    assert 'id="gpc"' in html
    assert "disabled" in parse(html).inputs["category-advertising"]
    save(client, html, categories=["advertising", "analytics"], **{"Sec-GPC": "1"})
    ev = last_event()
    assert ev.categories["advertising"] is False and ev.categories["analytics"] is True
    assert without_notice(ev.meta) == {"gpc": True}
