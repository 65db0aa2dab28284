"""Same-site deployment: the server sets the consent cookie for the whole site."""
from __future__ import annotations

import pytest

from consent.widget_config import parse_consent_cookie

from .helpers import ALL_TAGS, banner, consent_cookie, settle, wait_ran, wait_recorded

pytestmark = pytest.mark.browser


def test_server_sets_the_cookie_for_every_subdomain(make_env, context, page):
    env = make_env(
        origins=lambda s: [f"http://www.example.test:{s.port}", f"http://shop.example.test:{s.port}"],
        settings={"cookie": {"domain": "example.test", "server_set": True}})
    consent_host = f"http://consent.example.test:{env.app.port}"
    env.render("index.html", app_url=consent_host)
    page.goto(env.url(host="www.example.test"))
    with page.expect_response(lambda r: r.url.endswith("/decisions")
                              and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Accept all").click()
    header = answer.value.header_value("set-cookie")
    assert header and "Domain=example.test" in header and "HttpOnly" not in header
    from_server = parse_consent_cookie(header.split(";")[0].split("=", 1)[1])
    assert wait_recorded(env, 1)[0].action == "accept_all"
    assert from_server.categories["advertising"] is True and from_server.decided_at > 0
    stored = consent_cookie(context)
    assert stored["s"] == from_server.subject
    assert [c["domain"] for c in context.cookies() if c["name"] == "consent"] == [".example.test"]

    # one choice covers the shop on another subdomain: no banner, tags run
    other = context.new_page()
    other.goto(env.url(host="shop.example.test"))
    assert wait_ran(other, 5) == ALL_TAGS
    settle(other)
    assert banner(other).count() == 0
    assert other.evaluate("Consent.get().subject") == from_server.subject
