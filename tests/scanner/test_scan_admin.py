"""The scan as an operator runs it: the admin's "Scan" button queues a scan, the scan
worker runs it in Chromium against the tracking site (tests/support/tracking_site.py),
the report (page, JSON, CSV) says what was found where, and "Apply" turns the proposals
into services, so that a visitor's withdrawal in the widget deletes the analytics cookie.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from consent.extensions import db
from consent.readiness import site_gaps
from consent.site_admin import update_category
from consent.site_history import list_changes
from consent.sites import get_site
from tests.support.admin import admin_client, post_form
from tests.support.browser import new_context
from tests.support.waits import poll

ROOT = Path(__file__).resolve().parents[2]

DECLARED = [{"name": "Language memory", "provider": "Tracking shop",
             "cookies": [{"name": "lang_pref", "duration": "1 year"}]}]


def _finding(body: dict, kind: str, name: str) -> dict:
    found = [f for f in body["findings"] if f["kind"] == kind and f["name"] == name]
    assert len(found) == 1, (kind, name, [(f["kind"], f["name"]) for f in body["findings"]])
    return found[0]


def _cookie_names(context) -> set[str]:
    return {c["name"] for c in context.cookies()}


def _scan_worker(database_url: str) -> str:
    """`flask consent scan-worker --verbose` in its own process; its output."""
    env = dict(os.environ, CONSENT_DATABASE_URL=database_url, CONSENT_ENV="testing",
               FLASK_APP="app", PYTHONUNBUFFERED="1", CONSENT_SCAN_SETTLE_SECONDS="3.0",
               CONSENT_SCAN_PAGE_TIMEOUT="15")
    done = subprocess.run([sys.executable, "-m", "flask", "consent", "scan-worker", "--verbose"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_scan_button_worker_report_apply_then_withdrawal_deletes_the_cookie(
        scan_env, app, database_url, browser):
    site = scan_env.site
    update_category("shop", "functional", titles={"en": "Functional"}, descriptions={},
                    services=DECLARED)
    admin = admin_client(app)
    # The button queues the scan; nothing runs until a worker takes it.
    r = post_form(admin, "/admin/sites/shop/scans",
                  {"urls": site.page("index.html"), "pages": "5"})
    assert r.status_code == 302, r.get_data(as_text=True)
    scan_url = r.headers["Location"]
    queued = admin.get(scan_url)
    assert "Waiting for a scan worker" in queued.get_data(as_text=True)
    assert 'http-equiv="refresh"' in queued.get_data(as_text=True)

    # The worker runs as it does in production: its own process (`flask consent
    # scan-worker`), not in this one, which already drives the session's Chromium.
    output = _scan_worker(database_url)
    db.session.remove()  # the test's requests share one session: end its read snapshot
    assert re.search(r"scan #\d+: done", output), output
    # progress was reported page by page while the scan ran
    assert "after_accept 0/2" in output and "before" in output, output

    body = admin.get(scan_url + ".json").get_json()
    assert body["scan"]["status"] == "done"
    assert sorted(p["url"] for p in body["pages"]) == [site.page("about.html"),
                                                      site.page("index.html")]
    # the pixel fires before any choice, from the home page: the violation
    pixel = _finding(body, "request", "localhost")
    assert pixel["violation"] is True
    assert pixel["seen"]["before"]["page"] == site.page("index.html")
    assert "pixel.gif" in pixel["violation_reason"]
    assert [v["name"] for v in body["violations"]] == ["localhost"]
    # the rest only after "Accept all", each on its page and with what set it
    ga = _finding(body, "cookie", "_ga")
    assert list(ga["seen"]) == ["after_accept"] and not ga["violation"]
    assert ga["seen"]["after_accept"] == {"page": site.page("index.html"),
                                          "set_by": f"script {site.page('analytics.js')}"}
    assert ga["party"] == "first" and ga["attributes"]["same_site"] == "Lax"
    assert ga["proposal"]["category"] == "analytics"
    assert ga["proposal"]["platform"] == "Google Analytics"
    ide = _finding(body, "cookie", "IDE")
    assert ide["party"] == "third" and ide["attributes"]["secure"] is True
    assert ide["seen"]["after_accept"]["page"] == site.page("about.html")
    assert ide["seen"]["after_accept"]["set_by"].endswith("/ad-frame.html")
    assert ide["proposal"]["category"] == "advertising"
    heat = _finding(body, "local_storage", "_hjasCachedUserAttributes")
    assert heat["seen"]["after_accept"]["page"] == site.page("about.html")
    assert heat["proposal"]["category"] == "analytics"
    formula = _finding(body, "local_storage", '=HYPERLINK("http://evil.example")')
    assert formula["status"] == "unknown" and formula["proposal"] is None
    assert [u["name"] for u in body["unknown"]] == ["localhost", formula["name"]]
    assert body["never_seen"] == [{"category": "functional", "service": "Language memory",
                                   "kind": "cookie", "entry": "lang_pref"}]
    # the widget's own cookie is the consent manager's, never a violation
    assert _finding(body, "cookie", "consent")["status"] == "consent manager"
    # nothing but names and metadata: no cookie value, no query string
    stored = json.dumps(body)
    assert "GA1.1." not in stored and "AHWqTUk" not in stored and "ev=pageview" not in stored

    page = admin.get(scan_url).get_data(as_text=True)
    assert "1 violation(s)" in page and "Violation" in page and "pixel.gif" in page
    assert "Declared but never seen" in page and "lang_pref" in page

    sheet = admin.get(scan_url + ".csv")
    assert sheet.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(sheet.get_data(as_text=True))))
    assert {r["name"] for r in rows} >= {"_ga", "IDE", "localhost", "_hjasCachedUserAttributes"}
    assert "'" + formula["name"] in {r["name"] for r in rows}  # not a formula any more
    assert next(r for r in rows if r["name"] == "localhost")["violation"] == "yes"

    # Apply with what the report proposes (the form's preselected categories)
    selected = dict(re.findall(
        r'<select name="(finding-\d+)"[^>]*>(?:(?!</select>).)*?<option value="(\w+)" selected',
        page, re.S))
    by_id = {f"finding-{f['id']}": f["name"] for f in body["findings"]}
    assert {by_id[k]: v for k, v in selected.items()} == {
        "_ga": "analytics", "IDE": "advertising", "_hjasCachedUserAttributes": "analytics"}
    gaps = [g.what for g in site_gaps("shop")]
    assert any(g.startswith("category 'analytics' lists no services") for g in gaps), gaps
    r = post_form(admin, scan_url + "/apply", selected, page=scan_url)
    assert r.status_code == 302
    gaps = [g.what for g in site_gaps("shop")]
    assert not any("'analytics'" in g or "'advertising'" in g for g in gaps), gaps
    assert "Saved: applied scan" in admin.get(r.headers["Location"]).get_data(as_text=True)
    cats = scan_env.categories()
    ga_service = next(s for s in cats["analytics"].services if s["name"] == "Google Analytics")
    assert ga_service["cookies"] == [{"name": "_ga", "duration": "13 months"}]
    assert ga_service["provider"] == "Google"
    # a service of storage keys only (Hotjar's) lists no cookies: the categories page
    # counts it as none (it once failed with a 500 after this very Apply)
    settings = admin.get("/admin/sites/shop/settings/categories")
    assert settings.status_code == 200, settings.get_data(as_text=True)[:2000]
    assert "Analytics" in settings.get_data(as_text=True)
    editor = admin.get("/admin/sites/shop/settings/categories/analytics")
    assert "_hjasCachedUserAttributes" in editor.get_data(as_text=True)
    heat_service = next(s for s in cats["analytics"].services
                        if any(k.get("name") == "_hjasCachedUserAttributes"
                               for k in s.get("storage", [])))
    assert heat_service["cookies"] == []
    assert any(c["name"] == "IDE" and c["domain"] == "localhost"
               for s in cats["advertising"].services for c in s.get("cookies", []))
    history = list_changes(get_site("shop").id)
    assert history[0].kind == "scan-apply" and "_ga (analytics)" in history[0].summary
    assert history[0].actor.startswith("user:")
    # applying again adds nothing and records nothing
    r = post_form(admin, scan_url + "/apply", selected, page=scan_url)
    assert "Nothing was added" in admin.get(r.headers["Location"]).get_data(as_text=True) \
        or len(list_changes(get_site("shop").id)) == len(history)
    assert len(list_changes(get_site("shop").id)) == len(history)
    # the report now counts them as declared
    again = admin.get(scan_url + ".json").get_json()
    assert _finding(again, "cookie", "_ga")["status"] == "declared"

    # A visitor accepts, then withdraws analytics in the widget: the _ga cookie goes.
    ctx = new_context(browser, locale="en-GB")
    visitor = ctx.new_page()
    visitor.goto(site.page("index.html"))
    visitor.get_by_role("button", name="Accept all").click()
    poll(lambda: _cookie_names(ctx), lambda names: "_ga" in names, timeout=15,
         message=lambda names: f"no _ga cookie after Accept all: {names}")
    visitor.get_by_role("button", name="Cookie settings").click()
    dialog = visitor.get_by_role("dialog", name="Privacy preferences")
    dialog.get_by_role("switch", name="Analytics").uncheck()
    # The widget deletes the withdrawn cookies, then reloads the page (the analytics code
    # already ran). Waited for: closing the context while that reload was still under way
    # once left Playwright's close waiting for ever (a fresh-clone run, 2026-12-02).
    with visitor.expect_navigation():
        dialog.get_by_role("button", name="Save").click()
    poll(lambda: _cookie_names(ctx), lambda names: "_ga" not in names, timeout=15,
         message=lambda names: f"_ga still set after withdrawing analytics: {names}")
    ctx.close()
