"""The HTML admin: dashboard charts, policy versions, site configuration, event search."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape as html_unescape

from consent.database import utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.policies import PolicyVersion
from consent.sites import Category, Site, SiteApiKey
from tests.support.admin import admin_client, post_form, record_choice


def policy_config(app, site_key: str) -> dict:
    """The widget configuration's policy block, as the widget would load it."""
    from consent.widget_config import widget_config

    with app.test_request_context():
        return widget_config(site_key, "en")["policy"]


def seed_choices(site_key: str) -> None:
    for i in range(8):
        record_choice(site_key, "accept_all", gpc=(i < 2))
    for _ in range(3):
        record_choice(site_key, "reject_all")
    record_choice(site_key, "custom", categories={"analytics": True})


def test_dashboard_renders_charts_for_a_seeded_site(app, site, clock):
    from datetime import datetime, time

    # late morning: every choice is today's whenever the test runs; sign in at that time
    # too, so the session is young on the test's clock
    clock.set(datetime.combine(clock.now().date(), time(11), clock.now().tzinfo))
    admin = admin_client(app, ("admin",), "root@example.com")
    seed_choices(site["key"])
    r = admin.get(f"/admin/sites/{site['key']}/")
    assert r.status_code == 200
    page = r.data.decode()
    assert page.count("<svg") == 3
    assert 'aria-label="Choices per day"' in page
    assert 'aria-label="Acceptance rate per category"' in page
    choices = page.split('aria-label="Choices per day"')[1].split("</svg>")[0]
    # Today's bars: 8 accept_all, 3 reject_all, 1 custom (recorded today).
    today = clock.now().date().isoformat()
    assert f"<title>{today}: 8 Accept all</title>" in choices
    assert f"<title>{today}: 3 Reject all</title>" in choices
    acceptance = page.split('aria-label="Acceptance rate per category"')[1].split("</svg>")[0]
    # analytics: 8 accept_all + 1 custom granted of 12 answers = 75 %
    assert re.search(r"analytics 75%</title>", acceptance)
    # advertising: GPC turned it off for 2 of the 8 accept_all -> 6 of 12 = 50 %
    assert re.search(r"advertising 50%</title>", acceptance)
    assert 'id="gpc-share">16.7%<' in page  # 2 of 12 choices carried a GPC signal
    assert 'id="total-choices">12<' in page


def test_dashboard_of_an_empty_site_renders(app, other_site, admin):
    r = admin.get(f"/admin/sites/{other_site['key']}/")
    assert r.status_code == 200 and r.data.decode().count("<svg") == 3


def test_event_search_by_visitor_id_and_user_id(app, site, admin):
    from consent.identity import link_user

    v = record_choice(site["key"], "accept_all")
    record_choice(site["key"], "reject_all", subject=v)
    page = admin.get(f"/admin/sites/{site['key']}/events?subject={v}").data.decode()
    table = page.split('id="events"')[1]
    assert table.count("<tr>") == 3  # header + 2 events
    link_user(site["key"], "customer-9", v)
    page = admin.get(f"/admin/sites/{site['key']}/events?subject=customer-9").data.decode()
    assert v in page
    page = admin.get(f"/admin/sites/{site['key']}/events?subject=nobody").data.decode()
    assert "No subject matches" in page


