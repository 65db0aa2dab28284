"""The ledger: hash links, tamper detection, append-only guard, projection rebuild."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from consent.extensions import db
from consent.ledger import (ConsentEvent, ConsentState, LedgerHead, append_only_ddl,
                            drop_append_only_ddl, verify_ledger)
from consent.ledger.chain import truncate_guard_ddl


KEYS: dict[str, str] = {}  # visitor id -> the device key the server minted for it


def record(client, site_key, n, *, subject=None, action="accept_all"):
    """Record N decisions, return their event ids in order."""
    ids, subjects = [], []
    for i in range(n):
        body = {"action": action if i % 2 == 0 else "reject_all"}
        if subject:
            body.update(subject=subject, key=KEYS[subject])
        r = client.post(f"/api/v1/sites/{site_key}/decisions", json=body)
        assert r.status_code == 201, r.get_data(as_text=True)
        ids.append(r.get_json()["event_id"])
        subjects.append(r.get_json()["subject"])
        KEYS.setdefault(r.get_json()["subject"], r.get_json().get("key"))
    return ids, subjects


def raw(sql: str, **params):
    """Run SQL as an attacker with database access would (outside the app's rules)."""
    db.session.remove()  # release the test's own read locks first
    with db.engine.begin() as conn:
        for statement in drop_append_only_ddl(conn.dialect.name):
            conn.exec_driver_sql(statement)
        conn.execute(sa.text(sql), params)
    db.session.remove()


def run_verify(runner):
    return runner.invoke(args=["consent", "verify"])


def one_subject_events(client, site):
    ids, subjects = record(client, site["key"], 1)
    more, _ = record(client, site["key"], 5, subject=subjects[0])
    return ids + more


def test_untouched_ledger_verifies(client, runner, site, other_site):
    record(client, site["key"], 12)
    record(client, other_site["key"], 3)
    result = run_verify(runner)
    assert result.exit_code == 0, result.output
    assert "OK: 15 events" in result.output


def test_events_cannot_be_updated_or_deleted_through_the_database(client, site):
    record(client, site["key"], 2)
    db.session.remove()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE consent_events SET action = 'reject_all'"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with db.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM consent_events"))
    db.session.remove()
    assert db.session.execute(sa.select(sa.func.count()).select_from(ConsentEvent)).scalar() == 2


def test_edited_event_is_named(client, runner, site):
    ids = one_subject_events(client, site)
    raw("UPDATE consent_events SET categories = :c WHERE event_id = :e",
        c=json.dumps({"advertising": True}), e=ids[3])
    result = run_verify(runner)
    assert result.exit_code == 1
    assert ids[3] in result.output and "edited" in result.output


def test_edited_action_is_named(client, runner, site):
    ids = one_subject_events(client, site)
    raw("UPDATE consent_events SET action = 'accept_all' WHERE event_id = :e", e=ids[2])
    result = run_verify(runner)
    assert result.exit_code == 1 and ids[2] in result.output


def test_deleted_event_is_detected(client, runner, site):
    ids = one_subject_events(client, site)
    raw("DELETE FROM event_details WHERE event_id = :e", e=ids[2])
    raw("DELETE FROM consent_events WHERE event_id = :e", e=ids[2])
    result = run_verify(runner)
    assert result.exit_code == 1
    assert ids[3] in result.output and "missing" in result.output


def test_deleted_last_event_is_detected(client, runner, site):
    ids = one_subject_events(client, site)
    raw("DELETE FROM event_details WHERE event_id = :e", e=ids[-1])
    raw("DELETE FROM consent_events WHERE event_id = :e", e=ids[-1])
    result = run_verify(runner)
    assert result.exit_code == 1
    assert "deleted" in result.output


def test_inserted_event_is_detected(client, runner, site):
    ids = one_subject_events(client, site)
    row = db.session.execute(sa.select(ConsentEvent).where(ConsentEvent.event_id == ids[2])
                             ).scalar_one()
    # Forge an event between seq 3 and 4 by shifting later seqs up.
    later = db.session.execute(sa.select(ConsentEvent.event_id, ConsentEvent.seq)
                               .where(ConsentEvent.stream == row.stream,
                                      ConsentEvent.site_id == row.site_id,
                                      ConsentEvent.seq > row.seq)
                               .order_by(ConsentEvent.seq.desc())).all()
    for event_id, seq in later:
        raw("UPDATE consent_events SET seq = :s WHERE event_id = :e", s=seq + 1, e=event_id)
    raw("INSERT INTO consent_events (event_id, site_id, stream, seq, subject, recorded_at, "
        "action, source, categories, prev_hash, hash) SELECT 'forged0000000000000000000000000', "
        "site_id, stream, seq + 1, subject, recorded_at, 'accept_all', 'banner', categories, "
        "hash, hash FROM consent_events WHERE event_id = :e", e=ids[2])
    result = run_verify(runner)
    assert result.exit_code == 1
    assert "forged0000000000000000000000000" in result.output


