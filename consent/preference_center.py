"""The preference center's service: what the page shows and what saving it records.

Cookie categories and message channels of one subject on one page. Who the subject is
the web layer establishes first (consent.identity: a login link, the widget's proof of
its device key, the consent cookie's key); an id alone never names anyone here. Without
a proven visitor the page shows the defaults and saving creates a new visitor.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .channels import (CHANNELS, channel_defaults, parse_channel_key,
                       subject_refs, suppressed_channels)
from .context import RequestContext
from .database import parse_iso, run_write, utcnow
from .errors import Invalid
from .extensions import db
from .i18n import localised, page_strings
from .identity import linked_to
from .ledger import AppendedEvent, append_event, read_state
from .ledger.chain import canonical
from .notices import add_surface, notice_for, policy_sha256
from .policies import announced, get_policy
from .regions import applies, default_on
from .sites import (ESSENTIAL, Category, SiteSnapshot, fresh_snapshot, gpc_categories,
                    site_snapshot)
from .subjects import Subject, create_subject, find_subject


@dataclass
class ChoiceRow:
    """One line of the preference center: a category or a channel."""

    key: str
    value: bool
    chosen: bool
    changed_at: datetime | None
    locked: bool = False
    gpc: bool = False
    title: str = ""
    description: str = ""


@dataclass
class PreferenceView:
    """Everything the preference page shows for one subject."""

    site: SiteSnapshot
    subject: Subject | None
    categories: list[ChoiceRow]
    channels: list[ChoiceRow]
    policy_label: str | None
    chosen_policy_version: str | None
    last_event_id: str | None
    decided_at: datetime | None
    gpc: bool
    # A version published for a later date: the advance notice (consent.policies).
    upcoming: object | None = None
    # consent.guardians.guardian_state: grants waiting for a guardian's link.
    awaiting_guardian: dict | None = None


def preference_view(site_key: str, subject_public_id: str | None, locale: str,
                    gpc: bool = False, region: str | None = None) -> PreferenceView:
    """The current choices of a proven subject (or the defaults) for the preference page
    (REGION: the visitor's, for a site with rules by region)."""
    site = site_snapshot(site_key)
    subject = find_subject(site.id, subject_public_id) if subject_public_id else None
    state = read_state(site.id, subject.pseudonym) if subject is not None else None
    state = state or {}
    cats, chans, changed = (state.get("categories") or {}, state.get("channels") or {},
                            state.get("changed") or {})
    rows = _category_rows(site.id)
    gpc_off = set(gpc_categories(site)) if gpc else set()
    undecided_on = _undecided_on(site, subject, region)
    categories = [ChoiceRow(
        key=c.key, value=(c.key == ESSENTIAL) or (
            (bool(cats[c.key]) if c.key in cats else c.key in undecided_on)
            and c.key not in gpc_off),
        chosen=c.key in cats, changed_at=parse_iso(changed.get(f"category:{c.key}")),
        locked=c.locked or c.key == ESSENTIAL, gpc=c.key in gpc_off,
        title=localised(c.titles, locale, site.default_locale),
        description=localised(c.descriptions, locale, site.default_locale)) for c in rows]
    defaults = channel_defaults(site)
    for key in suppressed_channels(site.id, subject_refs(site, subject)):
        defaults[key] = False  # an opt-out kept from before an erasure
    channels = [ChoiceRow(key=k, value=bool(chans[k]) if k in chans else defaults[k],
                          chosen=k in chans, changed_at=parse_iso(changed.get(f"channel:{k}")))
                for k in CHANNELS]
    notice = announced(site.policy_versions, utcnow())
    waiting = None
    if subject is not None and "age_rule" in site.settings:
        from .guardians import guardian_state

        waiting = guardian_state(site.id, subject.id)
    return PreferenceView(site, subject, categories, channels, site.policy_label,
                          state.get("policy_version"), state.get("last_event_id"),
                          state.get("decided_at"), gpc or bool(state.get("gpc_at")),
                          get_policy(site.id, notice.label) if notice else None, waiting)


def _category_rows(site_id: int) -> list[Category]:
    """The site's categories in the page's order."""
    return db.session.execute(db.select(Category).where(Category.site_id == site_id)
                              .order_by(Category.position)).scalars().all()


def preferences_notice_text(site_key: str, locale: str, region: str | None = None) -> str:
    """What the preference page says in LOCALE, as canonical JSON (consent.notices): its
    texts, every category's title and description, the channels, the policy version in
    force with the SHA-256 of its text, an announced version and the age question. What
    depends on the person (their current choices, the GPC signal, whether the age
    question is asked of them) is not notice; REGION changes none of the words."""
    site = site_snapshot(site_key)
    strings = page_strings(site, locale)
    rows = _category_rows(site.id)
    doc: dict = {
        "surface": "preferences", "locale": locale,
        "texts": {k: v for k, v in strings.items() if k.startswith(("prefs.", "channel."))},
        "categories": [{"key": c.key,
                        "title": localised(c.titles, locale, site.default_locale),
                        "description": localised(c.descriptions, locale, site.default_locale),
                        "locked": bool(c.locked or c.key == ESSENTIAL)} for c in rows],
        "channels": list(CHANNELS),
        "policy": {"version": site.policy_label,
                   "sha256": policy_sha256(site.id, site.policy_label)
                   if site.policy_label else None},
    }
    upcoming = announced(site.policy_versions, utcnow())
    if upcoming is not None:
        policy = get_policy(site.id, upcoming.label)
        doc["upcoming"] = {"version": policy.label, "summary": policy.summary,
                           "effective_at": upcoming.effective_at.isoformat(),
                           "sha256": policy.sha256}
    if "age_rule" in site.settings:
        from .minors import age_rule, age_texts

        rule = age_rule(site)
        if rule is not None:
            doc["age"] = age_texts(rule, locale)
    return canonical(doc)


add_surface("preferences", preferences_notice_text)


def _undecided_on(site: SiteSnapshot, subject: Subject | None, region: str | None) -> set[str]:
    """The categories on while nobody decided them, as the widget has them: where REGION's
    rule is opt-out or notice-only (consent.regions) all but the sensitive ones, less, for
    a known minor, the sale/sharing ones (sale of a minor's data needs an opt-in) and what
    the age rule reserves to a guardian (consent.minors); none where consent is opt-in."""
    if "regions" not in site.settings or applies(site.settings, region) == "opt-in":
        return set()
    on = set(default_on(site))
    # (a browser linked to a minor's account carries the flag itself: minors.set_minor)
    if subject is not None and "age_rule" in site.settings and subject.is_minor:
        from .minors import age_rule

        rule = age_rule(site)
        on -= set(gpc_categories(site)) | set(rule.categories if rule else ())
    return on


def save_preferences(site_key: str, subject_public_id: str | None, categories: list[str],
                     channels: list[str], locale: str, ctx: RequestContext, *,
                     age: str | None = None, guardian: bool = False,
                     also_device: str | None = None,
                     guardian_email: str | None = None,
                     revision: str | None = None,
                     shown_locale: str | None = None,
                     offered: list[str] | None = None) -> tuple[Subject, AppendedEvent]:
    """Record one `preferences` event with every category and channel as ticked.

    SUBJECT_PUBLIC_ID must be proven by the caller (see the module docstring); None (or
    a subject erased meanwhile) records for a new visitor. ALSO_DEVICE, the browser's own
    proven device when a signed-in user confirmed that their choices apply to it too, gets
    the same choice when it is linked to that account. AGE and GUARDIAN answer the age
    question of sites with an age rule (consent.minors); GUARDIAN_EMAIL is where a
    guardian's confirmation link goes (consent.guardians). REVISION, the site's revision
    the page showed, names the notice the event records (`meta.notice`, consent.notices);
    SHOWN_LOCALE is the language the page was in, as its form sent it back; OFFERED, the
    categories the form had a box for.
    """
    site = site_snapshot(site_key)
    if revision and revision != site.revision \
            and any(key not in site.category_keys for key in (*categories, *(offered or ()))):
        # (the page may be newer than this process's cached copy: see record_decision)
        site = fresh_snapshot(site_key)
    for key in categories:
        if key not in site.category_keys:
            raise Invalid(f"unknown category {key!r} for site {site.key!r}", field="category")
    for key in channels:
        parse_channel_key(key)
    cat_map = {k: (k == ESSENTIAL) or k in categories for k in site.category_keys}
    meta = None
    if ctx.gpc_header:
        # The browser says "do not sell or share": honoured here as on the banner.
        for key in gpc_categories(site):
            cat_map[key] = False
        meta = {"gpc": True}
    policy_version = site.policy_label
    shown = (notice_for(site, locale, None, revision, "preferences", sent_locale=shown_locale)
             if revision else None)
    if shown is not None:
        if shown.digest:
            # What the page said (consent.notices): recorded, and hashed, with the event.
            meta = {**(meta or {}), "notice": shown.digest}
        if revision != site.revision:
            # A page loaded before a change: the choice is about what it showed. A
            # category added since stays undecided (the form could not offer it, so an
            # unticked box there is not a refusal), and the policy version and language
            # are the ones the page had.
            cat_map = {k: v for k, v in cat_map.items() if k in shown.categories}
            policy_version = shown.policy
            locale = shown.locale or locale
    elif revision and revision != site.revision and offered is not None:
        # An earlier page whose revision no notice tells (its words were never kept): the
        # form itself says which boxes it had, so one added since is not refused unseen.
        cat_map = {k: v for k, v in cat_map.items() if k in offered}
    chan_map = {k: k in channels for k in CHANNELS}
    email = None
    if guardian_email and "age_rule" in site.settings:
        from .guardians import check_address

        email = check_address(guardian_email)

    def record(subject) -> AppendedEvent:
        cats, chans, event_meta = cat_map, chan_map, meta
        if "age_rule" in site.settings:
            # consent.minors: what a minor grants alone is withheld (seed policies 001, 004)
            from .minors import record_screened, screen_choice

            # (the browser linked to a minor's account is flagged itself, and when the
            # account becomes a minor with this save, record_screened flags it first)
            screened = screen_choice(site, subject, created=False, age=age, guardian=guardian,
                                     categories=cat_map, channels=chan_map, meta=meta)
            cats, chans, event_meta = screened.categories, screened.channels, screened.meta
        event = append_event(site, subject, action="preferences", source="preferences",
                             categories=cats, channels=chans,
                             policy_version=policy_version, locale=locale,
                             details=ctx.details(None), meta=event_meta)
        if "age_rule" in site.settings:
            record_screened(site, subject, screened, "preferences")
        if (event_meta or {}).get("awaiting_guardian"):
            from .guardians import attach_address

            attach_address(event.event_id, email)
        return event

    def write():
        subject = find_subject(site.id, subject_public_id) if subject_public_id else None
        if subject is None or subject.erased_at is not None:
            subject = create_subject(site.id)
        event = record(subject)
        if also_device and also_device != subject.public_id \
                and linked_to(site.id, also_device, subject.public_id):
            record(find_subject(site.id, also_device))
        return subject, event

    return run_write(write)
