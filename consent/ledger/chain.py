"""Hash chains: append-only, hash-linked events and the current-state projection.

Each site has `ledger_streams` independent hash chains ("streams"); a subject always
writes to the same stream (chosen from its pseudonym), so its events stay in order while
writes of other subjects and other sites proceed without waiting on one global lock.

hash(event) = SHA-256(prev_hash + "\\n" + canonical JSON of the event's fields).
Only pseudonymous values enter the hash: the subject's random pseudonym and an HMAC
(keyed per subject) of the personal details (truncated IP, user agent, page URL), which
live in `event_details` and are deleted on erasure without breaking any hash.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .. import rawsql
from ..database import UTCDateTime, iso, utcnow
from ..extensions import db

GENESIS = "0" * 64
HASH_VERSION = 1
# An event's time is taken under its stream's lock, so along a stream it never goes back,
# but for the skew between the clocks of the app's machines; nor is an event dated before
# a signed checkpoint that does not hold it. More than this earlier is a backdated event.
CLOCK_SLACK = timedelta(seconds=120)


def backdated(at: str | None, floor: str | None) -> bool:
    """Whether ISO time AT is more than CLOCK_SLACK before ISO time FLOOR (the fixed-width
    form `iso` writes compares as text, so the parse runs only when AT sorts first)."""
    if not at or not floor or at >= floor:
        return False
    try:
        return datetime.fromisoformat(at) < datetime.fromisoformat(floor) - CLOCK_SLACK
    except ValueError:
        return False

ACTIONS = (
    "accept_all", "reject_all", "custom", "withdraw", "grant", "gpc", "expire",
    "unsubscribe", "resubscribe", "preferences", "link", "guardian", "admin", "erase",
    "carry_forward", "opt_out",
)
SOURCES = ("banner", "preferences", "api", "email_link", "sms", "push", "gpc", "admin", "system")

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class ConsentEvent(db.Model):
    """One change of consent. Rows are only ever inserted (retention purge aside)."""

    __tablename__ = "consent_events"
    __table_args__ = (
        sa.UniqueConstraint("site_id", "stream", "seq"),
        # A client's idempotency key is unique per person, never per site: a key replayed
        # by somebody else records their own event instead of answering with another
        # person's. (The index also serves look-ups by subject: no second index to write.)
        sa.UniqueConstraint("site_id", "subject", "idempotency_key"),
        sa.Index("ix_consent_events_site_recorded", "site_id", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    stream: Mapped[int] = mapped_column()
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    subject: Mapped[str] = mapped_column(sa.String(32))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(sa.String(32))
    source: Mapped[str] = mapped_column(sa.String(32))
    categories: Mapped[dict | None] = mapped_column(sa.JSON)
    channels: Mapped[dict | None] = mapped_column(sa.JSON)
    policy_version: Mapped[str | None] = mapped_column(sa.String(40))
    locale: Mapped[str | None] = mapped_column(sa.String(16))
    meta: Mapped[dict | None] = mapped_column(sa.JSON)
    details_digest: Mapped[str | None] = mapped_column(sa.String(64))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(64))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


class EventDetails(db.Model):
    """Personal details of an event, kept apart so erasure can delete them."""

    __tablename__ = "event_details"

    event_id: Mapped[str] = mapped_column(sa.ForeignKey("consent_events.event_id"),
                                          primary_key=True)
    ip_prefix: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    page_url: Mapped[str | None] = mapped_column(sa.String(2048))


class LedgerHead(db.Model):
    """The last sequence number and hash of one stream; the row writers lock."""

    __tablename__ = "ledger_heads"

    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)
    stream: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    hash: Mapped[str] = mapped_column(sa.String(64), default=GENESIS)


class LedgerCheckpoint(db.Model):
    """Where a stream continues after a retention purge removed its older events."""

    __tablename__ = "ledger_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), index=True)
    stream: Mapped[int] = mapped_column()
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[str] = mapped_column(sa.String(64))
    purged_before: Mapped[datetime] = mapped_column(UTCDateTime)
    events_removed: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signature: Mapped[str] = mapped_column(sa.String(128))


class ConsentState(db.Model):
    """Current consent of a subject: a projection of the ledger, rebuilt on demand."""

    __tablename__ = "consent_states"

    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)
    subject: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    categories: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    channels: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # {"category:<key>" | "channel:<key>": ISO time the value last changed}
    changed: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    policy_version: Mapped[str | None] = mapped_column(sa.String(40))
    locale: Mapped[str | None] = mapped_column(sa.String(16))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    gpc_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_action: Mapped[str] = mapped_column(sa.String(32))
    last_source: Mapped[str] = mapped_column(sa.String(32))
    last_event_id: Mapped[str] = mapped_column(sa.String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass
class Details:
    """Personal context of an event (already minimised by the caller)."""

    ip_prefix: str | None = None
    user_agent: str | None = None
    page_url: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"ip_prefix": self.ip_prefix, "user_agent": self.user_agent,
                "page_url": self.page_url}


@dataclass
class AppendedEvent:
    """What listeners (outbox, caches) learn about an event just appended."""

    event_id: str
    site_id: int
    site_key: str
    subject: str
    subject_id: int | None
    action: str
    source: str
    recorded_at: datetime
    categories: dict | None
    channels: dict | None
    policy_version: str | None
    meta: dict | None
    previous_state: dict | None
    state: dict | None
    hash: str
    duplicate: bool = False
    extra: dict = field(default_factory=dict)


_listeners: list[Callable[[AppendedEvent], None]] = []


def on_append(fn: Callable[[AppendedEvent], None]) -> Callable[[AppendedEvent], None]:
    """Register FN to run inside the appending transaction (e.g. to write an outbox row).

    Listeners must read and write through consent.rawsql: the hot consent write runs on
    a raw connection (consent.database.run_raw_write), not on db.session.
    """
    if fn not in _listeners:
        _listeners.append(fn)
    return fn


# json.dumps with options builds a new encoder on every call; this one is built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(obj: Any) -> str:
    """The one JSON form that is hashed: sorted keys, no spaces, UTF-8 kept."""
    return _CANONICAL.encode(obj)


def hashed_fields(*, event_id: str, site_key: str, stream: int, seq: int, subject: str,
                  recorded_at: str, action: str, source: str, categories, channels,
                  policy_version, locale, meta, details_digest, idempotency_key) -> dict:
    """The fields an event hash covers, by name (shared with the offline verifier)."""
    return {
        "v": HASH_VERSION, "event_id": event_id, "site": site_key, "stream": stream,
        "seq": seq, "subject": subject, "recorded_at": recorded_at, "action": action,
        "source": source, "categories": categories, "channels": channels,
        "policy_version": policy_version, "locale": locale, "meta": meta,
        "details_digest": details_digest, "idempotency_key": idempotency_key,
    }


def chain_hash(prev_hash: str, fields: dict) -> str:
    """SHA-256 linking an event to its predecessor."""
    return hashlib.sha256((prev_hash + "\n" + canonical(fields)).encode("utf-8")).hexdigest()


def details_digest(secret: str | None, details: Details | None) -> str | None:
    """HMAC of personal details under the subject's own key (None when no details)."""
    if details is None or secret is None:
        return None
    # (hmac.digest: the one-shot C path, the same MAC as hmac.new(...).hexdigest())
    return hmac.digest(bytes.fromhex(secret), canonical(details.as_dict()).encode("utf-8"),
                       "sha256").hex()


