"""Age rules: a minor cannot grant advertising or promotional consent without a guardian.

A site's age rule lives in `Site.settings["age_rule"]` (the profiles of seed policies 001
and 004 set one):

    {"adult_age": 18,                 # below this age a person is a minor
     "from_age": 14,                  # optional: the age the policy names (informational)
     "guardian": "guardian",          # or "parent": the word the texts use
     "ask": "when_flagged",           # or "always": when the widget and page ask the age
     "categories": ["advertising"],   # what a minor cannot grant alone
     "channels": ["email.promotional", "sms.promotional", "push.promotional"],
     "quote": "the policy's own words"}

Whether a subject is a minor is kept on `Subject.is_minor`. It is set from the person's
answer to the age question (the widget and the preference center send `age: "minor"` or
`"adult"`, and `guardian: true` when a guardian gives the consent) or by the site's
backend (`POST /api/v1/sites/<key>/age`). Once recorded, only the backend lifts it: the
person's own "adult" answer does not. A browser linked to an account recorded as a minor
(consent.identity) is the minor's too: its choices are screened as a minor's, which
flags it, and the other paths refuse its unguarded grants.

The rule kept by every path: for a minor, a restricted category or channel is on only if
a guardian's consent for it was recorded (event meta `{"guardian": true}`). So:

- the widget and preference paths *withhold* what a minor grants alone (recorded in the
  event's meta as `withheld`), and keep grants a guardian gave earlier;
- marking someone a minor withdraws what they had granted alone (a `withdraw` event), and
  turns off promotional channels a site enables by default;
- any other path (channels API, server API, SMS START) that would grant such a key to a
  minor without a guardian is refused as a whole (`GuardianRequired`, 403) by a ledger
  listener, so nothing is recorded.

Everything here reads and writes through consent.rawsql: it runs inside the hot consent
write, which uses a raw connection.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import current_app

from . import rawsql
from .channels import CHANNELS, Recipient, channel_defaults, ensure_recipient, parse_channel_key
from .database import run_write
from .errors import Forbidden, Invalid
from .ledger import AppendedEvent, append_event, on_append, read_state
from .sites import ESSENTIAL, SiteSnapshot, site_snapshot

PROMOTIONAL_CHANNELS = ("email.promotional", "sms.promotional", "push.promotional")
ASK_MODES = ("always", "when_flagged")
AGES = ("minor", "adult")
# Events that never carry a new grant of the person's own: copying an account's recorded
# choices to a device (identity), and erasure.
EXEMPT_ACTIONS = ("link", "erase")


class GuardianRequired(Forbidden):
    """A minor tried to grant, without a guardian, what the site's age rule reserves."""

    title = "Guardian consent required"


@dataclass(frozen=True)
class AgeRule:
    """A site's age rule, validated."""

    adult_age: int
    guardian: str = "guardian"
    ask: str = "when_flagged"
    categories: tuple[str, ...] = ("advertising",)
    channels: tuple[str, ...] = PROMOTIONAL_CHANNELS
    from_age: int | None = None
    quote: str | None = None

    def restricted(self, key: str, *, channel: bool) -> bool:
        """Whether a minor needs a guardian to turn KEY on."""
        return key in (self.channels if channel else self.categories)

    def as_setting(self) -> dict:
        """The JSON stored in Site.settings["age_rule"]."""
        out = {"adult_age": self.adult_age, "guardian": self.guardian, "ask": self.ask,
               "categories": list(self.categories), "channels": list(self.channels)}
        if self.from_age is not None:
            out["from_age"] = self.from_age
        if self.quote:
            out["quote"] = self.quote
        return out


