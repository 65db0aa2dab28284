"""Channels API for senders and the site's backend (site API key as bearer token).

"May I send?", the suppression list, List-Unsubscribe URLs, the SMS STOP webhook,
addresses, channel choices reported by the site, visitor-to-user links and login links.
"""
from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Iterator

import marshmallow as ma
from flask import Response, current_app, request, stream_with_context, url_for
from flask.views import MethodView
from werkzeug.exceptions import BadRequest
from flask_smorest import Blueprint
from marshmallow import validate

from .. import csvcells
from .. import sms_gateways
from ..channels import (CHANNELS, KINDS, MEDIA, Recipient, Suppression, may_i_send,
                        mint_unsubscribe_token, record_channel_choice, register_address,
                        suppressions)
from ..database import iso, utcnow
from ..identity import link_user, mint_login_token
from ..notices import keep_told
from ..sms import sms_inbound
from ..sites import site_snapshot
from ..subjects import DEVICE_KEY_RE, PUBLIC_ID_RE
from ..validation import Exact, StrictBoolean, StrictSchema
from .auth import require_site_key
from .common import request_context, shown_field
from .server_api import PolicyStateSchema

blp = Blueprint("channels_api", __name__, url_prefix="/api/v1",
                description="Message channels: may I send?, suppression lists, one-click "
                            "unsubscribe URLs, SMS STOP, login links (site API key).")
# The SMS webhook takes what gateways post (form-encoded) and JSON alike.
blp.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
    **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
    "json_or_form": "application/x-www-form-urlencoded"}

SECURITY = [{"siteApiKey": []}]
SUBJECT_FIELD = dict(validate=Exact(PUBLIC_ID_RE),
                     metadata={"description": "Visitor id (the widget cookie's `s`)"})
USER_FIELD = dict(validate=validate.Length(1, 200),
                  metadata={"description": "The site's own user id (stored only as an HMAC)"})
ADDRESS_FIELD = dict(validate=validate.Length(1, 4096),
                     metadata={"description": "E-mail address, phone number (E.164) or push "
                                              "device token; never stored, only its HMAC"})


def _public_url(snapshot, endpoint: str, /, **values) -> str:
    """An absolute URL for recipients: Site.settings["public_base_url"], else the public
    URL (CONSENT_PUBLIC_URL), else this host. Always https in production: RFC 8058 wants
    an HTTPS List-Unsubscribe URI, and a link must not depend on how the request reached
    the app (plain http behind a TLS-terminating proxy)."""
    production = current_app.config.get("ENV_NAME") == "production"
    base = snapshot.settings.get("public_base_url")
    if isinstance(base, str) and base.startswith(
            ("https://",) if production else ("https://", "http://")):
        return base.rstrip("/") + url_for(endpoint, **values)
    url = url_for(endpoint, _external=True, **values)
    if production and not url.startswith("https://"):
        # (consent.hardening refuses to start without an https CONSENT_PUBLIC_URL)
        raise RuntimeError("production links must be https; set CONSENT_PUBLIC_URL")
    return url


class RecipientFields(StrictSchema):
    subject = ma.fields.String(**SUBJECT_FIELD)
    user_id = ma.fields.String(**USER_FIELD)
    address = ma.fields.String(**ADDRESS_FIELD)


class MayISendSchema(RecipientFields):
    """A sender's question."""

    channel = ma.fields.String(required=True, validate=validate.OneOf(MEDIA))
    kind = ma.fields.String(required=True, validate=validate.OneOf(KINDS))


class SendAnswerSchema(ma.Schema):
    """Allowed or not, why, and the event that decided it."""

    allowed = ma.fields.Boolean()
    channel = ma.fields.String()
    kind = ma.fields.String()
    reason = ma.fields.String(metadata={"description": (
        "transactional_always_allowed | opted_in | opted_out | suppressed (opted out, "
        "then erased) | default_allowed | default_denied")})
    event_id = ma.fields.String(allow_none=True)
    decided_at = ma.fields.String(allow_none=True)
    policy_state = ma.fields.Nested(PolicyStateSchema, metadata={
        "description": "predates_material_version: the opt-in was given before the "
                       "material policy version in force took effect"})


