"""Accessibility: dialogs, focus, keyboard-only use, axe-core, equal-weight choices."""
from __future__ import annotations

import pytest

from .helpers import axe_violations, banner, settle, wait_recorded

pytestmark = pytest.mark.browser

STYLE_PROPS = ["fontSize", "fontWeight", "width", "height", "color", "backgroundColor",
               "borderTopWidth", "borderTopColor", "paddingTop", "paddingLeft"]


def focused(page) -> dict:
    return page.evaluate("""() => { const a = document.activeElement;
        return {tag: a.tagName, id: a.id, text: a.textContent.trim().slice(0, 40),
                cw: a.dataset ? a.dataset.cw || null : null,
                inBanner: !!a.closest('.cw-banner'), inDialog: !!a.closest('dialog')}; }""")


def tab_to(page, predicate, limit: int = 30) -> dict:
    """Press Tab until the focused element satisfies PREDICATE."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if predicate(now):
            return now
    raise AssertionError("never reached the wanted element with Tab")


def test_keyboard_only_choice_through_the_preferences_dialog(env, page):
    page.goto(env.url())
    banner(page).wait_for()
    # focus moved into the banner, which is a labelled dialog
    assert focused(page)["inBanner"]
    assert page.get_by_role("dialog", name="Your privacy choices").is_visible()
    tab_to(page, lambda f: f["cw"] == "customise")
    page.keyboard.press("Enter")
    page.get_by_role("dialog", name="Privacy preferences").wait_for()
    assert focused(page)["inDialog"]
    tab_to(page, lambda f: f["id"] == "cw-c-analytics")
    page.keyboard.press("Space")
    tab_to(page, lambda f: f["cw"] == "save")
    page.keyboard.press("Enter")
    [event] = wait_recorded(env, 1)
    assert event.action == "custom" and event.categories["analytics"] is True
    assert event.categories["advertising"] is False
    page.get_by_role("dialog").first.wait_for(state="detached")
    assert banner(page).count() == 0
    assert not focused(page)["inDialog"]


def test_escape_closes_preferences_without_a_choice_and_focus_returns(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Reject all").click()
    wait_recorded(env, 1)
    tab_to(page, lambda f: f["id"] == "open-settings")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    dialog.wait_for()
    assert focused(page)["inDialog"]
    page.keyboard.press("Tab")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert focused(page)["id"] == "open-settings"
    settle(page)
    assert len(env.events()) == 1


def test_first_layer_offers_equal_weight_accept_and_reject(env, page):
    page.goto(env.url())
    banner(page).wait_for()
    accept = page.get_by_role("button", name="Accept all")
    reject = page.get_by_role("button", name="Reject all")
    assert accept.evaluate("e => e.tagName") == reject.evaluate("e => e.tagName") == "BUTTON"
    style = "(e, props) => { const s = getComputedStyle(e); return props.map(p => s[p]); }"
    assert accept.evaluate(style, STYLE_PROPS) == reject.evaluate(style, STYLE_PROPS)
    assert page.get_by_role("button", name="Customise").is_visible()
    assert page.get_by_role("link", name="Privacy and cookie policy").get_attribute(
        "href").endswith("/sites/shop/policies/2026-01")


def test_no_preticked_boxes_and_essential_always_on(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Customise").click()
    essential = page.get_by_role("switch", name="Essential")
    assert essential.is_checked() and essential.is_disabled()
    for name in ("Functional", "Analytics", "Advertising"):
        switch = page.get_by_role("switch", name=name)
        assert not switch.is_checked() and switch.is_enabled()
    assert page.get_by_text("Always on", exact=True).is_visible()
    # each category lists the services and cookies it covers
    page.get_by_text("Services and cookies").nth(2).click()
    assert "Demo analytics" in page.locator(".cw-cat").nth(2).inner_text()
    assert "^_da_" in page.locator(".cw-cat").nth(2).inner_text()


def test_axe_finds_no_serious_or_critical_violations(env, page):
    page.goto(env.url())
    banner(page).wait_for()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Customise").click()
    page.get_by_role("dialog", name="Privacy preferences").wait_for()
    for summary in page.locator("dialog summary").all():
        summary.click()
    assert axe_violations(page, "dialog") == []