def test_reordered_events_are_detected(client, runner, site):
    ids = one_subject_events(client, site)
    a, b = (db.session.execute(sa.select(ConsentEvent.seq).where(ConsentEvent.event_id == e)
                               ).scalar() for e in (ids[1], ids[2]))
    raw("UPDATE consent_events SET seq = -1 WHERE event_id = :e", e=ids[1])
    raw("UPDATE consent_events SET seq = :s WHERE event_id = :e", s=a, e=ids[2])
    raw("UPDATE consent_events SET seq = :s WHERE event_id = :e", s=b, e=ids[1])
    result = run_verify(runner)
    assert result.exit_code == 1
    assert ids[2] in result.output


def test_tampered_head_is_detected(client, runner, site):
    one_subject_events(client, site)
    raw("UPDATE ledger_heads SET seq = seq + 1")
    result = run_verify(runner)
    assert result.exit_code == 1


def test_streams_of_a_site_are_independent_chains(client, site):
    _, subjects = record(client, site["key"], 30)
    streams = db.session.execute(sa.select(sa.func.count(sa.distinct(ConsentEvent.stream)))
                                 ).scalar()
    assert streams > 1
    heads = db.session.execute(sa.select(LedgerHead)).scalars().all()
    assert sum(h.seq for h in heads) == 30
    assert verify_ledger().ok


def test_identifiers_enter_hashes_only_pseudonymised(client, site):
    _, subjects = record(client, site["key"], 1)
    ev = db.session.execute(sa.select(ConsentEvent)).scalar_one()
    assert ev.subject != subjects[0]  # the pseudonym, not the cookie id
    row_text = json.dumps([str(v) for v in ev.__dict__.values()])
    assert subjects[0] not in row_text and "127.0.0" not in row_text


def test_rebuild_state_gives_the_same_result(client, runner, site):
    _, subjects = record(client, site["key"], 4)
    record(client, site["key"], 5, subject=subjects[0])
    client.post(f"/api/v1/sites/{site['key']}/decisions",
                json={"action": "gpc", "subject": subjects[1]})
    before = {r.subject: (r.categories, r.channels, r.last_event_id)
              for r in db.session.execute(sa.select(ConsentState)).scalars()}
    result = runner.invoke(args=["consent", "rebuild-state"])
    assert result.exit_code == 0, result.output
    assert "rebuilt 4 subject states" in result.output and "0 differed" in result.output
    db.session.remove()
    after = {r.subject: (r.categories, r.channels, r.last_event_id)
             for r in db.session.execute(sa.select(ConsentState)).scalars()}
    assert after == before


def test_rebuild_state_repairs_a_damaged_projection(client, runner, site):
    record(client, site["key"], 3)
    db.session.remove()
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE consent_states SET categories = '{}'"))
    db.session.remove()
    result = runner.invoke(args=["consent", "rebuild-state"])
    assert "3 differed" in result.output
    states = db.session.execute(sa.select(ConsentState)).scalars().all()
    assert all(s.categories.get("essential") is True for s in states)


def test_guard_ddl_is_installed_by_migrations(app):
    # This test's database was built by the migrations alone: its catalogue holds every
    # trigger the guard's DDL creates, on the events table.
    import re

    dialect = db.engine.dialect.name
    wanted = {m.group(1) for m in re.finditer(
        r"CREATE TRIGGER (?:IF NOT EXISTS )?(\w+)",
        " ".join(append_only_ddl(dialect) + truncate_guard_ddl(dialect)))}
    catalogue = ("SELECT name FROM sqlite_master WHERE type = 'trigger' AND "
                 "tbl_name = 'consent_events'" if dialect == "sqlite" else
                 "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND "
                 "tgrelid = 'consent_events'::regclass")
    assert wanted and set(db.session.execute(sa.text(catalogue)).scalars()) == wanted
