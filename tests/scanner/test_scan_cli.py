"""`flask consent scan` against the tracking site: what the browser was refused, the
report printed, a second scan's new trackers on the dashboard, and that a scan records
no consent."""
from __future__ import annotations

import json

import sqlalchemy as sa

from consent.extensions import db
from consent.ledger.chain import ConsentEvent
from tests.support.admin import admin_client


def test_scan_refuses_internal_addresses_and_notes_new_trackers(scan_env, app, runner):
    site = scan_env.site
    first = runner.invoke(args=["consent", "scan", "shop", site.page("private.html"),
                                "--pages", "1", "--json"])
    assert first.exit_code == 0, first.output
    body = json.loads(first.output)
    assert body["scan"]["status"] == "done"
    refused = {r["host"]: r["reason"] for r in body["refused"]}
    assert set(refused) == {"10.255.255.1", "169.254.169.254"}, body["refused"]
    assert all("internal address" in reason for reason in refused.values())
    assert body["new_trackers"] == []  # a first scan is the baseline

    second = runner.invoke(args=["consent", "scan", "shop", site.page("index.html"),
                                 "--pages", "1"])
    assert second.exit_code == 0, second.output
    assert "VIOLATION request localhost (localhost): contacted before any choice from " \
           f"{site.page('index.html')}" in second.output
    assert f"NEW since the last scan: request localhost on {site.page('index.html')}" \
        in second.output
    assert "_ga (127.0.0.1) -> analytics" in second.output

    dashboard = admin_client(app).get("/admin/sites/shop/").get_data(as_text=True)
    assert 'id="scan-news"' in dashboard and "<code>localhost</code>" in dashboard
    # the scanner's "Reject all" and "Accept all" are not anybody's consent
    db.session.rollback()
    assert db.session.execute(sa.select(sa.func.count()).select_from(ConsentEvent)).scalar() == 0
