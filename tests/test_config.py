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
