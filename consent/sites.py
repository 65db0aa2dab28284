"""Sites, their cookie categories and server-to-server API keys."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .database import UTCDateTime, utcnow
from .extensions import db

ESSENTIAL = "essential"
STANDARD_CATEGORIES = ("essential", "functional", "analytics", "advertising")
# Every category key travels in the consent cookie (granted or refused), and browsers
# drop a cookie over 4,096 bytes: these caps keep the worst case near 1.6 KB
# (tests/test_widget_server.py::test_worst_case_cookie_stays_far_under_4_kb).
MAX_CATEGORIES = 40  # per site, essential included
CATEGORY_KEY_MAX = 32
CATEGORY_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,%d}$" % (CATEGORY_KEY_MAX - 1))
SITE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


class CategoryLimit(ValueError):
    """A category key or a number of categories the consent cookie cannot carry."""


def check_category_key(key: object) -> str:
    """KEY if it can be a category key, else CategoryLimit saying what a key may be."""
    if not isinstance(key, str) or not CATEGORY_KEY_RE.fullmatch(key):
        raise CategoryLimit(
            f"category key {key!r} must be 1-{CATEGORY_KEY_MAX} lower-case letters, digits "
            "or '_', starting with a letter (every key is stored in the visitor's consent "
            "cookie)")
    return key


def check_category_count(count: int, site_key: str) -> None:
    """CategoryLimit when a site would have more than MAX_CATEGORIES categories."""
    if count > MAX_CATEGORIES:
        raise CategoryLimit(
            f"site {site_key!r} would have {count} categories; at most {MAX_CATEGORIES} "
            "(essential included) fit in the consent cookie, which browsers drop over "
            "4 KB")


class NotFound(Exception):
    """A named thing (site, category, subject, ...) does not exist."""

    def __init__(self, kind: str, name: str):
        super().__init__(f"unknown {kind} {name!r}")
        self.kind, self.name = kind, name


class BadOrigin(ValueError):
    """An allowed origin that is not `scheme://host[:port]`; the message shows the fix."""


def normalise_origin(value: str) -> str:
    """The one form an allowed origin is stored and compared in, as browsers send it.

    Lower case, no trailing slash, the default port dropped, an IPv6 host in brackets;
    `*` stands for any origin. Anything else (no scheme, a path, a query, a wildcard
    host, user info) raises BadOrigin with the corrected form where there is one.
    """
    raw = value.strip() if isinstance(value, str) else ""
    if raw == "*":
        return raw
    if not raw:
        raise BadOrigin("an origin cannot be empty")
    if "://" not in raw:
        host = raw.split("/")[0].split(":")[0].strip("[]").lower()
        local = host == "localhost" or re.fullmatch(r"[0-9.]+|[0-9a-f:]+", host) is not None
        raise BadOrigin(f"{raw!r} is not an origin: it has no scheme"
                        + _did_you_mean(("http://" if local else "https://") + raw))
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise BadOrigin(f"{raw!r} is not an origin like https://shop.example "
                        "(scheme://host[:port]): its host or port cannot be read") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BadOrigin(f"{raw!r} is not an origin: only http and https pages can embed "
                        "the widget")
    host = parts.hostname or ""
    if "*" in host:
        raise BadOrigin(f"{raw!r}: wildcard hosts are not supported; list each origin "
                        "(e.g. https://www.example.com), or give '*' alone for any origin")
    if "@" in parts.netloc:
        raise BadOrigin(f"{raw!r} is not an origin: it has user information"
                        + _did_you_mean(f"{scheme}://{parts.netloc.rsplit('@', 1)[1]}"))
    origin = f"{scheme}://{_origin_host(raw, host)}"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        if port == 0:
            raise BadOrigin(f"{raw!r} has port 0")
        origin += f":{port}"
    if parts.path not in ("", "/") or parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise BadOrigin(f"{raw!r} is not an origin: an origin has no path, query or "
                        f"fragment; did you mean {origin}?")
    return origin


def _did_you_mean(candidate: str) -> str:
    try:
        return f"; did you mean {normalise_origin(candidate)}?"
    except BadOrigin:
        return " (an origin is scheme://host[:port], e.g. https://shop.example)"


def _origin_host(raw: str, host: str) -> str:
    """HOST as browsers write it in an Origin header (BadOrigin if it is not a host)."""
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise BadOrigin(f"{raw!r}: {host!r} is not an IPv6 address") from None
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise BadOrigin(f"{raw!r}: {host!r} is not a host name") from None
    if not ascii_host or not all(_LABEL_RE.fullmatch(label) for label in ascii_host.split(".")):
        raise BadOrigin(f"{raw!r}: {host!r} is not a host name")
    return ascii_host


def _stored_origins(origins) -> tuple[str, ...]:
    """A site's origins in normal form (values stored before normalisation included)."""
    out = []
    for origin in origins or ():
        try:
            origin = normalise_origin(origin)
        except BadOrigin:
            pass  # kept as typed: it matches nothing, and check-site reports it
        if origin not in out:
            out.append(origin)
    return tuple(out)


