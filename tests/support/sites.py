"""A customer's site for the browser tests: its pages on one loopback origin, the consent
app under gunicorn on another, and the test's database behind the app."""
from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import db as testdb
from .browser import NONCE, SiteHandler
from .servers import AppServer, HttpClient, StaticSite
from .waits import wait_recorded

PAGES = Path(__file__).resolve().parents[1] / "browser" / "pages"
SITE_KEY = "shop"


def serve_pages(root: Path, *, tls: bool = False) -> StaticSite:
    """Copy the test pages to ROOT and serve them (headers per path: `extra_headers`)."""
    shutil.copytree(PAGES, root)
    static = StaticSite(root, tls=tls)
    static.server.extra_headers = {}
    static.server.RequestHandlerClass = functools.partial(SiteHandler, directory=str(root))
    return static


@dataclass
class ServedSite:
    """The consent app (gunicorn), the customer's static site, and the ledger behind them."""

    app: AppServer
    site: StaticSite
    root: Path
    origins: list = field(default_factory=list)

    @property
    def app_url(self) -> str:
        return self.app.url

    def url(self, page: str = "index.html", host: str | None = None) -> str:
        scheme = self.site.url.split("://")[0]
        base = self.site.url if host is None else f"{scheme}://{host}:{self.site.port}"
        return f"{base}/{page}"

    @property
    def http(self) -> HttpClient:
        """A client of the running app with the Flask test client's interface."""
        return self.app.client()

    def local(self, url: str) -> str:
        """An absolute URL the app minted (links in messages), pointed at this server."""
        parts = urlsplit(url)
        return f"{self.app_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def events(self, action: str | None = None) -> list:
        """Events recorded so far (read through a fresh transaction)."""
        return testdb.events(action)

    def wait_events(self, count: int, action: str | None = None, timeout: float = 15) -> list:
        """Wait until COUNT events (of ACTION) are recorded; returns them; fails on timeout."""
        return wait_recorded(self, count, action, timeout)


@dataclass
class WidgetEnv(ServedSite):
    """The widget tests' setup: site 'shop' on tests/browser/pages, with an access log."""

    access_log: Path | None = None
    access_log_from: int = 0  # where this test's requests start in it (a shared server's)
    site_key: str = SITE_KEY

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

    def server_requests(self, quiet: float = 0.2, timeout: float = 10) -> list[str]:
        """Access-log lines of every request that reached the consent app so far, read once
        no line was added for QUIET seconds (gunicorn logs a request after it has answered
        it, so a line can come after the browser has the answer)."""
        def lines() -> list[str]:
            with self.access_log.open("rb") as log:
                log.seek(self.access_log_from)
                text = log.read().decode()
            return [line for line in text.splitlines() if line.strip()]
        seen, deadline = lines(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(quiet)
            again = lines()
            if len(again) == len(seen):
                break
            seen = again
        return seen
