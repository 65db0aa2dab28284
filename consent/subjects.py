"""Who a person is: subjects, the device keys that prove them, read tokens, accounts.

A *subject* is a person as one site sees them: a browser (device), a site's known user
(an account), or an address that receives messages. Its `public_id` is an identifier,
not a credential: it may appear in links, logs and exports. What proves a subject:

- **the device key** (`k` in the widget's consent cookie): 128 random bits the widget
  mints with the id. The server keeps only `sha256(k)` (`Subject.key_hash`). Every
  decision for an existing subject must present it; a new subject is created with the
  key it presents. Subjects the server creates itself (accounts, addresses, visitors of
  the preference page without an identity) get the hash of a key nobody holds. A
  subject stored before keys existed (no hash yet) is claimed by the first keyed write.
  The site's backend names an unknown visitor only with its key (get_or_create_subject).
- **the read token** (`r` in the cookie): `HMAC(server key, "read:" + pseudonym)`,
  returned with every recorded decision; it lets the device read its own consent
  (`GET .../me/<id>?r=`) and is neither the id nor the write secret.
- the site's API key (server-to-server API) and signed links (unsubscribe, access,
  login): checked where they are used.

This module is the one place those rules live; decisions, the preference center,
identity (linking and login links), channels and minors call it. It stays below the
ledger: nothing here appends events.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from . import rawsql
from .database import UTCDateTime, utcnow
from .errors import Forbidden, Invalid
from .sites import NotFound
from .extensions import db

PUBLIC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# A device key: at least 128 bits, base64url (the widget mints 22 characters).
DEVICE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
READ_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
USER_ID_MAX = 200


class Subject(db.Model):
    """A person as seen by one site.

    `public_id` is the opaque random id kept in the visitor's cookie. Ledger events carry
    only `pseudonym`, a separate random value, so deleting the identifiers on this row
    (erasure) unlinks the person from the ledger without touching any event.
    """

    __tablename__ = "subjects"
    __table_args__ = (
        # Also serves look-ups by site alone: no separate site_id index to write.
        sa.UniqueConstraint("site_id", "public_id"),
        # Few subjects have a user_ref, and it is only ever compared to a value.
        sa.Index("ix_subjects_user_ref", "user_ref",
                 sqlite_where=sa.text("user_ref IS NOT NULL"),
                 postgresql_where=sa.text("user_ref IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    public_id: Mapped[str | None] = mapped_column(sa.String(64))
    pseudonym: Mapped[str] = mapped_column(sa.String(32), unique=True)
    # Per-subject key for digests of personal details; deleted on erasure.
    secret: Mapped[str | None] = mapped_column(sa.String(64))
    # Keyed HMAC of the site's own user id, to find a known user on a new device.
    user_ref: Mapped[str | None] = mapped_column(sa.String(64))
    # SHA-256 (hex) of the device key; NULL until the first keyed write claims the subject.
    key_hash: Mapped[str | None] = mapped_column(sa.String(64))
    is_minor: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VisitorKeyRefused(Forbidden):
    """A visitor id presented without the key of the device that holds it."""

    title = "Visitor key refused"
    # The widget recognises this refusal by its type and starts a new visitor.
    type = "tag:consent-manager,2026:visitor-key"

    def __init__(self):
        # The same words whether the id exists or not, and whether a key was sent.
        super().__init__("This visitor id can only be used with the key kept by the "
                         "browser that holds it (the consent cookie's k); nothing was "
                         "recorded.", field="key")


# ---------------------------------------------------------------- keyed identifiers


def hmac_key() -> bytes:
    """The server key for keyed pseudonyms (derived from SECRET_KEY unless set)."""
    config = current_app._get_current_object().config  # (see consent.hardening)
    return _derived_hmac_key(config.get("CONSENT_HMAC_KEY") or None, config["SECRET_KEY"])


@functools.lru_cache(maxsize=8)
def _derived_hmac_key(configured: str | None, secret: str) -> bytes:
    # Every new visitor's device key hash asks for it: derived once per setting.
    if configured:
        return configured.encode()
    return hmac.new(secret.encode(), b"consent-hmac-v1", hashlib.sha256).digest()


def keyed_ref(site_key: str, kind: str, value: str) -> str:
    """A keyed HMAC of an identifier (user id, e-mail, phone) scoped to a site."""
    msg = f"{site_key}\x00{kind}\x00{value}".encode("utf-8")
    return hmac.new(hmac_key(), msg, hashlib.sha256).hexdigest()


def new_public_id() -> str:
    """A fresh opaque subject id for a visitor cookie."""
    return secrets.token_urlsafe(16)


# ---------------------------------------------------------------- device keys, read tokens


def new_device_key() -> str:
    """A fresh device key (128 bits, base64url), as the widget mints it."""
    return secrets.token_urlsafe(16)


def device_key_hash(key: str) -> str:
    """What is stored of a device key."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _nobodys_key_hash() -> str:
    # For subjects the server creates: no device holds this key, so none can write as it.
    return device_key_hash(secrets.token_urlsafe(32))


