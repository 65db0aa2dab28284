"""Public endpoints the browser widget calls (CORS: the site's own origins only)."""
from __future__ import annotations

import inspect

from flask import current_app, make_response, request
from flask_smorest import Blueprint
import marshmallow as ma
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from ..database import iso
from ..decisions import (ConsentViewSchema, DecisionResultSchema, DecisionSchema,
                         LeanDecisionLoader,
                         read_my_consent, record_decision)
from ..errors import DomainError
from ..refusals import OriginRefused, note_refusal
from ..sites import NotFound, site_snapshot
from ..subjects import READ_TOKEN_RE
from ..apidoc import PROBLEM, ProblemSchema, problems
from ..widget_config import WidgetConfigSchema, config_document, server_cookie_header
from ..validation import Exact
from .common import (apply_site_cors, json_response, load_json, request_context,
                     request_region, vary_by_region)

blp = Blueprint("widget_api", __name__, url_prefix="/api/v1",
                description="Public endpoints the widget calls from visitors' browsers.")


class ConfigQuery(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    locale = ma.fields.String(validate=ma.validate.Length(2, 16))
    details = ma.fields.Boolean(load_default=False, metadata={
        "description": "Also what the preferences dialog shows (category descriptions, "
                       "services) and the endpoints; without it, what the banner needs"})


class MeQuery(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    r = ma.fields.String(validate=Exact(READ_TOKEN_RE), metadata={
        "description": "The device's read token (`r` in the consent cookie, `read_token` "
                       "in the decision's answer)"})


@blp.after_request
def _cors(response):
    req = request._get_current_object()  # (one proxy look-up, not five: the hot path)
    site_key = (req.view_args or {}).get("site_key")
    response = apply_site_cors(response, site_key, req=req)
    if response.status_code < 400:
        return response
    origin = req.environ.get("HTTP_ORIGIN")
    if req.endpoint in ("widget_api.post_decision", "widget_api.get_config") and origin \
            and "Access-Control-Allow-Origin" not in response.headers:
        # A refusal (or an unknown site key) carries no one's data: let the page read why,
        # so the widget can say so instead of a bare CORS error.
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


@blp.route("/sites/<site_key>/config", methods=["GET"])
@blp.arguments(ConfigQuery(), location="query", as_kwargs=True)
@blp.response(200, WidgetConfigSchema)
@blp.alt_response(304, description="Unchanged since the copy the browser holds (ETag)")
def get_config(site_key: str, locale: str | None = None, details: bool = False):
    """Site configuration and strings for the widget (cacheable)."""
    payload, etag = config_document(site_key, locale, request.headers.get("Accept-Language"),
                                    details=details, region=request_region().code)
    response = make_response(payload)
    response.mimetype = "application/json"
    response.set_etag(etag)
    response.headers["Cache-Control"] = (
        f"public, max-age={current_app.config['CONSENT_CONFIG_MAX_AGE']}")
    if locale is None:
        response.vary.add("Accept-Language")
    vary_by_region(response, site_snapshot(site_key).settings)
    return response.make_conditional(request)


_DECISION_SCHEMA = LeanDecisionLoader()


@blp.route("/sites/<site_key>/decisions", methods=["POST"])
# Parsed in the view (load_json) rather than by webargs: this is the hot path.
@blp.doc(requestBody={"required": True,
                      "content": {"application/json": {"schema": DecisionSchema}}})
@blp.response(201, DecisionResultSchema)
@blp.alt_response(200, schema=DecisionResultSchema, description="Replay of a recorded decision")
@blp.alt_response(403, schema=ProblemSchema, content_type=PROBLEM, description=(
    "Refused, nothing recorded; the problem's `type` says why: "
    "`tag:consent-manager,2026:visitor-key` (the visitor id came without the key of the "
    "browser that holds it: the widget starts a new visitor) or "
    "`tag:consent-manager,2026:origin` (the page's Origin is not one of the site's "
    "allowed origins). Readable by the page (CORS) even from a refused origin."),
    example={"type": "tag:consent-manager,2026:visitor-key", "title": "Visitor key refused",
             "status": 403, "detail": "This visitor id can only be used with the key kept "
             "by the browser that holds it (the consent cookie's k); nothing was recorded.",
             "errors": [{"pointer": "#/key", "detail": "This visitor id can only be used "
                         "with the key kept by the browser that holds it (the consent "
                         "cookie's k); nothing was recorded."}]})
@problems(422)
def post_decision(site_key: str):
    """Record a visitor's decision as a ledger event; returns their consent.

    A visitor id needs the key of the browser that holds it (403 otherwise); a browser's
    decision (with an Origin header) must come from one of the site's origins (403).
    """
    try:
        return _record(site_key)
    except (DomainError, ValidationError, HTTPException) as exc:
        note_refusal(site_key, exc)  # the refusal path only: accepted writes never count
        raise


@blp.record
def _serve_post_decision_unwrapped(state) -> None:
    # flask-smorest's decorators above only document the route (the view returns its own
    # Response); at request time each of their five wrappers would look up the app and
    # unpack the result again. The app serves the view itself; the docs are unchanged.
    state.app.view_functions[f"{state.name}.post_decision"] = inspect.unwrap(post_decision)


def _record(site_key: str):
    req = request._get_current_object()
    origin = req.environ.get("HTTP_ORIGIN")  # (not req.headers: see request_context)
    # Browsers send Origin on every POST; server callers without it prove the visitor
    # with its key all the same.
    site = site_snapshot(site_key) if origin else None
    if site is not None and not site.allows_origin(origin):
        raise OriginRefused(origin[:200], site_key)
    data = load_json(_DECISION_SCHEMA)
    ctx = request_context(req)
    # The region is recorded only on sites with rules by region (record_decision); the
    # snapshot is the one it reads first (cached), so an unknown site is still a 404
    # after the body's own errors.
    snapshot = site or site_snapshot(site_key)
    if "regions" in snapshot.settings:
        region = request_region(req)
        ctx.region, ctx.region_source = region.code, region.source
    result = record_decision(site_key, data, ctx, site=snapshot)
    body = {"event_id": result.event.event_id, "subject": result.subject_public_id,
            "read_token": result.read_token,
            "recorded_at": iso(result.event.recorded_at), "duplicate": result.event.duplicate,
            "consent": result.view}
    if result.minted_key:
        body["key"] = result.minted_key
    if result.signals:
        body["gpp"] = result.signals  # US opt-out visitors: the strings now in force
    if result.minor:
        body["minor"] = True  # screened as a minor's: the widget keeps what was recorded
    status = 200 if result.event.duplicate else 201
    # Same-site deployment: the server itself sets the consent cookie (see docs/widget.md).
    cookie = site and server_cookie_header(
        site, result.subject_public_id, result.view, req.is_secure,
        key=data.get("key") or result.minted_key, read_token=result.read_token,
        minor=result.minor)
    return json_response(body, status, {"Set-Cookie": cookie} if cookie else None)


@blp.route("/sites/<site_key>/me/<subject_id>", methods=["GET"])
@blp.arguments(MeQuery, location="query", as_kwargs=True)
@blp.response(200, ConsentViewSchema)
@blp.alt_response(304, description="Unchanged since the copy the browser holds (ETag)")
def get_my_consent(site_key: str, subject_id: str, r: str | None = None):
    """The current consent of the visitor whose cookie holds SUBJECT_ID and read token R.

    Without the right token the answer is 404, as for an unknown visitor. The ETag changes
    with the visitor's last event and with the site's configuration; the widget asks once
    per browser session (a conditional request, 304 when nothing changed).
    """
    mine = read_my_consent(site_key, subject_id, r)
    if mine is None or mine.view is None:
        raise NotFound("subject", subject_id[:64])
    response = json_response(mine.view)
    response.set_etag(mine.etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response.make_conditional(request)
