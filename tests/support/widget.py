"""What the browser and end-to-end tests look at in a page that embeds the widget."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl

import pytest
from playwright.sync_api import Error as PlaywrightError

from .waits import pause, poll

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"

GPC_ON = ("Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', "
          "{get() { return true; }, configurable: true});")
NO_STORAGE = ("Object.defineProperty(window, 'localStorage', "
              "{get() { throw new DOMException('denied', 'SecurityError'); }});")
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


def queue(page, site_key: str = "shop") -> list | None:
    """The widget's queue of unsent decisions in localStorage (None: never written)."""
    return page.evaluate(f"JSON.parse(localStorage.getItem('consent:queue:{site_key}'))")


def wait_until(page, expression: str, timeout: float = 15):
    """Poll EXPRESSION in the page until truthy (no eval in the page: strict-CSP safe),
    across the reloads the widget may do (a withdrawn tag that already ran)."""
    def read():
        try:
            return page.evaluate(expression)
        except PlaywrightError as exc:
            if "context was destroyed" in str(exc) or "navigat" in str(exc):
                return None  # the page is reloading: ask the new one
            if "ReferenceError" in str(exc) and "is not defined" in str(exc):
                return None  # the new page's widget has not run yet (a fresh-clone run)
            raise

    return poll(read, bool, timeout=timeout, message=f"still falsy: {expression}",
                interval=0.03)


def wait_ran(page, count: int) -> list[str]:
    """Wait until COUNT tagged scripts have run; returns their names in run order."""
    wait_until(page, f"window.ran && window.ran.length >= {count}")
    return ran(page)


# Two turns of the page's event loop (tasks posted through a MessageChannel, which a
# page.clock does not hold back): work the page's handlers queued has run by then.
_TURN = """() => new Promise(done => { const c = new MessageChannel(); let n = 0;
    c.port1.onmessage = () => ++n < 2 ? c.port2.postMessage(0) : done(); c.port2.postMessage(0); })"""


def settle(page, timeout: float = 15) -> None:
    """Wait until what the page has started is over, before asserting that something did
    NOT happen (no event, no tag, no request); FAILS if that takes over TIMEOUT seconds.

    Over means: the load event has fired, every request the page's context sent has been
    answered or has failed, and after that the page's event loop has turned with no new
    request starting (so the handlers of those answers ran and asked for nothing more).
    It says nothing of timers set for later: tests of those drive `page.clock`.
    """
    from playwright.sync_api import Error

    traffic = page.context.traffic
    deadline = time.monotonic() + timeout
    while True:
        started = traffic.started
        page.wait_for_load_state("load")
        turned = False
        if not traffic.pending:
            try:
                page.evaluate(_TURN)
                turned = True
            except Error:  # the page navigated meanwhile (a reload): look again
                pass
        pause(0.05)  # Playwright delivers the request events of that turn
        if turned and not traffic.pending and traffic.started == started:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never went quiet: still in flight after {timeout} s: "
                                 f"{sorted(r.url for r in traffic.pending)}")


@contextmanager
def loading(page, env, path: str):
    """While the block loads a page: `.asked`, what it asks of the consent server (paths
    with their query, as each request is sent; it goes on filling), and after the block
    `.body()`, the body of the server's answer to PATH (with any query, or the one PATH
    names). A response listener that reads bodies could still be reading when the banner
    shows; a request listener that only notes the path has run by then."""
    seen = SimpleNamespace(asked=[])
    page.on("request", lambda r: r.url.startswith(env.app_url) and seen.asked.append(
        r.url.removeprefix(env.app_url)))

    def answers(r) -> bool:
        got = r.url.removeprefix(env.app_url)
        return r.url.startswith(env.app_url) and (got == path or got.startswith(path + "?"))
    with page.expect_response(answers) as response:
        yield seen
    seen.body = response.value.body


def banner(page):
    """The first-layer banner locator."""
    return page.locator(".cw-banner")


def axe_violations(page, selector: str | None = None) -> list[dict]:
    """Serious or critical axe-core violations on the page (or within SELECTOR)."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: run `make node-deps` (npm install)")
    page.add_script_tag(path=str(AXE))
    context = f"document.querySelector({selector!r})" if selector else "document"
    result = page.evaluate(f"async () => (await axe.run({context})).violations"
                           ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))")
    return [v for v in result if v["impact"] in ("serious", "critical")]
