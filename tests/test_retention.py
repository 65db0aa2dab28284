"""Retention purge: old events go, a signed checkpoint stays, the ledger still verifies."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from consent.audit import ExportFilters, verify_export_file, write_export
from consent.database import run_write, utcnow
from consent.extensions import db
from consent.ledger import (ConsentEvent, ConsentState, EventDetails, LedgerCheckpoint,
                            LedgerPurgePermit, drop_append_only_ddl, verify_ledger)
from consent.retention import purge_events, verify_checkpoints
from tests.support.admin import record_choice


@pytest.fixture
def old_and_new(site):
    """Events before and after a cut-off, in several streams."""
    old = [record_choice(site["key"], "accept_all") for _ in range(12)]
    for v in old[:4]:
        record_choice(site["key"], "reject_all", subject=v)
    cutoff = utcnow()
    new = [record_choice(site["key"], "custom", categories={"analytics": True}) for _ in range(6)]
    for v in old[4:7]:
        record_choice(site["key"], "custom", subject=v, categories={"functional": True})
    return old, new, cutoff


def count(model, *where) -> int:
    return db.session.execute(db.select(db.func.count()).select_from(model).where(*where)
                              ).scalar()


def test_purge_leaves_a_verifying_ledger_and_signed_checkpoints(site, old_and_new):
    _old, _new, cutoff = old_and_new
    before = count(ConsentEvent)
    old_count = count(ConsentEvent, ConsentEvent.recorded_at < cutoff)
    assert old_count == 16
    result = purge_events(site["key"], cutoff)
    assert result.events_removed == old_count
    # Each of the 12 people with old events gets one carry_forward event re-stating
    # their current state, so the projection can still be rebuilt after the purge.
    assert result.states_carried_forward == 12
    assert count(ConsentEvent) == before - old_count + 12
    assert count(ConsentEvent, ConsentEvent.recorded_at < cutoff) == 0
    report = verify_ledger()
    assert report.ok, report.problems
    checkpoints = db.session.execute(db.select(LedgerCheckpoint)).scalars().all()
    assert len(checkpoints) == len(result.checkpoints) > 1
    assert sum(c.events_removed for c in checkpoints) == old_count
    assert all(c.ok for c in verify_checkpoints())
    # The permit did not outlive the purge.
    assert count(LedgerPurgePermit) == 0
    # Personal details of purged events are gone; the current consent stays in force.
    assert count(EventDetails) == count(ConsentEvent, ConsentEvent.details_digest.is_not(None))
    assert count(ConsentState) == 18


def test_a_second_purge_continues_from_the_first(site, old_and_new):
    _old, _new, cutoff = old_and_new
    purge_events(site["key"], cutoff)
    purge_events(site["key"], utcnow())
    # What remains is one carry_forward event per person, re-stating current consent.
    remaining = db.session.execute(db.select(ConsentEvent.action)).scalars().all()
    assert set(remaining) == {"carry_forward"} and len(remaining) == count(ConsentState)
    assert verify_ledger().ok
    # New events continue the chain after everything was purged.
    record_choice(site["key"], "accept_all")
    assert verify_ledger().ok


def test_database_still_refuses_deletes_outside_a_purge(site, old_and_new):
    purge_events(site["key"], old_and_new[2])
    with pytest.raises(sa.exc.DBAPIError, match="consent_events is append-only"):
        with db.engine.begin() as conn:
            conn.execute(sa.delete(ConsentEvent.__table__))
    db.session.rollback()
    assert count(ConsentEvent) == 9 + 12  # kept events + one carry_forward per person


def test_forged_checkpoint_signature_is_caught(site, old_and_new):
    purge_events(site["key"], old_and_new[2])

    def forge():
        cp = db.session.execute(db.select(LedgerCheckpoint)).scalars().first()
        cp.events_removed += 1
    run_write(forge)
    checks = verify_checkpoints()
    assert [c.ok for c in checks].count(False) == 1


def test_tampering_after_a_purge_is_still_detected(site, old_and_new):
    purge_events(site["key"], old_and_new[2])
    with db.engine.begin() as conn:
        for statement in drop_append_only_ddl(db.engine.dialect.name):
            conn.exec_driver_sql(statement)
        first = conn.execute(sa.select(ConsentEvent.__table__.c.id).order_by(
            ConsentEvent.__table__.c.id).limit(1)).scalar()
        conn.execute(sa.update(ConsentEvent.__table__).where(
            ConsentEvent.__table__.c.id == first).values(action="reject_all"))
    report = verify_ledger()
    assert not report.ok and "edited" in report.problems[0].reason


def test_events_after_the_cut_off_stay_in_the_same_stream(site):
    """Only the start of a stream goes; the subject's later events keep their chain."""
    v = record_choice(site["key"], "accept_all")
    cutoff = utcnow()
    record_choice(site["key"], "reject_all", subject=v)
    record_choice(site["key"], "custom", subject=v, categories={"analytics": True})
    result = purge_events(site["key"], cutoff)
    assert result.events_removed == 1
    assert verify_ledger().ok


