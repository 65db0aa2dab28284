"""Withdrawing a category deletes the localStorage and sessionStorage keys its services
declared (by name or pattern, in the area declared), and nothing else: not another
category's keys, not the site's own, never the widget's own consent: keys."""
from __future__ import annotations

import pytest

from tests.support.waits import wait_recorded
from tests.support.widget import wait_until

pytestmark = pytest.mark.browser

CATEGORIES = [
    {"key": "essential"},
    {"key": "location", "services": [
        {"name": "Store finder", "storage": [
            {"name": "finder_last", "area": "local"},
            {"pattern": "^geo_", "area": "session"},
            {"pattern": "^consent|^loc_", "area": "local"}]}]},
    {"key": "analytics", "services": [
        {"name": "Stats", "storage": [{"name": "stats_id", "area": "local"}]}]},
]

KEYS = """() => ({local: Object.keys(localStorage).sort(),
                  session: Object.keys(sessionStorage).sort()})"""


def test_withdrawal_deletes_the_categorys_declared_storage_keys(make_env, page):
    env = make_env(categories=CATEGORIES)
    page.goto(env.url())
    page.evaluate("Consent.set({location: true, analytics: true})")
    wait_recorded(env, 1)
    page.evaluate("""() => {
        for (const k of ['finder_last', 'loc_a', 'loc_b', 'geo_x', 'stats_id', 'basket'])
          localStorage.setItem(k, '1');
        for (const k of ['geo_x', 'geo_y', 'finder_last', 'tab']) sessionStorage.setItem(k, '1');
    }""")
    before = page.evaluate(KEYS)
    own = [k for k in before["local"] if k.startswith("consent:")]
    own_session = [k for k in before["session"] if k.startswith("consent:")]
    assert own  # the widget keeps its configuration (and queue) in localStorage
    page.evaluate("Consent.set({location: false})")
    withdrawal = wait_recorded(env, 2)[1]
    assert withdrawal.categories["location"] is False
    # The deletion runs once the second part and the category's declarations (the
    # details) are loaded, independently of the recording: the server may have the event
    # first. Wait (failing after 15 s) until the declared keys are gone,
    # then check that exactly those went.
    wait_until(page, "['finder_last', 'loc_a', 'loc_b'].every(k => localStorage.getItem(k) === null)"
                     " && ['geo_x', 'geo_y'].every(k => sessionStorage.getItem(k) === null)")
    keys = page.evaluate(KEYS)
    # local: finder_last (name) and ^loc_ (pattern) go; the pattern ^consent spares the
    # widget's own keys; geo_x stays (^geo_ is declared for sessionStorage only)
    assert keys["local"] == sorted(own + ["basket", "geo_x", "stats_id"])
    # session: ^geo_ goes; finder_last stays (declared for localStorage only)
    assert keys["session"] == sorted(own_session + ["finder_last", "tab"])
    # the widget still works from its own storage: the choice stands after a reload
    page.reload()
    assert page.evaluate("Consent.get().categories") == {
        "essential": True, "location": False, "analytics": True}


def test_granting_or_an_unchanged_category_deletes_nothing(make_env, page):
    env = make_env(categories=CATEGORIES)
    page.goto(env.url())
    page.evaluate("() => { localStorage.setItem('finder_last', '1'); "
                  "sessionStorage.setItem('geo_x', '1'); }")
    page.evaluate("Consent.set({location: true, analytics: false})")
    wait_recorded(env, 1)
    page.evaluate("Consent.set({analytics: true})")
    wait_recorded(env, 2)
    keys = page.evaluate(KEYS)
    assert "finder_last" in keys["local"] and "geo_x" in keys["session"]