class SuppressionQuery(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    channel = ma.fields.String(required=True, validate=validate.OneOf(MEDIA))
    kind = ma.fields.String(load_default="promotional",
                            validate=validate.OneOf(("promotional", "service")))
    format = ma.fields.String(load_default="json", validate=validate.OneOf(("json", "csv")))


KEY_FIELD = dict(validate=Exact(DEVICE_KEY_RE), metadata={
    "description": "The device key of the same consent cookie (its `k`): proves `subject`"})


class ProvenVisitorFields(StrictSchema):
    """`subject` with the device key of the same consent cookie, for calls that tie
    something to the visitor that its access and erasure requests then cover (an
    address, an account): the id alone proves nothing, since whoever talks to the site's
    frontend chooses which id it passes on."""

    subject = ma.fields.String(**SUBJECT_FIELD)
    key = ma.fields.String(**KEY_FIELD)

    @ma.validates_schema
    def _key_with_subject(self, data, **kwargs):
        if "subject" in data and "key" not in data:
            raise ma.ValidationError("the visitor's device key (the consent cookie's `k`) "
                                     "must come with `subject`", field_name="key")


class AddressSchema(ProvenVisitorFields):
    """An address of the site's user or of a visitor."""

    channel = ma.fields.String(required=True, validate=validate.OneOf(MEDIA))
    address = ma.fields.String(required=True, **ADDRESS_FIELD)
    user_id = ma.fields.String(**USER_FIELD)

    @ma.validates_schema
    def _one_owner(self, data, **kwargs):
        if ("subject" in data) == ("user_id" in data):
            raise ma.ValidationError("give exactly one of subject or user_id", "subject")


class AddressResultSchema(ma.Schema):
    address_ref = ma.fields.String()
    subject = ma.fields.String()
    carried_event_id = ma.fields.String(allow_none=True, metadata={
        "description": "An opt-out that moved with the address from its previous subject"})


class ChannelChoiceSchema(RecipientFields):
    """Opt-ins/opt-outs the site collected itself (checkout box, app settings)."""

    channels = ma.fields.Dict(keys=ma.fields.String(validate=validate.Length(1, 40)),
                              values=StrictBoolean(), required=True,
                              validate=validate.Length(1, len(CHANNELS)),
                              metadata={"description": "e.g. {\"push.promotional\": false}"})
    channel = ma.fields.String(validate=validate.OneOf(MEDIA),
                               metadata={"description": "The address's channel"})
    source = ma.fields.String(load_default="api", validate=validate.OneOf(("api", "push")))
    shown = shown_field()


class ChannelStateSchema(ma.Schema):
    subject = ma.fields.String()
    channels = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Boolean())
    event_id = ma.fields.String(allow_none=True)


class UnsubscribeLinkSchema(ProvenVisitorFields):
    """The recipient a List-Unsubscribe URL is for."""

    channel = ma.fields.String(required=True, validate=validate.OneOf(MEDIA))
    kind = ma.fields.String(load_default="promotional",
                            validate=validate.OneOf(("promotional", "service")))
    address = ma.fields.String(required=True, **ADDRESS_FIELD)
    user_id = ma.fields.String(**USER_FIELD)

    @ma.validates_schema
    def _one_owner(self, data, **kwargs):
        if "subject" in data and "user_id" in data:
            raise ma.ValidationError("give at most one of subject or user_id", "subject")


class UnsubscribeLinkResultSchema(ma.Schema):
    url = ma.fields.String()
    headers = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(),
                             metadata={"description": "List-Unsubscribe and "
                                                      "List-Unsubscribe-Post, ready to add"})
    channel = ma.fields.String()
    address_ref = ma.fields.String()
    subject = ma.fields.String()
    expires_at = ma.fields.String()


class SmsInboundSchema(ma.Schema):
    """An inbound SMS as gateways post it (Twilio and Vonage field names accepted)."""

    class Meta:
        unknown = ma.EXCLUDE  # gateways send many more fields

    sender = ma.fields.String(required=True, data_key="from", validate=validate.Length(1, 40))
    body = ma.fields.String(required=True, validate=validate.Length(0, 1600))
    message_id = ma.fields.String(validate=validate.Length(1, 100))

    ALIASES = {"From": "from", "msisdn": "from", "Body": "body", "text": "body",
               "MessageSid": "message_id", "messageId": "message_id"}

    @ma.pre_load
    def _gateway_names(self, data, **kwargs):
        if not isinstance(data, Mapping):
            return data  # not an object: the schema refuses it (422), naming the body
        data = dict(data)
        for alias, name in self.ALIASES.items():
            if alias in data and name not in data:
                data[name] = data.pop(alias)
        return data