def test_material_policy_version_changes_the_widget_config(app, site):
    client = admin_client(app, ("policies:write", "audit:read"), "legal@example.com")
    record_choice(site["key"], "accept_all")  # a visitor who had chosen under 2026-01
    before = policy_config(app, site["key"])
    assert before["version"] == before["materialVersion"] == "2026-01"
    r = post_form(client, f"/admin/sites/{site['key']}/policies",
                  {"label": "2026-02", "text": "Typo fixes", "summary": "typos"})
    assert r.status_code == 302
    minor = policy_config(app, site["key"])
    assert minor["version"] == "2026-02" and minor["materialVersion"] == "2026-01"
    r = post_form(client, f"/admin/sites/{site['key']}/policies",
                  {"label": "2026-03", "url": "https://shop.example/privacy-v3",
                   "material": "on", "summary": "New ad partner"})
    assert r.status_code == 302
    after = policy_config(app, site["key"])
    assert after["materialVersion"] == "2026-03"
    # the new material version's effective time, rounded up to the second (the widget
    # compares whole seconds); both versions may fall in the same second here
    effective = db.session.execute(db.select(PolicyVersion.effective_at).where(
        PolicyVersion.label == "2026-03")).scalar_one()
    assert after["reconsentAfter"] >= before["reconsentAfter"]
    assert datetime.fromisoformat(after["reconsentAfter"]) - effective \
        < timedelta(seconds=1)
    assert datetime.fromisoformat(after["reconsentAfter"]) >= effective
    assert after["url"] == "https://shop.example/privacy-v3"
    # The widget API serves the new configuration (the site cache was invalidated).
    body = app.test_client().get(f"/api/v1/sites/{site['key']}/config").get_json()
    assert body["policy"]["materialVersion"] == "2026-03"
    # Old versions stay readable at their stable URLs; new events name the new version.
    assert app.test_client().get(f"/sites/{site['key']}/policies/2026-01").status_code == 200
    record_choice(site["key"], "accept_all")
    last = db.session.execute(db.select(ConsentEvent).order_by(ConsentEvent.id.desc())
                              ).scalars().first()
    assert last.policy_version == "2026-03"
    listing = client.get(f"/admin/sites/{site['key']}/policies").data.decode()
    assert listing.count("<tr>") == 4


def test_policy_publish_refuses_bad_input_with_a_friendly_page(app, site, admin):
    url = f"/admin/sites/{site['key']}/policies"
    r = post_form(admin, url, {"label": "2026-01", "text": "again"})
    assert r.status_code == 409 and b"never edited" in r.data
    r = post_form(admin, url, {"label": "x y", "text": "t"})
    assert r.status_code == 422 and b"<html" in r.data
    r = post_form(admin, url, {"label": "v2"})
    assert r.status_code == 422 and b"text or a URL" in r.data
    r = post_form(admin, url, {"label": "v3", "url": "javascript:alert(1)"})
    assert r.status_code == 422
    r = post_form(admin, url, {"label": "v4", "text": "t", "effective_at": "soon"})
    assert r.status_code == 422
    assert policy_config(app, site["key"])["version"] == "2026-01"


def test_site_settings_update_reaches_the_widget(app, site, admin):
    base = f"/admin/sites/{site['key']}/settings"
    for section, data in (
            ("general", {"name": "Example shop EU",
                         "allowed_origins": "https://shop.example\nhttps://eu.shop.example",
                         "locales": "en\nde", "default_locale": "de"}),
            ("consent", {"accept_lifetime_days": "180", "reject_lifetime_days": "90",
                         "deadline_kind": "business_days", "deadline_value": "10",
                         "retention_days": "730"}),
            ("controller", {"controller_name": "Shop GmbH",
                            "controller_email": "privacy@shop.example"})):
        r = post_form(admin, f"{base}/{section}", data)
        assert r.status_code == 302, (section, r.get_data(as_text=True))
    config = app.test_client().get(f"/api/v1/sites/{site['key']}/config").get_json()
    assert config["lifetimes"] == {"acceptDays": 180, "rejectDays": 90}
    assert config["locale"] == "de"
    db.session.rollback()
    row = db.session.execute(db.select(Site).where(Site.key == site["key"])).scalar_one()
    assert row.allowed_origins == ["https://shop.example", "https://eu.shop.example"]
    assert row.settings["request_deadline"] == {"business_days": 10}
    assert row.settings["retention_days"] == 730
    assert row.settings["controller"]["name"] == "Shop GmbH"
    r = app.test_client().post(f"/api/v1/sites/{site['key']}/decisions",
                               json={"action": "accept_all"},
                               headers={"Origin": "https://eu.shop.example"})
    assert r.status_code == 201
    history = admin.get(f"{base}/history").get_data(as_text=True)
    assert "settings:general" in history and "changed name, allowed origins, languages" in history


