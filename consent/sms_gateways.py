"""SMS gateways posting inbound messages: Twilio, Vonage (SMS API) and Plivo.

Each site registers the gateways it uses. A registration holds:

- an **inbound credential** of its own (never the site's API key, which a gateway cannot
  send): a random token the gateway presents either as the last path segment of the
  webhook URL or as the password of HTTP Basic credentials (`https://sms:TOKEN@host/...`,
  how Twilio sends credentials); only its SHA-256 is stored;
- optionally the gateway's **signing secret** (Twilio auth token, Vonage signature
  secret and method, Plivo auth token), encrypted under CONSENT_DATA_KEY. When it is
  set, every request must carry the gateway's valid signature
  (`X-Twilio-Signature`; Vonage's `sig` parameter; `X-Plivo-Signature-V3`).

Each gateway posts its own field names, by its own method (Vonage: GET by default, or
POST form or JSON), and gets the answer it expects (TwiML `<Response/>`, Plivo XML,
Vonage `204`). The keywords and the ledger event are consent.sms's.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import marshmallow as ma
import sqlalchemy as sa
from marshmallow import validate
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, iso, run_write, utcnow
from .decisions import RequestContext
from .errors import Forbidden, Invalid, Unauthorized
from .extensions import db
from .sites import NotFound, get_site, site_snapshot
from .sms import SmsResult, sms_inbound

PROVIDERS = ("twilio", "vonage", "plivo")
VONAGE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
SECRET_PURPOSE = "sms-gateway-secret"
TOKEN_BYTES = 24
BASIC_USER = "sms"
# Vonage signs a unix timestamp: a signed request older (or newer) than this is refused.
# Generous because Vonage retries a message for 24 hours.
VONAGE_MAX_SKEW = 25 * 3600

Pairs = list[tuple[str, str]]


class SmsGateway(db.Model):
    """A gateway a site receives SMS from, with its inbound credential."""

    __tablename__ = "sms_gateways"
    __table_args__ = (sa.UniqueConstraint("site_id", "provider"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    provider: Mapped[str] = mapped_column(sa.String(16))
    # SHA-256 (hex) of the inbound token: the token itself is shown once.
    token_hash: Mapped[str] = mapped_column(sa.String(64))
    # The gateway's signing secret, encrypted (consent.secretbox); None: not checked.
    signing_secret: Mapped[str | None] = mapped_column(sa.Text)
    signature_method: Mapped[str | None] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---------------------------------------------------------------- registration


@dataclass
class Registration:
    """A gateway just registered: the inbound token is only known now."""

    provider: str
    token: str
    signed: bool
    signature_method: str | None
    created_at: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise Invalid(f"unknown SMS gateway {provider!r}; use one of {', '.join(PROVIDERS)}",
                      field="provider")
    return provider


def register_gateway(site_key: str, provider: str, *, signing_secret: str | None = None,
                     signature_method: str | None = None) -> Registration:
    """Register (or re-register, with a new token) a site's SMS gateway."""
    from .secretbox import seal

    _check_provider(provider)
    if signing_secret is not None and (not 8 <= len(signing_secret) <= 256
                                       or signing_secret != signing_secret.strip()):
        raise Invalid("the gateway's signing secret (auth token) must be 8-256 characters "
                      "without surrounding spaces", field="signing_secret")
    if provider == "vonage":
        signature_method = signature_method or ("md5hash" if signing_secret else None)
        if signature_method is not None and signature_method not in VONAGE_METHODS:
            raise Invalid(f"unknown Vonage signature method {signature_method!r}; use one of "
                          f"{', '.join(VONAGE_METHODS)}", field="signature_method")
        if signature_method and not signing_secret:
            raise Invalid("a signature method needs the signature secret",
                          field="signing_secret")
    elif signature_method is not None:
        raise Invalid(f"{provider} has no signature method to choose",
                      field="signature_method")
    token = secrets.token_urlsafe(TOKEN_BYTES)

    def write() -> Registration:
        site = get_site(site_key)
        row = db.session.execute(db.select(SmsGateway).where(
            SmsGateway.site_id == site.id, SmsGateway.provider == provider)
        ).scalar_one_or_none()
        if row is None:
            row = SmsGateway(site_id=site.id, provider=provider)
            db.session.add(row)
        row.token_hash = _hash(token)
        row.signing_secret = seal(signing_secret, SECRET_PURPOSE) if signing_secret else None
        row.signature_method = signature_method
        row.created_at = utcnow()
        db.session.flush()
        return Registration(provider, token, bool(signing_secret), signature_method,
                            iso(row.created_at))

    return run_write(write)


