"""Recording visitors' cookie decisions (banner, preferences, GPC, server API)."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from .database import iso, run_raw_write, utcnow
from .errors import Invalid
from .i18n import pick_locale
from .ledger import AppendedEvent, Details, append_event, read_state
from .policies import get_policy
from .sites import ESSENTIAL, SiteSnapshot, site_snapshot
from .subjects import Subject, find_subject, subject_for_write

DECISION_ACTIONS = ("accept_all", "reject_all", "custom", "gpc")
# One IPv4 octet as ipaddress accepts it: 0-255, no leading zero, ASCII digits only.
_OCTET = re.compile(r"25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]", re.ASCII)


@dataclass
class RequestContext:
    """What the web tier knows about the caller, already minimised."""

    ip: str | None = None
    user_agent: str | None = None
    gpc_header: bool = False

    def details(self, page_url: str | None) -> Details:
        return Details(ip_prefix=truncate_ip(self.ip),
                       user_agent=(self.user_agent or None) and self.user_agent[:512],
                       page_url=strip_query(page_url))


def truncate_ip(ip: str | None) -> str | None:
    """IPv4 to its /24, IPv6 to its /48: enough for fraud checks, not a person."""
    if not ip:
        return None
    parts = ip.split(".")
    if len(parts) == 4 and all(_OCTET.fullmatch(p) for p in parts):
        # The common case, without the ipaddress module (a tenth of the cost).
        return f"{parts[0]}.{parts[1]}.{parts[2]}.0/24"
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def strip_query(url: str | None) -> str | None:
    """A page URL without query string or fragment (they often carry personal data)."""
    if not url:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))[:2048]


def gpc_categories(site: SiteSnapshot) -> tuple[str, ...]:
    """Categories a GPC signal opts out of (sale/sharing): advertising unless configured."""
    configured = site.settings.get("gpc_categories")
    keys = configured if configured else ["advertising"]
    return tuple(k for k in keys if k in site.category_keys)


def resolve_categories(site: SiteSnapshot, action: str, given: dict | None) -> dict[str, bool]:
    """The full category map a decision stands for; unknown keys are refused by name."""
    given = given or {}
    for key, value in given.items():
        if key not in site.category_keys:
            raise Invalid(f"unknown category {key!r} for site {site.key!r}",
                          field=f"categories.{key}")
        if key == ESSENTIAL and value is False:
            raise Invalid("essential cookies are always on and cannot be refused",
                          field="categories.essential")
    if action == "accept_all":
        return {k: True for k in site.category_keys}
    if action == "reject_all":
        return {k: k == ESSENTIAL for k in site.category_keys}
    if action == "gpc":
        return {k: False for k in gpc_categories(site)}
    # custom: anything not ticked is refused (no pre-ticked boxes)
    return {k: (k == ESSENTIAL) or bool(given.get(k, False)) for k in site.category_keys}


def state_view(site: SiteSnapshot, state: dict | None) -> dict | None:
    """The widget's view of a state: `Consent.get()`'s shape plus expiry."""
    if state is None or state.get("decided_at") is None and state.get("gpc_at") is None:
        return None
    cats = {k: bool(state["categories"].get(k, k == ESSENTIAL)) for k in site.category_keys}
    decided_at: datetime | None = state.get("decided_at")
    expires_at = None
    if decided_at is not None:
        any_granted = any(v for k, v in cats.items() if k != ESSENTIAL)
        days = site.accept_lifetime_days if any_granted else site.reject_lifetime_days
        expires_at = decided_at + timedelta(days=days)
    return {
        "categories": cats,
        "policyVersion": state.get("policy_version"),
        "decidedAt": iso(decided_at),
        "expiresAt": iso(expires_at),
        "source": state.get("last_source"),
        "gpc": state.get("gpc_at") is not None,
        "eventId": state.get("last_event_id"),
    }


@dataclass
class DecisionResult:
    """What a recorded decision returns to the caller."""

    event: AppendedEvent
    subject_public_id: str
    view: dict | None


def record_decision(site_key: str, data: dict, ctx: RequestContext) -> DecisionResult:
    """Validate and append a cookie decision; idempotent on `client_event_id`."""
    site = site_snapshot(site_key)
    action = data["action"]
    source = data.get("source") or ("gpc" if action == "gpc" else "banner")
    gpc = ctx.gpc_header or bool(data.get("gpc"))
    categories = resolve_categories(site, action, data.get("categories"))
    meta = None
    if gpc:
        for key in gpc_categories(site):
            categories[key] = False
        meta = {"gpc": True}
    label = data.get("policy_version")
    if label is None:
        label = site.policy_label
    elif label != site.policy_label:
        version = get_policy(site.id, label)
        if version is None:
            raise Invalid(f"unknown policy version {label!r}", field="policy_version")
        if version.effective_at > utcnow():
            # Announced, not yet in force: the choice is made under the version in force.
            label = site.policy_label
    locale = pick_locale(data.get("locale"), site.locales, site.default_locale)
    details = ctx.details(data.get("page_url"))

    def write() -> DecisionResult:
        subject, created = subject_for_write(site.id, data.get("subject"))
        cats, chans, event_meta = categories, None, meta
        if "age_rule" in site.settings:
            # consent.minors: what a minor grants alone is withheld (seed policies 001, 004)
            from .minors import screen_choice

            screened = screen_choice(site, subject, created=created, age=data.get("age"),
                                     guardian=bool(data.get("guardian")),
                                     categories=categories, channels=None, meta=meta)
            cats, chans, event_meta = screened.categories, screened.channels, screened.meta
        event = append_event(site, subject, action=action, source=source,
                             categories=cats, channels=chans, policy_version=label,
                             locale=locale, details=details, meta=event_meta,
                             idempotency_key=data.get("client_event_id"),
                             new_subject=created)
        return DecisionResult(event, subject.public_id, state_view(site, event.state))

    return run_raw_write(write)


def read_my_consent(site_key: str, public_id: str) -> tuple[Subject | None, dict | None]:
    """The current consent view of a visitor by their cookie id."""
    site = site_snapshot(site_key)
    subject = find_subject(site.id, public_id)
    if subject is None:
        return None, None
    return subject, state_view(site, read_state(site.id, subject.pseudonym))


# ---------------------------------------------------------------- schemas

import marshmallow as ma  # noqa: E402
from marshmallow import validate  # noqa: E402

from .subjects import PUBLIC_ID_RE  # noqa: E402
from .validation import StrictBoolean, StrictSchema  # noqa: E402


class DecisionSchema(StrictSchema):
    """A visitor's choice as the widget sends it."""

    subject = ma.fields.String(validate=validate.Regexp(PUBLIC_ID_RE),
                               metadata={"description": "Visitor id from the consent cookie"})
    action = ma.fields.String(required=True, validate=validate.OneOf(DECISION_ACTIONS))
    categories = ma.fields.Dict(keys=ma.fields.String(validate=validate.Length(1, 40)),
                                values=StrictBoolean(),
                                validate=validate.Length(max=50))
    policy_version = ma.fields.String(validate=validate.Length(1, 40))
    locale = ma.fields.String(validate=validate.Length(2, 16))
    page_url = ma.fields.Url(schemes={"http", "https"}, require_tld=False,
                             validate=validate.Length(max=4096))
    client_event_id = ma.fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_-]{8,64}$"),
                                       metadata={"description": "Idempotency key"})
    gpc = StrictBoolean()
    source = ma.fields.String(validate=validate.OneOf(("banner", "preferences", "api", "gpc")))
    age = ma.fields.String(validate=validate.OneOf(("minor", "adult")), metadata={
        "description": "Answer to the age question (sites with an age rule, consent.minors)"})
    guardian = StrictBoolean(metadata={"description": "A guardian gives this consent"})

    @ma.validates_schema
    def _custom_needs_categories(self, data, **kwargs):
        if data.get("action") == "custom" and "categories" not in data:
            raise ma.ValidationError("custom decisions list their categories",
                                     "categories")


class ConsentViewSchema(ma.Schema):
    """`Consent.get()` as the server sees it."""

    categories = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Boolean())
    policyVersion = ma.fields.String(allow_none=True)
    decidedAt = ma.fields.String(allow_none=True)
    expiresAt = ma.fields.String(allow_none=True)
    source = ma.fields.String(allow_none=True)
    gpc = ma.fields.Boolean()
    eventId = ma.fields.String(allow_none=True)


class DecisionResultSchema(ma.Schema):
    """What the server answers after recording a decision."""

    event_id = ma.fields.String()
    subject = ma.fields.String()
    recorded_at = ma.fields.String()
    duplicate = ma.fields.Boolean()
    consent = ma.fields.Nested(ConsentViewSchema, allow_none=True)
