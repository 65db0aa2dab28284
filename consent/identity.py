"""Who a person is: anonymous visitors, a site's known users, and login links.

A known user of a site has one *account subject* (the Subject carrying the keyed HMAC of
the site's user id). The browsers (devices) the user signs in from keep their own
anonymous subjects; linking one to the account is a `link` event on the device's subject
that carries the account's recorded choices, so the user's choices follow them to a new
device. The account's public id is returned to the site's backend, which can put it in
its first-party consent cookie for signed-in visitors so every device then reads and
writes the same subject.

Login links are minted by the site's backend over the API: signed (itsdangerous), with a
salt naming their purpose and the site, expiring, and single-use.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from .channels import ExpiredLink, InvalidLink
from .database import UTCDateTime, iso, run_write, utcnow
from .decisions import RequestContext
from .errors import Invalid
from .extensions import db
from .ledger import AppendedEvent, append_event, on_append, read_state
from .sites import SiteSnapshot, site_snapshot
from .subjects import PUBLIC_ID_RE, Subject, create_subject, get_or_create_subject, keyed_ref

DEFAULT_LOGIN_TTL = 15 * 60
MAX_LOGIN_TTL = 24 * 3600
DEFAULT_SESSION_MINUTES = 60
USER_ID_MAX = 200


class SubjectLink(db.Model):
    """A device's subject linked to a known user's account subject."""

    __tablename__ = "subject_links"
    __table_args__ = (sa.UniqueConstraint("subject_id", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), index=True)
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("subjects.id"))
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("subjects.id"), index=True)
    event_id: Mapped[str | None] = mapped_column(sa.String(32))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginLinkUse(db.Model):
    """A login link already used (links are single-use); pruned after they expire."""

    __tablename__ = "login_link_uses"

    jti: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def _check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > USER_ID_MAX:
        raise Invalid(f"user_id must be 1-{USER_ID_MAX} characters", field="user_id")
    return user_id


def user_ref(site_key: str, user_id: str) -> str:
    """The keyed HMAC a site's user id is stored (and carried in login links) as."""
    return keyed_ref(site_key, "user", _check_user_id(user_id))


def _account_by_ref(site_id: int, ref: str) -> Subject | None:
    return db.session.execute(
        db.select(Subject).where(Subject.site_id == site_id, Subject.user_ref == ref,
                                 Subject.erased_at.is_(None))
        .order_by(Subject.id.desc()).limit(1)
    ).scalar_one_or_none()


def account_subject(site: SiteSnapshot, user_id: str, *, create: bool = True) -> Subject | None:
    """The account subject of the site's user USER_ID (created inside a write if asked)."""
    ref = user_ref(site.key, user_id)
    subject = _account_by_ref(site.id, ref)
    if subject is None and create:
        subject = create_subject(site.id)
        subject.user_ref = ref
        db.session.flush()
    return subject


@dataclass
class LinkResult:
    """The outcome of linking a visitor to a known user."""

    account: Subject
    device: Subject | None
    event: AppendedEvent | None


def _copy_of_account(site: SiteSnapshot, account: Subject, device: Subject):
    """The account's choices that differ on the device: (categories, channels, policy)."""
    acc = read_state(site.id, account.pseudonym) or {}
    dev = read_state(site.id, device.pseudonym) or {}
    cats = {k: v for k, v in (acc.get("categories") or {}).items()
            if k in site.category_keys and (dev.get("categories") or {}).get(k) is not v}
    chans = {k: v for k, v in (acc.get("channels") or {}).items()
             if (dev.get("channels") or {}).get(k) is not v}
    return cats or None, chans or None, acc.get("policy_version") if cats else None


