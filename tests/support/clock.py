"""An injected clock: the product reads the time through `consent.database.utcnow`, and a
test that depends on time moves that clock instead of waiting (fixture `clock`)."""
from __future__ import annotations

import sys
from datetime import datetime, timedelta

import pytest

from consent import database


class Clock:
    """The time every consent module sees: real UTC plus an offset the test moves."""

    def __init__(self, monkeypatch):
        self.offset = timedelta(0)
        real = database.utcnow
        self.now = lambda: real() + self.offset
        for name, module in list(sys.modules.items()):
            if (name == "consent" or name.startswith("consent.")) and \
                    getattr(module, "utcnow", None) is real:
                monkeypatch.setattr(module, "utcnow", self.now)

    def advance(self, **delta) -> datetime:
        """Move the clock forward (timedelta keywords); returns the new now."""
        self.offset += timedelta(**delta)
        return self.now()

    def set(self, when: datetime) -> None:
        """Make it WHEN now (time goes on from there)."""
        self.offset += when - self.now()


@pytest.fixture
def clock(app, monkeypatch) -> Clock:
    """The consent modules' clock, for this test only."""
    return Clock(monkeypatch)
