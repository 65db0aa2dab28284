"""The signer refuses to sign a log that does not extend what it signed before, and keeps
its latest checkpoint per log outside the database (CONSENT_LOG_STATE_DIR), so an insider
who rewrites history and deletes (or rewinds) the checkpoint rows does not blind the
integrator or `flask consent verify`. Honest runs, several signers and a fresh install
keep working."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from consent.database import run_write, utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent, signer_state
from consent.ledger.log import (integrate, integrate_site, latest_checkpoint, log_origin,
                                site_verifiers)
from consent.ledger.notes import open_checkpoint
from consent.sites import site_snapshot
from tests.support.admin import record_choice as decide
from tests.test_tlog_attack import (DELETE_CHECKPOINTS, REBUILD_LOG, as_insider,
                                    checkpoint_count, rechain)


def cli(runner, *args):
    return runner.invoke(args=["consent", *args])


def held(origin="consent.local/shop") -> dict | None:
    path = signer_state.state_path(origin)
    return json.loads(path.read_text()) if path.exists() else None


def events_of_shop() -> int:
    db.session.remove()
    return db.session.execute(sa.select(sa.func.count()).select_from(ConsentEvent)).scalar()


@pytest.fixture
def state(app, tmp_path) -> Path:
    """This signer's state directory (configured explicitly, not yet created)."""
    folder = tmp_path / "signer" / "log-state"
    app.config["CONSENT_LOG_STATE_DIR"] = str(folder)
    return folder


@pytest.fixture
def signed_history(app, runner, site, state):
    """A site with history the signer has integrated and signed (twice)."""
    for _ in range(5):
        decide(site["key"], "accept_all")
    assert cli(runner, "integrate").exit_code == 0
    for i in range(4):
        decide(site["key"], "reject_all", subject=f"visitor-{i:04d}-abcdefgh")
    assert cli(runner, "integrate").exit_code == 0
    kept = held()
    assert kept and kept["size"] == 9
    return kept


def _rewrite_one_event(site_key: str) -> list:
    """The insider's edit: one event's categories, with the chain and head recomputed."""
    target = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.action == "reject_all").order_by(ConsentEvent.id)).scalars().first()
    rows = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.site_id == target.site_id, ConsentEvent.stream == target.stream)
        .order_by(ConsentEvent.seq)).scalars().all()
    forged = {k: True for k in ("essential", "functional", "analytics", "advertising")}
    return rechain(rows, site_key, edit=(target.event_id, forged))


def test_an_insider_who_also_deletes_the_checkpoints_is_caught(app, client, runner, site,
                                                               signed_history):
    # Drop the triggers, rewrite one event with recomputed hashes and heads, empty the
    # log so the server would rebuild it over the rewritten events, delete the
    # checkpoint rows: nothing in the database contradicts the rewrite any more.
    as_insider(_rewrite_one_event("shop") + REBUILD_LOG + DELETE_CHECKPOINTS)
    assert checkpoint_count() == 0

    verify = cli(runner, "verify")
    assert verify.exit_code == 1, verify.output
    assert "BAD: site shop log: the checkpoint of 9 entries signed at" in verify.output
    assert "is not in the database: checkpoint rows were deleted or rewound" in verify.output
    assert "the log was rewound" in verify.output  # the log holds 0 of the 9 signed

    integrated = cli(runner, "integrate")
    assert integrated.exit_code == 1, integrated.output
    assert "REFUSED: site shop: the checkpoint of 9 entries" in integrated.output
    assert "is gone from the database" in integrated.output
    assert checkpoint_count() == 0  # signed nothing
    # Also when no new event arrives, and whatever asks for a signature.
    decide(site["key"], "accept_all")
    assert integrate()[0].blocked and checkpoint_count() == 0
    served = client.get("/api/v1/sites/shop/log/checkpoint")
    assert served.status_code == 503 and served.mimetype == "application/problem+json"
    assert "site shop" in served.get_json()["detail"]
    before = events_of_shop()
    purge = cli(runner, "purge", "--site", "shop", "--before", utcnow().isoformat(), "--yes")
    assert purge.exit_code == 1 and "site shop" in purge.output, purge.output
    assert events_of_shop() == before
    assert held()["size"] == 9  # the signer's own copy is untouched


def test_a_rewrite_that_keeps_the_checkpoint_rows_is_refused(app, runner, site,
                                                             signed_history):
    # Without deleting the rows the rebuilt log is checked against the latest one.
    as_insider(_rewrite_one_event("shop") + REBUILD_LOG)
    integrated = cli(runner, "integrate", "--site", "shop")
    assert integrated.exit_code == 1, integrated.output
    assert ("REFUSED: site shop: the log of 9 entries is not an extension of the checkpoint "
            "of 9 signed at") in integrated.output
    assert checkpoint_count() == 2
    verify = cli(runner, "verify", "--site", "shop")
    assert verify.exit_code == 1 and "site shop log:" in verify.output