def parse_age_rule(raw) -> AgeRule | None:
    """An AgeRule from its stored JSON (None when absent); Invalid when malformed."""
    if raw in (None, {}):
        return None
    if not isinstance(raw, dict):
        raise Invalid("an age rule is a JSON object", field="age_rule")
    adult = raw.get("adult_age")
    if not isinstance(adult, int) or isinstance(adult, bool) or not 1 <= adult <= 25:
        raise Invalid("age_rule.adult_age must be an age between 1 and 25",
                      field="age_rule.adult_age")
    from_age = raw.get("from_age")
    if from_age is not None and (not isinstance(from_age, int) or not 0 < from_age < adult):
        raise Invalid("age_rule.from_age must be below adult_age", field="age_rule.from_age")
    guardian = raw.get("guardian", "guardian")
    if guardian not in ("guardian", "parent"):
        raise Invalid("age_rule.guardian is 'guardian' or 'parent'", field="age_rule.guardian")
    ask = raw.get("ask", "when_flagged")
    if ask not in ASK_MODES:
        raise Invalid(f"age_rule.ask is one of {', '.join(ASK_MODES)}", field="age_rule.ask")
    categories = raw.get("categories", ["advertising"])
    channels = raw.get("channels", list(PROMOTIONAL_CHANNELS))
    if not isinstance(categories, list) or ESSENTIAL in categories \
            or not all(isinstance(k, str) for k in categories):
        raise Invalid("age_rule.categories lists optional category keys",
                      field="age_rule.categories")
    if not isinstance(channels, list) or any(k not in CHANNELS for k in channels):
        raise Invalid(f"age_rule.channels lists channel keys ({', '.join(CHANNELS)})",
                      field="age_rule.channels")
    if raw.get("guardian_verification", "link") not in ("link", "self_declared"):
        raise Invalid("age_rule.guardian_verification is 'link' or 'self_declared'",
                      field="age_rule.guardian_verification")
    return AgeRule(adult_age=adult, guardian=guardian, ask=ask, categories=tuple(categories),
                   channels=tuple(channels), from_age=from_age, quote=raw.get("quote"))


def age_rule(site: SiteSnapshot) -> AgeRule | None:
    """The age rule of a site (None for most sites)."""
    raw = site.settings.get("age_rule")
    return parse_age_rule(raw) if raw else None


# Rules by site id for the ledger listener, which runs inside the raw write and must not
# use the ORM session; cached as long as site snapshots are.
_rule_cache: dict[int, tuple[float, AgeRule | None]] = {}


def _rule_for_site_id(site_id: int) -> AgeRule | None:
    # (the app object itself: see consent.hardening.check_request)
    ttl = current_app._get_current_object().config.get("CONSENT_SITE_CACHE_SECONDS", 0)
    now = time.monotonic()
    hit = _rule_cache.get(site_id)
    if ttl > 0 and hit and hit[0] > now:
        return hit[1]
    row = rawsql.one("SELECT settings FROM sites WHERE id = :id", {"id": site_id})
    settings = rawsql.from_db_json(row[0]) if row else None
    raw = (settings or {}).get("age_rule") if isinstance(settings, dict) else None
    try:
        rule = parse_age_rule(raw) if raw else None
    except Invalid:
        rule = None  # a malformed rule is refused when it is saved; never fail a write on it
    if ttl > 0:
        _rule_cache[site_id] = (now + ttl, rule)
    return rule


def forget_cached_rules() -> None:
    """Drop cached age rules (after a site's settings changed in this process)."""
    _rule_cache.clear()


# ---------------------------------------------------------------- subjects


def is_minor(subject_id: int) -> bool:
    """Whether the subject is recorded as a minor."""
    row = rawsql.one("SELECT is_minor FROM subjects WHERE id = :id", {"id": subject_id})
    return bool(row and row[0])


def minor_by_account(subject_id: int) -> bool:
    """Whether SUBJECT_ID is a browser linked to an account recorded as a minor
    (consent.identity): the same person's device, so the age rule holds there too."""
    return rawsql.one("SELECT 1 FROM subject_links l JOIN subjects a ON a.id = l.account_id "
                      "WHERE l.subject_id = :id AND a.is_minor = :yes LIMIT 1",
                      {"id": subject_id, "yes": True}) is not None


def _set_minor(subject_id: int, value: bool) -> None:
    rawsql.run("UPDATE subjects SET is_minor = :value WHERE id = :id",
               {"value": bool(value), "id": subject_id})


def _effective_on(site: SiteSnapshot, state: dict | None, rule: AgeRule) -> tuple[dict, dict]:
    """Restricted categories and channels that are on now (channels: including defaults)."""
    cats = (state or {}).get("categories") or {}
    chans = (state or {}).get("channels") or {}
    defaults = channel_defaults(site)
    on_cats = {k: True for k in rule.categories if cats.get(k) is True}
    on_chans = {k: True for k in rule.channels
                if (chans[k] if k in chans else defaults.get(k)) is True}
    return on_cats, on_chans