def stream_for(pseudonym: str, streams: int) -> int:
    """The stream a subject's events go to: stable for the subject's lifetime."""
    return int(pseudonym[:8], 16) % max(1, streams)


# ---------------------------------------------------------------- projection


def apply_event(state: dict | None, ev: dict) -> dict | None:
    """Fold one event into a subject's state; the only rule used live and on rebuild."""
    if ev["action"] == "erase":
        return None
    if ev["action"] == "carry_forward":
        # A retention purge re-states the subject's whole state before removing the
        # events it rested on, so a replay of what remains gives the same state.
        return state_from_snapshot((ev.get("meta") or {}).get("state"))
    new = dict(state) if state else {
        "categories": {}, "channels": {}, "changed": {}, "policy_version": None,
        "locale": None, "decided_at": None, "gpc_at": None,
    }
    at = ev["recorded_at"]
    at_iso = iso(at)
    changed = dict(new["changed"])
    if ev.get("categories"):
        cats = dict(new["categories"])
        for key, value in ev["categories"].items():
            if cats.get(key) != value:
                changed[f"category:{key}"] = at_iso
            cats[key] = value
        new["categories"] = cats
        # GPC and an opt-out of sale/sharing decide nothing else (consent.regions)
        if ev["action"] not in ("gpc", "expire", "opt_out"):
            new["decided_at"] = at
    if ev.get("channels"):
        chans = dict(new["channels"])
        for key, value in ev["channels"].items():
            if chans.get(key) != value:
                changed[f"channel:{key}"] = at_iso
            chans[key] = value
        new["channels"] = chans
    new["changed"] = changed
    if ev["action"] == "gpc" or (ev.get("meta") or {}).get("gpc"):
        new["gpc_at"] = new["gpc_at"] or at
    if ev["action"] == "expire":
        new["decided_at"] = None
    if ev.get("policy_version"):
        new["policy_version"] = ev["policy_version"]
    if ev.get("locale"):
        new["locale"] = ev["locale"]
    new.update(last_action=ev["action"], last_source=ev["source"],
               last_event_id=ev["event_id"], updated_at=at)
    return new


