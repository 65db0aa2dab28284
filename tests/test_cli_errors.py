"""Common mistakes at the command line: one line saying what is wrong, exit status 1, no
traceback, nothing changed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from consent.extensions import db
from consent.sites import Site

ROOT = Path(__file__).resolve().parents[1]

MISTAKES = {
    "duplicate site key": (["create-site", "shop", "Another shop"], "already exists"),
    "bad site key": (["create-site", "a b", "Spaces"], "site key"),
    "duplicate category of a new site": (["create-site", "new-site", "New",
                                          "--category", "bad key"], "category key"),
    "api key of an unknown site": (["create-api-key", "nope"], "unknown site 'nope'"),
    "policy of an unknown site": (["publish-policy", "nope", "v2"], "unknown site"),
    "policy without text or URL": (["publish-policy", "shop", "v2"], "text or a URL"),
    "duplicate policy label": (["publish-policy", "shop", "2026-01", "--url",
                                "https://shop.example/privacy"], "2026-01"),
    "export to a missing directory": (["export", "-o", "/missing/dir/x.csv"],
                                      "/missing/dir does not exist"),
    "export of an unknown category": (["export", "--category", "bogus"],
                                      "unknown category 'bogus'"),
    "unknown category of a site": (["export", "--site", "shop", "--category", "bogus"],
                                   "unknown category 'bogus' for site 'shop'"),
    "since after until": (["export", "--since", "2026-03-01", "--until", "2026-01-31"],
                          "is not before --until"),
    "since that is not a date": (["export", "--since", "last tuesday"], "is not a date"),
    "export of an unknown site": (["export", "--site", "nope"], "unknown site 'nope'"),
    "verify an unknown site": (["verify", "--site", "nope"], "unknown site 'nope'"),
    "webhook of an unknown site": (["add-webhook", "nope", "https://crm.example/h"],
                                   "unknown site"),
    "webhook to a non-http URL": (["add-webhook", "shop", "ftp://crm.example/h"],
                                  "http(s) URL"),
    "retry of an unknown site": (["retry-dead", "nope"], "unknown site"),
    "unknown webhook endpoint": (["webhook-legacy-headers", "shop", "999"],
                                 "unknown endpoint '999'"),
    "unknown profile": (["load-profile", "bogus"], "unknown profile 'bogus'"),
    "purge of an unknown site": (["purge", "--site", "nope", "--yes"], "unknown site"),
    "purge with a bad date": (["purge", "--site", "shop", "--before", "soon", "--yes"],
                              "is not a date"),
    "token with an unknown scope": (["create-token", "ci", "--scope", "everything"],
                                    "everything"),
    "token for an unknown site": (["create-token", "ci", "--scope", "audit:read",
                                   "--site", "nope"], "unknown site"),
    "password of an unknown admin": (["set-admin-password", "nobody@example.com",
                                      "--password", "a-long-password-123"], "no admin"),
    "sms gateway of an unknown site": (["add-sms-gateway", "nope", "twilio"],
                                       "unknown site"),
    "signing key of an unknown site": (["signing-key", "--site", "nope"], "unknown site"),
    "checkpoints of an unknown site": (["verify-checkpoints", "--site", "nope"],
                                       "unknown site"),
}


def counts() -> tuple:
    return tuple(db.session.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                 for t in ("sites", "site_api_keys", "policy_versions", "webhook_endpoints",
                           "admin_tokens", "consent_events"))


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_each_mistake_is_one_line_and_exit_1(runner, site, name):
    args, expected = MISTAKES[name]
    before = counts()
    result = runner.invoke(args=["consent", *args])
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output and "SELECT" not in result.output
    db.session.rollback()
    assert counts() == before


def test_create_admin_twice_is_one_line(runner, app):
    args = ["consent", "create-admin", "ops@example.com", "--password", "a-long-password-123"]
    assert runner.invoke(args=args).exit_code == 0
    result = runner.invoke(args=args)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_an_unexpected_error_is_one_line_too(runner, app, monkeypatch):
    import consent.ledger as ledger

    def broken(*a, **k):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(ledger, "rebuild_states", broken)
    result = runner.invoke(args=["consent", "rebuild-state"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        "Error: unexpected RuntimeError: disk on fire (CONSENT_CLI_TRACEBACK=1 shows the "
        "traceback)"]


def test_the_real_flask_command_from_the_venv(database_url, site):
    """As an operator runs it: `.venv/bin/flask --app app consent ...` in a shell."""
    flask = ROOT / ".venv" / "bin" / "flask"
    env = {**os.environ, "CONSENT_DATABASE_URL": database_url, "CONSENT_ENV": "testing",
           "CONSENT_LOG_INTEGRATE_SECONDS": "0"}
    for args, expected in (MISTAKES["duplicate site key"],
                           MISTAKES["export to a missing directory"],
                           MISTAKES["since after until"]):
        done = subprocess.run([str(flask) if flask.exists() else sys.executable, *(
            [] if flask.exists() else ["-m", "flask"]), "--app", "app", "consent", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines() == [done.stderr.strip()]
        assert expected in done.stderr and "Traceback" not in done.stderr
    assert db.session.execute(sa.select(sa.func.count()).select_from(Site)).scalar() == 1
