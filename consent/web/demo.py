"""The demo page, the widget's files and the GPC well-known resource."""
from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import marshmallow as ma
from flask import Blueprint, current_app, jsonify, render_template, request

from ..sites import NotFound, SITE_KEY_RE, site_for_origin, site_snapshot
from ..widget_config import site_script
from ..validation import Exact
from .compressed import compressed
from .common import request_region, vary_by_region

bp = Blueprint("demo", __name__)

# How long browsers reuse the widget files without asking (they are the same for every
# site; a returning visitor downloads nothing else from the consent server).
WIDGET_MAX_AGE = 3600
# Date this server started honouring Global Privacy Control (the spec's `lastUpdate`).
GPC_LAST_UPDATE = "2026-11-22"


@bp.get("/")
def index():
    """A demo shop page with the widget and tagged scripts, under a strict CSP."""
    nonce = secrets.token_urlsafe(16)
    html = render_template("demo.html", nonce=nonce,
                           site_key=current_app.config.get("DEMO_SITE_KEY", "demo"))
    response = current_app.make_response(html)
    # The widget needs no inline style, <style> element or eval; inline tagged scripts
    # carry the page's nonce, which the widget copies when it runs them.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; frame-src 'self'; object-src 'none'; "
        "base-uri 'none'")
    return response


_files: dict[str, tuple[float, bytes, str]] = {}
_MIMETYPES = {".js": "text/javascript", ".css": "text/css"}


def _widget_file(name: str):
    path = Path(current_app.static_folder) / name
    mtime = path.stat().st_mtime
    hit = _files.get(name)
    if hit is None or hit[0] != mtime:  # re-read after a build
        data = path.read_bytes()
        hit = _files[name] = (mtime, data, hashlib.sha256(data).hexdigest()[:20])
    response = compressed(hit[1], hit[2], _MIMETYPES[path.suffix])
    response.cache_control.public = True
    response.cache_control.max_age = WIDGET_MAX_AGE
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response.make_conditional(request)


class ScriptQuery(ma.Schema):
    """`/consent.js?site=KEY[&lang=de]`: other parameters (cache busters) are ignored."""

    class Meta:
        unknown = ma.EXCLUDE

    # Any text: a key that names no site gets a script that says so (unknown_site_script).
    site = ma.fields.String()
    lang = ma.fields.String(validate=Exact(
        r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{1,8}){0,3}$", error="Not a language tag."))


_SCRIPT_QUERY = ScriptQuery()

# What a page gets for a mistyped or unknown key: an error in the console naming the key,
# a window.Consent whose get() is null (its choices refuse), Consent Mode's denied default,
# and no tag run. Served with status 200: browsers do not run a script answered with an
# error status, and then page code calling Consent.get() would throw.
UNKNOWN_SITE_SCRIPT = """/*! Consent widget: unknown site key, docs/widget.md */
(() => {
  const key = %s, W = window, dl = W.dataLayer = W.dataLayer || [];
  const msg = "consent: unknown site key '" + key + "' in the widget's script URL: no banner, no " +
    "tag runs. Check site= against the site's key (flask consent check-site KEY).";
  console.error(msg);
  (function () { dl.push(arguments); })("consent", "default", {ad_storage: "denied",
    ad_user_data: "denied", ad_personalization: "denied", analytics_storage: "denied",
    functionality_storage: "denied", personalization_storage: "denied",
    security_storage: "granted"});
  const no = () => Promise.reject(Error(msg));
  W.Consent = W.Consent || {version: 1, unknownSite: true, get: () => null, acceptAll: no,
    rejectAll: no, set: no, show() {}, showPreferences() {}, onChange: () => () => {}};
})();
"""


def unknown_site_script(key: str):
    """The script for a key that names no site (see UNKNOWN_SITE_SCRIPT)."""
    literal = json.dumps(key[:64]).replace("<", "\\u003c").replace("\u2028", "\\u2028") \
        .replace("\u2029", "\\u2029")
    response = current_app.response_class(UNKNOWN_SITE_SCRIPT % literal,
                                          mimetype="text/javascript")
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "no-cache"  # the key may be created any minute
    response.headers["X-Consent-Site"] = "unknown"
    return response


@bp.get("/consent.js")
def widget_script():
    """The widget script; with `?site=KEY`, that site's config inlined (one request)."""
    args = _SCRIPT_QUERY.load(request.args)
    key = args.get("site")
    if key is not None and not SITE_KEY_RE.fullmatch(key):
        return unknown_site_script(key)
    if key is None:
        # `data-site` embed: the page's origin (Referer) usually names the site, so its
        # config can come along; the widget ignores it if the key differs.
        referrer = urlsplit(request.referrer or "")
        key = site_for_origin(f"{referrer.scheme}://{referrer.netloc}" if referrer.netloc else None)
        if key is None:
            return _widget_file("consent.js")  # the same for every site: cached for longer
    try:
        body, etag = site_script(key, args.get("lang"), request.headers.get("Accept-Language"),
                                 request_region().code)
    except NotFound:
        return unknown_site_script(key)
    response = compressed(body, etag, "text/javascript")
    response.headers["Access-Control-Allow-Origin"] = "*"
    # As long as the config document alone: a new policy version reaches visitors as fast.
    response.headers["Cache-Control"] = (
        f"public, max-age={current_app.config['CONSENT_CONFIG_MAX_AGE']}")
    if "lang" not in args:
        response.vary.add("Accept-Language")
    vary_by_region(response, site_snapshot(key).settings)
    # No `Vary: Referer` for a key found from the Referer: same-origin pages send their full
    # URL, so every page would miss the cache. Browsers partition their cache per top-level
    # site anyway, and a config reused elsewhere is ignored by the widget (key check).
    return response.make_conditional(request)


def _versioned_file(name: str):
    response = _widget_file(name)
    if request.args.get("v") and response.status_code == 200:
        # consent.js asks for ?v=<hash of this file's build>: a new build is a new URL.
        response.cache_control.max_age = 365 * 86400
        response.cache_control.immutable = True
    return response


@bp.get("/consent-more.js")
def widget_second_part():
    """The widget's second part (sending, dialog, server check), loaded by consent.js."""
    return _versioned_file("consent-more.js")


@bp.get("/consent-region.js")
def widget_region_part():
    """The widget's part for opt-out and notice-only regions (consent.regions), loaded by
    the opt-out build only there: "Your Privacy Choices", __gpp and __uspapi."""
    return _versioned_file("consent-region.js")


@bp.get("/consent.css")
def widget_style():
    """The widget's stylesheet, loaded by the script with a <link> (strict-CSP safe)."""
    return _widget_file("consent.css")


@bp.get("/.well-known/gpc.json")
def gpc_support():
    """Global Privacy Control support resource (sites copy it to their own origin)."""
    response = jsonify(gpc=True, lastUpdate=GPC_LAST_UPDATE)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
