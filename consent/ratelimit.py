"""Rate limits, applied centrally by endpoint and blueprint (Flask-Limiter, `limits`).

Buckets (each configurable, "N per second/minute/hour" lists; see config.py):
- public:    per client address, every request without credentials (widget config and
             decisions, preference, unsubscribe and my-data pages, ...);
- api key:   per site API key or admin token (by its hash), shared by every endpoint;
- bad key:   per client address, counts only answers 401 (guessing keys or tokens);
- admin:     per signed-in admin account on the admin pages;
- sign-in:   per (account, address) and per address, counting failed sign-ins only.
             There is no account lock: nobody can lock an admin out by failing on
             purpose, and an unknown account gets the same answers as a known one.

A refused request gets 429 problem+json (or the friendly page) with Retry-After.
Storage: CONSENT_RATELIMIT_STORAGE_URI, memory:// by default -- counts are then per
worker process (with -w 4, four times the limit in all); redis:// or memcached:// share
them. CONSENT_RATELIMIT_EXEMPT names client addresses never limited (load tests).
"""
from __future__ import annotations

import hashlib
import ipaddress

from flask import Flask, current_app, request, session
from flask_limiter import Limit, Limiter

ADMIN_PREFIXES = ("/admin", "/api/v1/audit", "/api/v1/admin")
SIGN_IN_ENDPOINT = "admin.sign_in_post"


def _address() -> str:
    return request.remote_addr or "unknown"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _is_admin_path() -> bool:
    return request.path.startswith(ADMIN_PREFIXES)


def _key_of_api_key() -> str:
    return "key:" + _digest(_bearer() or "")


def _key_of_admin() -> str:
    data = session.get("admin") if not request.path.startswith("/api/") else None
    if isinstance(data, dict) and isinstance(data.get("uid"), int):
        return f"admin:{data['uid']}"
    return "addr:" + _address()


def _key_of_account_and_address() -> str:
    email = (request.form.get("email") or "").strip().lower()
    return "signin:" + _digest(email) + ":" + _address()


def _setting(name: str):
    def provide() -> str:
        return current_app.config[name]
    return provide


def _not_sign_in() -> bool:
    return request.endpoint != SIGN_IN_ENDPOINT or request.method != "POST"


def _failed(response) -> bool:
    return response.status_code == 401


def _exempt_addresses(app: Flask) -> list:
    networks = []
    for text in app.config.get("CONSENT_RATELIMIT_EXEMPT") or []:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise RuntimeError(f"CONSENT_RATELIMIT_EXEMPT: {text!r} is not an address or "
                               "network")
    return networks


def init_app(app: Flask) -> Limiter:
    """Attach a limiter with this app's limits (one per app: tests get fresh counts)."""
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    app.config["RATELIMIT_ENABLED"] = bool(app.config.get("CONSENT_RATELIMIT_ENABLED", True))
    app.config["RATELIMIT_STORAGE_URI"] = app.config.get("CONSENT_RATELIMIT_STORAGE_URI",
                                                         "memory://")
    app.config.setdefault("RATELIMIT_STRATEGY", "fixed-window")
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)  # a dead store never 500s
    exempt = _exempt_addresses(app)

    limits = [
        Limit(_setting("CONSENT_RATELIMIT_PUBLIC"), key_function=_address, scope="public",
              shared=True, exempt_when=lambda: bool(_bearer()) or _is_admin_path()),
        Limit(_setting("CONSENT_RATELIMIT_API_KEY"), key_function=_key_of_api_key,
              scope="api-key", shared=True, exempt_when=lambda: not _bearer()),
        Limit(_setting("CONSENT_RATELIMIT_BAD_KEY"), key_function=_address,
              scope="bad-credentials", shared=True, deduct_when=_failed,
              exempt_when=lambda: not _bearer()),
        Limit(_setting("CONSENT_RATELIMIT_ADMIN"), key_function=_key_of_admin, scope="admin",
              shared=True, exempt_when=lambda: not _is_admin_path() or bool(_bearer())),
        Limit(_setting("CONSENT_RATELIMIT_SIGN_IN_ACCOUNT"),
              key_function=_key_of_account_and_address, scope="sign-in-account",
              shared=True, deduct_when=_failed, exempt_when=_not_sign_in),
        Limit(_setting("CONSENT_RATELIMIT_SIGN_IN_ADDRESS"), key_function=_address,
              scope="sign-in-address", shared=True, deduct_when=_failed,
              exempt_when=_not_sign_in),
    ]
    limiter = Limiter(_address, default_limits=limits, app=app)

    if exempt:
        @limiter.request_filter
        def _exempt_address() -> bool:
            try:
                addr = ipaddress.ip_address(request.remote_addr or "")
            except ValueError:
                return False
            return any(addr in net for net in exempt)

    for endpoint in ("static", "docs_assets_file"):
        view = app.view_functions.get(endpoint)
        if view is not None:
            limiter.exempt(view)
    return limiter
