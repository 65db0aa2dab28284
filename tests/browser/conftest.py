"""Fixtures for the widget in real Chromium: the app under gunicorn, the site elsewhere.

Each test gets a fresh migrated database, a site whose allowed origin is a StaticSite on
another loopback port (the "customer site" serving tests/browser/pages), the consent app
under gunicorn on that database (with an access log, to count requests that reach it)
and a fresh browser context. On SQLite the gunicorn is the test process's shared one
(tests/support/servers.py, SharedAppServer), unless the test gives the app settings of
its own (`app_env`). `browser`, `context` and `page` come from
tests/support/browser.py; the helpers live in tests/support (tests/browser/helpers.py
names them for the tests here).
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from consent.database import run_write, utcnow
from consent.sites import create_site
from tests.support.browser import (CHROMIUM_ARGS, NONCE, Console, SiteHandler, Traffic,
                                   new_context, strict_csp)
from tests.support.servers import AppServer
from tests.support.sites import PAGES, SITE_KEY, WidgetEnv, serve_pages

# names earlier tests imported from here (they live in tests/support now)
__all__ = ["CHROMIUM_ARGS", "NONCE", "PAGES", "SITE_KEY", "Console", "SiteHandler", "Traffic",
           "WidgetEnv", "new_context", "strict_csp"]


@pytest.fixture
def database_url(shared_database_url):
    """This test's fresh database: on SQLite the file of the test process's shared server
    (tests/conftest.py), emptied for this test."""
    return shared_database_url


@pytest.fixture
def make_env(app, database_url, tmp_path, shared_app_server):
    """Build a WidgetEnv; ORIGINS default to the static site's own URL. HTTPS: the site's
    pages over https (a context needs `ignore_https_errors=True` to open them). APP_ENV:
    more environment for the app (e.g. CONSENT_REGION_HEADERS)."""
    made: list[WidgetEnv] = []

    def make(*, origins=None, settings=None, categories=None, policy=True,
             https=False, app_env: dict | None = None) -> WidgetEnv:
        from consent.demo_data import DEMO_SERVICES
        from consent.policies import publish_policy

        root = tmp_path / "site"
        static = serve_pages(root, tls=https)
        allowed = origins(static) if callable(origins) else [static.url]

        def write():
            specs = categories or [{"key": k, "services": v} for k, v in DEMO_SERVICES.items()]
            s = create_site(SITE_KEY, "Test shop", allowed_origins=allowed, categories=specs,
                            settings=settings or {})
            if policy:
                # in effect a minute before any visit, as a live site's policy is: choice
                # times are whole seconds, and a choice made in the second a material
                # version took effect counts as made before it (asked again, by design)
                publish_policy(s.id, "2026-01", text="Policy v1", material=True,
                               effective_at=utcnow() - timedelta(minutes=1))

        run_write(write)
        try:
            if app_env is None and shared_app_server is not None:
                # no settings of its own: the shared server, already on this database
                server = shared_app_server.app()
                log = shared_app_server.access_log
            else:
                log = tmp_path / "access.log"
                log.touch()
                server = AppServer(database_url, workers=1, threads=4, extra_env={
                    "GUNICORN_CMD_ARGS": f"--access-logfile {log}", **(app_env or {})})
        except BaseException:
            static.stop()
            raise
        env = WidgetEnv(app=server, site=static, root=root, origins=allowed, access_log=log,
                        access_log_from=log.stat().st_size)
        env.render("index.html")
        made.append(env)
        return env

    yield make
    for env in made:
        if not env.app.shared:
            env.app.stop()
        env.site.stop()


@pytest.fixture
def env(make_env) -> WidgetEnv:
    """The default setup: cross-origin site, four categories, policy 2026-01."""
    return make_env()
