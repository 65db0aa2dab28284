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
person's own "adult" answer does not. `set_minor` is the one place the flag changes, on
every path (an age answer in a choice, the backend, a guardian's consent, linking): a
browser linked to an account (consent.identity) is the same person's, so it carries the
account's flag, set or lifted, to every linked browser, and flags a browser linked to a
minor's account; the browser is then screened and refused as any minor.

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
from .subjects import SubjectRef

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


_FLAG = ("UPDATE subjects SET is_minor = :minor WHERE id = :id AND is_minor <> :minor "
         "RETURNING id")
_LINKED = ("SELECT s.id, s.public_id, s.pseudonym, s.secret FROM subject_links l "
           "JOIN subjects s ON s.id = l.subject_id WHERE l.account_id = :id "
           "AND s.erased_at IS NULL AND s.is_minor <> :minor")


def _no_other_minor(device: str) -> str:
    # Lifting: a browser linked to another account that is a minor's too (a shared
    # computer) stays a minor's: that person still uses it.
    return (" AND NOT EXISTS (SELECT 1 FROM subject_links o JOIN subjects a ON a.id = "
            f"o.account_id WHERE o.subject_id = {device} AND o.account_id <> :id "
            "AND a.is_minor = :yes)")


_TO_LIFT = _LINKED + _no_other_minor("s.id")
# The lift of one browser decides again, in a statement of its own, once its row is
# locked: on PostgreSQL it then sees a link to a minor's account committed meanwhile.
_LIFT = ("UPDATE subjects SET is_minor = :minor WHERE id = :device AND is_minor <> :minor"
         + _no_other_minor(":device") + " RETURNING id")


def _flag(subject_id: int, minor: bool) -> bool:
    # A conditional UPDATE: whether THIS write changed the flag (of two writers at once,
    # one does; on PostgreSQL the other waits on the row and then matches nothing).
    return rawsql.one(_FLAG, {"minor": bool(minor), "id": subject_id}) is not None


def set_minor(site: SiteSnapshot, subject, minor: bool, *, source: str,
              withdraw: bool = True, keep: tuple[str, ...] = ()
              ) -> tuple[AppendedEvent | None, dict]:
    """Set or lift SUBJECT's minor flag, and carry it to the browsers linked to it
    (inside a write; SUBJECT needs id, pseudonym and secret).

    The one place the flag changes. Becoming a minor withdraws, in one `withdraw` event,
    the restricted keys SUBJECT had on alone (unless WITHDRAW is false: a choice's own
    event turns them off; KEEP: keys a guardian grants in the same write); returns that
    event and what it turned off. Each browser linked to SUBJECT (consent.identity) is
    the same person's: flagged, with what it granted alone withdrawn, or lifted with it
    (unless another account it is linked to is a minor's: a shared computer).
    """
    rule = age_rule(site)
    event, withdrawn = None, {}
    if _flag(subject.id, minor) and minor and withdraw:
        event, withdrawn = _withdraw_alone(site, rule, subject, source, keep)
    # (also when SUBJECT's own flag did not change: a browser linked meanwhile is caught)
    params = {"id": subject.id, "minor": bool(minor), "yes": True}
    if minor:
        for row in rawsql.all_rows(_LINKED, params):
            device = SubjectRef(*row)
            if _flag(device.id, True):
                _withdraw_alone(site, rule, device, source)
        return event, withdrawn
    # Lifting races with a link of the same browser to a minor's account (device_linked),
    # which finds the browser flagged already and so changes nothing on it. PostgreSQL:
    # the browsers to lift are locked first (as the link locks its browser); the lift then
    # decides per browser in a new statement, which sees a link committed while it waited,
    # and a link waiting for this lock flags the browser again after this commit.
    lock = " FOR NO KEY UPDATE OF s" if rawsql.dialect() == "postgresql" else ""
    for row in rawsql.all_rows(_TO_LIFT + lock, params):
        rawsql.one(_LIFT, {**params, "device": row[0]})
    return event, withdrawn


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
    minor: bool = False  # the person is a minor after this choice
    new_minor: bool = False  # ... from this choice on: see record_screened


def record_screened(site: SiteSnapshot, subject, screened: Screened, source: str) -> None:
    """After the screened choice's event is appended (inside the same write): a person
    who became a minor with it is recorded as one, and so are their linked browsers
    (set_minor; the choice's own event turned off what they had on)."""
    # After, not before: the answer comes first in the ledger, then what follows from it
    # on other subjects; and the widget path holds its stream's head for that event.
    if screened.new_minor:
        set_minor(site, subject, True, source=source, withdraw=False)


def screen_choice(site: SiteSnapshot, subject, *, created: bool, age: str | None,
                  guardian: bool, categories: dict | None, channels: dict | None,
                  meta: dict | None) -> Screened:
    """Apply the site's age rule to a choice made in the widget or the preference center.

    SUBJECT needs `id` and `pseudonym`; runs inside the write transaction. A minor's new
    grants of restricted keys are withheld unless GUARDIAN; when the person becomes a
    minor with this choice, restricted keys they had on (or a default turns on) are
    switched off in the same event, and the caller records them a minor with
    record_screened once that event is appended. An "adult" answer does not undo a
    recorded minor. A browser linked to a minor's account is flagged already (set_minor).
    """
    rule = age_rule(site)
    if rule is None:
        return Screened(categories, channels, meta)
    if age is not None and age not in AGES:
        raise Invalid("age is 'minor' or 'adult'", field="age")
    was_minor = False if created else is_minor(subject.id)
    # Once recorded as a minor, only the site's backend lifts it (POST /age): the person's
    # own "adult" answer does not, or the rule would be one click away.
    minor = was_minor or age == "minor"
    meta = dict(meta or {})
    if age is not None:
        meta["age"] = "minor" if minor else "adult"
    if not minor:
        return Screened(categories, channels, meta or None)
    verify = (site.settings.get("age_rule") or {}).get("guardian_verification", "link")
    if guardian and verify != "link":
        meta["guardian"] = True
        return Screened(categories, channels, meta, minor=True, new_minor=not was_minor)
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
    return Screened(cats, chans, meta or None, sorted(withheld), minor=True,
                    new_minor=not was_minor)


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
    by default included); the person's linked browsers follow (set_minor).
    """
    site = site_snapshot(site_key)
    rule = age_rule(site)
    if rule is None:
        raise Invalid(f"site {site.key!r} has no age rule (settings.age_rule); load a "
                      "profile that sets one or add it", field="minor")

    def write() -> AgeResult:
        person = _recipient_subject(site, subject, user_id)
        event, withdrawn = set_minor(site, person, minor, source="api")
        return AgeResult(person, minor, event, withdrawn)

    return run_write(write)


def _withdraw_alone(site: SiteSnapshot, rule: AgeRule, person, source: str,
                    keep: tuple[str, ...] = ()) -> tuple[AppendedEvent | None, dict]:
    """A new minor's restricted keys that are on (defaults included) turned off, in one
    `withdraw` event on PERSON (inside a write); (None, {}) when nothing is on."""
    state = read_state(site.id, person.pseudonym)
    on_cats, on_chans = _effective_on(site, state, rule)
    cats = {k: False for k in on_cats if k not in keep}
    chans = {k: False for k in on_chans if k not in keep}
    if not cats and not chans:
        return None, {}
    return append_event(site, person, action="withdraw", source=source,
                        categories=cats or None, channels=chans or None,
                        policy_version=site.policy_label,
                        meta={"age": "minor", "reason": "age_rule"}), {**cats, **chans}


def device_linked(site: SiteSnapshot, account, device, source: str) -> None:
    """DEVICE was just linked to ACCOUNT (consent.identity, inside the write): when the
    account is a minor's, the browser is the minor's too (set_minor)."""
    if age_rule(site) is None:
        return
    # PostgreSQL: read the account's flag under a share lock. An age answer changing it
    # at the same moment holds the row (set_minor's UPDATE) until it commits: this link
    # then reads the new flag; or it waits for this link to commit and then finds the
    # browser among the account's links. Either way the browser is flagged.
    postgresql = rawsql.dialect() == "postgresql"
    row = rawsql.one("SELECT is_minor FROM subjects WHERE id = :id"
                     + (" FOR SHARE" if postgresql else ""), {"id": account.id})
    if row and row[0]:
        if postgresql:
            # The browser's row too, even when it is flagged already (set_minor then
            # changes nothing on it): a lift of another account it is linked to waits for
            # this link and sees it, or this link waits for the lift and flags it again.
            rawsql.one("SELECT id FROM subjects WHERE id = :id FOR NO KEY UPDATE",
                       {"id": device.id})
        set_minor(site, device, True, source=source)


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
        # What the person had on alone is withdrawn, but for what the guardian grants now.
        granted = tuple(k for k, v in {**(categories or {}), **(channels or {})}.items() if v)
        set_minor(site, person, True, source="api", keep=granted)
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
    # (a browser linked to a minor's account is flagged itself: set_minor)
    if not keys or ev.subject_id is None or not is_minor(ev.subject_id):
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
