"""Downstream webhooks API: register endpoints, read the delivery log, retry dead letters.

Authenticated by the site's API key (`Authorization: Bearer ck_...`).
"""
from __future__ import annotations

import marshmallow as ma
from flask_smorest import Blueprint
from marshmallow import validate

from ..apidoc import problems
from ..database import iso
from ..outbox import (STATES, attempts_of, get_endpoint, get_message, list_endpoints,
                      list_messages, message_counts, register_endpoint, retry_dead,
                      set_endpoint_active, set_legacy_headers)
from ..validation import Exact, StrictBoolean, StrictSchema
from .auth import require_site_key

blp = Blueprint("webhooks_api", __name__, url_prefix="/api/v1/sites/<site_key>/webhooks",
                description="Downstream systems told about consent changes (signed "
                            "webhooks); site API key as bearer token.")

SECURITY = [{"siteApiKey": []}]


class EndpointInSchema(StrictSchema):
    """A downstream endpoint to register."""

    url = ma.fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                        validate=validate.Length(max=2048),
                        metadata={"description": "Where notifications are POSTed"})
    name = ma.fields.String(validate=validate.Length(1, 100))
    categories = ma.fields.List(
        ma.fields.String(validate=validate.Length(1, 40)), validate=validate.Length(max=50),
        metadata={"description": "Category keys it cares about, or ['*']"})
    channels = ma.fields.List(
        ma.fields.String(validate=validate.Length(1, 64)), validate=validate.Length(max=50),
        metadata={"description": "Channel keys or patterns (fnmatch), or ['*']"})
    secret = ma.fields.String(validate=validate.Length(24, 128), metadata={
        "description": "Signing secret; generated if absent. A Standard Webhooks secret "
                       "(whsec_ + base64 of 24-64 bytes) is kept; other text becomes "
                       "whsec_ + base64 of its bytes (the answer shows that form)"})


class EndpointPatchSchema(StrictSchema):
    """What an operator may change on an endpoint."""

    legacy_headers = StrictBoolean(required=True, metadata={
        "description": "false: stop sending the pre-Standard-Webhooks headers "
                       "(X-Consent-Timestamp, X-Consent-Signature, Idempotency-Key)"})


class EndpointSchema(ma.Schema):
    """A registered endpoint (the secret is shown only when it is created)."""

    id = ma.fields.Integer()
    name = ma.fields.String()
    url = ma.fields.String()
    categories = ma.fields.List(ma.fields.String())
    channels = ma.fields.List(ma.fields.String())
    active = ma.fields.Boolean()
    legacy_headers = ma.fields.Boolean(metadata={
        "description": "Also sends the pre-Standard-Webhooks headers (endpoints registered "
                       "before them, until turned off)"})
    created_at = ma.fields.Function(lambda e: iso(e.created_at))
    disabled_at = ma.fields.Function(lambda e: iso(e.disabled_at))
    secret_hint = ma.fields.Function(lambda e: e.secret_hint)
    consecutive_failures = ma.fields.Integer(
        metadata={"description": "Failed attempts in a row (0 when healthy)"})
    failing_since = ma.fields.Function(lambda e: iso(e.failing_since))
    paused_until = ma.fields.Function(
        lambda e: iso(e.paused_until),
        metadata={"description": "A failing endpoint's queue waits until then"})
    deliveries = ma.fields.Function(
        lambda e: message_counts(e.site_id, e.id),
        metadata={"description": "Notifications per state"})


class EndpointCreatedSchema(EndpointSchema):
    secret = ma.fields.String(attribute="signing_secret",
                              metadata={"description": "Signing secret, shown only once"})


class AttemptSchema(ma.Schema):
    """One line of the delivery log."""

    attempt = ma.fields.Integer()
    outcome = ma.fields.String()
    status_code = ma.fields.Integer(allow_none=True)
    error = ma.fields.String(allow_none=True)
    worker = ma.fields.String(allow_none=True)
    started_at = ma.fields.Function(lambda a: iso(a.started_at))
    finished_at = ma.fields.Function(lambda a: iso(a.finished_at))
    duration_ms = ma.fields.Integer(allow_none=True)


class MessageSchema(ma.Schema):
    """One notification of one event to one endpoint."""

    id = ma.fields.Integer()
    idempotency_key = ma.fields.String()
    event_id = ma.fields.String()
    endpoint_id = ma.fields.Integer()
    type = ma.fields.String(attribute="kind")
    state = ma.fields.String()
    attempts = ma.fields.Integer()
    created_at = ma.fields.Function(lambda m: iso(m.created_at))
    next_attempt_at = ma.fields.Function(
        lambda m: iso(m.next_attempt_at) if m.state == "pending" else None)
    acknowledged_at = ma.fields.Function(lambda m: iso(m.acknowledged_at))
    dead_at = ma.fields.Function(lambda m: iso(m.dead_at))
    last_status = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String(allow_none=True)


