"""Downstream webhooks: endpoints per site, an outbox written with every ledger event,
and a delivery worker that POSTs signed JSON with retries, dead letters and a log.

The ledger listener below writes one `OutboxMessage` per (event, endpoint) inside the
transaction that appends the event, so an event never exists without its notifications
and a notification never exists without its event. Delivery happens later, in
`flask consent deliver` (one-shot or `--forever`), never in the consent request.

Claiming is safe with several workers: PostgreSQL locks due rows with
`FOR UPDATE SKIP LOCKED`; SQLite serialises writers (BEGIN IMMEDIATE), and the claim is
one conditional UPDATE. A claim is a lease: a worker killed mid-flight leaves a row in
`delivering` whose lease expires, and the next claim takes it again. Receivers see
at-least-once delivery and dedupe by the signed `webhook-id` header.

Deliveries follow Standard Webhooks: `webhook-id` (the notification id, the same on
every attempt), `webhook-timestamp` (the attempt's Unix time) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`) keyed with the bytes of a `whsec_`
base64 secret, so any Standard Webhooks verifier (Python: `standardwebhooks`) works
unchanged. Endpoints registered before this scheme also get the former headers
(`X-Consent-Timestamp`, `X-Consent-Signature`, `Idempotency-Key`, same key bytes) until
their operator turns `legacy_headers` off.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import re
import secrets
import signal
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterator
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from .cli import consent_cli
from .database import DatabaseUnavailable, UTCDateTime, iso, run_write, utcnow
from .errors import Conflict, Invalid
from .extensions import db
from . import netguard, rawsql
from .ledger import AppendedEvent, on_append
from .sites import NotFound, Site, site_snapshot

log = logging.getLogger(__name__)

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

STATES = ("pending", "delivering", "delivered", "dead")
# Standard Webhooks
ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
# The scheme before Standard Webhooks, still sent to endpoints with legacy_headers
SIGNATURE_HEADER = "X-Consent-Signature"
TIMESTAMP_HEADER = "X-Consent-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-Consent-Attempt"
USER_AGENT = "consent-manager-webhooks/2"
SECRET_PREFIX = "whsec_"
# Standard Webhooks: symmetric keys of 24 to 64 random bytes.
SECRET_MIN_BYTES, SECRET_MAX_BYTES = 24, 64
CHANNEL_PATTERN_RE = re.compile(r"^[A-Za-z0-9_:.*-]{1,64}$")
# Statuses worth retrying besides 5xx: timeout, too early, rate limited.
RETRYABLE_STATUSES = (408, 425, 429)
MAX_ERROR = 500

# Defaults of the webhook settings. The app config wins over the environment, which wins
# over these, so each `flask consent deliver` process can be tuned from its environment.
SETTINGS: dict[str, float] = {
    "CONSENT_WEBHOOK_TIMEOUT": 10.0,          # seconds for one whole HTTP attempt
    "CONSENT_WEBHOOK_LEASE_SECONDS": 60.0,    # a claim expires after this (>= 2 x timeout)
    "CONSENT_WEBHOOK_MAX_ATTEMPTS": 20,       # then the message is a dead letter
    "CONSENT_WEBHOOK_BACKOFF_BASE": 10.0,     # first retry after about this many seconds
    "CONSENT_WEBHOOK_BACKOFF_MAX": 3600.0,    # retries are never further apart than this
    "CONSENT_WEBHOOK_CONCURRENCY": 8,         # HTTP requests in flight per worker process
    "CONSENT_WEBHOOK_POLL_SECONDS": 1.0,      # idle `--forever` worker looks this often
}


# The environment's webhook settings, read once per process and name: every consent write
# asks for one (the endpoint cache's lifetime), and a look-up of an unset variable raises
# and catches a KeyError inside os.environ.
_from_environment: dict[str, str | None] = {}


def setting(name: str) -> float:
    """A webhook setting from the app config, else the environment, else the default."""
    config = current_app._get_current_object().config  # (see consent.hardening)
    value = config.get(name)
    if value in (None, ""):
        try:
            value = _from_environment[name]
        except KeyError:
            value = _from_environment[name] = os.environ.get(name)
    if value in (None, ""):
        if name == "CONSENT_WEBHOOK_CACHE_SECONDS":
            return float(config.get("CONSENT_SITE_CACHE_SECONDS", 5))
        return SETTINGS[name]
    return float(value)


def lease_seconds() -> float:
    """How long a claim stands: never shorter than two whole attempts."""
    return max(setting("CONSENT_WEBHOOK_LEASE_SECONDS"),
               2 * setting("CONSENT_WEBHOOK_TIMEOUT") + 1)


# ---------------------------------------------------------------- models


class DownstreamEndpoint(db.Model):
    """A system a site shares data with, told about consent changes it cares about."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    url: Mapped[str] = mapped_column(sa.String(2048))
    # Category keys ("*" = all) and channel patterns (fnmatch, "*" = all) it cares about.
    categories: Mapped[list] = mapped_column(sa.JSON, default=list)
    channels: Mapped[list] = mapped_column(sa.JSON, default=list)
    # The worker needs it in clear to sign, so it is encrypted (consent.secretbox, under
    # CONSENT_DATA_KEY), not hashed. Shown to the operator once.
    secret: Mapped[str] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(default=True)
    # Endpoints registered before Standard Webhooks also get the former headers until
    # their operator turns this off (migration clients_0002 sets it on existing rows).
    legacy_headers: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Health: a failing endpoint is paused (its queue waits) instead of hammered.
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def signing_secret(self) -> str:
        """The signing secret in clear."""
        return open_secret(self.secret)

    @property
    def secret_hint(self) -> str:
        """The first characters of the secret, to tell endpoints apart."""
        return self.signing_secret[:10] + "…"


SECRET_PURPOSE = "webhook-secret"


def seal_secret(secret: str) -> str:
    """A signing secret as stored (encrypted)."""
    from .secretbox import seal

    return seal(secret, SECRET_PURPOSE)


def open_secret(stored: str) -> str:
    """A stored signing secret in clear."""
    from .secretbox import unseal

    return unseal(stored, SECRET_PURPOSE)


