"""Asking again: material policy versions, expiry, new categories."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from consent.database import run_write, utcnow
from consent.extensions import db
from consent.policies import publish_policy
from consent.sites import Category, Site, invalidate_site_cache

from .helpers import ALL_TAGS, banner, ran, settle, wait_ran, wait_recorded

pytestmark = pytest.mark.browser


def later(page, **delta) -> None:
    """Move the page's clock forward (timers keep running): stored data looks older.

    The browser's HTTP cache does not follow the page's clock, so it is emptied as time
    would have done: the cached widget script (config inlined, max-age 300 s) is gone.
    """
    page.clock.set_fixed_time(datetime.now(timezone.utc) + timedelta(**delta))
    page.context.new_cdp_session(page).send("Network.clearBrowserCache")


def accept_all(env, page) -> None:
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    wait_ran(page, 5)
    wait_recorded(env, 1)


def site_id() -> int:
    return db.session.execute(db.select(Site.id).where(Site.key == "shop")).scalar_one()


def test_material_policy_version_prompts_again_and_old_consent_stops_counting(env, page):
    accept_all(env, page)
    sid = site_id()
    run_write(lambda: publish_policy(sid, "2026-02", text="Policy v2", material=True))
    later(page, minutes=10)  # past the configuration's cache lifetime
    page.goto(env.url())
    banner(page).wait_for()
    assert page.evaluate("Consent.get()") is None
    settle(page)
    assert ran(page) == []
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 5) == ALL_TAGS
    assert wait_recorded(env, 2)[1].policy_version == "2026-02"


def test_a_material_version_counts_within_the_second_it_takes_effect(env, page):
    """The config carries the version's time rounded up to a whole second; a page loaded
    in that same second, after the version took effect, already asks again (CI once
    loaded the next session within that second and the old choice still counted)."""
    accept_all(env, page)
    sid = site_id()
    effective = utcnow().replace(microsecond=0) + timedelta(seconds=1, microseconds=250_000)
    run_write(lambda: publish_policy(sid, "2026-02", text="Policy v2", material=True,
                                     effective_at=effective))
    while utcnow() < effective:  # in effect on the server: the config carries it
        page.wait_for_timeout(50)
    invalidate_site_cache()
    # the page's clock: 0.1 s after the version's time, 0.65 s before the rounded value
    page.clock.set_fixed_time(effective + timedelta(microseconds=100_000))
    page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('consent:cfg:'))"
                  ".forEach(k => localStorage.removeItem(k))")  # fetch the config now
    page.context.new_cdp_session(page).send("Network.clearBrowserCache")
    page.goto(env.url())
    banner(page).wait_for()
    assert page.evaluate("Consent.get()") is None
    assert page.evaluate("Date.now()") == int(
        (effective + timedelta(microseconds=100_000)).timestamp() * 1000)
    settle(page)
    assert ran(page) == []


def test_minor_policy_version_does_not_prompt(env, page):
    accept_all(env, page)
    sid = site_id()
    run_write(lambda: publish_policy(sid, "2026-01a", text="Typo fixed", material=False))
    later(page, minutes=10)
    page.goto(env.url())
    assert wait_ran(page, 5) == ALL_TAGS
    settle(page)
    assert banner(page).count() == 0


@pytest.mark.parametrize("choice, still_valid, expired", [
    ("Accept all", 360, 366),   # 12 months after acceptance
    ("Reject all", 180, 183),   # 6 months after refusal
])
def test_consent_expires_and_prompts_again(env, page, choice, still_valid, expired):
    page.goto(env.url())
    page.get_by_role("button", name=choice).click()
    wait_recorded(env, 1)
    later(page, days=still_valid)
    page.goto(env.url())
    settle(page)
    assert banner(page).count() == 0
    later(page, days=expired)
    page.goto(env.url())
    banner(page).wait_for()
    assert page.evaluate("Consent.get()") is None


def test_new_category_prompts_again_with_earlier_choices_kept(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Customise").click()
    page.get_by_role("switch", name="Analytics").check()
    page.get_by_role("button", name="Save choices").click()
    wait_recorded(env, 1)
    sid = site_id()

    def add_category():
        db.session.add(Category(site_id=sid, key="location", position=9,
                                titles={"en": "Location"},
                                descriptions={"en": "Use your location to find stores."}))
        db.session.get(Site, sid).updated_at = utcnow()

    run_write(add_category)
    invalidate_site_cache()
    later(page, minutes=10)
    page.goto(env.url())
    banner(page).wait_for()
    page.get_by_role("button", name="Customise").click()
    assert page.get_by_role("switch", name="Location").is_checked() is False
    assert page.get_by_role("switch", name="Analytics").is_checked() is True
    page.get_by_role("switch", name="Location").check()
    page.get_by_role("button", name="Save choices").click()
    event = wait_recorded(env, 2)[1]
    assert event.categories == {"essential": True, "functional": False, "analytics": True,
                                "advertising": False, "location": True}
