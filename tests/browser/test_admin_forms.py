"""The admin's forms driven in Chromium, as an operator uses them: a validation error
keeps the input inside the normal page, a save of one section keeps the others and says
what changed, leaving with unsaved changes warns, erasure asks first and shows a readable
result; the pages are axe-clean and fit a phone."""
from __future__ import annotations

import pytest

from consent.database import run_write
from consent.demo_data import DEMO_SERVICES
from consent.requests import open_request
from consent.sites import create_site, get_site
from tests.support.admin import make_admin, record_choice, sign_in_page
from tests.support.browser import new_context
from tests.support.scans import seed_finished_scan
from tests.support.servers import AppServer
from tests.support.widget import axe_violations


@pytest.fixture
def admin_page(app, database_url, browser):
    """A signed-in admin's page on the app under gunicorn; site 'shop' has the demo services."""
    run_write(lambda: create_site("shop", "Example shop", allowed_origins=["https://shop.example"],
                                  categories=[{"key": k, "services": v}
                                              for k, v in DEMO_SERVICES.items()]))
    email = make_admin("dpo@example.com")
    server = AppServer(database_url, workers=1, threads=4)
    ctx = new_context(browser, locale="en-GB")
    page = ctx.new_page()
    page.base = server.url
    sign_in_page(page, server.url, email)
    yield page
    ctx.close()
    server.stop()


def _fresh_site():
    from consent.extensions import db

    db.session.rollback()
    return get_site("shop")


def test_a_validation_error_keeps_the_input_inside_the_page(admin_page):
    page = admin_page
    page.goto(f"{page.base}/admin/sites/shop/settings")
    page.get_by_label("Name", exact=True).fill("Example shop EU")
    page.get_by_label("Allowed origins").fill("https://shop.example\nshop.example/path")
    page.console.expect(r"status of 422")  # the form comes back with its error: 422
    page.get_by_role("button", name="Save general").click()
    error = page.locator("#err-allowed_origins")
    error.wait_for()
    assert "'shop.example/path' is not an origin: it has no scheme" in error.inner_text()
    assert page.get_by_label("Allowed origins").input_value() == \
        "https://shop.example\nshop.example/path"
    assert page.get_by_label("Allowed origins").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Name", exact=True).input_value() == "Example shop EU"
    assert page.get_by_role("navigation", name="Admin").is_visible()  # the normal layout
    assert "Nothing was saved" in page.get_by_role("alert").inner_text()
    assert axe_violations(page) == []
    assert _fresh_site().name == "Example shop"


def test_messages_and_gpc_by_their_labels_axe_clean_with_an_error(admin_page):
    page = admin_page
    page.goto(f"{page.base}/admin/sites/shop/settings/messages")
    assert axe_violations(page) == []
    page.get_by_label("Advertising").uncheck()  # no category left for GPC: refused
    page.get_by_label("Offers by e-mail").check()
    page.console.expect(r"status of 422")
    page.get_by_role("button", name="Save messages and gpc").click()
    page.locator("#err-gpc_categories").wait_for()
    assert page.get_by_label("Offers by e-mail").is_checked()  # what was chosen, kept
    assert axe_violations(page) == []
    assert "channel_defaults" not in _fresh_site().settings
    page.get_by_label("Analytics").check()
    page.get_by_label("Advertising").check()
    page.get_by_label("An unsubscribe link or STOP reply opts out of").select_option(
        "all_promotional")
    page.get_by_label("More words that opt out").fill("NO MORE")
    page.get_by_role("button", name="Save messages and gpc").click()
    page.get_by_text("Saved:").wait_for()
    settings = _fresh_site().settings
    assert settings["gpc_categories"] == ["analytics", "advertising"]
    assert settings["channel_defaults"]["email.promotional"] is True
    assert settings["unsubscribe_scope"] == "all_promotional"
    assert settings["sms_keywords"] == {"stop": ["NO MORE"]}


def test_a_save_of_one_section_keeps_the_others_and_says_what_changed(admin_page):
    page = admin_page
    before = {c.key: (dict(c.titles), list(c.services)) for c in _fresh_site().categories
              if c.key != "analytics"}
    page.goto(f"{page.base}/admin/sites/shop/settings/categories/analytics")
    page.get_by_label("Title (en)").fill("Statistics")
    row = page.get_by_role("group", name="Add a service")
    row.get_by_label("Name", exact=True).fill("Matomo")
    row.get_by_label("Provider", exact=True).fill("InnoCraft")
    row.get_by_label("Cookies (one per line").fill("/^_pk_id/\n_pk_ses; lifetime=30 minutes")
    row.get_by_label("Cookie lifetime").fill("13 months")
    page.get_by_role("button", name="Save").click()
    flash = page.locator("#flashes")
    flash.wait_for()
    assert flash.inner_text() == "Saved Statistics: title (en), service Matomo added."
    site = _fresh_site()
    cats = {c.key: c for c in site.categories}
    matomo = next(s for s in cats["analytics"].services if s["name"] == "Matomo")
    assert matomo["cookies"] == [{"pattern": "^_pk_id", "duration": "13 months"},
                                 {"name": "_pk_ses", "duration": "30 minutes"}]
    # the other categories and the general settings are as they were
    assert {k: (c.titles, c.services) for k, c in cats.items() if k != "analytics"} == before
    assert before["functional"][1]  # (the demo services are there to be kept)
    assert site.name == "Example shop" and site.allowed_origins == ["https://shop.example"]
    # the lifetimes section saves only what it shows
    page.get_by_role("link", name="Lifetimes and requests").click()
    page.get_by_label("Days a refusal stands").fill("90")
    page.get_by_role("button", name="Save lifetimes and requests").click()
    page.locator("#flashes").wait_for()
    assert page.locator("#flashes").inner_text() == "Saved: days a refusal stands."
    site = _fresh_site()
    assert site.reject_lifetime_days == 90
    assert {c.key: c for c in site.categories}["analytics"].titles["en"] == "Statistics"
    assert axe_violations(page) == []


