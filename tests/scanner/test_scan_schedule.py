"""Scheduled scans: set from the admin or `scan --every`, queued by the worker when due
(once, however many workers look), stopped with `off`; recorded in the site's history."""
from __future__ import annotations

from datetime import timedelta

from consent.database import run_write, utcnow
from consent.extensions import db
from consent.scanner.models import Scan, ScanSchedule
from consent.scanner.service import queue_due_schedules
from consent.site_history import list_changes
from consent.sites import create_site, get_site
from tests.support.admin import admin_client, post_form


def _scans():
    db.session.rollback()
    return list(db.session.execute(db.select(Scan).order_by(Scan.id)).scalars())


def test_admin_schedule_is_queued_when_due_and_stopped(app):
    run_write(lambda: create_site("shop", "Shop", allowed_origins=["https://shop.example"]))
    admin = admin_client(app)
    r = post_form(admin, "/admin/sites/shop/scan-schedule", {"every": "1w"},
                  page="/admin/sites/shop/scans")
    assert r.status_code == 302
    page = admin.get("/admin/sites/shop/scans").get_data(as_text=True)
    assert "The site is scanned every 1 week from now on" in page
    assert "Scanned every 1 week" in page and '<option value="1w" selected>' in page
    schedule = db.session.execute(db.select(ScanSchedule)).scalar_one()
    assert schedule.urls == ["https://shop.example/"]
    assert list_changes(get_site("shop").id)[0].kind == "scan-schedule"

    assert queue_due_schedules(utcnow()) == 0  # not due yet
    later = utcnow() + timedelta(days=8)
    assert queue_due_schedules(later) == 1
    assert queue_due_schedules(later) == 0  # already moved on: queued once
    scans = _scans()
    assert [(s.status, s.requested_by, s.urls) for s in scans] == [
        ("queued", "schedule", ["https://shop.example/"])]
    # still queued when due again: one scan per site at a time
    assert queue_due_schedules(later + timedelta(days=8)) == 0
    assert len(_scans()) == 1

    r = post_form(admin, "/admin/sites/shop/scan-schedule", {"every": "off"},
                  page="/admin/sites/shop/scans")
    assert "Scheduled scans stopped." in admin.get(r.headers["Location"]).get_data(as_text=True)
    assert db.session.execute(db.select(ScanSchedule)).scalar_one_or_none() is None
    r = post_form(admin, "/admin/sites/shop/scan-schedule", {"every": "1y"},
                  page="/admin/sites/shop/scans")
    assert r.status_code == 422 and 'id="err-every"' in r.get_data(as_text=True)


def test_cli_every_validates_and_off_stops(app, runner):
    run_write(lambda: create_site("shop", "Shop", allowed_origins=["https://shop.example"]))
    result = runner.invoke(args=["consent", "scan", "shop", "--every", "5m"])
    assert result.exit_code != 0 and "at most every 15 minutes" in result.output
    result = runner.invoke(args=["consent", "scan", "shop", "--every", "daily"])
    assert result.exit_code != 0 and "not an interval such as 6h, 1d or 1w" in result.output
    assert _scans() == []
    result = runner.invoke(args=["consent", "scan", "shop", "--every", "off"])
    assert result.exit_code == 0 and "the site had no scheduled scan" in result.output
