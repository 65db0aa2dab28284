"""The demo page, the widget's files and the GPC well-known resource."""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import marshmallow as ma
from flask import (Blueprint, current_app, jsonify, render_template, request,
                   send_from_directory)

from ..sites import SITE_KEY_RE, site_for_origin
from ..widget_config import site_script

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


def _widget_file(name: str):
    response = send_from_directory(current_app.static_folder, name, max_age=WIDGET_MAX_AGE)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


class ScriptQuery(ma.Schema):
    """`/consent.js?site=KEY[&lang=de]`: other parameters (cache busters) are ignored."""

    class Meta:
        unknown = ma.EXCLUDE

    site = ma.fields.String(validate=ma.validate.Regexp(SITE_KEY_RE, error="Not a site key."))
    lang = ma.fields.String(validate=ma.validate.Regexp(
        r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{1,8}){0,3}$", error="Not a language tag."))


_SCRIPT_QUERY = ScriptQuery()


@bp.get("/consent.js")
def widget_script():
    """The widget script; with `?site=KEY`, that site's config inlined (one request)."""
    args = _SCRIPT_QUERY.load(request.args)
    key = args.get("site")
    if key is None:
        # `data-site` embed: the page's origin (Referer) usually names the site, so its
        # config can come along; the widget ignores it if the key differs.
        referrer = urlsplit(request.referrer or "")
        key = site_for_origin(f"{referrer.scheme}://{referrer.netloc}" if referrer.netloc else None)
        if key is None:
            return _widget_file("consent.js")  # the same for every site: cached for longer
    body, etag = site_script(key, args.get("lang"), request.headers.get("Accept-Language"))
    response = current_app.response_class(body, mimetype="text/javascript")
    response.set_etag(etag)
    response.headers["Access-Control-Allow-Origin"] = "*"
    # As long as the config document alone: a new policy version reaches visitors as fast.
    response.headers["Cache-Control"] = (
        f"public, max-age={current_app.config['CONSENT_CONFIG_MAX_AGE']}")
    if "lang" not in args:
        response.vary.add("Accept-Language")
    # No `Vary: Referer` for a key found from the Referer: same-origin pages send their full
    # URL, so every page would miss the cache. Browsers partition their cache per top-level
    # site anyway, and a config reused elsewhere is ignored by the widget (key check).
    return response.make_conditional(request)


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