# ---------------------------------------------------------------- screening


@dataclass
class Screened:
    """A choice after the age rule: what to record, and what was withheld."""

    categories: dict | None
    channels: dict | None
    meta: dict | None
    withheld: list[str] = field(default_factory=list)


def screen_choice(site: SiteSnapshot, subject, *, created: bool, age: str | None,
                  guardian: bool, categories: dict | None, channels: dict | None,
                  meta: dict | None) -> Screened:
    """Apply the site's age rule to a choice made in the widget or the preference center.

    SUBJECT needs `id` and `pseudonym`; runs inside the write transaction. A minor's new
    grants of restricted keys are withheld unless GUARDIAN; when the person becomes a
    minor with this choice, restricted keys they had on (or a default turns on) are
    switched off in the same event. An "adult" answer does not undo a recorded minor.
    """
    rule = age_rule(site)
    if rule is None:
        return Screened(categories, channels, meta)
    if age is not None and age not in AGES:
        raise Invalid("age is 'minor' or 'adult'", field="age")
    was_minor = False if created else is_minor(subject.id)
    if not was_minor and not created and age != "minor" and minor_by_account(subject.id):
        # A browser linked to a minor's account is the minor's, whatever its banner knows
        # (its widget may not have asked): screened as a minor's, flagged from now on.
        age = "minor"
    # Once recorded as a minor, only the site's backend lifts it (POST /age): the person's
    # own "adult" answer does not, or the rule would be one click away.
    minor = was_minor or age == "minor"
    if minor and not was_minor:
        _set_minor(subject.id, True)
    meta = dict(meta or {})
    if age is not None:
        meta["age"] = "minor" if minor else "adult"
    if not minor:
        return Screened(categories, channels, meta or None)
    verify = (site.settings.get("age_rule") or {}).get("guardian_verification", "link")
    if guardian and verify != "link":
        meta["guardian"] = True
        return Screened(categories, channels, meta)
    previous = None if created else read_state(site.id, subject.pseudonym)
    # A minor's restricted key that is on was granted by a guardian (the rule every path
    # keeps) -- unless the person is a minor only from this choice on.
    trusted = previous if was_minor else None
    cats = dict(categories) if categories is not None else None
    chans = dict(channels) if channels is not None else None
    withheld = []
    prev_cats = (trusted or {}).get("categories") or {}
    prev_chans = (trusted or {}).get("channels") or {}
    for key in rule.categories:
        if cats is not None and cats.get(key) is True and prev_cats.get(key) is not True:
            cats[key] = False
            withheld.append(key)
    for key in rule.channels:
        if chans is not None and chans.get(key) is True and prev_chans.get(key) is not True:
            chans[key] = False
            withheld.append(key)
    if not was_minor:
        on_cats, on_chans = _effective_on(site, previous, rule)
        for key in on_cats:
            if cats is None or key not in cats:
                cats = dict(cats or {}, **{key: False})
        for key in on_chans:
            if chans is None or key not in chans:
                chans = dict(chans or {}, **{key: False})
    if withheld:
        meta["withheld"] = sorted(withheld)
        if guardian:
            # The box says a guardian agrees; a guardian's link has to say it
            # (consent.guardians opens the request from this event).
            meta["awaiting_guardian"] = True
    return Screened(cats, chans, meta or None, sorted(withheld))


# ---------------------------------------------------------------- the site's backend


@dataclass
class AgeResult:
    """What recording a person's age did."""

    subject: object
    minor: bool
    event: AppendedEvent | None
    withdrawn: dict


def _recipient_subject(site: SiteSnapshot, subject: str | None, user_id: str | None):
    return ensure_recipient(site, None, Recipient(subject=subject, user_id=user_id))


