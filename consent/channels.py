"""Message channels: promotional and service opt-outs, "may I send?", one-click unsubscribe.

A subject's channel choices are ledger events (their `channels` dict) projected into
ConsentState.channels, exactly like cookie categories. Channel keys are
`<medium>.<kind>`: email.promotional, sms.promotional, push.promotional and push.service.
Transactional messages (receipts, password resets, security notices) are always allowed
and never stored as a choice.

Addresses (e-mail, phone number, push token) are never stored: only a keyed HMAC of the
normalised address (`subjects.keyed_ref`) mapped to the subject it belongs to, so the
database alone cannot tell whether a given address is known.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, iso, parse_iso, run_write, utcnow
from .context import RequestContext
from .errors import ExpiredLink, Invalid, InvalidLink  # noqa: F401 (links' errors, re-exported)
from .extensions import db
from .ledger import AppendedEvent, ConsentEvent, ConsentState, append_event, on_append, read_state
from .policies import policy_state
from .sites import SiteSnapshot, site_snapshot
from .subjects import (Subject, account_subject, create_subject, find_subject,
                       find_subject_by_user, get_or_create_subject, keyed_ref)
from .suppression import keep_opt_outs, records_for, suppressed_channels

MEDIA = ("email", "sms", "push")
KINDS = ("promotional", "service", "transactional")
CHANNELS = ("email.promotional", "sms.promotional", "push.promotional", "push.service")
TRANSACTIONAL = "transactional"
# Privacy-safe default: nothing but transactional messages without a recorded opt-in.
DEFAULT_CHANNEL_DEFAULTS = {key: False for key in CHANNELS}
# Where an unsubscribe of a medium is recorded from (ledger SOURCES).
SOURCE_BY_MEDIUM = {"email": "email_link", "sms": "sms", "push": "push"}
# Unsubscribe links must keep working long after the message was sent.
DEFAULT_UNSUBSCRIBE_DAYS = 365

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]+$")
PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
PUSH_TOKEN_RE = re.compile(r"^[\x21-\x7e]{8,4096}$")


class ChannelAddress(db.Model):
    """A keyed HMAC of a normalised address, mapped to the subject it reaches."""

    __tablename__ = "channel_addresses"
    __table_args__ = (sa.UniqueConstraint("site_id", "medium", "address_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    medium: Mapped[str] = mapped_column(sa.String(8))
    address_ref: Mapped[str] = mapped_column(sa.String(64))
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("subjects.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---------------------------------------------------------------- channel model


def channel_key(medium: str, kind: str) -> str:
    """The channel key for MEDIUM and a non-transactional KIND, or Invalid."""
    if medium not in MEDIA:
        raise Invalid(f"unknown channel {medium!r}; use one of {', '.join(MEDIA)}",
                      field="channel")
    if kind not in KINDS:
        raise Invalid(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}", field="kind")
    key = f"{medium}.{kind}"
    if key not in CHANNELS:
        raise Invalid(f"{medium} has no {kind!r} messages; use "
                      f"{' or '.join(k.split('.')[1] for k in CHANNELS if k.startswith(medium))}"
                      f" (or transactional)", field="kind")
    return key


def parse_channel_key(key: str, *, field: str = "channel") -> str:
    """KEY if it names a channel a person can choose; Invalid otherwise."""
    if key in CHANNELS:
        return key
    if isinstance(key, str) and key.endswith("." + TRANSACTIONAL):
        raise Invalid("transactional messages are always on and cannot be turned off",
                      field=field)
    raise Invalid(f"unknown channel {key!r}; use one of {', '.join(CHANNELS)}", field=field)


def channel_defaults(site: SiteSnapshot) -> dict[str, bool]:
    """What applies to a subject who never chose: Site.settings["channel_defaults"]."""
    configured = site.settings.get("channel_defaults") or {}
    out = dict(DEFAULT_CHANNEL_DEFAULTS)
    for key, value in configured.items():
        if key in CHANNELS and isinstance(value, bool):
            out[key] = value
    return out


def normalise_address(medium: str, address: str) -> str:
    """The one form of an address that is hashed (so case or spacing never matter)."""
    if not isinstance(address, str):
        raise Invalid("address must be a string", field="address")
    value = address.strip()
    if medium == "email":
        value = value.lower()
        if len(value) > 254 or not EMAIL_RE.fullmatch(value):
            raise Invalid("not an e-mail address", field="address")
        return value
    if medium == "sms":
        value = re.sub(r"[\s().\-/]", "", value)
        if value.startswith("00"):
            value = "+" + value[2:]
        elif value[:1].isdigit() and not value.startswith("0"):
            # Gateways (e.g. Vonage) send E.164 without the plus sign.
            value = "+" + value
        if not PHONE_RE.fullmatch(value):
            raise Invalid("not a phone number in international format (+<country><number>)",
                          field="address")
        return value
    if medium == "push":
        if not PUSH_TOKEN_RE.fullmatch(value):
            raise Invalid("not a push device token (8-4096 visible characters)",
                          field="address")
        return value
    raise Invalid(f"unknown channel {medium!r}; use one of {', '.join(MEDIA)}", field="channel")


def address_ref(site_key: str, medium: str, address: str) -> str:
    """The keyed HMAC an address is stored as (site-scoped)."""
    return keyed_ref(site_key, f"address:{medium}", normalise_address(medium, address))


def _address_row(site_id: int, medium: str, ref: str) -> ChannelAddress | None:
    return db.session.execute(
        db.select(ChannelAddress).where(ChannelAddress.site_id == site_id,
                                        ChannelAddress.medium == medium,
                                        ChannelAddress.address_ref == ref)
    ).scalar_one_or_none()


def subject_for_ref(site_id: int, medium: str, ref: str) -> Subject | None:
    """The live subject an address (by its ref) reaches, or None."""
    row = _address_row(site_id, medium, ref)
    if row is None:
        return None
    subject = db.session.get(Subject, row.subject_id)
    return subject if subject is not None and subject.erased_at is None else None


def _insert_ignore(table, **values):
    dialect = db.session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return ins.values(**values).on_conflict_do_nothing()


def subject_for_address(site: SiteSnapshot, medium: str, ref: str) -> Subject:
    """The subject an address reaches, creating an anonymous one (inside a write).

    An opt-out from an address never seen before must still be honoured, so the address
    gets its own subject rather than being refused (which would also reveal knowledge).
    """
    subject = subject_for_ref(site.id, medium, ref)
    if subject is not None:
        return subject
    row = _address_row(site.id, medium, ref)
    if row is not None:  # bound to an erased subject: start afresh
        db.session.delete(row)
        db.session.flush()
    subject = create_subject(site.id)
    db.session.execute(_insert_ignore(ChannelAddress.__table__, site_id=site.id,
                                      medium=medium, address_ref=ref, subject_id=subject.id,
                                      created_at=utcnow()))
    return subject_for_ref(site.id, medium, ref) or subject


# ---------------------------------------------------------------- recipients


@dataclass
class Recipient:
    """Who a sender means: exactly one of a visitor id, the site's user id, an address."""

    subject: str | None = None
    user_id: str | None = None
    address: str | None = None
    # The device key of the same consent cookie as SUBJECT: required where naming the
    # visitor maps an address to it (its access and erasure requests would then cover it).
    key: str | None = None


