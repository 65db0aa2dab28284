"""Fixtures of the security tests: the app in development and in production mode.

Import what a test module needs (`from tests.security.sec_fixtures import ...`); kept out
of a conftest.py so that other suites in this package can bring their own.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from consent import create_app
from consent.database import run_write
from consent.extensions import db
from consent.sites import create_api_key, create_site, invalidate_site_cache

PUBLIC_URL = "https://consent.example"
PROD_SECRET = "p" * 48
DATA_KEY = "d" * 44
SIGNING_KEY = "5e" * 32
SHOP = "https://shop.example"


def production_config(database_url: str, **extra) -> dict:
    """What a production deployment sets (long secret, data key, public URL)."""
    return {"ENV_NAME": "production", "SECRET_KEY": PROD_SECRET,
            "CONSENT_DATA_KEY": DATA_KEY, "CONSENT_PUBLIC_URL": PUBLIC_URL,
            "CONSENT_SIGNING_KEY": SIGNING_KEY,
            "SQLALCHEMY_DATABASE_URI": database_url, **extra}


def development_config(database_url: str, **extra) -> dict:
    """A development app on the test database."""
    return {"ENV_NAME": "development", "SQLALCHEMY_DATABASE_URI": database_url, **extra}


def build_app(mode: str, database_url: str, **extra):
    """An app in MODE ("development" or "production") on DATABASE_URL."""
    from consent.outbox import invalidate_endpoint_cache

    invalidate_site_cache()
    invalidate_endpoint_cache()
    # No per-process caches across tests (each test has a fresh database).
    extra.setdefault("CONSENT_SITE_CACHE_SECONDS", 0)
    # Tests integrate the log explicitly: a background integrator (every 10 s in these
    # modes) would outlive this test's database, and the PostgreSQL cluster at the end.
    extra.setdefault("CONSENT_LOG_INTEGRATE_SECONDS", 0)
    # The log signer's memory belongs to this test's database, not to instance/ (where the
    # apps of every test, all with a site 'shop', would share one).
    extra.setdefault("CONSENT_LOG_STATE_DIR", str(
        Path(tempfile.gettempdir()) / "consent-test-log-state"
        / hashlib.sha256(database_url.encode()).hexdigest()[:16]))
    config = (production_config if mode == "production" else development_config)(
        database_url, **extra)
    return create_app(config)


def base_url(mode: str) -> str:
    """Where a test client talks to the app of MODE (production: only its public URL)."""
    return PUBLIC_URL if mode == "production" else "http://localhost"


class BaseUrlClient(FlaskClient):
    """A test client whose requests go to one base URL (scheme and host)."""

    base_url = "http://localhost"

    def open(self, *args, **kwargs):
        if not (args and not isinstance(args[0], str)):
            kwargs.setdefault("base_url", self.base_url)
        return super().open(*args, **kwargs)

    def session_transaction(self, *args, **kwargs):
        kwargs.setdefault("base_url", self.base_url)
        return super().session_transaction(*args, **kwargs)


def client_for(app, mode: str):
    """A test client of APP that talks to the URL the app is served at in MODE."""
    app.test_client_class = type("ModeClient", (BaseUrlClient,), {"base_url": base_url(mode)})
    return app.test_client()


@pytest.fixture(params=["development", "production"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def mode_app(mode, database_url):
    """The app in development and in production mode, inside an app context."""
    app = build_app(mode, database_url)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
    invalidate_site_cache()


@pytest.fixture
def mode_client(mode_app, mode):
    return client_for(mode_app, mode)


@pytest.fixture
def mode_site(mode_app):
    """A site 'shop' with the standard categories, a policy and an API key."""
    from consent.demo_data import DEMO_SERVICES
    from consent.policies import publish_policy

    def write():
        s = create_site("shop", "Example shop", allowed_origins=[SHOP],
                        categories=[{"key": k, "services": v} for k, v in DEMO_SERVICES.items()])
        publish_policy(s.id, "2026-01", text="Policy text v1", material=True)
        return s.key, create_api_key(s)

    key, token = run_write(write)
    return {"key": key, "api_key": token, "origin": SHOP}
