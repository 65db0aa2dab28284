"""Public endpoints the browser widget calls (CORS: the site's own origins only)."""
from __future__ import annotations

from flask import current_app, make_response, request
from flask_smorest import Blueprint
import marshmallow as ma

from ..decisions import (ConsentViewSchema, DecisionResultSchema, DecisionSchema,
                         read_my_consent, record_decision)
from ..database import iso
from ..errors import Forbidden
from ..sites import NotFound, site_snapshot
from ..widget_config import config_document, server_cookie_header
from .common import apply_site_cors, json_response, load_json, request_context

blp = Blueprint("widget_api", __name__, url_prefix="/api/v1",
                description="Public endpoints the widget calls from visitors' browsers.")


class ConfigQuery(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    locale = ma.fields.String(validate=ma.validate.Length(2, 16))


@blp.after_request
def _cors(response):
    site_key = (request.view_args or {}).get("site_key")
    return apply_site_cors(response, site_key)


@blp.route("/sites/<site_key>/config", methods=["GET"])
@blp.arguments(ConfigQuery(), location="query", as_kwargs=True)
@blp.response(200)
def get_config(site_key: str, locale: str | None = None):
    """Site configuration and strings for the widget (cacheable)."""
    payload, etag = config_document(site_key, locale, request.headers.get("Accept-Language"))
    response = make_response(payload)
    response.mimetype = "application/json"
    response.set_etag(etag)
    response.headers["Cache-Control"] = (
        f"public, max-age={current_app.config['CONSENT_CONFIG_MAX_AGE']}")
    if locale is None:
        response.vary.add("Accept-Language")
    return response.make_conditional(request)


_DECISION_SCHEMA = DecisionSchema()


@blp.route("/sites/<site_key>/decisions", methods=["POST"])
# Parsed in the view (load_json) rather than by webargs: this is the hot path.
@blp.doc(requestBody={"required": True,
                      "content": {"application/json": {"schema": DecisionSchema}}})
@blp.response(201, DecisionResultSchema)
@blp.alt_response(200, schema=DecisionResultSchema, description="Replay of a recorded decision")
def post_decision(site_key: str):
    """Record a visitor's decision as a ledger event; returns their consent."""
    data = load_json(_DECISION_SCHEMA)
    origin = request.headers.get("Origin")
    # Browsers send Origin on every POST; calls without it skip the per-site checks.
    site = site_snapshot(site_key) if origin else None
    if site is not None and not site.allows_origin(origin):
        raise Forbidden(f"origin {origin!r} is not allowed for site {site_key!r}")
    result = record_decision(site_key, data, request_context())
    body = {"event_id": result.event.event_id, "subject": result.subject_public_id,
            "recorded_at": iso(result.event.recorded_at), "duplicate": result.event.duplicate,
            "consent": result.view}
    status = 200 if result.event.duplicate else 201
    # Same-site deployment: the server itself sets the consent cookie (see docs/widget.md).
    cookie = site and server_cookie_header(site, result.subject_public_id, result.view,
                                           request.is_secure)
    return json_response(body, status, {"Set-Cookie": cookie} if cookie else None)


@blp.route("/sites/<site_key>/me/<subject_id>", methods=["GET"])
@blp.response(200, ConsentViewSchema)
def get_my_consent(site_key: str, subject_id: str):
    """The current consent of the visitor whose cookie holds SUBJECT_ID."""
    subject, view = read_my_consent(site_key, subject_id)
    if subject is None or view is None:
        raise NotFound("subject", subject_id[:64])
    return view
