"""Admin users (hashed passwords, session sign-in) and scoped API tokens for automation.

How to protect a view (HTML page or JSON API) -- one decorator each:

    from consent.admin_auth import admin_required, token_required

    @bp.get("/admin/webhooks")            # HTML: signed-in admin with the scope
    @admin_required("sites:write")
    def webhooks_page(): ...

    @blp.route("/api/v1/admin/webhooks")  # JSON: `Authorization: Bearer ca_...` token
    @token_required("sites:write")
    def webhooks_api(): ...

Put the decorator directly under the route decorator. `admin_required` redirects an
anonymous browser to the sign-in page (401 problem+json for JSON callers) and answers 403
to a signed-in admin without the scope; `token_required` answers 401 / 403 as
problem+json. The `admin` scope includes every other scope. A token may be limited to one
site: such a token is refused (403) on any URL whose `site_key` names another site.

Every URL under ADMIN_PATH_PREFIXES must carry one of these decorators (or `public_admin`
for sign-in itself): a guard refuses undecorated views there, and a test walks the URL map
so that a new route cannot slip through. New scopes: `register_scope(name, description)`.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from functools import wraps
from typing import Callable

import click
import sqlalchemy as sa
from flask import current_app, g, redirect, request, session, url_for
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from .cli import consent_cli
from .database import UTCDateTime, run_write, utcnow
from .errors import Forbidden, Invalid, Unauthorized
from .extensions import db
from .ratelimit import takes_bearer

SCOPES: dict[str, str] = {
    "audit:read": "Read dashboards, events, requests and policies",
    "audit:export": "Download audit exports",
    "sites:write": "Change site configuration, categories, texts and site API keys",
    "policies:write": "Publish policy versions",
    "requests:write": "Open, complete and carry out access and erasure requests",
    "admin": "Everything, including admin users and tokens",
}
ADMIN_PATH_PREFIXES = ("/admin", "/api/v1/audit", "/api/v1/admin")
TOKEN_PREFIX = "ca_"
MIN_PASSWORD_LENGTH = 12
SESSION_KEY = "admin"

# Attribute set on protected view functions; the guard and the URL-map test read it.
SCOPE_ATTR = "admin_scope"
AUTH_ATTR = "admin_auth"


class AdminUser(db.Model):
    """A person who signs in to the admin with e-mail and password."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    scopes: Mapped[list] = mapped_column(sa.JSON, default=lambda: ["admin"])
    failed_sign_ins: Mapped[int] = mapped_column(default=0)
    # Raised by sign-out and password changes: a session cookie carries the generation it
    # was issued under, so every copy of an ended session stops working.
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AdminToken(db.Model):
    """A bearer token for automation, with scopes and optionally one site."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64))
    scopes: Mapped[list] = mapped_column(sa.JSON, default=list)
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sites.id"))
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("admin_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Principal:
    """Who is calling an admin or audit route: a signed-in user or a token."""

    def __init__(self, kind: str, ident: int, label: str, scopes: list[str],
                 site_id: int | None = None):
        self.kind, self.id, self.label = kind, ident, label
        self.scopes, self.site_id = list(scopes), site_id

    def has(self, scope: str | None) -> bool:
        """True when the principal holds SCOPE (`admin` holds all)."""
        return scope is None or "admin" in self.scopes or scope in self.scopes

    @property
    def actor(self) -> str:
        """How events and requests name this principal (no personal data)."""
        return f"{self.kind}:{self.id}"


# ---------------------------------------------------------------- scopes


def register_scope(name: str, description: str) -> str:
    """Add a scope other modules can require (e.g. "webhooks:write")."""
    SCOPES.setdefault(name, description)
    return name


def check_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    """Validate a list of scope names; returns it de-duplicated and sorted."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise Invalid(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}",
                      field="scopes")
    if not scopes:
        raise Invalid("give at least one scope", field="scopes")
    return sorted(set(scopes))


# ---------------------------------------------------------------- users


def create_admin(email: str, password: str, *, name: str | None = None,
                 scopes: list[str] | None = None) -> AdminUser:
    """Create an admin user (inside a write transaction)."""
    email = (email or "").strip().lower()
    if "@" not in email or len(email) > 254:
        raise Invalid("give an e-mail address", field="email")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise Invalid(f"passwords need at least {MIN_PASSWORD_LENGTH} characters",
                      field="password")
    if find_admin(email) is not None:
        from .errors import Conflict

        raise Conflict(f"an admin {email!r} already exists", field="email")
    user = AdminUser(email=email, name=name, password_hash=_hash_password(password),
                     scopes=check_scopes(list(scopes or ["admin"])))
    db.session.add(user)
    db.session.flush()
    return user


