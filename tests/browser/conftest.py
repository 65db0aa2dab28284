"""Fixtures for the widget in real Chromium: the app under gunicorn, the site elsewhere.

Each test gets a fresh migrated database, a site whose allowed origin is a StaticSite on
another loopback port (the "customer site" serving tests/browser/pages), the consent app
under gunicorn on that database (with an access log, to count requests that reach it)
and a fresh browser context.
"""
from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from consent.database import run_write
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.sites import create_site
from tests.support.servers import AppServer, StaticSite

PAGES = Path(__file__).resolve().parent / "pages"

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # the same-site deployment test uses real host names on loopback
                 "--host-resolver-rules=MAP *.example.test 127.0.0.1"]
NONCE = "n0nce-for-tests"
SITE_KEY = "shop"


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


@dataclass
class WidgetEnv:
    """One running setup: the consent app, the customer site and the database."""

    app: AppServer
    site: StaticSite
    root: Path
    access_log: Path
    site_key: str = SITE_KEY
    origins: list = field(default_factory=list)

    @property
    def app_url(self) -> str:
        return self.app.url

    def url(self, page: str = "index.html", host: str | None = None) -> str:
        base = self.site.url if host is None else f"http://{host}:{self.site.port}"
        return f"{base}/{page}"

    def render(self, name: str, *, lang: str = "en", app_url: str | None = None,
               site_query: str | None = None) -> str:
        """Write a page variant from pages/index.html; returns its file name.

        With SITE_QUERY the page embeds `/consent.js?site=KEY` + SITE_QUERY (the site's
        config inlined) instead of `/consent.js` with `data-site`.
        """
        (self.root / name).write_text(self.render_text(lang=lang, app_url=app_url,
                                                       site_query=site_query))
        return name

    def render_text(self, *, lang: str = "en", app_url: str | None = None,
                    site_query: str | None = None) -> str:
        """The HTML of a page variant (see render)."""
        html = (PAGES / "index.html").read_text()
        if site_query is not None:
            html = html.replace('/consent.js" data-site="{{SITE}}"',
                                '/consent.js?site={{SITE}}' + site_query + '"')
        return (html.replace("{{APP}}", app_url or self.app_url).replace("{{SITE}}", self.site_key)
                .replace("{{NONCE}}", NONCE).replace("{{LANG}}", lang))

    def serve_with_headers(self, name: str, headers: dict) -> None:
        self.site.server.extra_headers[f"/{name}"] = headers

    def server_requests(self) -> list[str]:
        """Access-log lines of every request that reached the consent app so far."""
        return [line for line in self.access_log.read_text().splitlines() if line.strip()]

    def events(self, action: str | None = None) -> list[ConsentEvent]:
        """Events recorded so far (read through a fresh transaction)."""
        db.session.rollback()
        query = db.select(ConsentEvent).order_by(ConsentEvent.id)
        if action:
            query = query.where(ConsentEvent.action == action)
        return list(db.session.execute(query).scalars())


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def make_env(app, database_url, tmp_path):
    """Build a WidgetEnv; ORIGINS default to the static site's own URL."""
    made: list[WidgetEnv] = []

    def make(*, origins=None, settings=None, categories=None, policy=True) -> WidgetEnv:
        from consent.demo_data import DEMO_SERVICES
        from consent.policies import publish_policy

        root = tmp_path / "site"
        shutil.copytree(PAGES, root)
        static = StaticSite(root)
        static.server.extra_headers = {}
        static.server.RequestHandlerClass = functools.partial(SiteHandler, directory=str(root))
        allowed = origins(static) if callable(origins) else [static.url]

        def write():
            specs = categories or [{"key": k, "services": v} for k, v in DEMO_SERVICES.items()]
            s = create_site(SITE_KEY, "Test shop", allowed_origins=allowed, categories=specs,
                            settings=settings or {})
            if policy:
                publish_policy(s.id, "2026-01", text="Policy v1", material=True)

        run_write(write)
        log = tmp_path / "access.log"
        log.touch()
        server = AppServer(database_url, workers=1, threads=4, extra_env={
            "GUNICORN_CMD_ARGS": f"--access-logfile {log}"})
        env = WidgetEnv(app=server, site=static, root=root, access_log=log, origins=allowed)
        env.render("index.html")
        made.append(env)
        return env

    yield make
    for env in made:
        env.app.stop()
        env.site.stop()


@pytest.fixture
def env(make_env) -> WidgetEnv:
    """The default setup: cross-origin site, four categories, policy 2026-01."""
    return make_env()


class Traffic:
    """Requests in flight in a browser context (see helpers.settle)."""

    def __init__(self, ctx):
        self.inflight, self.last = 0, time.monotonic()
        ctx.on("request", self._start)
        ctx.on("requestfinished", self._end)
        ctx.on("requestfailed", self._end)

    def _start(self, request):
        self.inflight += 1
        self.last = time.monotonic()

    def _end(self, request):
        self.inflight -= 1
        self.last = time.monotonic()


def new_context(browser, **options):
    """A browser context that tracks its network traffic."""
    ctx = browser.new_context(**options)
    ctx.traffic = Traffic(ctx)
    return ctx


@pytest.fixture
def context(browser):
    ctx = new_context(browser, locale="en-GB")
    yield ctx
    ctx.close()


class Console:
    """Console errors, page errors and failed requests seen by a page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(
            f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@pytest.fixture
def page(context):
    p = context.new_page()
    p.console = Console(p)
    yield p

