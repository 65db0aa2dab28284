"""The configuration document the widget loads, and the consent cookie it keeps.

The consent cookie (default name `consent`) is first-party on the site's domain and is
form-urlencoded so both the widget (URLSearchParams) and Python (parse_qsl) read it:

    v=1&s=<subject>&k=<device key>&r=<read token>&c=<granted keys, dot-joined>
      &d=<refused keys>&p=<policy version>&t=<decided, unix s; 0 = no decision yet>
      &e=<expires, unix s>&src=<source>&g=<1 = GPC honoured>&m=<1 = a minor>

`s` is the visitor's public subject id, an identifier only; `k` the device key that
proves it (the server keeps its SHA-256), `r` the read token for
/api/v1/sites/<key>/me/<s>?r=<r> (consent.subjects). docs/widget.md has the table.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import marshmallow as ma
from flask import current_app, request, url_for
from werkzeug.http import dump_cookie

from .consent_mode import widget_consent_mode
from .database import utcnow
from .extensions import db
from .i18n import catalog, localised, pick_locale
from .minors import widget_age_config
from .policies import PolicyVersion
from .regions import applies, widget_region
from .sites import Category, SiteSnapshot, fresh_snapshot, gpc_categories, site_snapshot
from .subjects import DEVICE_KEY_RE, PUBLIC_ID_RE, READ_TOKEN_RE

EVENT_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def _to_next_second(dt) -> str:
    """The instant rounded up to a whole second, ISO-8601 with a Z: the widget compares it
    with choice times in whole seconds, and rounding up (never down) re-asks a visitor who
    chose in the same second rather than keeping a choice that predates the change. Seven
    bytes shorter than iso() in every first-visit script, and without the microseconds'
    noise in its gzip size."""
    dt = dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    if dt.microsecond:
        dt = dt.replace(microsecond=0) + timedelta(seconds=1)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


# What the widget shows of a service in the dialog, and what it deletes on withdrawal.
_SERVICE_FIELDS = ("name", "provider", "purpose", "cookies", "storage")


# Strings only the preferences dialog shows: they come with its details (details=1) when
# it first opens, so a first visit does not download them.
DIALOG_ONLY_STRINGS = ("prefsTitle", "prefsText", "save", "close", "alwaysOn", "proof",
                       "services", "cookies", "more")
# The banner's own strings: opt-out and notice-only visitors see no banner first (the notice
# at collection instead), so their first layer goes without them; the widget takes them
# from the details if it ever shows the banner there (consent-optout.js).
BANNER_ONLY_STRINGS = ("title", "text", "acceptAll", "rejectAll", "customise", "gpcTitle",
                       "gpc")


def _widget_service(service: dict) -> dict:
    out = {k: service[k] for k in _SERVICE_FIELDS if k in service}
    if service.get("storage"):
        out["storage"] = _storage_rules(service["storage"])
    else:
        out.pop("storage", None)
    return out


def _storage_rules(entries) -> dict[str, str]:
    """A service's storage keys as the widget deletes them: one regular expression per
    area (localStorage, sessionStorage), never matching the widget's own consent: keys."""
    by_area: dict[str, list[str]] = {}
    for e in entries or ():
        source = f"(?:{e['pattern']})" if e.get("pattern") else f"^{re.escape(e['name'])}$"
        by_area.setdefault(f"{e.get('area') or 'local'}Storage", []).append(source)
    return {area: "^(?!consent:)(?:" + "|".join(parts) + ")" for area, parts in by_area.items()}


