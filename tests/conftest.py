"""Fixtures: the app on SQLite (default) or a real PostgreSQL (CONSENT_TEST_DB=postgresql).

The schema comes from the Alembic migrations, built once per run (per xdist worker) into
a template that each test copies, so every test starts from an empty, migrated database.
Tests that use a database are marked `db`, found by their fixtures. Tests of behaviour that
differs between the backends are marked `backend` (the modules in BACKEND_MODULES, or
`@pytest.mark.backend` on a test): `make test` runs those on both backends and everything
else once, on SQLite (see the Makefile and docs/testing.md for the rule).
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
from tests.support.servers import SharedAppServer

pytest_plugins = ["tests.support.browser", "tests.support.clock", "tests.support.outbox"]

_counter = itertools.count()

# Test modules whose subject behaves differently on PostgreSQL than on SQLite, so they run
# on both (docs/testing.md, "Which tests run on PostgreSQL"): the ledger and its hot
# append, durability and concurrency, the Merkle log, the outbox and its workers (row
# locks, SKIP LOCKED), retention purges, migrations and the schema, the audit export, SQL
# written per dialect (rawsql, upserts), and each JSON API surface once.
BACKEND_MODULES = frozenset({
    # the ledger, the write path, durability and concurrency
    "tests/test_ledger.py", "tests/test_write_path.py", "tests/test_durability.py",
    "tests/test_decisions_api.py", "tests/security/test_idempotency_scope.py",
    # the Merkle log over the ledger (log tables, signer state, leases)
    "tests/test_tlog_log.py", "tests/test_tlog_integrator.py", "tests/test_tlog_signer_state.py",
    "tests/test_tlog_export.py", "tests/test_tlog_retention.py", "tests/test_tlog_attack.py",
    "tests/test_tlog_visitor_receipts.py", "tests/test_tlog_keys.py",
    # what each widget decision was shown (append-only notices: triggers and an upsert
    # per dialect)
    "tests/test_notices.py",
    # the outbox and its workers, the scan queue (row locks, SKIP LOCKED)
    "tests/test_outbox.py", "tests/test_outbox_workers.py", "tests/scanner/test_scan_schedule.py",
    # retention purges, migrations and the schema (init-db, models vs migrations)
    "tests/test_retention.py", "tests/test_cli.py", "tests/test_config.py",
    # the audit export (a query per dialect, streaming) and its deliveries
    "tests/test_audit_export.py", "tests/test_audit_deliveries.py",
    "tests/security/test_sec_csv_cells.py",
    # per-dialect upserts (channels, refusals, identity links)
    "tests/test_channels_api.py", "tests/test_refusals.py", "tests/test_preferences_login.py",
    # the JSON API surfaces, once each
    "tests/test_server_api.py", "tests/test_openapi_conformance.py",
})


def _module_path(item) -> str:
    return os.path.relpath(str(item.path), _ROOT).replace(os.sep, "/")


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_report_header(config):
    return f"consent test database backend: {BACKEND}"


def pytest_addoption(parser):
    parser.addoption("--reverse-order", action="store_true",
                     help="run the tests in reverse order (they must not depend on it)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "browser" in fixtures:
            # Anything that drives Chromium is a browser test, marked or not: it runs once,
            # in the browser suite, not in the in-process suites.
            item.add_marker(pytest.mark.browser)
        uses_db = {"database_url", "pg_cluster"} & fixtures
        if uses_db:
            item.add_marker(pytest.mark.db)
        if uses_db and _module_path(item) in BACKEND_MODULES:
            item.add_marker(pytest.mark.backend)
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


def _fresh_database(template_db, pg_cluster, tmp_path):
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
def database_url(template_db, pg_cluster, tmp_path):
    """A fresh database for one test."""
    yield from _fresh_database(template_db, pg_cluster, tmp_path)


@pytest.fixture(scope="session")
def shared_app_server(template_db, tmp_path_factory):
    """The test process's gunicorn for browser and end-to-end tests (SQLite runs; None on
    PostgreSQL): see SharedAppServer in tests/support/servers.py."""
    if BACKEND != "sqlite":
        yield None
        return
    shared = SharedAppServer(template_db, tmp_path_factory.mktemp("shared-server"))
    yield shared
    shared.stop()


@pytest.fixture
def shared_database_url(shared_app_server, template_db, pg_cluster, tmp_path):
    """A fresh, empty database for one test: on SQLite the shared server's file (emptied
    for this test), which `shared_app_server.app()` serves; else as `database_url`."""
    if shared_app_server is None:
        yield from _fresh_database(template_db, pg_cluster, tmp_path)
    else:
        yield shared_app_server.fresh()


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