def record_age(site_key: str, *, minor: bool, subject: str | None = None,
               user_id: str | None = None) -> AgeResult:
    """The site's backend says whether a person is a minor (e.g. from a birth date).

    Becoming a minor withdraws, in one `withdraw` event, the restricted categories and
    channels that are on without a guardian's consent (promotional channels a site sends
    by default included).
    """
    site = site_snapshot(site_key)
    rule = age_rule(site)
    if rule is None:
        raise Invalid(f"site {site.key!r} has no age rule (settings.age_rule); load a "
                      "profile that sets one or add it", field="minor")

    def write() -> AgeResult:
        person = _recipient_subject(site, subject, user_id)
        was_minor = is_minor(person.id)
        _set_minor(person.id, minor)
        event, withdrawn = None, {}
        if minor and not was_minor:
            event, withdrawn = _withdraw_alone(site, rule, person, "api")
        # The browsers linked to this account are the same person's: a minor's, whose
        # grants made alone are withdrawn there too, or an adult's, lifted with it.
        for device in _linked_devices(person.id):
            if minor and not device.is_minor:
                _set_minor(device.id, True)
                _withdraw_alone(site, rule, device, "api")
            elif not minor and device.is_minor:
                _set_minor(device.id, False)
        return AgeResult(person, minor, event, withdrawn)

    return run_write(write)


def _withdraw_alone(site: SiteSnapshot, rule: AgeRule, person,
                    source: str) -> tuple[AppendedEvent | None, dict]:
    """A new minor's restricted keys that are on (defaults included) turned off, in one
    `withdraw` event on PERSON (inside a write); (None, {}) when nothing is on."""
    state = read_state(site.id, person.pseudonym)
    on_cats, on_chans = _effective_on(site, state, rule)
    cats = {k: False for k in on_cats}
    chans = {k: False for k in on_chans}
    if not cats and not chans:
        return None, {}
    return append_event(site, person, action="withdraw", source=source,
                        categories=cats or None, channels=chans or None,
                        policy_version=site.policy_label,
                        meta={"age": "minor", "reason": "age_rule"}), {**cats, **chans}


def device_linked(site: SiteSnapshot, account, device, source: str) -> None:
    """DEVICE was just linked to ACCOUNT (consent.identity, inside the write): when the
    account is a minor's, the browser is the minor's too, flagged, and what was granted
    there alone is withdrawn."""
    rule = age_rule(site)
    if rule is None or not is_minor(account.id) or is_minor(device.id):
        return
    _set_minor(device.id, True)
    _withdraw_alone(site, rule, device, source)


def _linked_devices(account_id: int) -> list:
    """The subjects of the browsers linked to ACCOUNT_ID (consent.identity), not erased."""
    from .extensions import db
    from .subjects import Subject

    # (the table, not consent.identity's model: identity calls device_linked here)
    links = db.metadata.tables["subject_links"]
    return list(db.session.execute(db.select(Subject).join(
        links, links.c.subject_id == Subject.id).where(
        links.c.account_id == account_id, Subject.erased_at.is_(None))).scalars())


def record_guardian_consent(site_key: str, *, categories: dict[str, bool] | None = None,
                            channels: dict[str, bool] | None = None,
                            subject: str | None = None,
                            user_id: str | None = None) -> tuple[object, AppendedEvent]:
    """A guardian's consent for a minor, verified by the site: one `guardian` event.

    The person is recorded as a minor (that is what a guardian's consent implies).
    """
    site = site_snapshot(site_key)
    if age_rule(site) is None:
        raise Invalid(f"site {site.key!r} has no age rule (settings.age_rule)",
                      field="categories")
    if not categories and not channels:
        raise Invalid("name at least one category or channel", field="categories")
    for key, value in (categories or {}).items():
        if key not in site.category_keys:
            raise Invalid(f"unknown category {key!r} for site {site.key!r}",
                          field=f"categories.{key}")
        if key == ESSENTIAL and value is False:
            raise Invalid("essential cookies cannot be refused", field="categories.essential")
    for key in channels or {}:
        parse_channel_key(key, field=f"channels.{key}")

    def write():
        from .guardians import settle_for

        person = _recipient_subject(site, subject, user_id)
        _set_minor(person.id, True)
        settle_for(site.id, person.id)
        event = append_event(site, person, action="guardian", source="api",
                             categories=dict(categories) if categories else None,
                             channels=dict(channels) if channels else None,
                             policy_version=site.policy_label,
                             meta={"age": "minor", "guardian": True})
        return person, event

    return run_write(write)


