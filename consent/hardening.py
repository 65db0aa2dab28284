"""Request and response rules every surface gets, applied centrally by the app factory:

- the public URL: in production every link and widget configuration is built from
  CONSENT_PUBLIC_URL (never from the request's Host header), and requests naming another
  host are refused (Flask's TRUSTED_HOSTS);
- trusted proxies: X-Forwarded-* is believed only for the configured number of hops
  (werkzeug's ProxyFix);
- request limits answered as problem+json (not the server's HTML): a request line or
  header above the configured size, JSON nested deeper than CONSENT_MAX_JSON_DEPTH,
  text carrying a lone UTF-16 surrogate, an Origin or Referer that is not a URL; a
  consent cookie nested too deep is ignored rather than refused;
- framing: every HTML page says `frame-ancestors 'none'` and `X-Frame-Options: DENY`
  (clickjacking of the preference, unsubscribe, my-data and admin pages); the widget
  script, the JSON API and static files are not pages and are left alone.
"""
from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from flask import Flask, current_app, request
from werkzeug.exceptions import BadRequest, RequestHeaderFieldsTooLarge, RequestURITooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.urls import uri_to_iri

log = logging.getLogger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_BRACKETS = re.compile(rb"[\[\]{}]")
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
FRAME_CSP = "frame-ancestors 'none'"


class BadInput(BadRequest):
    """A request refused before any view ran (answered as problem+json or a page)."""


# ---------------------------------------------------------------- set-up


_said: set[str] = set()


def init_app(app: Flask) -> None:
    """Install the public URL, proxy trust, request limits and framing headers."""
    if app.config.get("ENV_NAME") == "development" and "guard" not in _said:
        _said.add("guard")
        log.warning("development mode: webhook receivers on internal addresses are "
                    "accepted and called (the production address guard is off)")
    _configure_public_url(app)
    _configure_proxies(app)
    # First of all before_request functions: nothing may parse a body before it is checked.
    app.before_request_funcs.setdefault(None, []).insert(0, check_request)
    app.after_request(frame_headers)


def _configure_public_url(app: Flask) -> None:
    url = (app.config.get("CONSENT_PUBLIC_URL") or "").strip()
    production = app.config.get("ENV_NAME") == "production"
    if not url:
        if production:
            raise RuntimeError(
                "CONSENT_PUBLIC_URL must be set in production (e.g. "
                "https://consent.example.com): links and the widget configuration are "
                "built from it, never from the request's Host header")
        return  # development: links follow the request's host (`make run` on any port)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment or parts.username or parts.password:
        raise RuntimeError(f"CONSENT_PUBLIC_URL={url!r} is not a URL such as "
                           "https://consent.example.com[/prefix]")
    if production and parts.scheme != "https":
        raise RuntimeError("CONSENT_PUBLIC_URL must be an https URL in production")
    script_name = parts.path.rstrip("/") or ""
    app.config["SERVER_NAME"] = parts.netloc
    app.config["PREFERRED_URL_SCHEME"] = parts.scheme
    app.config["APPLICATION_ROOT"] = script_name or "/"
    if app.config.get("TRUSTED_HOSTS") is None:
        app.config["TRUSTED_HOSTS"] = [parts.hostname] + list(
            app.config.get("CONSENT_EXTRA_HOSTS") or [])

    build_url_adapter = app.create_url_adapter

    def create_url_adapter(req):
        # Flask binds SERVER_NAME as the host of built URLs; scheme and prefix would
        # still come from the request (http behind a TLS proxy): take them from the
        # public URL too.
        adapter = build_url_adapter(req)
        if adapter is not None and req is not None:
            adapter.url_scheme = parts.scheme
            adapter.script_name = script_name + "/"
        return adapter

    app.create_url_adapter = create_url_adapter


def _configure_proxies(app: Flask) -> None:
    hops = {name: int(app.config.get(f"CONSENT_PROXY_{name.upper()}") or 0)
            for name in ("for", "proto", "host", "port", "prefix")}
    if any(hops.values()):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops["for"], x_proto=hops["proto"],
                                x_host=hops["host"], x_port=hops["port"],
                                x_prefix=hops["prefix"])


# ---------------------------------------------------------------- requests


