"""Recording visitors' cookie decisions (banner, preferences, GPC, server API)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from .database import iso, run_raw_write, utcnow
from .errors import Invalid
from .context import RequestContext, strip_query, truncate_ip  # noqa: F401 (re-exported)
from .i18n import pick_locale
from .ledger import (AppendedEvent, append_event, details_digest, read_state,
                     stream_for)
from .minors import record_screened, screen_choice
from .notices import REVISION_RE, Shown, notice_for
from .policies import get_policy
from .regions import event_region
from .sites import ESSENTIAL, SiteSnapshot, fresh_snapshot, gpc_categories, site_snapshot
from .subjects import (find_subject, prepare_subject, read_token, read_token_matches,
                       subject_for_write)

# `opt_out`: "Your Privacy Choices" in an opt-out region (consent.regions): the
# categories GPC turns off, off, and nothing else decided (like a GPC signal).
DECISION_ACTIONS = ("accept_all", "reject_all", "custom", "gpc", "opt_out")


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
    if action in ("gpc", "opt_out"):
        return {k: False for k in gpc_categories(site)}
    # custom: anything not ticked is refused (no pre-ticked boxes)
    return {k: (k == ESSENTIAL) or bool(given.get(k, False)) for k in site.category_keys}


def state_view(site: SiteSnapshot, state: dict | None) -> dict | None:
    """The widget's view of a state: `Consent.get()`'s shape plus expiry."""
    if state is None or state.get("decided_at") is None and state.get("gpc_at") is None \
            and False not in (state.get("categories") or {}).values():
        return None  # (an opt-out of sale/sharing decides nothing else, yet it is a choice)
    decided_map = state.get("categories") or {}
    cats = {k: bool(decided_map.get(k, k == ESSENTIAL)) for k in site.category_keys}
    decided_at: datetime | None = state.get("decided_at")
    expires_at = None
    if decided_at is not None:
        any_granted = False
        for key, value in cats.items():  # (a loop: a generator closed early costs more)
            if value and key != ESSENTIAL:
                any_granted = True
                break
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
        # Which of `categories` an event decided: the others are `false` above only because
        # nobody decided them, which an opt-out region's widget counts as on (GPC and an
        # opt-out of sale/sharing decide only the categories they turn off).
        "decided": [k for k in site.category_keys if k in decided_map],
    }


@dataclass
class DecisionResult:
    """What a recorded decision returns to the caller."""

    event: AppendedEvent
    subject_public_id: str
    view: dict | None
    # Lets the device read its consent (`r` in the cookie; consent.subjects).
    read_token: str
    # A device key the server minted for a caller that sent neither id nor key.
    minted_key: str | None = None
    minor: bool = False
    # US opt-out visitors (consent.regions): {gpp, sid, usp} as recorded with the event.
    signals: dict | None = None


def _page_notice(site: SiteSnapshot, locale: str, data: dict,
                 ctx: RequestContext) -> Shown | None:
    """What the widget's page showed (its `revision`; consent.notices), if it said."""
    if "revision" not in data:
        return None
    return notice_for(site, locale, ctx.region, data["revision"],
                      sent_locale=data.get("locale"))


def _newer_page(site: SiteSnapshot, shown: Shown | None, data: dict) -> bool:
    """Whether the page offered categories SITE (this process's cached copy,
    CONSENT_SITE_CACHE_SECONDS) lacks: another process served it after an edit."""
    if data.get("revision", site.revision) == site.revision:
        return False
    known = set(site.category_keys)
    return bool(shown is not None and shown.categories - known) \
        or any(key not in known for key in data.get("categories") or ())