STATE_COLUMNS = ("categories", "channels", "changed", "policy_version", "locale",
                 "decided_at", "gpc_at", "last_action", "last_source", "last_event_id",
                 "updated_at")
_JSON_STATE = ("categories", "channels", "changed")
_TIME_STATE = ("decided_at", "gpc_at", "updated_at")


def state_snapshot(state: dict) -> dict:
    """A state in JSON form (timestamps as ISO strings), for carry-forward events."""
    return {k: (iso(v) if k in _TIME_STATE else v) for k, v in state.items()}


def state_from_snapshot(snapshot: dict | None) -> dict | None:
    """The inverse of state_snapshot."""
    if snapshot is None:
        return None
    return {k: (rawsql.from_db_time(v.replace("T", " ").rstrip("Z")) if k in _TIME_STATE
                and v else v) for k, v in snapshot.items()}


def carry_forward_states(site, before: datetime) -> int:
    """Append a carry_forward event for every subject of SITE with events older than
    BEFORE (inside the purge's write transaction); returns how many were carried."""
    from ..subjects import SubjectRef

    rows = rawsql.all_rows(
        "SELECT DISTINCT e.subject, s.id, s.public_id, s.secret FROM consent_events e "
        "JOIN subjects s ON s.pseudonym = e.subject WHERE e.site_id = :site_id "
        "AND e.recorded_at < :before", {"site_id": site.id,
                                        "before": rawsql.to_db_time(before)})
    carried = 0
    for pseudonym, subject_id, public_id, secret in rows:
        state = read_state(site.id, pseudonym)
        if state is None:
            continue
        ref = SubjectRef(subject_id, public_id, pseudonym, secret)
        append_event(site, ref, action="carry_forward", source="system",
                     meta={"state": state_snapshot(state), "purged_before": iso(before)})
        carried += 1
    return carried


def _state_row_to_dict(row) -> dict | None:
    """A consent_states row (ORM object or raw row) as the dict apply_event folds."""
    if row is None:
        return None
    get = row.__getitem__ if hasattr(row, "keys") else lambda k: getattr(row, k)
    state = {}
    for key in STATE_COLUMNS:
        value = get(key)
        if key in _JSON_STATE:
            value = rawsql.from_db_json(value) or {}
        elif key in _TIME_STATE:
            value = rawsql.from_db_time(value)
        state[key] = value
    return state


_SELECT_STATE = ("SELECT " + ", ".join(STATE_COLUMNS) +
                 " FROM consent_states WHERE site_id = :site_id AND subject = :subject")


def read_state(site_id: int, pseudonym: str) -> dict | None:
    """The current state of a subject from the projection (None before any event)."""
    row = rawsql.one_dict(_SELECT_STATE, {"site_id": site_id, "subject": pseudonym})
    return _state_row_to_dict(row)


_UPSERT_STATE = (
    "INSERT INTO consent_states (site_id, subject, " + ", ".join(STATE_COLUMNS) + ") "
    "VALUES (:site_id, :subject, " + ", ".join(f":{c}" for c in STATE_COLUMNS) + ") "
    "ON CONFLICT (site_id, subject) DO UPDATE SET " +
    ", ".join(f"{c} = excluded.{c}" for c in STATE_COLUMNS))


def _state_params(site_id: int, pseudonym: str, state: dict,
                  categories_json: str | None = None) -> dict:
    """A state as the parameters of _UPSERT_STATE (CATEGORIES_JSON: the state's
    categories already encoded, when the caller has them)."""
    # (spelled out rather than a loop over STATE_COLUMNS with kind checks: every write
    # runs it; tests/test_write_path.py checks it covers STATE_COLUMNS)
    get, to_json, to_time = state.get, rawsql.to_db_json, rawsql.to_db_time
    return {
        "site_id": site_id, "subject": pseudonym,
        "categories": categories_json if categories_json is not None
        else to_json(get("categories") or {}),
        "channels": to_json(get("channels") or {}),
        "changed": to_json(get("changed") or {}),
        "policy_version": get("policy_version"), "locale": get("locale"),
        "decided_at": to_time(get("decided_at")), "gpc_at": to_time(get("gpc_at")),
        "last_action": get("last_action"), "last_source": get("last_source"),
        "last_event_id": get("last_event_id"), "updated_at": to_time(get("updated_at")),
    }


