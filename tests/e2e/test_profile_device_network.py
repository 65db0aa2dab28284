"""Seed policy 001 (DASSET), end to end: each test proves one promise of the profile
`device_network` (see consent/profiles/device_network.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from consent.database import iso, utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent, verify_ledger
from consent.requests import open_request
from consent.subjects import Subject
from tests.support.admin import admin_client, make_token
from tests.support.api import bearer, without_notice
from tests.support.outbox import add_endpoint, drain
from tests.support.browser import new_context
from tests.support.widget import banner, consent_cookie, ran, settle, wait_ran

pytestmark = pytest.mark.browser

OPTIONAL = ["functional", "analytics", "advertising"]


@pytest.fixture
def env(load_env):
    return load_env("device_network")



def accept_all(env, page) -> str:
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 3) == OPTIONAL
    env.wait_events(1)
    return page.evaluate("Consent.get().subject")


def test_refusing_auxiliary_functions_keeps_the_core_functions(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Customise").click()
    core = page.get_by_role("switch", name="Core functions")
    assert core.is_checked() and core.is_disabled()
    assert not page.get_by_role("switch", name="Auxiliary functions").is_checked()
    page.get_by_role("button", name="Reject all").last.click()
    [rejected] = env.wait_events(1)
    assert rejected.categories == {"essential": True, "functional": False, "analytics": False,
                                   "advertising": False}
    settle(page)
    assert ran(page) == [] and page.get_attribute("iframe", "src") is None
    assert page.evaluate("Consent.get().categories.essential") is True
    page.locator("#site-button").click()  # the site itself keeps working
    assert page.console.errors == []
    # The core functions cannot be refused, whoever asks.
    r = requests.post(f"{env.app_url}/api/v1/sites/{env.site_key}/decisions", timeout=30,
                      json={"action": "custom", "categories": {"essential": False}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["pointer"] == "#/categories/essential"
    assert len(env.events()) == 1


def test_commercial_advertising_can_be_refused_and_sms_unsubscribed_by_reply(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Customise").click()
    ads = page.get_by_role("switch", name="Personalised content and commercial advertising")
    assert "commercial advertisements" in page.locator("#cw-c-advertising-d").inner_text()
    page.get_by_role("switch", name="Auxiliary functions").check()
    page.get_by_role("switch", name="Product improvement").check()
    assert not ads.is_checked()
    page.get_by_role("button", name="Save choices").click()
    assert wait_ran(page, 2) == ["functional", "analytics"]
    settle(page)
    assert "advertising" not in ran(page)
    [custom] = env.wait_events(1)
    assert custom.categories["advertising"] is False

    # Commercial SMS go out until the person replies to unsubscribe (I.5.3).
    phone = "+8613800138000"
    assert env.may_i_send("sms", "promotional", address=phone)["reason"] == "default_allowed"
    reply = env.api("POST", "/sms/inbound", data={"From": phone, "Body": " stop ",
                                                  "MessageSid": "SM100"})
    assert reply.json()["result"] == "opted_out"
    stop = env.events("unsubscribe")[-1]
    assert (stop.source, stop.channels, stop.meta) == ("sms", {"sms.promotional": False},
                                                       {"keyword": "STOP"})
    answer = env.may_i_send("sms", "promotional", address=phone)
    assert (answer["allowed"], answer["event_id"]) == (False, stop.event_id)
    assert env.may_i_send("sms", "transactional", address=phone)["allowed"] is True

    # The number is an account holder's, who then has their personal information deleted
    # (VII.1.2): the unsubscribe survives the deletion.
    env.api("POST", "/channel-addresses", json={"channel": "sms", "address": phone,
                                                "user_id": "dasset-7"})
    assert env.erase(user_id="dasset-7")["result"]["suppressions_kept"] == ["sms.promotional"]
    env.assert_suppressed("sms", address=phone)
    env.assert_suppressed("sms", user_id="dasset-7")


def test_withdrawal_stops_future_processing_and_keeps_the_earlier_record(env, page):
    subject = accept_all(env, page)
    [granted] = env.events()
    kept = (granted.event_id, granted.recorded_at, granted.categories, granted.hash)

    page.locator("#open-settings").click()
    with page.expect_navigation():  # scripts that already ran stop with the next page
        page.get_by_role("button", name="Reject all").last.click()
    settle(page)
    assert ran(page) == []
    withdrawn = env.wait_events(2)[1]
    assert all(not withdrawn.categories[k] for k in OPTIONAL)

    # The earlier processing stays recorded as it was, and the chain still verifies.
    history = env.api("GET", f"/subjects/{subject}/history").json()["events"]
    assert [e["action"] for e in history] == ["accept_all", "reject_all"]
    db.session.rollback()
    again = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.event_id == kept[0])).scalar_one()
    assert (again.event_id, again.recorded_at, again.categories, again.hash) == kept
    assert verify_ledger().ok
    # The preference center says what withdrawal means under this policy.
    page.goto(f"{env.app_url}/preferences?site={env.site_key}&subject={subject}")
    note = page.locator(".pc-note").last.inner_text()
    assert "does not affect processing carried out earlier" in note
    assert not page.locator("#category-advertising").is_checked()


def test_material_policy_change_pops_up_before_it_applies(env, browser, context, page, runner):
    accept_all(env, page)
    page.reload()
    assert wait_ran(page, 3) == OPTIONAL and banner(page).count() == 0
    published = runner.invoke(args=["consent", "publish-policy", env.site_key, "2026-02",
                                    "--material", "--url", "https://dasset.example/privacy-v2",
                                    "--summary", "New purpose: device diagnostics"])
    assert published.exit_code == 0, published.output

    # The visitor comes back another day (configuration caches expired, cookie kept).
    later = new_context(browser, locale="en-GB")
    later.add_cookies(context.cookies())
    back = later.new_page()
    back.clock.set_fixed_time(datetime.now(timezone.utc) + timedelta(days=1))
    back.goto(env.url())
    banner(back).wait_for()
    settle(back)
    assert ran(back) == []  # nothing runs under the changed policy before the choice
    assert back.evaluate("Consent.get()") is None
    assert len(env.events()) == 1
    back.get_by_role("button", name="Accept all").click()
    assert wait_ran(back, 3) == OPTIONAL
    first, second = env.wait_events(2)
    assert (first.policy_version, second.policy_version) == ("2024-02-26", "2026-02")
    assert consent_cookie(later)["p"] == "2026-02"
    later.close()


def test_a_material_change_is_announced_before_it_takes_effect(env, browser, context, page,
                                                                fast, receiver):
    add_endpoint(env.site_key, receiver.url, categories=["advertising"])
    subject = accept_all(env, page)
    token = make_token(["policies:write"], env.site_key)
    effective = utcnow() + timedelta(days=3)
    r = requests.post(f"{env.app_url}/api/v1/audit/sites/{env.site_key}/policies", timeout=30,
                      headers=bearer(token), json={
                          "label": "2026-02", "material": True, "effective_at": iso(effective),
                          "text": "DASSET privacy policy, 2026 edition: device diagnostics.",
                          "summary": "New purpose: device diagnostics"})
    assert r.status_code == 201, r.text

    # The visitor comes back the next day: told once, as a pop-up, before it applies;
    # their choice still counts under the version in force.
    later = new_context(browser, locale="en-GB")
    later.add_cookies(context.cookies())
    back = later.new_page()
    back.clock.set_fixed_time(datetime.now(timezone.utc) + timedelta(days=1))
    back.goto(env.url())
    notice = banner(back)
    notice.wait_for()
    assert notice.get_by_role("heading").inner_text() == "Privacy policy update"
    text = notice.inner_text()
    assert f"(2026-02) takes effect on {effective:%Y-%m-%d}" in text
    assert wait_ran(back, 3) == OPTIONAL
    diff = notice.get_by_role("link", name="See what changes").get_attribute("href")
    assert diff.endswith(f"/sites/{env.site_key}/policies/2026-02/diff")
    # Not yet acknowledged: a reload (the widget's own, after its session check, or the
    # visitor's) does not hide it unread.
    back.reload()
    banner(back).wait_for()
    assert banner(back).get_by_role("heading").inner_text() == "Privacy policy update"
    banner(back).get_by_role("button", name="OK").click()
    back.reload()
    assert wait_ran(back, 3) == OPTIONAL and banner(back).count() == 0  # told until its OK
    back.goto(diff)
    assert "device diagnostics" in back.locator("#policy-diff").inner_text()
    later.close()

    # A first visitor reads it in the banner; the preference center says it too.
    fresh = new_context(browser, locale="en-GB").new_page()
    fresh.goto(env.url())
    assert "takes effect on" in banner(fresh).inner_text()
    fresh.goto(f"{env.app_url}/preferences?site={env.site_key}")
    assert "(2026-02) takes effect on" in fresh.locator("#policy-notice").inner_text()

    # The site's backend was told, to push or e-mail its users, and its answers name the
    # announced version while the consent still counts.
    drain()
    [told] = [b for b in receiver.bodies() if b["type"] == "policy.published"]
    assert told["policy"]["version"] == "2026-02" and told["policy"]["material"] is True
    assert told["policy"]["effective_at"] == iso(effective)
    state = env.api("GET", f"/subjects/{subject}").json()["policy_state"]
    assert state["upcoming"]["version"] == "2026-02"
    assert (state["in_force"], state["predates_material_version"]) == ("2024-02-26", False)
    assert {e.policy_version for e in env.events()} == {"2024-02-26"}


def test_old_policy_versions_stay_archived_and_readable(env, page, runner):
    accept_all(env, page)
    runner.invoke(args=["consent", "publish-policy", env.site_key, "2026-02", "--material",
                        "--url", "https://dasset.example/privacy-v2"])
    page.goto(f"{env.app_url}/preferences?site={env.site_key}")
    page.locator("#policy-archive").click()
    page.get_by_role("link", name="2024-02-26").click()
    text = page.locator("body").inner_text()
    assert "minor aged 14 or above" in text and "thirty (30) days" in text
    assert requests.get(f"{env.app_url}/sites/{env.site_key}/policies/2026-02",
                        timeout=30).status_code == 200
    # Each event names the version it was given under.
    assert env.events()[0].policy_version == "2024-02-26"


def test_minors_need_their_guardians_explicit_consent(env, page):
    env.render("teens.html", age_check=True)  # the site flags: the visitor may be a minor
    page.goto(env.url("teens.html"))
    banner(page).wait_for()
    page.get_by_label("I am under 18.").check()
    page.get_by_role("button", name="Accept all").click()
    [alone] = env.wait_events(1)
    assert alone.categories == {"essential": True, "functional": False, "analytics": False,
                                "advertising": False}
    assert alone.channels == {"sms.promotional": False}  # commercial SMS stop for a minor
    assert without_notice(alone.meta) == {"age": "minor", "withheld": ["advertising", "analytics",
                                                      "functional"]}
    settle(page)
    assert ran(page) == [] and consent_cookie(page.context)["m"] == "1"
    subject = page.evaluate("Consent.get().subject")
    db.session.rollback()
    assert db.session.execute(db.select(Subject.is_minor).where(
        Subject.public_id == subject)).scalar_one() is True

    # Ticking "my legal guardian agrees" is not the guardian's explicit consent: nothing
    # runs, and the grants wait for the guardian's own confirmation.
    page.locator("#open-settings").click()
    recorded = page.locator("dialog").get_by_label("I am under 18.")
    assert recorded.is_checked() and recorded.is_disabled()  # a minor stays one
    page.locator("dialog").get_by_label("My legal guardian agrees to these choices.").check()
    page.get_by_role("button", name="Accept all").last.click()
    waiting = env.wait_events(2)[1]
    assert waiting.meta["awaiting_guardian"] is True
    assert waiting.categories["advertising"] is False
    settle(page)
    assert ran(page) == []
    assert env.api("GET", f"/subjects/{subject}").json()["guardian"]["status"] == "awaiting"

    # The site delivers the signed link; the guardian confirms in their own browser.
    [request] = env.api("GET", "/guardian-requests", params={"status": "awaiting"}).json()
    guardian = new_context(page.context.browser, locale="en-GB").new_page()
    guardian.goto(env.local(request["url"]))
    guardian.get_by_role("button", name="I am their legal guardian and I agree").click()
    guardian.locator("#guardian-agreed").wait_for()
    guarded = env.wait_events(3)[2]
    assert (guarded.action, guarded.source) == ("guardian", "email_link")
    assert guarded.meta["verified"] == "link"
    assert guarded.categories == {"functional": True, "analytics": True, "advertising": True}
    # The minor's next browser session follows what the ledger now says.
    again = new_context(page.context.browser, locale="en-GB")
    again.add_cookies(page.context.cookies())
    later = again.new_page()
    later.goto(env.url("teens.html"))
    assert wait_ran(later, 3) == OPTIONAL
    again.close()

    # The preference center asks too, and knows the person is a minor.
    page.goto(f"{env.app_url}/preferences?site={env.site_key}&subject={subject}")
    assert page.locator("#age-minor").is_checked()
    assert "legal guardian explicitly agrees" in page.locator("#age-note").inner_text()
    # Other paths cannot grant what needs the guardian: refused, nothing recorded.
    refused = env.api("POST", "/channel-choices", json={
        "subject": subject, "channels": {"sms.promotional": True}})
    assert refused.status_code == 403
    assert "needs the consent of a guardian" in refused.json()["detail"]
    assert len(env.events()) == 3


def test_requests_are_due_within_30_days_and_shown_overdue(env, app, page):
    subject = accept_all(env, page)
    token = make_token(["requests:write", "audit:read"])
    r = requests.post(f"{env.app_url}/api/v1/audit/sites/{env.site_key}/requests", timeout=30,
                      json={"kind": "access", "subject": subject}, headers=bearer(token))
    assert r.status_code == 201, r.text
    fresh = r.json()
    assert fresh["deadline_rule"] == "30 days" and fresh["overdue"] is False
    received = datetime.fromisoformat(fresh["received_at"].replace("Z", "+00:00"))
    assert fresh["due_at"] == iso(received + timedelta(days=30))
    late = open_request(env.site_key, "erasure", subject=subject,
                        received_at=utcnow() - timedelta(days=31))

    admin = admin_client(app)
    dashboard = admin.get(f"/admin/sites/{env.site_key}/").get_data(as_text=True)
    assert 'id="overdue-count">1<' in dashboard
    listing = admin.get(f"/admin/sites/{env.site_key}/requests").get_data(as_text=True)
    late_row = listing.split(f">{late.id}</a>")[1].split("</tr>")[0]
    fresh_row = listing.split(f">{fresh['id']}</a>")[1].split("</tr>")[0]
    assert "OVERDUE" in late_row and "(30 days)" in late_row
    assert "OVERDUE" not in fresh_row
    overdue = requests.get(f"{env.app_url}/api/v1/audit/sites/{env.site_key}/requests",
                           timeout=30, headers=bearer(token)).json()
    assert [(q["kind"], q["overdue"]) for q in overdue] == [("erasure", True),
                                                           ("access", False)]
