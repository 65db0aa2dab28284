"""`GET /healthz` and `flask consent check-log`: a log that stops growing is noticed.

The log integrator runs in one elected web process (or from cron). Anyone who can hold
the election's lock (a database user, a stuck process), a cron job that stopped, or a
stream the integrator refused leaves committed events without log indexes: receipts stay
pending and checkpoints stop moving, while decisions are still recorded. These tests hold
the election from outside, as such a user would, and check that the health endpoint and
the command say so, and stop saying so once the integrator runs again.
"""
from __future__ import annotations

import fcntl
import os

import pytest

from consent import create_app
from consent.extensions import db
from consent.ledger.log import ELECTION_NS, integrate, log_backlog
from consent.sites import invalidate_site_cache
from tests.support.api import decide
from tests.support.waits import poll


def health(client) -> dict:
    r = client.get("/healthz")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"
    return r.get_json()


@pytest.mark.backend
def test_health_counts_events_not_yet_in_the_log(app, client, site, runner):
    assert health(client) == {"status": "ok", "database": "ok", "log": {
        "status": "ok", "oldest_pending_seconds": None, "max_lag_seconds": 600.0}}
    for _ in range(3):
        decide(client, site["key"], "accept_all")
    now = health(client)
    assert now["status"] == "ok"  # young: the integrator has time
    assert 0 <= now["log"]["oldest_pending_seconds"] < 600
    assert "pending_events" not in now["log"]  # (no traffic figures without credentials)
    result = runner.invoke(args=["consent", "check-log"])
    assert result.exit_code == 0, result.output
    assert "site shop: 3 events not yet in the log" in result.output

    app.config["CONSENT_LOG_MAX_LAG_SECONDS"] = 0.0
    behind = health(client)
    assert (behind["status"], behind["log"]["status"]) == ("log_behind", "behind")
    result = runner.invoke(args=["consent", "check-log"])
    assert result.exit_code == 1
    assert "LOG BEHIND" in result.output

    integrate()
    db.session.commit()
    assert health(client)["log"] == {"status": "ok", "oldest_pending_seconds": None,
                                     "max_lag_seconds": 0.0}
    assert runner.invoke(args=["consent", "check-log"]).exit_code == 0


def web_backlog(app):
    with app.app_context():
        try:
            return log_backlog()
        finally:
            db.session.remove()


class ElectionHeld:
    """The integrator's election, held from outside the web processes (a database user
    on PostgreSQL, another file descriptor on SQLite's lock file)."""

    def __init__(self, database_url: str):
        self.url = database_url

    def __enter__(self):
        if self.url.startswith("postgresql"):
            import psycopg
            from sqlalchemy.engine import make_url

            u = make_url(self.url)
            self.conn = psycopg.connect(host=u.host, port=u.port, user=u.username,
                                        dbname=u.database, autocommit=True)
            self.conn.execute("SELECT pg_advisory_lock(%s, 0)", (ELECTION_NS,))
        else:
            path = os.path.abspath(self.url.removeprefix("sqlite:///")) + ".integrator-lock"
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc):
        if self.url.startswith("postgresql"):
            self.conn.close()  # the server frees the session's lock
        else:
            os.close(self.fd)


def web_app(database_url, **config):
    invalidate_site_cache()
    return create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url,
                       "SERVER_NAME": None, **config})


@pytest.mark.backend
def test_a_log_nobody_integrates_shows_as_behind(database_url, site):
    """Integration left to cron (CONSENT_LOG_INTEGRATE_SECONDS 0), and cron not running:
    /healthz says so once the oldest event is older than the limit."""
    web = web_app(database_url, CONSENT_LOG_INTEGRATE_SECONDS=0,
                  CONSENT_LOG_MAX_LAG_SECONDS=1.0)
    client = web.test_client()
    try:
        for _ in range(4):
            decide(client, site["key"], "reject_all")
        behind = poll(lambda: health(client), lambda h: h["status"] == "log_behind",
                      timeout=30, message=lambda h: f"never behind: {h}")
        assert behind["log"]["oldest_pending_seconds"] > 1.0
        assert [(b.site_key, b.events) for b in web_backlog(web)] == [("shop", 4)]
        result = web.test_cli_runner().invoke(args=["consent", "integrate"])
        assert result.exit_code == 0, result.output
        assert health(client)["status"] == "ok"
        assert web_backlog(web) == []
    finally:
        with web.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.backend
def test_a_held_election_does_not_stop_the_log(database_url, site, caplog):
    """Whoever holds the integrator's election (a database user on PostgreSQL, a stuck
    process on SQLite) may not integrate: once the log is half its limit behind, a web
    process that lost the election integrates anyway."""
    web = web_app(database_url, CONSENT_LOG_INTEGRATE_SECONDS=0.2,
                  CONSENT_LOG_MAX_LAG_SECONDS=2.0)
    client = web.test_client()
    try:
        with ElectionHeld(database_url):
            for _ in range(4):  # (each request also starts this process's integrator)
                decide(client, site["key"], "reject_all")
            poll(lambda: web_backlog(web), lambda b: b == [], timeout=30,
                 message=lambda b: f"never integrated while the election was held: {b}")
            assert health(client)["status"] == "ok"
        assert "integrating from this one" in caplog.text
    finally:
        with web.app_context():
            db.session.remove()
            db.engine.dispose()


def test_an_unreachable_database_is_a_503(tmp_path):
    app = create_app({"ENV_NAME": "testing", "SERVER_NAME": None,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing/dir/x.db"})
    r = app.test_client().get("/healthz")
    assert r.status_code == 503
    assert r.get_json() == {"status": "database_unavailable", "database": "unavailable",
                            "log": None}


def test_the_dashboard_says_when_the_sites_log_is_behind(app, client, site, other_site, admin):
    from consent.ledger.log import integrate

    decide(client, site["key"], "accept_all")
    decide(client, site["key"], "reject_all")
    page = admin.get(f"/admin/sites/{site['key']}/").get_data(as_text=True)
    assert 'id="log-behind"' not in page  # within the limit
    app.config["CONSENT_LOG_MAX_LAG_SECONDS"] = 0.0
    page = admin.get(f"/admin/sites/{site['key']}/").get_data(as_text=True)
    assert 'id="log-behind"' in page
    assert "2 event(s) of this site are recorded but not yet in its log" in page
    # another site's dashboard: its own log is complete
    other = admin.get(f"/admin/sites/{other_site['key']}/").get_data(as_text=True)
    assert 'id="log-behind"' not in other
    integrate()
    db.session.commit()
    page = admin.get(f"/admin/sites/{site['key']}/").get_data(as_text=True)
    assert 'id="log-behind"' not in page
