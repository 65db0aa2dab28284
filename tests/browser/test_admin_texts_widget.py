"""Widget texts set on the admin page are what a visitor's banner says, on another
origin, in real Chromium; markup typed there is shown as text, never run."""
from __future__ import annotations

from tests.support.admin import make_admin, sign_in_page
from tests.support.browser import new_context
from tests.support.sites import SITE_KEY


def test_a_title_typed_in_the_admin_is_the_banners_and_stays_text(env, browser):
    email = make_admin("dpo@example.com")
    admin = new_context(browser, locale="en-GB")
    page = admin.new_page()
    sign_in_page(page, env.app_url, email)
    page.goto(f"{env.app_url}/admin/sites/{SITE_KEY}/settings/texts?locale=en")
    title = 'Cookies at <b>Test</b> shop <img src=x onerror="window.pwned=1">'
    page.get_by_label("Banner title").fill(title)
    page.get_by_label("Accept all button").fill("Yes to all")
    page.get_by_role("button", name="Save texts (en)").click()
    page.get_by_text("Saved (en): acceptAll, title").wait_for()
    admin.close()

    visitor = new_context(browser, locale="en-GB")
    shop = visitor.new_page()
    shop.goto(env.url())
    banner = shop.get_by_role("dialog", name=title)
    banner.wait_for()
    assert banner.get_by_role("button", name="Yes to all").is_visible()
    assert shop.locator("img[src=x]").count() == 0
    assert shop.evaluate("window.pwned") is None
    visitor.close()
