"""Waiting for something that happens in another process: poll, and fail on the deadline.

Under Playwright's sync API the browser's route handlers and event listeners run only
while the test is inside a Playwright call, so a `time.sleep` would freeze every page
the test drives. `pause` lets Playwright run instead whenever a browser page is open.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

# Browser contexts the running test has open (tests.support.browser keeps this up to date).
OPEN_CONTEXTS: list = []


def pause(seconds: float) -> None:
    """Let SECONDS pass; with a page open, inside Playwright (its handlers keep running)."""
    for context in reversed(OPEN_CONTEXTS):
        for page in reversed(context.pages):
            if not page.is_closed():
                page.wait_for_timeout(seconds * 1000)
                return
    time.sleep(seconds)  # no page: nothing of Playwright's waits for its turn


def poll(read: Callable[[], T], done: Callable[[T], bool], *, timeout: float,
         message: Callable[[T], str] | str, interval: float = 0.05) -> T:
    """Call READ until DONE(value); returns that value, or FAILS with MESSAGE after TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            text = message(value) if callable(message) else message
            raise AssertionError(f"after {timeout:g} s: {text}")
        pause(interval)


def wait_recorded(source, count: int, action: str | None = None,
                  timeout: float = 15) -> list:
    """Wait until the ledger holds COUNT events (of ACTION); returns them all, oldest first.

    SOURCE is anything with `events(action)` (a widget or profile environment). Fails,
    naming what was recorded, when they are not there in TIMEOUT seconds.
    """
    what = f"{count} {action or ''} event(s)".replace("  ", " ")
    return poll(lambda: source.events(action), lambda found: len(found) >= count,
                timeout=timeout, message=lambda found: (
                    f"expected {what} in the ledger, found {len(found)}: "
                    f"{[(e.action, e.source) for e in found]}"))
