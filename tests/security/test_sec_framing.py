"""Finding 10: no HTML page can be framed (clickjacking of consent, unsubscribe, my-data
and admin pages); the widget script, the JSON API and static files are not pages."""
from __future__ import annotations

from consent.channels import mint_unsubscribe_token
from tests.security.sec_fixtures import mode, mode_app, mode_client, mode_site  # noqa: F401
from tests.support.admin import make_admin, make_token, record_choice, sign_in  # noqa: F401
from tests.support.api import bearer


def _assert_unframeable(response, what):
    csp = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, (what, csp)
    assert response.headers.get("X-Frame-Options") == "DENY", what


def test_every_html_page_refuses_to_be_framed(mode_app, mode_client, mode_site):
    key = mode_site["key"]
    visitor = record_choice(key, "accept_all")
    link = mint_unsubscribe_token(key, "email.promotional", "ann@example.com")
    token = make_token(["requests:write", "audit:read"])
    access = mode_client.post(f"/api/v1/audit/sites/{key}/requests",
                              json={"kind": "access", "subject": visitor},
                              headers=bearer(token)).get_json()["access_link"]
    pages = {
        "preferences": f"/preferences?site={key}",
        "unsubscribe": f"/unsubscribe/{key}/{link.token}",
        "my-data": "/" + access.split("://", 1)[1].split("/", 1)[1],
        "policy archive": f"/sites/{key}/policies/2026-01",
        "sign-in": "/admin/sign-in",
        "error page": "/preferences?site=nope",
    }
    for what, url in pages.items():
        r = mode_client.get(url, headers={"Accept": "text/html"})
        assert r.mimetype == "text/html", (what, r.status_code)
        _assert_unframeable(r, what)
    sign_in(mode_client, make_admin())
    for url in (f"/admin/sites/{key}/", f"/admin/sites/{key}/webhooks", "/admin/users",
                "/admin/account/password"):
        r = mode_client.get(url)
        assert r.status_code == 200, url
        _assert_unframeable(r, url)
    # The consent form is framed nowhere, POSTed answers included.
    r = mode_client.post("/preferences", data={"site": key}, headers={"Accept": "text/html"})
    if r.mimetype == "text/html":
        _assert_unframeable(r, "preferences POST")


def test_script_api_and_static_files_are_not_pages(mode_app, mode_client, mode_site):
    for url in ("/consent.js", f"/api/v1/sites/{mode_site['key']}/config",
                "/static/pages.css"):
        r = mode_client.get(url)
        assert r.status_code in (200, 304), url
        assert "X-Frame-Options" not in r.headers, url
