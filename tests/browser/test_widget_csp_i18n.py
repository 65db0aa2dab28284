"""Strict Content-Security-Policy, and the visitor's language."""
from __future__ import annotations

import pytest

from tests.support.browser import new_context, strict_csp

from .helpers import ALL_TAGS, banner, wait_ran, wait_recorded, wait_until

pytestmark = pytest.mark.browser


def test_works_under_a_strict_csp_header_without_errors_or_violations(env, page):
    env.render("csp.html")
    env.serve_with_headers("csp.html", {"Content-Security-Policy": strict_csp(env.app_url)})
    response = page.goto(env.url("csp.html"))
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    banner(page).wait_for()
    # styled by the stylesheet the script adopts through the CSSOM (no inline style)
    assert banner(page).evaluate("e => getComputedStyle(e).position") == "fixed"
    page.get_by_role("button", name="Customise").click()
    page.get_by_role("dialog", name="Privacy preferences").wait_for()
    page.get_by_role("button", name="Accept all").last.click()
    # inline tagged scripts run through the page's nonce, external ones from 'self'
    assert wait_ran(page, 5) == ALL_TAGS
    wait_recorded(env, 1)
    page.goto(env.url("csp.html"))
    assert wait_ran(page, 5) == ALL_TAGS
    assert page.console.errors == []
    assert page.evaluate("window.violations") == []
    # the policy is really enforced: an inline script without the nonce is refused
    page.console.expect("violates the following Content Security Policy directive")
    page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.sneaked = 1'; document.body.append(s); }""")
    wait_until(page, "window.violations.length > 0")
    assert page.evaluate("window.sneaked") is None


def test_without_constructable_stylesheets_consent_css_styles_banner_and_dialog(env, page):
    """Browsers without constructable stylesheets get the built static/consent.css by a
    <link> under the same strict policy: banner and dialog styled, no violation."""
    env.render("csp.html")
    env.serve_with_headers("csp.html", {"Content-Security-Policy": strict_csp(env.app_url)})
    page.add_init_script("delete window.CSSStyleSheet")
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/consent.css")) as css:
        page.goto(env.url("csp.html"))
    assert css.value.status == 200
    banner(page).wait_for()
    assert banner(page).evaluate("e => getComputedStyle(e).position") == "fixed"
    page.get_by_role("button", name="Customise").click()
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    dialog.wait_for()
    # the dialog's own rules (.cw-prefs: padding 1.5rem), not the browser's default 1em
    assert dialog.evaluate("e => getComputedStyle(e).paddingTop") == "24px"
    assert page.console.errors == [] and page.evaluate("window.violations") == []


@pytest.mark.parametrize("lang, accept, title", [
    ("de", "Alle akzeptieren", "Statistik"),
    ("fr-FR", "Tout accepter", "Mesure d'audience"),
    ("es", "Aceptar todo", None),
    ("en", "Accept all", "Analytics"),
])
def test_language_from_html_lang(env, page, lang, accept, title):
    env.render("lang.html", lang=lang)
    page.goto(env.url("lang.html"))
    page.get_by_role("button", name=accept).wait_for()
    if title:
        page.get_by_role("button", name=accept).locator("xpath=following-sibling::button").click()
        assert page.locator(".cw-cat").nth(2).locator(".cw-ct").inner_text() == title


def test_language_from_the_browser_when_the_page_has_none(env, browser):
    env.render("nolang.html", lang="")
    ctx = new_context(browser, locale="de-DE")
    try:
        page = ctx.new_page()
        page.goto(env.url("nolang.html"))
        page.get_by_role("button", name="Alle ablehnen").wait_for()
        page.get_by_role("button", name="Alle ablehnen").click()
        assert wait_recorded(env, 1)[0].locale == "de"
    finally:
        ctx.close()
