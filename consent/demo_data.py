"""The demo site seeded by `make run`."""
from __future__ import annotations

from .extensions import db
from .policies import publish_policy
from .sites import Site, add_origins, create_api_key, create_site

DEMO_POLICY = """Demo shop privacy and cookie policy (version 1).

We use essential cookies to run the shop, functional cookies to remember your settings,
analytics cookies to understand how the shop is used, and advertising cookies to show
relevant offers. You can change your mind at any time from "Cookie settings"."""

DEMO_SERVICES = {
    "essential": [{"name": "Session", "provider": "Demo shop", "purpose": "Keeps you signed in",
                   "cookies": [{"name": "session"}, {"name": "consent"}]}],
    "functional": [{"name": "Preferences", "provider": "Demo shop",
                    "purpose": "Remembers language and region", "cookies": [{"name": "prefs"}]}],
    "analytics": [{"name": "Demo analytics", "provider": "Demo shop",
                   "purpose": "Counts visits and pages",
                   "cookies": [{"pattern": "^_da_", "path": "/"}]}],
    "advertising": [{"name": "Demo ads", "provider": "Ad partner",
                     "purpose": "Shows and measures offers", "cookies": [{"name": "_ads"}]}],
}


def seed_demo(key: str = "demo", origins: list[str] | None = None
              ) -> tuple[bool, str | None, list[str]]:
    """Create the demo site if missing, or add ORIGINS to it (so `make run PORT=...` works
    again on another port); returns (created, api_key, origins added). BadOrigin (a
    ValueError) names an origin that is not scheme://host[:port]."""
    existing = db.session.execute(db.select(Site).where(Site.key == key)).scalar_one_or_none()
    if existing is not None:
        return False, None, add_origins(existing, list(origins or []))
    site = create_site(key, "Demo shop", allowed_origins=origins or [],
                       categories=[{"key": k, "services": v} for k, v in DEMO_SERVICES.items()])
    publish_policy(site.id, "1", text=DEMO_POLICY, material=True,
                   summary="First published version.")
    return True, create_api_key(site, "demo"), list(site.allowed_origins)
