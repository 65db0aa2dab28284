"""Finding 8: signing out ends the session on the server (a copied cookie stops working),
admins can change their password (page and CLI), and the session and access-link
lifetimes come from the environment and are honoured."""
from __future__ import annotations

import importlib
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.security.sec_fixtures import (base_url, client_for, mode, mode_app,  # noqa: F401
                                         mode_client, mode_site)
from tests.support.admin import (PASSWORD, make_admin, make_token,  # noqa: F401
                                 record_choice, session_csrf, sign_in)
from tests.support.api import bearer

NEW_PASSWORD = "a brand new passphrase 2026"


def _copy_cookie(src, dst, mode: str) -> None:
    host = base_url(mode).split("://", 1)[1]
    for cookie in src._cookies.values():
        dst.set_cookie(cookie.key, cookie.value, domain=host)


def _signed_in(client) -> bool:
    r = client.get("/admin/users")
    return r.status_code == 200


def test_sign_out_invalidates_every_copy_of_the_session(mode_app, mode_client, mode, mode_site):
    email = make_admin()
    assert sign_in(mode_client, email).status_code == 302
    thief = client_for(mode_app, mode)
    _copy_cookie(mode_client, thief, mode)
    assert _signed_in(thief)
    r = mode_client.post("/admin/sign-out",
                         data={"csrf_token": session_csrf(mode_client, "/admin/users")})
    assert r.status_code == 302
    assert not _signed_in(mode_client)
    r = thief.get("/admin/users")
    assert r.status_code == 302 and "/admin/sign-in" in r.headers["Location"]
    # Signing in again works (a new session).
    assert sign_in(mode_client, email).status_code == 302 and _signed_in(mode_client)


def test_password_change_page(mode_app, mode_client, mode, mode_site):
    email = make_admin()
    sign_in(mode_client, email)
    other_device = client_for(mode_app, mode)
    sign_in(other_device, email)
    assert mode_client.get("/admin/account/password").status_code == 200
    r = mode_client.post("/admin/account/password", data={
        "current": "not my password", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
        "csrf_token": session_csrf(mode_client, "/admin/account/password")})
    assert r.status_code == 422
    r = mode_client.post("/admin/account/password", data={
        "current": PASSWORD, "password": "short", "confirm": "short", "csrf_token": session_csrf(mode_client, "/admin/account/password")})
    assert r.status_code == 422
    r = mode_client.post("/admin/account/password", data={
        "current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
        "csrf_token": session_csrf(mode_client, "/admin/account/password")})
    assert r.status_code == 302
    assert _signed_in(mode_client)          # this browser goes on
    assert not _signed_in(other_device)     # every other session ended
    fresh = client_for(mode_app, mode)
    assert sign_in(fresh, email, PASSWORD).status_code == 401
    assert sign_in(fresh, email, NEW_PASSWORD).status_code == 302


def test_password_change_cli(mode_app, mode_client, mode):
    email = make_admin()
    sign_in(mode_client, email)
    result = mode_app.test_cli_runner().invoke(
        args=["consent", "set-admin-password", email], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert not _signed_in(mode_client)
    assert sign_in(client_for(mode_app, mode), email, NEW_PASSWORD).status_code == 302
    result = mode_app.test_cli_runner().invoke(
        args=["consent", "set-admin-password", "nobody@example.com"],
        input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code != 0


def test_lifetimes_are_read_from_the_environment(monkeypatch):
    import config as config_module

    monkeypatch.setenv("CONSENT_ADMIN_SESSION_HOURS", "2")
    monkeypatch.setenv("CONSENT_ACCESS_LINK_DAYS", "3")
    try:
        importlib.reload(config_module)
        settings = config_module.config_for("production")
        assert settings.CONSENT_ADMIN_SESSION_HOURS == 2
        assert settings.CONSENT_ACCESS_LINK_DAYS == 3
        monkeypatch.setenv("CONSENT_ACCESS_LINK_DAYS", "soon")
        with pytest.raises(RuntimeError, match="CONSENT_ACCESS_LINK_DAYS"):
            importlib.reload(config_module)
    finally:
        monkeypatch.delenv("CONSENT_ADMIN_SESSION_HOURS")
        monkeypatch.delenv("CONSENT_ACCESS_LINK_DAYS")
        importlib.reload(config_module)


def test_admin_session_hours_are_honoured(mode_app, mode_client):
    sign_in(mode_client, make_admin())
    with mode_client.session_transaction() as sess:
        sess["admin"] = {**sess["admin"], "at": int(time.time()) - 3 * 3600}
    mode_app.config["CONSENT_ADMIN_SESSION_HOURS"] = 4
    assert _signed_in(mode_client)
    mode_app.config["CONSENT_ADMIN_SESSION_HOURS"] = 2
    assert not _signed_in(mode_client)


class _Backdated(TimestampSigner):
    def get_timestamp(self):
        return int(time.time()) - 3 * 86400


def test_access_link_days_are_honoured(mode_app, mode_client, mode_site):
    token = make_token(["requests:write", "audit:read"])
    r = mode_client.post(f"/api/v1/audit/sites/{mode_site['key']}/requests",
                         json={"kind": "access", "subject": record_choice(mode_site["key"])},
                         headers=bearer(token))
    rid = r.get_json()["id"]
    old = URLSafeTimedSerializer(mode_app.config["SECRET_KEY"], salt="consent-access-v1",
                                 signer=_Backdated).dumps({"r": rid, "s": 1})
    mode_app.config["CONSENT_ACCESS_LINK_DAYS"] = 2
    r = mode_client.get(f"/my-data/{old}")
    assert r.status_code == 403 and b"expired" in r.data
    mode_app.config["CONSENT_ACCESS_LINK_DAYS"] = 5
    assert mode_client.get(f"/my-data/{old}").status_code == 200
