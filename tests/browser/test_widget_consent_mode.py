"""A site's Google Consent Mode options in Chromium: the configured dataLayer gets the
all-denied default, the region defaults and the `set` commands, in order, before the
page's tag manager and before any tag (docs/widget.md, consent/consent_mode.py)."""
from __future__ import annotations

import pytest

from tests.support.browser import NONCE

from .helpers import banner, wait_ran, wait_until

pytestmark = pytest.mark.browser

OPTIONS = {"data_layer": "gtmLayer", "ads_data_redaction": True, "url_passthrough": True,
           "regions": [{"region": ["US-CA", "US-VA"], "granted": ["analytics", "advertising"]},
                       {"region": ["ES"], "granted": []}]}
DENIED = {"functionality_storage": "denied", "personalization_storage": "denied",
          "analytics_storage": "denied", "ad_storage": "denied", "ad_user_data": "denied",
          "ad_personalization": "denied", "security_storage": "granted", "wait_for_update": 500}
EXPECTED = [
    ["consent", "default", DENIED],
    ["consent", "default", {"analytics_storage": "granted", "ad_storage": "granted",
                            "ad_user_data": "granted", "ad_personalization": "granted",
                            "region": ["US-CA", "US-VA"]}],
    ["consent", "default", {"region": ["ES"]}],
    ["set", "ads_data_redaction", True],
    ["set", "url_passthrough", True],
]
# The widget first, then what a Google Tag Manager container snippet would be (it reads
# the layer as it stands), then a tag that runs only with analytics consent.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Consent Mode</title>
<script src="{app}/consent.js?site={site}"></script>
<script nonce="{nonce}">
  const copy = l => (l || []).map(e => (e && typeof e.length === 'number') ? Array.from(e) : e);
  window.atTagManager = copy(window.gtmLayer);
  window.hadDataLayer = 'dataLayer' in window;
  window.ran = [];
</script>
</head><body><p>Shop</p>
<script type="text/plain" data-category="analytics" nonce="{nonce}">
  window.atTag = copy(window.gtmLayer);
  window.ran.push('analytics');
</script>
</body></html>
"""


def commands(entries: list) -> list:
    return [e for e in entries if isinstance(e, list) and e and e[0] in ("consent", "set")]


def test_configured_commands_reach_the_named_data_layer_in_order_before_any_tag(make_env,
                                                                               page):
    env = make_env(settings={"consent_mode": OPTIONS})
    (env.root / "cm.html").write_text(PAGE.format(app=env.app_url, site=env.site_key,
                                                  nonce=NONCE))
    page.goto(env.url("cm.html"))
    banner(page).wait_for()
    # the tag manager's first look: exactly the configured commands, default first
    assert page.evaluate("window.atTagManager") == EXPECTED
    assert page.evaluate("window.hadDataLayer") is False  # only the configured name
    page.get_by_role("button", name="Accept all").click()
    wait_ran(page, 1)
    seen = commands(page.evaluate("window.atTag"))
    assert seen[:5] == EXPECTED
    assert [e[:2] for e in seen[5:]] == [["consent", "update"]]
    assert seen[5][2]["analytics_storage"] == "granted"


def test_a_returning_visitor_gets_the_commands_then_the_update_before_any_tag(make_env,
                                                                             page):
    env = make_env(settings={"consent_mode": {"data_layer": "gtmLayer",
                                              "url_passthrough": True}})
    (env.root / "cm.html").write_text(PAGE.format(app=env.app_url, site=env.site_key,
                                                  nonce=NONCE))
    page.goto(env.url("cm.html"))
    page.get_by_role("button", name="Accept all").click()
    wait_ran(page, 1)
    wait_until(page, "document.cookie.includes('consent=')")
    page.goto(env.url("cm.html"))
    wait_ran(page, 1)
    seen = commands(page.evaluate("window.atTag"))
    assert seen[0] == ["consent", "default", DENIED]
    assert seen[1] == ["set", "url_passthrough", True]
    assert seen[2][:2] == ["consent", "update"] and seen[2][2]["analytics_storage"] == "granted"
    assert len(seen) == 3


def test_a_site_without_options_pushes_only_the_default_to_data_layer(env, page):
    page.goto(env.url())
    banner(page).wait_for()
    entries = page.evaluate("window.dataLayer.map(e => (e && typeof e.length === 'number')"
                            " ? Array.from(e) : e)")
    assert commands(entries) == [["consent", "default", DENIED]]