def _write_state(site_id: int, pseudonym: str, state: dict | None,
                 categories_json: str | None = None) -> None:
    if state is None:
        rawsql.run("DELETE FROM consent_states WHERE site_id = :site_id "
                       "AND subject = :subject", {"site_id": site_id, "subject": pseudonym})
        return
    rawsql.run(_UPSERT_STATE, _state_params(site_id, pseudonym, state, categories_json))


# ---------------------------------------------------------------- append


def _lock_head(site_id: int, stream: int) -> tuple[int, str]:
    """Lock the head row of a stream (creating it) and return (seq, hash).

    PostgreSQL: a row lock (FOR UPDATE) serialises writers of this one stream only.
    SQLite: the transaction already holds the database write lock (BEGIN IMMEDIATE).
    """
    lock = " FOR UPDATE" if rawsql.dialect() == "postgresql" else ""
    query = ("SELECT seq, hash FROM ledger_heads WHERE site_id = :site_id "
             "AND stream = :stream" + lock)
    params = {"site_id": site_id, "stream": stream}
    row = rawsql.one(query, params)
    if row is None:
        rawsql.run("INSERT INTO ledger_heads (site_id, stream, seq, hash) VALUES "
                       "(:site_id, :stream, 0, :hash) ON CONFLICT DO NOTHING",
                       {**params, "hash": GENESIS})
        row = rawsql.one(query, params)
    return int(row[0]), row[1]


def find_by_idempotency_key(site_id: int, pseudonym: str, key: str) -> ConsentEvent | None:
    """The event a subject already recorded under its idempotency key, if any."""
    return db.session.execute(
        db.select(ConsentEvent).where(ConsentEvent.site_id == site_id,
                                      ConsentEvent.subject == pseudonym,
                                      ConsentEvent.idempotency_key == key)
    ).scalar_one_or_none()


_INSERT_EVENT = (
    "INSERT INTO consent_events (event_id, site_id, stream, seq, subject, recorded_at, "
    "action, source, categories, channels, policy_version, locale, meta, details_digest, "
    "idempotency_key, prev_hash, hash) VALUES (:event_id, :site_id, :stream, :seq, "
    ":subject, :recorded_at, :action, :source, :categories, :channels, :policy_version, "
    ":locale, :meta, :details_digest, :idempotency_key, :prev_hash, :hash)")
# A row comes back only when the event was inserted.
_INSERT_EVENT_ONCE = (_INSERT_EVENT + " ON CONFLICT (site_id, subject, idempotency_key) "
                      "DO NOTHING RETURNING id")
_INSERT_DETAILS = ("INSERT INTO event_details (event_id, ip_prefix, user_agent, page_url) "
                   "VALUES (:event_id, :ip_prefix, :user_agent, :page_url)")
_UPDATE_HEAD = ("UPDATE ledger_heads SET seq = :seq, hash = :hash "
                "WHERE site_id = :site_id AND stream = :stream")
_NO_DETAILS = {"ip_prefix": None, "user_agent": None, "page_url": None}


def _append_pg(once: bool) -> str:
    """PostgreSQL: the event, its details, the stream head and the projection in one
    statement (data-modifying CTEs; foreign keys are checked at its end). Everything
    after the event insert is conditional on it, so a replayed key changes nothing."""
    state_values = ", ".join(
        f"CAST(:s_{c} AS JSON)" if c in _JSON_STATE else
        f"CAST(:s_{c} AS TIMESTAMP)" if c in _TIME_STATE else f"CAST(:s_{c} AS VARCHAR)"
        for c in STATE_COLUMNS)
    return (
        "WITH ev AS (" + (_INSERT_EVENT_ONCE if once else _INSERT_EVENT + " RETURNING id") +
        "), det AS (INSERT INTO event_details (event_id, ip_prefix, user_agent, page_url) "
        "SELECT :event_id, CAST(:ip_prefix AS VARCHAR), CAST(:user_agent AS VARCHAR), "
        "CAST(:page_url AS VARCHAR) FROM ev WHERE :with_details"
        "), head AS (UPDATE ledger_heads SET seq = :seq, hash = :hash "
        "WHERE site_id = :site_id AND stream = :stream AND EXISTS (SELECT 1 FROM ev)"
        "), st AS (INSERT INTO consent_states (site_id, subject, " + ", ".join(STATE_COLUMNS) +
        ") SELECT :site_id, :subject, " + state_values + " FROM ev "
        "ON CONFLICT (site_id, subject) DO UPDATE SET " +
        ", ".join(f"{c} = excluded.{c}" for c in STATE_COLUMNS) +
        ") SELECT id FROM ev")