def list_gateways(site_key: str) -> list[SmsGateway]:
    """The SMS gateways a site registered (tokens and secrets are not readable)."""
    site = site_snapshot(site_key)
    return list(db.session.execute(db.select(SmsGateway).where(
        SmsGateway.site_id == site.id).order_by(SmsGateway.provider)).scalars())


def remove_gateway(site_key: str, provider: str) -> None:
    """Forget a site's gateway: its inbound URL stops working at once."""
    _check_provider(provider)

    def write():
        site = get_site(site_key)
        deleted = db.session.execute(sa.delete(SmsGateway).where(
            SmsGateway.site_id == site.id, SmsGateway.provider == provider)).rowcount
        if not deleted:
            raise NotFound("SMS gateway", provider)

    run_write(write)


# ---------------------------------------------------------------- signatures


def _b64_hmac(key: str, message: str, digest) -> str:
    return base64.b64encode(hmac.new(key.encode("utf-8"), message.encode("utf-8"),
                                     digest).digest()).decode("ascii")


def _with_and_without_port(url: str) -> list[str]:
    """URL as given, without its port and with the scheme's default port (gateways are
    not consistent about a default port in the URL they sign)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    bare = urlunsplit(parts._replace(netloc=host))
    ported = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    return list(dict.fromkeys([url, bare, ported]))


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]],
                     algorithm: str = "HMAC_SHA1") -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC of the URL followed by every POST
    parameter's name and value, sorted by name then value."""
    digest = hashlib.sha256 if algorithm.upper() == "HMAC_SHA256" else hashlib.sha1
    text = url + "".join(name + value for name, value in sorted(set(params)))
    return _b64_hmac(auth_token, text, digest)


def _twilio_algorithm(headers: Mapping[str, str]) -> str:
    # Webhooks signed with a SharedKey name their algorithm; the auth token's is SHA-1.
    for part in (headers.get("X-Twilio-Webhooks-Signature-Settings") or "").split(","):
        name, _, value = part.partition("=")
        if name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def _verify_twilio(secret: str, url: str, method: str, params: Pairs,
                   headers: Mapping[str, str]) -> bool:
    given = headers.get("X-Twilio-Signature") or ""
    algorithm = _twilio_algorithm(headers)
    if not given or algorithm not in ("HMAC_SHA1", "HMAC_SHA256"):
        return False
    signed = params if method == "POST" else []  # a GET's parameters are in the URL
    return any(hmac.compare_digest(twilio_signature(secret, u, signed, algorithm), given)
               for u in _with_and_without_port(url))


