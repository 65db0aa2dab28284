"""The first layer's builds in Chromium (consent/widget_config.py picks one per config): a
site without an age rule gets consent-lean.js, which has no age code, and still shows the
banner, records a choice and opens the dialog; a site with an age rule gets the build that
asks the age question and applies the age rule (tests/test_widget_builds.py checks the
choice for every seed profile)."""
from __future__ import annotations

import pytest

from .helpers import banner, loading, settle, wait_recorded

pytestmark = pytest.mark.browser

HINT = "//# allFunctionsCalledOnLoad\n"


def test_lean_build_shows_the_banner_records_and_opens_the_dialog(env, page):
    env.render("one.html", site_query="")
    with loading(page, env, "/consent.js?site=shop") as load:
        page.goto(env.url("one.html"))
    banner(page).wait_for()
    js = load.body().decode()
    assert js.startswith(HINT) and "data-age-check" not in js  # the lean build
    assert page.locator(".cw-age").count() == 0
    page.get_by_role("button", name="Reject all").click()
    [event] = wait_recorded(env, 1)
    assert event.action == "reject_all" and "age" not in (event.meta or {})
    banner(page).wait_for(state="detached")
    # the dialog (second part) opens from the lean first layer and records a choice
    page.evaluate("Consent.showPreferences()")
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    dialog.wait_for()
    assert not page.get_by_role("switch", name="Analytics").is_checked()
    assert dialog.locator(".cw-age").count() == 0
    page.get_by_role("switch", name="Analytics").check()
    dialog.get_by_role("button", name="Save choices").click()
    dialog.wait_for(state="detached")
    second = wait_recorded(env, 2)[1]
    assert second.action == "custom" and second.categories["analytics"] is True
    settle(page)
    assert page.evaluate("Consent.get().categories") == {
        "essential": True, "functional": False, "analytics": True, "advertising": False}
    assert page.console.errors == []


def test_a_site_with_an_age_rule_gets_the_age_question(make_env, page):
    env = make_env(settings={"age_rule": {"adult_age": 16, "ask": "always",
                                          "categories": ["advertising"]}})
    env.render("one.html", site_query="")
    with loading(page, env, "/consent.js?site=shop") as load:
        page.goto(env.url("one.html"))
    banner(page).wait_for()
    js = load.body().decode()
    assert js.startswith(HINT) and "data-age-check" in js  # the build with the age code
    page.get_by_label("I am under 16.").check()
    page.get_by_role("button", name="Accept all").click()
    [event] = wait_recorded(env, 1)
    # the age rule applied in the browser as on the server: advertising waits for a guardian
    assert event.categories["advertising"] is False and event.categories["analytics"] is True
    assert event.meta["age"] == "minor"
