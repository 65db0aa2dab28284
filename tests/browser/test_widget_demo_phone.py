"""The demo page on a phone (375x667, mobile emulation): the banner is fully visible, every
button of the banner and the dialog can be reached and tapped, nothing scrolls sideways."""
from __future__ import annotations

import pytest

from consent.database import run_write
from consent.demo_data import seed_demo
from consent.extensions import db
from consent.ledger import ConsentEvent
from tests.support.servers import AppServer

from .helpers import banner, wait_until

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 375, "height": 667}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True,
         "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 "
                       "(KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36"}


@pytest.fixture
def demo(app, database_url):
    server = AppServer(database_url, workers=1, threads=4)
    run_write(seed_demo, "demo", [server.url])
    yield server
    server.stop()


def inside_the_screen(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["y"] >= 0 \
        and box["x"] + box["width"] <= 375 and box["y"] + box["height"] <= 667


def no_sideways_scroll(page) -> bool:
    # A page wider than the screen makes the phone lay it out wider and zoom out: the
    # layout viewport would then be wider than 375 CSS pixels.
    return page.evaluate("window.innerWidth === 375 && "
                         "document.documentElement.scrollWidth <= 375")


def test_the_demo_page_works_on_a_phone(browser, demo):
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(demo.url + "/")
    banner(page).wait_for()
    page.wait_for_load_state("networkidle")
    assert no_sideways_scroll(page)
    assert inside_the_screen(banner(page))  # the whole banner, without scrolling
    for name in ("Reject all", "Accept all", "Customise"):
        button = banner(page).get_by_role("button", name=name)
        assert inside_the_screen(button), name
        button.tap(trial=True)  # nothing covers it
    # the dialog: every control reachable on the small screen
    banner(page).get_by_role("button", name="Customise").tap()
    dialog = page.locator("dialog.cw-prefs")
    dialog.get_by_role("button", name="Save choices").wait_for()
    page.wait_for_load_state("networkidle")
    assert no_sideways_scroll(page)
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    for control in (dialog.get_by_role("switch", name="Analytics"),
                    dialog.get_by_role("button", name="Reject all"),
                    dialog.get_by_role("button", name="Accept all"),
                    dialog.get_by_role("button", name="Save choices"),
                    dialog.get_by_role("button", name="Close"),
                    dialog.get_by_role("link", name="All privacy settings")):
        control.scroll_into_view_if_needed()
        assert inside_the_screen(control), control
        control.tap(trial=True)
    dialog.get_by_role("switch", name="Analytics").tap()
    dialog.get_by_role("button", name="Save choices").tap()
    # (polled with evaluate: the demo page's strict CSP forbids wait_for_function's eval)
    wait_until(page, "document.getElementById('analytics-status').textContent"
                     ".startsWith('running')")
    wait_until(page, "Consent.get().eventId !== null")  # the server recorded it
    [event] = db.session.execute(db.select(ConsentEvent)).scalars().all()
    assert event.categories["analytics"] is True and event.categories["advertising"] is False
    assert no_sideways_scroll(page)
    context.close()
