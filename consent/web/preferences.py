"""The preference center: cookie categories and message channels, without JavaScript.

Who the page is for, first match wins: a known user signed in through a login link (kept
in this server's session); the `subject` query parameter (the widget's "more options"
link adds it); the widget's consent cookie (`s=` in its value; name from the site's
cookie.name setting) when this server shares the site's domain; the visitor this browser
saved preferences for before (session). Otherwise the page shows the defaults and saving
creates a new visitor.
"""
from __future__ import annotations

import time

import marshmallow as ma
from flask import Blueprint, make_response, redirect, render_template, request, session, url_for
from marshmallow import validate

from ..channels import CHANNELS, preference_view, save_preferences
from ..csrf import protect
from ..i18n import SUPPORTED, catalog, pick_locale
from ..identity import use_login_token, visitor_id_from_cookie
from ..minors import age_question
from ..policies import list_policies
from ..sites import SiteSnapshot, site_snapshot
from ..subjects import PUBLIC_ID_RE
from ..validation import StrictSchema
from .common import request_context

bp = protect(Blueprint("preferences", __name__))

SESSION_KEY = "consent_prefs"


class PageQuery(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    site = ma.fields.String(required=True, validate=validate.Length(1, 64))
    subject = ma.fields.String(validate=validate.Regexp(
        PUBLIC_ID_RE, error="Not a visitor id from the consent cookie."))
    lang = ma.fields.String(validate=validate.Length(2, 16))
    saved = ma.fields.String()
    # The site says the visitor may be a minor: ask the age (sites with an age rule).
    age = ma.fields.String(validate=validate.OneOf(("ask",)))


class LoginQuery(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    site = ma.fields.String(required=True, validate=validate.Length(1, 64))
    token = ma.fields.String(required=True, validate=validate.Length(1, 2000))
    lang = ma.fields.String(validate=validate.Length(2, 16))


class PreferencesForm(StrictSchema):
    """The saved form: ticked categories and channels (unticked means off)."""

    csrf_token = ma.fields.String(load_only=True)
    subject = ma.fields.String(validate=validate.Regexp(
        PUBLIC_ID_RE, error="Not a visitor id from the consent cookie."))
    lang = ma.fields.String(validate=validate.Length(2, 16))
    category = ma.fields.List(ma.fields.String(validate=validate.Length(1, 40)),
                              load_default=list, validate=validate.Length(max=60))
    channel = ma.fields.List(ma.fields.String(validate=validate.Length(1, 40)),
                             load_default=list, validate=validate.Length(max=len(CHANNELS) + 4))
    # The age question (consent.minors): shown, "I am under N", "my guardian agrees".
    age_question = ma.fields.String(validate=validate.OneOf(("1",)))
    minor = ma.fields.String(validate=validate.OneOf(("1",)))
    guardian = ma.fields.String(validate=validate.OneOf(("1",)))
    # Where the guardian's confirmation link should go (consent.guardians).
    guardian_email = ma.fields.String(validate=validate.Length(max=254))


def _locale(site: SiteSnapshot, requested: str | None) -> tuple[str, dict, list[str]]:
    available = [loc for loc in site.locales if loc in SUPPORTED] or ["en"]
    locale = pick_locale(requested, available, site.default_locale,
                         request.headers.get("Accept-Language"))
    strings = dict(catalog("pages", locale))
    strings.update((site.settings.get("texts") or {}).get(locale, {}))
    return locale, strings, available


def _remembered(site: SiteSnapshot) -> dict:
    entry = (session.get(SESSION_KEY) or {}).get(site.key) or {}
    if entry.get("a") and entry.get("exp", 0) < time.time():
        entry = {k: v for k, v in entry.items() if k not in ("a", "exp")}
    return entry


def _remember(site: SiteSnapshot, **values) -> None:
    everything = dict(session.get(SESSION_KEY) or {})
    everything[site.key] = {k: v for k, v in values.items() if v is not None}
    session[SESSION_KEY] = everything


def _who(site: SiteSnapshot, asked: str | None) -> tuple[str | None, bool]:
    """(visitor id, signed in) for this request."""
    entry = _remembered(site)
    if entry.get("a"):
        return entry["a"], True
    if asked:
        return asked, False
    cookie_name = (site.settings.get("cookie") or {}).get("name") or "consent"
    from_cookie = visitor_id_from_cookie(request.cookies.get(cookie_name))
    if from_cookie:
        return from_cookie, False
    return entry.get("s"), False


@bp.get("/preferences")
def preferences_page():
    """The preference center of a site (server-rendered; works without JavaScript)."""
    query = PageQuery().load(request.args)
    site = site_snapshot(query["site"])
    locale, strings, available = _locale(site, query.get("lang"))
    subject_id, signed_in = _who(site, query.get("subject"))
    view = preference_view(site.key, subject_id, locale,
                           gpc=request_context().gpc_header)
    html = render_template(
        "preferences.html", view=view, site=site, t=strings, lang=locale,
        locales=available, signed_in=signed_in, saved=bool(query.get("saved")),
        subject_field=subject_id if (subject_id and not signed_in) else None,
        policies=list_policies(site.id),
        age_q=age_question(site, view.subject, flagged=query.get("age") == "ask",
                           locale=locale))
    response = make_response(html)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.post("/preferences")
def save_preferences_form():
    """Save every choice of the form as one ledger event (source `preferences`)."""
    query = PageQuery().load(request.args)
    site = site_snapshot(query["site"])
    form = {key: request.form.getlist(key) if key in ("category", "channel")
            else request.form.get(key) for key in request.form.keys()}
    data = PreferencesForm().load(form)
    locale, _, _ = _locale(site, data.get("lang") or query.get("lang"))
    subject_id, signed_in = _who(site, data.get("subject"))
    age = ("minor" if data.get("minor") else "adult") if data.get("age_question") else None
    subject, event = save_preferences(site.key, subject_id, data["category"], data["channel"],
                                      locale, request_context(), age=age,
                                      guardian=bool(data.get("guardian")),
                                      guardian_email=data.get("guardian_email") or None)
    if signed_in:
        entry = _remembered(site)
        _remember(site, a=entry["a"], exp=entry["exp"])
    else:
        _remember(site, s=subject.public_id)
    return redirect(url_for("preferences.preferences_page", site=site.key, lang=locale,
                            saved=event.event_id[:8]), code=303)


@bp.get("/preferences/login")
def login():
    """Spend a login link minted by the site's backend, then show the preferences."""
    query = LoginQuery().load(request.args)
    site = site_snapshot(query["site"])
    cookie_name = (site.settings.get("cookie") or {}).get("name") or "consent"
    result = use_login_token(site.key, query["token"],
                             visitor_id_from_cookie(request.cookies.get(cookie_name)),
                             request_context())
    _remember(result.site, a=result.account, exp=result.session_expires)
    params = {"site": site.key}
    if query.get("lang"):
        params["lang"] = query["lang"]
    response = redirect(url_for("preferences.preferences_page", **params), code=303)
    # The token is spent; do not let it leak through the Referer of the next page.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/preferences/logout")
def logout():
    """Forget this browser's sign-in and remembered visitor for the site."""
    query = PageQuery().load(request.args)
    site = site_snapshot(query["site"])
    everything = dict(session.get(SESSION_KEY) or {})
    everything.pop(site.key, None)
    session[SESSION_KEY] = everything
    return redirect(url_for("preferences.preferences_page", site=site.key), code=303)
