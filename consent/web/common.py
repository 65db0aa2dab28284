"""Helpers shared by the web surfaces: caller context and CORS for site origins."""
from __future__ import annotations

import functools
import json

import marshmallow as ma
from flask import current_app, has_request_context, request
from werkzeug.exceptions import BadRequest

from ..decisions import RequestContext
from ..regions import Region, applies, detect_region, parse_header_setting
from ..sites import NotFound, site_snapshot


def token_page(response):
    """A page whose URL carries a credential (unsubscribe, guardian, login and access
    links): keep the URL out of caches, referrers and search engines."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def load_json(schema: ma.Schema) -> dict:
    """Parse the request body as JSON (any content type, so offline beacons sent as
    text/plain work too) and validate it with SCHEMA; 400/422 problem on failure."""
    # (the request object itself: an attribute of the proxy raises and catches an
    # AttributeError before its __getattr__ runs)
    raw = request._get_current_object().get_data(cache=False)
    # (consent.hardening has refused deep nesting and lone surrogates already.)
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        raise BadRequest("The request body is not valid JSON.")
    if payload is None:
        raise BadRequest("The request body must be a JSON object.")
    return schema.load(payload)


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # (json.dumps would build one per call)


def shown_field() -> ma.fields.String:
    """`shown`, for the APIs through which a site's backend reports a choice it collected
    itself: the words the person was shown, kept as a notice (consent.notices.keep_told)."""
    return ma.fields.String(validate=ma.validate.Length(1, 10_000), metadata={
        "description": "The words the person was shown when they made this choice (the "
                       "sign-up box's label, the sentence above it), as your page showed "
                       "them. Kept unchangeable under their SHA-256, which the event "
                       "records as `meta.notice` (GET .../notices/{digest})"})


def json_response(body, status: int = 200, headers: dict | None = None):
    """A JSON response built directly (the hot path skips schema dumping)."""
    response = current_app._get_current_object().response_class(  # (as load_json)
        _COMPACT.encode(body), status=status, mimetype="application/json")
    if headers:
        response.headers.update(headers)
    return response


def client_ip(req=None) -> str | None:
    """The caller's address. Behind trusted proxies (CONSENT_PROXY_FOR hops, or
    CONSENT_TRUST_PROXY=1 for one) ProxyFix has already taken it from X-Forwarded-For,
    counting from the right: the left-most entry is whatever the client sent."""
    return (req or request).remote_addr


@functools.lru_cache(maxsize=4)
def _trusted_region_headers(setting: str) -> list[tuple[str, str | None]]:
    return parse_header_setting(setting)


def region_headers() -> list[tuple[str, str | None]]:
    """The (country, subdivision) headers the operator trusts (CONSENT_REGION_HEADERS)."""
    return _trusted_region_headers(current_app.config.get("CONSENT_REGION_HEADERS", ""))


def request_region(req=None) -> Region:
    """The caller's region: a trusted CDN header, else the offline IP database (REQ: the
    current request, when the caller holds it already)."""
    req = req or request._get_current_object()
    config = current_app._get_current_object().config  # (as load_json)
    return detect_region(req.headers, req.remote_addr,
                         trusted_headers=_trusted_region_headers(
                             config.get("CONSENT_REGION_HEADERS", "")),
                         use_ip=config.get("CONSENT_REGION_IP", True))


# The surfaces a person reaches with their own browser: there the request's region is
# theirs. Anything else (the site's backend, staff, an SMS gateway, a mail provider's
# one-click unsubscribe, a job) says nothing about where the person is.
_VISITOR_BLUEPRINTS = frozenset({"widget_api", "preferences", "guardian", "my_data"})
_VISITOR_SOURCES = frozenset({"banner", "preferences", "gpc", "email_link"})


def region_of_event(site, source: str) -> dict:
    """What an event on a site with rules by region records about where the person was:
    the region and the rule in force there, or `region: None` when the event did not
    come from the person's own browser (consent.ledger.set_region_hook)."""
    if (source in _VISITOR_SOURCES and has_request_context()
            and request.blueprint in _VISITOR_BLUEPRINTS):
        code = request_region().code
        return {"region": code, "rule": applies(site.settings, code)}
    return {"region": None}


def vary_by_region(response, site_settings: dict) -> None:
    """Keep shared caches from serving one region's answer in another: `Vary` on the
    trusted headers, or `private` when the region comes from the caller's address."""
    if not site_settings.get("regions"):
        return  # the same answer everywhere
    headers = region_headers()
    for country, sub in headers:
        response.vary.add(country)
        if sub:
            response.vary.add(sub)
    if not headers:  # the region came from the caller's address: no shared cache may keep it
        response.headers["Cache-Control"] = response.headers.get(
            "Cache-Control", "").replace("public", "private") or "private"


def request_context(req=None) -> RequestContext:
    """Caller context for the ledger: IP, user agent, GPC header (REQ: as above)."""
    req = req or request._get_current_object()
    # (the environ itself: werkzeug's header look-up raises and catches a KeyError for
    # every header the request lacks, and the consent write asks for several)
    environ = req.environ
    return RequestContext(ip=req.remote_addr, user_agent=environ.get("HTTP_USER_AGENT"),
                          gpc_header=environ.get("HTTP_SEC_GPC", "").strip() == "1")


def apply_site_cors(response, site_key: str | None, *, methods: str = "GET, POST, OPTIONS",
                    req=None):
    """Allow the site's configured origins (and only them) to read the response."""
    req = req or request._get_current_object()
    origin = req.environ.get("HTTP_ORIGIN")  # (as request_context: no KeyError)
    # (getlist, not `"Vary" in headers`: that raises and catches a BadRequestKeyError
    # whenever the header is absent, as it is on the consent write's answer)
    if response.headers.getlist("Vary"):
        response.vary.add("Origin")
    else:
        response.headers["Vary"] = "Origin"  # (response.vary parses and rebuilds the header)
    if not origin or not site_key:
        return response
    try:
        site = site_snapshot(site_key)
    except NotFound:
        return response
    if site.allows_origin(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        if req.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = methods
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
    return response
