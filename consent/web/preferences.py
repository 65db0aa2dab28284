"""The preference center: cookie categories and message channels, without JavaScript.

Who the page is for, first match wins (an id alone never decides: `subject=` in the
query or the form is ignored):

1. a known user signed in through a login link (kept in this server's session);
2. the visitor the widget sent here: its "All privacy settings" link posts the visitor
   id, the device key and the page to return to to `/preferences/enter`, which checks
   the key, remembers the visitor in this server's session and redirects here (no
   secret in any URL);
3. the widget's consent cookie, when this server shares the site's domain and sees it:
   its key is checked;
4. the visitor this browser created by saving here before (session).

Otherwise the page shows the defaults and saving creates a new visitor. The page links
back to the site's page the visitor came from ("Back to <site>") when that page is on
one of the site's own origins.
"""
from __future__ import annotations

import time

import marshmallow as ma
from flask import Blueprint, make_response, redirect, render_template, request, session, url_for
from marshmallow import validate

from ..channels import CHANNELS
from ..csrf import exempt, protect
from ..errors import Forbidden
from ..i18n import SUPPORTED, page_strings, pick_locale
from ..identity import (check_login_token, confirm_device_link, device_from_cookie,
                        enter_preferences, linked_to, return_url, sign_out, signed_in,
                        use_login_token)
from ..minors import age_question
from ..policies import list_policies
from ..notices import REVISION_RE, keep_shown
from ..preference_center import preference_view, save_preferences
from ..sites import (BadOrigin, SiteSnapshot, at_one_revision, normalise_origin,
                     site_snapshot)
from ..subjects import find_subject
from ..validation import Exact, StrictSchema
from .common import request_context, request_region, token_page

bp = protect(Blueprint("preferences", __name__))


@bp.after_request
def _private_login(response):
    # A login link's URL carries its token: every answer there (a refusal too) is kept
    # out of caches and referrers, as the page itself is.
    if request.endpoint in ("preferences.login_page", "preferences.login"):
        token_page(response)
    return response

SESSION_KEY = "consent_prefs"


