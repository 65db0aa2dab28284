"""Admin sign-in with hashed passwords, sessions, API tokens and the CLI (throttling of
failed sign-ins, which replaced the account lock: tests/security/test_sec_rate_limits.py)."""
from __future__ import annotations

from consent import admin_auth
from consent.admin_auth import AdminToken, AdminUser
from consent.database import run_write
from consent.extensions import db
from tests.support.admin import (PASSWORD, make_admin, make_token, post_form, session_csrf,
                                 sign_in)
from tests.support.api import bearer


def test_password_is_stored_hashed(app):
    make_admin("a@example.com")
    user = db.session.execute(db.select(AdminUser)).scalar_one()
    assert PASSWORD not in user.password_hash
    assert user.password_hash.startswith(("scrypt:", "pbkdf2:"))


def test_outside_tests_passwords_get_the_full_scrypt_cost(database_url):
    # The test settings use a cheap hash for speed; every other setting keeps full cost,
    # and a hash made at full cost still signs in under any setting.
    from consent import create_app

    app = create_app({"ENV_NAME": "development", "SQLALCHEMY_DATABASE_URI": database_url,
                      "SECRET_KEY": "development-test-secret",
                      "CONSENT_LOG_INTEGRATE_SECONDS": 0})  # (no thread outliving the test)
    with app.app_context():
        make_admin("full@example.com")
        stored = db.session.execute(db.select(AdminUser.password_hash)).scalar_one()
        assert stored.startswith("scrypt:32768:8:1$")
        assert sign_in(app.test_client(), "full@example.com").status_code == 302
        db.session.remove()
        db.engine.dispose()


def test_sign_in_then_dashboard_then_sign_out(app, site):
    client = app.test_client()
    make_admin("a@example.com", ("audit:read",))
    r = client.get(f"/admin/sites/{site['key']}/")
    assert r.status_code == 302 and "/admin/sign-in" in r.headers["Location"]
    assert client.get("/admin/sign-in").status_code == 200
    r = sign_in(client, "A@Example.com ")
    assert r.status_code == 302
    assert client.get(f"/admin/sites/{site['key']}/").status_code == 200
    r = post_form(client, "/admin/sign-out", page=f"/admin/sites/{site['key']}/")
    assert r.status_code == 302
    assert client.get(f"/admin/sites/{site['key']}/").status_code == 302


def test_wrong_password_is_refused_without_a_session(app, site):
    client = app.test_client()
    make_admin("a@example.com")
    r = sign_in(client, "a@example.com", "not the password")
    assert r.status_code == 401
    assert b"wrong e-mail address or password" in r.data
    assert client.get(f"/admin/sites/{site['key']}/").status_code == 302
    r = sign_in(client, "nobody@example.com")
    assert r.status_code == 401


def test_sign_in_needs_the_csrf_token(app):
    client = app.test_client()
    make_admin("a@example.com")
    r = client.post("/admin/sign-in", data={"email": "a@example.com", "password": PASSWORD})
    assert r.status_code == 403


def test_a_session_ends_after_its_maximum_length(app, site, clock):
    app.config["CONSENT_ADMIN_SESSION_HOURS"] = 12
    client = app.test_client()
    make_admin("a@example.com")
    assert sign_in(client, "a@example.com").status_code == 302
    url = f"/admin/sites/{site['key']}/"
    clock.advance(hours=11, minutes=59)
    assert client.get(url).status_code == 200  # in use all day: still signed in
    clock.advance(minutes=2)
    r = client.get(url)
    assert r.status_code == 302 and "/admin/sign-in" in r.headers["Location"]
    late = client.post("/admin/tokens", data={
        "name": "late", "csrf_token": session_csrf(client, "/admin/sign-in")})
    assert late.status_code == 401


def test_next_parameter_only_redirects_inside_the_admin(app, site):
    client = app.test_client()
    make_admin("a@example.com")
    r = sign_in(client, "a@example.com", next="https://evil.example/")
    assert r.headers["Location"].endswith("/admin/")
    r = sign_in(client, "a@example.com", next=f"/admin/sites/{site['key']}/policies")
    assert r.headers["Location"].endswith(f"/admin/sites/{site['key']}/policies")


def test_password_change_and_disable_end_existing_sessions(app, site):
    client = app.test_client()
    make_admin("a@example.com")
    sign_in(client, "a@example.com")
    url = f"/admin/sites/{site['key']}/"
    assert client.get(url).status_code == 200
    user = db.session.execute(db.select(AdminUser)).scalar_one()
    run_write(lambda: admin_auth.set_password(user.id, "another long password"))
    assert client.get(url).status_code == 302
    sign_in(client, "a@example.com", "another long password")
    assert client.get(url).status_code == 200
    admin_auth.set_admin_disabled(user.id, True)
    assert client.get(url).status_code == 302


