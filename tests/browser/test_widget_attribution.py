"""What the ledger says is what the site does (issues 12 and 13), in Chromium, on a page
served from another origin, through the widget contract only.

- a withdrawal on the preference center reached from the widget holds when the visitor
  comes back, before any tag runs (and after the browser's back button);
- a change recorded elsewhere (the site's API, an erasure, a material policy version)
  holds in the visitor's next browser session (a new tab: sessionStorage is per tab);
- a returning visitor asks nothing before the page's load and once after it (304);
- a refused decision is not reported as saved; a mistyped key says so.
"""
from __future__ import annotations

import time

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError

from consent.database import run_write
from consent.extensions import db
from consent.policies import publish_policy
from consent.refusals import recent_refusals
from consent.sites import create_api_key, get_site, invalidate_site_cache
from consent.subjects import find_subject

from .helpers import (ADS_TAGS, ALL_TAGS, banner, consent_cookie, cookie_names, ran, settle,
                      wait_ran, wait_recorded, wait_until)

pytestmark = pytest.mark.browser


def accept_all(env, page):
    """A first visit that accepts everything; returns once the server answered."""
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 5) == ALL_TAGS
    wait_recorded(env, 1)
    wait_until(page, "document.cookie.includes('&r=')")  # the read token came back
    settle(page)


def analytics_cookies(context) -> set[str]:
    return {c for c in cookie_names(context) if c.startswith("_da_")}