class OutboxMessage(db.Model):
    """One notification of one event to one endpoint, and where its delivery stands."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "endpoint_id"),
        sa.Index("ix_outbox_messages_due", "state", "next_attempt_at"),
        sa.Index("ix_outbox_messages_site_created", "site_id", "created_at"),
        # An endpoint's queue: deferring it during a pause touches only its own rows.
        sa.Index("ix_outbox_messages_endpoint_queue", "endpoint_id", "state",
                 "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(80), unique=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoints.id"))
    # No foreign key: a retention purge may remove old events, never their delivery log.
    event_id: Mapped[str] = mapped_column(sa.String(32))
    subject: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[str] = mapped_column(sa.String(32))
    payload: Mapped[dict] = mapped_column(sa.JSON)
    # Visitor id of an erasure notice, encrypted (`seal_subject_ref`): the erasure deletes
    # it everywhere else, and this copy is wiped when the receiver acknowledges.
    subject_ref: Mapped[str | None] = mapped_column(sa.String(255))
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the message is due; while `delivering`, when its lease runs out.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(120))
    last_status: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(sa.String(MAX_ERROR))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(db.Model):
    """One line of the delivery log: an HTTP attempt, an abandoned lease, a requeue."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (sa.Index("ix_delivery_attempts_site_started", "site_id", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("outbox_messages.id"),
                                            index=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoints.id"))
    attempt: Mapped[int] = mapped_column()
    worker: Mapped[str | None] = mapped_column(sa.String(120))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # delivered | http_error | rejected | timeout | network_error | abandoned | requeued
    # | cancelled
    outcome: Mapped[str] = mapped_column(sa.String(16))
    status_code: Mapped[int | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(sa.String(MAX_ERROR))
    duration_ms: Mapped[int | None] = mapped_column()


# ---------------------------------------------------------------- endpoint interests


@dataclass(frozen=True)
class EndpointInterest:
    """What the hot write path needs to know about an active endpoint."""

    id: int
    categories: tuple[str, ...]
    channels: tuple[str, ...]
    # A failing endpoint's pause as last read: new messages wait for it too, instead of
    # waking the worker for one more doomed attempt each.
    paused_until: datetime | None = None

    def wants_category(self, key: str) -> bool:
        return "*" in self.categories or key in self.categories

    def wants_channel(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.channels)


_interest_cache: dict[int, tuple[float, tuple[EndpointInterest, ...]]] = {}
_interest_lock = threading.Lock()


def invalidate_endpoint_cache(site_id: int | None = None) -> None:
    """Forget cached endpoint interests (all sites, or one)."""
    with _interest_lock:
        if site_id is None:
            _interest_cache.clear()
        else:
            _interest_cache.pop(site_id, None)


def endpoint_interests(site_id: int) -> tuple[EndpointInterest, ...]:
    """Active endpoints of a site, cached per process for CONSENT_WEBHOOK_CACHE_SECONDS."""
    ttl = setting("CONSENT_WEBHOOK_CACHE_SECONDS")
    now = time.monotonic()
    if ttl > 0:
        hit = _interest_cache.get(site_id)
        if hit is not None and hit[0] > now:
            return hit[1]
    # rawsql: this runs inside the consent write's own transaction and connection.
    rows = rawsql.all_rows(
        "SELECT id, categories, channels, paused_until FROM webhook_endpoints "
        "WHERE site_id = :site_id AND active = :active ORDER BY id",
        {"site_id": site_id, "active": True})
    interests = tuple(EndpointInterest(r[0], tuple(rawsql.from_db_json(r[1]) or ()),
                                       tuple(rawsql.from_db_json(r[2]) or ()),
                                       rawsql.from_db_time(r[3]))
                      for r in rows)
    if ttl > 0:
        with _interest_lock:
            _interest_cache[site_id] = (now + ttl, interests)
    return interests


# ---------------------------------------------------------------- the ledger listener


def _diff(before: dict | None, after: dict | None) -> dict[str, dict]:
    """Keys whose value changed, as {key: {"from": old, "to": new}} (absent = None)."""
    before, after = before or {}, after or {}
    return {k: {"from": before.get(k), "to": after.get(k)}
            for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def _fernet():
    from cryptography.fernet import Fernet

    from .subjects import hmac_key

    # A key outside the database: a copy of the database alone holds no visitor id.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"consent-outbox-v1\x00"
                                                          + hmac_key()).digest()))


def seal_subject_ref(public_id: str) -> str:
    """Encrypt a visitor id kept only until an erasure notice is acknowledged."""
    return _fernet().encrypt(public_id.encode()).decode()


def open_subject_ref(sealed: str | None) -> str | None:
    """The visitor id of an erasure notice (None if absent or unreadable)."""
    if not sealed:
        return None
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


def idempotency_key(event_id: str, endpoint_id: int) -> str:
    """The stable key of one (event, endpoint) notification, the same on every attempt."""
    return f"evt_{event_id}_{endpoint_id}"


@on_append
def enqueue_notifications(ev: AppendedEvent) -> None:
    """Write the outbox rows of a just-appended event (runs inside its transaction)."""
    if ev.duplicate:
        return
    interests = endpoint_interests(ev.site_id)
    if not interests:
        return
    before, after = ev.previous_state or {}, ev.state or {}
    erased = ev.action == "erase"
    cat_changes = _diff(before.get("categories"), after.get("categories"))
    chan_changes = _diff(before.get("channels"), after.get("channels"))
    if not erased and not cat_changes and not chan_changes:
        return
    subject_ref = None
    if erased and ev.subject_id is not None:
        row = rawsql.one("SELECT public_id FROM subjects WHERE id = :id",
                         {"id": ev.subject_id})
        if row is not None and row[0]:
            subject_ref = seal_subject_ref(row[0])
    event = {"id": ev.event_id, "action": ev.action, "source": ev.source,
             "recorded_at": iso(ev.recorded_at), "policy_version": ev.policy_version}
    now = utcnow()
    rows = []
    for endpoint in interests:
        cats = {k: v for k, v in cat_changes.items() if endpoint.wants_category(k)}
        chans = {k: v for k, v in chan_changes.items() if endpoint.wants_channel(k)}
        if not erased and not cats and not chans:
            continue
        key = idempotency_key(ev.event_id, endpoint.id)
        state = None if erased else {
            "categories": {k: v for k, v in (after.get("categories") or {}).items()
                           if endpoint.wants_category(k)},
            "channels": {k: v for k, v in (after.get("channels") or {}).items()
                         if endpoint.wants_channel(k)},
        }
        kind = "subject.erased" if erased else "consent.changed"
        payload = {"id": key, "type": kind, "site": ev.site_key, "event": event,
                   "changes": {"categories": cats, "channels": chans}, "state": state}
        rows.append({"idempotency_key": key, "site_id": ev.site_id,
                     "endpoint_id": endpoint.id, "event_id": ev.event_id,
                     "subject": ev.subject, "kind": kind, "payload": payload,
                     "subject_ref": subject_ref, "state": "pending", "attempts": 0,
                     "created_at": now,
                     "next_attempt_at": max(now, endpoint.paused_until or now)})
    if rows:
        # rawsql: the consent write may run on a raw connection, not the session.
        rawsql.insert_rows(OutboxMessage.__table__, rows)


POLICY_PUBLISHED = "policy.published"


def policy_payload(site_key: str, version) -> dict:
    """What a policy.published notification says about a version (checked by verify)."""
    from .policies import policy_links

    return {"version": version.label, "published_at": iso(version.published_at),
            "effective_at": iso(version.effective_at), "material": version.material,
            "summary": version.summary, "sha256": version.sha256,
            **policy_links(site_key, version.label)}


def policy_event_id(version_id: int) -> str:
    """The outbox's event id of a publication (not a ledger event: no person is involved)."""
    return f"policy_{version_id}"


