"""Seed policy 003 (Allset), end to end: each test proves one promise of the profile
`scheduling` (see consent/profiles/scheduling.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from consent.database import utcnow
from consent.requests import open_request
from tests.support.admin import admin_client
from tests.support.api import without_notice
from tests.support.browser import new_context
from tests.support.widget import (GPC_ON, banner, consent_commands, consent_cookie, ran, settle,
                                  wait_ran)

pytestmark = pytest.mark.browser

TYPES = ["Essential Cookies", "Functional Cookies", "Performance/Analytical Cookies",
         "Interest-Based Advertising"]


@pytest.fixture
def env(load_env):
    return load_env("scheduling")



def save_dialog(page) -> None:
    page.get_by_role("button", name="Save choices").click()


def test_the_banner_offers_the_policys_cookie_types_and_blocks_them_until_chosen(env, page):
    page.goto(env.url())
    banner(page).wait_for()
    settle(page)
    assert ran(page) == [] and page.get_attribute("iframe", "src") is None
    page.get_by_role("button", name="Customise").click()
    switches = page.get_by_role("switch")
    switches.first.wait_for()  # the dialog's details load when it opens
    assert [switches.nth(i).get_attribute("id") for i in range(switches.count())] == [
        "cw-c-essential", "cw-c-functional", "cw-c-analytics", "cw-c-advertising"]
    for i, name in enumerate(TYPES):
        assert page.locator("dialog label.cw-ct").nth(i).inner_text() == name
    essential = page.get_by_role("switch", name="Essential Cookies")
    assert essential.is_checked() and essential.is_disabled()
    performance = page.locator("dialog li.cw-cat").nth(2)
    performance.locator("summary").click()
    assert "Google Analytics" in performance.inner_text() and "_gid" in performance.inner_text()

    page.get_by_role("switch", name="Functional Cookies").check()
    save_dialog(page)
    assert wait_ran(page, 1) == ["functional"]
    page.wait_for_function("document.querySelector('iframe').getAttribute('src') == 'frame.html'")
    settle(page)
    assert ran(page) == ["functional"]
    page.locator("#open-settings").click()
    page.get_by_role("switch", name="Performance/Analytical Cookies").check()
    save_dialog(page)
    assert wait_ran(page, 2) == ["functional", "analytics"]
    first, second = env.wait_events(2)
    assert first.categories == {"essential": True, "functional": True, "analytics": False,
                                "advertising": False}
    assert second.categories["analytics"] is True and second.categories["advertising"] is False


def test_interest_based_ads_wait_for_consent(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Customise").click()
    page.get_by_role("switch", name="Performance/Analytical Cookies").check()
    save_dialog(page)
    assert wait_ran(page, 1) == ["analytics"]
    settle(page)
    assert "advertising" not in ran(page)
    update = consent_commands(page, "update")[-1]
    assert (update["analytics_storage"], update["ad_storage"]) == ("granted", "denied")

    page.locator("#open-settings").click()
    page.get_by_role("switch", name="Interest-Based Advertising").check()
    save_dialog(page)
    assert wait_ran(page, 2) == ["analytics", "advertising"]
    assert consent_commands(page, "update")[-1]["ad_storage"] == "granted"
    assert env.wait_events(2)[1].categories["advertising"] is True

    page.locator("#open-settings").click()
    page.get_by_role("switch", name="Interest-Based Advertising").uncheck()
    with page.expect_navigation():
        save_dialog(page)
    wait_ran(page, 1)
    settle(page)
    assert ran(page) == ["analytics"]
    assert consent_commands(page, "update")[-1]["ad_storage"] == "denied"
    assert env.wait_events(3)[2].categories["advertising"] is False


def test_promotional_email_can_be_opted_out(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Reject all").click()
    env.wait_events(1)
    subject = page.evaluate("Consent.get().subject")
    # "we may send you promotional email offers": until the person says otherwise.
    assert env.may_i_send("email", "promotional", subject=subject)["reason"] == "default_allowed"
    # (the site's backend names the visitor with the key of the same consent cookie)
    link = env.api("POST", "/unsubscribe-links", json={
        "channel": "email", "address": "sam@example.org", "subject": subject,
        "key": consent_cookie(page.context)["k"]}).json()
    # What a mail provider sends for the List-Unsubscribe-Post header (RFC 8058).
    r = requests.post(env.local(link["url"]), data={"List-Unsubscribe": "One-Click"},
                      timeout=30)
    assert r.status_code == 200
    answer = env.may_i_send("email", "promotional", subject=subject)
    assert (answer["allowed"], answer["reason"]) == (False, "opted_out")
    assert env.may_i_send("email", "transactional", subject=subject)["allowed"] is True
    assert env.may_i_send("email", "promotional",
                      address="SAM@example.org ")["allowed"] is False
    page.goto(f"{env.app_url}/preferences?site={env.site_key}&subject={subject}")
    assert not page.locator("#channel-email-promotional").is_checked()
    assert "Chosen" in page.locator("#when-channel-email-promotional").inner_text()

    # Sam asks for deletion; promotional offers to the address stay stopped.
    assert env.erase(subject=subject)["result"]["suppressions_kept"] == ["email.promotional"]
    env.assert_suppressed("email", address="sam@example.org")


def test_valid_requests_are_due_within_45_days_and_shown_overdue(env, app, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    env.wait_events(1)
    subject = page.evaluate("Consent.get().subject")
    in_time = open_request(env.site_key, "access", subject=subject,
                           received_at=utcnow() - timedelta(days=44))
    late = open_request(env.site_key, "erasure", subject=subject,
                        received_at=utcnow() - timedelta(days=46))
    assert in_time.deadline_rule == late.deadline_rule == "45 days"
    assert late.due_at - late.received_at == timedelta(days=45)
    assert late.overdue() and not in_time.overdue()

    admin = admin_client(app)
    dashboard = admin.get(f"/admin/sites/{env.site_key}/").get_data(as_text=True)
    assert 'id="overdue-count">1<' in dashboard
    listing = admin.get(f"/admin/sites/{env.site_key}/requests").get_data(as_text=True)
    late_row = listing.split(f">{late.id}</a>")[1].split("</tr>")[0]
    in_time_row = listing.split(f">{in_time.id}</a>")[1].split("</tr>")[0]
    assert "OVERDUE" in late_row and "(45 days)" in late_row
    assert "OVERDUE" not in in_time_row


def test_gpc_is_honoured_for_advertising_though_do_not_track_is_not(env, browser, page):
    # Do Not Track alone: not supported, as the policy says -- nothing happens.
    dnt = new_context(browser, locale="en-GB", extra_http_headers={"DNT": "1"})
    dnt_page = dnt.new_page()
    dnt_page.goto(env.url())
    banner(dnt_page).wait_for()
    settle(dnt_page)
    assert dnt_page.evaluate("Consent.get()") is None
    assert dnt_page.locator(".cw-gpc").count() == 0
    assert env.events() == []
    dnt.close()

    # Global Privacy Control: honoured for interest-based advertising, and said so.
    page.add_init_script(GPC_ON)
    page.goto(env.url())
    banner(page).wait_for()
    note = page.locator(".cw-banner .cw-gpc").inner_text()
    assert "interest-based advertising is turned off" in note and "Do Not Track" in note
    [gpc] = env.wait_events(1)
    assert (gpc.action, gpc.source, gpc.categories) == ("gpc", "gpc", {"advertising": False})
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 2) == ["functional", "analytics"]
    accepted = env.wait_events(2)[1]
    # (the profile has rules by region: the region in force is recorded, here unknown)
    assert accepted.categories["advertising"] is False and without_notice(accepted.meta) == {
        "gpc": True, "region": None, "rule": "opt-in"}
    settle(page)
    assert "advertising" not in ran(page)