def _check_one(recipient: Recipient) -> None:
    given = [n for n in ("subject", "user_id", "address") if getattr(recipient, n)]
    if len(given) != 1:
        raise Invalid("name the recipient by exactly one of subject, user_id or address",
                      field="subject" if not given else given[1])


def find_recipient(site: SiteSnapshot, medium: str | None,
                   recipient: Recipient) -> Subject | None:
    """The existing subject a recipient denotes, or None (read only)."""
    _check_one(recipient)
    if recipient.subject:
        return find_subject(site.id, recipient.subject)
    if recipient.user_id:
        return find_subject_by_user(site.id, site.key, recipient.user_id)
    if medium is None:
        raise Invalid("an address needs its channel", field="channel")
    return subject_for_ref(site.id, medium, address_ref(site.key, medium, recipient.address))


def ensure_recipient(site: SiteSnapshot, medium: str | None, recipient: Recipient) -> Subject:
    """The subject a recipient denotes, created when new (inside a write transaction)."""
    _check_one(recipient)
    if recipient.subject:
        return get_or_create_subject(site.id, recipient.subject, key=recipient.key)
    if recipient.user_id:
        return account_subject(site, recipient.user_id)
    if medium is None:
        raise Invalid("an address needs its channel", field="channel")
    return subject_for_address(site, medium, address_ref(site.key, medium, recipient.address))


# ---------------------------------------------------------------- may I send?


