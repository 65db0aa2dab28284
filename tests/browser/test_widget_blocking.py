"""Tagged scripts and iframes: inert before consent, run once in document order after."""
from __future__ import annotations

import pytest
import requests

from .helpers import (ADS_TAGS, ALL_TAGS, banner, consent_cookie, cookie_names,
                      ran, settle, wait_ran, wait_recorded, wait_until)

pytestmark = pytest.mark.browser


def test_nothing_runs_loads_or_is_stored_before_a_choice(env, context, page):
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(env.url())
    banner(page).wait_for()
    settle(page)
    assert ran(page) == []
    assert page.evaluate("Consent.get()") is None
    assert page.get_attribute("iframe", "src") is None
    assert context.cookies() == [] and page.evaluate("localStorage.length") == 0
    # only the page itself and the widget (its config inlined): no tag, no frame
    assert sorted({u.split("?")[0] for u in requested} - {env.url("favicon.ico")}) == sorted([
        env.url(), env.url("probe.js"), f"{env.app_url}/consent.js"])
    assert env.events() == []


def test_accept_all_runs_tags_once_in_document_order_and_records(env, context, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    # a1 is external and slow to arrive compared with the inline one after it: order kept
    assert wait_ran(page, 5) == ALL_TAGS
    assert page.get_attribute("iframe", "src") == "frame.html"
    expect_hidden = banner(page)
    expect_hidden.wait_for(state="detached")
    [event] = wait_recorded(env, 1)
    assert event.action == "accept_all" and event.source == "banner"
    assert event.categories == {"essential": True, "functional": True, "analytics": True,
                                "advertising": True}
    # the cookie names the visitor the server recorded, with the token to read it
    wait_until(page, "document.cookie.includes('&r=')")
    cookie = consent_cookie(context)
    me = requests.get(f"{env.app_url}/api/v1/sites/shop/me/{cookie['s']}",
                      params={"r": cookie["r"]}, timeout=5).json()
    assert me["eventId"] == event.event_id and me["categories"]["advertising"] is True
    got = page.evaluate("Consent.get()")
    assert got["categories"] == event.categories and got["source"] == "banner"
    assert got["policyVersion"] == "2026-01" and got["decidedAt"]
    # choosing again does not run anything twice
    page.evaluate("Consent.acceptAll()")
    wait_recorded(env, 2)
    assert ran(page) == ALL_TAGS


def test_reject_all_keeps_tags_inert_now_and_on_the_next_visit(env, context, page):
    page.goto(env.url())
    page.get_by_role("button", name="Reject all").click()
    [event] = wait_recorded(env, 1)
    assert event.action == "reject_all"
    assert event.categories == {"essential": True, "functional": False, "analytics": False,
                                "advertising": False}
    assert ran(page) == [] and page.get_attribute("iframe", "src") is None
    assert cookie_names(context) == {"consent"}
    page.goto(env.url())
    settle(page)
    assert banner(page).count() == 0
    assert ran(page) == []
    assert page.evaluate("Consent.get().categories") == event.categories


def test_custom_choice_runs_only_granted_categories(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Customise").click()
    page.get_by_role("switch", name="Advertising").check()
    page.get_by_role("button", name="Save choices").click()
    assert wait_ran(page, 2) == ADS_TAGS
    [event] = wait_recorded(env, 1)
    assert event.action == "custom" and event.source == "preferences"
    assert event.categories["advertising"] is True and event.categories["analytics"] is False
    assert page.get_attribute("iframe", "src") is None


def test_returning_visitor_gets_tags_without_a_banner(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    wait_ran(page, 5)
    wait_recorded(env, 1)
    page.goto(env.url())
    assert wait_ran(page, 5) == ALL_TAGS
    assert banner(page).count() == 0


def test_closing_or_navigating_is_not_consent_and_the_site_stays_usable(env, context, page):
    page.goto(env.url())
    banner(page).wait_for()
    # the page under the banner works: it is not modal
    page.evaluate("document.getElementById('site-button').addEventListener('click', "
                  "() => window.clicked = true)")
    page.click("#site-button")
    assert page.evaluate("window.clicked") is True
    page.mouse.wheel(0, 800)
    page.goto(env.url() + "?next")
    banner(page).wait_for()
    settle(page)
    assert ran(page) == [] and env.events() == [] and context.cookies() == []


def test_withdrawal_deletes_cookies_records_and_reloads_to_stop_tags(env, context, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    wait_ran(page, 5)
    wait_recorded(env, 1)
    page.evaluate("document.cookie = 'basket=3; path=/'")
    assert {"_da_id", "_da_session", "_ads", "basket"} <= cookie_names(context)
    page.click("#open-settings")
    page.get_by_role("switch", name="Analytics").uncheck()
    with page.expect_navigation():  # analytics code already ran: only a reload stops it
        page.get_by_role("button", name="Save choices").click()
    withdrawal = wait_recorded(env, 2)[1]
    assert withdrawal.action == "custom" and withdrawal.categories["analytics"] is False
    names = cookie_names(context)
    assert not {n for n in names if n.startswith("_da_")}  # pattern ^_da_ from the config
    assert {"_ads", "basket", "consent"} <= names  # other categories' and the site's own stay
    assert wait_ran(page, 2) == ADS_TAGS
    assert page.evaluate("Consent.get().categories.analytics") is False


def test_withdrawing_an_iframe_category_stops_it_without_reload(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    page.wait_for_function("document.querySelector('iframe').getAttribute('src') === 'frame.html'")
    page.evaluate("window.stillHere = true")
    page.evaluate("Consent.set({functional: false})")
    page.wait_for_function("document.querySelector('iframe').getAttribute('src') === 'about:blank'")
    assert page.evaluate("window.stillHere") is True
    assert wait_recorded(env, 2)[1].categories["functional"] is False