# ---------------------------------------------------------------- every other path


def _new_grants(values: dict | None, before: dict | None) -> list[str]:
    before = before or {}
    return [k for k, v in (values or {}).items() if v is True and before.get(k) is not True]


@on_append
def _refuse_unguarded_grants(ev: AppendedEvent) -> None:
    # Paths that do not screen (channels API, server API, SMS START) must not let a minor
    # grant alone what the age rule reserves: refusing here rolls the whole write back.
    if ev.duplicate or ev.action in EXEMPT_ACTIONS or (ev.meta or {}).get("guardian"):
        return
    before = ev.previous_state or {}
    cats = _new_grants(ev.categories, before.get("categories"))
    chans = _new_grants(ev.channels, before.get("channels"))
    if not cats and not chans:
        return
    rule = _rule_for_site_id(ev.site_id)
    if rule is None:
        return
    keys = [k for k in cats if rule.restricted(k, channel=False)] + \
        [k for k in chans if rule.restricted(k, channel=True)]
    if not keys or ev.subject_id is None or not (is_minor(ev.subject_id)
                                                 or minor_by_account(ev.subject_id)):
        return
    raise GuardianRequired(
        f"this person is recorded as a minor: {', '.join(keys)} needs the consent of a "
        f"{rule.guardian} (record it with POST /api/v1/sites/{ev.site_key}/guardian-consents)",
        # channel keys contain dots, which a JSON pointer would split: point at the map
        field="channels" if keys[0] in chans else f"categories.{keys[0]}")


def age_texts(rule: AgeRule, locale: str) -> dict[str, str]:
    """The age question's texts in LOCALE: question, guardian box, note, legend."""
    from .i18n import catalog

    strings = catalog("minors", locale)
    fill = {"age": str(rule.adult_age), "what": strings.get("what", "")}
    who = strings.get(f"who.{rule.guardian}", rule.guardian)
    return {"question": strings["question"].format(**fill),
            "guardian": strings[f"guardian.{rule.guardian}"].format(**fill),
            "note": strings[f"note.{rule.guardian}"].format(**fill),
            "legend": strings.get("legend", ""),
            # consent.guardians: where the confirmation link goes, and the waiting state
            "email": strings.get("email", "").replace("{who}", who),
            "awaiting": strings.get("awaiting", "").replace("{who}", who)}


def widget_age_config(site: SiteSnapshot, locale: str) -> dict | None:
    """What the widget needs to ask the age question (None when the site has no rule)."""
    rule = age_rule(site)
    if rule is None:
        return None
    texts = age_texts(rule, locale)
    out = {"ask": rule.ask, "q": texts["question"], "g": texts["guardian"],
           "categories": [k for k in rule.categories if k in site.category_keys]}
    if (site.settings.get("age_rule") or {}).get("guardian_verification") == "self_declared":
        out["self"] = 1  # only then does the guardian box grant (consent.guardians)
    return out


def age_question(site: SiteSnapshot, subject, *, flagged: bool, locale: str) -> dict | None:
    """The preference page's age question, or None when it should not ask: it asks when
    the rule asks always, the site flagged the visitor as possibly a minor (`age=ask` in
    the page URL), or the person is recorded as a minor."""
    rule = age_rule(site)
    if rule is None:
        return None
    minor = bool(subject is not None and subject.is_minor)
    if not (rule.ask == "always" or flagged or minor):
        return None
    return {"minor": minor, **age_texts(rule, locale)}


def describe(rule: AgeRule | None) -> str:
    """One sentence for admin pages and docs."""
    if rule is None:
        return "No age rule."
    who = f"People under {rule.adult_age}"
    if rule.from_age:
        who += f" (the policy names minors aged {rule.from_age} and over)"
    reserved = ", ".join(list(rule.categories) + list(rule.channels))
    return (f"{who} cannot grant {reserved} without their {rule.guardian}'s consent, "
            f"which is recorded as such (meta guardian: true). The age question is asked "
            f"{'always' if rule.ask == 'always' else 'when the site flags the visitor'}.")