def find_admin(email: str) -> AdminUser | None:
    """The admin user with this e-mail, or None."""
    return db.session.execute(db.select(AdminUser).where(
        AdminUser.email == (email or "").strip().lower())).scalar_one_or_none()


def set_password(user_id: int, password: str) -> None:
    """Change a password (signs the user out everywhere). Inside a write transaction."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise Invalid(f"passwords need at least {MIN_PASSWORD_LENGTH} characters",
                      field="password")
    user = db.session.get(AdminUser, user_id)
    if user is None:
        raise Invalid("unknown admin user", field="user")
    user.password_hash = _hash_password(password)
    user.failed_sign_ins, user.locked_until = 0, None
    user.session_generation = (user.session_generation or 0) + 1


def change_own_password(user_id: int, current: str, new: str, confirm: str) -> AdminUser:
    """A signed-in admin changes their password: the current one is checked first. Every
    session of the account ends (the caller starts a fresh one)."""
    if new != confirm:
        raise Invalid("the two new passwords differ", field="confirm")

    def write() -> AdminUser:
        user = db.session.get(AdminUser, user_id)
        if user is None or not check_password_hash(user.password_hash, current or ""):
            raise Invalid("the current password is not right", field="current")
        if check_password_hash(user.password_hash, new or ""):
            raise Invalid("choose a password other than the current one", field="password")
        set_password(user_id, new)
        return user

    return run_write(write)


def end_sessions(user_id: int) -> None:
    """End every session of an admin (each copy of its cookie stops working)."""
    def write():
        user = db.session.get(AdminUser, user_id)
        if user is not None:
            user.session_generation = (user.session_generation or 0) + 1
    run_write(write)


def list_admins() -> list[AdminUser]:
    """Every admin user, oldest first."""
    return list(db.session.execute(db.select(AdminUser).order_by(AdminUser.id)).scalars())


def set_admin_disabled(user_id: int, disabled: bool) -> None:
    """Disable (or re-enable) an admin; a disabled admin's sessions stop working."""
    def write():
        user = db.session.get(AdminUser, user_id)
        if user is None:
            raise Invalid("unknown admin user", field="user")
        user.disabled_at = utcnow() if disabled else None
    run_write(write)


def _session_stamp(user: AdminUser) -> str:
    # Changes when the password changes, so that sessions signed before it end.
    return hmac.new(current_app.config["SECRET_KEY"].encode(), user.password_hash.encode(),
                    hashlib.sha256).hexdigest()[:32]


def _hash_password(password: str) -> str:
    # The method (and so the KDF cost) comes from the settings: the test settings choose a
    # cheap one, since thousands of test sign-ins do not test the production cost.
    return generate_password_hash(password, method=current_app.config["ADMIN_PASSWORD_HASH"])


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    # Checking a dummy hash keeps the answer time the same for unknown e-mail addresses.
    if not _DUMMY:
        _DUMMY.append(_hash_password(secrets.token_hex(16)))
    return _DUMMY[0]


def authenticate(email: str, password: str) -> AdminUser:
    """Check e-mail and password (failures are counted, never lock the account)."""
    def write() -> AdminUser | str:
        user = find_admin(email)
        now = utcnow()
        if user is None or user.disabled_at is not None:
            check_password_hash(_dummy_hash(), password or "")
            return "bad"
        # No account lock: it would let anyone lock an admin out, and answer differently
        # for existing accounts. consent.ratelimit throttles failed sign-ins per
        # (account, address) and per address instead, alike for unknown accounts.
        if not check_password_hash(user.password_hash, password or ""):
            user.failed_sign_ins += 1
            return "bad"
        user.failed_sign_ins, user.locked_until, user.last_sign_in_at = 0, None, now
        return user

    result = run_write(write)
    if result == "bad":
        raise Unauthorized("wrong e-mail address or password")
    return result


def sign_in(user: AdminUser) -> None:
    """Start an admin session (a fresh session: nothing from before survives)."""
    session.clear()
    session[SESSION_KEY] = {"uid": user.id, "stamp": _session_stamp(user),
                            "gen": user.session_generation or 0,
                            "at": int(utcnow().timestamp())}
    session.permanent = False


