"""Admin page of a site's retention purge: choose the cut-off, see what would go, confirm on
a page of its own (works without JavaScript), read what was removed. Needs `admin`: a purge
removes audit history for good."""
from __future__ import annotations

from datetime import datetime, time, timezone

import marshmallow as ma
from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import validate

from ..admin_auth import admin_required, current_principal
from ..csrf import protect
from ..database import iso, utcnow
from ..errors import Invalid
from ..retention import purge_events, retention_cutoff
from ..sites import get_site
from ..validation import StrictSchema
from .admin_forms import errors_on

bp = protect(Blueprint("retention_admin", __name__, url_prefix="/admin"))


@bp.after_request
def _no_store(response):
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


class PurgeQuery(ma.Schema):
    """The cut-off of a purge: events recorded before this day (UTC) go."""

    class Meta:
        unknown = ma.EXCLUDE

    before = ma.fields.Date(required=True, format="%Y-%m-%d", error_messages={
        "invalid": "a date (YYYY-MM-DD)", "required": "choose a date"})


class PurgeForm(StrictSchema):
    """The confirmation page's button."""

    csrf_token = ma.fields.String(load_only=True)
    before = ma.fields.Date(required=True, format="%Y-%m-%d")
    confirm = ma.fields.String(required=True, validate=validate.Equal(
        "yes", error="confirm on the confirmation page"), error_messages={
        "required": "confirm on the confirmation page"})


def _cutoff(day) -> datetime:
    cutoff = datetime.combine(day, time.min, tzinfo=timezone.utc)
    if cutoff > utcnow():
        raise Invalid("the date lies in the future: nothing recorded before it can go yet",
                      field="before")
    return cutoff


def purge_page(site_key: str, *, values=None, errors=None, status=200):
    """The purge form: the cut-off date (the site's retention period by default)."""
    site = get_site(site_key)
    default = retention_cutoff(site)
    values = values if values is not None else {
        "before": default.date().isoformat() if default else ""}
    return render_template("admin/purge.html", site=site, values=values, errors=errors or {},
                           retention_days=(site.settings or {}).get("retention_days"),
                           today=utcnow().date().isoformat()), status


@bp.get("/sites/<site_key>/purge")
@admin_required("admin")
def purge(site_key: str):
    """The purge form."""
    return purge_page(site_key)


@bp.get("/sites/<site_key>/purge/confirm")
@admin_required("admin")
@errors_on(purge_page)
def purge_confirm(site_key: str):
    """Count what the purge would remove and ask before doing it."""
    data = PurgeQuery().load(request.args.to_dict())
    cutoff = _cutoff(data["before"])
    plan = purge_events(site_key, cutoff, dry_run=True)
    return render_template("admin/purge_confirm.html", site=get_site(site_key), plan=plan,
                           before=data["before"].isoformat(), cutoff=iso(cutoff))


@bp.post("/sites/<site_key>/purge")
@admin_required("admin")
@errors_on(purge_page)
def purge_post(site_key: str):
    """Purge (after the confirmation page) and say what was removed."""
    data = PurgeForm().load(request.form.to_dict())
    cutoff = _cutoff(data["before"])
    result = purge_events(site_key, cutoff, actor=current_principal().actor)
    if result.events_removed:
        flash(f"Purged: {result.events_removed} event(s) recorded before "
              f"{data['before'].isoformat()} and the personal details of "
              f"{result.details_removed} removed; {len(result.checkpoints)} signed "
              "checkpoint(s) keep the ledger verifiable. Current choices stay in force.",
              "success")
    else:
        flash(f"Nothing to purge: no event was recorded before {data['before'].isoformat()}.",
              "info")
    return redirect(url_for("retention_admin.purge", site_key=site_key))