@dataclass
class SendAnswer:
    """The answer to "may I send?", with what decided it."""

    allowed: bool
    channel: str
    kind: str
    reason: str
    event_id: str | None = None
    decided_at: str | None = None
    # consent.policies.policy_state of the opt-in (set by may_i_send)
    policy_state: dict | None = None
    # the policy version the deciding event was given under (for policy_state)
    under: str | None = None



def deciding_event(site_id: int, pseudonym: str, key: str, value: bool,
                   changed_at: str | None) -> ConsentEvent | None:
    """The event that set channel KEY to its current VALUE (the first since it changed)."""
    query = (db.select(ConsentEvent)
             .where(ConsentEvent.site_id == site_id, ConsentEvent.subject == pseudonym)
             .order_by(ConsentEvent.seq))
    since = parse_iso(changed_at)
    if since is not None:
        query = query.where(ConsentEvent.recorded_at >= since)
    found = None
    for event in db.session.execute(query).scalars():
        if (event.channels or {}).get(key) is value:
            found = found or event
        elif event.channels and key in event.channels:
            found = None
    return found


def subject_refs(site: SiteSnapshot, subject: Subject | None,
                 medium: str | None = None) -> list[tuple[str, str]]:
    """(kind, keyed hash) of every address (of MEDIUM, or all) and the user id of SUBJECT."""
    if subject is None:
        return []
    query = db.select(ChannelAddress.medium, ChannelAddress.address_ref).where(
        ChannelAddress.site_id == site.id, ChannelAddress.subject_id == subject.id)
    if medium is not None:
        query = query.where(ChannelAddress.medium == medium)
    refs = [(m, r) for m, r in db.session.execute(query)]
    if subject.user_ref:
        refs.append(("user", subject.user_ref))
    return refs


def recipient_refs(site: SiteSnapshot, medium: str | None,
                   recipient: Recipient) -> list[tuple[str, str]]:
    """The keyed hashes a recipient is named by (an address, or the site's user id)."""
    if recipient.address and medium is not None:
        return [(medium, address_ref(site.key, medium, recipient.address))]
    if recipient.user_id:
        return [("user", keyed_ref(site.key, "user", recipient.user_id))]
    return []


def channel_decision(site: SiteSnapshot, subject: Subject | None, key: str,
                     refs: list[tuple[str, str]] = ()) -> SendAnswer:
    """Whether channel KEY may be used for SUBJECT, and why.

    Without a choice of the subject, an opt-out kept from before an erasure for one of
    REFS (or of the subject's own addresses and user id) still says no.
    """
    medium, kind = key.split(".")
    state = read_state(site.id, subject.pseudonym) if subject is not None else None
    channels = (state or {}).get("channels") or {}
    if key in channels:
        value = bool(channels[key])
        changed = (state.get("changed") or {}).get(f"channel:{key}")
        event = deciding_event(site.id, subject.pseudonym, key, value, changed)
        return SendAnswer(value, medium, kind, "opted_in" if value else "opted_out",
                          event.event_id if event else state.get("last_event_id"),
                          iso(event.recorded_at) if event else changed,
                          under=event.policy_version if event else None)
    kept = suppressed_channels(site.id, list(refs) + subject_refs(site, subject, medium))
    if key in kept:
        return SendAnswer(False, medium, kind, "suppressed",
                          decided_at=iso(kept[key]) if kept[key] else None)
    default = channel_defaults(site)[key]
    return SendAnswer(default, medium, kind, "default_allowed" if default else "default_denied")


def may_i_send(site_key: str, medium: str, kind: str, recipient: Recipient) -> SendAnswer:
    """Answer a sender: may a message of KIND go to RECIPIENT over MEDIUM right now?"""
    site = site_snapshot(site_key)
    if medium not in MEDIA:
        channel_key(medium, kind)  # raises the precise error
    _check_one(recipient)
    if recipient.address:
        normalise_address(medium, recipient.address)  # bad input is refused for every kind
    if kind == TRANSACTIONAL:
        return SendAnswer(True, medium, kind, "transactional_always_allowed",
                          policy_state=policy_state(site, None, None))
    key = channel_key(medium, kind)
    answer = channel_decision(site, find_recipient(site, medium, recipient), key,
                              recipient_refs(site, medium, recipient))
    # An opt-in given before a material version took effect is flagged (seed policy 002:
    # "a choice regarding such use or disclosure" applies to messages too).
    opted_in = answer.reason == "opted_in"
    answer.policy_state = policy_state(site, parse_iso(answer.decided_at) if opted_in else None,
                                       answer.under if opted_in else None)
    return answer


