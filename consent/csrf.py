"""CSRF protection for HTML forms: a per-session token checked on every unsafe method.

Usage: put `{{ csrf_field() }}` inside each <form method="post"> and decorate the view
with nothing: every POST/PUT/PATCH/DELETE to a blueprint that calls `protect(bp)` is
checked. JSON APIs authenticated by bearer tokens are not protected this way (no
ambient credentials); one-click unsubscribe (RFC 8058) is exempt by design (a signed
token in the URL is the credential) and uses `exempt`.
"""
from __future__ import annotations

import hmac
import secrets

from flask import Blueprint, request, session
from markupsafe import Markup

from .errors import Forbidden

SESSION_KEY = "_csrf"
FIELD = "csrf_token"
_exempt: set[str] = set()


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get(SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_KEY] = token
    return token


def csrf_field() -> Markup:
    """A hidden form field carrying the token."""
    return Markup(f'<input type="hidden" name="{FIELD}" value="{csrf_token()}">')


def exempt(view):
    """Mark a view as not needing a CSRF token (its URL carries its own credential)."""
    _exempt.add(f"{view.__module__}.{view.__name__}")
    return view


def check_csrf() -> None:
    """Refuse an unsafe request whose form/header token does not match the session's."""
    if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        return
    view = request.endpoint and _view_name()
    if view in _exempt:
        return
    sent = request.form.get(FIELD) or request.headers.get("X-CSRF-Token") or ""
    expected = session.get(SESSION_KEY) or ""
    if not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden("This form has expired or did not come from this site. "
                        "Reload the page and try again.")


def _view_name() -> str | None:
    from flask import current_app

    fn = current_app.view_functions.get(request.endpoint)
    return f"{fn.__module__}.{fn.__name__}" if fn else None


def protect(bp: Blueprint) -> Blueprint:
    """Check CSRF tokens on every unsafe request to BP."""
    bp.before_request(check_csrf)
    return bp


def init_app(app) -> None:
    """Make csrf_field() and csrf_token() available in every template."""
    app.jinja_env.globals.update(csrf_field=csrf_field, csrf_token=csrf_token)
