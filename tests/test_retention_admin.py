"""The retention purge in the admin: a date input, a confirmation page that says what would
go (nothing goes before it is confirmed), a readable result, the site's change history;
bad dates are shown by the field; only `admin` may purge. Without JavaScript."""
from __future__ import annotations

import re

from consent.extensions import db
from consent.ledger import ConsentEvent, verify_ledger
from consent.site_history import list_changes
from consent.sites import get_site
from tests.support.admin import admin_client, post_form, record_choice, session_csrf


def _events(site_key: str) -> int:
    db.session.rollback()
    return db.session.execute(db.select(db.func.count()).select_from(ConsentEvent).where(
        ConsentEvent.site_id == get_site(site_key).id)).scalar()


def test_purge_asks_first_and_says_what_it_removed(app, site, clock):
    for _ in range(3):
        record_choice(site["key"])
    today = clock.advance(days=3).date().isoformat()
    record_choice(site["key"])
    admin = admin_client(app, ("admin",), "purger@example.com")
    before = _events(site["key"])
    base = f"/admin/sites/{site['key']}/purge"
    form = admin.get(base).get_data(as_text=True)
    assert re.search(r'<input type="date" id="before" name="before" value=""', form)
    r = admin.get(f"{base}/confirm?before={today}")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert f"Remove 3 event(s) recorded before {today}?" in page
    assert "This cannot be undone" in page and 'class="admin-nav"' in page
    assert _events(site["key"]) == before  # asking removed nothing
    # a post without the confirmation page's button removes nothing
    r = post_form(admin, base, {"before": today}, page=f"{base}/confirm?before={today}")
    assert r.status_code == 422
    assert "confirm on the confirmation page" in r.get_data(as_text=True)
    assert _events(site["key"]) == before
    r = post_form(admin, base, {"before": today, "confirm": "yes"},
                  page=f"{base}/confirm?before={today}")
    assert r.status_code == 302
    shown = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert f"Purged: 3 event(s) recorded before {today}" in shown
    assert "signed checkpoint(s) keep the ledger verifiable" in shown
    # three went; each of the three people's standing choice is re-stated (carried forward)
    assert _events(site["key"]) == before - 3 + 3
    assert verify_ledger().ok
    change = list_changes(get_site(site["key"]).id)[0]
    assert change.kind == "purge" and "3 events" in change.summary
    # a second purge of the same range finds nothing, and says so
    page = admin.get(f"{base}/confirm?before={today}").get_data(as_text=True)
    assert 'id="nothing"' in page and 'name="confirm"' not in page


def test_purge_date_errors_are_shown_by_the_field(app, site, admin, clock):
    record_choice(site["key"])
    before = _events(site["key"])
    base = f"/admin/sites/{site['key']}/purge"
    for value, message in (("01/12/2026", "a date (YYYY-MM-DD)"),
                           ("2999-01-01", "the date lies in the future")):
        r = admin.get(f"{base}/confirm?before={value}")
        assert r.status_code == 422
        page = r.get_data(as_text=True)
        assert 'id="err-before"' in page and message in page
        assert f'value="{value}"' in page and 'class="admin-nav"' in page
    # (a forged post: no confirmation page offers a future date)
    r = admin.post(base, data={"before": "2999-01-01", "confirm": "yes",
                               "csrf_token": session_csrf(admin, base)})
    assert r.status_code == 422 and "the date lies in the future" in r.get_data(as_text=True)
    assert _events(site["key"]) == before


def test_the_retention_period_is_the_default_cut_off(app, site, admin, clock):
    admin.get("/")  # (signed in)
    r = post_form(admin, f"/admin/sites/{site['key']}/settings/consent",
                  {"accept_lifetime_days": "365", "reject_lifetime_days": "180",
                   "deadline_kind": "days", "deadline_value": "30", "retention_days": "400"})
    assert r.status_code == 302
    expected = (clock.now().date().toordinal() - 400)
    page = admin.get(f"/admin/sites/{site['key']}/purge").get_data(as_text=True)
    from datetime import date

    assert f'value="{date.fromordinal(expected).isoformat()}"' in page
    assert "keeps events for 400 days" in page
    settings = admin.get(f"/admin/sites/{site['key']}/settings/consent").get_data(as_text=True)
    assert 'id="purge-link"' in settings


def test_only_admins_may_purge(app, site, clock):
    record_choice(site["key"])
    before = _events(site["key"])
    writer = admin_client(app, ("sites:write", "audit:read"), "writer@example.com")
    base = f"/admin/sites/{site['key']}/purge"
    assert writer.get(base).status_code == 403
    assert writer.get(f"{base}/confirm?before=2026-01-01").status_code == 403
    settings = writer.get(f"/admin/sites/{site['key']}/settings/consent").get_data(as_text=True)
    assert 'id="purge-link"' not in settings
    token = session_csrf(writer, f"/admin/sites/{site['key']}/")
    r = writer.post(base, data={"before": clock.now().date().isoformat(), "confirm": "yes",
                                "csrf_token": token})
    assert r.status_code == 403
    assert _events(site["key"]) == before