def test_bad_settings_are_refused_next_to_the_field_and_nothing_changes(app, site, admin):
    base = f"/admin/sites/{site['key']}/settings"
    general = {"name": "X", "allowed_origins": "https://shop.example", "locales": "en",
               "default_locale": "en"}
    consent = {"accept_lifetime_days": "365", "reject_lifetime_days": "182",
               "deadline_kind": "days", "deadline_value": "30"}
    for section, good, field, value in [
            ("general", general, "allowed_origins", "shop.example/path"),
            ("general", general, "default_locale", "fr"),
            ("general", general, "locales", "english!"),
            ("consent", consent, "accept_lifetime_days", "0"),
            ("consent", consent, "deadline_value", "-1"),
            ("consent", consent, "deadline_kind", "weeks"),
            ("controller", {}, "controller_email", "not an address")]:
        r = post_form(admin, f"{base}/{section}", {**good, field: value})
        assert r.status_code == 422, (field, r.status_code)
        page = r.get_data(as_text=True)
        assert "Nothing was saved" in page and f'id="err-{field}"' in page, field
        assert 'class="admin-nav"' in page  # inside the normal layout
        if field != "deadline_kind":
            assert f'value="{value}"' in page or f">{value}</textarea>" in page, field
    row = db.session.execute(db.select(Site).where(Site.key == site["key"])).scalar_one()
    assert row.name == "Example shop"


def on_settings(client, site, url: str, data: dict | None = None, section: str = "categories"):
    """Submit one of the forms of a section of the site's settings."""
    return post_form(client, url, data,
                     page=f"/admin/sites/{site['key']}/settings/{section}")


def test_categories_texts_and_cookies(app, site, admin):
    r = on_settings(admin, site, f"/admin/sites/{site['key']}/categories",
                  {"key": "location", "title": "Location"})
    assert r.status_code == 302
    cat_page = "categories/location"
    r = on_settings(admin, site, f"/admin/sites/{site['key']}/categories/location", {
        "title_en": "Location", "title_de": "Standort",
        "description_en": "Finds the nearest store.", "description_de": "Findet die Filiale.",
        "svc-0-name": "Maps", "svc-0-provider": "Map Co",
        "svc-0-cookies": "_maps; domain=.maps.example\n/^_mapx_/; lifetime=1 day",
        "svc-0-lifetime": "1 year", "svc-0-storage": "session:maps-tiles",
        "svc-0-hosts": "tiles.maps.example"}, section=cat_page)
    assert r.status_code == 302
    page = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert "Saved Location: title (de), description (de), description (en), service Maps added." \
        in page
    config = app.test_client().get(
        f"/api/v1/sites/{site['key']}/config?locale=de&details=1").get_json()
    cat = next(c for c in config["categories"] if c["key"] == "location")
    assert cat["title"] == "Standort" and cat["description"] == "Findet die Filiale."
    assert cat["services"][0]["cookies"] == [
        {"name": "_maps", "domain": ".maps.example", "duration": "1 year"},
        {"pattern": "^_mapx_", "duration": "1 day"}]
    stored = db.session.execute(db.select(Category).where(Category.key == "location")
                                ).scalar_one().services[0]
    assert stored["storage"] == [{"name": "maps-tiles", "area": "session"}]
    assert stored["hosts"] == ["tiles.maps.example"]
    # the rows show what is stored, one entry per line
    assert ">_maps; domain=.maps.example; lifetime=1 year\n/^_mapx_/; lifetime=1 day</textarea>" \
        in page
    r = app.test_client().post(f"/api/v1/sites/{site['key']}/decisions",
                               json={"action": "custom", "categories": {"location": True}})
    assert r.status_code == 201
    for data, field in (({"svc-0-provider": "x"}, "svc-0-name"),
                        ({"svc-0-name": "x", "svc-0-cookies": "/[/"}, "svc-0-cookies"),
                        ({"svc-0-name": "x", "svc-0-cookies": "a; colour=red"}, "svc-0-cookies"),
                        ({"svc-0-name": "x", "svc-0-hosts": "not a host!"}, "svc-0-hosts"),
                        ({"svc-0-name": "x", "svc-1-name": "x"}, "svc-1-name"),
                        ({"svc-0-name": "x", "svc-0-privacy_url": "javascript:1"},
                         "svc-0-privacy_url")):
        bad = on_settings(admin, site, f"/admin/sites/{site['key']}/categories/location",
                          {"title_en": "L", **data}, section=cat_page)
        assert bad.status_code == 422, data
        assert f'id="err-{field}"' in bad.get_data(as_text=True), data
    bad = on_settings(admin, site, f"/admin/sites/{site['key']}/categories/location",
                      {"title_en": "L", "services": "[]"}, section=cat_page)
    assert bad.status_code == 422 and "unknown field(s): services" in bad.get_data(as_text=True)
    bad = on_settings(admin, site, f"/admin/sites/{site['key']}/categories",
                    {"key": "location", "title": "again"})
    assert bad.status_code == 409
    bad = on_settings(admin, site, f"/admin/sites/{site['key']}/categories",
                    {"key": "Bad Key", "title": "x"})
    assert bad.status_code == 422
    cat = db.session.execute(db.select(Category).where(Category.key == "location")).scalar_one()
    assert cat.titles["de"] == "Standort"


