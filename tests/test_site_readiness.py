"""A site set up the wrong way says so: origins checked where they are entered, a key that
names no site, what a new site still lacks (create-site, check-site, the dashboard)."""
from __future__ import annotations

import re

import pytest

from consent.database import run_write
from consent.extensions import db
from consent.sites import BadOrigin, Site, get_site, invalidate_site_cache, normalise_origin
from tests.support.admin import post_form


def stored_origins(key: str) -> list[str]:
    db.session.rollback()
    return db.session.execute(db.select(Site.allowed_origins).where(Site.key == key)).scalar_one()


@pytest.mark.parametrize("typed, stored", [
    ("http://127.0.0.2:5202/", "http://127.0.0.2:5202"),
    ("HTTPS://Shop.Example", "https://shop.example"),
    ("https://shop.example:443", "https://shop.example"),
    ("http://shop.example:80/", "http://shop.example"),
    ("http://shop.example:8080", "http://shop.example:8080"),
    ("http://[0:0::1]:5000", "http://[::1]:5000"),
    ("https://bücher.example", "https://xn--bcher-kva.example"),
    ("*", "*"),
])
def test_origins_are_stored_as_browsers_send_them(typed, stored):
    assert normalise_origin(typed) == stored


@pytest.mark.parametrize("typed, hint", [
    ("127.0.0.2:5202", "did you mean http://127.0.0.2:5202?"),
    ("shop.example", "did you mean https://shop.example?"),
    ("https://shop.example/cart", "did you mean https://shop.example?"),
    ("https://shop.example?x=1", "did you mean https://shop.example?"),
    ("https://user@shop.example", "did you mean https://shop.example?"),
    ("https://*.shop.example", "list each origin"),
    ("ftp://shop.example", "only http and https"),
    ("http://[::1", "cannot be read"),
    ("http://shop.example:99999", "cannot be read"),
    ("http://exa mple.com", "not a host name"),
    ("http://\ud800.example", "not a host name"),
    ("", "cannot be empty"),
])
def test_anything_else_is_refused_with_the_corrected_form(typed, hint):
    with pytest.raises(BadOrigin) as refused:
        normalise_origin(typed)
    assert hint in str(refused.value)


def test_create_site_normalises_and_refuses_origins(app, runner):
    r = runner.invoke(args=["consent", "create-site", "good", "Good",
                            "--origin", "http://127.0.0.2:5202/",
                            "--origin", "HTTP://127.0.0.2:5202"])
    assert r.exit_code == 0, r.output
    assert stored_origins("good") == ["http://127.0.0.2:5202"]
    assert "allowed origins: http://127.0.0.2:5202" in r.output
    r = runner.invoke(args=["consent", "create-site", "bad", "Bad", "--origin", "127.0.0.2:5202"])
    assert r.exit_code == 1
    assert "did you mean http://127.0.0.2:5202?" in r.output
    assert db.session.execute(db.select(Site).where(Site.key == "bad")).first() is None


def test_create_site_prints_the_embed_code_and_the_next_steps(app, runner):
    r = runner.invoke(args=["consent", "create-site", "fresh", "Fresh shop"])
    assert r.exit_code == 0, r.output
    assert '<script src="https://CONSENT_HOST/consent.js?site=fresh"></script>' in r.output
    assert "site 'fresh' is not ready" in r.output
    for missing in ("no allowed origin", "no policy version",
                    "category 'analytics' lists no services"):
        assert missing in r.output
    assert "flask consent check-site fresh" in r.output


def test_check_site_lists_what_is_missing_until_it_is_fixed(app, runner):
    from consent.policies import publish_policy
    from consent.site_admin import update_category

    assert runner.invoke(args=["consent", "create-site", "fresh", "Fresh shop"]).exit_code == 0
    r = runner.invoke(args=["consent", "check-site", "fresh"])
    assert r.exit_code == 1
    assert "no allowed origin" in r.output and "no policy version" in r.output
    assert "category 'functional' lists no services" in r.output
    run_write(lambda: get_site("fresh").__setattr__("allowed_origins", ["https://fresh.example"]))
    run_write(lambda: publish_policy(get_site("fresh").id, "1", url="https://fresh.example/p"))
    for key in ("functional", "analytics", "advertising"):
        update_category("fresh", key, titles={"en": key.title()}, descriptions={},
                        services=[{"name": "Tool", "cookies": [{"name": f"_{key}"}]}])
        r = runner.invoke(args=["consent", "check-site", "fresh"])
    assert r.exit_code == 0, r.output
    assert "site 'fresh' is ready" in r.output
    assert runner.invoke(args=["consent", "check-site", "nope"]).exit_code == 1


