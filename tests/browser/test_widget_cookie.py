"""The consent cookie the widget writes: Max-Age, SameSite, Secure and Domain."""
from __future__ import annotations

import time

import pytest

from tests.support.browser import new_context

from .helpers import ALL_TAGS, banner, consent_cookie, settle, wait_ran, wait_recorded

pytestmark = pytest.mark.browser

DAY = 86400


def the_cookie(context) -> dict:
    [cookie] = [c for c in context.cookies() if c["name"] == "consent"]
    return cookie


@pytest.mark.parametrize("choice, days", [("Accept all", 365), ("Reject all", 182)])
def test_the_cookie_lasts_as_long_as_the_choice(env, context, page, choice, days):
    page.goto(env.url())
    page.get_by_role("button", name=choice).click()
    wait_recorded(env, 1)
    cookie, fields = the_cookie(context), consent_cookie(context)
    assert int(fields["e"]) - int(fields["t"]) == days * DAY
    assert abs(cookie["expires"] - int(fields["e"])) <= 2  # Max-Age: until the choice expires
    assert abs(cookie["expires"] - (time.time() + days * DAY)) < 120
    # the defaults: the page's own host, every path, Lax, not Secure on http, readable
    assert (cookie["domain"], cookie["path"], cookie["sameSite"]) == ("127.0.0.1", "/", "Lax")
    assert cookie["secure"] is False and cookie["httpOnly"] is False


def test_same_site_setting_is_used(make_env, context, page):
    env = make_env(settings={"cookie": {"same_site": "Strict"}})
    page.goto(env.url())
    page.get_by_role("button", name="Reject all").click()
    wait_recorded(env, 1)
    assert the_cookie(context)["sameSite"] == "Strict"


def test_the_cookie_is_secure_on_https(make_env, browser):
    env = make_env(https=True)
    context = new_context(browser, locale="en-GB", ignore_https_errors=True)
    page = context.new_page()
    page.goto(env.url())
    assert env.url().startswith("https://")
    page.get_by_role("button", name="Accept all").click()
    assert wait_ran(page, 5) == ALL_TAGS
    wait_recorded(env, 1)
    assert the_cookie(context)["secure"] is True
    context.close()


def test_the_domain_setting_shares_one_choice_between_subdomains(make_env, context, page):
    env = make_env(
        origins=lambda s: [f"http://www.example.test:{s.port}", f"http://shop.example.test:{s.port}"],
        settings={"cookie": {"domain": "example.test"}})
    page.goto(env.url(host="www.example.test"))
    page.get_by_role("button", name="Accept all").click()
    wait_recorded(env, 1)
    assert the_cookie(context)["domain"] == ".example.test"
    other = context.new_page()
    other.goto(env.url(host="shop.example.test"))
    assert wait_ran(other, 5) == ALL_TAGS
    settle(other)
    assert banner(other).count() == 0
    assert other.evaluate("Consent.get().subject") == consent_cookie(context)["s"]