def test_leaving_with_unsaved_changes_warns(admin_page):
    page = admin_page
    page.goto(f"{page.base}/admin/sites/shop/settings/controller")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.type), d.dismiss()))
    page.get_by_role("link", name="Dashboard").click()  # nothing typed: leaves at once
    page.wait_for_url("**/admin/sites/shop/")
    assert dialogs == []
    page.goto(f"{page.base}/admin/sites/shop/settings/controller")
    page.get_by_label("Name").fill("Shop GmbH")
    page.get_by_role("link", name="Dashboard").click(no_wait_after=True)
    page.wait_for_function("true")  # a turn for the dialog
    assert dialogs == ["beforeunload"]
    assert page.url.endswith("/settings/controller")
    assert page.get_by_label("Name").input_value() == "Shop GmbH"
    page.get_by_role("button", name="Save data controller").click()  # saving does not ask
    page.locator("#flashes").wait_for()
    assert dialogs == ["beforeunload"]


def test_erasure_asks_first_and_shows_a_readable_result(admin_page):
    page = admin_page
    visitor = record_choice("shop")
    request_id = open_request("shop", "erasure", subject=visitor).id
    page.goto(f"{page.base}/admin/sites/shop/requests/{request_id}")
    page.get_by_role("link", name="Erase this person's data…").click()
    page.wait_for_url("**/erase")  # the request page has an h1 too
    assert page.get_by_role("heading", level=1).inner_text() == f"Erase the data of {visitor}?"
    assert axe_violations(page) == []
    page.get_by_role("link", name="Cancel").click()
    assert page.locator("#status").inner_text() == "open"
    page.get_by_role("link", name="Erase this person's data…").click()
    page.get_by_role("button", name="Erase this person's data").click()
    page.locator("#flashes").wait_for()
    assert page.locator("#flashes").inner_text().startswith("Erased: 1 visitor id(s)")
    assert page.locator("#status").inner_text() == "completed"
    result = page.locator("#result").inner_text()
    assert "1 visitor id(s) erased" in result and "{" not in result


def test_purge_asks_first_and_shows_a_readable_result(admin_page, clock):
    page = admin_page
    clock.advance(days=-3)  # two choices recorded three days ago (in this process)
    record_choice("shop"), record_choice("shop")
    clock.advance(days=3)
    today = clock.now().date().isoformat()
    page.goto(f"{page.base}/admin/sites/shop/settings/consent")
    page.get_by_role("link", name="Purge old events…").click()
    page.get_by_label("Remove events recorded before").fill(today)
    page.get_by_role("button", name="Review the purge…").click()
    page.wait_for_url("**/purge/confirm?*")  # the form's page has an h1 too
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == f"Remove 2 event(s) recorded before {today}?"
    assert axe_violations(page) == []
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url("**/purge")  # loaded: is_visible() does not wait for the form
    assert page.get_by_label("Remove events recorded before").is_visible()
    assert _events(today) == 2  # nothing went
    page.go_back()
    page.get_by_role("button", name="Purge 2 event(s)").click()
    page.locator("#flashes").wait_for()
    assert page.locator("#flashes").inner_text().startswith(
        f"Purged: 2 event(s) recorded before {today}")
    assert _events(today) == 0
    assert axe_violations(page) == []


def _events(before: str) -> int:
    """Events of the shop recorded before the day BEFORE."""
    from consent.extensions import db
    from consent.ledger import ConsentEvent

    db.session.rollback()
    when = db.session.execute(db.select(ConsentEvent.recorded_at)).scalars()
    return sum(1 for at in when if at.date().isoformat() < before)


@pytest.mark.parametrize("path", ["settings", "settings/messages", "settings/texts",
                                  "settings/cookie", "settings/sms", "settings/minors",
                                  "settings/categories/analytics", "settings/history",
                                  "scans", "scans/1", "export", "requests/1/erase",
                                  "purge", "webhooks", "requests"])
def test_admin_pages_fit_a_phone(admin_page, path):
    page = admin_page
    seed_finished_scan("shop")
    open_request("shop", "erasure", subject=record_choice("shop"))
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"{page.base}/admin/sites/shop/{path}")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    assert axe_violations(page) == []


def test_the_admin_works_without_javascript(app, database_url, browser):
    run_write(lambda: create_site("shop", "Example shop", allowed_origins=["https://shop.example"]))
    email = make_admin("dpo@example.com")
    server = AppServer(database_url, workers=1, threads=4)
    ctx = new_context(browser, locale="en-GB", java_script_enabled=False)
    try:
        page = ctx.new_page()
        sign_in_page(page, server.url, email)
        page.goto(f"{server.url}/admin/sites/shop/settings/categories/analytics")
        row = page.get_by_role("group", name="Add a service")
        row.get_by_label("Name", exact=True).fill("Matomo")
        row.get_by_label("Cookies (one per line").fill("_pk_id")
        page.get_by_role("button", name="Save").click()
        page.locator("#flashes").wait_for()
        assert "service Matomo added" in page.locator("#flashes").inner_text()
        page.wait_for_load_state()  # (the flash is at the top; the service further down)
        assert page.get_by_role("group", name="Service Matomo").is_visible()
    finally:
        ctx.close()
        server.stop()