class PageQuery(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    site = ma.fields.String(required=True, validate=validate.Length(1, 64))
    lang = ma.fields.String(validate=validate.Length(2, 16))
    saved = ma.fields.String()
    # The site says the visitor may be a minor: ask the age (sites with an age rule).
    age = ma.fields.String(validate=validate.OneOf(("ask",)))
    # The site's page to go back to (kept only when it is on one of the site's origins).
    return_ = ma.fields.String(data_key="return", validate=validate.Length(max=4096))


class LoginQuery(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    site = ma.fields.String(required=True, validate=validate.Length(1, 64))
    token = ma.fields.String(required=True, validate=validate.Length(1, 2000))
    lang = ma.fields.String(validate=validate.Length(2, 16))


class EnterForm(ma.Schema):
    """What the widget posts when the visitor follows its link to the preference center."""

    class Meta:
        unknown = ma.EXCLUDE

    subject = ma.fields.String(validate=validate.Length(max=64))
    key = ma.fields.String(validate=validate.Length(max=64))
    return_ = ma.fields.String(data_key="return", validate=validate.Length(max=4096))
    lang = ma.fields.String(validate=validate.Length(2, 16))


class PreferencesForm(StrictSchema):
    """The saved form: ticked categories and channels (unticked means off)."""

    csrf_token = ma.fields.String(load_only=True)
    # Sent by pages rendered before visitor ids stopped being identities; ignored.
    subject = ma.fields.String(load_only=True, validate=validate.Length(max=64))
    lang = ma.fields.String(validate=validate.Length(2, 16))
    category = ma.fields.List(ma.fields.String(validate=validate.Length(1, 40)),
                              load_default=list, validate=validate.Length(max=60))
    channel = ma.fields.List(ma.fields.String(validate=validate.Length(1, 40)),
                             load_default=list, validate=validate.Length(max=len(CHANNELS) + 4))
    # The categories the page offered (a box each, ticked or not): what an unticked box
    # can refuse when the page's revision is no longer current (consent.notices).
    offered = ma.fields.List(ma.fields.String(validate=validate.Length(1, 40)),
                             validate=validate.Length(max=60))
    # The age question (consent.minors): shown, "I am under N", "my guardian agrees".
    age_question = ma.fields.String(validate=validate.OneOf(("1",)))
    minor = ma.fields.String(validate=validate.OneOf(("1",)))
    guardian = ma.fields.String(validate=validate.OneOf(("1",)))
    # Where the guardian's confirmation link should go (consent.guardians).
    guardian_email = ma.fields.String(validate=validate.Length(max=254))
    # The site's configuration revision the page showed: the event records that page's
    # notice (consent.notices).
    revision = ma.fields.String(validate=Exact(REVISION_RE))


def _locale(site: SiteSnapshot, requested: str | None) -> tuple[str, dict, list[str]]:
    available = [loc for loc in site.locales if loc in SUPPORTED] or ["en"]
    locale = pick_locale(requested, available, site.default_locale,
                         request.headers.get("Accept-Language"))
    return locale, page_strings(site, locale), available


def _still_signed_in(site: SiteSnapshot, jti: str | None) -> bool:
    # (once a request: the page reads the remembered entry several times; kept in the
    # request's environ, not in g, whose app context may outlive a request)
    known = request.environ.setdefault("consent.signed_in", {})
    if jti not in known:
        known[jti] = signed_in(site.id, jti)
    return known[jti]


def _remembered(site: SiteSnapshot) -> dict:
    entry = (session.get(SESSION_KEY) or {}).get(site.key) or {}
    if entry.get("a") and (entry.get("exp", 0) < time.time()
                           or not _still_signed_in(site, entry.get("j"))):
        # expired, or signed out (the session is a cookie: a copy of it must end too)
        entry = {k: v for k, v in entry.items() if k not in ("a", "exp", "j")}
    return entry


def _remember(site: SiteSnapshot, **values) -> None:
    """Update this browser's entry for SITE (None removes a value)."""
    everything = dict(session.get(SESSION_KEY) or {})
    entry = dict(_remembered(site))
    entry.update(values)
    everything[site.key] = {k: v for k, v in entry.items() if v is not None}
    session[SESSION_KEY] = everything


def _device(site: SiteSnapshot, entry: dict) -> str | None:
    """This browser's own proven visitor: entered from the widget, or the cookie's."""
    if entry.get("d"):
        live = find_subject(site.id, entry["d"])
        if live is not None and live.erased_at is None:
            return entry["d"]
        # Erased since (erasure clears the id): forget it, or the page would show the
        # erased visitor's nothing, and each save would make a visitor nobody reaches.
        _remember(site, d=None)
        entry.pop("d", None)
    cookie_name = (site.settings.get("cookie") or {}).get("name") or "consent"
    return device_from_cookie(site, request.cookies.get(cookie_name))


def _who(site: SiteSnapshot) -> tuple[str | None, bool, str | None]:
    """(visitor id, signed in, this browser's own proven visitor) for this request."""
    entry = _remembered(site)
    device = _device(site, entry)
    if entry.get("a"):
        return entry["a"], True, device
    return device or entry.get("s"), False, device


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.get("/preferences")
def preferences_page():
    """The preference center of a site (server-rendered; works without JavaScript)."""
    query = PageQuery().load(request.args)
    site = site_snapshot(query["site"])
    if query.get("return_"):
        back = return_url(site, query["return_"])
        if back:
            _remember(site, ret=back)
    # (the form's revision names the words the page shows)
    _site, (_locale_shown, html) = at_one_revision(site, lambda s: _render_page(s, query))
    return _no_store(make_response(html))


def _render_page(site: SiteSnapshot, query: dict) -> tuple[str, str]:
    """(locale, HTML) of SITE's preference page for QUERY, its notice kept."""
    locale, strings, available = _locale(site, query.get("lang"))
    # (kept now, so that the save finds what this page said whichever process takes it)
    keep_shown(site, locale, None, "preferences")
    subject_id, signed_in, device = _who(site)
    view = preference_view(site.key, subject_id, locale, gpc=request_context().gpc_header,
                           region=request_region().code if "regions" in site.settings
                           else None)
    device_link = None
    if signed_in and device:
        device_link = "linked" if linked_to(site.id, device, subject_id) else "ask"
    html = render_template(
        "preferences.html", view=view, site=site, t=strings, lang=locale,
        locales=available, signed_in=signed_in, saved=bool(query.get("saved")),
        back=_remembered(site).get("ret"), device_link=device_link,
        policies=list_policies(site.id),
        age_q=age_question(site, view.subject, flagged=query.get("age") == "ask",
                           locale=locale))
    return locale, html


@bp.post("/preferences")
def save_preferences_form():
    """Save every choice of the form as one ledger event (source `preferences`)."""
    query = PageQuery().load(request.args)
    site = site_snapshot(query["site"])
    form = {key: request.form.getlist(key) if key in ("category", "channel", "offered")
            else request.form.get(key) for key in request.form.keys()}
    data = PreferencesForm().load(form)
    locale, _, _ = _locale(site, data.get("lang") or query.get("lang"))
    subject_id, signed_in, device = _who(site)
    age = ("minor" if data.get("minor") else "adult") if data.get("age_question") else None
    subject, event = save_preferences(site.key, subject_id, data["category"], data["channel"],
                                      locale, request_context(), age=age,
                                      guardian=bool(data.get("guardian")),
                                      also_device=device if signed_in else None,
                                      guardian_email=data.get("guardian_email") or None,
                                      revision=data.get("revision"),
                                      shown_locale=data.get("lang") or query.get("lang"),
                                      offered=data.get("offered"))
    if not signed_in and subject.public_id != device:
        _remember(site, s=subject.public_id)  # a visitor created here, for this browser
    return redirect(url_for("preferences.preferences_page", site=site.key, lang=locale,
                            saved=event.event_id[:8]), code=303)


class AnyOriginEntry(Forbidden):
    """The widget's way in (`POST /preferences/enter`) from a site that allows any origin
    (`*`): whichever page sent it passes that test, so nothing proves it was the site's
    own, and a page elsewhere could choose whose preferences this browser sees (login
    CSRF). Refused, saying why, with a link to the plain preference center (the defaults,
    or the visitor whose consent cookie this server sees)."""

    title = "Open the privacy settings from here"
    type = "tag:consent-manager,2026:any-origin-entry"

    def __init__(self, site: SiteSnapshot):
        super().__init__(
            f"{site.name} lets its consent banner run on any website, so this server "
            f"cannot tell that you came from {site.name}'s own page, and it does not open "
            "this browser's choices from a link it cannot check. Nothing was changed. The "
            "privacy settings page below opens without them; the site's own cookie "
            "settings change them. (For the site's owner: list the site's own origins "
            "instead of `*` in its allowed origins.)")
        self.link = {"href": url_for("preferences.preferences_page", site=site.key),
                     "title": f"Privacy settings of {site.name}"}


def _from_the_site(site: SiteSnapshot) -> bool:
    """Whether this request was sent by a page on one of the site's origins."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return False
    try:
        return normalise_origin(origin) in site.allowed_origins
    except BadOrigin:
        return False


@exempt  # a cross-site top-level POST from the site's page; the device key is the proof
@bp.post("/preferences/enter")
def enter():
    """The widget's way in: check the visitor's device key, remember them, show the page."""
    query = PageQuery().load(request.args)
    site = site_snapshot(query["site"])
    data = EnterForm().load(request.form)
    if not _from_the_site(site):
        # Another site must not choose whose preferences this browser sees (login CSRF).
        if "*" in site.allowed_origins:
            raise AnyOriginEntry(site)
        raise Forbidden(f"This page can only be opened from {site.name}. Go back to the "
                        "site and open its privacy settings again.")
    visitor = enter_preferences(site.key, data.get("subject"), data.get("key"))
    # The entry starts afresh: whatever this browser was shown before is not this visitor.
    _remember(site, d=visitor, s=None, ret=return_url(site, data.get("return_")))
    params = {"site": site.key}
    if data.get("lang"):
        params["lang"] = data["lang"]
    response = redirect(url_for("preferences.preferences_page", **params), code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/preferences/link-device")
def link_device_post():
    """A signed-in person confirms that their choices also apply to this browser."""
    query = PageQuery().load(request.args)
    site = site_snapshot(query["site"])
    subject_id, signed_in, device = _who(site)
    if not signed_in or not device:
        raise Forbidden("Sign in from the site's link first, in the browser you want to "
                        "link.")
    confirm_device_link(site.key, subject_id, device, request_context())
    return redirect(url_for("preferences.preferences_page", site=site.key), code=303)


@bp.get("/preferences/login")
def login_page():
    """A login link minted by the site's backend, opened: ask for a click; spends nothing.

    Mail scanners, link previews and browsers' prefetching open links before the person
    does; a GET that spent the single-use link would leave the person an "already used"
    page. The button's POST (below) spends it.
    """
    query = LoginQuery().load(request.args)
    site = site_snapshot(query["site"])
    check_login_token(site.key, query["token"])
    locale, strings, _ = _locale(site, query.get("lang"))
    html = render_template("login.html", site=site, t=strings, lang=locale,
                           action=request.full_path)
    return token_page(make_response(html))


@bp.post("/preferences/login")
def login():
    """Spend a login link minted by the site's backend, then show the preferences.

    CSRF-checked: only the page above, in this browser, sends it (another site cannot sign
    a browser in to an account of its choosing)."""
    query = LoginQuery().load(request.args)
    site = site_snapshot(query["site"])
    result = use_login_token(site.key, query["token"])
    _remember(result.site, a=result.account, exp=result.session_expires, j=result.jti)
    params = {"site": site.key}
    if query.get("lang"):
        params["lang"] = query["lang"]
    return token_page(redirect(url_for("preferences.preferences_page", **params), code=303))


@bp.post("/preferences/logout")
def logout():
    """Forget this browser's sign-in and remembered visitor for the site."""
    query = PageQuery().load(request.args)
    site = site_snapshot(query["site"])
    everything = dict(session.get(SESSION_KEY) or {})
    sign_out(site.id, (everything.get(site.key) or {}).get("j"))
    everything.pop(site.key, None)
    session[SESSION_KEY] = everything
    return redirect(url_for("preferences.preferences_page", site=site.key), code=303)
