"""Subjects: the people (browsers, users) whose consent is recorded, pseudonymously."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, utcnow
from .extensions import db

PUBLIC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


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
    is_minor: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def hmac_key() -> bytes:
    """The server key for keyed pseudonyms (derived from SECRET_KEY unless set)."""
    configured = current_app.config.get("CONSENT_HMAC_KEY")
    if configured:
        return configured.encode()
    return hmac.new(current_app.config["SECRET_KEY"].encode(), b"consent-hmac-v1",
                    hashlib.sha256).digest()


def keyed_ref(site_key: str, kind: str, value: str) -> str:
    """A keyed HMAC of an identifier (user id, e-mail, phone) scoped to a site."""
    msg = f"{site_key}\x00{kind}\x00{value}".encode("utf-8")
    return hmac.new(hmac_key(), msg, hashlib.sha256).hexdigest()


def new_public_id() -> str:
    """A fresh opaque subject id for a visitor cookie."""
    return secrets.token_urlsafe(16)


def find_subject(site_id: int, public_id: str) -> Subject | None:
    """The live subject with this public id on this site, or None."""
    if not isinstance(public_id, str) or not PUBLIC_ID_RE.match(public_id):
        return None
    return db.session.execute(
        db.select(Subject).where(Subject.public_id == public_id, Subject.site_id == site_id)
    ).scalar_one_or_none()


def find_subject_by_user(site_id: int, site_key: str, user_id: str) -> Subject | None:
    """The most recent live subject linked to the site's user id, or None."""
    ref = keyed_ref(site_key, "user", user_id)
    return db.session.execute(
        db.select(Subject).where(Subject.site_id == site_id, Subject.user_ref == ref,
                                 Subject.erased_at.is_(None))
        .order_by(Subject.id.desc()).limit(1)
    ).scalar_one_or_none()


def create_subject(site_id: int, public_id: str | None = None) -> Subject:
    """Create a subject (inside a write transaction)."""
    subject = Subject(site_id=site_id, public_id=public_id or new_public_id(),
                      pseudonym=secrets.token_hex(16), secret=secrets.token_hex(32))
    db.session.add(subject)
    db.session.flush()
    return subject


def get_or_create_subject(site_id: int, public_id: str | None) -> Subject:
    """The subject for a visitor's id, creating it when new (inside a write transaction).

    An id that is well-formed but unknown (e.g. minted by the widget offline) is adopted.
    """
    if public_id:
        subject = find_subject(site_id, public_id)
        if subject is not None:
            return subject
        if PUBLIC_ID_RE.match(public_id):
            return create_subject(site_id, public_id)
    return create_subject(site_id)


class SubjectRef(NamedTuple):
    """The few columns of a subject the write path needs, read without the ORM."""

    id: int
    public_id: str
    pseudonym: str
    secret: str | None


_SELECT_REF = ("SELECT id, public_id, pseudonym, secret FROM subjects "
               "WHERE site_id = :site_id AND public_id = :public_id")
_INSERT_REF = ("INSERT INTO subjects (site_id, public_id, pseudonym, secret, is_minor, "
               "created_at) VALUES (:site_id, :public_id, :pseudonym, :secret, :is_minor, "
               ":created_at) RETURNING id")


def subject_for_write(site_id: int, public_id: str | None) -> tuple[SubjectRef, bool]:
    """(subject, created) for a visitor id, inside a write transaction; hot-path version
    of get_or_create_subject. A well-formed unknown id (minted offline) is adopted."""
    from . import rawsql

    if public_id and PUBLIC_ID_RE.match(public_id):
        row = rawsql.one(_SELECT_REF, {"site_id": site_id, "public_id": public_id})
        if row is not None:
            return SubjectRef(*row), False
    else:
        public_id = new_public_id()
    params = {"site_id": site_id, "public_id": public_id, "pseudonym": secrets.token_hex(16),
              "secret": secrets.token_hex(32), "is_minor": False,
              "created_at": rawsql.to_db_time(utcnow())}
    new_id = rawsql.one(_INSERT_REF, params)[0]
    return SubjectRef(new_id, public_id, params["pseudonym"], params["secret"]), True