def widget_config(site_key: str, requested_locale: str | None,
                  accept_language: str | None = None, *, details: bool = True,
                  region: str | None = None) -> dict:
    """Everything the widget needs for one site in one language.

    Without DETAILS, only what the banner needs: every byte of it is downloaded before a
    first visitor's banner (budget 6,000 B gzip in all, whatever the number of services),
    so category descriptions, services and their cookies (the widget deletes those of a
    withdrawn category with the dialog's part), the dialog's texts and the endpoints (the
    widget derives them from its own URL) are left for the dialog, which asks for them
    when it first opens.
    """
    site = site_snapshot(site_key)
    locale = pick_locale(requested_locale, site.locales, site.default_locale, accept_language)
    categories = db.session.execute(
        db.select(Category).where(Category.site_id == site.id).order_by(Category.position)
    ).scalars().all()
    strings = dict(catalog("widget", locale))
    # Site texts also carry the preference page's strings: only the widget's own go here.
    known = set(strings) | set(catalog("widget", "en"))
    strings.update({k: v for k, v in ((site.settings.get("texts") or {}).get(locale) or {}).items()
                    if k in known})
    if not details:
        # Strings only the dialog's server-backed parts use: the widget shows those parts
        # only once the details arrived, so they cost a first visit nothing.
        for k in DIALOG_ONLY_STRINGS:
            strings.pop(k, None)
    policy = material = None
    if site.policy_label:
        policy = db.session.execute(db.select(PolicyVersion).where(
            PolicyVersion.site_id == site.id, PolicyVersion.label == site.policy_label)
        ).scalar_one_or_none()
    if site.policy_material_label:
        material = db.session.execute(db.select(PolicyVersion).where(
            PolicyVersion.site_id == site.id,
            PolicyVersion.label == site.policy_material_label)).scalar_one_or_none()
    cookie = site.settings.get("cookie") or {}
    regional = widget_region(site, region, locale, details=details)
    config = _notice(site, locale, {
        "site": site.key,
        "revision": site.revision,
        # Seconds the widget may reuse this document (from localStorage) without asking.
        "ttl": current_app.config["CONSENT_CONFIG_MAX_AGE"],
        "locale": locale,
        # What the site offers: the widget decides whether an inlined config suits the page.
        "locales": list(site.locales),
        "strings": strings,
        "categories": [
            {"key": c.key, **({"locked": True} if c.locked else {}),
             "title": localised(c.titles, locale, site.default_locale),
             **({"description": localised(c.descriptions, locale, site.default_locale),
                 "services": [_widget_service(s) for s in c.services or ()]} if details
                else {})}
            for c in categories
        ],
        "policy": {
            "version": policy.label if policy else None,
            "url": (policy.url or url_for("pages.policy_version", site_key=site.key,
                                          label=policy.label, _external=True))
            if policy else None,
            "materialVersion": material.label if material else None,
            "reconsentAfter": _to_next_second(material.effective_at) if material else None,
        },
        "lifetimes": {"acceptDays": site.accept_lifetime_days,
                      "rejectDays": site.reject_lifetime_days},
        # Defaults (no domain, SameSite=Lax, set by the script) are left out: bytes of
        # every first visit.
        "cookie": {"name": cookie.get("name", COOKIE_NAME),
                   **({"domain": cookie["domain"]} if cookie.get("domain") else {}),
                   **({"sameSite": cookie["same_site"]}
                      if cookie.get("same_site", "Lax") != "Lax" else {}),
                   **({"serverSet": True} if cookie.get("server_set") else {})},
        "gpc": {"categories": list(gpc_categories(site))},
        # Google Consent Mode options (only those the site set, see consent.consent_mode).
        **({"consentMode": mode} if (mode := widget_consent_mode(site)) else {}),
        # The age question (sites with an age rule only, see consent.minors).
        **({"age": age} if (age := widget_age_config(site, locale)) else {}),
        # Opt-out and notice-only regions only (consent.regions): the mode, what is on
        # until an opt-out, the notice's and the link's texts; with the details, the
        # opt-out view's texts and the GPP / US Privacy strings.
        **({"region": regional} if regional else {}),
        **({"endpoints": {
            "decisions": url_for("widget_api.post_decision", site_key=site.key,
                                 _external=True),
            "preferences": url_for("preferences.preferences_page", site=site.key,
                                   _external=True),
        }} if details else {}),
    })
    if regional and not details:
        for k in BANNER_ONLY_STRINGS:
            config["strings"].pop(k, None)
    return config