def test_site_api_keys_issue_and_revoke(app, site, admin):
    r = on_settings(admin, site, f"/admin/sites/{site['key']}/api-keys", {"name": "crm"},
                    section="api-keys")
    secret = r.data.decode().split('id="secret">')[1].split("<")[0]
    assert secret.startswith("ck_")
    headers = {"Authorization": f"Bearer {secret}"}
    v = record_choice(site["key"])
    client = app.test_client()
    assert client.get(f"/api/v1/sites/{site['key']}/subjects/{v}",
                      headers=headers).status_code == 200
    page = admin.get(f"/admin/sites/{site['key']}/settings/api-keys").data.decode()
    assert secret not in page and "crm" in page
    key = db.session.execute(db.select(SiteApiKey).where(SiteApiKey.name == "crm")).scalar_one()
    revoke = f"/admin/sites/{site['key']}/api-keys/{key.id}/revoke"
    # the button asks first: without the confirmation the key stays
    asked = post_form(admin, revoke, page=revoke)
    assert asked.status_code == 422 and "Revoke the API key crm?" in asked.get_data(as_text=True)
    assert client.get(f"/api/v1/sites/{site['key']}/subjects/{v}",
                      headers=headers).status_code == 200
    r = post_form(admin, revoke, {"confirm": "yes"}, page=revoke)
    assert r.status_code == 302
    assert "API key crm (ck_" in admin.get(r.headers["Location"]).get_data(as_text=True)
    assert client.get(f"/api/v1/sites/{site['key']}/subjects/{v}",
                      headers=headers).status_code == 401


def test_create_site_from_the_admin(app, admin):
    r = post_form(admin, "/admin/sites", {"key": "blog", "name": "Blog",
                                          "allowed_origins": "https://blog.example"})
    assert r.status_code == 302
    assert app.test_client().get("/api/v1/sites/blog/config").status_code == 200
    assert post_form(admin, "/admin/sites", {"key": "blog", "name": "B"}).status_code == 409
    assert b"blog" in admin.get("/admin/sites").data


def test_a_new_site_shows_the_snippet_that_puts_its_widget_on_a_page(app, admin, monkeypatch):
    # An outside review: after creating a site nothing said how to embed it; the snippet
    # was in docs/widget.md only. It is on the site's settings page, with this server's
    # public address, and it is the script that serves that site's widget.
    monkeypatch.setitem(app.config, "CONSENT_PUBLIC_URL", "https://consent.shop.example")
    r = post_form(admin, "/admin/sites", {"key": "blog", "name": "Blog",
                                          "allowed_origins": "https://blog.example"})
    page = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert "Site blog created" in page and "the snippet below" in page
    snippet = re.search(r'<code id="embed-snippet">([^<]*)</code>', page).group(1)
    assert html_unescape(snippet).splitlines()[0] == \
        '<script src="https://consent.shop.example/consent.js?site=blog"></script>'
    assert "data-consent-open" in html_unescape(snippet)
    script = app.test_client().get("/consent.js?site=blog")
    assert script.status_code == 200 and b'"blog"' in script.data


def test_read_only_admin_sees_pages_without_write_forms(app, site):
    reader = admin_client(app, ("audit:read",), "reader@example.com")
    for path in ("/", "/policies", "/settings", "/requests", "/events"):
        assert reader.get(f"/admin/sites/{site['key']}{path}").status_code == 200, path
    page = reader.get(f"/admin/sites/{site['key']}/policies").data.decode()
    assert "Publish a new version" not in page
    assert reader.get(f"/admin/sites/{site['key']}/export").status_code == 403