def poll(page, expression: str, timeout: float = 15):
    """Poll EXPRESSION across the reloads the widget may do; fail on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if page.evaluate(expression):
                return
        except PlaywrightError:
            pass  # the page is reloading
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(50)


def navigation_type(page) -> str:
    return page.evaluate("performance.getEntriesByType('navigation')[0].type")


def next_session(context, env):
    """The visitor's next browser session: a new tab (fresh sessionStorage), same cookies,
    storage and HTTP cache."""
    page = context.new_page()
    page.goto(env.url())
    return page


def test_a_withdrawal_on_the_preference_center_holds_on_return_before_any_tag(env, context,
                                                                              page):
    accept_all(env, page)
    assert analytics_cookies(context) == {"_da_id", "_da_session"}
    page.locator("#open-settings").click()
    page.get_by_role("link", name="All privacy settings").click()
    page.wait_for_url(f"{env.app_url}/preferences?site=shop*")
    # the preference center knows this visitor: the widget proved it with the device key
    assert page.locator("#category-analytics").is_checked()
    assert "These are the choices recorded for this browser." in page.content()
    page.locator("#category-analytics").uncheck()
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    [saved] = wait_recorded(env, 1, "preferences")
    assert saved.categories["analytics"] is False
    page.get_by_role("link", name="Back to Test shop").click()
    page.wait_for_url(env.url())
    assert wait_ran(page, 2) == ADS_TAGS
    settle(page)
    # analytics never ran here: the page asked the server first, then ran what it allows
    assert ran(page) == ADS_TAGS and navigation_type(page) == "navigate"
    assert analytics_cookies(context) == set()
    assert page.evaluate("Consent.get().categories") == {
        "essential": True, "functional": True, "analytics": False, "advertising": True}
    assert consent_cookie(context)["d"] == "analytics"
    # the next page view of this session asks nothing
    before = len(env.server_requests())
    page.goto(env.url())
    assert wait_ran(page, 2) == ADS_TAGS
    settle(page)
    assert env.server_requests()[before:] == []


def test_the_back_button_from_the_preference_center_stops_the_withdrawn_tag(env, context,
                                                                            page):
    accept_all(env, page)
    page.locator("#open-settings").click()
    page.get_by_role("link", name="All privacy settings").click()
    page.wait_for_url(f"{env.app_url}/preferences?site=shop*")
    page.locator("#category-analytics").uncheck()
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    wait_recorded(env, 1, "preferences")
    page.go_back()  # the preference page before saving
    page.go_back()  # the shop: from the back/forward cache or loaded again
    page.wait_for_url(env.url())
    poll(page, "window.ran && window.Consent && Consent.get().categories.analytics === false")
    settle(page)
    poll(page, "JSON.stringify(window.ran) === JSON.stringify(['ads', 'ads-inline'])")
    assert analytics_cookies(context) == set()


def test_a_withdrawal_over_the_site_api_holds_in_the_next_browser_session(env, context, page):
    accept_all(env, page)
    subject = consent_cookie(context)["s"]
    token = run_write(lambda: create_api_key(get_site("shop")))
    r = requests.post(f"{env.app_url}/api/v1/sites/shop/subjects/{subject}/events",
                      json={"action": "withdraw", "categories": {"analytics": False}},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 201
    later = next_session(context, env)
    # the tags the cookie allowed ran; the check after the page's load stops them
    poll(later, "window.Consent && Consent.get() && Consent.get().categories.analytics === false")
    poll(later, "document.readyState === 'complete'")
    settle(later)
    assert navigation_type(later) == "reload" and ran(later) == ADS_TAGS
    assert analytics_cookies(context) == set()
    assert consent_cookie(context)["d"] == "analytics"


def test_a_returning_visitor_asks_once_a_session_after_the_load_and_gets_304(env, context,
                                                                             page):
    accept_all(env, page)

    def session() -> tuple[list[str], list[bool]]:
        start = len(env.server_requests())
        later = next_session(context, env)
        assert wait_ran(later, 5) == ALL_TAGS
        settle(later)
        after_load = later.evaluate("""() => {
            const nav = performance.getEntriesByType('navigation')[0];
            return performance.getEntriesByType('resource').filter(e => e.name.includes('/me/'))
              .map(e => e.startTime >= nav.loadEventStart); }""")
        later.close()
        return env.server_requests()[start:], after_load

    lines, after_load = session()
    assert len(lines) == 1 and "/api/v1/sites/shop/me/" in lines[0] and '" 200 ' in lines[0]
    assert after_load == [True]
    lines, after_load = session()  # nothing changed since: the browser revalidates
    assert len(lines) == 1 and "/api/v1/sites/shop/me/" in lines[0] and '" 304 ' in lines[0]
    assert after_load == [True]


def test_an_erased_visitor_is_asked_again_in_the_next_session(env, context, page):
    from consent.requests import erase_subject

    accept_all(env, page)
    db.session.rollback()
    subject = find_subject(get_site("shop").id, consent_cookie(context)["s"])
    erase_subject("shop", subject.id, "test")
    # the session's check of an erased visitor is answered 404 (Chromium logs the status)
    page.console.expect(r"status of 404")
    later = next_session(context, env)
    poll(later, "document.querySelector('.cw-banner') !== null")
    settle(later)
    assert later.evaluate("Consent.get()") is None and ran(later) == []
    assert consent_cookie(context) is None and analytics_cookies(context) == set()


def test_a_material_policy_version_reaches_the_next_session(env, context, page):
    accept_all(env, page)

    def publish():
        publish_policy(get_site("shop").id, "2026-06", text="Policy v2", material=True)
    run_write(publish)
    invalidate_site_cache()
    later = next_session(context, env)
    poll(later, "document.querySelector('.cw-banner') !== null")
    settle(later)
    assert later.evaluate("Consent.get()") is None and ran(later) == []
    assert "analytics" not in consent_cookie(context).get("d", "")  # the old choice, kept


def test_a_refused_decision_is_not_reported_as_saved(make_env, page):
    env = make_env(origins=lambda s: ["https://elsewhere.example"])
    env.render("shop.html", site_query="")  # ?site=: the config comes inlined
    recorded = []
    page.expose_function("noteRecorded", lambda detail: recorded.append(detail))
    page.add_init_script("addEventListener('consent:recorded', e => noteRecorded(e.detail))")
    # what the test is about: the server's refusal (403) and the widget's one line for it
    page.console.expect(r"status of 403")
    page.console.expect(r"consent: choice not recorded: origin .* is not allowed")
    page.goto(env.url("shop.html"))
    page.get_by_role("button", name="Accept all").click()
    origin = env.site.url
    reason = f"origin {origin} is not allowed for site 'shop'"
    def refusals_logged(count: int) -> list[str]:
        deadline = time.monotonic() + 10
        while len(logged := [e for e in page.console.errors if "not recorded" in e]) < count:
            assert time.monotonic() < deadline, page.console.errors
            page.wait_for_timeout(50)  # console messages reach the test a moment later
        return logged

    assert reason in refusals_logged(1)[0]
    # (the same choice again: a withdrawal would reload the page, its tags having run)
    message = page.evaluate("Consent.acceptAll().then(() => 'saved', e => e.message)")
    assert reason in message
    logged = refusals_logged(2)
    assert len(logged) == 2 and all(reason in e for e in logged)  # one per refused attempt
    assert page.evaluate("Consent.get().eventId") is None and recorded == []
    # kept, to be sent again once the site's origin is allowed
    assert len(page.evaluate("JSON.parse(localStorage.getItem('consent:queue:shop'))")) == 2
    assert env.events() == []
    db.session.rollback()
    [refused] = recent_refusals(get_site("shop").id)
    assert refused.sentence == f"2 decisions refused from origin {origin}"


@pytest.mark.parametrize("embed", ["site", "data-site"])
def test_a_mistyped_site_key_says_so_and_keeps_every_tag_inert(env, page, embed):
    html = env.render_text(site_query="" if embed == "site" else None)
    html = html.replace("?site=shop", "?site=shpo").replace('data-site="shop"',
                                                            'data-site="shpo"')
    (env.root / "typo.html").write_text(html)
    page.console.expect(r"status of 404")  # the script's answer: JavaScript, status 404
    page.console.expect(r"consent: unknown site key 'shpo'")
    page.goto(env.url("typo.html"))
    settle(page)
    assert page.evaluate("typeof window.Consent") == "object"
    assert page.evaluate("Consent.get()") is None
    assert page.evaluate("Consent.acceptAll().then(() => 'saved', () => 'refused')") == "refused"
    assert ran(page) == [] and banner(page).count() == 0
    assert any("unknown site key 'shpo'" in e for e in page.console.errors)
    assert page.evaluate("window.dataLayer.some(e => e[0] === 'consent' && e[1] === 'default')")