def _notice(site, locale: str, config: dict) -> dict:
    """From publication until it takes effect, a version announced for later is told in
    the widget's own words (seed policy 001: "before such changes take effect"): the
    sentence `nt` (with its title `ntTitle`) on the banner and the dialog and, once, to a
    returning visitor; the policy link opens the archived diff. Nothing otherwise, so no
    byte is spent on it the rest of the time."""
    from .policies import announced

    strings = config["strings"]
    template, title, link = (strings.pop(k, "") for k in ("nt", "ntTitle", "ntLink"))
    upcoming = announced(site.policy_versions, utcnow())
    if upcoming is None:
        return config
    text = template.replace("{version}", upcoming.label).replace(
        "{date}", upcoming.effective_at.strftime("%Y-%m-%d"))
    strings.update(nt=text, ntTitle=title, policy=link,
                   text=f"{strings.get('text', '')} {text}")
    if "endpoints" in config:  # the dialog's texts come with its details (not first visits)
        strings["prefsText"] = f"{strings.get('prefsText', '')} {text}"
    config["policy"]["url"] = url_for("pages.policy_diff", site_key=site.key,
                                      label=upcoming.label, _external=True)
    return config


# Called with (site snapshot, locale, region) whenever a config document is built to be
# served (consent.notices keeps the notice of each revision served).
config_built: list = []

_documents: dict[tuple, tuple[float, str, str]] = {}
_documents_lock = threading.Lock()


def config_document(site_key: str, requested_locale: str | None,
                    accept_language: str | None = None, *,
                    details: bool = False, region: str | None = None) -> tuple[str, str]:
    """The config as compact JSON and its ETag, cached per site revision and language.

    First visits wait for this document (without DETAILS) before the banner shows, so it
    is served from memory while the site's cached snapshot (CONSENT_SITE_CACHE_SECONDS)
    is fresh.
    """
    site = site_snapshot(site_key)
    ttl = current_app.config["CONSENT_SITE_CACHE_SECONDS"]
    locale = pick_locale(requested_locale, site.locales, site.default_locale, accept_language)
    # The region matters only to sites with rules by region (consent.regions).
    region = region if "regions" in site.settings else None
    key = (site.key, site.revision, locale, request.host_url, details, region)
    now = time.monotonic()
    hit = _documents.get(key) if ttl > 0 else None
    if hit and hit[0] > now:
        return hit[1], hit[2]
    for _attempt in range(3):
        payload = json.dumps(widget_config(site_key, locale, details=details, region=region),
                             separators=(",", ":"), ensure_ascii=False)
        # The revision names what the document says (consent.notices), so the database
        # must still have it once the document is built: a snapshot cached before another
        # process's edit would label the new categories with the old revision, and on
        # PostgreSQL each read sees the latest commits. Built again otherwise.
        now_site = fresh_snapshot(site_key)
        settled = now_site.revision == site.revision
        if settled:
            break
        site = now_site
        key = (site.key, site.revision, locale, request.host_url, details, region)
    for hook in config_built:
        hook(site, locale, region)
    etag = hashlib.sha256(payload.encode()).hexdigest()[:20]
    if ttl > 0 and settled:  # (three edits raced the build: served once, not kept)
        with _documents_lock:
            if len(_documents) > 1000:  # many sites or hosts: start afresh, never grow
                _documents.clear()
            _documents[key] = (now + ttl, payload, etag)
    return payload, etag