_APPEND_PG = _append_pg(once=False)
_APPEND_PG_ONCE = _append_pg(once=True)
_EVENT_BY_KEY = ("SELECT event_id, subject, action, source, recorded_at, categories, "
                 "channels, policy_version, meta, hash FROM consent_events "
                 "WHERE site_id = :site_id AND subject = :subject AND idempotency_key = :key")


def _replayed(site, subject, key: str) -> AppendedEvent:
    """The event SUBJECT already recorded under its idempotency key, as an AppendedEvent."""
    row = rawsql.one_dict(_EVENT_BY_KEY, {"site_id": site.id, "subject": subject.pseudonym,
                                          "key": key})
    state = read_state(site.id, row["subject"])
    return AppendedEvent(
        event_id=row["event_id"], site_id=site.id, site_key=site.key,
        subject=row["subject"], subject_id=subject.id, action=row["action"],
        source=row["source"], recorded_at=rawsql.from_db_time(row["recorded_at"]),
        categories=rawsql.from_db_json(row["categories"]),
        channels=rawsql.from_db_json(row["channels"]),
        policy_version=row["policy_version"], meta=rawsql.from_db_json(row["meta"]),
        previous_state=state, state=state, hash=row["hash"], duplicate=True)


# Set by the web tier (consent.web.common.region_of_event): what an event on a site with
# rules by region records about where the person was ("the region in force is recorded
# on every event"), so that the ledger needs no request and no region rules of its own.
_region_of: Callable[[Any, str], dict] | None = None


def set_region_hook(fn: Callable[[Any, str], dict] | None) -> None:
    """Install the function that gives an event's `region` (and `rule`) for SITE, SOURCE."""
    global _region_of
    _region_of = fn