def test_exports_after_a_purge_carry_the_checkpoints_and_verify(tmp_path, site, old_and_new):
    purge_events(site["key"], old_and_new[2])
    path = tmp_path / "after-purge.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        write_export(fh, ExportFilters(site_key=site["key"]), "csv")
    report = verify_export_file(str(path))
    assert report.ok, report.problems
    assert len(report.manifest["checkpoints"]) >= 2
    # A forged checkpoint in the manifest breaks its signature.
    text = path.read_text()
    cp = report.manifest["checkpoints"][0]
    path.write_text(text.replace(f'""seq"":{cp["seq"]},""signature""',
                                 f'""seq"":{cp["seq"] + 1},""signature""', 1))
    assert not verify_export_file(str(path)).ok


def test_purge_cli(runner, site, old_and_new):
    r = runner.invoke(args=["consent", "purge", "--site", site["key"], "--before",
                            (utcnow() + timedelta(days=2)).date().isoformat(), "--yes"])
    assert r.exit_code != 0 and "future" in r.output
    r = runner.invoke(args=["consent", "purge", "--site", site["key"], "--before",
                            old_and_new[2].isoformat(), "--dry-run"])
    assert r.exit_code == 0 and "would remove 16 events" in r.output
    assert count(ConsentEvent) == 25
    r = runner.invoke(args=["consent", "purge", "--site", site["key"], "--before",
                            old_and_new[2].isoformat()], input="n\n")
    assert r.exit_code != 0 and count(ConsentEvent) == 25
    r = runner.invoke(args=["consent", "purge", "--site", site["key"], "--before",
                            old_and_new[2].isoformat(), "--yes"])
    assert r.exit_code == 0 and "removed 16 events" in r.output
    r = runner.invoke(args=["consent", "verify"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["consent", "verify-checkpoints"])
    assert r.exit_code == 0 and "valid signatures" in r.output
    r = runner.invoke(args=["consent", "purge", "--site", site["key"], "--yes"])
    assert r.exit_code != 0 and "retention_days" in r.output
    r = runner.invoke(args=["consent", "purge", "--site", "nope", "--before", "2020-01-01",
                            "--yes"])
    assert r.exit_code != 0 and "unknown site" in r.output


def test_purge_without_a_date_uses_the_sites_retention_days(runner, site, clock):
    from consent.sites import get_site, invalidate_site_cache

    def keep_for_90_days():
        s = get_site(site["key"])
        s.settings = {**s.settings, "retention_days": 90}
    run_write(keep_for_90_days)
    invalidate_site_cache()
    old = [record_choice(site["key"], "accept_all") for _ in range(3)]
    clock.advance(days=60)
    recent = record_choice(site["key"], "reject_all")
    clock.advance(days=31)  # the first three are 91 days old now, the last one 31
    r = runner.invoke(args=["consent", "purge", "--site", site["key"], "--yes"])
    assert r.exit_code == 0, r.output
    assert "removed 3 events" in r.output
    left = db.session.execute(db.select(ConsentEvent.action)).scalars().all()
    # the old choices are gone (each person's state re-stated once); the recent one stays
    assert sorted(left) == ["carry_forward"] * len(old) + ["reject_all"]
    assert recent and verify_ledger().ok


def test_rebuild_after_a_purge_gives_the_same_states(runner, site, old_and_new):
    old, _new, cutoff = old_and_new
    before = {r.subject: (r.categories, r.channels, r.decided_at, r.policy_version)
              for r in db.session.execute(db.select(ConsentState)).scalars()}
    purge_events(site["key"], cutoff)
    result = runner.invoke(args=["consent", "rebuild-state"])
    assert result.exit_code == 0, result.output
    assert "0 differed" in result.output
    db.session.remove()
    after = {r.subject: (r.categories, r.channels, r.decided_at, r.policy_version)
             for r in db.session.execute(db.select(ConsentState)).scalars()}
    assert after == before
    # The four who refused before the cut-off (every event of theirs purged) and the
    # three whose later choice left analytics off still have analytics refused.
    assert sum(1 for cats, *_ in after.values() if cats.get("analytics") is False) == 7
