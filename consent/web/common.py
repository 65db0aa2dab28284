"""Helpers shared by the web surfaces: caller context and CORS for site origins."""
from __future__ import annotations

from flask import current_app, request

from ..decisions import RequestContext
from ..sites import NotFound, site_snapshot


def client_ip() -> str | None:
    """The caller's address (first X-Forwarded-For hop only behind a trusted proxy)."""
    if current_app.config.get("CONSENT_TRUST_PROXY"):
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.remote_addr


def request_context() -> RequestContext:
    """Caller context for the ledger: IP, user agent, GPC header."""
    return RequestContext(ip=client_ip(), user_agent=request.headers.get("User-Agent"),
                          gpc_header=request.headers.get("Sec-GPC", "").strip() == "1")


def apply_site_cors(response, site_key: str | None, *, methods: str = "GET, POST, OPTIONS"):
    """Allow the site's configured origins (and only them) to read the response."""
    origin = request.headers.get("Origin")
    response.vary.add("Origin")
    if not origin or not site_key:
        return response
    try:
        site = site_snapshot(site_key)
    except NotFound:
        return response
    if site.allows_origin(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = methods
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
    return response