# ---------------------------------------------------------------- recording choices


def _changes(state: dict | None, wanted: dict[str, bool]) -> dict[str, bool]:
    current = (state or {}).get("channels") or {}
    return {k: v for k, v in wanted.items() if current.get(k) is not v}


@dataclass
class ChoiceResult:
    """What recording a channel choice did."""

    subject: Subject
    event: AppendedEvent | None
    channels: dict[str, bool]


def _action_for(channels: dict[str, bool]) -> str:
    values = set(channels.values())
    if values == {False}:
        return "unsubscribe"
    if values == {True}:
        return "resubscribe"
    return "preferences"


# Set by consent.guardians (which imports this module, so this one cannot import it):
# SITE, SUBJECT, KEYS -> whether a minor's guardian request still asks to turn one of
# KEYS on.
_guardian_asks: Callable[[SiteSnapshot, Subject, list[str]], bool] | None = None


def set_guardian_hook(fn: Callable[[SiteSnapshot, Subject, list[str]], bool]) -> None:
    """Install consent.guardians' answer to "does a request still ask for these keys?"."""
    global _guardian_asks
    _guardian_asks = fn


def _asked_of_guardian(site: SiteSnapshot, subject: Subject, keys: list[str]) -> bool:
    """Whether a minor's guardian request still asks to turn one of KEYS on: an opt-out
    (unsubscribe, a reported choice) is then recorded although the channel is off, so that
    the guardian's answer cannot turn it back on (consent.guardians grants only what
    nothing decided since)."""
    if "age_rule" not in site.settings or _guardian_asks is None:
        return False
    return _guardian_asks(site, subject, keys)


def record_channel_choice(site_key: str, recipient: Recipient, channels: dict[str, bool], *,
                          medium: str | None = None, source: str = "api",
                          ctx: RequestContext | None = None,
                          notice: Callable[[int], str] | None = None) -> ChoiceResult:
    """Record opt-ins/opt-outs a site's backend or app reports (one event, if any change).
    NOTICE, called with the site's id inside the event's transaction, keeps what the
    person was shown and returns its digest for `meta.notice` (the web layer passes
    consent.notices.keep_told with the words)."""
    site = site_snapshot(site_key)
    if not channels:
        raise Invalid("name at least one channel", field="channels")
    for key in channels:
        parse_channel_key(key, field="channels")
    if recipient.address and medium is None:
        raise Invalid("an address needs its channel (email, sms or push)", field="channel")
    if recipient.address:
        normalise_address(medium, recipient.address)
        for key in channels:
            if not key.startswith(medium + "."):
                raise Invalid(f"a {medium} address cannot choose {key!r}",
                              field="channels")

    def write() -> ChoiceResult:
        subject = ensure_recipient(site, medium, recipient)
        state = read_state(site.id, subject.pseudonym)
        changes = _changes(state, channels)
        event = None
        # A repeated report (retry) records nothing new; an opt-out of a channel a guardian
        # request still asks for is recorded, as an unsubscribe is.
        if changes or _asked_of_guardian(site, subject, [k for k, v in channels.items()
                                                          if v is False]):
            meta = {"notice": notice(site.id)} if notice else None
            event = append_event(site, subject, action=_action_for(channels), source=source,
                                 channels=dict(channels), policy_version=site.policy_label,
                                 details=ctx.details(None) if ctx else None, meta=meta)
            state = event.state
        return ChoiceResult(subject, event, dict((state or {}).get("channels") or {}))

    return run_write(write)


def register_address(site_key: str, medium: str, address: str,
                     recipient: Recipient) -> tuple[str, Subject, AppendedEvent | None]:
    """Map an address to a subject (the site's user, or a visitor); returns its ref.

    If the address already reached another subject, it moves, and any opt-out recorded
    there for this medium that the new subject has not overridden since moves with it
    (one event): an opt-out given from an address is never lost by re-registering it.
    """
    site = site_snapshot(site_key)
    if medium not in MEDIA:
        raise Invalid(f"unknown channel {medium!r}; use one of {', '.join(MEDIA)}",
                      field="channel")
    ref = address_ref(site.key, medium, address)
    if recipient.address:
        raise Invalid("register an address for a subject or a user_id", field="address")

    def write():
        subject = ensure_recipient(site, None, recipient)
        row = _address_row(site.id, medium, ref)
        event = None
        if row is None:
            db.session.add(ChannelAddress(site_id=site.id, medium=medium, address_ref=ref,
                                          subject_id=subject.id))
            db.session.flush()
        elif row.subject_id != subject.id:
            previous = db.session.get(Subject, row.subject_id)
            row.subject_id = subject.id
            db.session.flush()
            if previous is not None and previous.erased_at is None:
                event = _carry_opt_outs(site, medium, previous, subject)
        return ref, subject, event

    return run_write(write)