def check_request() -> None:
    """Refuse oversized request lines and headers, malformed Origin/Referer and JSON
    bodies nested too deep or carrying lone surrogates; drop a pathological cookie."""
    # (Runs on every request, the consent write included: one pass over the headers, the
    # Origin/Referer check memoised, the body looked at only when it could be JSON.)
    # (`current_app.config` on the proxy raises and catches an AttributeError before its
    # __getattr__ runs: a dozen a consent write; the object itself is read directly)
    config = current_app._get_current_object().config
    req = request._get_current_object()
    environ = req.environ
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or (
        environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", ""))
    if len(uri) > config["CONSENT_MAX_URL_BYTES"]:
        raise RequestURITooLarge(f"The URL is longer than {config['CONSENT_MAX_URL_BYTES']} "
                                 "bytes.")
    limit = config["CONSENT_MAX_HEADER_BYTES"]
    sizes = [len(k) + len(v) for k, v in environ.items() if k.startswith("HTTP_")]
    if sizes and (max(sizes) > limit or sum(sizes) > 4 * limit):
        raise RequestHeaderFieldsTooLarge(
            f"A request header is larger than {limit} bytes, or all of them together "
            f"larger than {4 * limit}.")
    host = environ.get("HTTP_HOST")
    if host and not _is_host(host):
        raise BadInput("The Host header is not a host name.")
    origin, referer = environ.get("HTTP_ORIGIN"), environ.get("HTTP_REFERER")
    if origin and origin != "null" and not _is_url(origin):
        raise BadInput("The Origin header is not a URL.")
    if referer and not _is_url(referer):
        raise BadInput("The Referer header is not a URL.")
    cookie = environ.get("HTTP_COOKIE")
    if cookie and ("{" in cookie or "[" in cookie or "%7" in cookie or "%5" in cookie):
        _drop_deep_cookies(cookie, config["CONSENT_MAX_JSON_DEPTH"])
    if environ.get("REQUEST_METHOD") in ("POST", "PUT", "PATCH", "DELETE") and (
            environ.get("CONTENT_LENGTH") not in (None, "", "0")
            or environ.get("HTTP_TRANSFER_ENCODING")) \
            and not environ.get("CONTENT_TYPE", "").startswith(FORM_TYPES):
        # Views read JSON with any content type (beacons send text/plain); the body is
        # cached, so the view's own read gets the same bytes.
        problem = json_problem(req.get_data(cache=True), config["CONSENT_MAX_JSON_DEPTH"])
        if problem:
            raise BadInput(problem)


@lru_cache(maxsize=256)
def _is_host(value: str) -> bool:
    # What Werkzeug does with the Host header when the app builds a URL from it
    # (request.host_url, in development): its IDNA round trip raises on names such as
    # "xn--a" or labels longer than 63 characters.
    try:
        uri_to_iri(f"http://{value}/")
        f"http://{value}/".encode("ascii")  # (a Host header is ASCII on the wire)
    except (UnicodeError, ValueError):
        return False
    return True


@lru_cache(maxsize=4096)
def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port or IPv6 literal
        parts.hostname  # noqa: B018
    except ValueError:
        return False
    return True


def json_depth_exceeds(raw: bytes | str, limit: int) -> bool:
    """Whether JSON text RAW nests arrays/objects deeper than LIMIT (strings skipped)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", data)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _has_lone_surrogate(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def json_problem(raw: bytes | str, limit: int) -> str | None:
    """Why the JSON text RAW must be refused before parsing it for real, or None. Text
    that is not JSON at all is left to the view (its own 400)."""
    if not raw:
        return None
    if json_depth_exceeds(raw, limit):
        return f"The JSON is nested deeper than {limit} levels."
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _SURROGATE_ESCAPE.search(data):
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError):
            return None
        if _has_lone_surrogate(parsed):
            return "The JSON holds text with a lone UTF-16 surrogate (not a character)."
    return None


def load_json_text(text: str, limit: int = 32):
    """json.loads for text from a form field (e.g. services JSON): refuses deep nesting
    and lone surrogates with ValueError instead of crashing later."""
    problem = json_problem(text, limit)
    if problem:
        raise ValueError(problem)
    return json.loads(text)


def _drop_deep_cookies(header: str, limit: int) -> None:
    # A cookie is the visitor's own state: one mangled beyond use is ignored (as if
    # absent), not answered with an error the visitor cannot get rid of.
    kept, dropped = [], False
    for part in header.split(";"):
        name, _, value = part.partition("=")
        text = unquote(value.strip().strip('"'))
        if ("[" in text or "{" in text) and json_problem(text, limit):
            dropped = True
            continue
        kept.append(part)
    if dropped:
        request.environ["HTTP_COOKIE"] = ";".join(kept)
        request.__dict__.pop("cookies", None)


# ---------------------------------------------------------------- responses


def frame_headers(response):
    """No HTML page of this app may be framed by another page."""
    if response.mimetype != "text/html" or request.endpoint == "static":
        return response
    csp = response.headers.get("Content-Security-Policy")
    if not csp:
        response.headers["Content-Security-Policy"] = FRAME_CSP
    elif "frame-ancestors" not in csp:
        response.headers["Content-Security-Policy"] = csp.rstrip("; ") + "; " + FRAME_CSP
    response.headers["X-Frame-Options"] = "DENY"
    return response
