"""Finding 5: every entry point accepts only absolute http(s) policy URLs."""
from __future__ import annotations

import pytest

from consent.database import run_write
from consent.extensions import db
from consent.policies import PolicyVersion, publish_policy
from consent.sites import get_site
from tests.security.sec_fixtures import mode, mode_app, mode_client, mode_site  # noqa: F401
from tests.support.admin import make_admin, make_token, session_csrf, sign_in  # noqa: F401
from tests.support.api import bearer

BAD_URLS = ["javascript:alert(document.cookie)", "JavaScript:alert(1)",
            " javascript:alert(1)", "java\tscript:alert(1)", "data:text/html,<script>1</script>",
            "//evil.example/p", "/relative/policy", "https:evil.example",
            "https://user:pw@evil.example/", "http://exa mple.com/", "vbscript:msgbox(1)",
            "https://\\evil.example"]


def _versions() -> list[str]:
    db.session.expire_all()
    return [v.label for v in db.session.execute(db.select(PolicyVersion)).scalars()]


@pytest.mark.parametrize("url", BAD_URLS[:4])
def test_cli_refuses_a_non_http_policy_url(mode_app, mode_site, url):
    result = mode_app.test_cli_runner().invoke(
        args=["consent", "publish-policy", mode_site["key"], "2026-09", "--url", url])
    assert result.exit_code != 0, result.output
    assert "http(s)" in result.output or "URL" in result.output
    assert "2026-09" not in _versions()


def test_cli_accepts_an_https_policy_url(mode_app, mode_site):
    result = mode_app.test_cli_runner().invoke(
        args=["consent", "publish-policy", mode_site["key"], "2026-09", "--url",
              "https://shop.example/privacy?v=2026-09"])
    assert result.exit_code == 0, result.output
    assert "2026-09" in _versions()


@pytest.mark.parametrize("url", BAD_URLS)
def test_service_used_by_profiles_refuses_a_non_http_policy_url(mode_app, mode_site, url):
    with pytest.raises(ValueError):
        run_write(lambda: publish_policy(get_site(mode_site["key"]).id, "2026-10", url=url))
    assert "2026-10" not in _versions()


@pytest.mark.parametrize("url", BAD_URLS[:3])
def test_api_and_admin_form_refuse_a_non_http_policy_url(mode_app, mode_client, mode_site, url):
    token = make_token(["policies:write", "audit:read"])
    r = mode_client.post(f"/api/v1/audit/sites/{mode_site['key']}/policies",
                         json={"label": "2026-11", "url": url}, headers=bearer(token))
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert any(e["pointer"] == "#/url" for e in r.get_json()["errors"])
    sign_in(mode_client, make_admin())
    r = mode_client.post(f"/admin/sites/{mode_site['key']}/policies",
                         data={"label": "2026-12", "url": url, "csrf_token": session_csrf(mode_client, f"/admin/sites/{mode_site['key']}/")})
    assert r.status_code == 422
    assert {"2026-11", "2026-12"}.isdisjoint(_versions())