def _sorted_query(pairs: Pairs) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def plivo_v3_signature(auth_token: str, method: str, url: str, params: Pairs,
                       nonce: str) -> str:
    """Plivo's X-Plivo-Signature-V3: base64 HMAC-SHA256 of the URL without its query,
    the query parameters sorted (`?k=v&...`; for a GET, the request's parameters too),
    for a POST then the body parameters sorted and concatenated as name+value, then
    `.` and the nonce."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = parse_qsl(parts.query, keep_blank_values=True)
    if method == "GET":
        merged = sorted(set(query) | set(params))
        text = base + ("?" + _sorted_query(merged) if merged else "")
    else:
        text = base
        if query or params:
            text += "?" + _sorted_query(query)
        if query and params:
            text += "."
        text += "".join(k + v for k, v in sorted(params))
    return _b64_hmac(auth_token, f"{text}.{nonce}", hashlib.sha256)


def _verify_plivo(secret: str, url: str, method: str, params: Pairs,
                  headers: Mapping[str, str]) -> bool:
    # V3 is signed with the (sub)account's auth token, Ma-V3 with the main account's:
    # either matches the token the operator registered.
    given = ",".join(filter(None, (headers.get("X-Plivo-Signature-V3"),
                                   headers.get("X-Plivo-Signature-Ma-V3"))))
    nonce = headers.get("X-Plivo-Signature-V3-Nonce") or ""
    if not given or not nonce:
        return False
    candidates = [s.strip() for s in given.split(",") if s.strip()]
    for u in _with_and_without_port(url):
        expected = plivo_v3_signature(secret, method, u, params, nonce)
        if any(hmac.compare_digest(expected, c) for c in candidates):
            return True
    return False


def vonage_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    """Vonage's `sig` of SMS API webhooks: every parameter but `sig`, sorted, as
    `&name=value` with `&` and `=` in values replaced by `_`; md5hash appends the secret
    and takes MD5, the other methods are an HMAC keyed with the secret (hex)."""
    text = "".join("&{}={}".format(k, str(params[k]).replace("&", "_").replace("=", "_"))
                   for k in sorted(params) if k != "sig")
    if method == "md5hash":
        return hashlib.md5((text + secret).encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"),
                    getattr(hashlib, method)).hexdigest()


def _verify_vonage(secret: str, method_name: str, params: Pairs) -> bool:
    values = dict(params)
    given = (values.get("sig") or "").lower()
    if not given:
        return False
    try:
        stamp = int(values.get("timestamp") or "")
    except ValueError:
        return False
    if abs(time.time() - stamp) > VONAGE_MAX_SKEW:
        return False
    return hmac.compare_digest(vonage_signature(secret, method_name, values).lower(), given)


# ---------------------------------------------------------------- inbound messages


class _GatewayFields(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE  # gateways send many more fields than we read

    def load_pairs(self, params: Pairs) -> dict:
        """Load the first value of each field."""
        return self.load(dict(reversed(params)))


class TwilioInbound(_GatewayFields):
    """Twilio's incoming message webhook (application/x-www-form-urlencoded)."""

    From = ma.fields.String(required=True, validate=validate.Length(1, 40))
    To = ma.fields.String(validate=validate.Length(0, 40))
    Body = ma.fields.String(required=True, validate=validate.Length(0, 1600))
    MessageSid = ma.fields.String(validate=validate.Length(1, 64))


class VonageInbound(_GatewayFields):
    """Vonage SMS API inbound message (GET query, POST form or POST JSON)."""

    msisdn = ma.fields.String(required=True, validate=validate.Length(1, 40))
    to = ma.fields.String(validate=validate.Length(0, 40))
    text = ma.fields.String(validate=validate.Length(0, 1600))
    messageId = ma.fields.String(validate=validate.Length(1, 64))
    type = ma.fields.String(validate=validate.Length(1, 16))


class PlivoInbound(_GatewayFields):
    """Plivo's incoming message webhook (POST form by default, or GET)."""

    From = ma.fields.String(required=True, validate=validate.Length(1, 40))
    To = ma.fields.String(validate=validate.Length(0, 40))
    Text = ma.fields.String(required=True, validate=validate.Length(0, 1600))
    MessageUUID = ma.fields.String(validate=validate.Length(1, 64))
    Type = ma.fields.String(validate=validate.Length(1, 16))


# (sender field, body field, message id field) of each gateway
FIELDS = {"twilio": (TwilioInbound, "From", "Body", "MessageSid"),
          "vonage": (VonageInbound, "msisdn", "text", "messageId"),
          "plivo": (PlivoInbound, "From", "Text", "MessageUUID")}


@dataclass(frozen=True)
class _Gateway:
    provider: str
    token_hash: str
    secret: str | None
    method: str | None


def _load_gateway(site_id: int, provider: str) -> _Gateway | None:
    from .secretbox import unseal

    row = db.session.execute(db.select(SmsGateway).where(
        SmsGateway.site_id == site_id, SmsGateway.provider == provider)).scalar_one_or_none()
    if row is None:
        return None
    secret = unseal(row.signing_secret, SECRET_PURPOSE) if row.signing_secret else None
    return _Gateway(row.provider, row.token_hash, secret, row.signature_method)


CHALLENGE = {"WWW-Authenticate": 'Basic realm="sms", charset="UTF-8"'}


def _authenticate(site_id: int, provider: str, token: str | None,
                  basic_password: str | None) -> _Gateway:
    gateway = _load_gateway(site_id, provider)
    offered = token if token is not None else basic_password
    # Same answer for an unregistered gateway and a wrong token; the hash is compared
    # in constant time either way.
    expected = gateway.token_hash if gateway else _hash("")
    if offered is None:
        raise Unauthorized(f"this {provider} webhook needs the gateway's inbound token in "
                           "its URL or as the HTTP Basic password", headers=CHALLENGE)
    if not hmac.compare_digest(_hash(offered), expected) or gateway is None:
        raise Unauthorized(f"the {provider} inbound token is unknown for this site "
                           "(register the gateway to get one)", headers=CHALLENGE)
    return gateway