class MessageDetailSchema(MessageSchema):
    payload = ma.fields.Dict()
    log = ma.fields.List(ma.fields.Nested(AttemptSchema))


class MessageListSchema(ma.Schema):
    deliveries = ma.fields.List(ma.fields.Nested(MessageSchema))
    next_before = ma.fields.Integer(allow_none=True,
                                    metadata={"description": "Pass as `before` for more"})


class MessageQuerySchema(StrictSchema):
    state = ma.fields.String(validate=validate.OneOf(STATES))
    endpoint = ma.fields.Integer(validate=validate.Range(min=1))
    event = ma.fields.String(validate=Exact(r"^[0-9a-f]{32}$"))
    before = ma.fields.Integer(validate=validate.Range(min=1))
    limit = ma.fields.Integer(load_default=50, validate=validate.Range(1, 500))


class RetrySchema(ma.Schema):
    requeued = ma.fields.Integer()


@blp.route("/endpoints", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(EndpointInSchema)
@blp.response(201, EndpointCreatedSchema)
def create_endpoint(data: dict, site_key: str):
    """Register a downstream endpoint; the answer carries its signing secret once."""
    endpoint, _secret = register_endpoint(site_key, **data)
    return endpoint


@blp.route("/endpoints", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, EndpointSchema(many=True))
def get_endpoints(site_key: str):
    """Every endpoint of the site, disabled ones too."""
    return list_endpoints(site_key)


@blp.route("/endpoints/<int:endpoint_id>", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, EndpointSchema)
def get_one_endpoint(site_key: str, endpoint_id: int):
    """One endpoint with its delivery counts."""
    return get_endpoint(site_key, endpoint_id)


@blp.route("/endpoints/<int:endpoint_id>", methods=["PATCH"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(EndpointPatchSchema)
@blp.response(200, EndpointSchema)
def patch_endpoint(data: dict, site_key: str, endpoint_id: int):
    """Turn the pre-Standard-Webhooks headers of an endpoint off (or on again)."""
    return set_legacy_headers(site_key, endpoint_id, data["legacy_headers"])


@blp.route("/endpoints/<int:endpoint_id>/disable", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, EndpointSchema)
def disable_endpoint(site_key: str, endpoint_id: int):
    """Stop notifying an endpoint; its unsent notifications become dead letters."""
    return set_endpoint_active(site_key, endpoint_id, False)


@blp.route("/endpoints/<int:endpoint_id>/enable", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, EndpointSchema)
def enable_endpoint(site_key: str, endpoint_id: int):
    """Notify a disabled endpoint again (retry its dead letters separately)."""
    return set_endpoint_active(site_key, endpoint_id, True)


@blp.route("/endpoints/<int:endpoint_id>/retry", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, RetrySchema)
@problems(409)
def retry_endpoint_dead(site_key: str, endpoint_id: int):
    """Requeue every dead letter of an endpoint."""
    get_endpoint(site_key, endpoint_id)
    return {"requeued": retry_dead(site_key, endpoint_id=endpoint_id, actor="site API key")}


@blp.route("/deliveries", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(MessageQuerySchema, location="query", as_kwargs=True)
@blp.response(200, MessageListSchema)
def get_deliveries(site_key: str, limit: int, state=None, endpoint=None, event=None,
                   before=None):
    """The delivery log: notifications newest first, filtered by state, endpoint, event."""
    rows = list_messages(site_key, state=state, endpoint_id=endpoint, event_id=event,
                         before_id=before, limit=limit)
    return {"deliveries": rows, "next_before": rows[-1].id if len(rows) == limit else None}


@blp.route("/deliveries/<int:message_id>", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, MessageDetailSchema)
def get_delivery(site_key: str, message_id: int):
    """One notification with its body and every attempt."""
    message = get_message(site_key, message_id)
    message.log = attempts_of(message.id)
    return message


@blp.route("/deliveries/<int:message_id>/retry", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, RetrySchema)
@problems(409)
def retry_delivery(site_key: str, message_id: int):
    """Requeue one dead letter (409 when it is not dead)."""
    return {"requeued": retry_dead(site_key, message_id=message_id, actor="site API key")}