class Site(db.Model):
    """A website (or app) whose visitors give consent."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    allowed_origins: Mapped[list] = mapped_column(sa.JSON, default=list)
    default_locale: Mapped[str] = mapped_column(sa.String(16), default="en")
    locales: Mapped[list] = mapped_column(sa.JSON, default=lambda: ["en", "de", "fr", "es"])
    # Consent lifetimes: how long a choice stands before the widget asks again.
    accept_lifetime_days: Mapped[int] = mapped_column(default=365)
    reject_lifetime_days: Mapped[int] = mapped_column(default=182)
    ledger_streams: Mapped[int] = mapped_column(default=8)
    # Free-form settings that do not need their own column: texts per locale, cookie
    # domain, theme, request deadlines, age rules, channel defaults, profile name.
    settings: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    categories: Mapped[list["Category"]] = relationship(
        back_populates="site", order_by="Category.position", cascade="all, delete-orphan"
    )
    # Read by the snapshot only. Named, not imported: consent.policies builds on this
    # module (a version belongs to a site), so this module must not import it.
    policy_versions: Mapped[list[Any]] = relationship(
        "PolicyVersion", viewonly=True,
        order_by="(PolicyVersion.published_at.desc(), PolicyVersion.id.desc())")


class Category(db.Model):
    """A cookie category of a site: essential, functional, analytics, advertising, custom."""

    __tablename__ = "categories"
    __table_args__ = (sa.UniqueConstraint("site_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), index=True)
    key: Mapped[str] = mapped_column(sa.String(40))
    position: Mapped[int] = mapped_column(default=0)
    locked: Mapped[bool] = mapped_column(default=False)
    # {locale: text}
    titles: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    descriptions: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # [{"name", "provider", "purpose", "cookies": [{"name"|"pattern", "domain", "path"}]}]
    services: Mapped[list] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    site: Mapped[Site] = relationship(back_populates="categories")


class SiteApiKey(db.Model):
    """A secret for a site's backend to call the server-to-server API."""

    __tablename__ = "site_api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="default")
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class VersionInfo:
    """The few facts of a policy version the hot paths need (kept in the site snapshot)."""

    id: int
    label: str
    published_at: datetime
    effective_at: datetime
    material: bool


def in_force(versions: tuple[VersionInfo, ...], now: datetime,
             material: bool = False) -> VersionInfo | None:
    """The (material) version in force at NOW: the latest to have taken effect."""
    found = [v for v in versions if v.effective_at <= now and (v.material or not material)]
    if not found:
        # Nothing has taken effect yet: the first version published stands in.
        return None if material or not versions else versions[0]
    return max(found, key=lambda v: (v.effective_at, v.published_at, v.id))


def announced(versions: tuple[VersionInfo, ...], now: datetime) -> VersionInfo | None:
    """The next version published but not yet in force at NOW (advance notice), or None."""
    found = [v for v in versions if v.effective_at > now]
    return min(found, key=lambda v: (v.effective_at, v.id)) if found else None


@dataclass(frozen=True)
class SiteSnapshot:
    """Read-only view of a site's configuration used on hot request paths."""

    id: int
    key: str
    name: str
    allowed_origins: tuple[str, ...]
    default_locale: str
    locales: tuple[str, ...]
    category_keys: tuple[str, ...]
    accept_lifetime_days: int
    reject_lifetime_days: int
    ledger_streams: int
    settings: dict = field(hash=False, compare=False)
    policy_material_label: str | None = None
    revision: str = ""
    # consent.policies.VersionInfo of every version, in publication order.
    policy_versions: tuple = field(default=(), hash=False, compare=False)

    @property
    def policy_label(self) -> str | None:
        """The label of the policy version in force now (not one announced for later)."""
        version = in_force(self.policy_versions, utcnow())
        return version.label if version else None

    def allows_origin(self, origin: str | None) -> bool:
        """True when ORIGIN may call this site's browser endpoints."""
        return bool(origin) and ("*" in self.allowed_origins or origin in self.allowed_origins)


