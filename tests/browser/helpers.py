"""Small helpers shared by the browser tests."""
from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"

GPC_ON = ("Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', "
          "{get() { return true; }, configurable: true});")
ALL_TAGS = ["a1", "a-inline", "a2", "ads", "ads-inline"]
ANALYTICS_TAGS = ["a1", "a-inline", "a2"]
ADS_TAGS = ["ads", "ads-inline"]


def data_layer(page) -> list:
    """window.dataLayer with gtag's Arguments objects turned into lists."""
    return page.evaluate("window.dataLayer.map(e => (e && typeof e.length === 'number')"
                         " ? Array.from(e) : e)")


def consent_commands(page, kind: str) -> list[dict]:
    """The settings of every `gtag('consent', KIND, ...)` pushed so far."""
    return [e[2] for e in data_layer(page) if isinstance(e, list) and e[:2] == ["consent", kind]]


def cookie_names(context) -> set[str]:
    return {c["name"] for c in context.cookies()}


def consent_cookie(context) -> dict | None:
    """The consent cookie's fields, or None."""
    for c in context.cookies():
        if c["name"] == "consent":
            return dict(parse_qsl(c["value"], keep_blank_values=True))
    return None


def ran(page) -> list[str]:
    return page.evaluate("window.ran")


def wait_until(page, expression: str, timeout: float = 15):
    """Poll EXPRESSION in the page until truthy (no eval in the page: strict-CSP safe)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for {expression}"
            return value
        page.wait_for_timeout(30)


def wait_ran(page, count: int) -> list[str]:
    """Wait until COUNT tagged scripts have run; returns their names in run order."""
    wait_until(page, f"window.ran && window.ran.length >= {count}")
    return ran(page)


def settle(page, quiet: float = 0.3, timeout: float = 15) -> None:
    """Wait until the page's context has had no request in flight for QUIET seconds.

    Used before asserting that something did NOT happen (no event, no tag, no request).
    """
    traffic = page.context.traffic
    deadline = time.monotonic() + timeout
    page.wait_for_load_state("load")
    while time.monotonic() < deadline:
        page.wait_for_timeout(50)  # lets Playwright deliver the request events
        if traffic.inflight <= 0 and time.monotonic() - traffic.last >= quiet:
            return
    raise AssertionError("the page never went quiet")


def banner(page):
    """The first-layer banner locator."""
    return page.locator(".cw-banner")


def wait_recorded(env, count: int, action: str | None = None, timeout: float = 10):
    """Wait until COUNT events (of ACTION) are in the ledger; returns them."""
    deadline = time.monotonic() + timeout
    while True:
        events = env.events(action)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def axe_violations(page, selector: str | None = None) -> list[dict]:
    """Serious or critical axe-core violations on the page (or within SELECTOR)."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: run `make node-deps` (npm install)")
    page.add_script_tag(path=str(AXE))
    context = f"document.querySelector({selector!r})" if selector else "document"
    result = page.evaluate(f"async () => (await axe.run({context})).violations"
                           ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))")
    return [v for v in result if v["impact"] in ("serious", "critical")]