def _carry_opt_outs(site: SiteSnapshot, medium: str, old: Subject,
                    new: Subject) -> AppendedEvent | None:
    old_state = read_state(site.id, old.pseudonym) or {}
    new_state = read_state(site.id, new.pseudonym) or {}
    carry = {}
    for key in CHANNELS:
        if not key.startswith(medium + ".") or (old_state.get("channels") or {}).get(key) \
                is not False:
            continue
        if (new_state.get("channels") or {}).get(key) is False:
            continue
        old_at = (old_state.get("changed") or {}).get(f"channel:{key}") or ""
        new_at = (new_state.get("changed") or {}).get(f"channel:{key}")
        if new_at is None or old_at > new_at:
            carry[key] = False
    if not carry:
        return None
    return append_event(site, new, action="unsubscribe", source="api", channels=carry,
                        policy_version=site.policy_label, meta={"carried": "address"})


# ---------------------------------------------------------------- one-click unsubscribe


def _unsubscribe_serializer(site_key: str) -> URLSafeTimedSerializer:
    # The site key is part of the salt: a token of one site does not verify for another.
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"],
                                  salt=f"consent.unsubscribe.v1:{site_key}")


def unsubscribe_lifetime_days(site: SiteSnapshot) -> int:
    """How long unsubscribe links work: Site.settings["unsubscribe_link_days"] or 365."""
    value = site.settings.get("unsubscribe_link_days")
    return value if isinstance(value, int) and value > 0 else DEFAULT_UNSUBSCRIBE_DAYS


@dataclass
class UnsubscribeLink:
    """A signed unsubscribe token minted for one recipient of one channel."""

    token: str
    channel: str
    address_ref: str
    subject: str
    expires_at: str


def mint_unsubscribe_token(site_key: str, key: str, address: str,
                           owner: Recipient | None = None) -> UnsubscribeLink:
    """Sign an unsubscribe token for ADDRESS on channel KEY (mapping the address first)."""
    site = site_snapshot(site_key)
    key = parse_channel_key(key)
    medium = key.split(".")[0]
    ref = address_ref(site.key, medium, address)
    if owner is not None and (owner.subject or owner.user_id):
        ref, subject, _ = register_address(site.key, medium, address, owner)
    else:
        subject = run_write(lambda: subject_for_address(site, medium, ref))
    token = _unsubscribe_serializer(site.key).dumps({"c": key, "r": ref})
    days = unsubscribe_lifetime_days(site)
    expires = datetime.fromtimestamp(time.time() + days * 86400, timezone.utc)
    return UnsubscribeLink(token, key, ref, subject.public_id, iso(expires))


@dataclass
class UnsubscribeTicket:
    """What a verified unsubscribe token allows: one channel of one address."""

    site: SiteSnapshot
    channel: str
    address_ref: str


def read_unsubscribe_token(site_key: str, token: str) -> UnsubscribeTicket:
    """Verify a token for SITE_KEY; InvalidLink/ExpiredLink when it must be refused."""
    site = site_snapshot(site_key)
    serializer = _unsubscribe_serializer(site.key)
    try:
        payload = serializer.loads(token, max_age=unsubscribe_lifetime_days(site) * 86400)
    except SignatureExpired:
        raise ExpiredLink("This unsubscribe link has expired. Use the link in a more recent "
                          "message or the preference center.")
    except BadSignature:
        raise InvalidLink("This unsubscribe link is not valid for this site. It may have "
                          "been altered or cut short; copy the whole link and try again.")
    if not isinstance(payload, dict) or payload.get("c") not in CHANNELS \
            or not isinstance(payload.get("r"), str) or len(payload["r"]) != 64:
        raise InvalidLink("This unsubscribe link is not valid for this site.")
    return UnsubscribeTicket(site, payload["c"], payload["r"])


PROMOTIONAL = tuple(k for k in CHANNELS if k.endswith(".promotional"))


