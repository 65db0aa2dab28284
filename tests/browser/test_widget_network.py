"""What the widget downloads and sends: byte budget, returning visitors, offline choices."""
from __future__ import annotations

import gzip

import pytest

from .helpers import banner, loading, ran, settle, wait_ran, wait_recorded, wait_until

pytestmark = pytest.mark.browser

BUDGET = 6000  # bytes, gzip -9, everything from the consent server before the banner shows
FALLBACK_BUDGET = 6100  # the same without a Referer: script and config compress apart


def test_first_visit_downloads_at_most_the_budget_before_the_banner(env, page):
    with loading(page, env, "/consent.js") as load:
        page.goto(env.url())
    banner(page).wait_for()
    # the script carries its stylesheet, and the config of the site the page's origin names
    assert [path.split("?")[0] for path in load.asked] == ["/consent.js"]
    size = len(gzip.compress(load.body(), 9))
    assert size <= BUDGET, size


def no_referer_page(env) -> str:
    """A page whose widget script request carries no Referer: the config is fetched."""
    (env.root / "noref.html").write_text(env.render_text().replace(
        'data-site="shop"', 'data-site="shop" referrerpolicy="no-referrer"'))
    return env.url("noref.html")


def test_without_a_referer_the_config_is_fetched_within_the_budget(env, page):
    # a page that sends no Referer gets the shared script, which then asks for the config
    # (expect_response, not a response listener: the banner can be visible before the
    # listener of the config's response has run)
    asked = []
    page.on("request", lambda r: r.url.startswith(env.app_url) and asked.append(
        r.url.split("?")[0].removeprefix(env.app_url)))
    path = lambda r: r.url.split("?")[0].removeprefix(env.app_url)  # noqa: E731
    with page.expect_response(lambda r: path(r) == "/consent.js") as script, \
            page.expect_response(lambda r: path(r) == "/api/v1/sites/shop/config") as config:
        page.goto(no_referer_page(env))
        banner(page).wait_for()
    bodies = {"/consent.js": script.value.body(),
              "/api/v1/sites/shop/config": config.value.body()}
    assert sorted(set(asked)) == ["/api/v1/sites/shop/config", "/consent.js"]
    sizes = {url: len(gzip.compress(body, 9)) for url, body in bodies.items()}
    assert sum(sizes.values()) <= FALLBACK_BUDGET, sizes
    page.get_by_role("button", name="Reject all").click()
    assert wait_recorded(env, 1)[0].action == "reject_all"


def test_returning_visitor_makes_no_request_to_the_consent_server(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    wait_ran(page, 5)
    wait_recorded(env, 1)
    settle(page)
    before = len(env.server_requests())
    assert before >= 2  # script, decision (+ preflight): the log works
    for _ in range(2):
        page.goto(env.url())
        assert wait_ran(page, 5) == ["a1", "a-inline", "a2", "ads", "ads-inline"]
        settle(page)
    assert env.server_requests()[before:] == []


def test_offline_choice_applies_now_and_is_sent_once_when_back_online(env, context, page):
    page.console.expect("ERR_INTERNET_DISCONNECTED")
    page.goto(env.url())
    banner(page).wait_for()
    context.set_offline(True)
    page.get_by_role("button", name="Accept all").click()
    wait_until(page, "window.ran.includes('ads-inline')")
    assert {"a-inline", "ads-inline"} <= set(ran(page))  # applied locally
    assert page.evaluate("Consent.get().categories.analytics") is True
    assert env.events() == []
    assert len(page.evaluate("JSON.parse(localStorage.getItem('consent:queue:shop'))")) == 1
    context.set_offline(False)  # the browser's `online` event sends the queue
    [event] = wait_recorded(env, 1)
    assert event.action == "accept_all"
    wait_until(page, "JSON.parse(localStorage.getItem('consent:queue:shop')).length === 0")
    page.goto(env.url())
    wait_ran(page, 5)
    settle(page)
    assert len(env.events()) == 1


def test_lost_response_is_retried_without_a_duplicate_event(env, page):
    page.console.expect("ERR_CONNECTION_RESET")
    seen = []

    def lose_response(route):
        route.fetch()  # reaches the server, which records the decision...
        seen.append(route.request.post_data_json["client_event_id"])
        route.abort("connectionreset")  # ...but the browser never hears back

    page.route("**/decisions", lose_response)
    page.goto(env.url())
    # the handler has run to its end (the abort) before the route is removed: removed
    # earlier, the paused request would go through after all
    with page.expect_event("requestfailed", lambda r: r.url.endswith("/decisions")):
        page.get_by_role("button", name="Reject all").click()
    [event] = wait_recorded(env, 1)
    wait_until(page, "JSON.parse(localStorage.getItem('consent:queue:shop') || '[]').length === 1")
    page.unroute("**/decisions")
    replies = []
    page.on("response", lambda r: r.url.endswith("/decisions") and r.request.method == "POST"
            and replies.append((r.status, r.json()["duplicate"])))
    # The next page view sends the queue again, same client_event_id: through the second
    # part of the widget, loaded first, so "the page went quiet" can come before the POST
    # starts (the fresh-clone run under load saw none): wait for the answer itself.
    with page.expect_response(lambda r: r.url.endswith("/decisions")
                              and r.request.method == "POST"):
        page.goto(env.url())
    settle(page)  # and nothing more was sent after it
    assert replies == [(200, True)]  # answered as a replay of the recorded event
    events = env.events()
    assert len(events) == 1 and events[0].idempotency_key == seen[0]
    assert page.evaluate("JSON.parse(localStorage.getItem('consent:queue:shop'))") == []


def test_first_visit_retries_a_failed_config_request(env, page):
    page.console.expect("status of 503")
    answers = []

    def fail_once(route):
        if not answers:
            answers.append(503)
            route.fulfill(status=503, body="busy", headers={"Access-Control-Allow-Origin": "*"})
        else:
            answers.append("passed")
            route.continue_()

    page.route("**/config?*", fail_once)
    page.goto(no_referer_page(env))
    banner(page).wait_for()
    assert answers == [503, "passed"]


def test_the_second_part_and_the_details_load_when_the_dialog_first_opens(env, page):
    seen = []
    page.on("request", lambda r: r.url.startswith(env.app_url) and seen.append(
        r.url.removeprefix(env.app_url)))
    page.goto(env.url())
    banner(page).wait_for()
    assert seen == ["/consent.js"]  # the first layer alone: no dialog, no details
    assert page.evaluate("typeof window.__consentPart") == "undefined"
    page.get_by_role("button", name="Customise").click()
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    dialog.wait_for()
    # one request for the second part (versioned: cached for long), one for the details
    details, part = sorted(seen[1:])
    assert details.startswith("/api/v1/sites/shop/config?") and "details=1" in details
    assert part.startswith("/consent-more.js?v=")
    assert "Services and cookies" in dialog.inner_text()  # the details arrived
    page.keyboard.press("Escape")
    wait_until(page, "!document.querySelector('dialog.cw-prefs')")
    page.locator("[data-consent-open]").first.click()
    dialog.wait_for()
    assert len(seen) == 3  # opened again: nothing more asked
    page.get_by_role("button", name="Reject all").last.click()
    wait_recorded(env, 1)
