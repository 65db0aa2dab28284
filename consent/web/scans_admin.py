"""Admin pages of a site's scans: queue one ("Scan"), follow its progress, read the report
(HTML, JSON, CSV), Apply its proposals, schedule scans. Reading needs `audit:read`;
scanning, applying and scheduling need `sites:write`."""
from __future__ import annotations

import json

import marshmallow as ma
from flask import (Blueprint, Response, flash, redirect, render_template, request,
                   stream_with_context, url_for)
from marshmallow import validate

from ..admin_auth import admin_required, current_principal
from ..csrf import protect
from ..errors import DomainError
from ..scanner.crawler import PHASE_LABELS, PHASES
from ..scanner.report import KIND_LABELS, classify, csv_lines, never_seen, report
from ..scanner.service import (DEFAULT_PAGES, apply_scan, default_choices, describe_every,
                               get_scan, get_schedule, list_scans, parse_every, queue_scan,
                               remove_schedule, set_schedule, setting, valid_category_key)
from ..sites import get_site
from ..validation import Lines, StrictSchema
from .admin_forms import GENERAL, errors_of

bp = protect(Blueprint("scans_admin", __name__, url_prefix="/admin"))


@bp.after_request
def _no_store(response):
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


class ScanForm(StrictSchema):
    """The "Scan" form."""

    csrf_token = ma.fields.String(load_only=True)
    urls = Lines(load_default=list)
    pages = ma.fields.Integer(load_default=DEFAULT_PAGES, validate=validate.Range(1, 1000))
    same_origin = ma.fields.Boolean(load_default=False, truthy={"on", "1", "true"},
                                    falsy={"", "0", "false", "off"})


class ScheduleForm(ScanForm):
    """The schedule form: the scan form plus how often ("off" stops it)."""

    every = ma.fields.String(required=True, validate=validate.Length(1, 20))


EVERY_CHOICES = (("off", "Not scheduled"), ("1d", "Every day"), ("1w", "Every week"),
                 ("30d", "Every 30 days"))


def _page(site_key: str, *, values=None, errors=None, status=200):
    site = get_site(site_key)
    schedule = get_schedule(site.id)
    origins = [o for o in site.allowed_origins or [] if o != "*"]
    values = values or {"urls": "\n".join(o.rstrip("/") + "/" for o in origins),
                        "pages": DEFAULT_PAGES, "same_origin": False,
                        "every": _every_value(schedule)}
    return render_template("admin/scans.html", site=site, scans=list_scans(site_key),
                           schedule=schedule, describe_every=describe_every,
                           values=values, errors=errors or {}, every_choices=EVERY_CHOICES,
                           max_pages=int(setting("CONSENT_SCAN_MAX_PAGES"))), status


def _every_value(schedule) -> str:
    if schedule is None:
        return "off"
    for value, _ in EVERY_CHOICES[1:]:
        if parse_every(value) == schedule.every_seconds:
            return value
    return "off"


@bp.get("/sites/<site_key>/scans")
@admin_required("audit:read")
def scans(site_key: str):
    """The site's scans and the forms to scan now or on a schedule."""
    return _page(site_key)


@bp.post("/sites/<site_key>/scans")
@admin_required("sites:write")
def scan_post(site_key: str):
    """Queue a scan for the scan worker."""
    try:
        data = ScanForm().load(request.form.to_dict())
        scan = queue_scan(site_key, data["urls"], pages=data["pages"],
                          same_origin=data["same_origin"], actor=current_principal().actor)
    except (ma.ValidationError, DomainError) as exc:
        return _page(site_key, values=request.form.to_dict(), errors=errors_of(exc),
                     status=422)
    flash(f"Scan #{scan.id} queued: a scan worker will run it. This page shows its "
          "progress.", "success")
    return redirect(url_for("scans_admin.scan_page", site_key=site_key, scan_id=scan.id))


