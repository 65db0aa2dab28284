"""Rate limits, applied centrally by path and endpoint, not by decorating views.

Buckets (each configurable as a `limits` string such as "1200 per minute; 100 per
second"; see config.py and README):
- public:    per client address, every request without credentials (widget config and
             decisions, preference, unsubscribe and my-data pages, ...);
- api key:   per site API key or admin token (by its hash), shared by every endpoint
             that takes one (BEARER_ATTR); a bearer header elsewhere changes nothing;
- bad key:   per client address, counting only answers 401 (guessing keys or tokens);
- admin:     per signed-in admin account on the admin pages;
- sign-in:   per (account, address) and per address, counting failed sign-ins only.
             There is no account lock: nobody can lock an admin out by failing on
             purpose, and an unknown account gets the same answers as a known one.

A refused request gets 429 problem+json (or the friendly page) with Retry-After.

The counting is Flask-Limiter's: its storage (CONSENT_RATELIMIT_STORAGE_URI; memory://
by default, where counts are per worker process -- with -w 4 four times the limit in
all; kept by LeanMemoryStorage below -- or redis:// / memcached:// shared by every process and machine) and its strategy
(fixed window). Its own per-request limit resolution is not used: it cost about as
much as the rest of a consent write (bench/write_breakdown.py), so this module picks
the bucket itself and makes one storage call per limit.
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import time

from flask import Flask, current_app, g, request, session
from flask_limiter import Limiter
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from werkzeug.exceptions import TooManyRequests

log = logging.getLogger(__name__)
ADMIN_PREFIXES = ("/admin", "/api/v1/audit", "/api/v1/admin")
SIGN_IN_ENDPOINT = "admin.sign_in_post"
EXEMPT_ENDPOINTS = ("static", "docs_assets_file")
# Set on a view that takes `Authorization: Bearer` as its credential (a site API key, an
# admin token): only there does a bearer header put a request in the API-key bucket.
# Elsewhere the header proves nothing, and a made-up one must not lift the per-address
# or the sign-in limits.
BEARER_ATTR = "takes_bearer"
SETTINGS = ("CONSENT_RATELIMIT_PUBLIC", "CONSENT_RATELIMIT_API_KEY",
            "CONSENT_RATELIMIT_BAD_KEY", "CONSENT_RATELIMIT_ADMIN",
            "CONSENT_RATELIMIT_SIGN_IN_ACCOUNT", "CONSENT_RATELIMIT_SIGN_IN_ADDRESS")


def takes_bearer(view):
    """Mark VIEW as taking a bearer credential (see BEARER_ATTR)."""
    setattr(view, BEARER_ATTR, True)
    return view


class RateLimited(TooManyRequests):
    """429 with the seconds until the breached window ends."""

    def __init__(self, retry_after: int):
        super().__init__("Too many requests: slow down and try again in "
                         f"{retry_after} seconds.")
        self.retry_after_seconds = retry_after


class RateLimits:
    """The limits of one app, counted in its Flask-Limiter's storage."""

    def __init__(self, app: Flask, limiter: Limiter):
        self.limiter = limiter
        self.enabled = bool(app.config.get("CONSENT_RATELIMIT_ENABLED", True))
        self.exempt = []
        self._exempt_seen: dict[str, bool] = {}  # address -> exempt (parsed once)
        for text in app.config.get("CONSENT_RATELIMIT_EXEMPT") or []:
            try:
                self.exempt.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise RuntimeError(f"CONSENT_RATELIMIT_EXEMPT: {text!r} is not an address "
                                   "or network")
        self._parsed: dict[str, tuple[str, list[RateLimitItem]]] = {}
        for name in SETTINGS:
            self.items(app.config, name)  # a bad setting stops start-up, naming it

    def items(self, config, name: str) -> list[RateLimitItem]:
        """The parsed limits of setting NAME (parsed again only when it changes)."""
        text = config[name]
        cached = self._parsed.get(name)
        if cached is None or cached[0] != text:
            try:
                cached = (text, parse_many(text) if text else [])
            except ValueError:
                raise RuntimeError(f"{name}={text!r} is not a rate limit such as "
                                   "'100 per second; 1200 per minute'")
            self._parsed[name] = cached
        return cached[1]

    # ------------------------------------------------------------ counting

    def _hit(self, name: str, key: str) -> None:
        strategy = self.limiter.limiter
        for item in self.items(current_app.config, name):  # (one storage call per limit)
            if not strategy.hit(item, name, key):
                raise RateLimited(self._retry_after(item, name, key))

    def _test(self, name: str, key: str) -> None:
        strategy = self.limiter.limiter
        for item in self.items(current_app.config, name):
            if not strategy.test(item, name, key):
                raise RateLimited(self._retry_after(item, name, key))

    def _count(self, name: str, key: str) -> None:
        strategy = self.limiter.limiter
        for item in self.items(current_app.config, name):
            strategy.hit(item, name, key)

    def _retry_after(self, item: RateLimitItem, name: str, key: str) -> int:
        try:
            reset = self.limiter.limiter.get_window_stats(item, name, key).reset_time
            return max(1, math.ceil(reset - time.time()))
        except Exception:  # noqa: BLE001 - the window's length is an honest upper bound
            return item.get_expiry()

    # ------------------------------------------------------------ per request

    def _skip(self, endpoint: str | None, address: str) -> bool:
        if not self.enabled or endpoint in EXEMPT_ENDPOINTS:
            return True
        return bool(self.exempt) and self._exempt_address(address)

    def _exempt_address(self, address: str) -> bool:
        known = self._exempt_seen.get(address)
        if known is None:
            try:
                addr = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(addr in net for net in self.exempt)
            if len(self._exempt_seen) >= 4096:
                self._exempt_seen.clear()  # (bounded: addresses are the callers')
            self._exempt_seen[address] = known
        return known

    def before(self) -> None:
        """Count this request in its bucket; 429 when a limit is reached."""
        req = request._get_current_object()
        environ = req.environ
        address = environ.get("REMOTE_ADDR") or "unknown"
        endpoint = req.endpoint
        if self._skip(endpoint, address):
            return
        token = _bearer(environ.get("HTTP_AUTHORIZATION"))
        if token and not getattr(current_app.view_functions.get(endpoint), BEARER_ATTR,
                                 False):
            token = None
        try:
            if token:
                self._test("CONSENT_RATELIMIT_BAD_KEY", address)
                g.ratelimit_failures = ("CONSENT_RATELIMIT_BAD_KEY", address)
                self._hit("CONSENT_RATELIMIT_API_KEY", _digest(token))
            elif environ.get("PATH_INFO", "").startswith(ADMIN_PREFIXES):
                if endpoint == SIGN_IN_ENDPOINT and req.method == "POST":
                    account = _digest((req.form.get("email") or "").strip().lower())
                    self._test("CONSENT_RATELIMIT_SIGN_IN_ADDRESS", address)
                    self._test("CONSENT_RATELIMIT_SIGN_IN_ACCOUNT", f"{account}:{address}")
                    g.ratelimit_failures = (
                        ("CONSENT_RATELIMIT_SIGN_IN_ADDRESS", address),
                        ("CONSENT_RATELIMIT_SIGN_IN_ACCOUNT", f"{account}:{address}"))
                self._hit("CONSENT_RATELIMIT_ADMIN", _admin_key(address))
            else:
                self._hit("CONSENT_RATELIMIT_PUBLIC", address)
        except RateLimited:
            raise
        except Exception:  # noqa: BLE001 - an unreachable store must not take the site down
            log.warning("rate limit storage unavailable; request not limited", exc_info=True)

    def after(self, response):
        """Count a failed credential (401) against the buckets of failures."""
        # (g's own object: `g.pop` on the proxy raises and catches an AttributeError first)
        failures = g._get_current_object().pop("ratelimit_failures", None)
        if failures and response.status_code == 401:
            if isinstance(failures[0], str):
                failures = (failures,)
            try:
                for name, key in failures:
                    self._count(name, key)
            except Exception:  # noqa: BLE001
                log.warning("rate limit storage unavailable", exc_info=True)
        return response


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _admin_key(address: str) -> str:
    data = session.get("admin") if not request.path.startswith("/api/") else None
    if isinstance(data, dict) and isinstance(data.get("uid"), int):
        return f"admin:{data['uid']}"
    return f"addr:{address}"