def key_matches(stored_hash: str | None, key: str | None) -> bool:
    """Whether KEY is the device key whose hash is STORED_HASH (False when either is absent)."""
    if not stored_hash or not isinstance(key, str) or not DEVICE_KEY_RE.fullmatch(key):
        return False
    return hmac.compare_digest(stored_hash, device_key_hash(key))


def read_token(pseudonym: str) -> str:
    """The token that lets a device read its own consent (`r` in the cookie)."""
    mac = hmac.digest(hmac_key(), b"read:" + pseudonym.encode("ascii"), "sha256")
    return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode("ascii")


def read_token_matches(pseudonym: str, token: str | None) -> bool:
    """Whether TOKEN is the read token of the subject with PSEUDONYM."""
    if not isinstance(token, str) or not READ_TOKEN_RE.fullmatch(token):
        return False
    return hmac.compare_digest(read_token(pseudonym), token)


def token_reads_pseudonym(site_id: int, pseudonym: str, token: str | None) -> bool:
    """Whether TOKEN is the read token of the live subject of SITE_ID whose events carry
    PSEUDONYM (False for an erased subject, as for any other token)."""
    if not read_token_matches(pseudonym, token):
        return False
    return db.session.execute(db.select(Subject.id).where(
        Subject.site_id == site_id, Subject.pseudonym == pseudonym,
        Subject.erased_at.is_(None))).first() is not None


# ---------------------------------------------------------------- finding and creating


def find_subject(site_id: int, public_id: str) -> Subject | None:
    """The live subject with this public id on this site, or None."""
    if not isinstance(public_id, str) or not PUBLIC_ID_RE.fullmatch(public_id):
        return None
    return db.session.execute(
        db.select(Subject).where(Subject.public_id == public_id, Subject.site_id == site_id)
    ).scalar_one_or_none()


def find_subject_by_user(site_id: int, site_key: str, user_id: str) -> Subject | None:
    """The most recent live subject linked to the site's user id, or None."""
    return account_by_ref(site_id, keyed_ref(site_key, "user", user_id))


def create_subject(site_id: int, public_id: str | None = None, *,
                   key: str | None = None) -> Subject:
    """Create a subject (inside a write transaction).

    With KEY, that device key proves it; otherwise no device can write as it (accounts,
    addresses, the preference page's own visitors).
    """
    hashed = device_key_hash(key) if key else _nobodys_key_hash()
    subject = Subject(site_id=site_id, public_id=public_id or new_public_id(),
                      pseudonym=secrets.token_hex(16), secret=secrets.token_hex(32),
                      key_hash=hashed)
    db.session.add(subject)
    db.session.flush()
    return subject


class DeviceNotProven(Forbidden):
    """The site's backend named a visitor id with a device key that is not its key."""

    def __init__(self):
        super().__init__("The device key (`key`) does not prove this visitor id (`subject`): "
                         "send both from the same consent cookie (its `s` and `k`). Nothing "
                         "was changed.")


class UnknownVisitor(NotFound):
    """The site's backend named a visitor id nobody has recorded with, without its key."""

    def __init__(self, public_id: str):
        super().__init__("subject", public_id[:64])
        self.args = ("No visitor with this id has recorded anything yet: send its device "
                     "key with it (`key`, the consent cookie's `k`), or name the person "
                     "by user_id.",)