CONFIG_SLOT = "'@@CONFIG@@'"
_scripts: dict[str, tuple[float, str]] = {}
# The widget built with the code opt-out and notice-only regions need (consent.regions):
# sent only to visitors whose config has a `region`, so others download none of it.
OPTOUT_BUILD = "consent-optout.js"
# The plain build without the age question and the age rule (static/widget/build.py): for
# configs without `age` (sites without an age rule). consent.js keeps that code: it is also
# the shared script, which serves any site.
LEAN_BUILD = "consent-lean.js"


def _widget_source(name: str = "consent.js") -> str:
    """static/consent.js (or another build) as built (re-read when the file changes)."""
    path = Path(current_app.static_folder) / name
    mtime = path.stat().st_mtime
    hit = _scripts.get(name)
    if hit is None or hit[0] != mtime:
        hit = _scripts[name] = (mtime, path.read_text(encoding="utf-8"))
    return hit[1]


def site_script(site_key: str, requested_locale: str | None,
                accept_language: str | None = None,
                region: str | None = None) -> tuple[str, str]:
    """The widget with SITE_KEY's config inlined (`/consent.js?site=KEY`), and its ETag.

    A first visit then downloads one file and shows the banner at DOMContentLoaded, with
    no config round trip. Served from memory like config_document.
    """
    payload, config_etag = config_document(site_key, requested_locale, accept_language,
                                           region=region)
    regional = applies(site_snapshot(site_key).settings, region) != "opt-in"
    source = _widget_source(build_for(payload, regional))
    # JSON is a JavaScript expression; escape the two line separators older engines reject.
    literal = payload.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    body = source.replace(CONFIG_SLOT, literal, 1)
    etag = hashlib.sha256(f"{config_etag}:{hash_of(source)}".encode()).hexdigest()[:20]
    return body, etag


@functools.lru_cache(maxsize=1024)
def build_for(payload: str, regional: bool) -> str:
    """The build to inline PAYLOAD (a config document) into: the opt-out build for opt-out
    and notice-only visitors; else the lean build unless the config has an age rule (the
    lean build has no age code), read from the document itself, so no config that needs
    the age code is ever inlined into the build without it."""
    if regional:
        return OPTOUT_BUILD
    return "consent.js" if "age" in json.loads(payload) else LEAN_BUILD


@functools.lru_cache(maxsize=4)
def hash_of(text: str) -> str:
    """SHA-256 of TEXT (the widget source changes rarely: remembered)."""
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- the consent cookie

COOKIE_NAME = "consent"
COOKIE_VERSION = "1"


@dataclass(frozen=True)
class ConsentCookie:
    """What the widget keeps in the visitor's consent cookie."""

    subject: str
    categories: dict[str, bool]
    policy_version: str | None = None
    decided_at: int = 0          # unix seconds; 0 = no decision yet (GPC opt-out only)
    expires_at: int = 0          # unix seconds; the widget asks again after this
    source: str | None = None
    gpc: bool = False
    key: str | None = None       # the device key that proves `subject` (consent.subjects)
    read_token: str | None = None
    minor: bool = False          # the visitor said they are a minor (consent.minors)
    event_id: str | None = None  # the recorded decision: its receipt is the visitor's proof


def parse_consent_cookie(value: str | None) -> ConsentCookie | None:
    """Read a consent cookie value; None when absent, of another version or malformed."""
    if not value or len(value) > 4096:
        return None
    fields = dict(parse_qsl(value.strip('"'), keep_blank_values=True))
    if fields.get("v") != COOKIE_VERSION or not PUBLIC_ID_RE.fullmatch(fields.get("s", "")):
        return None
    categories = {k: False for k in fields.get("d", "").split(".") if k}
    categories.update({k: True for k in fields.get("c", "").split(".") if k})
    try:
        decided, expires = int(fields.get("t") or 0), int(fields.get("e") or 0)
    except ValueError:
        return None
    key, token, event = fields.get("k"), fields.get("r"), fields.get("i")
    return ConsentCookie(subject=fields["s"], categories=categories,
                         policy_version=fields.get("p") or None, decided_at=decided,
                         expires_at=expires, source=fields.get("src") or None,
                         gpc=fields.get("g") == "1",
                         key=key if key and DEVICE_KEY_RE.fullmatch(key) else None,
                         read_token=token if token and READ_TOKEN_RE.fullmatch(token) else None,
                         minor=fields.get("m") == "1",
                         event_id=event if event and EVENT_ID_RE.fullmatch(event) else None)