class LeanMemoryStorage(MemoryStorage):
    """limits' in-process storage without a timer thread per expiry: its MemoryStorage
    starts a new threading.Timer whenever the last one (10 ms) has run, and Thread.start
    waits for the new thread to be scheduled -- measured at a few hundred microseconds a
    consent write. Counts expire on read as before; expired keys are swept inline at
    most once a minute."""

    STORAGE_SCHEME = ["consent-memory"]
    SWEEP_SECONDS = 60.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.timer.cancel()
        self._next_sweep = time.time() + self.SWEEP_SECONDS

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Count AMOUNT more for KEY in a window of EXPIRY seconds."""
        now = time.time()
        if now >= self._next_sweep:
            self._sweep(now)
        if self.expirations.get(key, 0) <= now:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
        with self.locks[key]:
            self.storage[key] += amount
            if self.storage[key] == amount:
                self.expirations[key] = now + expiry
            return self.storage[key]

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_SECONDS
        for key, until in list(self.expirations.items()):
            if until <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
                self.locks.pop(key, None)


def init_app(app: Flask) -> RateLimits:
    """Attach this app's limits (one storage per app: tests get fresh counts)."""
    app.config["RATELIMIT_ENABLED"] = True  # (storage is needed even when switched off)
    uri = app.config.get("CONSENT_RATELIMIT_STORAGE_URI") or "memory://"
    app.config["RATELIMIT_STORAGE_URI"] = ("consent-memory://" if uri == "memory://"
                                           else uri)
    app.config.setdefault("RATELIMIT_STRATEGY", "fixed-window")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    limiter = Limiter(lambda: request.remote_addr or "unknown", app=app)
    # Its own per-request resolution is replaced by RateLimits: unhook it (it would cost
    # ~100 us a request even with nothing to limit), with its after-request hook (a
    # partial: response headers and deductions of decorated limits, of which there are
    # none) and its teardown (resets the context only that resolution fills).
    def limiters(f) -> bool:
        return getattr(f, "__self__", None) is limiter or (
            isinstance(f, functools.partial) and f.args[:1] == (limiter,))

    for registry in (app.before_request_funcs, app.after_request_funcs,
                     app.teardown_request_funcs):
        hooks = registry.get(None, [])
        hooks[:] = [f for f in hooks if not limiters(f)]
    limits = RateLimits(app, limiter)
    # Right after the request checks of consent.hardening, before any view or CSRF check.
    funcs = app.before_request_funcs.setdefault(None, [])
    funcs.insert(1 if funcs else 0, limits.before)
    app.after_request(limits.after)
    return limits
