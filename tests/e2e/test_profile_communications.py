"""Seed policy 002 (a communications provider), end to end: each test proves one promise of
the profile `communications` (see consent/profiles/communications.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.support.admin import make_token
from tests.support.api import bearer
from tests.support.browser import new_context
from tests.support.login import follow_in_browser
from tests.support.widget import banner, ran, settle, wait_ran

pytestmark = pytest.mark.browser

OPTIONAL = ["analytics", "advertising"]


@pytest.fixture
def env(load_env):
    return load_env("communications")



def test_marketing_offers_stop_when_the_person_opts_out(env, page):
    customer = {"user_id": "cust-1"}
    for medium in ("email", "sms"):
        answer = env.may_i_send(medium, "promotional", **customer)
        assert (answer["allowed"], answer["reason"]) == (True, "default_allowed")
    phone = env.api("POST", "/channel-addresses",
                    json={"channel": "sms", "address": "+15550101010", **customer})
    assert phone.status_code == 200, phone.text

    # The customer opens their privacy preferences from their account (login link).
    link = env.api("POST", "/login-links", json=customer).json()
    follow_in_browser(page, env.local(link["url"]))
    email = page.locator("#channel-email-promotional")
    assert email.is_checked()  # offers are sent until the customer opts out
    email.uncheck()
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    answer = env.may_i_send("email", "promotional", **customer)
    assert (answer["allowed"], answer["reason"]) == (False, "opted_out")
    assert env.may_i_send("sms", "promotional", **customer)["allowed"] is True
    suppressed = env.api("GET", "/suppressions", params={"channel": "email"}).json()
    assert [row["subject"] for row in suppressed["suppressions"]] == [link["subject"]]

    # By text message the opt-out is a STOP reply.
    env.api("POST", "/sms/inbound", data={"From": "+15550101010", "Body": "STOP"})
    assert env.may_i_send("sms", "promotional", **customer)["allowed"] is False
    assert env.may_i_send("sms", "transactional", **customer)["allowed"] is True
    assert [e.action for e in env.events()] == ["preferences", "unsubscribe"]

    # The customer leaves and has their data erased: marketing offers do not come back.
    receipt = env.erase(**customer)["result"]
    # (every channel the customer saved off in the preference center is kept off)
    assert {"email.promotional", "sms.promotional"} <= set(receipt["suppressions_kept"])
    env.assert_suppressed("email", **customer)
    env.assert_suppressed("sms", **customer)
    env.assert_suppressed("sms", address="+15550101010")


def test_a_materially_different_use_offers_a_choice_before_it_applies(env, browser, context,
                                                                       page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 2) == OPTIONAL
    env.wait_events(1)

    token = make_token(["policies:write"], env.site_key)
    r = requests.post(f"{env.app_url}/api/v1/audit/sites/{env.site_key}/policies", timeout=30,
                      headers=bearer(token), json={
                          "label": "2", "material": True,
                          "text": "We will also use call records for a new purpose.",
                          "summary": "A materially different use of call records"})
    assert r.status_code == 201, r.text

    # The customer comes back the next day (configuration caches expired, cookie kept):
    # before the new use applies to them they get the choice, with an opt-out.
    later = new_context(browser, locale="en-GB")
    later.add_cookies(context.cookies())
    back = later.new_page()
    back.clock.set_fixed_time(datetime.now(timezone.utc) + timedelta(days=1))
    back.goto(env.url())
    banner(back).wait_for()
    settle(back)
    assert ran(back) == []
    assert back.get_by_role("button", name="Reject all").is_visible()
    back.get_by_role("button", name="Reject all").click()
    settle(back)
    assert ran(back) == []
    before, choice = env.wait_events(2)
    assert (before.action, before.policy_version) == ("accept_all", "1")
    assert (choice.action, choice.policy_version) == ("reject_all", "2")
    assert choice.categories == {"essential": True, "analytics": False, "advertising": False}
    me = env.api("GET", f"/subjects/{back.evaluate('Consent.get().subject')}").json()
    assert me["consent"]["policyVersion"] == "2"
    later.close()
