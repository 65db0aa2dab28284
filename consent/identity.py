"""Changes of who a person is: linking devices to a site's known users, login links, and
the preference center's visitors. (What proves a person is in consent.subjects.)

A known user of a site has one *account subject* (the Subject carrying the keyed HMAC of
the site's user id). The browsers (devices) the user uses keep their own subjects and
their own choices. A device is linked to the account (a `link` event on the device, and
a SubjectLink row, so access and erasure requests reach it) only when:

- the site's backend says so with its API key (`POST .../identity-links`, or a login
  link minted with the visitor's id), or
- the person confirms it in that browser: signed in through a login link, the
  preference page asks "also apply to this browser?" and a CSRF-protected POST links the
  device the browser proved with its key.

Linking never copies choices onto the device: a link event carries no categories or
channels. Opening a login link signs the browser into the account's preferences and
nothing else, so a link someone else minted cannot touch the device that opens it.

Login links are minted by the site's backend over the API: signed (itsdangerous), with a
salt naming their purpose and the site, expiring, and single-use.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from .context import RequestContext
from .database import UTCDateTime, iso, run_write, utcnow
from .errors import ExpiredLink, Invalid, InvalidLink
from .extensions import db
from .ledger import AppendedEvent, append_event, on_append
from .sites import SiteSnapshot, normalise_origin, site_snapshot
from .subjects import (PUBLIC_ID_RE, Subject, account_by_ref, create_subject, find_subject,
                       get_or_create_subject, key_matches, user_ref, verified_subject)

DEFAULT_LOGIN_TTL = 15 * 60
MAX_LOGIN_TTL = 24 * 3600
DEFAULT_SESSION_MINUTES = 60
RETURN_URL_MAX = 2048


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
    # The sign-in it started ended ("Sign out"): every copy of that session cookie too.
    signed_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass
class LinkResult:
    """The outcome of linking a visitor to a known user."""

    account: Subject
    device: Subject | None
    event: AppendedEvent | None


def link_device(site: SiteSnapshot, ref: str, device_public_id: str | None, *,
                source: str, ctx: RequestContext | None = None,
                device_key: str | None = None) -> LinkResult:
    """The site's backend says visitor DEVICE_PUBLIC_ID is the user whose keyed ref is
    REF (inside a write).

    First sign-in anywhere: the visitor's subject becomes the user's account (a `link`
    event, its choices unchanged); without a visitor a fresh account is created. Later
    devices get a `link` event that names the account and carries no choice. A device
    that is another user's account is left alone (shared computer): no event. A visitor
    no browser has proven with its key yet (one stored before keys existed, claimable by
    the first keyed write) never becomes the account: a fresh account is created and the
    visitor linked to it.
    """
    account = account_by_ref(site.id, ref)
    device = None
    if device_public_id and PUBLIC_ID_RE.fullmatch(device_public_id):
        # (the API always sends the device key; callers inside this server may not)
        device = get_or_create_subject(site.id, device_public_id, key=device_key)
        if device.erased_at is not None:
            device = None
    if account is None:
        if device is not None and device.user_ref is None and device.key_hash is not None:
            device.user_ref = ref
            db.session.flush()
            event = append_event(site, device, action="link", source=source,
                                 details=ctx.details(None) if ctx else None,
                                 meta={"link": "account"})
            return LinkResult(device, device, event)
        account = create_subject(site.id)
        account.user_ref = ref
        db.session.flush()
        if device is None:
            return LinkResult(account, device, None)
    if device is None or device.id == account.id:
        return LinkResult(account, device, None)
    return LinkResult(account, device, _link_to_account(site, account, device, source, ctx))


def link_user(site_key: str, user_id: str, device_public_id: str | None,
              ctx: RequestContext | None = None, *,
              device_key: str | None = None) -> LinkResult:
    """The site's backend says visitor DEVICE is its user USER_ID (source `api`); with
    DEVICE_KEY (the API always sends it) the device must be proven by it."""
    site = site_snapshot(site_key)
    ref = user_ref(site.key, user_id)
    return run_write(lambda: link_device(site, ref, device_public_id, source="api", ctx=ctx,
                                         device_key=device_key))


def _link_row(device_id: int, account_id: int) -> SubjectLink | None:
    return db.session.execute(
        db.select(SubjectLink).where(SubjectLink.subject_id == device_id,
                                     SubjectLink.account_id == account_id)
    ).scalar_one_or_none()


def _link_to_account(site: SiteSnapshot, account: Subject, device: Subject, source: str,
                     ctx: RequestContext | None) -> AppendedEvent | None:
    """A `link` event on DEVICE naming ACCOUNT (None if linked already or not linkable).

    The event carries no categories or channels: linking never changes what the device
    chose (finding 13.1: a link must not grant anything on the device's behalf).
    """
    if device.user_ref is not None or device.erased_at is not None:
        return None  # another user's account (shared computer) or an erased subject
    if _link_row(device.id, account.id) is not None:
        return None
    event = append_event(site, device, action="link", source=source,
                         policy_version=site.policy_label,
                         details=ctx.details(None) if ctx else None,
                         meta={"link": "device", "account": account.pseudonym})
    db.session.add(SubjectLink(site_id=site.id, subject_id=device.id, account_id=account.id,
                               event_id=event.event_id, linked_at=event.recorded_at))
    db.session.flush()
    if "age_rule" in site.settings:
        from .minors import device_linked

        device_linked(site, account, device, source)  # a minor's account: a minor's browser
    return event


def linked_to(site_id: int, device_public_id: str | None, account_public_id: str) -> bool:
    """Whether the device DEVICE_PUBLIC_ID is linked to the account ACCOUNT_PUBLIC_ID."""
    device = find_subject(site_id, device_public_id) if device_public_id else None
    account = find_subject(site_id, account_public_id)
    if device is None or account is None:
        return False
    return device.id == account.id or _link_row(device.id, account.id) is not None


def confirm_device_link(site_key: str, account_public_id: str, device_public_id: str,
                        ctx: RequestContext | None = None) -> AppendedEvent | None:
    """The person, signed in as ACCOUNT in this browser, confirms that the browser's own
    device subject (proven by its key earlier in the session) is theirs too."""
    site = site_snapshot(site_key)

    def write():
        account = find_subject(site.id, account_public_id)
        device = find_subject(site.id, device_public_id)
        if account is None or account.user_ref is None or device is None:
            raise Invalid("sign in again from the site, then confirm", field="device")
        if device.id == account.id:
            return None
        return _link_to_account(site, account, device, "preferences", ctx)

    return run_write(write)


@on_append
def _forget_links(event: AppendedEvent) -> None:
    # Erasure removes the links that would tie a device back to the person's account.
    if event.action == "erase" and event.subject_id is not None and not event.duplicate:
        table = SubjectLink.__table__
        db.session.execute(sa.delete(table).where(sa.or_(
            table.c.subject_id == event.subject_id, table.c.account_id == event.subject_id)))


def erase_subject_data(subject_id: int) -> None:
    """Erasure hook (consent.requests): the device key's hash goes with the identifiers."""
    subject = db.session.get(Subject, subject_id)
    if subject is not None:
        subject.key_hash = None


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
                     device_key: str | None = None,
                     ttl_seconds: int | None = None) -> LoginToken:
    """Sign a single-use link to the preference center for the site's user USER_ID.

    The token carries the keyed ref of the user id (never the id itself). With the
    visitor's id, the site's backend also links that visitor now (source `api`): opening
    the link never links the browser that opens it.
    """
    site = site_snapshot(site_key)
    ref = user_ref(site.key, user_id)
    ttl = ttl_seconds or DEFAULT_LOGIN_TTL
    if not 30 <= ttl <= MAX_LOGIN_TTL:
        raise Invalid(f"ttl_seconds must be between 30 and {MAX_LOGIN_TTL}",
                      field="ttl_seconds")
    if device_public_id is not None and not PUBLIC_ID_RE.fullmatch(device_public_id):
        raise Invalid("not a visitor id", field="subject")
    if device_public_id is not None:
        account_id = run_write(lambda: link_device(site, ref, device_public_id, source="api",
                                                   device_key=device_key)).account.public_id
    else:
        existing = account_by_ref(site.id, ref)
        account_id = existing.public_id if existing is not None else None
    payload = {"u": ref, "j": secrets.token_hex(12), "x": ttl}
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
    jti: str  # the link's id: the server's record of this sign-in (signed_in, sign_out)


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


