"""Shared helpers for the admin, audit, request and retention tests (no tests here)."""
from __future__ import annotations

import pytest

from consent import admin_auth
from consent.database import run_write
from consent.decisions import RequestContext, record_decision

PASSWORD = "correct horse battery staple"
CSRF = "test-csrf-token"


def make_admin(email: str = "dpo@example.com", scopes=("admin",)) -> str:
    """Create an admin user; returns its e-mail."""
    run_write(lambda: admin_auth.create_admin(email, PASSWORD, scopes=list(scopes)))
    return email


def sign_in(client, email: str, password: str = PASSWORD):
    """Sign in through the real form (with a CSRF token in the session)."""
    with client.session_transaction() as sess:
        sess["_csrf"] = CSRF
    response = client.post("/admin/sign-in", data={"email": email, "password": password,
                                                   "csrf_token": CSRF})
    with client.session_transaction() as sess:
        # sign_in starts a fresh session; give it a known CSRF token for later posts.
        sess["_csrf"] = CSRF
    return response


def admin_client(app, scopes=("admin",), email: str | None = None):
    """A test client signed in as an admin with SCOPES."""
    client = app.test_client()
    email = make_admin(email or f"{'-'.join(s.replace(':', '_') for s in scopes)}@example.com",
                       scopes)
    assert sign_in(client, email).status_code == 302
    return client


def post_form(client, url: str, data: dict | None = None, **kw):
    """POST a form with the session's CSRF token."""
    return client.post(url, data={**(data or {}), "csrf_token": CSRF}, **kw)


def make_token(scopes, site_key: str | None = None) -> str:
    """An admin API token with SCOPES (optionally limited to one site)."""
    from consent.sites import get_site

    def write():
        site_id = get_site(site_key).id if site_key else None
        return admin_auth.create_token("test", list(scopes), site_id=site_id)
    return run_write(write)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def decide(site_key: str, action: str = "accept_all", subject: str | None = None,
           categories: dict | None = None, gpc: bool = False,
           page_url: str = "https://shop.example/page", ip: str = "203.0.113.77",
           user_agent: str = "Mozilla/5.0 (TestBrowser)") -> str:
    """Record a decision as the widget would; returns the visitor id."""
    data = {"action": action}
    if subject:
        data.update(subject=subject, key=KEYS[subject])
    if categories is not None:
        data["categories"] = categories
    data["page_url"] = page_url
    result = record_decision(site_key, data, RequestContext(ip=ip, user_agent=user_agent,
                                                            gpc_header=gpc))
    KEYS.setdefault(result.subject_public_id, result.minted_key)
    return result.subject_public_id


KEYS: dict[str, str] = {}  # visitor id -> the device key the server minted for it


@pytest.fixture
def admin(app):
    """A client signed in with every permission."""
    return admin_client(app, ("admin",), "root@example.com")