def test_a_service_without_cookies_is_reported(app, runner, site):
    from consent.site_admin import update_category

    assert runner.invoke(args=["consent", "check-site", "shop"]).exit_code == 0
    update_category("shop", "analytics", titles={"en": "Analytics"}, descriptions={},
                    services=[{"name": "Counter"}])
    r = runner.invoke(args=["consent", "check-site", "shop"])
    assert r.exit_code == 1 and "category 'analytics' names no cookies" in r.output
    # a service whose traces are storage keys only is not a gap
    update_category("shop", "analytics", titles={"en": "Analytics"}, descriptions={},
                    services=[{"name": "Heatmaps", "storage": [{"name": "_hjid"}]}])
    r = runner.invoke(args=["consent", "check-site", "shop"])
    assert "'analytics'" not in r.output, r.output


def test_seed_demo_adds_origins_to_the_existing_demo_site(app, runner):
    first = runner.invoke(args=["consent", "seed-demo", "--origin", "http://127.0.0.1:5000"])
    assert first.exit_code == 0 and "API key" in first.output
    again = runner.invoke(args=["consent", "seed-demo", "--origin", "http://127.0.0.1:5001/",
                                "--origin", "http://localhost:5001"])
    assert again.exit_code == 0
    assert "added allowed origin(s): http://127.0.0.1:5001, http://localhost:5001" in again.output
    assert stored_origins("demo") == ["http://127.0.0.1:5000", "http://127.0.0.1:5001",
                                      "http://localhost:5001"]
    same = runner.invoke(args=["consent", "seed-demo", "--origin", "http://127.0.0.1:5001"])
    assert same.exit_code == 0 and "added" not in same.output
    bad = runner.invoke(args=["consent", "seed-demo", "--origin", "localhost:5002"])
    assert bad.exit_code == 1 and "did you mean http://localhost:5002?" in bad.output
    assert len(stored_origins("demo")) == 3


def test_the_admin_and_profiles_check_origins_the_same_way(app, admin):
    from consent.errors import Invalid
    from consent.profiles import load_profile

    r = post_form(admin, "/admin/sites", {
        "key": "blog", "name": "Blog",
        "allowed_origins": "HTTPS://Blog.Example/\nhttps://blog.example"})
    assert r.status_code == 302
    assert stored_origins("blog") == ["https://blog.example"]
    r = post_form(admin, "/admin/sites", {"key": "blog2", "name": "Blog",
                                          "allowed_origins": "blog.example"})
    assert r.status_code == 422 and "did you mean https://blog.example?" in r.data.decode()
    with pytest.raises(Invalid) as refused:
        load_profile("scheduling", origins=["https://app.example/path"])
    assert "did you mean https://app.example?" in refused.value.detail
    load_profile("scheduling", origins=["HTTPS://App.Example:443/"])
    key = db.session.execute(db.select(Site.key).where(Site.key != "blog")).scalars().first()
    assert stored_origins(key) == ["https://app.example"]


def test_an_origin_stored_before_normalisation_still_matches(client, site):
    run_write(lambda: get_site("shop").__setattr__("allowed_origins", ["HTTPS://Shop.Example/"]))
    invalidate_site_cache()
    r = client.post("/api/v1/sites/shop/decisions", json={"action": "reject_all"},
                    headers={"Origin": "https://shop.example"})
    assert r.status_code == 201


# ---------------------------------------------------------------- an unknown site key


@pytest.mark.parametrize("key", ["nope-site", "a", "shop<script>", "x" * 100])
def test_an_unknown_site_key_gets_a_script_that_says_so(client, site, key):
    r = client.get("/consent.js", query_string={"site": key})
    # 200: a browser does not run a script answered with an error status
    assert r.status_code == 200 and r.mimetype == "text/javascript"
    assert r.headers["X-Consent-Site"] == "unknown" and "no-cache" in r.headers["Cache-Control"]
    body = r.get_data(as_text=True)
    assert "console.error" in body and "consent: unknown site key '" in body
    assert "get: () => null" in body and "CONFIG" not in body
    assert '"consent", "default"' in body  # Consent Mode: everything denied
    assert "<" not in body.split("const key = ")[1].split(",")[0]  # the key, escaped
    assert f'const key = "{key[:64]}"' in body or "\\u003c" in body


# ---------------------------------------------------------------- the dashboard


def test_the_dashboard_says_what_a_site_lacks(app, runner, admin):
    assert runner.invoke(args=["consent", "create-site", "fresh", "Fresh shop"]).exit_code == 0
    page = admin.get("/admin/sites/fresh/").data.decode()
    assert 'id="site-gaps"' in page and "This site is not ready" in page
    assert "no allowed origin" in page and "no policy version" in page
    assert "flask consent check-site fresh" in page
    # each gap links the admin page that fixes it, and those pages answer
    links = dict((label, url) for url, label in re.findall(
        r'<a href="(/admin/sites/fresh/[^"]*)">([^<]+)</a></li>', page))
    assert links["Policies"] == "/admin/sites/fresh/policies"
    assert links["General settings"] == "/admin/sites/fresh/settings/general"
    assert links["Category analytics"] == "/admin/sites/fresh/settings/categories/analytics"
    for url in links.values():
        assert admin.get(url).status_code == 200, url


def test_a_ready_site_shows_no_gaps(app, site, admin):
    assert 'id="site-gaps"' not in admin.get("/admin/sites/shop/").data.decode()
