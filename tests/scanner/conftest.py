"""Scanner fixtures: a fresh database, a site with the four standard categories and no
services (what `create-site` gives a new operator), the consent app under gunicorn, and
the tracking test site (tests/support/tracking_site.py) on other loopback origins.

The scanner runs its own Chromium (Debian's, as in production); the `browser` fixture's
Chromium drives the widget and the admin where a test needs a visitor or an operator.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from consent.database import run_write
from consent.extensions import db
from consent.sites import STANDARD_CATEGORIES, create_site
from tests.support.servers import AppServer
from tests.support.tracking_site import TrackingSite


@dataclass
class ScanEnv:
    app: AppServer
    site: TrackingSite
    site_key: str = "shop"

    @property
    def app_url(self) -> str:
        return self.app.url

    def categories(self) -> dict:
        """The site's categories as stored now (a fresh read)."""
        from consent.sites import get_site

        db.session.rollback()
        return {c.key: c for c in get_site(self.site_key).categories}


@pytest.fixture
def scan_env(app, database_url):
    """The consent app (gunicorn) and the tracking site; site 'shop' allows only the
    tracking site's origin."""
    server = AppServer(database_url, workers=1, threads=4)
    tracking = TrackingSite(server.url)
    try:
        run_write(lambda: create_site("shop", "Tracking shop", allowed_origins=[tracking.origin],
                                      categories=[{"key": k} for k in STANDARD_CATEGORIES]))
        app.config.update(CONSENT_SCAN_SETTLE_SECONDS=3.0, CONSENT_SCAN_PAGE_TIMEOUT=15)
        yield ScanEnv(app=server, site=tracking)
    finally:
        tracking.stop()
        server.stop()