def enqueue_site_notice(site_id: int, kind: str, key_prefix: str, event_id: str,
                        subject: str, body: dict) -> None:
    """Queue a notification that is not a change of consent (a policy publication, a
    guardian request) for every active endpoint, inside the current write."""
    interests = endpoint_interests(site_id)
    if not interests:
        return
    now = utcnow()
    rows = []
    for endpoint in interests:
        key = f"{key_prefix}_{endpoint.id}"
        rows.append({"idempotency_key": key, "site_id": site_id,
                     "endpoint_id": endpoint.id, "event_id": event_id, "subject": subject,
                     "kind": kind, "payload": {"id": key, "type": kind, **body},
                     "subject_ref": None, "state": "pending", "attempts": 0,
                     "created_at": now,
                     "next_attempt_at": max(now, endpoint.paused_until or now)})
    rawsql.insert_rows(OutboxMessage.__table__, rows)


def enqueue_policy_notice(site_key: str, version) -> None:
    """Tell every active endpoint of the site that a version was published (same
    transaction), so the site can e-mail or push its users before it takes effect."""
    event_id = policy_event_id(version.id)
    enqueue_site_notice(version.site_id, POLICY_PUBLISHED, f"evt_{event_id}", event_id, "",
                        {"site": site_key, "policy": policy_payload(site_key, version)})


def _register_policy_listener() -> None:
    from .policies import on_publish

    on_publish(enqueue_policy_notice)


_register_policy_listener()


# ---------------------------------------------------------------- endpoints (service)


def new_secret() -> str:
    """A fresh signing secret in Standard Webhooks form: whsec_ + base64 of 32 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def standard_secret(secret: str) -> str:
    """SECRET in Standard Webhooks form. A `whsec_` base64 secret of 24-64 bytes is kept;
    any other text (a secret of the operator's own, or one from before Standard Webhooks)
    becomes whsec_ + base64 of its UTF-8 bytes, so the HMAC key stays those bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except ValueError:
            key = b""
        if SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
            return secret
    return SECRET_PREFIX + base64.b64encode(secret.encode("utf-8")).decode("ascii")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a stored (Standard Webhooks form) secret."""
    return base64.b64decode(standard_secret(secret)[len(SECRET_PREFIX):])


def _check_url(url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("give an absolute http(s) URL", field="url")
    if parts.username or parts.password:
        raise Invalid("put credentials in the signing secret, not in the URL", field="url")
    if (parts.scheme == "http" and current_app.config.get("ENV_NAME") == "production"
            and os.environ.get("CONSENT_WEBHOOK_ALLOW_HTTP") != "1"
            and parts.hostname not in ("localhost", "127.0.0.1", "::1")):
        raise Invalid("use https (or set CONSENT_WEBHOOK_ALLOW_HTTP=1)", field="url")
    if refuses_internal():
        _refuse_internal_host(parts.hostname, parts.port or (443 if parts.scheme == "https"
                                                             else 80))
    return url


def _internal(infos) -> str | None:
    """The first address among getaddrinfo results that is not globally routable, or
    None (consent.netguard has the rules)."""
    return netguard.first_internal(infos)


def _refuse_internal_host(host: str, port: int) -> None:
    """In production a site API key must not make the server call its own network
    (anything not globally routable), unless the operator allows it."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise Invalid(f"the host {host!r} does not resolve", field="url")
    if _internal(infos):
        # The address itself is not named: the answer must not map the server's network.
        raise Invalid(f"{host!r} does not resolve to a public internet address only; set "
                      "CONSENT_WEBHOOK_ALLOW_PRIVATE=1 to allow internal receivers",
                      field="url")


def refuses_internal() -> bool:
    """Whether this app refuses receivers on internal addresses (production, unless
    CONSENT_WEBHOOK_ALLOW_PRIVATE=1)."""
    return (current_app.config.get("ENV_NAME") == "production"
            and os.environ.get("CONSENT_WEBHOOK_ALLOW_PRIVATE") != "1")


def _vetted_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None,
                       *args, **kwargs):
    """socket.create_connection that resolves the host once, refuses it if any address is
    internal, and connects to an address it checked. Checking only when the endpoint was
    registered is not enough: the name may resolve elsewhere by delivery time (DNS
    rebinding)."""
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addr = _internal(infos)
    if addr:
        log.warning("webhook receiver %r resolves to %s, not a public address: not "
                    "contacted", host, addr)
        raise ConnectionRefusedError(
            f"{host!r} now resolves to an internal address; not contacted "
            "(CONSENT_WEBHOOK_ALLOW_PRIVATE=1 allows internal receivers)")
    error = None
    for info in infos:
        try:
            return socket.create_connection(info[4][:2], timeout, source_address)
        except OSError as exc:
            error = exc
    raise error or OSError(f"{host!r} has no address")


def _check_interests(site, categories: list[str], channels: list[str]) -> tuple[list, list]:
    categories = sorted(set(categories or []))
    channels = sorted(set(channels or []))
    for key in categories:
        if key != "*" and key not in site.category_keys:
            raise Invalid(f"unknown category {key!r} for site {site.key!r}; known: "
                          f"{', '.join(site.category_keys)} or '*'", field="categories")
    for pattern in channels:
        if not CHANNEL_PATTERN_RE.fullmatch(pattern):
            raise Invalid(f"channel pattern {pattern!r} may use letters, digits, "
                          "'_', ':', '.', '-' and '*'", field="channels")
    if not categories and not channels:
        raise Invalid("name at least one category or channel the endpoint cares about",
                      field="categories")
    return categories, channels


def register_endpoint(site_key: str, *, url: str, name: str | None = None,
                      categories: list[str] | None = None, channels: list[str] | None = None,
                      secret: str | None = None) -> tuple[DownstreamEndpoint, str]:
    """Register a downstream endpoint of a site; returns it and its signing secret."""
    site = site_snapshot(site_key)
    url = _check_url(url)
    cats, chans = _check_interests(site, categories or [], channels or [])
    secret = secret or new_secret()
    if len(secret) < 24:
        raise Invalid("a signing secret needs at least 24 characters", field="secret")
    secret = standard_secret(secret)

    def write() -> DownstreamEndpoint:
        endpoint = DownstreamEndpoint(site_id=site.id, name=name or urlsplit(url).hostname,
                                      url=url, categories=cats, channels=chans,
                                      secret=seal_secret(secret), active=True,
                                      created_at=utcnow())
        db.session.add(endpoint)
        db.session.flush()
        return endpoint

    endpoint = run_write(write)
    invalidate_endpoint_cache(site.id)
    return endpoint, secret


def get_endpoint(site_key: str, endpoint_id: int) -> DownstreamEndpoint:
    """An endpoint of a site, or NotFound."""
    site = site_snapshot(site_key)
    endpoint = db.session.get(DownstreamEndpoint, endpoint_id)
    if endpoint is None or endpoint.site_id != site.id:
        raise NotFound("endpoint", str(endpoint_id))
    return endpoint