_cache: dict[str, tuple[float, SiteSnapshot]] = {}
_cache_lock = threading.Lock()
# Called when every site's cached configuration is forgotten (consent.notices forgets
# which revision's notice has which digest: another database, in tests).
cache_cleared: list = []


def invalidate_site_cache(key: str | None = None) -> None:
    """Forget cached configuration (all sites, or one)."""
    global _origins
    with _cache_lock:
        _origins = None
        if key is None:
            _cache.clear()
        else:
            _cache.pop(key, None)
    if key is None:
        for hook in cache_cleared:
            hook()


def get_site(key: str) -> Site:
    """Load a site by its public key or raise NotFound."""
    site = db.session.execute(db.select(Site).where(Site.key == key)).scalar_one_or_none()
    if site is None:
        raise NotFound("site", key)
    return site


def fresh_snapshot(key: str) -> SiteSnapshot:
    """The site as the database has it now (and cached again): for what must match the
    current revision exactly, which a snapshot cached before another process's edit
    (CONSENT_SITE_CACHE_SECONDS) may not."""
    invalidate_site_cache(key)
    return site_snapshot(key)


def at_one_revision(site: SiteSnapshot, build, attempts: int = 3):
    """(site, BUILD(site)) for a page whose revision must name the words it shows: built
    again from the database's copy while the database no longer has SITE's revision once
    it is built (this process's snapshot may be older than another process's edit, and on
    PostgreSQL each read sees the latest commits)."""
    for _attempt in range(attempts):
        result = build(site)
        now = fresh_snapshot(site.key)
        if now.revision == site.revision:
            break
        site = now
    return site, result


def site_snapshot(key: str) -> SiteSnapshot:
    """A cached snapshot of the site's configuration (TTL from settings)."""
    # (the app object itself: see consent.hardening.check_request)
    ttl = current_app._get_current_object().config["CONSENT_SITE_CACHE_SECONDS"]
    now = time.monotonic()
    if ttl > 0:
        hit = _cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
    if not isinstance(key, str) or not SITE_KEY_RE.fullmatch(key):
        raise NotFound("site", str(key)[:64])
    site = get_site(key)
    rows = site.policy_versions  # newest first
    # The version in force now (not one announced for later), and the latest material one.
    versions = tuple(VersionInfo(v.id, v.label, v.published_at, v.effective_at, v.material)
                     for v in reversed(rows))
    current = in_force(versions, utcnow())
    policy = next((v for v in rows if current and v.id == current.id), None)
    material = next((v for v in rows if v.material), None)
    keys = tuple(c.key for c in site.categories)
    revision = hashlib.sha256(
        repr((site.updated_at, keys, policy and policy.id, material and material.id,
              [(c.key, c.titles, c.descriptions, c.services) for c in site.categories])).encode()
    ).hexdigest()[:16]
    snap = SiteSnapshot(
        id=site.id, key=site.key, name=site.name,
        allowed_origins=_stored_origins(site.allowed_origins),
        default_locale=site.default_locale, locales=tuple(site.locales or ("en",)),
        category_keys=keys, accept_lifetime_days=site.accept_lifetime_days,
        reject_lifetime_days=site.reject_lifetime_days, ledger_streams=site.ledger_streams,
        settings=dict(site.settings or {}),
        policy_material_label=material.label if material else None,
        revision=revision, policy_versions=versions,
    )
    if ttl > 0:
        expires = now + ttl
        upcoming = announced(versions, utcnow())
        if upcoming is not None:
            # The configuration changes when the announced version takes effect.
            expires = min(expires, now + (upcoming.effective_at - utcnow()).total_seconds())
        with _cache_lock:
            _cache[key] = (expires, snap)
    return snap


_origins: tuple[float, dict[str, str | None]] | None = None