def _urls_signed(url: str, basic_user: str | None, basic_password: str | None) -> list[str]:
    """The URL as the gateway may have signed it: as called, and for HTTP Basic also with
    the credentials in it (as configured at the gateway)."""
    if basic_password is None:
        return [url]
    scheme, _, rest = url.partition("://")
    return [url, f"{scheme}://{basic_user or ''}:{basic_password}@{rest}"]


def receive(site_key: str, provider: str, *, url: str, method: str, params: Pairs,
            headers: Mapping[str, str], ctx: RequestContext, token: str | None = None,
            basic_password: str | None = None, basic_user: str | None = None) -> SmsResult:
    """Authenticate a gateway's inbound SMS, check its signature, apply its keyword.

    URL is the public URL the gateway called (what it signed); PARAMS every parameter it
    sent (the body's, or for a GET the query's), in order."""
    _check_provider(provider)
    site = site_snapshot(site_key)
    gateway = _authenticate(site.id, provider, token, basic_password)
    if gateway.secret:
        signed_urls = _urls_signed(url, basic_user, basic_password if token is None else None)
        checks = {"twilio": lambda: any(_verify_twilio(gateway.secret, u, method, params,
                                                       headers) for u in signed_urls),
                  "plivo": lambda: any(_verify_plivo(gateway.secret, u, method, params,
                                                     headers) for u in signed_urls),
                  "vonage": lambda: _verify_vonage(gateway.secret,
                                                  gateway.method or "md5hash", params)}
        if not checks[provider]():
            raise Forbidden(f"the {provider} signature is missing or does not match this "
                            "request (check the gateway's signing secret and that the URL "
                            "configured at the gateway is this server's public URL)")
    schema, sender_field, body_field, id_field = FIELDS[provider]
    data = schema().load_pairs(params)
    if provider == "vonage" and data.get("type") == "binary":
        return SmsResult("ignored", None)
    try:
        return sms_inbound(site.key, data[sender_field], data.get(body_field) or "", ctx,
                           data.get(id_field), gateway=provider)
    except Invalid as exc:
        raise Invalid(exc.detail, field=sender_field) from None


# ---------------------------------------------------------------- command line


def _register_commands():
    import click

    from .cli import consent_cli

    @consent_cli.command("add-sms-gateway")
    @click.argument("site_key")
    @click.argument("provider", type=click.Choice(PROVIDERS))
    @click.option("--signing-secret", metavar="SECRET|-",
                  help="The gateway's auth token (Twilio, Plivo) or signature secret "
                       "(Vonage); '-' reads it from standard input. Requests must then be "
                       "signed.")
    @click.option("--signature-method", type=click.Choice(VONAGE_METHODS),
                  help="Vonage only: the signature method set in its dashboard.")
    @click.option("--base-url", help="Public URL of this server (default: "
                                     "CONSENT_PUBLIC_URL).")
    def add_sms_gateway_command(site_key, provider, signing_secret, signature_method,
                                base_url):
        """Register an SMS gateway of a site and print the URL to give it (shown once)."""
        from flask import current_app

        if signing_secret == "-":
            signing_secret = click.get_text_stream("stdin").readline().strip()
        try:
            reg = register_gateway(site_key, provider, signing_secret=signing_secret,
                                   signature_method=signature_method)
        except (Invalid, NotFound) as exc:
            raise click.ClickException(getattr(exc, "detail", None) or str(exc))
        base = (base_url or current_app.config.get("CONSENT_PUBLIC_URL")
                or "https://CONSENT_HOST").rstrip("/")
        path = f"/api/v1/sites/{site_key}/sms/{provider}"
        scheme, _, rest = base.partition("://")
        click.echo(f"{provider} gateway registered for {site_key!r}"
                   f"{' (signatures checked)' if reg.signed else ''}. Inbound URL, shown once:")
        click.echo(f"  {base}{path}/{reg.token}")
        click.echo(f"or with HTTP Basic credentials: {scheme}://{BASIC_USER}:{reg.token}@"
                   f"{rest}{path}")


_register_commands()