def sign_out() -> None:
    """End the admin session: on the server too, so a copy of the cookie is worthless."""
    data = session.get(SESSION_KEY)
    if isinstance(data, dict) and isinstance(data.get("uid"), int):
        end_sessions(data["uid"])
    session.clear()


def session_principal() -> Principal | None:
    """The signed-in admin of this request's session, or None."""
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict) or "uid" not in data:
        return None
    hours = float(current_app.config.get("CONSENT_ADMIN_SESSION_HOURS", 12))
    try:
        age = utcnow().timestamp() - float(data.get("at", 0))
    except (TypeError, ValueError):
        return None
    if not 0 <= age <= hours * 3600:
        return None
    if not isinstance(data["uid"], int):
        return None
    user = db.session.get(AdminUser, data["uid"])
    if user is None or user.disabled_at is not None:
        return None
    if not hmac.compare_digest(str(data.get("stamp", "")), _session_stamp(user)):
        return None
    if data.get("gen") != (user.session_generation or 0):
        return None  # signed out (or password changed) since this session began
    return Principal("user", user.id, user.email, user.scopes or [])


# ---------------------------------------------------------------- tokens


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(name: str, scopes: list[str], *, site_id: int | None = None,
                 created_by: int | None = None, expires_at: datetime | None = None) -> str:
    """Issue an API token (inside a write transaction); the secret is returned only once."""
    name = (name or "").strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("give the token a name (1-100 characters)", field="name")
    scopes = check_scopes(list(scopes))
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    db.session.add(AdminToken(name=name, prefix=prefix, token_hash=_token_digest(token),
                              scopes=scopes, site_id=site_id, created_by=created_by,
                              expires_at=expires_at))
    db.session.flush()
    return token


def list_tokens() -> list[AdminToken]:
    """Every token (revoked ones too), newest first."""
    return list(db.session.execute(db.select(AdminToken).order_by(AdminToken.id.desc()))
                .scalars())


def revoke_token(token_id: int) -> None:
    """Revoke a token at once."""
    def write():
        row = db.session.get(AdminToken, token_id)
        if row is None:
            raise Invalid("unknown token", field="token")
        row.revoked_at = row.revoked_at or utcnow()
    run_write(write)