def test_tokens_are_hashed_scoped_revocable_and_expire(app, site):
    from datetime import timedelta

    from consent.database import utcnow

    token = make_token(["audit:read"])
    row = db.session.execute(db.select(AdminToken)).scalar_one()
    assert token not in row.token_hash
    client = app.test_client()
    url = f"/api/v1/audit/sites/{site['key']}/policies"
    assert client.get(url, headers=bearer(token)).status_code == 200
    assert client.get(url, headers=bearer(token[:-2] + "xx")).status_code == 401
    admin_auth.revoke_token(row.id)
    assert client.get(url, headers=bearer(token)).status_code == 401
    expired = run_write(lambda: admin_auth.create_token(
        "old", ["audit:read"], expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get(url, headers=bearer(expired)).status_code == 401


def test_admin_scope_includes_every_other_scope(app, site):
    token = make_token(["admin"])
    r = app.test_client().post(f"/api/v1/audit/sites/{site['key']}/policies",
                               json={"label": "v9", "text": "t"}, headers=bearer(token))
    assert r.status_code == 201


def test_cli_create_admin_and_token(app, runner, site):
    r = runner.invoke(args=["consent", "create-admin", "ops@example.com", "--scope",
                            "audit:read"], env={"CONSENT_ADMIN_PASSWORD": "a long enough pw!"})
    assert r.exit_code == 0, r.output
    user = db.session.execute(db.select(AdminUser)).scalar_one()
    assert user.scopes == ["audit:read"]
    r = runner.invoke(args=["consent", "create-admin", "ops@example.com"],
                      env={"CONSENT_ADMIN_PASSWORD": "a long enough pw!"})
    assert r.exit_code != 0 and "already exists" in r.output
    r = runner.invoke(args=["consent", "create-admin", "x@example.com"],
                      env={"CONSENT_ADMIN_PASSWORD": "short"})
    assert r.exit_code != 0 and "12 characters" in r.output
    r = runner.invoke(args=["consent", "create-token", "ci", "--scope", "audit:export",
                            "--site", site["key"]])
    assert r.exit_code == 0, r.output
    token = r.output.strip()
    assert token.startswith("ca_")
    client = app.test_client()
    r = client.get(f"/api/v1/audit/sites/{site['key']}/export", headers=bearer(token))
    assert r.status_code == 200
    r = runner.invoke(args=["consent", "create-token", "bad", "--scope", "everything"])
    assert r.exit_code != 0 and "unknown scope" in r.output


def test_tokens_and_users_pages(app, site, admin):
    r = post_form(admin, "/admin/tokens", {"name": "exporter", "scopes": "audit:export",
                                           "site": site["key"], "days": "30"})
    assert r.status_code == 200
    token = r.data.decode().split('id="secret">')[1].split("<")[0]
    assert app.test_client().get(f"/api/v1/audit/sites/{site['key']}/export",
                                 headers=bearer(token)).status_code == 200
    page = admin.get("/admin/tokens").data.decode()
    assert "exporter" in page and token not in page
    row = db.session.execute(db.select(AdminToken).where(AdminToken.name == "exporter")
                             ).scalar_one()
    revoke = f"/admin/tokens/{row.id}/revoke"
    asked = post_form(admin, revoke, page=revoke)  # the button asks first
    assert asked.status_code == 422 and "Revoke the API token exporter?" in asked.data.decode()
    assert app.test_client().get(f"/api/v1/audit/sites/{site['key']}/export",
                                 headers=bearer(token)).status_code == 200
    r = post_form(admin, revoke, {"confirm": "yes"}, page=revoke)
    assert r.status_code == 302
    assert "API token exporter revoked" in admin.get("/admin/tokens").data.decode()
    assert app.test_client().get(f"/api/v1/audit/sites/{site['key']}/export",
                                 headers=bearer(token)).status_code == 401
    r = post_form(admin, "/admin/users", {"email": "new@example.com",
                                          "password": "long enough password",
                                          "scopes": "audit:read"})
    assert r.status_code == 302
    assert b"new@example.com" in admin.get("/admin/users").data
    r = post_form(admin, "/admin/users", {"email": "x@example.com", "password": "short"})
    assert r.status_code == 422
    assert b"12 characters" in r.data
