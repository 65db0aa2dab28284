"""Admin pages for the ready-made site profiles: list, load, and the promise summary."""
from __future__ import annotations

import marshmallow as ma
from flask import Blueprint, redirect, render_template, url_for
from marshmallow import validate

from ..admin_auth import admin_required
from ..csrf import protect
from ..errors import Invalid
from ..minors import describe, parse_age_rule
from ..profiles import get_profile, list_profiles, load_profile, profile_of_site
from ..requests import describe_rule
from ..sites import site_snapshot
from ..validation import Exact
from .admin import FormSchema, Lines, parse_form
from .admin_forms import errors_on

bp = protect(Blueprint("profiles_admin", __name__, url_prefix="/admin"))


@bp.after_request
def _no_store(response):
    # The load answer carries a site API key: keep it out of every cache.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


class LoadProfileForm(FormSchema):
    """Which profile to load, onto which site key and origins."""

    profile = ma.fields.String(required=True, validate=validate.Length(1, 64))
    site_key = ma.fields.String(load_default="", validate=Exact(
        r"^([A-Za-z0-9_-]{3,64})?$", error="3-64 letters, digits, '-' or '_'"))
    site_name = ma.fields.String(load_default="", validate=validate.Length(max=200))
    allowed_origins = Lines(load_default=list)


def _facts(profile) -> dict:
    """Derived, human-readable facts of a profile for the summary page."""
    return {
        "deadline": describe_rule(profile.request_deadline),
        "opt_out_deadline": describe_rule(profile.opt_out_deadline)
        if profile.opt_out_deadline else None,
        "age": describe(parse_age_rule(profile.age_rule)),
        "channels_on": [k for k, v in profile.channel_defaults.items() if v],
    }


@bp.get("/profiles")
@admin_required("audit:read")
def profiles(*, values=None, errors=None, status=200):
    """Every ready-made profile, and the form to load one as a new site."""
    found = list_profiles()
    return render_template("admin/profiles.html", profiles=found, site=None,
                           profile_options=[(p.name, f"{p.name} — {p.site_name}")
                                            for p in found],
                           values=values or {}, errors=errors or {}), status


@bp.post("/profiles")
@admin_required("sites:write")
@errors_on(profiles)
def load_profile_post():
    """Create a site from a profile; shows its API key once."""
    data = parse_form(LoadProfileForm())
    if data["profile"] not in {p.name for p in list_profiles()}:
        raise Invalid("choose one of the profiles listed", field="profile")
    result = load_profile(get_profile(data["profile"]).name,
                          site_key=data["site_key"] or None,
                          origins=data["allowed_origins"], site_name=data["site_name"] or None)
    summary = url_for("profiles_admin.site_profile", site_key=result.site_key)
    if not result.created:
        return redirect(summary)
    return render_template("admin/secret.html", site=site_snapshot(result.site_key),
                           title=f"Site {result.site_key!r} loaded from profile "
                                 f"{result.profile.name!r}: its API key",
                           secret=result.api_key, back=summary)


@bp.get("/profiles/<name>")
@admin_required("audit:read")
def profile_page(name: str):
    """One profile: what it configures, each promise and the test that proves it."""
    profile = get_profile(name)
    return render_template("admin/profile.html", profile=profile, facts=_facts(profile),
                           site=None, loaded=None)


@bp.get("/sites/<site_key>/profile")
@admin_required("audit:read")
def site_profile(site_key: str):
    """The profile a site was loaded from, with its promises and their tests."""
    loaded, profile = profile_of_site(site_key)
    return render_template("admin/profile.html", profile=profile,
                           facts=_facts(profile) if profile else None,
                           site=site_snapshot(site_key), loaded=loaded)
