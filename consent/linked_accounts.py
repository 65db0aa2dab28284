"""Third-party accounts a person links (Zoom, social sign-in), and their deauthorisation.

Linking is consent given by authorising: the site's backend reports it with the access
token the third party issued, which is kept here encrypted (AES-GCM under a key derived
from CONSENT_DATA_KEY) and handed back to the backend when it needs to call the
third party. Deauthorising -- by the person on the third party's side (relayed by the
site's backend) or on the site -- deletes the token at once and appends a `withdraw`
event whose meta names the integration and says the token was deleted. Authorising
appends a `grant` event the same way. The events carry no categories: the link itself is
the state, kept in `linked_accounts`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.orm import Mapped, mapped_column

from . import rawsql
from .database import UTCDateTime, run_write, utcnow
from .errors import DomainError, Invalid
from .extensions import db
from .ledger import AppendedEvent, append_event, on_append
from .sites import NotFound, SiteSnapshot, site_snapshot

INTEGRATION_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
VIA = ("third_party", "person", "site")
TOKEN_MAX = 8192


class TokenDeleted(DomainError):
    """The link was deauthorised: its token no longer exists."""

    status = 410
    title = "Token deleted"


class LinkedAccount(db.Model):
    """A third-party account linked by a person, with its (encrypted) access token."""

    __tablename__ = "linked_accounts"
    __table_args__ = (sa.Index("ix_linked_accounts_site_subject", "site_id", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("subjects.id"))
    integration: Mapped[str] = mapped_column(sa.String(40))
    # Nonce + AES-GCM ciphertext, base64; NULL once the token is deleted.
    token_sealed: Mapped[str | None] = mapped_column(sa.Text)
    authorized_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deauthorized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    token_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grant_event_id: Mapped[str | None] = mapped_column(sa.String(32))
    withdraw_event_id: Mapped[str | None] = mapped_column(sa.String(32))

    @property
    def active(self) -> bool:
        """Linked and not deauthorised."""
        return self.deauthorized_at is None


def _key() -> bytes:
    # The key of tokens sealed before CONSENT_DATA_KEY existed (read-only; resealed by the
    # security_0001 migration).
    from .subjects import hmac_key

    return hmac.new(hmac_key(), b"consent-linked-account-token-v1", hashlib.sha256).digest()


def _data_key(key_text: str | None = None) -> bytes:
    # Under CONSENT_DATA_KEY (consent.secretbox), the key of every secret kept to be read.
    from flask import current_app

    from .secretbox import configured_key

    material = key_text if key_text is not None else configured_key(current_app.config)
    return hmac.new(material.encode(), b"consent-linked-account-token-v2", hashlib.sha256
                    ).digest()


SEALED_V2 = "v2."  # (not in the base64url alphabet: tells the two formats apart)


def seal_token(token: str, aad: str, *, key_text: str | None = None) -> str:
    """Encrypt a token; AAD binds it to its site, subject and integration."""
    nonce = os.urandom(12)
    sealed = AESGCM(_data_key(key_text)).encrypt(nonce, token.encode("utf-8"),
                                                 aad.encode("utf-8"))
    return SEALED_V2 + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def open_token(sealed: str, aad: str, *, key_text: str | None = None,
               legacy_key: bytes | None = None) -> str:
    """Decrypt a sealed token (raises Invalid when it was tampered with). Tokens sealed
    before CONSENT_DATA_KEY (under the HMAC key) still open until the migration reseals
    them."""
    if sealed.startswith(SEALED_V2):
        key, sealed = _data_key(key_text), sealed[len(SEALED_V2):]
    else:
        key = legacy_key if legacy_key is not None else _key()
    raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], aad.encode("utf-8")).decode("utf-8")
    except InvalidTag:
        raise Invalid("the stored token does not decrypt (tampered or another key)",
                      field="token")


def _aad(site_id: int, subject_id: int, integration: str) -> str:
    return f"{site_id}:{subject_id}:{integration}"


def check_integration(site: SiteSnapshot, integration: str) -> str:
    """INTEGRATION if the site allows it (Site.settings["linked_accounts"], when set)."""
    if not isinstance(integration, str) or not INTEGRATION_RE.fullmatch(integration):
        raise Invalid("integration is a short lower-case name such as 'zoom'",
                      field="integration")
    allowed = site.settings.get("linked_accounts")
    if allowed and integration not in allowed:
        raise Invalid(f"site {site.key!r} links only {', '.join(sorted(allowed))}",
                      field="integration")
    return integration


def _subject(site: SiteSnapshot, subject: str | None, user_id: str | None, *, create: bool):
    from .channels import Recipient, ensure_recipient, find_recipient

    recipient = Recipient(subject=subject, user_id=user_id)
    if create:
        return ensure_recipient(site, None, recipient)
    found = find_recipient(site, None, recipient)
    if found is None or found.erased_at is not None:
        raise NotFound("subject", (subject or user_id or "")[:64])
    return found


def _active(site_id: int, subject_id: int, integration: str) -> LinkedAccount | None:
    return db.session.execute(
        db.select(LinkedAccount).where(LinkedAccount.site_id == site_id,
                                       LinkedAccount.subject_id == subject_id,
                                       LinkedAccount.integration == integration,
                                       LinkedAccount.deauthorized_at.is_(None))
        .order_by(LinkedAccount.id.desc()).limit(1)).scalar_one_or_none()


@dataclass
class LinkResult:
    """A link and the event that recorded its change (None when nothing changed)."""

    account: LinkedAccount
    subject_public_id: str | None
    event: AppendedEvent | None


def authorize(site_key: str, integration: str, token: str, *, subject: str | None = None,
              user_id: str | None = None) -> LinkResult:
    """Record that a person linked a third-party account, keeping its token encrypted."""
    site = site_snapshot(site_key)
    check_integration(site, integration)
    if not isinstance(token, str) or not 1 <= len(token) <= TOKEN_MAX:
        raise Invalid(f"token must be 1-{TOKEN_MAX} characters", field="token")

    def write() -> LinkResult:
        person = _subject(site, subject, user_id, create=True)
        row = _active(site.id, person.id, integration)
        replaced = row is not None
        if row is None:
            row = LinkedAccount(site_id=site.id, subject_id=person.id, integration=integration)
            db.session.add(row)
        row.token_sealed = seal_token(token, _aad(site.id, person.id, integration))
        row.authorized_at = utcnow()
        meta = {"linked_account": integration, "authorized": True}
        if replaced:
            meta["token_replaced"] = True
        event = append_event(site, person, action="grant", source="api",
                             policy_version=site.policy_label, meta=meta)
        row.grant_event_id = event.event_id
        db.session.flush()
        return LinkResult(row, person.public_id, event)

    return run_write(write)


def deauthorize(site_key: str, integration: str, *, subject: str | None = None,
                user_id: str | None = None, via: str = "third_party") -> LinkResult:
    """Delete the token of a linked account and record the withdrawal (idempotent)."""
    site = site_snapshot(site_key)
    check_integration(site, integration)
    if via not in VIA:
        raise Invalid(f"via is one of {', '.join(VIA)}", field="via")

    def write() -> LinkResult:
        person = _subject(site, subject, user_id, create=False)
        row = _active(site.id, person.id, integration)
        if row is None:
            last = db.session.execute(
                db.select(LinkedAccount).where(LinkedAccount.site_id == site.id,
                                               LinkedAccount.subject_id == person.id,
                                               LinkedAccount.integration == integration)
                .order_by(LinkedAccount.id.desc()).limit(1)).scalar_one_or_none()
            if last is None:
                raise NotFound("linked account", integration)
            return LinkResult(last, person.public_id, None)  # already deauthorised
        now = utcnow()
        row.token_sealed = None
        row.deauthorized_at = row.token_deleted_at = now
        event = append_event(site, person, action="withdraw", source="api",
                             policy_version=site.policy_label,
                             meta={"linked_account": integration, "deauthorized": True,
                                   "token_deleted": True, "via": via})
        row.withdraw_event_id = event.event_id
        db.session.flush()
        return LinkResult(row, person.public_id, event)

    return run_write(write)


def read_token(site_key: str, integration: str, *, subject: str | None = None,
               user_id: str | None = None) -> str:
    """The token of an active link, for the site's backend to call the third party."""
    site = site_snapshot(site_key)
    check_integration(site, integration)
    person = _subject(site, subject, user_id, create=False)
    row = _active(site.id, person.id, integration)
    if row is None:
        if db.session.execute(db.select(LinkedAccount.id).where(
                LinkedAccount.site_id == site.id, LinkedAccount.subject_id == person.id,
                LinkedAccount.integration == integration)).first():
            raise TokenDeleted(f"the {integration} link was deauthorised and its token "
                               "deleted", field="integration")
        raise NotFound("linked account", integration)
    return open_token(row.token_sealed, _aad(site.id, person.id, integration))


def list_links(site_key: str, *, subject: str | None = None,
               user_id: str | None = None) -> tuple[str | None, list[LinkedAccount]]:
    """A person's linked accounts, current and past (never their tokens)."""
    site = site_snapshot(site_key)
    person = _subject(site, subject, user_id, create=False)
    rows = db.session.execute(db.select(LinkedAccount).where(
        LinkedAccount.site_id == site.id, LinkedAccount.subject_id == person.id)
        .order_by(LinkedAccount.id)).scalars().all()
    return person.public_id, list(rows)


@on_append
def _forget_links(event: AppendedEvent) -> None:
    # Erasure deletes the person's links and tokens with everything else about them.
    if event.action == "erase" and event.subject_id is not None and not event.duplicate:
        rawsql.run("DELETE FROM linked_accounts WHERE subject_id = :id",
                   {"id": event.subject_id})