class SmsResultSchema(ma.Schema):
    result = ma.fields.String(metadata={"description": "opted_out | opted_in | ignored"})
    channel = ma.fields.String()
    event_id = ma.fields.String(allow_none=True)


class LoginLinkSchema(ProvenVisitorFields):
    """Whose preference center the link opens."""

    user_id = ma.fields.String(required=True, **USER_FIELD)
    ttl_seconds = ma.fields.Integer(validate=validate.Range(30, 86400), strict=True,
                                    metadata={"description": "Default 900"})
    locale = ma.fields.String(validate=validate.Length(2, 16))


class LoginLinkResultSchema(ma.Schema):
    url = ma.fields.String()
    expires_at = ma.fields.String()
    subject = ma.fields.String(metadata={"description": "The user's account subject id"})


class IdentityLinkSchema(StrictSchema):
    """The visitor the site's backend knows to be its user."""

    user_id = ma.fields.String(required=True, **USER_FIELD)
    subject = ma.fields.String(required=True, **SUBJECT_FIELD)
    key = ma.fields.String(required=True, **KEY_FIELD)


class IdentityLinkResultSchema(ma.Schema):
    subject = ma.fields.String(metadata={"description": "The user's account subject id"})
    linked = ma.fields.Boolean()
    event_id = ma.fields.String(allow_none=True)


def _recipient(data: dict) -> Recipient:
    return Recipient(subject=data.get("subject"), user_id=data.get("user_id"),
                     address=data.get("address"))


