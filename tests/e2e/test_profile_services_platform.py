"""Seed policy 000 (THE AO PLANET), end to end: each test proves one promise of the profile
`services_platform` (see consent/profiles/services_platform.py)."""
from __future__ import annotations

import pytest

from consent.extensions import db
from consent.ledger import verify_ledger
from consent.linked_accounts import LinkedAccount
from tests.support.widget import banner, consent_commands, ran, settle, wait_ran

pytestmark = pytest.mark.browser

OTHERS = ["analytics", "advertising"]


@pytest.fixture
def env(load_env):
    return load_env("services_platform")



def test_promotional_opt_out_from_the_message_keeps_transactional_messages(env, page):
    # Article 12 is an opt-out model: promotions go out until the person opts out.
    assert env.may_i_send("email", "promotional", user_id="alex")["reason"] == "default_allowed"
    link = env.api("POST", "/unsubscribe-links", json={
        "channel": "email", "address": "alex@example.org", "user_id": "alex"}).json()
    assert link["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # The person follows the instructions in the message.
    page.goto(env.local(link["url"]))
    page.get_by_role("button", name="Unsubscribe").click()
    page.locator("#unsubscribed").wait_for()
    assert "transactional or relationship messages" in page.locator(".pc-note").inner_text()
    [unsubscribe] = env.events("unsubscribe")
    # One opt-out of "promotional communications" stops them on every channel (Art. 12).
    assert (unsubscribe.source, unsubscribe.channels) == ("email_link", {
        "email.promotional": False, "sms.promotional": False, "push.promotional": False})
    for medium in ("sms", "push"):
        answer = env.may_i_send(medium, "promotional", user_id="alex")
        assert (answer["allowed"], answer["reason"]) == (False, "opted_out"), medium

    promo = env.may_i_send("email", "promotional", user_id="alex")
    assert (promo["allowed"], promo["reason"]) == (False, "opted_out")
    assert promo["event_id"] == unsubscribe.event_id
    transactional = env.may_i_send("email", "transactional", user_id="alex")
    assert (transactional["allowed"], transactional["reason"]) == (
        True, "transactional_always_allowed")

    # The same by SMS: the instruction is to reply STOP.
    assert env.may_i_send("sms", "promotional", address="+15551230000")["allowed"] is True
    r = env.api("POST", "/sms/inbound", data={"From": "+15551230000", "Body": "Stop"})
    assert r.json()["result"] == "opted_out"
    assert env.may_i_send("sms", "promotional", address="+15551230000")["allowed"] is False
    assert env.may_i_send("sms", "transactional", address="+15551230000")["allowed"] is True

    # The number turns out to be Alex's; later Alex has their data erased. The opt-outs
    # outlive the erasure: by address and by user id, promotions stay refused.
    env.api("POST", "/channel-addresses", json={"channel": "sms", "address": "+15551230000",
                                                "user_id": "alex"})
    receipt = env.erase(user_id="alex")["result"]
    assert receipt["suppressions_kept"] == ["email.promotional", "push.promotional",
                                            "sms.promotional"]
    for channel, who in (("email", {"user_id": "alex"}), ("email", {"address": "alex@example.org"}),
                         ("sms", {"address": "+15551230000"}), ("sms", {"user_id": "alex"})):
        env.assert_suppressed(channel, **who)
    assert verify_ledger().ok


def test_push_notifications_of_each_kind_need_their_own_consent(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Reject all").click()
    banner(page).wait_for(state="detached")
    subject = page.evaluate("Consent.get().subject")
    for kind in ("promotional", "service"):
        answer = env.may_i_send("push", kind, subject=subject)
        assert (answer["allowed"], answer["reason"]) == (False, "default_denied")

    # The widget's link to every privacy setting opens the preference center.
    page.locator("#open-settings").click()
    more = page.get_by_role("link", name="All privacy settings (e-mail, SMS, push)")
    page.goto(more.get_attribute("href"))
    service, promo = page.locator("#channel-push-service"), page.locator("#channel-push-promotional")
    assert not service.is_checked() and not promo.is_checked()
    assert page.locator("#channel-email-promotional").is_checked()  # opt-out model (Art. 12)
    service.check()
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    assert env.may_i_send("push", "service", subject=subject)["allowed"] is True
    assert env.may_i_send("push", "promotional", subject=subject)["allowed"] is False

    # Each kind is stopped or started on its own.
    page.locator("#channel-push-service").uncheck()
    page.locator("#channel-push-promotional").check()
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    assert env.may_i_send("push", "service", subject=subject)["reason"] == "opted_out"
    assert env.may_i_send("push", "promotional", subject=subject)["reason"] == "opted_in"
    last = env.events("preferences")[-1]
    assert last.channels["push.service"] is False and last.channels["push.promotional"] is True


def test_analytics_and_advertising_by_others_wait_for_consent_and_can_be_opted_out(env, page):
    page.goto(env.url())
    banner(page).wait_for()
    settle(page)
    assert ran(page) == []
    [default] = consent_commands(page, "default")
    assert default["analytics_storage"] == default["ad_storage"] == "denied"
    page.get_by_role("button", name="Customise").click()
    for title in ("Analytics by others", "Advertising by others"):
        switch = page.get_by_role("switch", name=title)
        assert not switch.is_checked() and switch.is_enabled()
    page.get_by_role("button", name="Accept all").last.click()
    assert set(wait_ran(page, 4)) >= set(OTHERS)
    [accepted] = env.wait_events(1)
    assert accepted.action == "accept_all" and accepted.categories["advertising"] is True
    assert consent_commands(page, "update")[-1]["ad_storage"] == "granted"

    # Opting out later, from the site's cookie settings.
    page.locator("#open-settings").click()
    page.get_by_role("switch", name="Analytics by others").uncheck()
    page.get_by_role("switch", name="Advertising by others").uncheck()
    with page.expect_navigation():  # tags that already ran stop with the next page
        page.get_by_role("button", name="Save choices").click()
    wait_ran(page, 1)
    settle(page)
    assert not set(OTHERS) & set(ran(page))
    opted_out = env.wait_events(2)[1]
    assert opted_out.action == "custom"
    assert (opted_out.categories["analytics"], opted_out.categories["advertising"]) == (False,
                                                                                      False)
    assert consent_commands(page, "update")[-1]["ad_storage"] == "denied"


def test_precise_location_is_its_own_choice_and_can_be_stopped(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Customise").click()
    location = page.get_by_role("switch", name="Precise location")
    assert not location.is_checked()
    assert "Article 13" in page.locator("#cw-c-location-d").inner_text()
    location.check()
    page.get_by_role("button", name="Save choices").click()
    assert wait_ran(page, 1) == ["location"]
    [granted] = env.wait_events(1)
    assert granted.categories == {"essential": True, "functional": False, "analytics": False,
                                  "advertising": False, "location": True}
    page.reload()
    assert wait_ran(page, 1) == ["location"]  # the choice stands

    page.locator("#open-settings").click()
    page.get_by_role("switch", name="Precise location").uncheck()
    with page.expect_navigation():
        page.get_by_role("button", name="Save choices").click()
    settle(page)
    assert ran(page) == []
    stopped = env.wait_events(2)[1]
    assert stopped.categories["location"] is False
    me = env.api("GET", f"/subjects/{page.evaluate('Consent.get().subject')}").json()
    assert me["consent"]["categories"]["location"] is False


def test_deauthorising_a_linked_account_deletes_its_token_and_records_a_withdrawal(env, runner):
    linked = env.api("POST", "/linked-accounts", json={
        "user_id": "member-5", "integration": "zoom", "token": "zoom-oauth-token-xyz"})
    assert linked.status_code == 201, linked.text
    token = env.api("POST", "/linked-accounts/token",
                    json={"user_id": "member-5", "integration": "zoom"})
    assert token.json() == {"token": "zoom-oauth-token-xyz"}

    # The person deauthorises the site in their Zoom account; the site relays the notice.
    gone = env.api("POST", "/linked-accounts/deauthorize",
                   json={"user_id": "member-5", "integration": "zoom", "via": "third_party"})
    assert gone.status_code == 200
    db.session.rollback()
    row = db.session.execute(db.select(LinkedAccount)).scalar_one()
    assert row.token_sealed is None and row.token_deleted_at is not None
    after = env.api("POST", "/linked-accounts/token",
                    json={"user_id": "member-5", "integration": "zoom"})
    assert after.status_code == 410
    assert after.headers["Content-Type"].startswith("application/problem+json")

    grant, withdraw = env.events("grant")[0], env.events("withdraw")[0]
    assert grant.meta == {"linked_account": "zoom", "authorized": True}
    assert withdraw.event_id == gone.json()["event_id"] and withdraw.subject == grant.subject
    assert withdraw.meta == {"linked_account": "zoom", "deauthorized": True,
                             "token_deleted": True, "via": "third_party"}
    history = env.api("GET", f"/subjects/{gone.json()['subject']}/history").json()
    assert [e["action"] for e in history["events"]] == ["grant", "withdraw"]
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 0 and result.output.startswith("OK")