def format_consent_cookie(cookie: ConsentCookie) -> str:
    """The cookie value for CONSENT, exactly as the widget writes it."""
    fields = {"v": COOKIE_VERSION, "s": cookie.subject}
    if cookie.key:
        fields["k"] = cookie.key
    if cookie.read_token:
        fields["r"] = cookie.read_token
    fields.update({"c": ".".join(k for k, v in cookie.categories.items() if v),
                   "d": ".".join(k for k, v in cookie.categories.items() if not v),
                   "t": cookie.decided_at, "e": cookie.expires_at, "src": cookie.source or "",
                   "g": int(cookie.gpc)})
    if cookie.policy_version:
        fields["p"] = cookie.policy_version
    if cookie.minor:
        fields["m"] = 1
    if cookie.event_id:
        fields["i"] = cookie.event_id
    return urlencode(fields)


def _unix(value: str | None) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()) if value else 0


def consent_cookie_from_view(subject: str, view: dict, reject_days: int, *,
                             key: str | None = None, read_token: str | None = None,
                             minor: bool = False) -> ConsentCookie:
    """The cookie matching a recorded consent view (see decisions.state_view)."""
    expires = _unix(view.get("expiresAt")) or int(time.time()) + reject_days * 86400
    return ConsentCookie(subject=subject, categories=dict(view["categories"]),
                         policy_version=view.get("policyVersion"),
                         decided_at=_unix(view.get("decidedAt")), expires_at=expires,
                         source=view.get("source"), gpc=bool(view.get("gpc")), key=key,
                         read_token=read_token, minor=minor, event_id=view.get("eventId"))


def server_cookie_header(site: SiteSnapshot, subject: str, view: dict | None,
                         secure: bool, *, key: str | None = None,
                         read_token: str | None = None, minor: bool = False) -> str | None:
    """A Set-Cookie header for the same-site deployment (site setting cookie.server_set).

    Cookies set by the server are not subject to Safari's 7-day cap on script-set ones.
    """
    settings = site.settings.get("cookie") or {}
    if not settings.get("server_set") or not view:
        return None
    cookie = consent_cookie_from_view(subject, view, site.reject_lifetime_days, key=key,
                                      read_token=read_token, minor=minor)
    return dump_cookie(settings.get("name", COOKIE_NAME), format_consent_cookie(cookie),
                       max_age=max(0, cookie.expires_at - int(time.time())), path="/",
                       domain=settings.get("domain"), secure=secure, httponly=False,
                       samesite=settings.get("same_site", "Lax"))


# ---------------------------------------------------------------- the document's shape
# (for the OpenAPI document: the view serves config_document's cached JSON as is)


class _CookieRuleSchema(ma.Schema):
    """A first-party cookie the widget deletes when its category is withdrawn."""

    class Meta:
        unknown = ma.INCLUDE

    name = ma.fields.String(metadata={"description": "One cookie's name"})
    pattern = ma.fields.String(metadata={"description": "A regular expression over names"})
    path = ma.fields.String()
    domain = ma.fields.String()


class _StorageRulesSchema(ma.Schema):
    """The localStorage and sessionStorage keys the widget deletes when the service's
    category is withdrawn: a regular expression per area (it never matches the widget's
    own consent: keys)."""

    localStorage = ma.fields.String()
    sessionStorage = ma.fields.String()


