"""Real Chromium for the browser and end-to-end tests: one start per test process.

A pytest plugin (tests/conftest.py loads it): the fixtures `browser` (session), `context`
and `page`, and the check that fails a test whose pages logged a console error or threw
an uncaught error it did not say it expects (`page.console.expect(pattern)` or the
marker `@pytest.mark.console_errors(pattern, ...)`).
"""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from .waits import OPEN_CONTEXTS

CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright's own browser download is not used
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # the same-site deployment test uses real host names on loopback
                 "--host-resolver-rules=MAP *.example.test 127.0.0.1"]
NONCE = "n0nce-for-tests"


def strict_csp(app_url: str) -> str:
    """A strict policy: no inline script without the nonce, no inline style, no eval."""
    return (f"default-src 'self'; script-src 'self' {app_url} 'nonce-{NONCE}'; "
            f"style-src 'self' {app_url}; connect-src 'self' {app_url}; img-src 'self'; "
            "frame-src 'self'; object-src 'none'; base-uri 'none'")


class SiteHandler(SimpleHTTPRequestHandler):
    """Static files, plus response headers (CSP) configured per path on the server."""

    def end_headers(self):
        for name, value in getattr(self.server, "extra_headers", {}).get(
                self.path.split("?")[0], {}).items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, *args):
        pass


class Traffic:
    """The requests of a browser context that have started and not yet ended."""

    def __init__(self, ctx):
        self.pending: set = set()
        self.started = 0
        ctx.on("request", self._start)
        ctx.on("requestfinished", self._end)
        ctx.on("requestfailed", self._end)

    def _start(self, request):
        self.pending.add(request)
        self.started += 1

    def _end(self, request):
        self.pending.discard(request)

    @property
    def inflight(self) -> int:
        return len(self.pending)


class Console:
    """Console errors and uncaught page errors of every page in a context."""

    def __init__(self, ctx=None):
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.expected: list[re.Pattern] = []
        if ctx is not None:
            ctx.on("console", self._message)
            ctx.on("weberror", lambda e: self.errors.append(f"pageerror: {e.error}"))

    def _message(self, message):
        if message.type == "error":
            self.errors.append(f"error: {message.text}")
        elif message.type == "warning":
            self.warnings.append(f"warning: {message.text}")

    def expect(self, pattern: str) -> None:
        """Say that errors matching PATTERN (a regular expression) are part of the test."""
        self.expected.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        """The errors no `expect` pattern covers."""
        return [e for e in self.errors if not any(p.search(e) for p in self.expected)]


CREATED: list = []  # every context new_context made, for the console check


def new_context(browser, **options):
    """A browser context that tracks its traffic (`ctx.traffic`) and console (`ctx.console`);
    its pages carry `page.console`. Close it yourself (the `context` fixture does)."""
    ctx = browser.new_context(**options)
    ctx.traffic = Traffic(ctx)
    ctx.console = Console(ctx)
    ctx.on("page", lambda p: setattr(p, "console", ctx.console))
    OPEN_CONTEXTS.append(ctx)
    ctx.on("close", lambda _: ctx in OPEN_CONTEXTS and OPEN_CONTEXTS.remove(ctx))
    CREATED.append(ctx)
    return ctx


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (one per test process)."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    # Twice a test process's Chromium never finished closing after its last test (all
    # passed; docs/testing.md), and nothing bounds Playwright's close: a watchdog ends the
    # driver and the browser if closing takes longer than TEARDOWN_SECONDS, and says so.
    watchdog = threading.Timer(TEARDOWN_SECONDS, _end_playwright)
    watchdog.daemon = True
    watchdog.start()
    try:
        chromium.close()
        pw.stop()
    except Exception:
        if not KILLED:
            raise
    finally:
        watchdog.cancel()
    if KILLED:
        sys.stderr.write(f"\nwarning: Chromium did not close within {TEARDOWN_SECONDS} s; "
                         f"killed the Playwright driver and Chromium (pids {KILLED})\n")


TEARDOWN_SECONDS = float(os.environ.get("CONSENT_TEST_BROWSER_CLOSE_SECONDS", "60"))
KILLED: list[int] = []


def _descendants(pid: int) -> list[int]:
    """The processes under PID (from /proc), children before their own children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _end_playwright() -> None:
    """Kill this process's Playwright driver and the Chromium it runs, nothing else."""
    for pid in _descendants(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        program = command.split(b"\0", 1)[0]
        # (/usr/bin/chromium is a script that runs /usr/lib/chromium/chromium)
        if b"run-driver" in command or program.endswith(b"/chromium"):
            try:
                os.kill(pid, signal.SIGKILL)
                KILLED.append(pid)
            except ProcessLookupError:
                pass


@pytest.fixture
def context(browser):
    ctx = new_context(browser, locale="en-GB")
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    p = context.new_page()
    p.console = context.console
    return p


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _no_unexpected_console_errors(request):
    """Fail a test whose browser pages logged an error it did not declare."""
    start = len(CREATED)
    yield
    made = CREATED[start:]
    del CREATED[start:]
    for ctx in made:  # a test that forgot to close one
        if ctx in OPEN_CONTEXTS:
            ctx.close()
    if not made or request.node.stash.get(_CALL_FAILED, False):
        return
    patterns = [p for m in request.node.iter_markers("console_errors") for p in m.args]
    errors = []
    for ctx in made:
        ctx.console.expected.extend(re.compile(p) for p in patterns)
        errors += ctx.console.unexpected()
    if errors:
        pytest.fail("the page logged errors the test does not expect (declare them with "
                    "page.console.expect(pattern)):\n  " + "\n  ".join(errors), pytrace=False)
