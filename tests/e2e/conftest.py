"""End-to-end fixtures for the site profiles: a fresh database, the profile loaded into it
with `flask consent load-profile`, the app under gunicorn, the customer's pages on another
origin, and real Chromium (the widget fixtures of tests/browser are reused).
"""
from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.profiles import Profile, get_profile
from tests.browser.conftest import CHROMIUM_ARGS, Console, SiteHandler, new_context
from tests.support.servers import AppServer, StaticSite

PAGES = Path(__file__).resolve().parents[1] / "browser" / "pages"

# Tags a customer page carries per category: what they do is visible to the tests (they
# push their name to window.ran, some set the first-party cookies of the real tools).
TAG_BODIES = {
    "analytics": "document.cookie = '_ga=GA1.1.42.1; path=/'; document.cookie = '_gid=GA1.1.7; path=/';",
    "advertising": "document.cookie = '_gcl_au=1.1.9; path=/'; document.cookie = 'li_fat_id=abc; path=/';",
}


@pytest.fixture(scope="session")
def browser(request):
    """Headless Chromium. One sync Playwright can run per process: when the widget tests'
    session browser is already running (same test run), it is shared."""
    shared = _running_browser(request)
    if shared is not None:
        yield shared
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _running_browser(request):
    """The `browser` of tests/browser if a test there already started it, else None."""
    manager = request.config.pluginmanager.get_plugin("funcmanage")
    own = Path(__file__).resolve().parent
    for item in request.session.items:
        if own in Path(str(item.path)).resolve().parents:
            continue
        for fixturedef in manager.getfixturedefs("browser", item) or ():
            cached = getattr(fixturedef, "cached_result", None)
            if cached is not None and cached[0] is not None:
                return cached[0]
    return None


@pytest.fixture
def context(browser):
    ctx = new_context(browser, locale="en-GB")
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    p = context.new_page()
    p.console = Console(p)
    yield p


@dataclass
class ProfileEnv:
    """A profile loaded into a fresh database, served by gunicorn, embedded on a site."""

    profile: Profile
    site_key: str
    api_key: str
    app: AppServer
    site: StaticSite
    root: Path
    origins: list = field(default_factory=list)

    @property
    def app_url(self) -> str:
        return self.app.url

    def url(self, page: str = "index.html") -> str:
        return f"{self.site.url}/{page}"

    def render(self, name: str = "index.html", *, age_check: bool = False,
               minor: bool = False, categories: list[str] | None = None) -> str:
        """Write a customer page embedding the widget, with one tag per category.

        AGE_CHECK: the site says the visitor may be a minor; MINOR: the site knows it."""
        keys = categories or [c["key"] for c in self.profile.categories if c["key"] != "essential"]
        tags = []
        for key in keys:
            body = TAG_BODIES.get(key, "")
            tags.append(f'<script type="text/plain" data-category="{key}">'
                        f"window.ran.push('{key}'); {body}</script>")
            if key == "functional":
                tags.append('<iframe title="Embedded tool" data-category="functional" '
                            'data-src="frame.html"></iframe>')
        flag = (" data-age-check" if age_check else "") + (" data-minor" if minor else "")
        (self.root / name).write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{self.profile.site_name}</title>
<script src="{self.app_url}/consent.js" data-site="{self.site_key}"{flag}></script>
<script src="probe.js"></script></head>
<body><h1>{self.profile.site_name}</h1><p>The site works without any optional cookie.</p>
<button type="button" id="site-button">Book</button>
<button type="button" data-consent-open id="open-settings">Cookie settings</button>
{chr(10).join(tags)}
</body></html>""")
        return name

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the app over HTTP as the site's backend (its API key)."""
        headers = {"Authorization": f"Bearer {self.api_key}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.app_url}/api/v1/sites/{self.site_key}{path}",
                                headers=headers, timeout=30, **kwargs)

    def local(self, url: str) -> str:
        """An absolute URL the app minted (links in messages), pointed at this server."""
        parts = urlsplit(url)
        return f"{self.app_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def events(self, action: str | None = None) -> list[ConsentEvent]:
        """Events recorded so far (read through a fresh transaction)."""
        db.session.rollback()
        query = db.select(ConsentEvent).order_by(ConsentEvent.id)
        if action:
            query = query.where(ConsentEvent.action == action)
        return list(db.session.execute(query).scalars())

    def wait_events(self, count: int, action: str | None = None,
                    timeout: float = 10) -> list[ConsentEvent]:
        """Wait until COUNT events (of ACTION) are recorded; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(action)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture
def load_env(app, runner, database_url, tmp_path):
    """Load a profile with the CLI into this test's fresh database and serve it."""
    made: list[ProfileEnv] = []

    def make(name: str) -> ProfileEnv:
        profile = get_profile(name)
        root = tmp_path / "site"
        shutil.copytree(PAGES, root)
        static = StaticSite(root)
        static.server.extra_headers = {}
        static.server.RequestHandlerClass = functools.partial(SiteHandler, directory=str(root))
        result = runner.invoke(args=["consent", "load-profile", name, "--origin", static.url])
        assert result.exit_code == 0, result.output
        api_key = result.output.split("API key (shown once): ")[1].split()[0]
        server = AppServer(database_url, workers=1, threads=4)
        env = ProfileEnv(profile=profile, site_key=profile.site_key, api_key=api_key,
                         app=server, site=static, root=root, origins=[static.url])
        env.render()
        made.append(env)
        return env

    yield make
    for env in made:
        env.app.stop()
        env.site.stop()