def record_decision(site_key: str, data: dict, ctx: RequestContext,
                    site: SiteSnapshot | None = None) -> DecisionResult:
    """Validate and append a cookie decision; idempotent on `client_event_id` (SITE: the
    snapshot of SITE_KEY the caller holds already)."""
    if site is None or site.key != site_key:
        site = site_snapshot(site_key)
    locale = pick_locale(data.get("locale"), site.locales, site.default_locale)
    shown = _page_notice(site, locale, data, ctx)
    if _newer_page(site, shown, data):
        # Its choice, "Reject all" included, decides what it offered: the site as the
        # database has it (only then: it costs a few reads).
        site = fresh_snapshot(site_key)
        locale = pick_locale(data.get("locale"), site.locales, site.default_locale)
        shown = _page_notice(site, locale, data, ctx)
    action = data["action"]
    source = data.get("source") or ("gpc" if action == "gpc" else "banner")
    gpc = ctx.gpc_header or bool(data.get("gpc"))
    categories = resolve_categories(site, action, data.get("categories"))
    meta = None
    if gpc:
        for key in gpc_categories(site):
            categories[key] = False
        meta = {"gpc": True}
    if shown is not None:
        # What the widget showed (consent.notices): recorded, and hashed, with the event.
        if shown.digest:
            meta = {**(meta or {}), "notice": shown.digest}
        if data["revision"] != site.revision:
            # A page loaded before a change: recorded in the language it was in, even one
            # the site no longer offers.
            locale = shown.locale or locale
            if action in ("accept_all", "reject_all", "custom"):
                # The choice is about what it showed: a category added since stays
                # undecided (as for a choice made before it existed), neither granted nor
                # refused unseen.
                categories = {k: v for k, v in categories.items() if k in shown.categories}
    if "regions" in site.settings:
        # The region in force and, for US opt-out visitors, the GPP / US Privacy strings
        # the choice gives: recorded (and hashed) with the event (consent.regions).
        meta = {**(meta or {}), **event_region(site, ctx.region, categories, gpc)}
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
    details = ctx.details(data.get("page_url"))
    # What needs no database is done before the write lock (SQLite: one writer at a time
    # across all workers): the new subject's random values and the digest of the details
    # under its secret; the answer (view, read token) is built after the commit.
    prepared = prepare_subject(site.id, data.get("subject"), data.get("key"))
    digest = None
    if prepared is not None:
        secret = prepared.params["secret"]
        digest = (secret, details_digest(secret, details))

    # A new visitor's subject row and its ledger stream's head: one statement on
    # PostgreSQL (the stream follows from the prepared pseudonym).
    stream = None if prepared is None else stream_for(prepared.params["pseudonym"],
                                                      site.ledger_streams)

    def write():
        subject, created, minted, head = subject_for_write(
            site.id, data.get("subject"), data.get("key"), prepared, stream)
        cats, chans, event_meta, screened = categories, None, meta, None
        if "age_rule" in site.settings:
            # consent.minors: what a minor grants alone is withheld (seed policies 001, 004)
            screened = screen_choice(site, subject, created=created, age=data.get("age"),
                                     guardian=bool(data.get("guardian")),
                                     categories=categories, channels=None, meta=meta)
            cats, chans, event_meta = screened.categories, screened.channels, screened.meta
        event = append_event(site, subject, action=action, source=source,
                             categories=cats, channels=chans, policy_version=label,
                             locale=locale, details=details, meta=event_meta,
                             idempotency_key=data.get("client_event_id"),
                             new_subject=created, prepared_digest=digest,
                             locked_head=head)
        if screened is not None and not event.duplicate:
            record_screened(site, subject, screened, source)
        minor = screened is not None and screened.minor
        return event, subject, minted, minor, event_meta

    event, subject, minted, minor, event_meta = run_raw_write(write)
    signals = {"gpp": event_meta["gpp"], "sid": event_meta["gpp_sid"],
               "usp": event_meta["usp"]} if event_meta and "gpp" in event_meta else None
    return DecisionResult(event, subject.public_id, state_view(site, event.state),
                          read_token(subject.pseudonym), minted, minor, signals)


@dataclass
class MyConsent:
    """A device's own consent as it reads it, and the tag that changes with it."""

    view: dict | None
    etag: str


def read_my_consent(site_key: str, public_id: str, token: str | None) -> MyConsent | None:
    """The current consent of the visitor PUBLIC_ID, for the device holding its read token
    (None, as for an unknown visitor, when the token does not match or it was erased).

    The tag covers the subject's last event and the site's configuration revision, so a
    conditional request is answered 304 until either changes.
    """
    site = site_snapshot(site_key)
    subject = find_subject(site.id, public_id)
    if subject is None or subject.erased_at is not None \
            or not read_token_matches(subject.pseudonym, token):
        return None
    state = read_state(site.id, subject.pseudonym)
    last = (state or {}).get("last_event_id") or ""
    # (consent.minors: a browser linked to a minor's account is flagged as the minor's;
    # its widget learns it here, and the tag changes when the flag does)
    minor = "age_rule" in site.settings and subject.is_minor
    # (`d`: the view's shape with `decided`; a browser's copy from before it is not reused)
    etag = hashlib.sha256(f"{last}:{site.revision}{':m' if minor else ''}:d".encode()
                          ).hexdigest()[:20]
    view = state_view(site, state)
    if view is not None:
        view["revision"] = site.revision
        if minor:
            view["minor"] = True
    return MyConsent(view, etag)


# ---------------------------------------------------------------- schemas

import marshmallow as ma  # noqa: E402
from marshmallow import validate  # noqa: E402

from .subjects import DEVICE_KEY_RE, PUBLIC_ID_RE  # noqa: E402
from .validation import Exact, StrictBoolean, StrictSchema  # noqa: E402