def unsubscribe_keys(site: SiteSnapshot, key: str) -> list[str]:
    """What one unsubscribe from channel KEY stops: that channel, or with
    `settings.unsubscribe_scope = "all_promotional"` (seed 000: "opt out of receiving
    promotional communications") every promotional channel of the person."""
    if site.settings.get("unsubscribe_scope") == "all_promotional" and key in PROMOTIONAL:
        return list(PROMOTIONAL)
    return [key]


def unsubscribe(site_key: str, token: str, ctx: RequestContext,
                via: str = "one-click") -> tuple[UnsubscribeTicket, AppendedEvent | None]:
    """Opt the token's recipient out of its channel (no event when already out, unless a
    guardian request still asks for it)."""
    ticket = read_unsubscribe_token(site_key, token)
    site, key = ticket.site, ticket.channel
    medium = key.split(".")[0]

    def write():
        subject = subject_for_address(site, medium, ticket.address_ref)
        state = read_state(site.id, subject.pseudonym)
        current = (state or {}).get("channels") or {}
        keys = unsubscribe_keys(site, key)
        if all(current.get(k) is False for k in keys) \
                and not _asked_of_guardian(site, subject, keys):
            return None
        return append_event(site, subject, action="unsubscribe",
                            source=SOURCE_BY_MEDIUM[medium], channels={k: False for k in keys},
                            policy_version=site.policy_label, details=ctx.details(None),
                            meta={"via": via})

    return ticket, run_write(write)


# ---------------------------------------------------------------- suppression list


@dataclass
class Suppression:
    """One opted-out recipient of a channel."""

    subject: str | None
    address_ref: str | None
    since: str | None


def suppressions(site_key: str, medium: str, kind: str,
                 batch: int = 2000) -> tuple[str, Iterator[Suppression]]:
    """(channel key, rows): every subject opted out of the channel, one row per address.

    Input is checked before anything is streamed; the rows are read in batches so memory
    stays flat however long the list is.
    """
    site = site_snapshot(site_key)
    key = channel_key(medium, kind) if kind != TRANSACTIONAL else None
    if key is None:
        raise Invalid("transactional messages are never suppressed", field="kind")
    st = ConsentState.__table__
    sub = Subject.__table__
    addr = ChannelAddress.__table__
    query = (sa.select(sub.c.public_id, st.c.changed, addr.c.address_ref)
             .select_from(st.join(sub, sub.c.pseudonym == st.c.subject)
                          .outerjoin(addr, sa.and_(addr.c.subject_id == sub.c.id,
                                                   addr.c.medium == medium)))
             .where(st.c.site_id == site.id, sub.c.erased_at.is_(None),
                    st.c.channels[key].as_boolean() == sa.false())
             .order_by(sub.c.id, addr.c.id)
             .execution_options(yield_per=batch))

    def rows() -> Iterator[Suppression]:
        for partition in db.session.execute(query).partitions():
            for row in partition:
                yield Suppression(row.public_id, row.address_ref,
                                  (row.changed or {}).get(f"channel:{key}"))
        # Opt-outs kept when their person was erased (no subject any more), unless the
        # address has since made a choice of its own (listed above when it is an opt-out).
        for record in records_for(site.id, medium, key):
            owner = subject_for_ref(site.id, medium, record.ref)
            if owner is not None and key in ((read_state(site.id, owner.pseudonym) or {})
                                             .get("channels") or {}):
                continue
            yield Suppression(None, record.ref,
                              iso(record.opted_out_at) if record.opted_out_at else None)

    return key, rows()


# ---------------------------------------------------------------- erasure


@on_append
def _forget_addresses(event: AppendedEvent) -> None:
    # Erasing a person removes the address refs that could single them out again.
    if event.action == "erase" and event.subject_id is not None and not event.duplicate:
        db.session.execute(sa.delete(ChannelAddress.__table__)
                           .where(ChannelAddress.__table__.c.subject_id == event.subject_id))



def keep_suppressions(site: SiteSnapshot, subject: Subject) -> list[str]:
    """Keep the subject's channel opt-outs as suppression records (before it is erased).

    Called inside the erasure's write transaction, while the subject's addresses and user
    reference still exist; returns the channel keys whose opt-out was kept.
    """
    state = read_state(site.id, subject.pseudonym) or {}
    return keep_opt_outs(site.id, state.get("channels") or {}, state.get("changed") or {},
                         subject_refs(site, subject))
