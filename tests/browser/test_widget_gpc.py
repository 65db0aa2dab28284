"""Global Privacy Control: advertising off without a prompt, recorded once, never undone."""
from __future__ import annotations

import pytest

from tests.support.api import without_notice

from .helpers import (ADS_TAGS, ANALYTICS_TAGS, GPC_ON, banner, ran, settle, wait_ran,
                      wait_recorded)

pytestmark = pytest.mark.browser


def test_gpc_without_prior_choice_turns_advertising_off_once_and_says_so(env, page):
    page.add_init_script(GPC_ON)
    page.goto(env.url())
    banner(page).wait_for()
    note = page.locator(".cw-banner .cw-gpc")
    assert "Global Privacy Control" in note.inner_text()
    [gpc] = wait_recorded(env, 1)
    assert (gpc.action, gpc.source, gpc.categories) == ("gpc", "gpc", {"advertising": False})
    got = page.evaluate("Consent.get()")
    assert got["gpc"] is True and got["categories"]["advertising"] is False
    assert got["decidedAt"] is None  # no choice about the other categories yet
    # next page view: still one gpc event, banner still asks about the rest
    page.goto(env.url())
    banner(page).wait_for()
    settle(page)
    assert len(env.events("gpc")) == 1
    page.get_by_role("button", name="Customise").click()
    page.locator("dialog .cw-gpc").wait_for()  # the dialog's details load when it opens
    assert page.get_by_role("switch", name="Advertising").is_disabled()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 3) == ANALYTICS_TAGS
    accept = wait_recorded(env, 2)[1]
    assert accept.action == "accept_all" and accept.categories["advertising"] is False
    assert without_notice(accept.meta) == {"gpc": True}
    settle(page)
    assert not set(ADS_TAGS) & set(ran(page))


def test_gpc_after_accept_all_opts_out_and_a_later_visit_without_it_stays_out(env, context, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    wait_ran(page, 5)
    wait_recorded(env, 1)

    with_gpc = context.new_page()
    with_gpc.add_init_script(GPC_ON)
    with_gpc.goto(env.url())
    notice = with_gpc.locator(".cw-banner")
    notice.wait_for()
    assert "Opt-out signal honoured" in notice.inner_text()
    assert with_gpc.get_by_role("button", name="Accept all").count() == 0  # no prompt
    assert wait_ran(with_gpc, 3) == ANALYTICS_TAGS
    gpc = wait_recorded(env, 2)[1]
    assert gpc.action == "gpc" and gpc.categories == {"advertising": False}
    got = with_gpc.evaluate("Consent.get()")
    assert got["categories"]["advertising"] is False and got["categories"]["analytics"] is True
    with_gpc.get_by_role("button", name="OK", exact=True).click()
    with_gpc.goto(env.url())
    settle(with_gpc)
    assert len(env.events()) == 2  # recorded once, not on every page view

    without = context.new_page()
    without.goto(env.url())
    assert wait_ran(without, 3) == ANALYTICS_TAGS
    settle(without)
    assert ran(without) == ANALYTICS_TAGS and banner(without).count() == 0
    assert without.evaluate("Consent.get().categories.advertising") is False
    assert len(env.events()) == 2


def test_gpc_sent_only_as_a_header_is_what_the_page_does_once_recorded(env, browser):
    # An outside review: Sec-GPC: 1 without navigator.globalPrivacyControl (an extension
    # or a proxy adds the header). The page cannot see it; the server records advertising
    # off. The widget then ran the advertising tags on and on while the ledger said off.
    # Now it takes what the server recorded from the answer and stops the tag it ran.
    from tests.support.browser import new_context

    from .test_widget_attribution import poll

    context = new_context(browser, extra_http_headers={"Sec-GPC": "1"})
    page = context.new_page()
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    [accept] = wait_recorded(env, 1)
    assert accept.categories["advertising"] is False
    assert without_notice(accept.meta) == {"gpc": True}  # (and what the page showed)
    poll(page, "window.Consent && Consent.get() && Consent.get().categories.advertising === false")
    # (the answer may reload the page to stop a tag that ran: read it once that is over)
    settle(page)
    # (and it says GPC was honoured, as the ledger does: Consent.get() and the cookie the
    # site's backend reads, g=1)
    assert page.evaluate("Consent.get().gpc") is True
    [cookie] = [c for c in context.cookies() if c["name"] == "consent"]
    assert "g=1" in cookie["value"].split("&")
    # (an advertising tag that ran before the answer came is stopped by a reload; one that
    # had not run yet never runs)
    assert ran(page) == ANALYTICS_TAGS
    later = context.new_page()  # and in the next session
    later.goto(env.url())
    assert wait_ran(later, 3) == ANALYTICS_TAGS
    settle(later)
    assert ran(later) == ANALYTICS_TAGS and len(env.events()) == 1
    context.close()


def test_a_gpc_event_does_not_hide_a_withdrawal_made_elsewhere(env, context, page):
    # An outside review: the site's backend withdrew analytics; the browser's next session
    # came with GPC and recorded its `gpc` event first. The check then found the server's
    # last event to be the browser's own and kept the browser's stale analytics "on". The
    # event's answer carries the whole state: the widget adopts it.
    import requests

    from consent.database import run_write
    from consent.sites import create_api_key, get_site

    from .test_widget_attribution import accept_all, analytics_cookies, poll

    accept_all(env, page)
    subject = page.evaluate("Consent.get().subject")
    token = run_write(lambda: create_api_key(get_site("shop")))
    r = requests.post(f"{env.app_url}/api/v1/sites/shop/subjects/{subject}/events",
                      json={"action": "withdraw", "categories": {"analytics": False}},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 201
    later = context.new_page()
    later.add_init_script(GPC_ON)
    later.goto(env.url())
    assert wait_recorded(env, 3)[2].action == "gpc"
    poll(later, "window.Consent && Consent.get() && Consent.get().categories.analytics === false")
    poll(later, "document.readyState === 'complete'")
    settle(later)
    assert ran(later) == []  # neither analytics (withdrawn) nor advertising (GPC)
    assert analytics_cookies(context) == set()
    got = later.evaluate("Consent.get().categories")
    assert got["analytics"] is False and got["advertising"] is False