def test_rewound_checkpoint_rows_are_caught(app, runner, site, signed_history):
    # Only the latest checkpoint row goes: the database now says the log was signed at 5.
    as_insider([("DELETE FROM log_checkpoints WHERE size = 9", {})])
    verify = cli(runner, "verify")
    assert verify.exit_code == 1
    assert ("site shop log: the checkpoint of 9 entries signed at" in verify.output
            and "is not in the database" in verify.output), verify.output
    integrated = cli(runner, "integrate")
    assert integrated.exit_code == 1 and "REFUSED: site shop:" in integrated.output
    assert checkpoint_count() == 1


def test_an_honest_signer_keeps_its_latest_checkpoint_outside_the_database(
        app, runner, site, state, signed_history):
    shop = site_snapshot("shop")
    assert signed_history["note"] == latest_checkpoint(shop.id).note
    assert signed_history["origin"] == log_origin("shop")
    assert (state / "consent.local_shop.json").exists()
    decide(site["key"], "custom", categories={"analytics": True})
    assert cli(runner, "integrate").exit_code == 0
    assert held()["size"] == 10 and held()["note"] == latest_checkpoint(shop.id).note
    verify = cli(runner, "verify")
    assert verify.exit_code == 0, verify.output


def test_a_fresh_install_with_an_empty_state_dir_works(app, client, runner, site, state):
    assert not state.exists()
    first = client.get("/api/v1/sites/shop/log/checkpoint")  # signed on demand: size 0
    assert first.status_code == 200 and first.get_data(as_text=True).split("\n")[1] == "0"
    assert held()["size"] == 0
    for _ in range(3):
        decide(site["key"])
    assert cli(runner, "integrate").exit_code == 0
    assert held()["size"] == 3
    verify = cli(runner, "verify")
    assert verify.exit_code == 0, verify.output


def test_several_signers_each_keep_their_own_copy(app, runner, site, tmp_path):
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    sizes = []
    for round_ in range(4):
        machine = machines[round_ % 2]
        app.config["CONSENT_LOG_STATE_DIR"] = str(machine)
        decide(site["key"], "accept_all")
        integrated = cli(runner, "integrate")
        assert integrated.exit_code == 0, integrated.output
        sizes.append(held()["size"])
        verify = cli(runner, "verify")
        assert verify.exit_code == 0, verify.output
    assert sizes == [1, 2, 3, 4]
    app.config["CONSENT_LOG_STATE_DIR"] = str(machines[0])
    assert held()["size"] == 3  # machine a signed 1 and 3; b signed 2 and 4
    assert cli(runner, "verify").exit_code == 0  # a's older copy is still in the log


def test_a_signer_new_to_the_database_checks_the_latest_checkpoint(app, runner, site,
                                                                   signed_history, tmp_path):
    app.config["CONSENT_LOG_STATE_DIR"] = str(tmp_path / "new-machine")
    # Its signature no longer verifies (an edited row): a new signer has nothing else.
    as_insider([("UPDATE log_checkpoints SET note = REPLACE(note, '\n9\n', '\n8\n') "
                 "WHERE size = 9", {})])
    integrated = cli(runner, "integrate", "--site", "shop")
    assert integrated.exit_code == 1, integrated.output
    assert ("REFUSED: site shop: the latest checkpoint in the database (of 9 entries) does "
            "not verify") in integrated.output
    assert held() is None


def test_the_state_is_kept_only_once_the_checkpoint_commits(app, site, state):
    shop = site_snapshot("shop")
    decide(site["key"])

    def sign_then_fail():
        integrate_site(shop.id, shop.key)
        raise RuntimeError("the transaction rolls back")

    with pytest.raises(RuntimeError):
        run_write(sign_then_fail)
    assert held() is None and latest_checkpoint(shop.id) is None
    run_write(integrate_site, shop.id, shop.key)
    assert held()["size"] == 1


def test_the_kept_checkpoint_only_moves_forward(app, runner, site, state, signed_history):
    shop = site_snapshot("shop")
    older = db.session.execute(sa.text("SELECT note FROM log_checkpoints WHERE size = 5")
                               ).scalar()
    signer_state.keep(log_origin("shop"), older, 5)  # a slower process of this machine
    assert held()["size"] == 9
    checkpoint, _ = open_checkpoint(held()["note"], site_verifiers("shop"))
    assert checkpoint.size == 9 == latest_checkpoint(shop.id).size


def test_a_damaged_state_file_stops_the_signer(app, runner, site, state, signed_history):
    path = signer_state.state_path(log_origin("shop"))
    record = json.loads(path.read_text())
    record["note"] = record["note"].replace("\n9\n", "\n12\n")
    path.write_text(json.dumps(record))
    decide(site["key"])
    integrated = cli(runner, "integrate")
    assert integrated.exit_code == 1
    assert "REFUSED: site shop: the checkpoint in the signer's state file" in integrated.output
    verify = cli(runner, "verify")
    assert verify.exit_code == 1 and "site shop log:" in verify.output
    assert "does not verify" in verify.output