@bp.post("/sites/<site_key>/scan-schedule")
@admin_required("sites:write")
def schedule_post(site_key: str):
    """Scan on a schedule, or stop scheduled scans."""
    actor = current_principal().actor
    try:
        data = ScheduleForm().load(request.form.to_dict())
        if data["every"] == "off":
            removed = remove_schedule(site_key, actor)
            flash("Scheduled scans stopped." if removed else "No scan was scheduled.",
                  "success")
        else:
            seconds = parse_every(data["every"])
            set_schedule(site_key, data["urls"], pages=data["pages"],
                         same_origin=data["same_origin"], every_seconds=seconds, actor=actor)
            flash(f"The site is scanned every {describe_every(seconds)} from now on; the "
                  "dashboard says when a scan finds a new tracker.", "success")
    except (ma.ValidationError, DomainError) as exc:
        return _page(site_key, values=request.form.to_dict(), errors=errors_of(exc),
                     status=422)
    return redirect(url_for("scans_admin.scans", site_key=site_key) + "#schedule")


@bp.get("/sites/<site_key>/scans/<int:scan_id>")
@admin_required("audit:read")
def scan_page(site_key: str, scan_id: int):
    """A scan's progress, or its report with the Apply form."""
    site = get_site(site_key)
    scan = get_scan(site_key, scan_id)
    rows = classify(scan, site) if scan.status == "done" else []
    return render_template(
        "admin/scan.html", site=site, scan=scan, rows=rows,
        never_seen=never_seen(scan, site) if scan.status == "done" else [],
        choices=default_choices(scan, site) if scan.status == "done" else {},
        phases=PHASES, phase_labels=PHASE_LABELS, kind_labels=KIND_LABELS,
        summary=scan.summary or {}, errors={})


@bp.get("/sites/<site_key>/scans/<int:scan_id>.json")
@admin_required("audit:read")
def scan_json(site_key: str, scan_id: int):
    """The report as JSON."""
    site = get_site(site_key)
    body = report(get_scan(site_key, scan_id), site)
    return Response(json.dumps(body, indent=2, ensure_ascii=False),
                    mimetype="application/json")


@bp.get("/sites/<site_key>/scans/<int:scan_id>.csv")
@admin_required("audit:read")
def scan_csv(site_key: str, scan_id: int):
    """The findings as CSV (spreadsheet formulas neutralised)."""
    site = get_site(site_key)
    scan = get_scan(site_key, scan_id)
    lines = list(csv_lines(scan, site))
    return Response(stream_with_context(line.encode("utf-8") for line in lines),
                    mimetype="text/csv", headers={
                        "Content-Disposition":
                            f'attachment; filename="scan-{site.key}-{scan.id}.csv"',
                        "X-Content-Type-Options": "nosniff"})


@bp.post("/sites/<site_key>/scans/<int:scan_id>/apply")
@admin_required("sites:write")
def apply_post(site_key: str, scan_id: int):
    """Add the chosen findings to categories as services, in one step."""
    choices: dict[int, str] = {}
    errors = {}
    for name, value in request.form.items():
        if not name.startswith("finding-"):
            continue
        try:
            finding_id = int(name.removeprefix("finding-"))
        except ValueError:
            errors[name] = ["not a finding"]
            continue
        if value and not valid_category_key(value):
            errors[name] = ["not a category"]
            continue
        choices[finding_id] = value
    try:
        if errors:
            raise ma.ValidationError(errors)
        result = apply_scan(site_key, scan_id, choices, current_principal().actor)
    except (ma.ValidationError, DomainError) as exc:
        site = get_site(site_key)
        scan = get_scan(site_key, scan_id)
        errors = errors_of(exc)
        shown = {f"finding-{f.id}" for f in scan.findings}
        for name in [n for n in errors if n != GENERAL and n not in shown]:
            # no field on the page to show it by (a finding of another scan)
            errors.setdefault(GENERAL, []).extend(errors.pop(name))
        return render_template(
            "admin/scan.html", site=site, scan=scan, rows=classify(scan, site),
            never_seen=never_seen(scan, site), choices=choices, phases=PHASES,
            phase_labels=PHASE_LABELS, kind_labels=KIND_LABELS, summary=scan.summary or {},
            errors=errors), 422
    if result["added"]:
        flash("Saved: " + result["summary"] + ". Withdrawing a category now deletes its "
              "cookies in visitors' browsers.", "success")
    else:
        flash("Nothing was added: no finding was given a category.", "info")
    return redirect(url_for("scans_admin.scan_page", site_key=site_key, scan_id=scan_id))