_USED = ("This sign-in link was already used. Go back to the site and open your privacy "
         "preferences again.")


def check_login_token(site_key: str, token: str) -> dict:
    """A login link's payload when it is genuine, unexpired and not used yet; reads only.

    Opening the link shows a page whose button spends it (use_login_token): mail
    scanners and link previews fetch links before the person does, and a link spent
    by that fetch would be "already used" when the person clicks it.
    """
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
    if db.session.get(LoginLinkUse, payload["j"]) is not None:
        raise ExpiredLink(_USED)
    return payload


def use_login_token(site_key: str, token: str) -> LoginResult:
    """Verify and spend a login link: the browser may manage the account's preferences.

    Nothing else changes: the browser's own consent (its device subject) is neither
    linked nor touched, whoever minted the link (login CSRF, finding 13.1).
    """
    site = site_snapshot(site_key)
    payload = check_login_token(site_key, token)

    def write():
        if not _claim(site.id, payload["j"]):
            raise ExpiredLink(_USED)
        account = account_by_ref(site.id, payload["u"])
        if account is None:
            account = create_subject(site.id)
            account.user_ref = payload["u"]
            db.session.flush()
        return account.public_id

    account_id = run_write(write)
    return LoginResult(site, account_id, time.time() + 60 * session_minutes(site),
                       payload["j"])