def link_device(site: SiteSnapshot, ref: str, device_public_id: str | None, *,
                source: str, ctx: RequestContext | None = None) -> LinkResult:
    """Link the visitor DEVICE_PUBLIC_ID to the user whose keyed ref is REF (in a write).

    First sign-in anywhere: the visitor's subject becomes the user's account (a `link`
    event, its choices unchanged); without a visitor a fresh account is created. Later
    devices get a `link` event carrying the account's choices that differ, so they follow
    the user there. A device that is another user's account is left alone (shared
    computer): no event.
    """
    account = _account_by_ref(site.id, ref)
    device = None
    if device_public_id and PUBLIC_ID_RE.match(device_public_id):
        device = get_or_create_subject(site.id, device_public_id)
        if device.erased_at is not None:
            device = None
    if account is None:
        if device is not None and device.user_ref is None:
            device.user_ref = ref
            db.session.flush()
            event = append_event(site, device, action="link", source=source,
                                 details=ctx.details(None) if ctx else None,
                                 meta={"link": "account"})
            return LinkResult(device, device, event)
        account = create_subject(site.id)
        account.user_ref = ref
        db.session.flush()
        return LinkResult(account, device, None)
    if device is None or device.id == account.id:
        return LinkResult(account, device, None)
    return LinkResult(account, device, _link_to_account(site, account, device, source, ctx))


def link_user(site_key: str, user_id: str, device_public_id: str | None,
              ctx: RequestContext | None = None) -> LinkResult:
    """The site's backend says visitor DEVICE is its user USER_ID (source `api`)."""
    site = site_snapshot(site_key)
    ref = user_ref(site.key, user_id)
    return run_write(lambda: link_device(site, ref, device_public_id, source="api", ctx=ctx))


# ---------------------------------------------------------------- login links


def _login_serializer(site_key: str) -> URLSafeTimedSerializer:
    # Purpose and site are in the salt: an unsubscribe token, or another site's login
    # link, never verifies here.
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"],
                                  salt=f"consent.login.v1:{site_key}")


@dataclass
class LoginToken:
    """A freshly minted login link token."""

    token: str
    expires_at: str
    account: str | None


def mint_login_token(site_key: str, user_id: str, *, device_public_id: str | None = None,
                     ttl_seconds: int | None = None) -> LoginToken:
    """Sign a single-use link to the preference center for the site's user USER_ID.

    The token carries the keyed ref of the user id (never the id itself). With the
    visitor's id the link is made now (source `api`); otherwise when the link is used,
    from the consent cookie of the browser that opens it.
    """
    site = site_snapshot(site_key)
    ref = user_ref(site.key, user_id)
    ttl = ttl_seconds or DEFAULT_LOGIN_TTL
    if not 30 <= ttl <= MAX_LOGIN_TTL:
        raise Invalid(f"ttl_seconds must be between 30 and {MAX_LOGIN_TTL}",
                      field="ttl_seconds")
    if device_public_id is not None and not PUBLIC_ID_RE.match(device_public_id):
        raise Invalid("not a visitor id", field="subject")
    account_id = None
    if device_public_id is not None:
        account_id = run_write(lambda: link_device(site, ref, device_public_id, source="api")
                               ).account.public_id
    else:
        existing = _account_by_ref(site.id, ref)
        account_id = existing.public_id if existing is not None else None
    payload = {"u": ref, "d": device_public_id, "j": secrets.token_hex(12), "x": ttl}
    token = _login_serializer(site.key).dumps(payload)
    expires = datetime.fromtimestamp(time.time() + ttl, timezone.utc)
    return LoginToken(token, iso(expires), account_id)


def session_minutes(site: SiteSnapshot) -> int:
    """How long a login through a link lasts: Site.settings["login_session_minutes"]."""
    value = site.settings.get("login_session_minutes")
    return value if isinstance(value, int) and 0 < value <= 24 * 60 else DEFAULT_SESSION_MINUTES


@dataclass
class LoginResult:
    """A used login link: whose preferences the browser may now manage, until when."""

    site: SiteSnapshot
    account: str
    session_expires: float
    event: AppendedEvent | None


def _claim(site_id: int, jti: str) -> bool:
    table = LoginLinkUse.__table__
    now = utcnow()
    db.session.execute(sa.delete(table).where(
        table.c.used_at < now - timedelta(seconds=2 * MAX_LOGIN_TTL)))
    dialect = db.session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
    claimed = db.session.execute(ins.values(jti=jti, site_id=site_id, used_at=now)
                                 .on_conflict_do_nothing().returning(table.c.jti)).first()
    return claimed is not None


