"""The helpers the browser tests use, by their old names (they live in tests/support)."""
from __future__ import annotations

from tests.support.waits import wait_recorded
from tests.support.widget import (ADS_TAGS, ALL_TAGS, ANALYTICS_TAGS, AXE, GPC_ON, NO_STORAGE,
                                  axe_violations, banner, consent_commands, consent_cookie,
                                  cookie_names, data_layer, loading, queue, ran, settle,
                                  wait_ran, wait_until)

__all__ = ["ADS_TAGS", "ALL_TAGS", "ANALYTICS_TAGS", "AXE", "GPC_ON", "NO_STORAGE", "axe_violations",
           "banner", "consent_commands", "consent_cookie", "cookie_names", "data_layer",
           "loading", "queue", "ran", "settle", "wait_ran", "wait_recorded", "wait_until"]