def list_endpoints(site_key: str) -> list[DownstreamEndpoint]:
    """Every endpoint of a site (disabled ones too), oldest first."""
    site = site_snapshot(site_key)
    return list(db.session.execute(
        db.select(DownstreamEndpoint).where(DownstreamEndpoint.site_id == site.id)
        .order_by(DownstreamEndpoint.id)).scalars())


def message_counts(site_id: int, endpoint_id: int | None = None) -> dict[str, int]:
    """How many messages are in each state (for a site, or one endpoint)."""
    t = OutboxMessage.__table__
    query = sa.select(t.c.state, sa.func.count()).where(t.c.site_id == site_id)
    if endpoint_id is not None:
        query = query.where(t.c.endpoint_id == endpoint_id)
    counts = dict.fromkeys(STATES, 0)
    counts.update({s: n for s, n in db.session.execute(query.group_by(t.c.state)).all()})
    return counts


def set_endpoint_active(site_key: str, endpoint_id: int, active: bool) -> DownstreamEndpoint:
    """Enable or disable an endpoint; disabling turns its unsent messages into dead letters.

    Dead letters of a re-enabled endpoint can be retried (`retry_dead`).
    """
    site = site_snapshot(site_key)

    def write() -> DownstreamEndpoint:
        endpoint = get_endpoint(site_key, endpoint_id)
        now = utcnow()
        if endpoint.active and not active:
            endpoint.active, endpoint.disabled_at = False, now
            t = OutboxMessage.__table__
            # A message being sent right now keeps its lease; the worker cancels it after.
            ids = [r.id for r in db.session.execute(
                sa.select(t.c.id).where(t.c.endpoint_id == endpoint.id,
                                        t.c.state == "pending")).all()]
            _cancel(ids, endpoint, now, "endpoint disabled")
        elif active and not endpoint.active:
            # Re-enabled after a fix: start with a clean bill of health.
            endpoint.active, endpoint.disabled_at = True, None
            endpoint.consecutive_failures, endpoint.failing_since = 0, None
            endpoint.paused_until = None
        return endpoint

    endpoint = run_write(write)
    invalidate_endpoint_cache(site.id)
    return endpoint


def set_legacy_headers(site_key: str, endpoint_id: int, on: bool) -> DownstreamEndpoint:
    """Send (or stop sending) the pre-Standard-Webhooks headers to an endpoint."""
    def write() -> DownstreamEndpoint:
        endpoint = get_endpoint(site_key, endpoint_id)
        endpoint.legacy_headers = on
        return endpoint

    return run_write(write)


def _cancel(ids: list[int], endpoint, now: datetime, reason: str) -> None:
    """Dead-letter messages without sending them (endpoint disabled)."""
    if not ids:
        return
    t = OutboxMessage.__table__
    rows = db.session.execute(sa.select(t.c.id, t.c.attempts).where(t.c.id.in_(ids))).all()
    db.session.execute(sa.update(t).where(t.c.id.in_(ids)).values(
        state="dead", dead_at=now, last_error=reason, lease_owner=None, lease_until=None))
    db.session.execute(sa.insert(DeliveryAttempt.__table__), [
        {"message_id": r.id, "site_id": endpoint.site_id, "endpoint_id": endpoint.id,
         "attempt": r.attempts, "worker": None, "started_at": now, "finished_at": now,
         "outcome": "cancelled", "error": reason} for r in rows])


# ---------------------------------------------------------------- delivery log (service)


def list_messages(site_key: str, *, state: str | None = None, endpoint_id: int | None = None,
                  event_id: str | None = None, before_id: int | None = None,
                  limit: int = 50) -> list[OutboxMessage]:
    """Notifications of a site, newest first (keyset pagination with BEFORE_ID)."""
    site = site_snapshot(site_key)
    query = db.select(OutboxMessage).where(OutboxMessage.site_id == site.id)
    if state:
        query = query.where(OutboxMessage.state == state)
    if endpoint_id is not None:
        query = query.where(OutboxMessage.endpoint_id == endpoint_id)
    if event_id:
        query = query.where(OutboxMessage.event_id == event_id)
    if before_id is not None:
        query = query.where(OutboxMessage.id < before_id)
    return list(db.session.execute(query.order_by(OutboxMessage.id.desc()).limit(limit))
                .scalars())


def get_message(site_key: str, message_id: int) -> OutboxMessage:
    """One notification of a site, or NotFound."""
    site = site_snapshot(site_key)
    message = db.session.get(OutboxMessage, message_id)
    if message is None or message.site_id != site.id:
        raise NotFound("delivery", str(message_id))
    return message


def attempts_of(message_id: int) -> list[DeliveryAttempt]:
    """The delivery log of one notification, oldest first."""
    return list(db.session.execute(
        db.select(DeliveryAttempt).where(DeliveryAttempt.message_id == message_id)
        .order_by(DeliveryAttempt.id)).scalars())


def retry_dead(site_key: str, *, message_id: int | None = None,
               endpoint_id: int | None = None, actor: str = "api") -> int:
    """Put dead letters back in the queue with a fresh set of attempts; returns how many."""
    site = site_snapshot(site_key)

    def write() -> int:
        t, e = OutboxMessage.__table__, DownstreamEndpoint.__table__
        query = (sa.select(t.c.id, t.c.attempts, t.c.endpoint_id, t.c.state, e.c.active)
                 .join(e, e.c.id == t.c.endpoint_id).where(t.c.site_id == site.id))
        if message_id is not None:
            query = query.where(t.c.id == message_id)
        else:
            query = query.where(t.c.state == "dead")
        if endpoint_id is not None:
            query = query.where(t.c.endpoint_id == endpoint_id)
        rows = db.session.execute(query).all()
        if message_id is not None:
            if not rows:
                raise NotFound("delivery", str(message_id))
            if rows[0].state != "dead":
                raise Conflict(f"delivery {message_id} is {rows[0].state}, not dead; only "
                               "dead letters can be retried")
        if any(not r.active for r in rows):
            raise Conflict("the endpoint is disabled; enable it before retrying its "
                           "dead letters")
        if not rows:
            return 0
        now = utcnow()
        ids = [r.id for r in rows]
        db.session.execute(sa.update(t).where(t.c.id.in_(ids), t.c.state == "dead").values(
            state="pending", attempts=0, next_attempt_at=now, dead_at=None))
        # Retrying says "the receiver is fixed": end its pause so the retry goes out now.
        db.session.execute(sa.update(e).where(
            e.c.id.in_({r.endpoint_id for r in rows}), e.c.consecutive_failures > 0).values(
            consecutive_failures=0, failing_since=None, paused_until=None))
        db.session.execute(sa.insert(DeliveryAttempt.__table__), [
            {"message_id": r.id, "site_id": site.id, "endpoint_id": r.endpoint_id,
             "attempt": r.attempts, "worker": None, "started_at": now, "finished_at": now,
             "outcome": "requeued", "error": f"dead letter requeued by {actor}"[:MAX_ERROR]}
            for r in rows])
        return len(ids)

    count = run_write(write)
    invalidate_endpoint_cache(site.id)
    return count