def use_login_token(site_key: str, token: str, cookie_public_id: str | None,
                    ctx: RequestContext | None = None) -> LoginResult:
    """Verify and spend a login link; link this browser's visitor id to the user."""
    site = site_snapshot(site_key)
    serializer = _login_serializer(site.key)
    try:
        payload, signed_at = serializer.loads(token, max_age=MAX_LOGIN_TTL,
                                              return_timestamp=True)
    except SignatureExpired:
        raise ExpiredLink("This sign-in link has expired. Go back to the site and open "
                          "your privacy preferences again.")
    except BadSignature:
        raise InvalidLink("This sign-in link is not valid for this site.")
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), str) \
            or not isinstance(payload.get("j"), str) or not isinstance(payload.get("x"), int):
        raise InvalidLink("This sign-in link is not valid for this site.")
    if time.time() - signed_at.timestamp() > payload["x"]:
        raise ExpiredLink("This sign-in link has expired. Go back to the site and open "
                          "your privacy preferences again.")
    device = payload.get("d") or cookie_public_id

    def write():
        if not _claim(site.id, payload["j"]):
            raise ExpiredLink("This sign-in link was already used. Go back to the site and "
                              "open your privacy preferences again.")
        result = link_device(site, payload["u"], device, source="preferences", ctx=ctx)
        return result.account.public_id, result.event

    account_id, event = run_write(write)
    return LoginResult(site, account_id, time.time() + 60 * session_minutes(site), event)


def _link_to_account(site: SiteSnapshot, account: Subject, device: Subject, source: str,
                     ctx: RequestContext | None) -> AppendedEvent | None:
    """A `link` event on DEVICE carrying ACCOUNT's differing choices (None if nothing new)."""
    if device.user_ref is not None or device.erased_at is not None:
        return None  # another user's account (shared computer) or an erased subject
    existing = db.session.execute(
        db.select(SubjectLink).where(SubjectLink.subject_id == device.id,
                                     SubjectLink.account_id == account.id)
    ).scalar_one_or_none()
    cats, chans, policy = _copy_of_account(site, account, device)
    if existing is not None and cats is None and chans is None:
        return None
    event = append_event(site, device, action="link", source=source, categories=cats,
                         channels=chans, policy_version=policy,
                         details=ctx.details(None) if ctx else None,
                         meta={"link": "device", "account": account.pseudonym})
    if existing is None:
        db.session.add(SubjectLink(site_id=site.id, subject_id=device.id,
                                   account_id=account.id, event_id=event.event_id,
                                   linked_at=event.recorded_at))
        db.session.flush()
    return event


@on_append
def _forget_links(event: AppendedEvent) -> None:
    # Erasure removes the links that would tie a device back to the person's account.
    if event.action == "erase" and event.subject_id is not None and not event.duplicate:
        table = SubjectLink.__table__
        db.session.execute(sa.delete(table).where(sa.or_(
            table.c.subject_id == event.subject_id, table.c.account_id == event.subject_id)))


_COOKIE_ID_KEYS = ("s", "subject", "id", "sid", "visitor")


def visitor_id_from_cookie(value: str | None) -> str | None:
    """The visitor id inside the widget's cookie value, whatever its accepted form.

    Accepted: the widget's form-urlencoded cookie (`v=1&s=<id>&...`, docs/widget.md);
    JSON (optionally URL-encoded) with the id under "s", "subject", "id", "sid" or
    "visitor"; or the bare id.
    """
    import json
    from urllib.parse import parse_qsl, unquote

    if not value or len(value) > 4096:
        return None
    value = value.strip().strip('"')
    if PUBLIC_ID_RE.match(value):
        return value
    fields: dict = {}
    if "=" in value and not value.lstrip().startswith(("{", "%7B", "%7b")):
        fields = dict(parse_qsl(value, keep_blank_values=True))
    else:
        try:
            data = json.loads(unquote(value))
        except ValueError:
            data = None
        fields = data if isinstance(data, dict) else {}
    for key in _COOKIE_ID_KEYS:
        found = fields.get(key)
        if isinstance(found, str) and PUBLIC_ID_RE.match(found):
            return found
    return None
