"""The test database: which backend a run uses, the migrated schema, reading the ledger."""
from __future__ import annotations

import os

import sqlalchemy as sa

BACKEND = os.environ.get("CONSENT_TEST_DB", "sqlite")


def migrate(url: str) -> None:
    """Build the schema at URL from the Alembic migrations (every head)."""
    from flask_migrate import upgrade

    from consent import create_app
    from consent.extensions import db

    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(revision="heads")
        db.engine.dispose()


def events(action: str | None = None) -> list:
    """Consent events recorded so far, oldest first (read in a fresh transaction, so what a
    server process committed meanwhile is seen)."""
    from consent.extensions import db
    from consent.ledger import ConsentEvent

    db.session.rollback()
    query = db.select(ConsentEvent).order_by(ConsentEvent.id)
    if action:
        query = query.where(ConsentEvent.action == action)
    return list(db.session.execute(query).scalars())


def count_events() -> int:
    """How many consent events the ledger holds (in the test's current transaction)."""
    from consent.extensions import db
    from consent.ledger import ConsentEvent

    return db.session.execute(sa.select(sa.func.count()).select_from(ConsentEvent)).scalar()


def ledger_ids(database_url: str) -> set[str]:
    """The event ids stored at DATABASE_URL; fails unless that ledger verifies."""
    from consent import create_app
    from consent.extensions import db
    from consent.ledger import ConsentEvent, verify_ledger

    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        ids = set(db.session.execute(sa.select(ConsentEvent.event_id)).scalars())
        report = verify_ledger()
        db.engine.dispose()
    assert report.ok, [str(p) for p in report.problems]
    return ids
