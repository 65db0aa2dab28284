"""Server side of the widget: config document, byte budget, cookie, files, gpc.json, demo."""
from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

import pytest

from consent.database import run_write
from consent.sites import Category, Site, invalidate_site_cache
from consent.extensions import db
from consent.widget_config import (ConsentCookie, format_consent_cookie,
                                   parse_consent_cookie)

BUDGET = 6000  # bytes gzip -9: script + style + config, what a first visit needs
# A page that sends no Referer gets the shared script and then fetches the config: two
# documents compress separately (docs/performance.md reports the figure).
FALLBACK_BUDGET = 6100


def config(client, key="shop", locale="en"):
    return client.get(f"/api/v1/sites/{key}/config?locale={locale}")


def set_settings(key: str, **settings) -> None:
    def write():
        site = db.session.execute(db.select(Site).where(Site.key == key)).scalar_one()
        site.settings = {**(site.settings or {}), **settings}
    run_write(write)
    invalidate_site_cache()


@pytest.mark.parametrize("locale", ["en", "de", "fr", "es"])
def test_everything_before_the_banner_fits_the_byte_budget(client, site, locale):
    # the recommended embed: one file, the site's config inlined
    one = client.get(f"/consent.js?site=shop&lang={locale}")
    assert one.status_code == 200
    assert len(gzip.compress(one.get_data(), 9)) <= BUDGET
    # the data-site embed: the page's origin (Referer) names the site: inlined too
    named = client.get("/consent.js", headers={"Referer": "https://shop.example/a",
                                                "Accept-Language": locale})
    assert inlined_config(named.get_data(as_text=True))["site"] == "shop"
    assert len(gzip.compress(named.get_data(), 9)) <= BUDGET
    # without a Referer: the shared script, then the config document (the slow path)
    served = [client.get("/consent.js"), config(client, locale=locale)]
    assert [r.status_code for r in served] == [200, 200]
    sizes = [len(gzip.compress(r.get_data(), 9)) for r in served]
    assert sum(sizes) <= FALLBACK_BUDGET, dict(zip(["js", "config"], sizes))


def test_the_first_layer_does_not_grow_with_the_services(client, site):
    # 60 services with their cookies: none of it before the banner (the dialog's details)
    before = len(gzip.compress(client.get("/consent.js?site=shop&lang=en").get_data(), 9))

    def write():
        cat = db.session.execute(db.select(Category).where(
            Category.key == "analytics")).scalars().first()
        cat.services = [{"name": f"Tool {n}", "provider": f"Vendor {n} Inc.",
                         "purpose": f"Measures page {n} for the vendor's reports",
                         "cookies": [{"name": f"_tool{n}_id"}, {"pattern": f"^_t{n}_"}]}
                        for n in range(60)]
    run_write(write)
    invalidate_site_cache()
    one = client.get("/consent.js?site=shop&lang=en").get_data()
    assert len(gzip.compress(one, 9)) <= before + 40  # the revision changed: a few bytes
    full = client.get("/api/v1/sites/shop/config?locale=en&details=1").get_json()
    assert sum(len(c.get("services", ())) for c in full["categories"]) >= 60


def test_the_script_carries_its_stylesheet(client):
    js = client.get("/consent.js").get_data(as_text=True)
    more = client.get("/consent-more.js").get_data(as_text=True)
    css = client.get("/consent.css").get_data(as_text=True)
    # the banner's rules in the first layer, the dialog's in the second part (browsers
    # without constructable sheets load all of the stylesheet: the three parts, built
    # from static/widget/consent.src.css without comments; the regions' rules are
    # consent-optout.js's)
    from tests.test_widget_files import load_build

    banner, dialog, region = load_build().stylesheets()
    assert css == banner + dialog + region + "\n" and "/*" not in css
    assert dialog.startswith(".cw-prefs{")
    assert json.dumps(banner) in js and json.dumps(dialog) not in js
    assert ".cw-banner{" in banner and ".cw-prefs" not in js
    # (the minifier may pick other quotes for the stylesheet's own strings)
    assert all(rule in more for rule in dialog.split('content:""'))


def test_the_second_part_is_cached_per_build(client):
    js = client.get("/consent.js").get_data(as_text=True)
    version = re.search(r"consent-more\.js\?v=([0-9a-f]{12})", js).group(1)
    r = client.get(f"/consent-more.js?v={version}")
    assert r.status_code == 200 and r.mimetype == "text/javascript"
    assert r.cache_control.max_age == 365 * 86400 and r.cache_control.immutable
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "window.__consentPart(" in r.get_data(as_text=True)


def inlined_config(js: str) -> dict:
    """The config document a per-site script carries."""
    start = js.index(PLAIN_HEAD) + len(PLAIN_HEAD)
    return json.JSONDecoder().raw_decode(js, start)[0]