def delivery_log_rows(site_id: int, since: datetime | None = None,
                      until: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Who was told about which event and when: one dict per notification (streamed).

    For the audit export. SINCE is inclusive, UNTIL exclusive, both on the time the
    notification was written (the time of its event). No personal data is included.
    """
    t, e = OutboxMessage.__table__, DownstreamEndpoint.__table__
    query = (sa.select(t.c.id, t.c.idempotency_key, t.c.event_id, t.c.kind, t.c.state,
                       t.c.attempts, t.c.created_at, t.c.acknowledged_at, t.c.dead_at,
                       t.c.last_status, t.c.last_error, t.c.endpoint_id,
                       e.c.name.label("endpoint_name"), e.c.url.label("endpoint_url"))
             .join(e, e.c.id == t.c.endpoint_id).where(t.c.site_id == site_id))
    if since is not None:
        query = query.where(t.c.created_at >= since)
    if until is not None:
        query = query.where(t.c.created_at < until)
    result = db.session.execute(query.order_by(t.c.id).execution_options(yield_per=2000))
    for partition in result.partitions():
        for r in partition:
            yield {
                "notification_id": r.idempotency_key, "event_id": r.event_id,
                "type": r.kind, "endpoint_id": r.endpoint_id,
                "endpoint_name": r.endpoint_name, "endpoint_url": r.endpoint_url,
                "state": r.state, "attempts": r.attempts, "created_at": iso(r.created_at),
                "acknowledged_at": iso(r.acknowledged_at), "dead_at": iso(r.dead_at),
                "last_status": r.last_status, "last_error": r.last_error,
            }


# ---------------------------------------------------------------- signing and sending


def standard_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The `webhook-signature` value: v1, base64 HMAC-SHA256 over "id.timestamp.body"."""
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode("ascii") + body,
                   hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The former `X-Consent-Signature` (legacy endpoints): v1= hex HMAC-SHA256 over
    "<timestamp>." + body, with the same key bytes as the Standard Webhooks signature."""
    mac = hmac.new(signing_key(secret), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "v1=" + mac.hexdigest()


def delivery_headers(delivery: "Delivery", timestamp: str) -> dict[str, str]:
    """Every header of one attempt: Standard Webhooks', and the former ones for legacy
    endpoints. The id is the notification id: receivers de-duplicate on it."""
    headers = {
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        ID_HEADER: delivery.key, STANDARD_TIMESTAMP_HEADER: timestamp,
        STANDARD_SIGNATURE_HEADER: standard_signature(delivery.secret, delivery.key,
                                                      timestamp, delivery.body),
        ATTEMPT_HEADER: str(delivery.attempt),
    }
    if delivery.legacy_headers:
        headers.update({TIMESTAMP_HEADER: timestamp,
                        SIGNATURE_HEADER: sign(delivery.secret, timestamp, delivery.body),
                        IDEMPOTENCY_HEADER: delivery.key})
    return headers


@dataclass
class Delivery:
    """A claimed message with everything needed to send it without the database."""

    message_id: int
    site_id: int
    endpoint_id: int
    url: str
    secret: str
    key: str
    body: bytes
    attempt: int
    lease_token: str
    endpoint_failing: bool = False
    legacy_headers: bool = False


@dataclass
class SendResult:
    """What one HTTP attempt came to."""

    outcome: str
    status: int | None
    error: str | None
    started_at: datetime
    finished_at: datetime
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.outcome in ("http_error", "timeout", "network_error")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides instead


# Keep-alive connections, one per (worker thread, receiver): no TCP or TLS handshake per
# notification. A connection is only reused after its answer was read to the end.
_pool = threading.local()
MAX_ANSWER = 64 * 1024
STALE_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                http.client.CannotSendRequest)


def _connection(scheme: str, host: str, port: int | None, guard: bool,
                timeout: float) -> tuple[http.client.HTTPConnection, bool]:
    """A pooled connection to the receiver (True) or a new one (False). With GUARD, a new
    connection goes only to an address checked not to be internal at connect time."""
    conns = getattr(_pool, "conns", None)
    if conns is None:
        conns = _pool.conns = {}
    conn = conns.pop((scheme, host, port, guard), None)
    if conn is not None and conn.sock is not None:
        conn.sock.settimeout(timeout)
        return conn, True
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    if guard:
        # connect() (and HTTPS's, before the TLS handshake with the host's name) dials
        # through this attribute
        conn._create_connection = _vetted_connection
    return conn, False


def _exchange_once(conn: http.client.HTTPConnection, path: str, body: bytes,
                   headers: dict, seconds: float) -> tuple[int, str | None, str, bool]:
    """POST and read the answer within SECONDS; returns (status, Retry-After, text, reusable)."""
    expired = threading.Event()

    def abort() -> None:
        # A receiver that trickles bytes defeats per-read timeouts; the lease would then
        # run out while we still send, so the whole attempt has a hard deadline.
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(max(0.001, seconds), abort)
    timer.daemon = True
    timer.start()
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read(MAX_ANSWER)
        reusable = response.isclosed() and not response.will_close
        return (response.status, response.getheader("Retry-After"),
                text[:512].decode("utf-8", "replace"), reusable and not expired.is_set())
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise TimeoutError("deadline") from exc
        raise
    finally:
        timer.cancel()
        if expired.is_set():
            raise TimeoutError("deadline")


GENERIC_NETWORK_ERROR = "the receiver could not be reached or the connection failed"


def _network_error(exc: BaseException, generic: bool, delivery: "Delivery") -> str:
    """The delivery log's text of a failed connection. GENERIC (production): one text for
    every cause, so the log cannot tell a closed port from a TLS or protocol failure
    (which would make webhooks a port scanner); the cause goes to the server log."""
    detail = f"{type(exc).__name__}: {exc}"
    if not generic:
        return detail[:MAX_ERROR]
    log.info("webhook %s attempt %s: %s", delivery.key, delivery.attempt, detail)
    return GENERIC_NETWORK_ERROR


def send(delivery: Delivery, timeout: float, guard: bool = False,
         generic_errors: bool = False) -> SendResult:
    """POST one signed notification; TIMEOUT bounds the whole attempt, not each read.
    GUARD: refuse to connect to internal addresses (see refuses_internal).
    GENERIC_ERRORS: log network failures with one text whatever their cause."""
    parts = urlsplit(delivery.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = delivery_headers(delivery, str(int(time.time())))
    key = (parts.scheme, parts.hostname, parts.port, guard)
    started, deadline = utcnow(), time.monotonic() + timeout
    while True:
        conn, reused = _connection(*key, timeout)
        try:
            status, retry_after, text, reusable = _exchange_once(
                conn, path, delivery.body, headers, deadline - time.monotonic())
        except TimeoutError:
            conn.close()
            return SendResult("timeout", None, f"no complete answer within {timeout:g}s",
                              started, utcnow())
        except STALE_ERRORS as exc:
            conn.close()
            if reused:
                continue  # the receiver closed an idle kept-alive connection: redial once
            return SendResult("network_error", None,
                              _network_error(exc, generic_errors, delivery), started, utcnow())
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return SendResult("network_error", None,
                              _network_error(exc, generic_errors, delivery), started, utcnow())
        break
    if reusable:
        _pool.conns[key] = conn
    else:
        conn.close()
    finished = utcnow()
    if 200 <= status < 300:
        return SendResult("delivered", status, None, started, finished)
    error = f"HTTP {status}: {text.strip()[:200]}" if text.strip() else f"HTTP {status}"
    if status >= 500 or status in RETRYABLE_STATUSES:
        return SendResult("http_error", status, error, started, finished,
                          _retry_after(retry_after))
    return SendResult("rejected", status, error + " (not retried)", started, finished)


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Delay before the next attempt: exponential, with jitter so retries do not bunch."""
    base = setting("CONSENT_WEBHOOK_BACKOFF_BASE")
    cap = setting("CONSENT_WEBHOOK_BACKOFF_MAX")
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


# ---------------------------------------------------------------- claiming and recording


def _body(payload: dict, subject_id: str | None) -> bytes:
    body = dict(payload)
    body["subject"] = subject_id
    # Standard Webhooks' recommended payload has the event's time as `timestamp`.
    body.setdefault("timestamp", (payload.get("event") or {}).get("recorded_at"))
    return json.dumps(body, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _claim(limit: int, worker: str) -> list[Delivery]:
    """Lease up to LIMIT due messages to WORKER, inside the current write transaction."""
    from .subjects import Subject

    t, e = OutboxMessage.__table__, DownstreamEndpoint.__table__
    s = Subject.__table__
    now = utcnow()
    due = sa.and_(t.c.state.in_(("pending", "delivering")), t.c.next_attempt_at <= now)
    query = (sa.select(t.c.id, t.c.state, t.c.attempts, t.c.site_id, t.c.endpoint_id,
                       t.c.claimed_at, t.c.lease_until, t.c.lease_owner)
             .where(due).order_by(t.c.next_attempt_at, t.c.id).limit(limit))
    if db.session.get_bind().dialect.name == "postgresql":
        # Rows another worker is claiming right now are skipped, not waited for.
        query = query.with_for_update(skip_locked=True)
    rows = db.session.execute(query).all()
    if not rows:
        return []
    paused = dict(db.session.execute(sa.select(e.c.id, e.c.paused_until).where(
        e.c.id.in_({r.endpoint_id for r in rows}), e.c.paused_until > now)).all())
    if paused:
        # Queued before the writer heard of the pause: they wait with the rest.
        for endpoint_id, until in paused.items():
            _defer_queue(endpoint_id, until)
        rows = [r for r in rows if r.state == "delivering" or r.endpoint_id not in paused]
    max_attempts = int(setting("CONSENT_WEBHOOK_MAX_ATTEMPTS"))
    log_rows, exhausted, ids = [], [], []
    for r in rows:
        if r.state == "delivering":
            log_rows.append({
                "message_id": r.id, "site_id": r.site_id, "endpoint_id": r.endpoint_id,
                "attempt": r.attempts, "worker": r.lease_owner,
                "started_at": r.claimed_at or now, "finished_at": r.lease_until or now,
                "outcome": "abandoned",
                "error": "the worker stopped before recording a result; lease expired"})
        (exhausted if r.attempts >= max_attempts else ids).append(r.id)
    if log_rows:
        db.session.execute(sa.insert(DeliveryAttempt.__table__), log_rows)
    if exhausted:
        db.session.execute(sa.update(t).where(t.c.id.in_(exhausted)).values(
            state="dead", dead_at=now, lease_owner=None, lease_until=None,
            last_error=f"gave up after {max_attempts} attempts (last one abandoned)"))
    if not ids:
        return []
    token = f"{worker}/{uuid.uuid4().hex[:12]}"
    lease_end = now + timedelta(seconds=lease_seconds())
    # The WHERE repeats the due condition: the UPDATE itself is the atomic claim.
    db.session.execute(sa.update(t).where(t.c.id.in_(ids), due).values(
        state="delivering", lease_owner=token, claimed_at=now, lease_until=lease_end,
        next_attempt_at=lease_end, attempts=t.c.attempts + 1))
    claimed = db.session.execute(
        sa.select(t.c.id, t.c.site_id, t.c.endpoint_id, t.c.idempotency_key,
                  t.c.payload, t.c.subject_ref, t.c.attempts, e.c.url, e.c.secret,
                  e.c.active, e.c.consecutive_failures, e.c.legacy_headers, s.c.public_id)
        .join(e, e.c.id == t.c.endpoint_id)
        .outerjoin(s, s.c.pseudonym == t.c.subject)
        .where(t.c.lease_owner == token).order_by(t.c.id)).all()
    out = []
    for r in claimed:
        if not r.active:
            # Queued in the moment before the endpoint was disabled: never sent.
            db.session.execute(sa.update(t).where(t.c.id == r.id).values(
                state="dead", dead_at=now, last_error="endpoint disabled",
                lease_owner=None, lease_until=None))
            db.session.execute(sa.insert(DeliveryAttempt.__table__).values(
                message_id=r.id, site_id=r.site_id, endpoint_id=r.endpoint_id,
                attempt=r.attempts, worker=token, started_at=now, finished_at=now,
                outcome="cancelled", error="endpoint disabled"))
            continue
        subject_id = open_subject_ref(r.subject_ref) or r.public_id
        out.append(Delivery(
            message_id=r.id, site_id=r.site_id, endpoint_id=r.endpoint_id, url=r.url,
            secret=open_secret(r.secret), key=r.idempotency_key,
            body=_body(r.payload, subject_id),
            attempt=r.attempts, lease_token=token,
            endpoint_failing=bool(r.consecutive_failures),
            legacy_headers=bool(r.legacy_headers)))
    return out


def _pause_endpoint(endpoint_id: int, result: SendResult, now: datetime) -> datetime:
    """Count one more failure of an endpoint and pause it; returns the end of the pause.

    A receiver that is down gets one probe per pause instead of one attempt per queued
    message: the worker stays idle, so consent writes do not compete with it for nothing.
    """
    e = DownstreamEndpoint.__table__
    row = db.session.execute(sa.select(e.c.consecutive_failures, e.c.failing_since)
                             .where(e.c.id == endpoint_id).with_for_update()).one()
    failures = row.consecutive_failures + 1
    until = now + timedelta(seconds=backoff_seconds(failures, result.retry_after))
    db.session.execute(sa.update(e).where(e.c.id == endpoint_id).values(
        consecutive_failures=failures, failing_since=row.failing_since or now,
        paused_until=until))
    return until


def _defer_queue(endpoint_id: int, until: datetime) -> None:
    """Make the rest of a paused endpoint's queue wait (spending none of its attempts)."""
    t = OutboxMessage.__table__
    waiting = sa.and_(t.c.endpoint_id == endpoint_id, t.c.state == "pending",
                      t.c.next_attempt_at < until)
    if db.session.get_bind().dialect.name == "postgresql":
        # Rows another worker is settling are left alone instead of waited for.
        waiting = t.c.id.in_(sa.select(t.c.id).where(waiting)
                             .with_for_update(skip_locked=True).scalar_subquery())
    db.session.execute(sa.update(t).where(waiting).values(next_attempt_at=until))


_settle_statement = None


def _settle_update():
    """One UPDATE for every settled message (executemany); fenced by the lease token."""
    global _settle_statement
    if _settle_statement is None:
        t = OutboxMessage.__table__
        state = sa.bindparam("b_state", type_=sa.String())
        _settle_statement = sa.update(t).where(
            t.c.id == sa.bindparam("b_id"), t.c.lease_owner == sa.bindparam("b_token"),
            t.c.state == "delivering",
        ).values(
            state=state, lease_until=None,
            last_status=sa.bindparam("b_status", type_=sa.Integer()),
            last_error=sa.bindparam("b_error", type_=sa.String()),
            next_attempt_at=sa.bindparam("b_next", type_=UTCDateTime()),
            acknowledged_at=sa.bindparam("b_ack", type_=UTCDateTime()),
            dead_at=sa.bindparam("b_dead", type_=UTCDateTime()),
            # The sealed visitor id of an erasure notice goes once it is acknowledged.
            subject_ref=sa.case((state == "delivered", sa.null()), else_=t.c.subject_ref),
        )
    return _settle_statement


def _settle(results: list[tuple[Delivery, SendResult]]) -> list[str]:
    """Log attempts and move their messages on, inside the current write transaction.

    Only the holder of a lease moves its message: if the lease ran out and another worker
    claimed the message, the attempt is logged but changes nothing ("lease_lost"). The
    lease token stays on the row afterwards, naming the worker that settled it.
    """
    if not results:
        return []
    t = OutboxMessage.__table__
    e = DownstreamEndpoint.__table__
    now = utcnow()
    max_attempts = int(setting("CONSENT_WEBHOOK_MAX_ATTEMPTS"))
    # Endpoint rows first, then messages, each in id order: the same lock order in every
    # worker, so concurrent settles on PostgreSQL wait for each other instead of deadlock.
    order = sorted(range(len(results)), key=lambda i: (results[i][0].endpoint_id,
                                                       results[i][0].message_id))
    pauses: dict[int, datetime] = {}
    recovered: set[int] = set()
    for i in order:
        delivery, result = results[i]
        if result.retryable:
            pauses[delivery.endpoint_id] = _pause_endpoint(delivery.endpoint_id, result, now)
        elif result.outcome == "delivered" and delivery.endpoint_failing \
                and delivery.endpoint_id not in recovered | set(pauses):
            recovered.add(delivery.endpoint_id)
            db.session.execute(sa.update(e).where(e.c.id == delivery.endpoint_id).values(
                consecutive_failures=0, failing_since=None, paused_until=None))
    params, targets = [], {}
    for i in order:
        delivery, result = results[i]
        row = {"b_id": delivery.message_id, "b_token": delivery.lease_token,
               "b_status": result.status, "b_error": None, "b_next": now, "b_ack": None,
               "b_dead": None}
        if result.outcome == "delivered":
            row.update(b_state="delivered", b_ack=result.finished_at)
        elif result.retryable and delivery.attempt < max_attempts:
            delay = backoff_seconds(delivery.attempt, result.retry_after)
            row.update(b_state="pending", b_error=result.error,
                       b_next=now + timedelta(seconds=delay))
        else:
            reason = result.error or result.outcome
            if result.retryable:
                reason = f"gave up after {delivery.attempt} attempts: {reason}"
            row.update(b_state="dead", b_dead=now, b_error=reason[:MAX_ERROR])
        params.append(row)
        targets[i] = row["b_state"]
    db.session.execute(_settle_update(), params)
    for endpoint_id, until in pauses.items():
        _defer_queue(endpoint_id, until)
    owners = dict(db.session.execute(sa.select(t.c.id, t.c.lease_owner).where(
        t.c.id.in_([d.message_id for d, _ in results]))).all())
    states, log_rows = [""] * len(results), []
    for i, (delivery, result) in enumerate(results):
        moved = owners.get(delivery.message_id) == delivery.lease_token
        states[i] = targets[i] if moved else "lease_lost"
        error = result.error
        if not moved:
            error = ((error + "; ") if error else "") + "lease lost: result not applied"
        log_rows.append({
            "message_id": delivery.message_id, "site_id": delivery.site_id,
            "endpoint_id": delivery.endpoint_id, "attempt": delivery.attempt,
            "worker": delivery.lease_token, "started_at": result.started_at,
            "finished_at": result.finished_at, "outcome": result.outcome,
            "status_code": result.status, "error": error and error[:MAX_ERROR],
            "duration_ms": int((result.finished_at - result.started_at).total_seconds()
                               * 1000)})
    db.session.execute(sa.insert(DeliveryAttempt.__table__), log_rows)
    return states


def claim_due(limit: int, worker: str) -> list[Delivery]:
    """Lease up to LIMIT due messages to WORKER (expired leases of stopped workers too)."""
    return run_write(_claim, limit, worker)


def record_result(delivery: Delivery, result: SendResult) -> str:
    """Log an attempt and move its message on; returns its new state (or "lease_lost")."""
    return run_write(_settle, [(delivery, result)])[0]


def settle_and_claim(results: list[tuple[Delivery, SendResult]], limit: int,
                     worker: str) -> tuple[list[str], list[Delivery]]:
    """Record finished attempts and claim up to LIMIT more, in one write transaction.

    One transaction per round instead of two per message keeps the worker from competing
    with consent writes for SQLite's single write lock.
    """
    def write():
        states = _settle(results)
        return states, (_claim(limit, worker) if limit > 0 else [])

    return run_write(write)


# ---------------------------------------------------------------- the worker


def worker_name() -> str:
    """How this process names itself in leases and the delivery log."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


@dataclass
class DeliveryWorker:
    """Claims due messages and sends them, CONCURRENCY at a time, until told to stop."""

    concurrency: int = 8
    poll_seconds: float = 1.0
    forever: bool = False
    echo: Any = None
    name: str = field(default_factory=worker_name)
    stats: Counter = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> Counter:
        """Deliver until nothing is due (one-shot) or until stopped (forever)."""
        timeout = setting("CONSENT_WEBHOOK_TIMEOUT")
        guard = refuses_internal()
        generic = current_app.config.get("ENV_NAME") == "production"
        if not guard:
            log.warning("webhook worker: the address guard is OFF (%s): receivers on "
                        "internal addresses will be called",
                        "CONSENT_WEBHOOK_ALLOW_PRIVATE=1" if current_app.config.get(
                            "ENV_NAME") == "production" else "not production")
        inflight: dict[Future, Delivery] = {}
        finished: list[tuple[Delivery, SendResult]] = []
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook") as pool:
            while True:
                room = 0 if self.stop.is_set() else self.concurrency - len(inflight)
                claimed = []
                if finished or room > 0:
                    claimed = self._exchange(finished, room)
                    finished = []
                for delivery in claimed:
                    inflight[pool.submit(send, delivery, timeout, guard,
                                         generic)] = delivery
                if not inflight:
                    if self.stop.is_set() or (not self.forever and not claimed):
                        break
                    if not claimed:
                        self.stop.wait(self._idle_wait())
                    continue
                done, rest = wait(list(inflight), timeout=self.poll_seconds,
                                  return_when=FIRST_COMPLETED)
                if done and rest:
                    # Answers of a fast receiver arrive together: settle them in one
                    # transaction rather than one each.
                    done |= wait(rest, timeout=0.005)[0]
                finished = [(inflight.pop(f), self._result(f)) for f in done]
        return self.stats

    def _idle_wait(self) -> float:
        """Sleep until the next retry is due, at most one poll interval."""
        try:
            t = OutboxMessage.__table__
            due = db.session.execute(sa.select(sa.func.min(t.c.next_attempt_at)).where(
                t.c.state.in_(("pending", "delivering")))).scalar()
            db.session.commit()
        except sa.exc.SQLAlchemyError:
            db.session.rollback()
            return self.poll_seconds
        if due is None:
            return self.poll_seconds
        return min(self.poll_seconds, max(0.01, (due - utcnow()).total_seconds()))

    @staticmethod
    def _result(future: Future) -> SendResult:
        try:
            return future.result()
        except Exception:  # noqa: BLE001 - a bug in send must not kill the worker
            log.exception("webhook send failed")
            return SendResult("network_error", None, GENERIC_NETWORK_ERROR,
                              utcnow(), utcnow())

    def _exchange(self, finished: list[tuple[Delivery, SendResult]],
                  room: int) -> list[Delivery]:
        try:
            states, claimed = settle_and_claim(finished, room, self.name)
        except (DatabaseUnavailable, sa.exc.OperationalError) as exc:
            # The database is away. Unrecorded attempts keep their lease, which runs out,
            # and the messages are sent again: at least once, never lost.
            log.warning("webhook worker cannot reach the database: %s", exc)
            db.session.rollback()
            if not self.forever:
                raise
            states, claimed = ["unrecorded"] * len(finished), []
            self.stop.wait(self.poll_seconds)
        for (delivery, result), state in zip(finished, states):
            self.stats[result.outcome] += 1
            self.stats[f"now {state}"] += 1
            if self.echo:
                self.echo(f"{delivery.key} attempt {delivery.attempt}: {result.outcome}"
                          f"{' ' + str(result.status) if result.status else ''}"
                          f"{' - ' + result.error if result.error else ''} -> {state}")
        return claimed


@consent_cli.command("deliver")
@click.option("--forever", is_flag=True,
              help="Keep running and deliver as messages arrive (stop with SIGTERM).")
@click.option("--concurrency", type=click.IntRange(1, 64),
              help="HTTP requests in flight at once [CONSENT_WEBHOOK_CONCURRENCY].")
@click.option("--poll", "poll_seconds", type=click.FloatRange(0.01, 60),
              help="Seconds between looks when idle [CONSENT_WEBHOOK_POLL_SECONDS].")
@click.option("-v", "--verbose", is_flag=True, help="Print every attempt.")
def deliver_command(forever, concurrency, poll_seconds, verbose):
    """Send due webhook notifications (one-shot by default; --forever for a service)."""
    worker = DeliveryWorker(
        concurrency=concurrency or int(setting("CONSENT_WEBHOOK_CONCURRENCY")),
        poll_seconds=poll_seconds or setting("CONSENT_WEBHOOK_POLL_SECONDS"),
        forever=forever, echo=click.echo if verbose else None)
    if forever:
        def _stop(signum, _frame):
            # Finish the requests in flight, record them, then exit.
            worker.stop.set()
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        click.echo(f"webhook worker {worker.name} started", err=True)
    try:
        stats = worker.run()
    except (DatabaseUnavailable, sa.exc.OperationalError) as exc:
        raise click.ClickException(f"database unavailable: {exc}")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "nothing was due"
    click.echo(f"delivery: {summary}")


@consent_cli.command("retry-dead")
@click.argument("site_key")
@click.option("--endpoint", "endpoint_id", type=int, help="Only this endpoint's.")
@click.option("--message", "message_id", type=int, help="Only this delivery.")
def retry_dead_command(site_key, endpoint_id, message_id):
    """Requeue a site's dead-letter webhook notifications."""
    from .errors import DomainError

    try:
        count = retry_dead(site_key, message_id=message_id, endpoint_id=endpoint_id,
                           actor="cli")
    except (DomainError, NotFound) as exc:
        raise click.ClickException(getattr(exc, "detail", None) or str(exc))
    click.echo(f"requeued {count} dead letter(s)")


@consent_cli.command("add-webhook")
@click.argument("site_key")
@click.argument("url")
@click.option("--name")
@click.option("--category", "categories", multiple=True, help="Category key or '*'.")
@click.option("--channel", "channels", multiple=True, help="Channel pattern or '*'.")
def add_webhook_command(site_key, url, name, categories, channels):
    """Register a downstream endpoint and print its signing secret (shown once)."""
    from .errors import DomainError

    try:
        endpoint, secret = register_endpoint(site_key, url=url, name=name,
                                             categories=list(categories),
                                             channels=list(channels))
    except (DomainError, NotFound) as exc:
        raise click.ClickException(getattr(exc, "detail", None) or str(exc))
    click.echo(f"endpoint {endpoint.id} registered; signing secret (shown once): {secret}")


@consent_cli.command("webhook-legacy-headers")
@click.argument("site_key")
@click.argument("endpoint_id", type=int)
@click.option("--off/--on", "off", default=True,
              help="--off (default) stops sending the pre-Standard-Webhooks headers.")
def webhook_legacy_headers_command(site_key, endpoint_id, off):
    """Stop (or resume) sending an endpoint the pre-Standard-Webhooks headers."""
    try:
        endpoint = set_legacy_headers(site_key, endpoint_id, not off)
    except NotFound as exc:
        raise click.ClickException(str(exc))
    click.echo(f"endpoint {endpoint.id}: legacy headers {'on' if endpoint.legacy_headers else 'off'}")


@consent_cli.command("outbox-status")
@click.option("--site", "site_key", help="Only this site.")
def outbox_status_command(site_key):
    """Count webhook notifications per state."""
    sites = db.session.execute(db.select(Site.id, Site.key).order_by(Site.key)).all()
    for site_id, key in sites:
        if site_key and key != site_key:
            continue
        counts = message_counts(site_id)
        click.echo(f"{key}: " + ", ".join(f"{s} {counts[s]}" for s in STATES))