def token_principal(token: str | None) -> Principal | None:
    """The principal of a bearer token, or None when unknown, revoked or expired."""
    if not token or not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
        return None
    prefix = token[len(TOKEN_PREFIX):].split("_", 1)[0]
    row = db.session.execute(db.select(AdminToken).where(AdminToken.prefix == prefix)
                             ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(_token_digest(token), row.token_hash):
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return Principal("token", row.id, row.name, row.scopes or [], row.site_id)


# ---------------------------------------------------------------- decorators


def _check_site(principal: Principal, kwargs: dict) -> None:
    if principal.site_id is None or "site_key" not in kwargs:
        return
    from .sites import Site

    site_id = db.session.execute(db.select(Site.id).where(Site.key == kwargs["site_key"])
                                 ).scalar_one_or_none()
    if site_id != principal.site_id:
        raise Forbidden("this token is limited to another site")


def _mark(wrapper: Callable, scope: str | None, auth: str) -> Callable:
    setattr(wrapper, SCOPE_ATTR, scope)
    setattr(wrapper, AUTH_ATTR, auth)
    if auth == "token":
        takes_bearer(wrapper)
    return wrapper


def admin_required(scope: str | None = "audit:read"):
    """Decorator for admin HTML pages: a signed-in admin holding SCOPE."""
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; register it with register_scope()")

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = session_principal()
            if principal is None:
                from .errors import wants_json

                if request.method == "GET" and not wants_json():
                    return redirect(url_for("admin.sign_in", next=request.full_path))
                raise Unauthorized("sign in to the admin first")
            if not principal.has(scope):
                raise Forbidden(f"your account lacks the {scope!r} permission")
            g.admin = principal
            return view(*args, **kwargs)

        return _mark(wrapper, scope, "session")

    return decorate


def token_required(scope: str | None = "audit:read"):
    """Decorator for admin/audit JSON APIs: `Authorization: Bearer <token>` with SCOPE."""
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; register it with register_scope()")

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            from .web.auth import bearer_token

            principal = token_principal(bearer_token())
            if principal is None:
                raise Unauthorized("send an admin API token as 'Authorization: Bearer "
                                   "ca_...' (create one with `flask consent create-token`)")
            if not principal.has(scope):
                raise Forbidden(f"this token lacks the {scope!r} scope")
            _check_site(principal, kwargs)
            g.admin = principal
            return view(*args, **kwargs)

        return _mark(wrapper, scope, "token")

    return decorate


def public_admin(view):
    """Mark an admin URL that needs no sign-in (the sign-in page itself)."""
    return _mark(view, None, "public")


def current_principal() -> Principal | None:
    """The principal a decorated view runs as."""
    return g.get("admin")


def guard_unmarked_admin_views() -> None:
    """Refuse any request to an admin URL whose view carries no auth decorator."""
    # Runs on every request of every surface (the consent write included): the request
    # object read once (each attribute of the proxy raises and catches an AttributeError
    # before its __getattr__ runs), the app only for admin URLs.
    req = request._get_current_object()
    endpoint = req.endpoint
    if endpoint is None or not req.path.startswith(ADMIN_PATH_PREFIXES):
        return
    view = current_app.view_functions.get(endpoint)
    if view is None or endpoint == "static":
        return
    if getattr(view, AUTH_ATTR, None) is None and not _smorest_marked(view):
        raise Forbidden("this admin URL is not protected by admin_required or "
                        "token_required and is therefore refused")


def _smorest_marked(view) -> bool:
    # flask-smorest MethodViews: the class's methods carry the marks.
    cls = getattr(view, "view_class", None)
    if cls is None:
        return False
    methods = [getattr(cls, m.lower(), None) for m in getattr(cls, "methods", ()) or ()]
    return bool(methods) and all(getattr(m, AUTH_ATTR, None) for m in methods if m)


def view_auth(view) -> tuple[str | None, str | None]:
    """(auth kind, scope) a view function was marked with (for tests and docs)."""
    return getattr(view, AUTH_ATTR, None), getattr(view, SCOPE_ATTR, None)


# ---------------------------------------------------------------- CLI


@consent_cli.command("create-admin")
@click.argument("email")
@click.option("--name")
@click.option("--scope", "scopes", multiple=True,
              help="Scope (repeatable); default: admin (everything).")
@click.password_option(envvar="CONSENT_ADMIN_PASSWORD",
                       help="Prompted for when not given (or $CONSENT_ADMIN_PASSWORD).")
def create_admin_command(email, name, scopes, password):
    """Create an admin user who signs in at /admin/."""
    from .errors import DomainError

    try:
        user = run_write(lambda: create_admin(email, password, name=name,
                                              scopes=list(scopes) or None))
    except DomainError as exc:
        raise click.ClickException(exc.detail)
    click.echo(f"admin {user.email} created with scopes {', '.join(user.scopes)}")


@consent_cli.command("set-admin-password")
@click.argument("email")
@click.password_option(envvar="CONSENT_ADMIN_PASSWORD",
                       help="Prompted for when not given (or $CONSENT_ADMIN_PASSWORD).")
def set_admin_password_command(email, password):
    """Set an admin's password (e.g. a forgotten one); ends every session of the account."""
    from .errors import DomainError

    def write():
        user = find_admin(email)
        if user is None:
            raise Invalid(f"no admin {email!r}", field="email")
        set_password(user.id, password)
        return user.email

    try:
        who = run_write(write)
    except DomainError as exc:
        raise click.ClickException(exc.detail)
    click.echo(f"password of {who} changed; every session of the account has ended")


@consent_cli.command("create-token")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True,
              help=f"Scope (repeatable): {', '.join(SCOPES)}")
@click.option("--site", "site_key", help="Limit the token to this site.")
@click.option("--days", type=click.IntRange(1, 3650), help="Expire after this many days.")
def create_token_command(name, scopes, site_key, days):
    """Issue an admin API token for automation and print it (shown once)."""
    from .errors import DomainError
    from .sites import NotFound, get_site

    def write():
        site_id = get_site(site_key).id if site_key else None
        expires = utcnow() + timedelta(days=days) if days else None
        return create_token(name, list(scopes), site_id=site_id, expires_at=expires)

    try:
        token = run_write(write)
    except DomainError as exc:
        raise click.ClickException(exc.detail)
    except NotFound as exc:
        raise click.ClickException(str(exc))
    click.echo(token)