def site_for_origin(origin: str | None) -> str | None:
    """The key of the one site that allows ORIGIN, or None (none, several, or a wildcard).

    Lets `/consent.js` with `data-site` inline the right config from the script request's
    Referer; the widget still checks the key, so a wrong guess only costs bytes.
    """
    global _origins
    if not origin:
        return None
    ttl = current_app.config["CONSENT_SITE_CACHE_SECONDS"]
    now = time.monotonic()
    if _origins is None or _origins[0] <= now or ttl <= 0:
        mapping: dict[str, str | None] = {}
        for key, origins in db.session.execute(db.select(Site.key, Site.allowed_origins)):
            for o in _stored_origins(origins):
                if o != "*":
                    mapping[o] = key if o not in mapping or mapping[o] == key else None
        _origins = (now + ttl, mapping)
    return _origins[1].get(origin)


def gpc_categories(site: SiteSnapshot) -> tuple[str, ...]:
    """Categories a GPC signal opts out of (sale/sharing): advertising unless configured."""
    configured = site.settings.get("gpc_categories")
    keys = configured if configured else ["advertising"]
    return tuple(k for k in keys if k in site.category_keys)


def default_category_texts() -> dict[str, dict[str, dict[str, str]]]:
    """Built-in titles and descriptions of the four standard categories, per locale."""
    from .i18n import category_defaults

    return category_defaults()


def create_site(
    key: str,
    name: str,
    *,
    allowed_origins: list[str] | None = None,
    categories: list[dict[str, Any]] | None = None,
    default_locale: str = "en",
    settings: dict | None = None,
) -> Site:
    """Create a site with the standard categories (plus any custom ones given).

    Must run inside a write transaction.
    """
    if not SITE_KEY_RE.fullmatch(key):
        raise ValueError(f"site key {key!r} must be 3-64 letters, digits, '-' or '_'")
    site = Site(
        key=key, name=name, allowed_origins=list(_checked_origins(allowed_origins or [])),
        default_locale=default_locale, settings=dict(settings or {}),
        ledger_streams=current_app.config["CONSENT_LEDGER_STREAMS"],
    )
    texts = default_category_texts()
    specs = categories or [{"key": k} for k in STANDARD_CATEGORIES]
    if not any(s["key"] == ESSENTIAL for s in specs):
        specs = [{"key": ESSENTIAL}] + list(specs)
    for spec in specs:
        check_category_key(spec["key"])
    check_category_count(len({s["key"] for s in specs}), key)
    for position, spec in enumerate(specs):
        ckey = spec["key"]
        defaults = texts.get(ckey, {})
        site.categories.append(Category(
            key=ckey, position=position, locked=(ckey == ESSENTIAL),
            titles=spec.get("titles") or {loc: t["title"] for loc, t in defaults.items()}
            or {"en": ckey.replace("_", " ").title()},
            descriptions=spec.get("descriptions")
            or {loc: t["description"] for loc, t in defaults.items()},
            services=list(spec.get("services") or []),
        ))
    db.session.add(site)
    db.session.flush()
    invalidate_site_cache(key)
    return site


def _checked_origins(origins) -> tuple[str, ...]:
    checked = []
    for origin in origins:
        origin = normalise_origin(origin)
        if origin not in checked:
            checked.append(origin)
    return tuple(checked)


def add_origins(site: Site, origins: list[str]) -> list[str]:
    """Add ORIGINS (normalised) to SITE's allowed origins; returns the ones that were new.

    Must run inside a write transaction; BadOrigin before anything changes.
    """
    new = [o for o in _checked_origins(origins) if o not in _stored_origins(site.allowed_origins)]
    if new:
        site.allowed_origins = list(site.allowed_origins or []) + new
        site.updated_at = utcnow()
        invalidate_site_cache(site.key)
    return new


def create_api_key(site: Site, name: str = "default") -> str:
    """Issue a new API key for SITE; returns the secret, which is shown only once."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = f"ck_{prefix}_{secret}"
    db.session.add(SiteApiKey(site_id=site.id, name=name, prefix=prefix,
                              token_hash=hashlib.sha256(token.encode()).hexdigest()))
    db.session.flush()
    return token


def site_for_api_key(token: str | None) -> int | None:
    """The site id an API key belongs to, or None when the key is unknown or revoked."""
    if not token or not token.startswith("ck_") or token.count("_") < 2:
        return None
    prefix = token.split("_", 2)[1]
    row = db.session.execute(
        db.select(SiteApiKey).where(SiteApiKey.prefix == prefix, SiteApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        return None
    digest = hashlib.sha256(token.encode()).hexdigest()
    return row.site_id if hmac.compare_digest(digest, row.token_hash) else None
