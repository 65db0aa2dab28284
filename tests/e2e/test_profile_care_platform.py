"""Seed policy 004 (AloPal), end to end: each test proves one promise of the profile
`care_platform` (see consent/profiles/care_platform.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from consent.database import utcnow
from consent.extensions import db
from consent.profiles import PROFILES
from consent.requests import DataRequest, due_date, open_request
from tests.support.admin import admin_client, make_token, post_form
from tests.support.api import bearer, without_notice
from tests.support.browser import new_context
from tests.support.login import follow_in_browser
from tests.support.widget import (banner, consent_commands, consent_cookie, cookie_names, ran,
                                  settle, wait_ran, wait_until)

pytestmark = pytest.mark.browser

TRACKING_COOKIES = {"_ga", "_gid", "_gcl_au", "li_fat_id"}


@pytest.fixture
def env(load_env):
    return load_env("care_platform")



def test_consent_is_withdrawn_on_the_profile_page_by_clicking_the_box(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 2) == ["analytics", "advertising"]
    env.wait_events(1)
    visitor = page.evaluate("Consent.get().subject")
    # The member signs in on the site, whose backend links them (the visitor id and device
    # key of the consent cookie it reads) and opens their profile page.
    link = env.api("POST", "/login-links", json={
        "user_id": "member-12", "subject": visitor, "key": consent_cookie(page.context)["k"]})
    assert link.status_code == 200, link.text
    follow_in_browser(page, env.local(link.json()["url"]))
    assert "signed in" in page.locator("#who").inner_text()
    box = page.locator("#category-analytics")
    assert box.is_checked()
    page.locator("label[for=category-analytics]").click()  # clicking the box removes consent
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    withdrawal = env.events()[-1]
    assert (withdrawal.action, withdrawal.source) == ("preferences", "preferences")
    assert withdrawal.categories["analytics"] is False
    assert withdrawal.categories["advertising"] is True  # only what was unticked
    member = env.api("GET", "/users/member-12").json()
    assert member["consent"]["categories"]["analytics"] is False
    assert not page.locator("#category-analytics").is_checked()


def test_commercial_email_opt_out_applies_at_once_within_10_business_days(env, app, page):
    member = {"user_id": "member-3"}
    # Commercial e-mail needs consent here; the member gave it on the site.
    assert env.may_i_send("email", "promotional", **member)["reason"] == "default_denied"
    env.api("POST", "/channel-choices", json={**member, "channels": {"email.promotional": True}})
    assert env.may_i_send("email", "promotional", **member)["allowed"] is True
    link = env.api("POST", "/unsubscribe-links", json={
        "channel": "email", "address": "member3@example.org", **member}).json()

    page.goto(env.local(link["url"]))
    page.get_by_role("button", name="Unsubscribe").click()
    page.locator("#unsubscribed").wait_for()
    assert "continue to receive administrative messages" in page.locator(".pc-note").inner_text()
    # Applied at once: the very next commercial e-mail is refused.
    answer = env.may_i_send("email", "promotional", **member)
    assert (answer["allowed"], answer["reason"]) == (False, "opted_out")
    assert env.may_i_send("email", "transactional", **member)["allowed"] is True

    [unsubscribe] = env.events("unsubscribe")
    db.session.rollback()
    [opt_out] = db.session.execute(db.select(DataRequest)).scalars().all()
    assert (opt_out.kind, opt_out.status, opt_out.deadline_rule) == (
        "opt-out", "completed", "10 business days")
    assert opt_out.completed_at == unsubscribe.recorded_at
    assert opt_out.due_at == due_date(unsubscribe.recorded_at, {"business_days": 10})
    assert opt_out.due_at - opt_out.received_at >= timedelta(days=12)  # two weekends
    listing = admin_client(app).get(f"/admin/sites/{env.site_key}/requests").get_data(
        as_text=True)
    row = listing.split(f">{opt_out.id}</a>")[1].split("</tr>")[0]
    assert "opt-out" in row and "completed" in row and "(10 business days)" in row
    assert "OVERDUE" not in row

    # The member has their account deleted: the opt-out is kept, the consent given before
    # it is not revived.
    assert env.erase(**member)["result"]["suppressions_kept"] == ["email.promotional"]
    env.assert_suppressed("email", **member)
    env.assert_suppressed("email", address="member3@example.org")


def test_google_and_linkedin_tracking_are_listed_and_wait_for_consent(env, context, page):
    page.goto(env.url())
    page.get_by_role("button", name="Customise").click()
    dialog = page.locator("dialog")
    dialog.locator("summary").first.wait_for()  # the dialog's details load when it opens
    for summary in dialog.locator("summary").all():
        summary.click()
    analytics, advertising = dialog.locator("li.cw-cat").nth(1), dialog.locator("li.cw-cat").nth(2)
    for name in ("Google Analytics", "Google Tag Manager", "Optimize"):
        assert name in analytics.inner_text()
    for name in ("Google AdWords (Conversion Tracking)", "LinkedIn (Conversion Tracking)"):
        assert name in advertising.inner_text()
    assert "li_fat_id" in advertising.inner_text()
    settle(page)
    assert ran(page) == [] and not TRACKING_COOKIES & cookie_names(context)

    page.get_by_role("switch", name="Web analytics and error management").check()
    page.get_by_role("button", name="Save choices").click()
    assert wait_ran(page, 1) == ["analytics"]
    settle(page)
    assert {"_ga", "_gid"} <= cookie_names(context)
    assert not {"_gcl_au", "li_fat_id"} & cookie_names(context)
    page.locator("#open-settings").click()
    page.get_by_role("switch", name="Attribution and conversion tracking").check()
    page.get_by_role("button", name="Save choices").click()
    assert wait_ran(page, 2) == ["analytics", "advertising"]
    assert TRACKING_COOKIES <= cookie_names(context)

    # Withdrawing removes the tools' first-party cookies; their code stays off.
    page.locator("#open-settings").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Reject all").last.click()
    settle(page)
    assert ran(page) == [] and not TRACKING_COOKIES & cookie_names(context)
    assert [e.action for e in env.wait_events(3)] == ["custom", "custom", "reject_all"]


def linked_browsers_of_a_minor_hold_back_what_the_rule_reserves(env, browser):
    # The member's account is a minor's (the site's backend knows the birth date) and the
    # site linked this browser to it at sign-in; the page flags nothing, so the banner
    # never asks the age. The rule still holds in this browser: the server withholds, and
    # the widget keeps what was recorded and holds the rule back itself from then on.
    def visit():
        context = new_context(browser, locale="en-GB")
        page = context.new_page()
        page.goto(env.url())
        page.get_by_role("button", name="Reject all").click()
        settle(page)
        return context, page, page.evaluate("Consent.get().subject")

    def accept_in_settings(page):
        page.locator("#open-settings").click()
        page.get_by_role("button", name="Accept all").last.click()

    accepted = len(env.events("accept_all"))
    assert env.api("POST", "/age", json={"user_id": "teen-7", "minor": False}).ok
    first, page, device = visit()
    assert env.api("POST", "/identity-links", json={
        "user_id": "teen-7", "subject": device, "key": consent_cookie(first)["k"]}
    ).json()["linked"]
    assert env.api("POST", "/age", json={"user_id": "teen-7", "minor": True}).ok
    # In the same browser session (the widget does not know yet): the server withholds,
    # the widget takes what was recorded, and the cookie remembers a minor. The tags the
    # page ran on the click before the answer came are stopped by a reload.
    accept_in_settings(page)
    recorded = env.wait_events(accepted + 1, "accept_all")[-1]
    assert recorded.categories == {"essential": True, "analytics": False, "advertising": False}
    assert recorded.meta["withheld"] == ["advertising", "analytics"]
    wait_until(page, "Consent.get().categories.advertising === false")
    # (the old page already says so, its tags ran: wait for the page the reload brings)
    wait_until(page, "document.readyState === 'complete' && window.ran !== undefined"
               " && window.ran.length === 0")
    settle(page)
    assert ran(page) == []
    assert page.evaluate("Consent.get().categories") == {
        "essential": True, "analytics": False, "advertising": False}
    assert consent_cookie(first)["m"] == "1"
    assert consent_commands(page, "update")[-1]["ad_storage"] == "denied"
    first.close()

    # Another browser linked while nothing flags it: its next browser session reads the
    # minor flag with its once-a-session check, and the banner grants nothing reserved,
    # not even for a moment (no tag runs).
    second, page, other = visit()
    assert env.api("POST", "/identity-links", json={
        "user_id": "teen-7", "subject": other, "key": consent_cookie(second)["k"]}
    ).json()["linked"]
    assert "m" not in consent_cookie(second)
    fresh = second.new_page()  # a new tab: a new browser session for the widget
    fresh.goto(env.url())
    wait_until(fresh, "document.cookie.includes('m=1')")
    accept_in_settings(fresh)
    recorded = env.wait_events(accepted + 2, "accept_all")[-1]
    assert recorded.categories == {"essential": True, "analytics": False, "advertising": False}
    settle(fresh)
    assert ran(fresh) == [] and not TRACKING_COOKIES & cookie_names(second)
    assert fresh.evaluate("Consent.get().categories.advertising") is False
    second.close()


def test_under_18_needs_parental_consent_recorded_as_such(env, browser, page):
    env.render("young.html", age_check=True)  # the site says the visitor may be under 18
    page.goto(env.url("young.html"))
    banner(page).wait_for()
    page.get_by_label("I am under 18.").check()
    page.get_by_role("button", name="Accept all").click()
    [alone] = env.wait_events(1)
    assert alone.categories == {"essential": True, "analytics": False, "advertising": False}
    assert without_notice(alone.meta) == {"age": "minor", "withheld": ["advertising", "analytics"],
                          "region": None, "rule": "opt-in"}
    settle(page)
    assert ran(page) == []
    subject = page.evaluate("Consent.get().subject")

    # The preference center asks as well; the minor alone cannot opt in to marketing.
    page.goto(f"{env.app_url}/preferences?site={env.site_key}&subject={subject}")
    assert page.locator("#age-minor").is_checked()
    page.locator("#category-analytics").check()
    page.locator("#channel-email-promotional").check()
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    withheld = env.events()[-1]
    assert withheld.categories["analytics"] is False
    assert withheld.channels["email.promotional"] is False
    assert withheld.meta["withheld"] == ["analytics", "email.promotional"]
    assert env.may_i_send("email", "promotional", subject=subject)["allowed"] is False

    # Ticking "my parent agrees" is not parental consent: the choices wait for the parent,
    # who confirms through a link sent to the address the minor gives.
    page.locator("#category-analytics").check()
    page.locator("#channel-email-promotional").check()
    page.get_by_label("My parent agrees to these choices.").check()
    page.get_by_label("Your parent's e-mail address").fill("parent@example.org")
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    waiting = env.events()[-1]
    assert waiting.meta["awaiting_guardian"] is True and waiting.categories["analytics"] is False
    assert "Waiting for your parent" in page.locator("#awaiting-guardian").inner_text()
    assert env.may_i_send("email", "promotional", subject=subject)["allowed"] is False
    state = env.api("GET", f"/subjects/{subject}").json()
    assert state["guardian"]["status"] == "awaiting"

    # The site's backend (told by the guardian.requested webhook) fetches the link and
    # e-mails it; the parent opens it in their own browser and agrees.
    [request] = env.api("GET", "/guardian-requests", params={"status": "awaiting"}).json()
    assert request["address"] == "parent@example.org"
    parent = new_context(browser, locale="en-GB").new_page()
    parent.goto(env.local(request["url"]))
    assert "as their parent" in parent.locator("#guardian-intro").inner_text()
    parent.get_by_role("button", name="I am their parent and I agree").click()
    parent.locator("#guardian-agreed").wait_for()
    parental = env.events()[-1]
    assert (parental.action, parental.source) == ("guardian", "email_link")
    assert parental.meta["verified"] == "link" and parental.meta["guardian"] is True
    assert parental.categories == {"analytics": True}
    assert parental.channels == {"email.promotional": True}
    assert env.may_i_send("email", "promotional", subject=subject)["allowed"] is True
    assert env.api("GET", f"/subjects/{subject}").json()["guardian"] is None

    # A page for a member the site knows to be under 18 (data-minor): nothing to answer,
    # and the member cannot declare otherwise.
    env.render("member.html", minor=True)
    member = new_context(browser, locale="en-GB")
    known = member.new_page()
    known.goto(env.url("member.html"))
    banner(known).wait_for()
    box = known.get_by_label("I am under 18.")
    assert box.is_checked() and box.is_disabled()
    known.get_by_role("button", name="Accept all").click()
    settle(known)
    assert ran(known) == []
    last = env.wait_events(5)[4]
    assert without_notice(last.meta) == {"age": "minor", "withheld": ["advertising", "analytics"],
                         "region": None, "rule": "opt-in"}
    member.close()

    # A browser the site links to a minor's account is the minor's, with no flag on the page.
    linked_browsers_of_a_minor_hold_back_what_the_rule_reserves(env, browser)


def test_deletion_requests_are_carried_out_or_refused_with_the_exception_recorded(env, app,
                                                                                  page, runner):
    visitors = []
    for _ in range(2):
        page.context.clear_cookies()
        page.goto(env.url())
        page.get_by_role("button", name="Accept all").click()
        env.wait_events(len(visitors) + 1)
        # The widget has the server's answer (it rewrites the cookie with the event id then):
        # clearing the cookies before that would let the answer bring this visitor back.
        page.wait_for_function("Consent.get() && Consent.get().eventId")
        visitors.append(page.evaluate("Consent.get().subject"))
    token = make_token(["requests:write", "audit:read"], env.site_key)
    api = f"{env.app_url}/api/v1/audit/sites/{env.site_key}/requests"
    refused_req, erased_req = (requests.post(api, json={"kind": "erasure", "subject": s},
                                             headers=bearer(token), timeout=30).json()
                               for s in visitors)
    # The policy names no deadline for deletion: the product's 30 days, not the ten
    # business days it gives for commercial e-mail opt-outs.
    assert refused_req["deadline_rule"] == "30 days"

    # Refused: retaining is necessary for an exception the policy lists; the reason is kept.
    exception = PROFILES["care_platform"].deletion_exceptions[6]
    assert exception == "Comply with a legal obligation."
    admin = admin_client(app)
    page_url = f"/admin/sites/{env.site_key}/requests/{refused_req['id']}"
    r = post_form(admin, f"{page_url}/reject", {"note": f"Exception: {exception}"},
                  page=page_url)
    assert r.status_code == 302, r.get_data(as_text=True)
    refused = requests.get(f"{api}/{refused_req['id']}", headers=bearer(token), timeout=30).json()
    assert refused["status"] == "rejected" and refused["note"] == f"Exception: {exception}"
    assert env.api("GET", f"/subjects/{visitors[0]}").status_code == 200  # kept

    # Carried out: crypto-shredded, and the ledger still verifies.
    done = requests.post(f"{api}/{erased_req['id']}/erase", headers=bearer(token), timeout=30)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    assert env.api("GET", f"/subjects/{visitors[1]}").status_code == 404
    assert env.events("erase")[0].meta["request"] == erased_req["id"]
    assert runner.invoke(args=["consent", "verify"]).exit_code == 0

    # Both were due within 30 days; one received 31 days ago is overdue.
    late = open_request(env.site_key, "erasure", subject=visitors[0],
                        received_at=utcnow() - timedelta(days=31))
    assert late.overdue()
    dashboard = admin.get(f"/admin/sites/{env.site_key}/").get_data(as_text=True)
    assert 'id="overdue-count">1<' in dashboard
