"""window.Consent, the consent:change event and Google Consent Mode v2."""
from __future__ import annotations

import pytest

from .helpers import (banner, consent_commands, data_layer, settle, wait_ran,
                      wait_recorded, wait_until)

pytestmark = pytest.mark.browser

DENIED = {"functionality_storage": "denied", "personalization_storage": "denied",
          "analytics_storage": "denied", "ad_storage": "denied", "ad_user_data": "denied",
          "ad_personalization": "denied"}


def test_consent_mode_default_precedes_every_script_and_update_follows_each_choice(env, page):
    page.goto(env.url())
    banner(page).wait_for()
    first = data_layer(page)[0]
    assert first[:2] == ["consent", "default"]
    assert {k: v for k, v in first[2].items() if k in DENIED} == DENIED
    assert first[2]["security_storage"] == "granted"
    assert page.evaluate("window.probeSawDefault") is True  # the site's own first script
    page.get_by_role("button", name="Reject all").click()
    assert consent_commands(page, "update") == [DENIED]
    page.evaluate("Consent.set({functional: true})")
    updates = consent_commands(page, "update")
    assert len(updates) == 2
    assert updates[1]["functionality_storage"] == updates[1]["personalization_storage"] == "granted"
    assert updates[1]["ad_storage"] == updates[1]["analytics_storage"] == "denied"
    page.evaluate("Consent.acceptAll()")
    wait_ran(page, 5)
    entries = data_layer(page)
    last_update = max(i for i, e in enumerate(entries) if isinstance(e, list) and e[1] == "update")
    first_tag = min(i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("event") == "tag-ran")
    assert last_update < first_tag
    assert set(entries[last_update][2].values()) == {"granted"}


def test_returning_visitor_gets_default_then_update_before_any_tag(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    wait_ran(page, 5)
    wait_recorded(env, 1)
    page.goto(env.url())
    wait_ran(page, 5)
    entries = data_layer(page)
    assert entries[0][:2] == ["consent", "default"]
    assert entries[1][:2] == ["consent", "update"] and entries[1][2]["ad_storage"] == "granted"
    assert [e["tag"] for e in entries[2:] if isinstance(e, dict)] == ["a1", "a-inline", "a2", "ads"]


def test_api_get_choices_events_and_callbacks(env, page):
    page.goto(env.url())
    banner(page).wait_for()
    assert page.evaluate("Consent.get()") is None
    page.evaluate("window.called = []; Consent.onChange(d => window.called.push(d)); 0")
    result = page.evaluate("Consent.set({functional: true})")
    # resolves once the server has recorded it, with the event id
    [event] = env.events()
    assert result["eventId"] == event.event_id and event.source == "api"
    assert result["categories"] == {"essential": True, "functional": True, "analytics": False,
                                    "advertising": False}
    assert banner(page).count() == 0
    changes = page.evaluate("window.changes")
    assert changes[-1]["categories"] == result["categories"]
    assert page.evaluate("window.called")[-1]["categories"] == result["categories"]
    page.evaluate("Consent.rejectAll()")
    assert page.evaluate("Consent.get().categories.functional") is False
    assert len(page.evaluate("window.changes")) == 2
    # A category the site does not have (a typo) is refused by name, and nothing changes
    # or is recorded: before, the call resolved and recorded a choice that changed nothing.
    wait_recorded(env, 2)
    error = page.evaluate("Consent.set({functional: true, analytic: true})"
                          ".then(() => 'resolved', e => e.message)")
    assert error == "unknown category analytic"
    settle(page)
    assert page.evaluate("Consent.get().categories.functional") is False
    assert len(page.evaluate("window.changes")) == 2 and len(env.events()) == 2
    assert env.events()[-1].action == "reject_all"


def test_show_and_show_preferences_reopen_the_ui(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    wait_ran(page, 5)
    page.evaluate("Consent.show()")
    banner(page).wait_for()
    page.get_by_role("button", name="Customise").click()
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    dialog.wait_for()
    assert page.get_by_role("switch", name="Analytics").is_checked()  # shows the current choice
    page.get_by_role("button", name="Close").click()
    dialog.wait_for(state="detached")
    page.evaluate("Consent.showPreferences()")
    dialog.wait_for()
    with page.expect_navigation():  # tags that ran are stopped by a reload
        page.get_by_role("button", name="Reject all").last.click()
    assert wait_recorded(env, 2)[1].action == "reject_all"
    settle(page)
    assert page.evaluate("window.ran") == []


def test_on_change_unsubscribe_removes_only_its_own_callback(env, page):
    page.goto(env.url())
    banner(page).wait_for()
    page.evaluate("""() => {
        window.called = [];
        const offA = Consent.onChange(() => window.called.push('a'));
        Consent.onChange(() => window.called.push('b'));
        const f = () => window.called.push('f');
        const offF = Consent.onChange(f);
        Consent.onChange(f);  // the same function twice: two subscriptions
        offA(); offA();  // calling it again must not remove somebody else's
        offF();
    }""")
    page.evaluate("Consent.set({functional: true})")
    assert page.evaluate("window.called") == ["b", "f"]


def test_consent_recorded_fires_once_per_server_acknowledgement(env, page):
    page.add_init_script("window.recorded = []; window.addEventListener('consent:recorded', "
                         "e => window.recorded.push(e.detail));")
    page.console.expect("ERR_CONNECTION_RESET")

    def lose_response(route):
        route.fetch()  # the server records it; the browser never hears back
        route.abort("connectionreset")

    page.route("**/decisions", lose_response)
    page.goto(env.url())
    with page.expect_event("requestfailed", lambda r: r.url.endswith("/decisions")):
        page.get_by_role("button", name="Accept all").click()
    [event] = wait_recorded(env, 1)
    assert page.evaluate("window.recorded") == []  # no answer, no acknowledgement
    page.unroute("**/decisions")
    page.evaluate("window.dispatchEvent(new Event('online'))")  # the queue goes again
    wait_until(page, "window.recorded.length === 1")
    assert page.evaluate("window.recorded") == [{"eventId": event.event_id, "duplicate": True}]
    got = page.evaluate("Consent.set({functional: false})")
    assert page.evaluate("window.recorded")[1] == {"eventId": got["eventId"], "duplicate": False}
    assert [e.event_id for e in wait_recorded(env, 2)] == [event.event_id, got["eventId"]]
