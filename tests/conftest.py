"""Fixtures: the app on SQLite (default) or a real PostgreSQL (CONSENT_TEST_DB=postgresql).

The schema comes from the Alembic migrations, built once per run (per xdist worker) into
a template that each test copies, so every test starts from an empty, migrated database.
Tests that use a database are marked `db`, found by their fixtures: `make test` runs those
on both backends and the rest, and the browser tests, once (see the Makefile).
"""
from __future__ import annotations

import itertools
import os
import shutil

import pytest

from consent import create_app
from consent.database import run_write
from consent.extensions import db
from consent.sites import create_api_key, create_site, invalidate_site_cache
from tests.support.admin import admin_client
from tests.support.db import BACKEND, migrate
from tests.support.pg import PgCluster

pytest_plugins = ["tests.support.browser", "tests.support.clock", "tests.support.outbox"]

_counter = itertools.count()


def pytest_report_header(config):
    return f"consent test database backend: {BACKEND}"


def pytest_addoption(parser):
    parser.addoption("--reverse-order", action="store_true",
                     help="run the tests in reverse order (they must not depend on it)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if {"database_url", "pg_cluster"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)
    if config.getoption("--reverse-order"):
        items.reverse()


@pytest.fixture(scope="session")
def pg_cluster():
    if BACKEND != "postgresql":
        yield None
        return
    cluster = PgCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def template_db(pg_cluster, tmp_path_factory):
    """A migrated, empty database to copy for each test."""
    if BACKEND == "postgresql":
        pg_cluster.sql("CREATE DATABASE consent_template")
        migrate(pg_cluster.url("consent_template"))
        return "consent_template"
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(template_db, pg_cluster, tmp_path):
    """A fresh database for one test."""
    if BACKEND == "postgresql":
        name = f"t{os.getpid()}_{next(_counter)}"
        pg_cluster.sql(f"CREATE DATABASE {name} TEMPLATE {template_db}")
        yield pg_cluster.url(name)
        pg_cluster.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        path = tmp_path / "consent.sqlite3"
        shutil.copy(template_db, path)
        yield f"sqlite:///{path}"


@pytest.fixture
def app(database_url):
    invalidate_site_cache()
    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url,
                      "SERVER_NAME": None})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
    invalidate_site_cache()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


SHOP_ORIGIN = "https://shop.example"


@pytest.fixture
def site(app):
    """A site 'shop' with the four standard categories, a policy and an API key."""
    from consent.demo_data import DEMO_SERVICES
    from consent.policies import publish_policy

    def write():
        s = create_site("shop", "Example shop", allowed_origins=[SHOP_ORIGIN],
                        categories=[{"key": k, "services": v} for k, v in DEMO_SERVICES.items()])
        publish_policy(s.id, "2026-01", text="Policy text v1", material=True)
        return s.key, create_api_key(s)

    key, token = run_write(write)
    return {"key": key, "api_key": token, "origin": SHOP_ORIGIN}


@pytest.fixture
def other_site(app):
    """A second site with its own API key."""
    def write():
        s = create_site("other", "Other site", allowed_origins=["https://other.example"])
        return s.key, create_api_key(s)

    key, token = run_write(write)
    return {"key": key, "api_key": token, "origin": "https://other.example"}


@pytest.fixture
def admin(app):
    """A client signed in with every permission."""
    return admin_client(app, ("admin",), "root@example.com")