def append_event(site, subject, *, action: str, source: str,
                 categories: dict[str, bool] | None = None,
                 channels: dict[str, bool] | None = None,
                 policy_version: str | None = None, locale: str | None = None,
                 details: Details | None = None, meta: dict | None = None,
                 idempotency_key: str | None = None,
                 new_subject: bool = False,
                 prepared_digest: tuple[str, str | None] | None = None,
                 locked_head: tuple[int, int, str] | None = None) -> AppendedEvent:
    """Append one event for SUBJECT of SITE and update the projection.

    Must run inside a write transaction (see consent.database.write_transaction); the
    event, its details, the projection and every listener's rows commit or fail
    together. SITE is a Site or SiteSnapshot; SUBJECT anything with id, pseudonym and
    secret (a Subject). NEW_SUBJECT skips reading a state that cannot exist yet.
    PREPARED_DIGEST: (secret, details_digest(secret, DETAILS)) computed before the
    transaction; used only when it is SUBJECT's secret.
    LOCKED_HEAD: (stream, seq, hash) of a head this transaction has locked already
    (consent.subjects.subject_for_write); used only when it is SUBJECT's stream.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    if _region_of is not None and (site.settings or {}).get("regions") and not (
            meta and "region" in meta):
        meta = {**(meta or {}), **_region_of(site, source)}
    stream = stream_for(subject.pseudonym, site.ledger_streams)
    if locked_head is not None and locked_head[0] == stream:
        prev_seq, prev_hash = locked_head[1], locked_head[2]
    else:
        prev_seq, prev_hash = _lock_head(site.id, stream)
    recorded_at = utcnow()
    event_id = uuid.uuid4().hex
    seq = prev_seq + 1
    if prepared_digest is not None and prepared_digest[0] == subject.secret:
        digest = prepared_digest[1]
    else:
        digest = details_digest(subject.secret, details)
    fields = hashed_fields(
        event_id=event_id, site_key=site.key, stream=stream, seq=seq,
        subject=subject.pseudonym, recorded_at=iso(recorded_at), action=action,
        source=source, categories=categories, channels=channels,
        policy_version=policy_version, locale=locale, meta=meta,
        details_digest=digest, idempotency_key=idempotency_key)
    new_hash = chain_hash(prev_hash, fields)
    categories_json = rawsql.to_db_json(categories)
    params = {
        "event_id": event_id, "site_id": site.id, "stream": stream, "seq": seq,
        "subject": subject.pseudonym, "recorded_at": rawsql.to_db_time(recorded_at),
        "action": action, "source": source, "categories": categories_json,
        "channels": rawsql.to_db_json(channels), "policy_version": policy_version,
        "locale": locale, "meta": rawsql.to_db_json(meta), "details_digest": digest,
        "idempotency_key": idempotency_key, "prev_hash": prev_hash, "hash": new_hash}
    previous = None if new_subject else read_state(site.id, subject.pseudonym)
    ev = {"event_id": event_id, "action": action, "source": source,
          "recorded_at": recorded_at, "categories": categories, "channels": channels,
          "policy_version": policy_version, "locale": locale, "meta": meta}
    state = apply_event(previous, ev)
    # A first event's projection holds the event's own categories, copied in the same
    # order (apply_event): the same JSON text, encoded once.
    state_categories = categories_json if previous is None and categories \
        and action not in ("erase", "carry_forward") else None
    head = {"seq": seq, "hash": new_hash, "site_id": site.id, "stream": stream}
    if state is not None and rawsql.dialect() == "postgresql":
        # One statement, one round trip to the server instead of four (same rows).
        params.update(head, with_details=digest is not None,
                      **(details.as_dict() if digest is not None else _NO_DETAILS),
                      **{f"s_{k}": v for k, v in _state_params(
                          site.id, subject.pseudonym, state, state_categories).items()})
        sql = _APPEND_PG_ONCE if idempotency_key else _APPEND_PG
        if rawsql.one(sql, params) is None:
            return _replayed(site, subject, idempotency_key)
    else:
        if not idempotency_key:
            rawsql.run(_INSERT_EVENT, params)
        elif rawsql.one(_INSERT_EVENT_ONCE, params) is None:
            # The key was recorded before: nothing is written, the first event is
            # answered. (The unique key decides, in the INSERT itself: one statement
            # fewer than looking the key up first, and no race between the two.)
            return _replayed(site, subject, idempotency_key)
        if digest is not None:
            rawsql.run(_INSERT_DETAILS, {"event_id": event_id, **details.as_dict()})
        rawsql.run(_UPDATE_HEAD, head)
        _write_state(site.id, subject.pseudonym, state, state_categories)
    appended = AppendedEvent(
        event_id=event_id, site_id=site.id, site_key=site.key, subject=subject.pseudonym,
        subject_id=subject.id, action=action, source=source, recorded_at=recorded_at,
        categories=categories, channels=channels, policy_version=policy_version, meta=meta,
        previous_state=previous, state=state, hash=new_hash)
    for listener in _listeners:
        listener(appended)
    return appended


# ---------------------------------------------------------------- reading


def history(site_id: int, pseudonym: str) -> list[ConsentEvent]:
    """Every event of a subject, oldest first."""
    return list(db.session.execute(
        db.select(ConsentEvent).where(ConsentEvent.site_id == site_id,
                                      ConsentEvent.subject == pseudonym)
        .order_by(ConsentEvent.seq)
    ).scalars())


def event_fields(row, site_key: str) -> dict:
    """The hashed fields of a stored event row."""
    return hashed_fields(
        event_id=row.event_id, site_key=site_key, stream=row.stream, seq=row.seq,
        subject=row.subject, recorded_at=iso(row.recorded_at), action=row.action,
        source=row.source, categories=row.categories, channels=row.channels,
        policy_version=row.policy_version, locale=row.locale, meta=row.meta,
        details_digest=row.details_digest, idempotency_key=row.idempotency_key)


# ---------------------------------------------------------------- verify


@dataclass
class VerifyProblem:
    """The first thing wrong in a stream."""

    site_key: str
    stream: int
    seq: int | None
    event_id: str | None
    reason: str

    def __str__(self) -> str:
        where = f"site {self.site_key} stream {self.stream}"
        if self.event_id:
            where += f" event {self.event_id} (seq {self.seq})"
        return f"{where}: {self.reason}"


@dataclass
class VerifyReport:
    """Outcome of verifying a ledger."""

    events: int = 0
    streams: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _iter_rows(query, batch: int = 5000) -> Iterator:
    """Stream rows from the database without loading them all."""
    result = db.session.execute(query.execution_options(yield_per=batch))
    for partition in result.partitions():
        yield from partition


def verify_ledger(site_ids: Iterable[int] | None = None) -> VerifyReport:
    """Recompute every hash link; report the first bad event of each broken stream."""
    from ..sites import Site
    from ..subjects import Subject

    report = VerifyReport()
    sites = db.session.execute(db.select(Site.id, Site.key)).all()
    keys = {s.id: s.key for s in sites}
    wanted = set(site_ids) if site_ids is not None else set(keys)
    heads = {(h.site_id, h.stream): h for h in db.session.execute(
        db.select(LedgerHead.site_id, LedgerHead.stream, LedgerHead.seq, LedgerHead.hash)).all()}
    checkpoints: dict[tuple[int, int], Any] = {}
    for cp in db.session.execute(db.select(LedgerCheckpoint).order_by(LedgerCheckpoint.id)
                                 ).scalars():
        checkpoints[(cp.site_id, cp.stream)] = cp
    secrets_by_pseudonym = None
    ev = ConsentEvent.__table__
    det = EventDetails.__table__
    query = (sa.select(ev, det.c.ip_prefix, det.c.user_agent, det.c.page_url,
                       det.c.event_id.label("details_event_id"))
             .select_from(ev.outerjoin(det, det.c.event_id == ev.c.event_id))
             .where(ev.c.site_id.in_(wanted))
             .order_by(ev.c.site_id, ev.c.stream, ev.c.seq))
    current: tuple[int, int] | None = None
    expect_seq, expect_hash, last_id, last_at, broken = 0, GENESIS, None, None, False

    def close_stream(key):
        if key is None:
            return
        head = heads.get(key)
        if not broken and head is not None and (head.seq != expect_seq or head.hash != expect_hash):
            report.problems.append(VerifyProblem(
                keys[key[0]], key[1], expect_seq + 1, None,
                f"ledger head says seq {head.seq} but the chain ends at seq {expect_seq}: "
                "events after it were deleted or the head was altered"))

    for row in _iter_rows(query):
        key = (row.site_id, row.stream)
        if key != current:
            close_stream(current)
            current = key
            report.streams += 1
            cp = checkpoints.get(key)
            expect_seq, expect_hash = (cp.seq, cp.hash) if cp else (0, GENESIS)
            last_id, last_at, broken = None, None, False
        report.events += 1
        if broken:
            continue
        site_key = keys[row.site_id]
        reason = None
        if row.seq != expect_seq + 1:
            reason = (f"expected seq {expect_seq + 1}, found {row.seq}: "
                      "an event is missing or was inserted")
        elif row.prev_hash != expect_hash:
            reason = "prev_hash does not match the previous event: inserted or reordered"
        elif chain_hash(row.prev_hash, event_fields(row, site_key)) != row.hash:
            reason = "contents do not match the stored hash: the event was edited"
        elif last_id is not None and row.id < last_id:
            reason = "row order does not match the chain: reordered"
        elif last_at is not None and row.recorded_at < last_at - CLOCK_SLACK:
            reason = (f"recorded at {iso(row.recorded_at)}, before the event it follows "
                      f"({iso(last_at)}): it was backdated")
        elif row.details_event_id is not None:
            if secrets_by_pseudonym is None:
                secrets_by_pseudonym = dict(db.session.execute(
                    db.select(Subject.pseudonym, Subject.secret)
                    .where(Subject.secret.is_not(None))).all())
            secret = secrets_by_pseudonym.get(row.subject)
            if secret is not None and row.details_digest is not None:
                digest = details_digest(secret, Details(row.ip_prefix, row.user_agent,
                                                        row.page_url))
                if digest != row.details_digest:
                    reason = "personal details do not match their digest: edited"
        if reason:
            report.problems.append(VerifyProblem(site_key, row.stream, row.seq,
                                                 row.event_id, reason))
            broken = True
            continue
        expect_seq, expect_hash, last_id, last_at = row.seq, row.hash, row.id, row.recorded_at
    close_stream(current)
    # Streams whose head exists but which have no events left at all.
    seen = {(p.site_key, p.stream) for p in report.problems}
    present = {k for k in heads}
    for key in present:
        if key[0] not in wanted or (keys.get(key[0]), key[1]) in seen:
            continue
        has_any = db.session.execute(
            sa.select(sa.func.count()).select_from(ev)
            .where(ev.c.site_id == key[0], ev.c.stream == key[1])).scalar()
        cp = checkpoints.get(key)
        base_seq = cp.seq if cp else 0
        if not has_any and heads[key].seq != base_seq:
            report.problems.append(VerifyProblem(
                keys[key[0]], key[1], base_seq + 1, None,
                f"ledger head says seq {heads[key].seq} but the stream has no events"))
    return report


# ---------------------------------------------------------------- rebuild


def compute_states(site_ids: Iterable[int] | None = None) -> dict[tuple[int, str], dict]:
    """Replay the ledger into {(site_id, subject): state}."""
    ev = ConsentEvent.__table__
    query = sa.select(ev).order_by(ev.c.site_id, ev.c.stream, ev.c.seq)
    if site_ids is not None:
        query = query.where(ev.c.site_id.in_(list(site_ids)))
    states: dict[tuple[int, str], dict] = {}
    for row in _iter_rows(query):
        key = (row.site_id, row.subject)
        new = apply_event(states.get(key), row._mapping)
        if new is None:
            states.pop(key, None)
        else:
            states[key] = new
    return states


def current_states() -> dict[tuple[int, str], dict]:
    """The projection as stored: {(site_id, subject): state}."""
    out = {}
    for row in _iter_rows(sa.select(ConsentState.__table__)):
        out[(row.site_id, row.subject)] = _state_row_to_dict(row)
    return out


def normalise_state(state: dict) -> dict:
    """A state in comparable form (timestamps as ISO strings)."""
    return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in state.items()}


def rebuild_states() -> tuple[int, int]:
    """Replace the projection with a replay of the ledger; returns (states, differences).

    Must run inside a write transaction.
    """
    before = {k: normalise_state(v) for k, v in current_states().items()}
    rebuilt = compute_states()
    after = {k: normalise_state(v) for k, v in rebuilt.items()}
    differences = sum(1 for k in set(before) | set(after) if before.get(k) != after.get(k))
    db.session.execute(sa.delete(ConsentState.__table__))
    for (site_id, subject), state in rebuilt.items():
        _write_state(site_id, subject, state)
    return len(rebuilt), differences


# ---------------------------------------------------------------- append-only guard


class LedgerPurgePermit(db.Model):
    """Lets the database triggers allow a retention purge, within its transaction only."""

    __tablename__ = "ledger_purge_permits"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    before: Mapped[datetime] = mapped_column(UTCDateTime)


def append_only_ddl(dialect: str) -> list[str]:
    """Triggers that make the database itself refuse UPDATE and DELETE of events."""
    if dialect == "sqlite":
        return [
            "CREATE TRIGGER IF NOT EXISTS consent_events_no_update BEFORE UPDATE ON "
            "consent_events BEGIN SELECT RAISE(ABORT, 'consent_events is append-only'); END",
            "CREATE TRIGGER IF NOT EXISTS consent_events_no_delete BEFORE DELETE ON "
            "consent_events WHEN NOT EXISTS (SELECT 1 FROM ledger_purge_permits p "
            "WHERE p.site_id = OLD.site_id AND OLD.recorded_at < p.before) "
            "BEGIN SELECT RAISE(ABORT, 'consent_events is append-only'); END",
        ]
    if dialect == "postgresql":
        return [
            "CREATE OR REPLACE FUNCTION consent_events_guard() RETURNS trigger AS $$ "
            "BEGIN IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM ledger_purge_permits p "
            "WHERE p.site_id = OLD.site_id AND OLD.recorded_at < p.before) THEN RETURN OLD; "
            "END IF; RAISE EXCEPTION 'consent_events is append-only'; END $$ "
            "LANGUAGE plpgsql",
            "DROP TRIGGER IF EXISTS consent_events_append_only ON consent_events",
            "CREATE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE ON "
            "consent_events FOR EACH ROW EXECUTE FUNCTION consent_events_guard()",
        ]
    return []


def drop_append_only_ddl(dialect: str) -> list[str]:
    """The statements that remove the guard (used by migrations' downgrade)."""
    if dialect == "sqlite":
        return ["DROP TRIGGER IF EXISTS consent_events_no_update",
                "DROP TRIGGER IF EXISTS consent_events_no_delete"]
    if dialect == "postgresql":
        return ["DROP TRIGGER IF EXISTS consent_events_append_only ON consent_events",
                # (guards_0001's trigger calls the same function)
                *drop_truncate_guard_ddl(dialect),
                "DROP FUNCTION IF EXISTS consent_events_guard()"]
    return []


def truncate_guard_ddl(dialect: str) -> list[str]:
    """PostgreSQL: TRUNCATE fires no row triggers, so a statement trigger refuses it
    (migration guards_0001). SQLite has no TRUNCATE; its `INSERT OR REPLACE`, which
    deletes without DELETE triggers, fires them on the app's connections
    (`recursive_triggers`, consent.database) and breaks the hash chain on any other."""
    if dialect == "postgresql":
        return ["DROP TRIGGER IF EXISTS consent_events_no_truncate ON consent_events",
                "CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events "
                "FOR EACH STATEMENT EXECUTE FUNCTION consent_events_guard()"]
    return []


def drop_truncate_guard_ddl(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return ["DROP TRIGGER IF EXISTS consent_events_no_truncate ON consent_events"]
    return []


@sa.event.listens_for(LedgerPurgePermit.__table__, "after_create")
def _install_guard(target, connection, **kw):
    # Runs for db.create_all(); migrations install the same statements themselves.
    dialect = connection.dialect.name
    for statement in append_only_ddl(dialect) + truncate_guard_ddl(dialect):
        connection.exec_driver_sql(statement)