def signed_in(site_id: int, jti: str | None) -> bool:
    """Whether the sign-in started by login link JTI still holds on the server (not signed
    out; a sign-in from before sign-ins named their link holds no more)."""
    if not isinstance(jti, str):
        return False
    row = db.session.execute(sa.select(LoginLinkUse.signed_out_at).where(
        LoginLinkUse.jti == jti, LoginLinkUse.site_id == site_id)).first()
    return row is not None and row[0] is None


def sign_out(site_id: int, jti: str | None) -> None:
    """End the sign-in started by login link JTI, for every copy of its session cookie."""
    if isinstance(jti, str):
        run_write(lambda: db.session.execute(
            sa.update(LoginLinkUse).where(LoginLinkUse.jti == jti,
                                          LoginLinkUse.site_id == site_id)
            .values(signed_out_at=utcnow())))


# ---------------------------------------------------------------- the preference center's visitors


def enter_preferences(site_key: str, subject: str | None, key: str | None) -> str | None:
    """The visitor id a browser proved with its device key (the widget's link to the
    preference center), or None; an unkeyed subject is claimed by the proof."""
    site = site_snapshot(site_key)
    if not subject or not key:
        return None
    found = run_write(lambda: verified_subject(site.id, subject, key))
    return found.public_id if found is not None else None


def device_from_cookie(site: SiteSnapshot, value: str | None) -> str | None:
    """The visitor id in the widget's consent cookie, when its key proves it (same-site
    deployments, where the preference page sees the cookie); read only."""
    if not value or len(value) > 4096:
        return None
    fields = dict(parse_qsl(value.strip('"'), keep_blank_values=True))
    if fields.get("v") != "1":
        return None
    subject = find_subject(site.id, fields.get("s", ""))
    if subject is None or subject.erased_at is not None or subject.key_hash is None:
        return None
    return subject.public_id if key_matches(subject.key_hash, fields.get("k")) else None


def return_url(site: SiteSnapshot, url: str | None) -> str | None:
    """URL if it is a page of one of the site's own (listed) origins; None otherwise, so a
    "Back to the site" link can never lead elsewhere."""
    if not isinstance(url, str) or not url or len(url) > RETURN_URL_MAX:
        return None
    try:
        parts = urlsplit(url)
        origin = normalise_origin(f"{parts.scheme}://{parts.netloc}")
    except (ValueError, Invalid):
        return None
    if origin == "*" or origin not in site.allowed_origins or "@" in parts.netloc:
        return None
    return url
