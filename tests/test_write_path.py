"""The hot consent write: its SQLite housekeeping and its guarantees.

The WAL test runs on its own SQLite file whatever CONSENT_TEST_DB says: it is about the
embedded store's checkpointing, which PostgreSQL does not have.
"""
from __future__ import annotations

import os

from consent import create_app
from consent.database import run_write
from consent.extensions import db
from consent.sites import create_site, invalidate_site_cache
from tests.conftest import _migrate


def test_wal_stays_bounded_under_steady_writes(tmp_path):
    """Back-to-back writes never leave a moment for a plain PASSIVE checkpoint to copy
    everything, so without the finishing step the WAL only ever grows (~50 KB a write)."""
    path = tmp_path / "wal.sqlite3"
    url = f"sqlite:///{path}"
    _migrate(url)
    invalidate_site_cache()
    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url,
                      "CONSENT_SQLITE_CHECKPOINT_SECONDS": 0.01,
                      "CONSENT_SQLITE_WAL_RESTART_BYTES": 256 * 1024})
    with app.app_context():
        run_write(lambda: create_site("walsite", "WAL test site").key)
        client = app.test_client()
        largest = 0
        for i in range(600):
            response = client.post("/api/v1/sites/walsite/decisions",
                                   json={"action": "accept_all",
                                         "client_event_id": f"wal-test-{i:04d}"})
            assert response.status_code == 201
            largest = max(largest, os.path.getsize(f"{path}-wal"))
        db.session.remove()
        db.engine.dispose()
    invalidate_site_cache()
    # 600 writes without a restart: well over 20 MB of WAL.
    assert largest < 8 * 1024 * 1024, largest
