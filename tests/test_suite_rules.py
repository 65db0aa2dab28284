"""The test suite's own rules: which tests run on PostgreSQL (docs/testing.md)."""
from __future__ import annotations

import os

from tests.conftest import _ROOT, BACKEND_MODULES
from tests.support.db import BACKEND


def test_every_backend_module_exists():
    # A renamed or moved module would otherwise silently stop running on PostgreSQL.
    missing = [p for p in sorted(BACKEND_MODULES) if not os.path.isfile(os.path.join(_ROOT, p))]
    assert missing == [], f"listed in BACKEND_MODULES but missing: {missing}"


def test_backend_tests_are_selected_by_their_module(request):
    # The marker comes from the module list: this module is not in it, so unmarked.
    assert request.node.get_closest_marker("backend") is None
    assert "tests/test_ledger.py" in BACKEND_MODULES


def test_every_postgresql_only_test_runs_in_the_postgresql_suite():
    # A test that skips unless the backend is PostgreSQL, outside BACKEND_MODULES and
    # without `@pytest.mark.backend`, is skipped on SQLite and never selected on
    # PostgreSQL (`-m backend`): it would never run in `make test`.
    import ast
    from pathlib import Path

    unreached = []
    for path in sorted(Path(_ROOT, "tests").rglob("test_*.py")):
        module = path.relative_to(_ROOT).as_posix()
        if module in BACKEND_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test"):
                continue
            marks = [ast.unparse(d) for d in node.decorator_list]
            if any("skipif" in m and "postgresql" in m for m in marks) and \
                    "pytest.mark.backend" not in marks:
                unreached.append(f"{module}::{node.name}")
    assert unreached == [], f"PostgreSQL-only tests no suite runs: {unreached}"


def test_forked_servers_build_the_app_from_their_own_environment(site, database_url,
                                                                template_db, pg_cluster,
                                                                tmp_path):
    # The launcher imported `config` once; each server it forks must still read its own
    # environment (database, settings), as a fresh `python -m gunicorn` would.
    import shutil

    import requests

    from tests.support.launcher import launcher
    from tests.support.servers import AppServer

    if BACKEND == "postgresql":
        pg_cluster.sql(f"CREATE DATABASE other_{os.getpid()} TEMPLATE {template_db}")
        other_url = pg_cluster.url(f"other_{os.getpid()}")
    else:
        shutil.copy(template_db, tmp_path / "other.sqlite3")
        other_url = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    # started with over 1024 descriptors open, as in a test of many concurrent clients:
    # the servers' exit is then watched through descriptors above 1024 (select() failed)
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        ours = AppServer(database_url, workers=1)
        other = AppServer(other_url, workers=1, extra_env={"CONSENT_MAX_URL_BYTES": "300"})
    finally:
        for fd in held:
            os.close(fd)
    try:
        for server in (ours, other):  # both forked by this process's launcher
            with open(f"/proc/{server.proc.pid}/stat") as stat:
                assert int(stat.read().rsplit(")", 1)[1].split()[1]) == launcher().proc.pid
        path = f"/api/v1/sites/{site['key']}/config"
        assert requests.get(ours.url + path, timeout=30).status_code == 200
        assert requests.get(other.url + path, timeout=30).status_code == 404
        long = path + "?x=" + "a" * 400
        assert requests.get(ours.url + long, timeout=30).status_code == 200
        assert requests.get(other.url + long, timeout=30).status_code == 414
    finally:
        ours.stop()
        other.stop()
        if BACKEND == "postgresql":
            pg_cluster.sql(f"DROP DATABASE other_{os.getpid()} WITH (FORCE)")


def test_make_lets_pytest_keep_its_rewritten_test_modules():
    # With PYTHONDONTWRITEBYTECODE set (as on CI), pytest would rewrite every test module
    # and its plugins' packages again in each of the nine processes of `make test`.
    import subprocess

    dry = subprocess.run(["make", "-n", "--no-print-directory", "test-sqlite",
                          "test-postgresql", "test-browser"], cwd=_ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert dry.returncode == 0, dry.stderr
    runs = [line for line in dry.stdout.splitlines() if " -m pytest " in line]
    assert len(runs) == 3, dry.stdout
    assert all("PYTHONDONTWRITEBYTECODE= " in line for line in runs), runs


def test_the_shared_server_gives_each_test_an_empty_database(template_db, tmp_path):
    # Browser tests on SQLite share one gunicorn per test process (SharedAppServer): each
    # test empties its file while the server keeps its open connections, which must then
    # read the empty database, and the signer's memory kept next to the file goes too.
    import pytest
    import requests

    from consent import create_app
    from consent.database import run_write
    from consent.extensions import db
    from consent.sites import create_site
    from tests.support import api
    from tests.support.db import count_events
    from tests.support.servers import SharedAppServer

    if BACKEND != "sqlite":
        pytest.skip("PostgreSQL runs give each test a database and server of its own")
    shared = SharedAppServer(template_db, tmp_path)
    try:
        for round_ in range(2):
            url = shared.fresh()
            server = shared.app()
            assert (url, server.url) == (shared.url, shared.app().url)  # one server
            config = f"{server.url}/api/v1/sites/shop/config"
            assert requests.get(config, timeout=30).status_code == 404  # no site yet
            assert not os.path.exists(f"{shared.path}.log-state")
            app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url})
            with app.app_context():
                assert count_events() == 0
                run_write(lambda: create_site("shop", "Shop", allowed_origins=["https://a.example"]))
                assert requests.get(config, timeout=30).status_code == 200
                api.decide(server.client(), "shop", "reject_all")
                assert count_events() == 1
                db.session.remove()
                db.engine.dispose()
            os.makedirs(f"{shared.path}.log-state")  # as the signer keeps it
        assert shared.server.proc.poll() is None
    finally:
        shared.stop()