def get_or_create_subject(site_id: int, public_id: str | None,
                          key: str | None = None) -> Subject:
    """The subject for an id the site's backend names, creating it when new (in a write).

    For authenticated callers only (API key). With KEY, the device key of the same consent
    cookie (`s` and `k`), the id must be proven by it, because the id alone proves nothing
    (it appears in links, logs and exports, and whoever talks to the site's frontend
    chooses which id it sends): an unknown id is created with that key, an unkeyed one is
    claimed with it, and a live subject whose key it is not raises DeviceNotProven.
    Without KEY an unknown id is UnknownVisitor: created without a key, it would belong to
    whoever first wrote with the id and a key of their own.
    """
    if public_id:
        subject = find_subject(site_id, public_id)
        if subject is not None:
            if key is not None and subject.erased_at is None:
                if subject.key_hash is None:
                    subject.key_hash = device_key_hash(key)
                    db.session.flush()
                elif not key_matches(subject.key_hash, key):
                    raise DeviceNotProven()
            return subject
        if PUBLIC_ID_RE.fullmatch(public_id):
            if key is None:
                raise UnknownVisitor(public_id)
            return create_subject(site_id, public_id, key=key)
    return create_subject(site_id)


def verified_subject(site_id: int, public_id: str | None, key: str | None) -> Subject | None:
    """The live subject PUBLIC_ID if KEY is its device key (claiming an unkeyed one, in a
    write transaction); None otherwise, whether or not the id exists."""
    subject = find_subject(site_id, public_id) if public_id else None
    if subject is None or subject.erased_at is not None \
            or not isinstance(key, str) or not DEVICE_KEY_RE.fullmatch(key):
        return None
    if subject.key_hash is None:
        subject.key_hash = device_key_hash(key)
        db.session.flush()
        return subject
    return subject if key_matches(subject.key_hash, key) else None


# ---------------------------------------------------------------- the hot write path


class SubjectRef(NamedTuple):
    """The few columns of a subject the write path needs, read without the ORM."""

    id: int
    public_id: str
    pseudonym: str
    secret: str | None


_SELECT_REF = ("SELECT id, public_id, pseudonym, secret, key_hash FROM subjects "
               "WHERE site_id = :site_id AND public_id = :public_id")
_INSERT_REF = ("INSERT INTO subjects (site_id, public_id, pseudonym, secret, key_hash, "
               "is_minor, created_at) VALUES (:site_id, :public_id, :pseudonym, :secret, "
               ":key_hash, :is_minor, :created_at) RETURNING id")
# A row comes back only when the subject was created.
_INSERT_REF_ONCE = _INSERT_REF.replace(
    " RETURNING id", " ON CONFLICT (site_id, public_id) DO NOTHING RETURNING id")
_CLAIM = ("UPDATE subjects SET key_hash = :key_hash WHERE id = :id AND key_hash IS NULL "
          "RETURNING id")


class KeyedSubject(NamedTuple):
    """The subject of a keyed write: whether it was created, and a key the server minted."""

    ref: SubjectRef
    created: bool
    minted_key: str | None
    # (stream, seq, hash) of the ledger head locked with the subject's creation
    # (PostgreSQL, LOCK_STREAM given), for consent.ledger.chain.append_event.
    head: tuple[int, int, str] | None = None


def _with_head(insert: str) -> str:
    """PostgreSQL: INSERT (... RETURNING id) that also locks the ledger head of
    :site_id/:stream, only if the row was inserted (a returning visitor, whose stream may
    be another, locks nothing here): one round trip instead of two for a new visitor.
    The head's columns are NULL when the stream has no head yet."""
    return ("WITH s AS (" + insert + ") SELECT s.id, h.seq, h.hash FROM s LEFT JOIN "
            "LATERAL (SELECT seq, hash FROM ledger_heads WHERE site_id = :site_id AND "
            "stream = :stream FOR UPDATE) h ON TRUE")


_INSERT_REF_HEAD = _with_head(_INSERT_REF)
_INSERT_REF_ONCE_HEAD = _with_head(_INSERT_REF_ONCE)


class PreparedSubject(NamedTuple):
    """The subject row a keyed write would create, prepared before its transaction."""

    params: dict
    minted_key: str | None


def prepare_subject(site_id: int, public_id: str | None,
                    key: str | None) -> PreparedSubject | None:
    """The new subject row for (PUBLIC_ID, KEY): random pseudonym and secret, the key's
    hash; no database access, so the write can do it before taking the write lock.
    None when the write will be refused (an id without its key)."""
    if public_id:
        return PreparedSubject(_new_subject(site_id, public_id, key), None) if key else None
    minted = None
    if not key:
        key = minted = new_device_key()
    return PreparedSubject(_new_subject(site_id, new_public_id(), key), minted)


