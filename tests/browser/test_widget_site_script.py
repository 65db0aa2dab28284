"""`/consent.js?site=KEY`: the widget with its site's config inlined, one request in all."""
from __future__ import annotations

import gzip

import pytest

from tests.support.browser import strict_csp

from .helpers import ALL_TAGS, banner, settle, wait_ran, wait_recorded

pytestmark = pytest.mark.browser

BUDGET = 6000  # bytes, gzip -9, everything from the consent server before the banner shows


def test_first_visit_needs_one_request_and_works_under_a_strict_csp(env, page):
    env.render("one.html", site_query="")
    env.serve_with_headers("one.html", {"Content-Security-Policy": strict_csp(env.app_url)})
    bodies = {}
    page.on("response", lambda r: r.url.startswith(env.app_url) and bodies.setdefault(
        r.url.removeprefix(env.app_url), r.body()))
    page.goto(env.url("one.html"))
    banner(page).wait_for()
    assert list(bodies) == ["/consent.js?site=shop"]  # no config, no stylesheet request
    assert len(gzip.compress(bodies["/consent.js?site=shop"], 9)) <= BUDGET
    # styled (adopted stylesheet) and in the language of the page
    assert banner(page).evaluate("e => getComputedStyle(e).position") == "fixed"
    assert page.get_by_role("button", name="Accept all").is_visible()
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 5) == ALL_TAGS
    [event] = wait_recorded(env, 1)
    assert event.action == "accept_all" and event.policy_version == "2026-01"
    assert page.console.errors == [] and page.evaluate("window.violations") == []


def test_returning_visitor_makes_no_request_beyond_the_cached_script(env, page):
    env.render("one.html", site_query="")
    page.goto(env.url("one.html"))
    page.get_by_role("button", name="Reject all").click()
    wait_recorded(env, 1)
    settle(page)
    before = len(env.server_requests())
    for _ in range(2):
        page.goto(env.url("one.html"))
        settle(page)
        assert page.evaluate("Consent.get().categories.analytics") is False
        assert banner(page).count() == 0
    assert env.server_requests()[before:] == []


def test_a_config_in_another_language_than_the_page_is_not_used(env, page):
    # the embed pins English, the page is German: the widget asks for the German config
    env.render("de.html", lang="de", site_query="&lang=en")
    requested = []
    page.on("request", lambda r: r.url.startswith(env.app_url) and requested.append(
        r.url.removeprefix(env.app_url)))
    page.goto(env.url("de.html"))
    page.get_by_role("button", name="Alle akzeptieren").wait_for()
    assert "/api/v1/sites/shop/config?locale=de" in requested
    page.get_by_role("button", name="Alle ablehnen").click()
    assert wait_recorded(env, 1)[0].locale == "de"


def test_a_page_language_the_site_lacks_keeps_the_inlined_config(env, page):
    # Italian is not offered: the server's choice for the script stands, no second request
    env.render("it.html", lang="it", site_query="&lang=fr")
    requested = []
    page.on("request", lambda r: r.url.startswith(env.app_url) and requested.append(
        r.url.removeprefix(env.app_url)))
    page.goto(env.url("it.html"))
    page.get_by_role("button", name="Tout accepter").wait_for()
    settle(page)
    assert requested == ["/consent.js?site=shop&lang=fr"]
