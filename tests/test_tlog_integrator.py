"""The integrator's batches: a backlog in many streams is integrated batch by batch, each
stream in order; an event whose chain does not vouch for it stops its stream (and only
its stream) and is never logged."""
from __future__ import annotations

import json
import zlib

import sqlalchemy as sa

from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.database import run_write
from consent.ledger.log import integrate, integrate_site, prepare_batch, tree_size
from consent.sites import site_snapshot
from tests.support.admin import record_choice as decide
from tests.test_tlog_attack import as_insider


def cli(runner, *args):
    return runner.invoke(args=["consent", *args])


def logged() -> list[tuple[int, int]]:
    """(stream, seq) of every log entry, in log order."""
    db.session.remove()
    return [tuple(r) for r in db.session.execute(sa.text(
        "SELECT stream, seq FROM log_leaves ORDER BY log_index")).all()]


def test_a_backlog_in_every_stream_is_integrated_in_small_batches(app, runner, site):
    visitors = [decide(site["key"], "accept_all") for _ in range(12)]
    for v in visitors[:6]:
        decide(site["key"], "reject_all", subject=v)
    streams = {r[0] for r in db.session.execute(sa.text(
        "SELECT DISTINCT stream FROM consent_events")).all()}
    assert len(streams) > 1
    app.config["CONSENT_LOG_BATCH"] = 4
    passes = integrate()
    assert [p.added for p in passes] == [4, 4, 4, 4, 2]
    # one checkpoint for the pass, signed after its last batch, of the whole tree
    assert [p.checkpoint is not None for p in passes] == [False] * 4 + [True]
    assert db.session.execute(sa.text("SELECT size FROM log_checkpoints")).scalars().all() \
        == [18]
    entries = logged()
    assert len(entries) == 18 == tree_size(site_snapshot("shop").id)
    for stream in streams:  # each stream's events in seq order, none missing
        seqs = [seq for s, seq in entries if s == stream]
        assert seqs == list(range(1, len(seqs) + 1))
    ids = db.session.execute(sa.text(
        "SELECT e.id FROM log_leaves l JOIN consent_events e ON e.site_id = l.site_id AND "
        "e.stream = l.stream AND e.seq = l.seq ORDER BY l.log_index")).scalars().all()
    assert ids == sorted(ids)  # the log follows the order events were recorded in
    verify = cli(runner, "verify")
    assert verify.exit_code == 0, verify.output


def test_an_event_edited_before_it_was_logged_stops_its_stream_only(app, runner, site):
    visitors = [decide(site["key"], "accept_all") for _ in range(10)]
    for v in visitors:
        decide(site["key"], "reject_all", subject=v)
    target = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.action == "reject_all").order_by(ConsentEvent.id)).scalars().first()
    as_insider([("UPDATE consent_events SET categories = :c WHERE event_id = :e",
                 {"c": json.dumps({"advertising": True}), "e": target.event_id})])
    r = cli(runner, "integrate")
    assert r.exit_code == 1, r.output
    assert (f"REFUSED: site shop stream {target.stream} event {target.event_id} (seq "
            f"{target.seq}): its contents do not match its hash") in r.output
    entries = logged()
    assert (target.stream, target.seq) not in entries
    assert [seq for s, seq in entries if s == target.stream] == list(range(1, target.seq))
    total = db.session.execute(sa.text("SELECT COUNT(*) FROM consent_events")).scalar()
    behind = db.session.execute(sa.text(
        "SELECT COUNT(*) FROM consent_events WHERE stream = :s AND seq >= :q"),
        {"s": target.stream, "q": target.seq}).scalar()
    assert len(entries) == total - behind  # every other stream went on


def test_a_batch_prepared_before_more_events_integrates_what_it_saw(app, runner, site):
    """The integrator hashes outside the write transaction: events recorded meanwhile
    wait for the next batch, and the log stays an exact, verifiable prefix."""
    shop = site_snapshot("shop")
    for _ in range(5):
        decide(site["key"], "accept_all")
    prepared = prepare_batch(shop.id, shop.key)
    db.session.commit()
    for _ in range(3):
        decide(site["key"], "reject_all")
    first = run_write(integrate_site, shop.id, shop.key, prepared=prepared)
    assert (first.added, first.size) == (5, 5)
    assert tree_size(shop.id) == 5
    rest = integrate()
    assert sum(p.added for p in rest) == 3
    assert len(logged()) == 8 == tree_size(shop.id)
    verify = cli(runner, "verify")
    assert verify.exit_code == 0, verify.output


