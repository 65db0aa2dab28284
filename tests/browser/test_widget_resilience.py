"""The widget when the consent server fails or the browser lacks storage: retries every
30 s, promises that reject, a stale configuration or the cookie alone, no localStorage."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.support.waits import pause, poll

from .helpers import (ALL_TAGS, NO_STORAGE, banner, queue, ran, settle, wait_ran,
                      wait_recorded, wait_until)

pytestmark = pytest.mark.browser


def failing_then_passing(env, status: int, failures: int, answers: list):
    """A route handler: answer STATUS to the first FAILURES decisions, then let them pass."""
    def handle(route):
        if len(answers) < failures:
            answers.append(status)
            route.fulfill(status=status, body="busy", content_type="text/plain",
                          headers={"Access-Control-Allow-Origin": env.site.url})
        else:
            answers.append("passed")
            route.continue_()
    return handle


# Counts the answers to the widget's decision requests that the page has read. The count
# goes up in the microtasks that run when an answer arrives, before the widget's own
# reaction to it (an init script's `then` comes first), and that reaction (the retry it
# arms) runs in the same microtasks: when a later evaluation sees the count, it has run.
COUNT_ANSWERS = """(() => { const f = window.fetch; window.__answered = 0;
  window.fetch = (...args) => { const p = f(...args);
    if (String(args[0]).includes('/decisions')) p.then(() => window.__answered++, () => window.__answered++);
    return p; }; })()"""


def read_by_page(page, count: int) -> None:
    """Wait until the page has read COUNT answers to decisions (COUNT_ANSWERS)."""
    wait_until(page, f"window.__answered >= {count}")


def wait_answers(answers: list, count: int) -> list:
    return poll(lambda: list(answers), lambda seen: len(seen) >= count, timeout=15,
                message=lambda seen: f"expected {count} decision requests, saw {seen}")


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_refused_busy_server_is_asked_again_every_30_seconds(env, page, status):
    page.console.expect(f"status of {status}")
    start = datetime.now(timezone.utc)
    page.clock.install(time=start)
    # timers fire only when the test says; a margin, as a loaded machine can take over a
    # second between install and pause (pause_at refuses a time already passed)
    page.clock.pause_at(start + timedelta(seconds=30))
    answers: list = []
    page.route("**/decisions", failing_then_passing(env, status, 2, answers))
    page.add_init_script(COUNT_ANSWERS)
    page.goto(env.url())
    page.get_by_role("button", name="Reject all").click()
    assert wait_answers(answers, 1) == [status]
    assert page.evaluate("Consent.get().categories.analytics") is False  # applies anyway
    assert len(queue(page)) == 1 and env.events() == []
    # (the clock moves on only once the widget has read the answer and armed its retry:
    # on a loaded machine it may read it after a clock that had jumped already)
    read_by_page(page, 1)
    page.clock.run_for(29_000)
    pause(0.3)  # a request the timers started would reach the route handler meanwhile
    assert answers == [status]  # not before 30 s
    page.clock.run_for(1_500)
    assert wait_answers(answers, 2) == [status, status]
    read_by_page(page, 2)
    page.clock.run_for(29_000)
    pause(0.3)
    assert answers == [status, status]  # the next, 30 s after the second answer
    page.clock.run_for(1_500)
    assert wait_answers(answers, 3) == [status, status, "passed"]
    [event] = wait_recorded(env, 1)
    assert event.action == "reject_all"
    wait_until(page, "JSON.parse(localStorage.getItem('consent:queue:shop')).length === 0")
    page.clock.run_for(120_000)
    pause(0.3)
    assert len(answers) == 3 and len(env.events()) == 1  # sent once: no more retries


@pytest.mark.parametrize("status", [400, 422])
def test_a_decision_the_server_can_never_accept_leaves_the_queue(env, page, status):
    # docs/widget.md: bad input (400/413/422) is dropped, unlike a 403 kept for a later page
    page.console.expect(f"status of {status}")
    page.console.expect("consent: choice not recorded")
    start = datetime.now(timezone.utc)
    page.clock.install(time=start)
    page.clock.pause_at(start + timedelta(seconds=30))
    answers: list = []
    page.route("**/decisions", failing_then_passing(env, status, 1, answers))
    page.goto(env.url())
    page.get_by_role("button", name="Reject all").click()
    assert wait_answers(answers, 1) == [status]
    assert page.evaluate("Consent.get().categories.analytics") is False  # applied anyway
    wait_until(page, "JSON.parse(localStorage.getItem('consent:queue:shop') || '[]').length === 0")
    page.clock.run_for(120_000)
    pause(0.3)  # a retry the timers started would reach the route handler meanwhile
    assert answers == [status] and env.events() == []  # never sent again


def test_promises_reject_while_the_server_is_unreachable_and_the_queue_goes_later(env, page):
    page.console.expect("ERR_CONNECTION_REFUSED")
    page.route("**/decisions", lambda route: route.abort("connectionrefused"))
    page.goto(env.url())
    banner(page).wait_for()
    outcome = ("p => p.then(v => 'resolved', e => 'rejected: ' + e.message)")
    for call in ("Consent.rejectAll()", "Consent.set({analytics: true})", "Consent.acceptAll()"):
        result = page.evaluate(f"({outcome})({call})")
        assert result.startswith("rejected: consent: not recorded yet"), (call, result)
    # each choice applied at once and waits in the queue, in order
    assert wait_ran(page, 5) == ALL_TAGS
    assert [q["action"] for q in queue(page)] == ["reject_all", "custom", "accept_all"]
    assert env.events() == []
    page.unroute("**/decisions")
    got = page.evaluate("Consent.set({functional: false})")  # resolves once all are sent
    assert got["eventId"] and got["categories"]["functional"] is False
    recorded = wait_recorded(env, 4)
    assert [e.action for e in recorded] == ["reject_all", "custom", "accept_all", "custom"]
    assert recorded[-1].event_id == got["eventId"] and queue(page) == []


def no_referer_page(env) -> str:
    """A page that gets the shared script (no config inlined): the config is fetched."""
    (env.root / "noref.html").write_text(env.render_text().replace(
        'data-site="shop"', 'data-site="shop" referrerpolicy="no-referrer"'))
    return env.url("noref.html")


def test_a_stale_configuration_still_applies_the_choice_when_the_server_is_down(env, page):
    page.goto(no_referer_page(env))
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 5) == ALL_TAGS
    wait_recorded(env, 1)
    assert page.evaluate("localStorage.getItem('consent:cfg:shop:en')")  # config kept
    # ten minutes later the config is stale; the API is down (the script still loads)
    page.console.expect("ERR_CONNECTION_REFUSED")
    asked = []
    page.route("**/config?*", lambda route: (asked.append(route.request.url),
                                             route.abort("connectionrefused")))
    page.clock.set_fixed_time(datetime.now(timezone.utc) + timedelta(minutes=10))
    page.goto(no_referer_page(env))
    assert wait_ran(page, 5) == ALL_TAGS
    assert asked  # it did try to revalidate first
    settle(page)
    assert banner(page).count() == 0
    assert page.evaluate("Consent.get().categories") == {
        "essential": True, "functional": True, "analytics": True, "advertising": True}


def test_the_cookie_alone_applies_the_choice_when_the_server_is_down(env, context, page):
    page.goto(no_referer_page(env))
    page.get_by_role("button", name="Customise").click()
    page.get_by_role("switch", name="Analytics").check()
    page.get_by_role("button", name="Save choices").click()
    wait_recorded(env, 1)
    # the stored configuration is gone (storage cleared), the cookie is not
    page.evaluate("localStorage.clear()")
    page.console.expect("ERR_CONNECTION_REFUSED")
    page.route("**/config?*", lambda route: route.abort("connectionrefused"))
    page.goto(no_referer_page(env))
    # after its retries (0.5 + 1 + 2 s) the widget goes by the cookie
    assert wait_ran(page, 3) == ["a1", "a-inline", "a2"]
    settle(page)
    assert ran(page) == ["a1", "a-inline", "a2"] and banner(page).count() == 0
    assert page.evaluate("Consent.get().categories.analytics") is True
    assert page.evaluate("Consent.get().categories.advertising") is False


def test_without_local_storage_the_widget_works_from_memory(env, page):
    page.add_init_script(NO_STORAGE)
    page.goto(env.url())
    assert page.evaluate("(() => { try { localStorage; return 'there'; } "
                         "catch (e) { return e.name; } })()") == "SecurityError"
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 5) == ALL_TAGS
    [event] = wait_recorded(env, 1)
    assert event.action == "accept_all"
    # the next page view goes by the cookie: no banner, tags run, nothing sent again
    page.goto(env.url())
    assert wait_ran(page, 5) == ALL_TAGS
    settle(page)
    assert banner(page).count() == 0 and len(env.events()) == 1
    # and a change still reaches the server
    got = page.evaluate("Consent.set({functional: false})")
    assert wait_recorded(env, 2)[1].event_id == got["eventId"]