def _created(once: bool, params: dict, lock_stream: int | None):
    """(id, head) of the subject row inserted from PARAMS (ONCE: unless its id exists,
    then None); HEAD is (stream, seq, hash) when LOCK_STREAM's head was locked with it
    (PostgreSQL)."""
    if lock_stream is None or rawsql.dialect() != "postgresql":
        row = rawsql.one(_INSERT_REF_ONCE if once else _INSERT_REF, params)
        return None if row is None else (row[0], None)
    row = rawsql.one(_INSERT_REF_ONCE_HEAD if once else _INSERT_REF_HEAD,
                     {**params, "stream": lock_stream})
    if row is None:
        return None
    return row[0], None if row[1] is None else (lock_stream, int(row[1]), row[2])


def subject_for_write(site_id: int, public_id: str | None, key: str | None,
                      prepared: PreparedSubject | None = None,
                      lock_stream: int | None = None) -> KeyedSubject:
    """The subject a decision is recorded for, proven by its device key (inside a raw
    write transaction; hot path, consent.rawsql only).

    No id: a new subject, with KEY or a key minted here (returned once). An id needs its
    key: unknown ids are created with it, unkeyed subjects are claimed with it, and any
    other case raises VisitorKeyRefused, the same whether the id exists or not.
    PREPARED: prepare_subject's row for the same arguments, made before the transaction.
    LOCK_STREAM: the ledger stream of PREPARED's pseudonym; on PostgreSQL a new subject's
    insert also locks that stream's head (KeyedSubject.head), as append_event would next.
    """
    if prepared is None:
        prepared = prepare_subject(site_id, public_id, key)
    if public_id:
        if not key or prepared is None:
            raise VisitorKeyRefused()
        # A visitor's first decision is the common case: create first (one statement for
        # a new visitor instead of a look-up and an insert); the unique (site, id) index
        # says whether it exists, without a race between the two.
        params = prepared.params
        created = _created(True, params, lock_stream)
        if created is not None:
            return KeyedSubject(SubjectRef(created[0], public_id, params["pseudonym"],
                                           params["secret"]), True, None, created[1])
        row = rawsql.one(_SELECT_REF, {"site_id": site_id, "public_id": public_id})
        ref, stored = SubjectRef(*row[:4]), row[4]
        if stored is None and rawsql.one(_CLAIM, {"id": ref.id,
                                                  "key_hash": device_key_hash(key)}):
            return KeyedSubject(ref, False, None)
        if stored is None:  # another writer claimed it a moment ago
            stored = rawsql.one("SELECT key_hash FROM subjects WHERE id = :id",
                                {"id": ref.id})[0]
        if not key_matches(stored, key):
            raise VisitorKeyRefused()
        return KeyedSubject(ref, False, None)
    params = prepared.params
    new_id, head = _created(False, params, lock_stream)
    return KeyedSubject(SubjectRef(new_id, params["public_id"], params["pseudonym"],
                                   params["secret"]), True, prepared.minted_key, head)


def _new_subject(site_id: int, public_id: str, key: str) -> dict:
    return {"site_id": site_id, "public_id": public_id, "pseudonym": secrets.token_hex(16),
            "secret": secrets.token_hex(32), "key_hash": device_key_hash(key),
            "is_minor": False, "created_at": rawsql.to_db_time(utcnow())}


# ---------------------------------------------------------------- a site's known users


def check_user_id(user_id: str) -> str:
    """USER_ID if it can name a site's user; Invalid otherwise."""
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > USER_ID_MAX:
        raise Invalid(f"user_id must be 1-{USER_ID_MAX} characters", field="user_id")
    return user_id


def user_ref(site_key: str, user_id: str) -> str:
    """The keyed HMAC a site's user id is stored (and carried in login links) as."""
    return keyed_ref(site_key, "user", check_user_id(user_id))


def account_by_ref(site_id: int, ref: str) -> Subject | None:
    """The live account subject of the user whose keyed ref is REF, or None."""
    return db.session.execute(
        db.select(Subject).where(Subject.site_id == site_id, Subject.user_ref == ref,
                                 Subject.erased_at.is_(None))
        .order_by(Subject.id.desc()).limit(1)
    ).scalar_one_or_none()


def account_subject(site, user_id: str, *, create: bool = True) -> Subject | None:
    """The account subject of SITE's user USER_ID (created inside a write if asked)."""
    ref = user_ref(site.key, user_id)
    subject = account_by_ref(site.id, ref)
    if subject is None and create:
        subject = create_subject(site.id)
        subject.user_ref = ref
        db.session.flush()
    return subject
