"""Settings: production refuses weak secrets; the schema matches the migrations."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from consent import create_app
from consent.extensions import db


def test_production_refuses_default_secret(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"ENV_NAME": "production", "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"ENV_NAME": "production", "SECRET_KEY": "short",
                    "SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_production_starts_with_a_real_secret():
    app = create_app({"ENV_NAME": "production", "SECRET_KEY": "x" * 48,
                      "CONSENT_SIGNING_KEY": "ab" * 32,
                      "CONSENT_DATA_KEY": "k" * 40, "CONSENT_PUBLIC_URL": "https://c.example",
                      "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_environment_selects_database(monkeypatch, tmp_path):
    import importlib
    import config as config_module

    url = f"sqlite:///{tmp_path}/x.sqlite3"
    monkeypatch.setenv("CONSENT_DATABASE_URL", url)
    importlib.reload(config_module)
    try:
        assert config_module.config_for("development").SQLALCHEMY_DATABASE_URI == url
    finally:
        monkeypatch.delenv("CONSENT_DATABASE_URL")
        importlib.reload(config_module)


def test_migrations_match_the_models(app):
    """Every model change has its migration: nothing left for autogenerate to add."""
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                db.metadata)
    assert diff == []


def _reloaded_config(monkeypatch, **env):
    import importlib
    import config as config_module

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        return importlib.reload(config_module).config_for("development")
    finally:
        for name in env:
            monkeypatch.delenv(name)
        importlib.reload(config_module)


def test_sqlite_tuning_comes_from_the_environment(monkeypatch, tmp_path):
    settings = _reloaded_config(monkeypatch, CONSENT_SQLITE_PAGE_SIZE="4096",
                                CONSENT_SQLITE_CHECKPOINT_SECONDS="0.5",
                                CONSENT_SQLITE_WAL_RESTART_BYTES="8388608")
    assert (settings.CONSENT_SQLITE_PAGE_SIZE, settings.CONSENT_SQLITE_CHECKPOINT_SECONDS,
            settings.CONSENT_SQLITE_WAL_RESTART_BYTES) == (4096, 0.5, 8388608)
    # and a new database gets that page size
    app = create_app({"ENV_NAME": "testing", "CONSENT_SQLITE_PAGE_SIZE": 4096,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/p.sqlite3"})
    with app.app_context():
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 4096


@pytest.mark.parametrize("name, value", [
    ("CONSENT_SQLITE_PAGE_SIZE", "3000"),        # not a power of two
    ("CONSENT_SQLITE_PAGE_SIZE", "131072"),      # above SQLite's largest page
    ("CONSENT_SQLITE_CHECKPOINT_SECONDS", "0"),  # would spin
    ("CONSENT_SQLITE_CHECKPOINT_SECONDS", "soon"),
    ("CONSENT_SQLITE_WAL_RESTART_BYTES", "100"),
    ("CONSENT_SQLITE_BUSY_TIMEOUT", "-1"),
    ("CONSENT_MAX_BODY_BYTES", "lots"),
])
def test_bad_numeric_settings_stop_start_up_naming_the_variable(monkeypatch, name, value):
    with pytest.raises(RuntimeError, match=name):
        _reloaded_config(monkeypatch, **{name: value})
