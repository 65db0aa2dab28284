"""End-to-end fixtures for the site profiles: a fresh database, the profile loaded into it
with `flask consent load-profile`, the app under gunicorn (on SQLite the test process's
shared one, tests/support/servers.py), the customer's pages on another origin, and real
Chromium (`browser`, `context`, `page` from tests/support/browser.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from consent.database import run_write, utcnow
from consent.extensions import db
from consent.policies import PolicyVersion
from consent.profiles import Profile, get_profile
from tests.support import api
from tests.support.servers import AppServer
from tests.support.sites import ServedSite, serve_pages

# Tags a customer page carries per category: what they do is visible to the tests (they
# push their name to window.ran, some set the first-party cookies of the real tools).
TAG_BODIES = {
    "analytics": "document.cookie = '_ga=GA1.1.42.1; path=/'; document.cookie = '_gid=GA1.1.7; path=/';",
    "advertising": "document.cookie = '_gcl_au=1.1.9; path=/'; document.cookie = 'li_fat_id=abc; path=/';",
}


@dataclass
class ProfileEnv(ServedSite):
    """A profile loaded into a fresh database, served by gunicorn, embedded on a site."""

    profile: Profile | None = None
    site_key: str = ""
    api_key: str = ""

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

    def erase(self, **who) -> dict:
        """Carry out an erasure request for WHO over HTTP, as the DPO's token would."""
        from tests.support.admin import make_token

        auth = {"Authorization": f"Bearer {make_token(['requests:write'], self.site_key)}"}
        base = f"{self.app_url}/api/v1/audit/sites/{self.site_key}/requests"
        opened = requests.post(base, json={"kind": "erasure", **who}, headers=auth, timeout=30)
        assert opened.status_code == 201, opened.text
        done = requests.post(f"{base}/{opened.json()['id']}/erase", headers=auth, timeout=30)
        assert done.status_code == 200, done.text
        return done.json()

    def assert_suppressed(self, channel: str, **who) -> None:
        """After an erasure, "may I send?" still refuses promotions to WHO."""
        answer = self.may_i_send(channel, "promotional", **who)
        assert (answer["allowed"], answer["reason"]) == (False, "suppressed"), (channel, who)
        assert self.may_i_send(channel, "transactional", **who)["allowed"] is True

    def may_i_send(self, channel: str, kind: str, **who) -> dict:
        """Ask the running app "may I send?" as the site's backend."""
        return api.may_i_send(self.http, {"key": self.site_key, "api_key": self.api_key},
                              channel, kind, **who)


@pytest.fixture
def database_url(shared_database_url):
    """This test's fresh database: on SQLite the file of the test process's shared server
    (tests/conftest.py), emptied for this test."""
    return shared_database_url


@pytest.fixture
def load_env(app, runner, database_url, tmp_path, shared_app_server):
    """Load a profile with the CLI into this test's fresh database and serve it."""
    made: list[ProfileEnv] = []

    def make(name: str) -> ProfileEnv:
        profile = get_profile(name)
        root = tmp_path / "site"
        static = serve_pages(root)
        result = runner.invoke(args=["consent", "load-profile", name, "--origin", static.url])
        assert result.exit_code == 0, result.output
        api_key = result.output.split("API key (shown once): ")[1].split()[0]
        # A version applies from the second after its publication (a choice made within
        # that second counts as made before it, by design: consent/widget_config.py), and a
        # running server answers the first visit at once: date the profile's publication a
        # minute back, as the browser tests' site does, or a visitor who chooses in that
        # second is asked again on the next page.
        back = utcnow() - timedelta(minutes=1)

        def backdate() -> None:
            for version in db.session.execute(sa.select(PolicyVersion)).scalars():
                version.published_at = back
                version.effective_at = min(version.effective_at, back)

        run_write(backdate)
        try:
            server = (shared_app_server.app() if shared_app_server is not None
                      else AppServer(database_url, workers=1, threads=4))
        except BaseException:
            static.stop()
            raise
        env = ProfileEnv(app=server, site=static, root=root, origins=[static.url],
                         profile=profile, site_key=profile.site_key, api_key=api_key)
        env.render()
        made.append(env)
        return env

    yield make
    for env in made:
        if not env.app.shared:
            env.app.stop()
        env.site.stop()
