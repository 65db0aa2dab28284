"""`/consent.js?site=KEY`: the widget with its site's config inlined, one request in all."""
from __future__ import annotations

import gzip

import pytest

from tests.support.browser import strict_csp

from .helpers import ALL_TAGS, banner, loading, settle, wait_ran, wait_recorded

pytestmark = pytest.mark.browser

BUDGET = 6000  # bytes, gzip -9, everything from the consent server before the banner shows


def test_first_visit_needs_one_request_and_works_under_a_strict_csp(env, page):
    env.render("one.html", site_query="")
    env.serve_with_headers("one.html", {"Content-Security-Policy": strict_csp(env.app_url)})
    with loading(page, env, "/consent.js?site=shop") as load:
        page.goto(env.url("one.html"))
    banner(page).wait_for()
    assert load.asked == ["/consent.js?site=shop"]  # no config, no stylesheet request
    assert len(gzip.compress(load.body(), 9)) <= BUDGET
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


# What consent.js does around the banner on a page view: the listeners it adds and its
# sessionStorage reads and writes, each noted with whether the banner was in the page then.
WATCH_WIDGET = """(() => {
  window.watch = [];
  const mine = () => /consent\\.js/.test(new Error().stack);
  const shown = () => !!document.querySelector('.cw-banner');
  const add = EventTarget.prototype.addEventListener;
  EventTarget.prototype.addEventListener = function (type, ...rest) {
    if (mine()) watch.push(['listen ' + type, shown()]);
    return add.call(this, type, ...rest);
  };
  for (const m of ['getItem', 'setItem']) {
    const real = Storage.prototype[m];
    Storage.prototype[m] = function (...args) {
      if (this === sessionStorage && mine()) watch.push(['session ' + m, shown()]);
      return real.apply(this, args);
    };
  }
})();"""


def test_a_first_visit_leaves_the_page_load_to_the_page(env, page):
    # On a page with nothing else to load, the load event (and the pageshow after it) runs
    # in the same task as DOMContentLoaded, before the banner's first frame: a first visit
    # (nothing stored, so nothing to check with the server) listens for neither, and reads
    # no sessionStorage before the banner. A choice still marks the tab as checked, so the
    # next page views ask the server nothing (test above).
    env.render("one.html", site_query="")
    page.add_init_script(WATCH_WIDGET)
    page.goto(env.url("one.html"))
    banner(page).wait_for()
    settle(page)
    seen = page.evaluate("window.watch")
    assert ["listen load", False] not in seen and ["listen load", True] not in seen
    assert ["listen pageshow", False] not in seen and ["listen pageshow", True] not in seen
    assert not [what for what, shown in seen if what.startswith("session") and not shown]
    assert page.evaluate("sessionStorage.getItem('consent:sync:shop')") is None
    page.get_by_role("button", name="Reject all").click()
    wait_recorded(env, 1)
    assert page.evaluate("sessionStorage.getItem('consent:sync:shop')") == "c"
    # a new tab (its own sessionStorage) with the stored choice: the check after the load
    other = page.context.new_page()
    other.add_init_script(WATCH_WIDGET)
    other.goto(env.url("one.html"))
    settle(other)
    assert ["listen load", False] in other.evaluate("window.watch")
    assert other.evaluate("sessionStorage.getItem('consent:sync:shop')") == "c"
    other.close()