@blp.route("/sites/<site_key>/may-i-send", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(MayISendSchema)
@blp.response(200, SendAnswerSchema)
def post_may_i_send(data: dict, site_key: str):
    """May a message of this kind go to this recipient over this channel now?"""
    return may_i_send(site_key, data["channel"], data["kind"], _recipient(data))


def _csv_lines(rows: Iterator[Suppression]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csvcells.writer(buffer)
    writer.writerow(("subject", "address_ref", "since"))
    count = 0
    for row in rows:
        writer.writerow((row.subject or "", row.address_ref or "", row.since or ""))
        count += 1
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json_chunks(head: dict, rows: Iterator[Suppression]) -> Iterator[str]:
    opening = json.dumps(head, separators=(",", ":"))[:-1]
    yield opening + ',"suppressions":['
    parts, first = [], True
    for row in rows:
        item = json.dumps({"subject": row.subject, "address_ref": row.address_ref,
                           "since": row.since}, separators=(",", ":"))
        parts.append(item if first else "," + item)
        first = False
        if len(parts) >= 500:
            yield "".join(parts)
            parts = []
    yield "".join(parts) + "]}"


@blp.route("/sites/<site_key>/suppressions", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY, responses={"200": {
    "description": "Streamed list (JSON object or CSV with header subject,address_ref,since)",
    "content": {"application/json": {}, "text/csv": {}}}})
@blp.arguments(SuppressionQuery, location="query")
def get_suppressions(query: dict, site_key: str):
    """Everyone opted out of a channel, streamed as JSON or CSV."""
    key, rows = suppressions(site_key, query["channel"], query["kind"])
    stamp = iso(utcnow())
    filename = f"suppressions-{site_key}-{key}.{query['format']}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"',
               "Cache-Control": "no-store"}
    if query["format"] == "csv":
        return Response(stream_with_context(_csv_lines(rows)), mimetype="text/csv",
                        headers=headers)
    head = {"site": site_key, "channel": key, "generated_at": stamp}
    return Response(stream_with_context(_json_chunks(head, rows)),
                    mimetype="application/json", headers=headers)


@blp.route("/sites/<site_key>/channel-addresses", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(AddressSchema)
@blp.response(200, AddressResultSchema)
def post_address(data: dict, site_key: str):
    """Map an address to the site's user or a visitor (stored only as an HMAC)."""
    owner = Recipient(subject=data.get("subject"), user_id=data.get("user_id"),
                      key=data.get("key"))
    ref, subject, event = register_address(site_key, data["channel"], data["address"], owner)
    return {"address_ref": ref, "subject": subject.public_id,
            "carried_event_id": event.event_id if event else None}


@blp.route("/sites/<site_key>/channel-choices", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(ChannelChoiceSchema)
@blp.response(200, ChannelStateSchema)
def post_channel_choice(data: dict, site_key: str):
    """Record opt-ins or opt-outs the site collected itself (one event when anything changes)."""
    result = record_channel_choice(site_key, _recipient(data), data["channels"],
                                   medium=data.get("channel"), source=data["source"],
                                   ctx=request_context(),
                                   notice=(lambda site_id: keep_told(site_id, data["shown"]))
                                   if data.get("shown") else None)
    return {"subject": result.subject.public_id, "channels": result.channels,
            "event_id": result.event.event_id if result.event else None}


@blp.route("/sites/<site_key>/unsubscribe-links", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(UnsubscribeLinkSchema)
@blp.response(200, UnsubscribeLinkResultSchema)
def post_unsubscribe_link(data: dict, site_key: str):
    """Mint the RFC 8058 one-click unsubscribe URL for one recipient."""
    owner = Recipient(subject=data.get("subject"), user_id=data.get("user_id"),
                      key=data.get("key"))
    link = mint_unsubscribe_token(site_key, f"{data['channel']}.{data['kind']}",
                                  data["address"], owner)
    url = _public_url(site_snapshot(site_key), "unsubscribe.one_click", site_key=site_key, token=link.token)
    return {"url": url, "channel": link.channel, "address_ref": link.address_ref,
            "subject": link.subject, "expires_at": link.expires_at,
            "headers": {"List-Unsubscribe": f"<{url}>",
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}


@blp.route("/sites/<site_key>/sms/inbound", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY, requestBody={"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": SmsInboundSchema},
    "application/json": {"schema": SmsInboundSchema}}})
@blp.arguments(SmsInboundSchema, location="json_or_form")
@blp.response(200, SmsResultSchema)
def post_sms_inbound(data: dict, site_key: str):
    """SMS gateway webhook: STOP (and variants) opts out of promotional SMS, START back in."""
    result = sms_inbound(site_key, data["sender"], data["body"], request_context(),
                         data.get("message_id"))
    return {"result": result.result, "channel": "sms.promotional",
            "event_id": result.event.event_id if result.event else None}


# ---------------------------------------------------------------- SMS gateways


class GatewayRegistrationSchema(StrictSchema):
    """A gateway to receive inbound SMS from."""

    provider = ma.fields.String(required=True, validate=validate.OneOf(sms_gateways.PROVIDERS))
    signing_secret = ma.fields.String(validate=validate.Length(8, 256), metadata={
        "description": "The gateway's Auth Token (Twilio, Plivo) or signature secret "
                       "(Vonage). When given, every inbound request must be signed with it."})
    signature_method = ma.fields.String(
        validate=validate.OneOf(sms_gateways.VONAGE_METHODS),
        metadata={"description": "Vonage only: the signature method of the dashboard "
                                 "(default md5hash)"})


class GatewaySchema(ma.Schema):
    provider = ma.fields.String()
    signed = ma.fields.Boolean(metadata={"description": "Whether requests must be signed"})
    signature_method = ma.fields.String(allow_none=True)
    created_at = ma.fields.String()


class GatewayRegisteredSchema(GatewaySchema):
    token = ma.fields.String(metadata={"description": "The inbound token, shown only now"})
    inbound_url = ma.fields.String(metadata={
        "description": "Paste into the gateway's console (token as last path segment)"})
    basic_auth_url = ma.fields.String(metadata={
        "description": "The same with the token as HTTP Basic password"})


class GatewayListSchema(ma.Schema):
    gateways = ma.fields.List(ma.fields.Nested(GatewaySchema))


def _gateway_urls(site_key: str, provider: str, token: str) -> tuple[str, str]:
    bare = url_for(f"channels_api.sms_{provider}", site_key=site_key, _external=True)
    scheme, _, rest = bare.partition("://")
    return f"{bare}/{token}", f"{scheme}://{sms_gateways.BASIC_USER}:{token}@{rest}"


@blp.route("/sites/<site_key>/sms/gateways", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(GatewayRegistrationSchema)
@blp.response(201, GatewayRegisteredSchema)
def post_sms_gateway(data: dict, site_key: str):
    """Register (or re-register with a new token) an SMS gateway; returns its inbound URL."""
    reg = sms_gateways.register_gateway(site_key, data["provider"],
                                        signing_secret=data.get("signing_secret"),
                                        signature_method=data.get("signature_method"))
    inbound, basic = _gateway_urls(site_key, reg.provider, reg.token)
    return {"provider": reg.provider, "signed": reg.signed,
            "signature_method": reg.signature_method, "created_at": reg.created_at,
            "token": reg.token, "inbound_url": inbound, "basic_auth_url": basic}


@blp.route("/sites/<site_key>/sms/gateways", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, GatewayListSchema)
def get_sms_gateways(site_key: str):
    """The SMS gateways of the site (without their tokens)."""
    return {"gateways": [{"provider": g.provider, "signed": g.signing_secret is not None,
                          "signature_method": g.signature_method,
                          "created_at": iso(g.created_at)}
                         for g in sms_gateways.list_gateways(site_key)]}


@blp.route("/sites/<site_key>/sms/gateways/<provider>", methods=["DELETE"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(204)
def delete_sms_gateway(site_key: str, provider: str):
    """Remove an SMS gateway: its inbound URL stops working at once."""
    sms_gateways.remove_gateway(site_key, provider)


def _gateway_params() -> list[tuple[str, str]]:
    """Every parameter the gateway sent: the query of a GET, else the form or JSON body."""
    if request.method == "GET":
        return list(request.args.items(multi=True))
    if request.mimetype == "application/json":
        try:
            payload = json.loads(request.get_data(cache=True) or b"null")
        except ValueError:
            raise BadRequest("The request body is not valid JSON.")
        if not isinstance(payload, dict) or not all(
                isinstance(v, (str, int, float, bool)) or v is None for v in payload.values()):
            raise BadRequest("The request body must be a JSON object of plain values.")
        return [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in payload.items()
                if v is not None]
    return list(request.form.items(multi=True))


def _called_url() -> str:
    """The URL the gateway called, as it signed it: this server's public URL."""
    url = url_for(request.endpoint, _external=True, **(request.view_args or {}))
    query = request.query_string.decode("latin-1")
    return f"{url}?{query}" if query else url


XML_REPLY = '<?xml version="1.0" encoding="UTF-8"?>\n<Response/>\n'


def _gateway_reply(provider: str, result) -> Response:
    """The answer each gateway expects: TwiML, Plivo XML, or 204 for Vonage."""
    if provider == "vonage":
        response = Response(status=204)
    else:
        mimetype = "text/xml" if provider == "twilio" else "application/xml"
        response = Response(XML_REPLY, status=200, mimetype=mimetype)
    response.headers["X-Consent-Result"] = result.result
    return response


def _gateway_doc(provider: str, methods: tuple[str, ...], method: str = "POST"):
    """The OpenAPI description of a gateway's webhook: its form, its answer, its auth."""
    schema = sms_gateways.FIELDS[provider][0]
    content = {"application/x-www-form-urlencoded": {"schema": schema}}
    if provider == "vonage":
        content["application/json"] = {"schema": schema}
    signature = {"twilio": "X-Twilio-Signature (HMAC-SHA1 of the URL and the sorted POST "
                           "parameters, keyed with the auth token)",
                 "vonage": "the `sig` parameter (md5hash or HMAC with the signature secret "
                           "over the sorted parameters)",
                 "plivo": "X-Plivo-Signature-V3 and X-Plivo-Signature-V3-Nonce (HMAC-SHA256 "
                          "of the URL, parameters and nonce, keyed with the auth token)"}
    answer = ({"204": {"description": "Received (Vonage wants 200 or 204)"}}
              if provider == "vonage" else
              {"200": {"description": "Received; an empty reply "
                                      f"({'TwiML' if provider == 'twilio' else 'Plivo XML'})",
                       "content": {("text/xml" if provider == "twilio" else
                                    "application/xml"): {
                           "schema": {"type": "string"},
                           "example": '<?xml version="1.0" encoding="UTF-8"?>\n<Response/>\n'}},
                       "headers": {"X-Consent-Result": {
                           "description": "opted_out | opted_in | ignored",
                           "schema": {"type": "string"}}}}})
    doc = {
        "description": (
            f"Point {provider.title()}'s inbound-message webhook here "
            f"({' or '.join(methods)}). The inbound token of the gateway's registration "
            "(`POST /sms/gateways`) goes as the last path segment, or as the password of "
            "HTTP Basic credentials (user `sms`) on the URL without it. When the gateway's "
            f"signing secret is registered, {signature[provider]} must match (403 "
            "otherwise). The whole text must be an opt-out or opt-in word (docs/channels.md)."
            + (" A GET carries the same fields in its query." if "GET" in methods else "")),
        "responses": {**answer, "401": "UNAUTHORIZED", "403": "FORBIDDEN",
                      "422": "UNPROCESSABLE_ENTITY"},
        "security": [{"smsGatewayBasic": []}, {}],
    }
    if method == "POST":
        doc["requestBody"] = {"required": True, "content": content}
    else:
        fields = schema._declared_fields
        doc["parameters"] = [
            {"in": "query", "name": name, "required": field.required,
             "schema": {"type": "string"}}
            for name, field in fields.items()] + [
            {"in": "query", "name": extra, "required": False, "schema": {"type": "string"},
             "description": "Vonage's signature fields (signed webhooks)"}
            for extra in (("sig", "timestamp", "nonce") if provider == "vonage" else ())]
    return blp.doc(**doc)


def _receive(provider: str, site_key: str, token: str | None):
    auth = request.authorization
    basic = auth if auth is not None and auth.type == "basic" else None
    result = sms_gateways.receive(site_key, provider, url=_called_url(),
                                  method=request.method, params=_gateway_params(),
                                  headers=request.headers, ctx=request_context(),
                                  token=token, basic_password=basic and basic.password,
                                  basic_user=basic and basic.username)
    return _gateway_reply(provider, result)


@blp.route("/sites/<site_key>/sms/twilio", methods=["POST"], endpoint="sms_twilio")
@blp.route("/sites/<site_key>/sms/twilio/<token>", methods=["POST"],
           endpoint="sms_twilio_token")
@_gateway_doc("twilio", ("POST",))
def post_sms_twilio(site_key: str, token: str | None = None):
    """Twilio's "a message comes in" webhook: STOP and the other keywords."""
    return _receive("twilio", site_key, token)


@blp.route("/sites/<site_key>/sms/vonage", endpoint="sms_vonage")
@blp.route("/sites/<site_key>/sms/vonage/<token>", endpoint="sms_vonage_token")
class SmsVonage(MethodView):
    """Vonage's inbound SMS webhook (GET, POST form or POST JSON)."""

    @_gateway_doc("vonage", ("GET", "POST"), "GET")
    def get(self, site_key: str, token: str | None = None):
        """Vonage's inbound SMS webhook, GET (Vonage's default)."""
        return _receive("vonage", site_key, token)

    @_gateway_doc("vonage", ("GET", "POST"), "POST")
    def post(self, site_key: str, token: str | None = None):
        """Vonage's inbound SMS webhook, POST form or POST-JSON."""
        return _receive("vonage", site_key, token)


@blp.route("/sites/<site_key>/sms/plivo", endpoint="sms_plivo")
@blp.route("/sites/<site_key>/sms/plivo/<token>", endpoint="sms_plivo_token")
class SmsPlivo(MethodView):
    """Plivo's message URL: incoming messages."""

    @_gateway_doc("plivo", ("POST", "GET"), "GET")
    def get(self, site_key: str, token: str | None = None):
        """Plivo's message URL with the GET method."""
        return _receive("plivo", site_key, token)

    @_gateway_doc("plivo", ("POST", "GET"), "POST")
    def post(self, site_key: str, token: str | None = None):
        """Plivo's message URL, POST form (Plivo's default)."""
        return _receive("plivo", site_key, token)


@blp.route("/sites/<site_key>/login-links", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(LoginLinkSchema)
@blp.response(200, LoginLinkResultSchema)
def post_login_link(data: dict, site_key: str):
    """A signed, expiring, single-use link to the preference center for a known user."""
    minted = mint_login_token(site_key, data["user_id"], device_public_id=data.get("subject"),
                              device_key=data.get("key"),
                              ttl_seconds=data.get("ttl_seconds"))
    params = {"site": site_key, "token": minted.token}
    if data.get("locale"):
        params["lang"] = data["locale"]
    return {"url": _public_url(site_snapshot(site_key), "preferences.login_page", **params),
            "expires_at": minted.expires_at, "subject": minted.account}


@blp.route("/sites/<site_key>/identity-links", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(IdentityLinkSchema)
@blp.response(200, IdentityLinkResultSchema)
def post_identity_link(data: dict, site_key: str):
    """Link a visitor to the site's user; returns the account id to keep in the cookie."""
    result = link_user(site_key, data["user_id"], data["subject"], request_context(),
                       device_key=data["key"])
    return {"subject": result.account.public_id, "linked": result.event is not None,
            "event_id": result.event.event_id if result.event else None}