def test_a_stale_prepared_batch_is_computed_again_not_written_twice(app, runner, site):
    """A batch prepared before another integrator ran is not taken: no entry is logged
    twice and none is skipped."""
    shop = site_snapshot("shop")
    for _ in range(4):
        decide(site["key"], "accept_all")
    stale = prepare_batch(shop.id, shop.key)
    db.session.commit()
    assert len(stale.leaves) == 4
    assert sum(p.added for p in integrate()) == 4  # another integrator got there first
    for _ in range(2):
        decide(site["key"], "reject_all")
    again = run_write(integrate_site, shop.id, shop.key, prepared=stale)
    assert (again.added, again.size) == (2, 6)
    entries = logged()
    assert len(entries) == len(set(entries)) == 6
    verify = cli(runner, "verify")
    assert verify.exit_code == 0, verify.output


def test_preparing_a_batch_needs_no_write_lock(app, site, database_url):
    """SQLite: another connection holds the write lock while the batch is prepared (as
    consent writes do all the time); the preparation reads past it."""
    if not database_url.startswith("sqlite"):
        return _prepare_beside_a_pg_writer(site)
    import sqlite3

    shop = site_snapshot("shop")
    for _ in range(3):
        decide(site["key"], "accept_all")
    writer = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None,
                             timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")
        prepared = prepare_batch(shop.id, shop.key)
        db.session.commit()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert len(prepared.leaves) == 3


def _prepare_beside_a_pg_writer(site):
    # PostgreSQL: another integrator holding the site's lock, and a writer holding every
    # stream head, do not hold the preparation up (it would wait for neither anyway).
    shop = site_snapshot("shop")
    for _ in range(3):
        decide(site["key"], "accept_all")
    with db.engine.connect() as other:
        other.exec_driver_sql("SELECT pg_advisory_xact_lock(:ns, :site_id)".replace(
            ":ns", str(zlib.crc32(b"consent-log-integrator") & 0x7FFFFFFF)).replace(
            ":site_id", str(shop.id)))
        other.exec_driver_sql("SELECT * FROM ledger_heads FOR UPDATE")
        db.session.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
        prepared = prepare_batch(shop.id, shop.key)
        db.session.commit()
        other.rollback()
    assert len(prepared.leaves) == 3


def test_one_process_of_a_database_is_elected_to_integrate(app, database_url):
    """Web processes elect one integrator per database (before, on PostgreSQL every
    process prepared every batch, and all but one threw the work away); a lost election
    (the process died, the server restarted) lets another process take over."""
    from consent import create_app
    from consent.ledger.log import ELECTION_NS, _elect

    other = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url,
                        "SERVER_NAME": None})
    first = _elect(app)
    assert first is not None and first.alive()
    try:
        assert _elect(other) is None  # another process: not while the first holds it
        if database_url.startswith("postgresql"):
            holders = db.session.execute(sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns "
                "AND objid = 0 AND objsubid = 2 AND granted"), {"ns": ELECTION_NS}).all()
            assert len(holders) == 1
            # the server ends the lock's session (a restart, an operator's kill)
            db.session.execute(sa.text("SELECT pg_terminate_backend(:pid)"),
                               {"pid": holders[0][0]})
            db.session.commit()
            assert not first.alive()
        else:
            first.close()  # the process exits: the kernel frees its lock file
        second = _elect(other)
        assert second is not None and second.alive()
        second.close()
    finally:
        first.close()
        with other.app_context():
            db.engine.dispose()


def test_the_integrator_thread_ends_with_its_database(database_url, pg_cluster, site):
    """A web process's integrator thread stops once its database is gone (dropped, or its
    file deleted) instead of failing every interval for the life of the process; a later
    request would start it again."""
    import os
    import threading
    import time

    from consent import create_app
    from consent.ledger.log import start_integrator

    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url,
                      "SERVER_NAME": None, "CONSENT_LOG_INTEGRATE_SECONDS": 0.05})
    before = set(threading.enumerate())
    start_integrator(app)
    started = [t for t in set(threading.enumerate()) - before if t.name == "log-integrator"]
    assert len(started) == 1
    thread = started[0]
    decide(site["key"], "accept_all")
    deadline = time.monotonic() + 30
    while not logged() and time.monotonic() < deadline:  # it works while the database is there
        time.sleep(0.05)
    assert logged()
    db.session.remove()
    db.engine.dispose()
    with app.app_context():
        db.engine.dispose()
    if pg_cluster is not None:
        pg_cluster.sql(f"DROP DATABASE {sa.engine.make_url(database_url).database} WITH (FORCE)")
    else:
        os.remove(database_url.removeprefix("sqlite:///"))
    thread.join(timeout=30)
    assert not thread.is_alive()