class DecisionSchema(StrictSchema):
    """A visitor's choice as the widget sends it."""

    subject = ma.fields.String(validate=Exact(PUBLIC_ID_RE),
                               metadata={"description": "Visitor id from the consent cookie "
                                                        "(`s`); needs `key`"})
    key = ma.fields.String(validate=Exact(DEVICE_KEY_RE), load_only=True, metadata={
        "description": "The device key from the consent cookie (`k`), which proves `subject`. "
                       "Without subject and key the server creates a visitor and returns "
                       "both"})
    action = ma.fields.String(required=True, validate=validate.OneOf(DECISION_ACTIONS))
    categories = ma.fields.Dict(keys=ma.fields.String(validate=validate.Length(1, 40)),
                                values=StrictBoolean(),
                                validate=validate.Length(max=50))
    policy_version = ma.fields.String(validate=validate.Length(1, 40))
    locale = ma.fields.String(validate=validate.Length(2, 16))
    page_url = ma.fields.Url(schemes={"http", "https"}, require_tld=False,
                             validate=validate.Length(max=4096))
    client_event_id = ma.fields.String(validate=Exact(r"^[A-Za-z0-9_-]{8,64}$"),
                                       metadata={"description": "Idempotency key"})
    gpc = StrictBoolean()
    source = ma.fields.String(validate=validate.OneOf(("banner", "preferences", "api", "gpc")))
    age = ma.fields.String(validate=validate.OneOf(("minor", "adult")), metadata={
        "description": "Answer to the age question (sites with an age rule, consent.minors)"})
    guardian = StrictBoolean(metadata={"description": "A guardian gives this consent"})
    revision = ma.fields.String(validate=Exact(REVISION_RE), metadata={
        "description": "The site configuration's revision the widget showed (its config's "
                       "`revision`): the event records the SHA-256 of that notice as "
                       "`meta.notice` (GET .../notices/{digest})"})

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
    decided = ma.fields.List(ma.fields.String(), metadata={
        "description": "The keys of `categories` some event decided, in the site's order. "
                       "The others are `false` only because nobody decided them: the "
                       "region's default applies to them (on in opt-out and notice-only "
                       "regions, off where consent is opt-in)"})
    revision = ma.fields.String(metadata={"description": "The site configuration's revision "
                                                         "(GET .../me only)"})
    minor = ma.fields.Boolean(metadata={
        "description": "Present (true) when the visitor is screened as a minor under the "
                       "site's age rule: recorded as one, or a browser linked to a minor's "
                       "account (GET .../me only; the widget holds the rule back there too)"})


class UsSignalsSchema(ma.Schema):
    """IAB GPP and US Privacy strings (consent.gpp)."""

    gpp = ma.fields.String(metadata={"description": "The GPP string"})
    sid = ma.fields.List(ma.fields.Integer(), metadata={"description": "Its section ids"})
    usp = ma.fields.String(metadata={"description": "The US Privacy (uspv1) string"})


class DecisionResultSchema(ma.Schema):
    """What the server answers after recording a decision."""

    event_id = ma.fields.String()
    subject = ma.fields.String()
    read_token = ma.fields.String(metadata={
        "description": "Lets this device read its consent: GET .../me/{subject}?r=..."})
    key = ma.fields.String(metadata={
        "description": "Only when the server created the visitor without a key: the device "
                       "key to send with `subject` from now on (shown once)"})
    recorded_at = ma.fields.String()
    duplicate = ma.fields.Boolean()
    consent = ma.fields.Nested(ConsentViewSchema, allow_none=True)
    gpp = ma.fields.Nested(UsSignalsSchema, metadata={
        "description": "Visitors in a US opt-out region only: the IAB GPP and US Privacy "
                       "strings the choice gives (recorded with the event)"})
    minor = ma.fields.Boolean(metadata={
        "description": "Present (true) when the choice was screened as a minor's (sites "
                       "with an age rule): `consent` is what was recorded, grants the rule "
                       "holds back withheld"})


class LeanDecisionLoader:
    """DecisionSchema's `load`, on a schema of the body's own fields (plus `action`).

    marshmallow visits every declared field on each load, present or not; a decision
    carries about half of them. Bodies with only known fields are loaded by a cached
    DecisionSchema(only=those fields): the same fields, validators, schema check and
    errors. Anything else (unknown fields, not an object) goes to the full schema, which
    reports it as before.
    """

    def __init__(self) -> None:
        self.full = DecisionSchema()
        self.fields = frozenset(self.full.fields)
        self._by_keys: dict[frozenset, DecisionSchema] = {}

    def load(self, payload):
        """Validate PAYLOAD as a decision; ValidationError as DecisionSchema raises it."""
        if not isinstance(payload, dict):
            return self.full.load(payload)
        keys = frozenset(payload)
        schema = self._by_keys.get(keys)
        if schema is None:
            if not keys <= self.fields:
                return self.full.load(payload)
            if len(self._by_keys) >= 256:  # (at most 2**13 key sets; keep a few)
                self._by_keys.clear()
            # (in declared order, so that errors come in the same order as the full
            # schema's)
            only = tuple(f for f in self.full.fields if f in keys or f == "action")
            # (unknown=EXCLUDE: every key of the body is one of its fields, so there is
            # nothing to exclude, and marshmallow skips building the set of known names)
            schema = self._by_keys[keys] = _validators_built_once(
                DecisionSchema(only=only, unknown=ma.EXCLUDE))
        return schema.load(payload)


def _validators_built_once(schema: ma.Schema) -> ma.Schema:
    """SCHEMA, each of its fields (and a Dict's key and value fields) validating with one
    `And` of its validators built now: marshmallow's Field._validate builds that same
    `And(*validators)` on every call (eleven a decision). Same validators, same errors."""
    for field in schema.load_fields.values():
        for part in (field, getattr(field, "key_field", None),
                     getattr(field, "value_field", None)):
            if part is not None:
                part._validate = validate.And(*part.validators)
    return schema