class _ServiceSchema(ma.Schema):
    """A service a category covers (name, provider, purpose only with details=1)."""

    name = ma.fields.String()
    provider = ma.fields.String()
    purpose = ma.fields.String()
    cookies = ma.fields.List(ma.fields.Nested(_CookieRuleSchema))
    storage = ma.fields.Nested(_StorageRulesSchema)


class _CategorySchema(ma.Schema):
    """One category as the banner and dialog show it."""

    key = ma.fields.String(required=True, metadata={"example": "analytics"})
    locked = ma.fields.Boolean(metadata={
        "description": "Always on (essential): no switch; only present when true"})
    title = ma.fields.String(required=True)
    description = ma.fields.String(metadata={"description": "details=1 only"})
    services = ma.fields.List(ma.fields.Nested(_ServiceSchema), metadata={
        "description": "details=1 only"})


class _PolicySchema(ma.Schema):
    version = ma.fields.String(allow_none=True, required=True)
    url = ma.fields.String(allow_none=True, required=True)
    materialVersion = ma.fields.String(allow_none=True, required=True)
    reconsentAfter = ma.fields.String(allow_none=True, required=True, metadata={
        "description": "Choices made before this instant no longer count (the material "
                       "version's effective time, rounded up to the second)"})


class _LifetimesSchema(ma.Schema):
    acceptDays = ma.fields.Integer(required=True)
    rejectDays = ma.fields.Integer(required=True)


class _CookieSettingsSchema(ma.Schema):
    """The consent cookie's settings; each default (no domain, Lax, false) is left out."""

    name = ma.fields.String(required=True)
    domain = ma.fields.String(allow_none=True)
    sameSite = ma.fields.String()
    serverSet = ma.fields.Boolean()


class _GpcSchema(ma.Schema):
    categories = ma.fields.List(ma.fields.String(), required=True)


class _AgeSchema(ma.Schema):
    ask = ma.fields.String(required=True)
    q = ma.fields.String(required=True, metadata={"description": "The age question"})
    g = ma.fields.String(required=True, metadata={"description": "The guardian's line"})
    categories = ma.fields.List(ma.fields.String(), required=True)


class _EndpointsSchema(ma.Schema):
    decisions = ma.fields.String(required=True)
    preferences = ma.fields.String(required=True)


class _ConsentModeSchema(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE

    dataLayer = ma.fields.String(metadata={"description": "The dataLayer's name, when not "
                                                          "dataLayer"})
    push = ma.fields.List(ma.fields.List(ma.fields.Raw()), metadata={
        "description": "gtag commands pushed after the all-denied default, in order: a "
                       "`consent default` per region rule (with `region`), `set "
                       "ads_data_redaction`, `set url_passthrough`"})


class WidgetConfigSchema(ma.Schema):
    """The site's configuration and strings in one language, as the widget reads it."""

    site = ma.fields.String(required=True)
    revision = ma.fields.String(required=True, metadata={
        "description": "Changes with any change of the site's configuration"})
    ttl = ma.fields.Integer(required=True, metadata={
        "description": "Seconds the widget may reuse this document without asking"})
    locale = ma.fields.String(required=True)
    locales = ma.fields.List(ma.fields.String(), required=True)
    strings = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(),
                             required=True)
    categories = ma.fields.List(ma.fields.Nested(_CategorySchema), required=True)
    policy = ma.fields.Nested(_PolicySchema, required=True)
    lifetimes = ma.fields.Nested(_LifetimesSchema, required=True)
    cookie = ma.fields.Nested(_CookieSettingsSchema, required=True)
    gpc = ma.fields.Nested(_GpcSchema, required=True)
    consentMode = ma.fields.Nested(_ConsentModeSchema, metadata={
        "description": "Google Consent Mode options, only when the site set any"})
    age = ma.fields.Nested(_AgeSchema, metadata={"description": "Sites with an age rule"})
    endpoints = ma.fields.Nested(_EndpointsSchema, metadata={"description": "details=1 only"})
