"""Finding 12: links and the widget configuration are never built from an untrusted
Host header. Production requires an https CONSENT_PUBLIC_URL, refuses other hosts and
believes X-Forwarded-* only from the configured number of proxies."""
from __future__ import annotations

import pytest

from consent import create_app
from consent.channels import mint_unsubscribe_token
from tests.security.sec_fixtures import (DATA_KEY, PROD_SECRET, PUBLIC_URL,  # noqa: F401
                                         SIGNING_KEY,
                                         build_app, client_for, mode, mode_app, mode_client,
                                         mode_site)
from tests.support.admin import make_token, record_choice  # noqa: F401
from tests.support.api import bearer

EVIL = "evil.example"


def _prod(**extra) -> dict:
    return {"ENV_NAME": "production", "SECRET_KEY": PROD_SECRET, "CONSENT_DATA_KEY": DATA_KEY,
            "CONSENT_SIGNING_KEY": SIGNING_KEY, "SQLALCHEMY_DATABASE_URI": "sqlite://", **extra}


@pytest.mark.parametrize("url", [None, "", "http://consent.example", "consent.example",
                                 "https://", "https://consent.example/?x=1",
                                 "https://user:pw@consent.example"])
def test_production_refuses_to_start_without_an_https_public_url(url):
    extra = {} if url is None else {"CONSENT_PUBLIC_URL": url}
    with pytest.raises(RuntimeError, match="CONSENT_PUBLIC_URL"):
        create_app(_prod(**extra))


def test_production_refuses_other_hosts(mode_app, mode_client, mode_site, mode):
    r = mode_client.get(f"/api/v1/sites/{mode_site['key']}/config",
                        base_url=f"https://{EVIL}")
    if mode == "production":
        assert r.status_code == 400 and r.mimetype == "application/problem+json"
    else:
        assert r.status_code == 200  # development follows the request's host


def _get(app, path: str, host: str, accept: str | None = None):
    """GET PATH with a raw Host header (the test client's cookie jar cannot parse some)."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    environ = EnvironBuilder(path=path, headers={"Accept": accept} if accept else None
                             ).get_environ()
    environ["HTTP_HOST"] = host
    body, status, headers = run_wsgi_app(app, environ, buffered=True)
    return int(status.split()[0]), headers.get("Content-Type", ""), b"".join(body)


@pytest.mark.parametrize("host", [EVIL, "a" * 64, "a..b", "xn--a", "[::1", "a:99999"])
def test_a_refused_or_malformed_host_gets_a_400_page_not_a_500(mode_app, mode_site, mode,
                                                                host):
    # An outside review: the HTML error page of a refused Host (production) built links
    # without a URL adapter, and odd names broke Werkzeug's IDNA round trip (development):
    # 500s with a traceback in the log for every such request.
    if mode == "development" and host == EVIL:
        return  # development follows the request's host (the test above)
    for path in ("/healthz", f"/preferences?site={mode_site['key']}", "/no-such-page",
                 f"/api/v1/sites/{mode_site['key']}/config", f"/consent.js?site={mode_site['key']}"):
        for accept in (None, "text/html", "application/json"):
            status, kind, body = _get(mode_app, path, host, accept)
            assert status == 400, (path, accept, status, body[:300])
            assert kind.split(";")[0] in ("text/html", "application/problem+json"), kind


INTERNAL = "consent.internal.example"


def test_widget_config_and_links_use_the_public_url(database_url):
    """Even a host the app answers to (an internal name, also forwarded by a trusted
    proxy) never makes it into links or the cacheable widget configuration."""
    app = build_app("production", database_url, CONSENT_EXTRA_HOSTS=[INTERNAL],
                    CONSENT_PROXY_HOST=1, CONSENT_PROXY_PROTO=1)
    with app.app_context():
        from consent.database import run_write
        from consent.policies import publish_policy
        from consent.sites import create_api_key, create_site

        def write():
            s = create_site("shop", "Shop", allowed_origins=["https://shop.example"])
            publish_policy(s.id, "2026-01", text="Policy", material=True)
            return create_api_key(s)

        api_key = run_write(write)
        client = client_for(app, "production")
        client.base_url = f"http://{INTERNAL}"
        headers = {"X-Forwarded-Host": INTERNAL, "X-Forwarded-Proto": "http",
                   "Origin": "https://shop.example"}
        for url in ("/api/v1/sites/shop/config", "/consent.js?site=shop"):
            r = client.get(url, headers=headers)
            assert r.status_code == 200, url
            body = r.get_data(as_text=True)
            assert INTERNAL not in body and "http://consent.example" not in body
            assert PUBLIC_URL in body, url
        # A forwarded host the app does not know is refused, not reflected.
        r = client.get("/api/v1/sites/shop/config", headers={"X-Forwarded-Host": EVIL})
        assert r.status_code == 400 and EVIL not in r.get_data(as_text=True)
        link = mint_unsubscribe_token("shop", "email.promotional", "ann@example.com")
        token = make_token(["requests:write", "audit:read"])
        visitor = record_choice("shop")
        r = client.post("/api/v1/audit/sites/shop/requests", headers={**bearer(token), **headers},
                        json={"kind": "access", "subject": visitor})
        assert r.get_json()["access_link"].startswith(PUBLIC_URL + "/my-data/")
        r = client.post("/api/v1/sites/shop/login-links", headers={
            **headers, "Authorization": f"Bearer {api_key}"}, json={"user_id": "u-1"})
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.get_json()["url"].startswith(PUBLIC_URL + "/preferences/login")
        r = client.post("/api/v1/sites/shop/unsubscribe-links", headers={
            **headers, "Authorization": f"Bearer {api_key}"},
            json={"channel": "email", "kind": "promotional", "address": "bob@example.com"})
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.get_json()["url"].startswith(PUBLIC_URL + "/unsubscribe/shop/")
        assert link.token


def test_public_url_with_a_prefix_and_proxy_hops(database_url):
    """Behind two proxies: only the two right-most X-Forwarded-For entries are believed,
    and links carry the public URL's prefix."""
    app = build_app("production", database_url, CONSENT_PUBLIC_URL=PUBLIC_URL + "/consent",
                    CONSENT_PROXY_FOR=2, CONSENT_PROXY_PROTO=1)
    with app.app_context():
        from flask import url_for

        from consent.web.common import client_ip

        with app.test_request_context("/x", base_url=PUBLIC_URL, headers={
                "X-Forwarded-For": "6.6.6.6, 203.0.113.5, 10.0.0.2"}):
            app.preprocess_request()
            assert url_for("pages.policy_version", site_key="s", label="1", _external=True) \
                == PUBLIC_URL + "/consent/sites/s/policies/1"
        client = client_for(app, "production")
        seen = {}

        @app.get("/__ip")
        def _ip():
            seen["ip"] = client_ip()
            return "ok"

        client.get("/__ip", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.5, 10.0.0.2"})
        assert seen["ip"] == "203.0.113.5"


def test_development_without_proxy_settings_ignores_x_forwarded_for(database_url):
    app = build_app("development", database_url)
    from consent.web.common import client_ip

    seen = {}

    @app.get("/__ip")
    def _ip():
        seen["ip"] = client_ip()
        return "ok"

    app.test_client().get("/__ip", headers={"X-Forwarded-For": "6.6.6.6"})
    assert seen["ip"] == "127.0.0.1"
