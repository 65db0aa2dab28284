"""The set-up commands as `make db` and the README run them: `flask --app app consent ...`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from consent import create_app
from consent.extensions import db
from consent.profiles import list_profiles
from consent.sites import Site
from tests.support.api import bearer
from tests.support.db import BACKEND

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def empty_database_url(pg_cluster, tmp_path):
    """A database with nothing in it (not even the schema)."""
    if BACKEND == "postgresql":
        name = f"empty_{os.getpid()}"
        pg_cluster.sql(f"CREATE DATABASE {name}")
        yield pg_cluster.url(name)
        pg_cluster.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        yield f"sqlite:///{tmp_path / 'new.sqlite3'}"


def flask(database_url: str, *args: str) -> subprocess.CompletedProcess:
    """Run `flask --app app consent ARGS` in a subprocess on DATABASE_URL."""
    env = {**os.environ, "CONSENT_DATABASE_URL": database_url, "CONSENT_ENV": "testing"}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "consent", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_init_db_and_seed_demo_set_up_a_working_site(empty_database_url):
    url = empty_database_url
    done = flask(url, "init-db")
    assert done.returncode == 0, done.stderr
    assert "latest schema" in done.stdout
    origins = ["http://127.0.0.1:5077", "http://localhost:5077"]
    seeded = flask(url, "seed-demo", "--origin", origins[0], "--origin", origins[1])
    assert seeded.returncode == 0, seeded.stderr
    api_key = seeded.stdout.split("API key (shown once): ")[1].split()[0]
    again = flask(url, "seed-demo", "--origin", origins[1])
    assert again.returncode == 0 and "already exists" in again.stdout
    assert flask(url, "init-db").returncode == 0  # running it twice is harmless

    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        try:
            site = db.session.execute(sa.select(Site).where(Site.key == "demo")).scalar_one()
            assert site.allowed_origins == origins  # the --origin given, not the default
            client = app.test_client()
            # the widget of a page on that origin may record; another origin may not
            ok = client.post("/api/v1/sites/demo/decisions", json={"action": "reject_all"},
                             headers={"Origin": origins[1]})
            assert ok.status_code == 201
            assert ok.headers["Access-Control-Allow-Origin"] == origins[1]
            other = client.post("/api/v1/sites/demo/decisions", json={"action": "reject_all"},
                                headers={"Origin": "http://127.0.0.1:5000"})
            assert other.status_code == 403
            subject = ok.get_json()["subject"]
            # the printed API key is the site's
            r = client.get(f"/api/v1/sites/demo/subjects/{subject}", headers=bearer(api_key))
            assert r.status_code == 200
        finally:
            db.session.remove()
            db.engine.dispose()


def test_create_api_key_issues_a_working_key(client, runner, site):
    r = runner.invoke(args=["consent", "create-api-key", site["key"], "--name", "crm"])
    assert r.exit_code == 0, r.output
    token = r.output.strip()
    assert token.startswith("ck_") and token != site["api_key"]
    subject = client.post(f"/api/v1/sites/{site['key']}/decisions",
                          json={"action": "reject_all"}).get_json()["subject"]
    url = f"/api/v1/sites/{site['key']}/subjects/{subject}"
    assert client.get(url, headers=bearer(token)).status_code == 200
    assert client.get(url, headers=bearer(token + "x")).status_code == 401
    missing = runner.invoke(args=["consent", "create-api-key", "nope"])
    assert missing.exit_code != 0 and "nope" in missing.output


def test_list_profiles_names_every_profile(runner):
    r = runner.invoke(args=["consent", "list-profiles"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == [p.name for p in list_profiles()]
    for line, profile in zip(lines, list_profiles()):
        assert f" {profile.seed[:3]} " in line and profile.site_name in line
        assert f"{len(profile.promises)} promises" in line


def test_init_db_of_a_new_development_database_sets_the_old_signer_memory_aside(
        empty_database_url, tmp_path):
    """Deleting instance/consent.sqlite3 and running `make run` again must give a working
    log, not a signer that refuses the new database as if it were a rewrite of the old."""
    state = tmp_path / "log-state"
    state.mkdir()
    stale = state / "consent.local_demo.json"
    stale.write_text('{"origin": "consent.local/demo", "note": "of the old database"}')

    def init_db(mode: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "CONSENT_DATABASE_URL": empty_database_url, "CONSENT_ENV": mode,
               "CONSENT_LOG_STATE_DIR": str(state)}
        return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "consent",
                               "init-db"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    done = init_db("development")
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    [aside] = tmp_path.glob("log-state.set-aside-*")
    assert (aside / stale.name).read_text().endswith("of the old database\"}")
    assert "moved to" in done.stdout and str(aside) in done.stdout
    # an existing database keeps its signer's memory, whatever the mode
    stale.write_text('{"origin": "consent.local/demo", "note": "of this database"}')
    again = init_db("development")
    assert again.returncode == 0 and "moved" not in again.stdout and stale.exists()


def test_init_db_outside_development_keeps_the_signer_memory(empty_database_url, tmp_path):
    state = tmp_path / "log-state"
    state.mkdir()
    kept = state / "consent.local_shop.json"
    kept.write_text("{}")
    env = {**os.environ, "CONSENT_DATABASE_URL": empty_database_url, "CONSENT_ENV": "testing",
           "CONSENT_LOG_STATE_DIR": str(state)}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "consent", "init-db"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert kept.exists() and "moved" not in done.stdout