def test_new_site_and_policy_forms_keep_the_input_and_show_errors_by_the_field(app, site,
                                                                                admin):
    r = post_form(admin, "/admin/sites", {"key": "blog", "name": "My blog",
                                          "allowed_origins": "https://blog.example\nftp://x"})
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert 'id="err-allowed_origins"' in page and 'class="admin-nav"' in page
    assert 'value="blog"' in page and 'value="My blog"' in page
    assert ">https://blog.example\nftp://x</textarea>" in page
    assert app.test_client().get("/api/v1/sites/blog/config").status_code == 404
    r = post_form(admin, "/admin/sites", {"key": "blog", "name": "My blog",
                                          "allowed_origins": "https://blog.example"})
    assert "Site blog created" in admin.get(r.headers["Location"]).get_data(as_text=True)

    url = f"/admin/sites/{site['key']}/policies"
    r = post_form(admin, url, {"label": "2026-09", "text": "New text", "summary": "cookies",
                               "effective_at": "01/12/2026"})
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert 'id="err-effective_at"' in page and "is not a date" in page
    assert 'value="2026-09"' in page and ">New text</textarea>" in page
    r = post_form(admin, url, {"label": "2026-09", "text": "New text",
                               "effective_at": (utcnow() + timedelta(days=10)).date()
                               .isoformat(), "material": "on"})
    assert "Version 2026-09 published: every visitor" in \
        admin.get(r.headers["Location"]).get_data(as_text=True)


def test_a_form_without_a_page_of_its_own_errs_inside_the_admin_layout(app, site, admin):
    from consent.outbox import register_endpoint

    endpoint, _ = register_endpoint(site["key"], url="https://crm.example/hook",
                                    categories=["*"])
    page = f"/admin/sites/{site['key']}/webhooks"
    url = f"{page}/{endpoint.id}/disable"
    # a forged post (a field no form has): the error page, inside the admin layout
    r = post_form(admin, url, {"bogus": "1"}, page=page,
                  headers={"Referer": f"http://localhost{page}"})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert 'class="admin-nav"' in html and "Nothing was changed" in html
    assert f'<a href="{page}">Back to the page you came from</a>' in html
    # a referrer elsewhere is not offered as the way back
    r = post_form(admin, url, {"bogus": "1"}, page=page,
                  headers={"Referer": "https://evil.example/x"})
    assert "Back to the page" not in r.get_data(as_text=True)
    r = post_form(admin, url, page=page)
    assert r.status_code == 302
    assert "disabled" in admin.get(r.headers["Location"]).get_data(as_text=True)


def test_an_opt_out_deadline_set_in_the_admin_is_recorded_with_each_opt_out(client, site,
                                                                             admin):
    # An outside review: the opt-out deadline a policy promises (e.g. "within 10 business
    # days") could be set only by a profile. Set here, a one-click unsubscribe is recorded
    # as a completed opt-out request with that deadline; holidays set elsewhere stay.
    from consent.database import run_write
    from consent.requests import DataRequest
    from consent.sites import get_site
    from tests.support.api import bearer

    page = f"/admin/sites/{site['key']}/settings/consent"
    form = {"accept_lifetime_days": "365", "reject_lifetime_days": "182",
            "deadline_kind": "days", "deadline_value": "30"}
    r = post_form(admin, page, {**form, "opt_out_value": "0"}, page=page)
    assert r.status_code == 422 and 'id="err-opt_out_value"' in r.get_data(as_text=True)
    r = post_form(admin, page, {**form, "opt_out_value": "10",
                                "opt_out_kind": "business_days"}, page=page)
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    assert get_site(site["key"]).settings["opt_out_deadline"] == {"business_days": 10}

    def add_holiday():
        s = get_site(site["key"])
        s.settings = {**s.settings, "opt_out_deadline": {"business_days": 10,
                                                         "holidays": ["2026-12-25"]}}
    run_write(add_holiday)
    r = post_form(admin, page, {**form, "opt_out_value": "12",
                                "opt_out_kind": "business_days"}, page=page)
    db.session.expire_all()
    assert get_site(site["key"]).settings["opt_out_deadline"] == {
        "business_days": 12, "holidays": ["2026-12-25"]}

    link = client.post(f"/api/v1/sites/{site['key']}/unsubscribe-links",
                       json={"channel": "email", "address": "pat@example.org"},
                       headers=bearer(site)).get_json()
    path = "/" + link["url"].split("://", 1)[1].split("/", 1)[1]
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    [request] = db.session.execute(db.select(DataRequest).where(
        DataRequest.kind == "opt-out")).scalars().all()
    assert request.status == "completed" and "12 business days" in request.deadline_rule

    r = post_form(admin, page, {**form, "opt_out_value": ""}, page=page)  # none again
    db.session.expire_all()
    assert "opt_out_deadline" not in get_site(site["key"]).settings
