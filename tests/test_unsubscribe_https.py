"""RFC 8058: the List-Unsubscribe URI minted in production is HTTPS, whatever scheme the
request reached the app with (plain http behind a TLS-terminating proxy) and whatever
http base a site's settings name."""
from __future__ import annotations

import pytest

from consent import create_app
from consent.database import run_write
from consent.sites import create_api_key, create_site, get_site, invalidate_site_cache
from tests.security.sec_fixtures import PUBLIC_URL, build_app, production_config


@pytest.fixture
def prod(database_url):
    app = build_app("production", database_url)
    with app.app_context():
        key = run_write(lambda: create_api_key(create_site("shop", "Shop")))
        yield app, key
    invalidate_site_cache()


def mint(app, key, base_url):
    client = app.test_client()
    r = client.post("/api/v1/sites/shop/unsubscribe-links", base_url=base_url,
                    json={"channel": "email", "address": "reader@example.test"},
                    headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_links_are_https_when_the_request_came_over_http(prod):
    app, key = prod
    body = mint(app, key, "http://consent.example")
    assert body["url"].startswith(f"{PUBLIC_URL}/unsubscribe/shop/")
    assert body["headers"]["List-Unsubscribe"] == f"<{body['url']}>"


def test_an_http_base_in_the_site_settings_is_not_used_in_production(prod):
    app, key = prod

    def write():
        site = get_site("shop")
        site.settings = {**site.settings, "public_base_url": "http://links.shop.example"}
    run_write(write)
    invalidate_site_cache()
    assert mint(app, key, "http://consent.example")["url"].startswith("https://consent.example/")

    def https_base():
        site = get_site("shop")
        site.settings = {**site.settings, "public_base_url": "https://links.shop.example"}
    run_write(https_base)
    invalidate_site_cache()
    assert mint(app, key, "http://consent.example")["url"].startswith(
        "https://links.shop.example/unsubscribe/shop/")


def test_production_refuses_an_http_public_url():
    with pytest.raises(RuntimeError, match="https"):
        create_app(production_config("sqlite://", CONSENT_PUBLIC_URL="http://consent.example"))