# what precedes the config slot in the built first layer (the minifier names it)
PLAIN_HEAD = (Path(__file__).resolve().parents[1] / "static" / "consent.js").read_text(
    encoding="utf-8").split("'@@CONFIG@@'")[0][-40:]


def test_site_script_is_the_widget_with_the_config_document_inlined(client, site):
    plain = client.get("/consent.js").get_data(as_text=True)
    assert "'@@CONFIG@@'" in plain  # the slot stays a string: the widget then fetches
    r = client.get("/consent.js?site=shop&lang=de")
    assert r.status_code == 200 and r.mimetype == "text/javascript"
    js = r.get_data(as_text=True)
    assert inlined_config(js) == config(client, locale="de").get_json()
    assert inlined_config(js)["locales"] == ["en", "de", "fr", "es"]
    # everything around the slot is the widget itself: the lean build (no age rule here:
    # the build without the age code, tests/test_widget_builds.py)
    lean = (Path(__file__).resolve().parents[1] / "static" / "consent-lean.js").read_text(
        encoding="utf-8")
    head, tail = lean.split("'@@CONFIG@@'")
    assert js.startswith(head) and js.endswith(tail)
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Cache-Control"] == "public, max-age=300"
    assert "Accept-Language" not in r.headers.get("Vary", "")
    again = client.get("/consent.js?site=shop&lang=de", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_site_script_follows_accept_language_without_lang(client, site):
    r = client.get("/consent.js?site=shop", headers={"Accept-Language": "fr-CA,fr;q=0.9"})
    assert inlined_config(r.get_data(as_text=True))["locale"] == "fr"
    assert "Accept-Language" in r.headers["Vary"]
    other = client.get("/consent.js?site=shop&v=2", headers={"Accept-Language": "es"})
    assert inlined_config(other.get_data(as_text=True))["locale"] == "es"
    assert other.headers["ETag"] != r.headers["ETag"]


def test_site_script_changes_with_the_site(client, site):
    before = client.get("/consent.js?site=shop&lang=en")
    set_settings("shop", texts={"en": {"title": "Cookies on the test shop"}})
    after = client.get("/consent.js?site=shop&lang=en",
                       headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert inlined_config(after.get_data(as_text=True))["strings"]["title"] == \
        "Cookies on the test shop"


def test_plain_script_inlines_the_config_of_the_site_its_referer_names(client, site, other_site):
    r = client.get("/consent.js", headers={"Referer": site["origin"] + "/",
                                           "Accept-Language": "de"})
    assert r.status_code == 200
    cfg = inlined_config(r.get_data(as_text=True))
    assert cfg["site"] == "shop" and cfg["locale"] == "de"
    assert r.headers["Cache-Control"] == "public, max-age=300"
    # a same-origin page sends its whole URL: only the origin counts
    deep = client.get("/consent.js", headers={"Referer": site["origin"] + "/p/42?x=1"})
    assert inlined_config(deep.get_data(as_text=True))["site"] == "shop"
    other = client.get("/consent.js", headers={"Referer": "https://other.example/a"})
    assert inlined_config(other.get_data(as_text=True))["site"] == "other"


@pytest.mark.parametrize("referer", [None, "https://unknown.example/", "not a url", "https://"])
def test_plain_script_without_a_known_referer_is_the_shared_file(client, site, referer):
    r = client.get("/consent.js", headers={"Referer": referer} if referer else {})
    assert r.status_code == 200 and "'@@CONFIG@@'" in r.get_data(as_text=True)
    assert "max-age=3600" in r.headers["Cache-Control"]


def test_an_origin_two_sites_share_names_neither(client, site):
    def write():
        from consent.sites import create_site
        create_site("shop2", "Second shop", allowed_origins=[site["origin"]])
    run_write(write)
    invalidate_site_cache()
    r = client.get("/consent.js", headers={"Referer": site["origin"] + "/"})
    assert "'@@CONFIG@@'" in r.get_data(as_text=True)


# (an unknown or malformed site key: tests/test_site_readiness.py, the script that says so)
@pytest.mark.parametrize("query, status", [
    ("site=shop&lang=x", 422), ("site=shop&lang=en%22%3B", 422)])
def test_site_script_bad_input(client, site, query, status):
    r = client.get(f"/consent.js?{query}")
    assert r.status_code == status
    assert "CONFIG" not in r.get_data(as_text=True)


def test_config_carries_what_the_widget_needs(client, site):
    cfg = config(client).get_json()
    assert cfg["ttl"] == 300 and cfg["revision"]
    assert set(cfg["strings"]) >= {"title", "text", "acceptAll", "rejectAll", "customise",
                                   "gpc", "policy"}
    analytics = cfg["categories"][2]
    assert analytics["key"] == "analytics" and "locked" not in analytics
    # no services, not even their cookies: the widget deletes those with the details
    assert "services" not in analytics
    assert cfg["categories"][0]["locked"] is True
    assert cfg["policy"]["version"] == cfg["policy"]["materialVersion"] == "2026-01"
    assert cfg["policy"]["url"].endswith("/sites/shop/policies/2026-01")
    assert cfg["policy"]["reconsentAfter"].endswith("Z")
    assert cfg["lifetimes"] == {"acceptDays": 365, "rejectDays": 182}
    assert cfg["cookie"] == {"name": "consent"}  # the defaults are left out
    assert cfg["gpc"] == {"categories": ["advertising"]}
    # what only the dialog shows comes when it opens (details=1), with the endpoints
    assert "description" not in analytics
    full = client.get("/api/v1/sites/shop/config?details=1").get_json()
    assert full["categories"][2]["description"] and full["categories"][2]["services"][0][
        "name"] == "Demo analytics"
    assert full["endpoints"]["decisions"].endswith("/api/v1/sites/shop/decisions")
    assert {k: v for k, v in full.items() if k not in ("categories", "endpoints", "strings")
            } == {k: v for k, v in cfg.items() if k not in ("categories", "strings")}
    # the dialog's "Download proof of my choice" needs the server: its words come with it
    assert "proof" not in cfg["strings"]
    assert full["categories"][2]["services"][0]["cookies"] == [{"pattern": "^_da_", "path": "/"}]
    assert full["strings"] == {**cfg["strings"], "proof": "Download proof of my choice",
                               "services": "Services and cookies", "cookies": "Cookies",
                               "prefsTitle": "Privacy preferences", "save": "Save choices",
                               "close": "Close", "alwaysOn": "Always on",
                               "prefsText": full["strings"]["prefsText"],
                               "more": "All privacy settings (e-mail, SMS, push)"}


def test_config_strings_per_language_and_site_overrides(client, site):
    assert config(client, locale="de").get_json()["strings"]["acceptAll"] == "Alle akzeptieren"
    assert config(client, locale="fr-CA").get_json()["strings"]["rejectAll"] == "Tout refuser"
    assert config(client, locale="es").get_json()["strings"]["customise"] == "Personalizar"
    set_settings("shop", texts={"en": {"title": "Cookies at Example shop"}})
    strings = config(client).get_json()["strings"]
    assert strings["title"] == "Cookies at Example shop"
    assert strings["acceptAll"] == "Accept all"


def test_config_is_readable_by_allowed_origins_only(client, site):
    ok = client.get("/api/v1/sites/shop/config?locale=en", headers={"Origin": site["origin"]})
    assert ok.headers["Access-Control-Allow-Origin"] == site["origin"]
    other = client.get("/api/v1/sites/shop/config?locale=en",
                       headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in ok.headers["Vary"]


def test_cookie_format_round_trip_and_the_widget_form():
    cookie = ConsentCookie(subject="a" * 32, categories={"essential": True, "analytics": False,
                                                         "advertising": True},
                           policy_version="2026-01", decided_at=1795300000,
                           expires_at=1826836000, source="banner", gpc=True)
    assert parse_consent_cookie(format_consent_cookie(cookie)) == cookie
    # exactly what the widget writes with URLSearchParams
    written = ("v=1&s=0123456789abcdef0123456789abcdef&c=essential.functional&d=analytics.advertising"
               "&t=1795300000&e=1826836000&src=preferences&g=0&p=2026-01")
    parsed = parse_consent_cookie(written)
    assert parsed.categories == {"essential": True, "functional": True, "analytics": False,
                                 "advertising": False}
    assert (parsed.policy_version, parsed.source, parsed.gpc) == ("2026-01", "preferences", False)
    assert parsed.event_id is None
    # the recorded decision's id (`i`, for "Download proof of my choice"); anything else
    # in its place is ignored
    recorded = parse_consent_cookie(written + "&i=" + "0f" * 16)
    assert recorded.event_id == "0f" * 16
    assert parse_consent_cookie(format_consent_cookie(recorded)) == recorded
    assert parse_consent_cookie(written + "&i=../../x").event_id is None


@pytest.mark.parametrize("value", [None, "", "v=2&s=" + "a" * 32, "v=1&s=short", "garbage",
                                   "v=1&s=" + "a" * 32 + "&t=soon", "x" * 5000])
def test_malformed_cookies_are_ignored(value):
    assert parse_consent_cookie(value) is None


def post(client, body, **headers):
    return client.post("/api/v1/sites/shop/decisions", json=body, headers=headers)


def test_same_site_deployment_sets_the_cookie_from_the_server(client, site):
    plain = post(client, {"action": "accept_all"}, Origin=site["origin"])
    assert "Set-Cookie" not in plain.headers  # default: the widget writes it
    set_settings("shop", cookie={"domain": "shop.example", "server_set": True})
    r = post(client, {"action": "reject_all"}, Origin=site["origin"])
    assert r.status_code == 201
    header = r.headers["Set-Cookie"]
    assert "Domain=shop.example" in header and "Path=/" in header and "SameSite=Lax" in header
    assert "HttpOnly" not in header  # the widget reads it
    max_age = int(re.search(r"Max-Age=(\d+)", header).group(1))
    assert abs(max_age - 182 * 86400) < 60
    cookie = parse_consent_cookie(header.split(";")[0].split("=", 1)[1])
    assert cookie.subject == r.get_json()["subject"]
    assert cookie.categories["analytics"] is False and cookie.source == "banner"
    assert abs(cookie.expires_at - (time.time() + 182 * 86400)) < 60
    # the cookie carries the device key the server minted and the read token (docs/widget.md)
    assert cookie.key == r.get_json()["key"] and cookie.read_token == r.get_json()["read_token"]
    assert cookie.event_id == r.get_json()["event_id"]  # its receipt is the visitor's proof
    assert set(r.get_json()) == {"event_id", "subject", "recorded_at", "duplicate", "consent",
                                 "key", "read_token"}


def test_gpc_only_cookie_from_the_server_has_no_decision(client, site):
    set_settings("shop", cookie={"server_set": True})
    r = post(client, {"action": "gpc", "source": "gpc"}, Origin=site["origin"])
    cookie = parse_consent_cookie(r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1])
    assert cookie.decided_at == 0 and cookie.gpc and cookie.categories["advertising"] is False
    assert cookie.expires_at > time.time()


def test_widget_files_are_cacheable_and_readable_from_any_origin(client):
    for path, mimetype in (("/consent.js", "text/javascript"), ("/consent.css", "text/css")):
        r = client.get(path)
        assert r.status_code == 200 and r.mimetype == mimetype
        assert "max-age=3600" in r.headers["Cache-Control"]
        assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_gpc_well_known_resource(client):
    r = client.get("/.well-known/gpc.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert body["gpc"] is True and re.fullmatch(r"\d{4}-\d{2}-\d{2}", body["lastUpdate"])


def test_demo_page_embeds_the_widget_under_a_strict_csp(client, app):
    r = client.get("/")
    html = r.get_data(as_text=True)
    csp = r.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert re.search(r'<script src="/consent.js\?site=demo"></script>', html)
    assert f'data-category="advertising" nonce="{nonce}"' in html
    assert 'data-category="analytics" data-src=' in html and "data-consent-open" in html
    assert client.get("/").headers["Content-Security-Policy"] != csp  # fresh nonce each time


def test_config_document_is_cached_per_revision(app, client, site):
    from consent import widget_config
    from consent.policies import publish_policy

    app.config["CONSENT_SITE_CACHE_SECONDS"] = 60
    widget_config._documents.clear()
    first = config(client)
    assert config(client).headers["ETag"] == first.headers["ETag"]
    assert len(widget_config._documents) == 1
    site_id = db.session.execute(db.select(Site.id).where(Site.key == "shop")).scalar_one()
    run_write(lambda: publish_policy(site_id, "2026-02", text="v2", material=True))
    fresh = config(client)  # a new revision is a new document, at once
    assert fresh.get_json()["policy"]["version"] == "2026-02"
    assert fresh.headers["ETag"] != first.headers["ETag"]
    assert config(client, locale="de").get_json()["locale"] == "de"


@pytest.mark.parametrize("path", ["/consent.js", "/consent-more.js", "/consent.css",
                                  "/consent.js?site=shop&lang=de"])
def test_widget_files_are_served_compressed_by_accept_encoding(client, site, path):
    import brotli

    plain = client.get(path, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    body = plain.get_data()
    gz = client.get(path, headers={"Accept-Encoding": "gzip, deflate"})
    br = client.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
    no_br = client.get(path, headers={"Accept-Encoding": "gzip, br;q=0"})
    assert gz.headers["Content-Encoding"] == "gzip" and gzip.decompress(gz.get_data()) == body
    assert br.headers["Content-Encoding"] == "br" and brotli.decompress(br.get_data()) == body
    assert no_br.headers["Content-Encoding"] == "gzip"
    assert len(br.get_data()) < len(gz.get_data()) < len(body)
    for r in (plain, gz, br):
        assert "Accept-Encoding" in r.headers["Vary"]
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    # one ETag per encoding, each answered 304 only for its own encoding
    tags = {r.headers["ETag"] for r in (plain, gz, br)}
    assert len(tags) == 3
    again = client.get(path, headers={"Accept-Encoding": "br", "If-None-Match": br.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    other = client.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": br.headers["ETag"]})
    assert other.status_code == 200 and other.headers["Content-Encoding"] == "gzip"
