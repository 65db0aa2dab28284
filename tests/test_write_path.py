"""The hot consent write: its SQLite housekeeping and its guarantees.

The WAL test runs on its own SQLite file whatever CONSENT_TEST_DB says: it is about the
embedded store's checkpointing, which PostgreSQL does not have.
"""
from __future__ import annotations

import os
import threading

import pytest

from consent import create_app
from consent.database import run_write
from consent.extensions import db
from consent.sites import create_site, invalidate_site_cache
from tests.support.db import ledger_ids, migrate


def test_wal_stays_bounded_under_steady_writes(tmp_path):
    """Back-to-back writes never leave a moment for a plain PASSIVE checkpoint to copy
    everything, so without the finishing step the WAL only ever grows (~50 KB a write)."""
    path = tmp_path / "wal.sqlite3"
    url = f"sqlite:///{path}"
    migrate(url)
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


def _post(client, site_key: str, body: dict):
    return client.post(f"/api/v1/sites/{site_key}/decisions", json=body)


def test_a_replay_writes_nothing_and_the_chain_goes_on(client, site):
    """The idempotency key is settled by the INSERT itself: a replay leaves no gap in the
    stream, moves no head and changes no state; the next new event links on."""
    import sqlalchemy as sa

    from consent.ledger import ConsentEvent, ConsentState, LedgerHead, verify_ledger

    first = _post(client, site["key"], {"action": "accept_all",
                                        "client_event_id": "first-0123456789"})
    subject, key = first.get_json()["subject"], first.get_json()["key"]
    second = _post(client, site["key"], {"action": "reject_all", "subject": subject,
                                         "key": key, "client_event_id": "second-0123456789"})
    heads = db.session.execute(sa.select(LedgerHead.stream, LedgerHead.seq,
                                         LedgerHead.hash)).all()
    replay = _post(client, site["key"], {"action": "accept_all", "subject": subject,
                                         "key": key, "client_event_id": "first-0123456789"})
    assert replay.status_code == 200
    body = replay.get_json()
    assert body["duplicate"] is True
    assert body["event_id"] == first.get_json()["event_id"]
    assert body["recorded_at"] == first.get_json()["recorded_at"]
    # the state is the latest event's (reject_all), not the replayed one's
    assert body["consent"]["categories"]["analytics"] is False
    db.session.rollback()
    assert db.session.execute(sa.select(LedgerHead.stream, LedgerHead.seq,
                                        LedgerHead.hash)).all() == heads
    assert db.session.execute(sa.select(sa.func.count()).select_from(ConsentEvent)
                              ).scalar() == 2
    state = db.session.execute(sa.select(ConsentState)).scalar_one()
    assert state.last_event_id == second.get_json()["event_id"]

    third = _post(client, site["key"], {"action": "accept_all", "subject": subject,
                                        "key": key, "client_event_id": "third-0123456789"})
    assert third.status_code == 201
    db.session.rollback()
    seqs = db.session.execute(sa.select(ConsentEvent.seq).order_by(ConsentEvent.id)
                              ).scalars().all()
    assert seqs == [1, 2, 3]  # one subject, one stream: no seq was used by the replay
    assert verify_ledger().ok


def test_racing_replays_record_one_event(site, database_url):
    """Eight requests with the same idempotency key at once, through gunicorn: one is
    recorded (201), the others answer with that same event (200)."""
    import http.client
    import json
    import threading

    from tests.support.servers import AppServer

    server = AppServer(database_url, workers=2, threads=4)
    results: dict[str, list] = {}
    try:
        for round_ in range(5):
            key = f"race-{round_:02d}-0123456789"
            barrier = threading.Barrier(8)
            out: list = []

            def send():
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                body = json.dumps({"action": "accept_all", "client_event_id": key,
                                   "subject": "racing-subject-0123456789",
                                   "key": "racing-device-key-0123456789"})
                barrier.wait()
                conn.request("POST", f"/api/v1/sites/{site['key']}/decisions", body=body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                out.append((resp.status, json.loads(resp.read())))
                conn.close()

            threads = [threading.Thread(target=send) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            results[key] = out
    finally:
        server.stop()
    stored = ledger_ids(database_url)  # also verifies the ledger
    assert len(stored) == len(results)
    for key, out in results.items():
        statuses = sorted(status for status, _ in out)
        assert statuses == [200] * 7 + [201], (key, out)
        assert {body["event_id"] for _, body in out} <= stored
        assert len({body["event_id"] for _, body in out}) == 1


def test_writes_go_on_after_the_pool_is_replaced(client, site):
    """The hot path keeps one connection per thread; a disposed pool hands out a new one."""
    assert _post(client, site["key"], {"action": "accept_all"}).status_code == 201
    db.engine.dispose()
    assert _post(client, site["key"], {"action": "reject_all"}).status_code == 201
    from consent.ledger import verify_ledger

    assert verify_ledger().ok


def test_the_app_still_runs_async_views_and_keeps_its_sync_cache_bounded(app):
    """ensure_sync answers per function once (hot path), alike for plain and async."""
    async def coro():
        return "async ran"

    def plain():
        return "plain"

    assert app.ensure_sync(plain) is plain and app.ensure_sync(plain) is plain
    # Async views need Flask's async extra (asgiref), as without the cache: the same refusal.
    for _ in range(2):
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(coro)
    for _ in range(2000):
        app.ensure_sync(lambda: None)  # fresh callables, as after_this_request makes
    assert len(app._sync) <= 512


def test_a_new_visitor_costs_one_subject_statement_and_a_returning_one_still_proves_its_key(
        tmp_path):
    """The statements SQLite runs for a decision (its trace, on the hot connection): a
    new visitor's id and key are created by one INSERT, no look-up first; a returning
    visitor is looked up after the conflicting insert and still needs its own key."""
    from consent.database import _hot_connection

    url = f"sqlite:///{tmp_path / 'trace.sqlite3'}"
    migrate(url)
    invalidate_site_cache()
    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url})
    visitor, key = "V" * 22, "K" * 32
    with app.app_context():
        run_write(lambda: create_site("tracesite", "Trace site").key)
        client = app.test_client()
        seen: list[str] = []
        conn = _hot_connection(db.engine).dbapi_connection
        conn.set_trace_callback(seen.append)
        try:
            first = _post(client, "tracesite", {"action": "accept_all", "subject": visitor,
                                                "key": key})
            on_subjects = [s for s in seen if " subjects" in s]
            seen.clear()
            again = _post(client, "tracesite", {"action": "reject_all", "subject": visitor,
                                                "key": key})
            returning = [s for s in seen if " subjects" in s]
            stolen = _post(client, "tracesite", {"action": "accept_all", "subject": visitor,
                                                 "key": "X" * 32})
        finally:
            conn.set_trace_callback(None)
        assert first.status_code == 201 and first.get_json()["subject"] == visitor
        assert len(on_subjects) == 1 and on_subjects[0].startswith("INSERT INTO subjects")
        assert again.status_code == 201 and again.get_json()["subject"] == visitor
        assert [s.split()[0] for s in returning] == ["INSERT", "SELECT"]
        assert stolen.status_code == 403
        count = db.session.execute(db.text(
            "SELECT COUNT(*) FROM subjects WHERE public_id = :p"), {"p": visitor}).scalar()
        events = db.session.execute(db.text("SELECT COUNT(*) FROM consent_events")).scalar()
        assert (count, events) == (1, 2)
        db.session.remove()
        db.engine.dispose()
    invalidate_site_cache()


# ---------------------------------------------------------------- the lean validation

_BODIES = [
    {"action": "custom", "categories": {"analytics": True, "advertising": False},
     "subject": "abcdefghijABCDEFGHIJ12", "key": "k" * 32, "page_url": "https://a.example/x",
     "locale": "en", "client_event_id": "abcdefgh12"},
    {"action": "accept_all"},
    {"action": "custom"},  # custom without categories: the schema-level check
    {},  # action missing
    {"categories": {"analytics": True}},  # action missing, another field present
    {"action": "nope", "gpc": "yes", "locale": "e", "page_url": "javascript:alert(1)",
     "client_event_id": "short", "categories": {"": 1}, "subject": "bad id",
     "key": "", "source": "x", "age": "child", "guardian": 1, "policy_version": ""},
    {"action": "accept_all", "unknown": 1},  # unknown fields: the full schema's error
    {"action": "reject_all", "policy_version": "v1", "source": "preferences", "gpc": True,
     "age": "adult", "guardian": False},
    ["not", "an", "object"],
    "text",
    None,
]


@pytest.mark.parametrize("body", _BODIES, ids=range(len(_BODIES)))
def test_lean_decision_loader_validates_as_the_full_schema(body):
    """The decision endpoint loads a body on a schema of its own fields: same result,
    same errors in the same order as DecisionSchema (every field, present or not)."""
    import marshmallow as ma

    from consent.decisions import DecisionSchema, LeanDecisionLoader

    def outcome(schema):
        try:
            return "ok", schema.load(body)
        except ma.ValidationError as exc:
            return "error", list(exc.normalized_messages().items())

    lean = LeanDecisionLoader()
    expected = outcome(DecisionSchema())
    assert outcome(lean) == expected
    assert outcome(lean) == expected  # and again from its cache
    if isinstance(body, dict) and set(body) <= lean.fields:
        assert lean._by_keys, "a body of known fields is loaded on the lean schema"


def test_time_texts_remembered_per_object_stay_exact():
    """`iso` and `to_db_time` remember the last datetime they formatted (a write formats
    its recorded_at several times): every other value, an equal instant in another
    zone included, still gets its own text."""
    from datetime import datetime, timedelta, timezone

    from consent.database import iso
    from consent.rawsql import to_db_time

    base = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=timezone.utc)
    plus_two = timezone(timedelta(hours=2))
    later = base + timedelta(days=365)
    cases = [base, base, base + timedelta(microseconds=1), base,
             base.astimezone(plus_two), base.replace(microsecond=0), base.replace(year=1999),
             # (iso keeps two: a write's recorded_at, its view's expiresAt, recorded_at)
             base, later, base, later, base + timedelta(days=1), later, base]
    for value in cases * 2:
        utc = value.astimezone(timezone.utc)
        assert iso(value) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert to_db_time(value) == utc.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert iso(None) is None and to_db_time(None) is None


# ---------------------------------------------------------------- writepath3


def test_a_first_event_stores_its_categories_text_and_the_macs_match_their_definition(
        client, site):
    """A new visitor's projection reuses the event's categories JSON: the stored texts are
    the event's and what the projection rebuilt from the ledger encodes to; a returning
    visitor's projection is encoded from its own state. The details digest and the read
    token are the HMACs docs/audit.md and consent.subjects define."""
    import base64
    import hashlib
    import hmac

    from consent import rawsql
    from consent.ledger import compute_states
    from consent.ledger.chain import canonical
    from consent.subjects import hmac_key

    body = {"action": "custom", "categories": {"advertising": True, "analytics": False,
                                               "functional": True},
            "page_url": "https://shop.example/p?q=1"}
    first = client.post(f"/api/v1/sites/{site['key']}/decisions", json=body,
                        headers={"User-Agent": "UA/1.0"})
    assert first.status_code == 201, first.get_json()
    answer = first.get_json()
    subject_row = db.session.execute(db.text(
        "SELECT pseudonym, secret FROM subjects WHERE public_id = :p"),
        {"p": answer["subject"]}).one()
    pseudonym, secret = subject_row

    def texts():
        # (CAST ... AS TEXT: the stored text itself; PostgreSQL's driver would parse JSON)
        event = db.session.execute(db.text(
            "SELECT CAST(categories AS TEXT) FROM consent_events WHERE subject = :s "
            "ORDER BY seq DESC"), {"s": pseudonym}).first()[0]
        state = db.session.execute(db.text(
            "SELECT CAST(categories AS TEXT) FROM consent_states WHERE subject = :s"),
            {"s": pseudonym}).scalar()
        rebuilt = [v for (site_id, subject), v in compute_states().items()
                   if subject == pseudonym][0]
        return event, state, rawsql.to_db_json(rebuilt["categories"])

    event_text, state_text, rebuilt_text = texts()
    assert state_text == event_text == rebuilt_text
    assert '"advertising":true' in state_text and '"analytics":false' in state_text
    # a returning visitor: the projection merges, encoded from the state itself
    again = client.post(f"/api/v1/sites/{site['key']}/decisions",
                        json={"action": "reject_all", "subject": answer["subject"],
                              "key": answer["key"]})
    assert again.status_code == 201
    event_text, state_text, rebuilt_text = texts()
    assert state_text == rebuilt_text and '"advertising":false' in state_text

    mac = hmac.digest(hmac_key(), b"read:" + pseudonym.encode(), "sha256")
    assert answer["read_token"] == base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode()
    details = db.session.execute(db.text(
        "SELECT d.ip_prefix, d.user_agent, d.page_url, e.details_digest FROM event_details d "
        "JOIN consent_events e ON e.event_id = d.event_id WHERE e.event_id = :e"),
        {"e": answer["event_id"]}).one()
    assert details[1] == "UA/1.0"
    expected = hmac.new(bytes.fromhex(secret), canonical(
        {"ip_prefix": details[0], "user_agent": details[1], "page_url": details[2]}
    ).encode(), hashlib.sha256).hexdigest()
    assert details[3] == expected


def test_the_hooks_made_lean_still_guard_the_write_and_every_admin_url(app, client, site):
    """What the cuts of writepath3 touched still does its work: the request checks refuse
    an oversize header and a malformed Origin on the write (nothing recorded); Sec-GPC
    and the CORS headers are read from the environ as before; a Vary already set is
    kept; the admin guard refuses an undecorated view under each admin prefix."""
    from tests.support.admin import admin_client, make_token
    from tests.support.api import bearer

    @app.get("/api/v1/audit/forgotten")
    def forgotten_audit():
        return {"secret": True}

    @app.get("/admin/forgotten-page")
    def forgotten_page():
        return "hidden figures"

    url = f"/api/v1/sites/{site['key']}/decisions"

    def events() -> int:
        return db.session.execute(db.text("SELECT COUNT(*) FROM consent_events")).scalar()

    before = events()
    big = client.post(url, json={"action": "accept_all"}, headers={"X-Big": "b" * 9000})
    assert big.status_code == 431 and big.mimetype == "application/problem+json"
    bad_origin = client.post(url, json={"action": "accept_all"},
                             headers={"Origin": "http://[::1"})
    assert bad_origin.status_code == 400
    assert events() == before

    gpc = client.post(url, json={"action": "accept_all"},
                      headers={"Sec-GPC": "1", "Origin": site["origin"]})
    assert gpc.status_code == 201 and gpc.get_json()["consent"]["gpc"] is True
    assert gpc.headers["Access-Control-Allow-Origin"] == site["origin"]
    assert gpc.headers["Vary"] == "Origin"
    config = client.get(f"/api/v1/sites/{site['key']}/config",
                        headers={"Origin": site["origin"]})
    vary = {v.strip() for v in config.headers["Vary"].split(",")}
    assert {"Accept-Language", "Origin"} <= vary

    token = bearer(make_token(["admin"]))
    assert app.test_client().get("/api/v1/audit/forgotten", headers=token).status_code == 403
    staff = admin_client(app, ("admin",), "lean-guard@example.com")
    page = staff.get("/admin/forgotten-page")
    assert page.status_code == 403 and b"hidden figures" not in page.data


def test_an_unknown_site_is_a_404_after_the_bodys_own_errors(client, site):
    """The write looks at the site's rules by region after validating the body: an
    unknown site still answers the body's 422 first, and 404 for a valid body."""
    bad = client.post("/api/v1/sites/no-such-site/decisions", json={"action": "maybe"})
    assert bad.status_code == 422
    assert client.post("/api/v1/sites/no-such-site/decisions",
                       json={"action": "accept_all"}).status_code == 404
    assert client.post("/api/v1/sites/no-such-site/decisions", json={"action": "accept_all"},
                       headers={"Origin": site["origin"]}).status_code == 404


def test_state_params_cover_every_state_column_as_the_orm_stores_them():
    """_state_params (spelled out for speed) gives every column of STATE_COLUMNS, JSON
    as compact text and times as naive UTC text, as a loop over the kinds would."""
    from datetime import datetime, timezone

    from consent import rawsql
    from consent.ledger.chain import (STATE_COLUMNS, _JSON_STATE, _TIME_STATE,
                                      _state_params)

    at = datetime(2026, 12, 2, 4, 5, 6, 7, tzinfo=timezone.utc)
    state = {"categories": {"b": True, "a": False}, "channels": {}, "changed": {"x": "y"},
             "policy_version": "v1", "locale": "de", "decided_at": at, "gpc_at": None,
             "last_action": "custom", "last_source": "banner", "last_event_id": "e1",
             "updated_at": at}
    params = _state_params(7, "p" * 32, state)
    assert set(params) == {"site_id", "subject", *STATE_COLUMNS}
    for key in STATE_COLUMNS:
        value = state[key]
        expected = (rawsql.to_db_json(value or {}) if key in _JSON_STATE else
                    rawsql.to_db_time(value) if key in _TIME_STATE else value)
        assert params[key] == expected, key
    assert _state_params(7, "p" * 32, state, '{"b":true,"a":false}')["categories"] \
        == params["categories"]


# ---------------------------------------------------------------- the head locked with
# the subject (PostgreSQL: one round trip fewer for a new visitor)


def test_new_and_returning_visitors_at_once_keep_every_stream_one_chain(site, database_url):
    """Through gunicorn (2 workers x 4 threads), 8 clients at once, each sending new
    visitors and, every third request, one of its earlier visitors again: every answer
    is 201, every stream's events are numbered 1..n without a gap or a repeat, and the
    ledger verifies. (On PostgreSQL a new visitor's stream head is locked by its
    subject's INSERT, a returning visitor's by the append: both must serialise the same
    stream's writers.)"""
    import http.client
    import json
    import secrets
    import threading

    import sqlalchemy as sa

    from tests.support.servers import AppServer

    server = AppServer(database_url, workers=2, threads=4)
    statuses: list[int] = []
    try:
        barrier = threading.Barrier(8)

        def client_(n: int):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            mine: list[tuple[str, str]] = []
            barrier.wait()
            for i in range(15):
                if i % 3 == 2:
                    visitor, key = mine[i % len(mine)]
                else:
                    visitor = f"c{n}v{i:02d}" + secrets.token_hex(8)
                    key = secrets.token_urlsafe(24)[:32]
                    mine.append((visitor, key))
                body = json.dumps({"action": "accept_all" if i % 2 else "reject_all",
                                   "subject": visitor, "key": key})
                conn.request("POST", f"/api/v1/sites/{site['key']}/decisions", body=body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                statuses.append(resp.status)
            conn.close()

        threads = [threading.Thread(target=client_, args=(n,), daemon=True)
                   for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        server.stop()
    assert statuses == [201] * 120
    assert len(ledger_ids(database_url)) == 120  # (and the ledger verifies)
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT stream, seq FROM consent_events")).all()
            heads = dict(conn.execute(sa.text("SELECT stream, seq FROM ledger_heads")).all())
    finally:
        engine.dispose()
    by_stream: dict[int, list[int]] = {}
    for stream, seq in rows:
        by_stream.setdefault(stream, []).append(seq)
    assert len(by_stream) > 1  # 80 new visitors over the site's 8 streams
    for stream, seqs in by_stream.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), stream
        assert heads[stream] == len(seqs)


@pytest.mark.skipif(os.environ.get("CONSENT_TEST_DB") != "postgresql",
                    reason="PostgreSQL's statements (SQLite's are traced above)")
def test_on_postgresql_a_new_visitor_locks_its_stream_head_in_the_subjects_insert(
        app, client, site, monkeypatch):
    """The statements on subjects and the ledger a decision sends to PostgreSQL: a new visitor's subject INSERT also
    locks its stream's head (one statement, when the head exists), then the append; for a
    returning visitor that INSERT changes and locks nothing, and the head is locked on
    its own after the visitor's key is proven."""
    import psycopg

    sent: list[str] = []
    execute = psycopg.Cursor.execute
    # (this thread's only: the patch is process-wide, and a background thread an earlier
    # test of this process left, such as a log integrator, may read the same tables)
    me = threading.get_ident()

    def recording(self, query, *args, **kwargs):
        text = str(query)
        if threading.get_ident() == me and any(
                table in text for table in (" subjects", "ledger_heads", "consent_events")):
            sent.append(text)
        return execute(self, query, *args, **kwargs)

    visitor, key = "P" * 22, "Q" * 32
    # Every stream's head exists after a few first events of other visitors.
    for n in range(40):
        assert _post(client, site["key"], {"action": "accept_all"}).status_code == 201
    monkeypatch.setattr(psycopg.Cursor, "execute", recording)
    first = _post(client, site["key"], {"action": "accept_all", "subject": visitor,
                                        "key": key})
    new_visitor, sent[:] = list(sent), []
    again = _post(client, site["key"], {"action": "reject_all", "subject": visitor,
                                        "key": key})
    returning = list(sent)
    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    assert first.status_code == 201 and again.status_code == 201
    assert len(new_visitor) == 2, new_visitor
    assert new_visitor[0].startswith("WITH s AS (INSERT INTO subjects")
    assert "FROM ledger_heads" in new_visitor[0] and "FOR UPDATE" in new_visitor[0]
    assert new_visitor[1].startswith("WITH ev AS (INSERT INTO consent_events")
    # (the same INSERT, which conflicts and so locks nothing; the visitor's key is
    # checked before its stream's head is locked)
    assert [q.split()[0] for q in returning] == ["WITH", "SELECT", "SELECT", "WITH"]
    assert returning[0] == new_visitor[0] and "FROM subjects" in returning[1]
    assert "FROM ledger_heads" in returning[2] and "FOR UPDATE" in returning[2]
    from consent.ledger import verify_ledger

    assert verify_ledger().ok


@pytest.mark.skipif(os.environ.get("CONSENT_TEST_DB") != "postgresql",
                    reason="the reused cursor is PostgreSQL's (consent.rawsql)")
def test_on_postgresql_writes_share_one_cursor_and_go_on_after_a_refused_one(
        app, client, site, monkeypatch):
    """The hot write path reuses one psycopg cursor per connection: writes, a replay and
    a refused write (its transaction rolled back mid-way) all run on the same cursor, and
    every answer is right; a replaced pool's connection gets a cursor of its own."""
    from consent import rawsql
    from consent.database import current_raw
    from consent.ledger import verify_ledger

    assert _post(client, site["key"], {"action": "accept_all"}).status_code == 201
    used: list = []
    cursor_and_dialect = rawsql._cursor_and_dialect

    def recording():
        cursor, dialect = cursor_and_dialect()
        if current_raw.get() is not None:
            used.append(cursor)
        return cursor, dialect

    monkeypatch.setattr(rawsql, "_cursor_and_dialect", recording)
    visitor, key = "R" * 22, "S" * 32
    body = {"action": "accept_all", "subject": visitor, "key": key,
            "client_event_id": "reused-cursor-01"}
    assert _post(client, site["key"], body).status_code == 201
    assert _post(client, site["key"], body).status_code == 200  # the replay
    assert _post(client, site["key"], {**body, "key": "T" * 32,
                                       "client_event_id": "reused-cursor-02"}
                 ).status_code == 403  # refused inside the transaction, rolled back
    for _ in range(3):
        assert _post(client, site["key"], {"action": "reject_all", "subject": visitor,
                                           "key": key}).status_code == 201
    assert len(used) >= 12 and len(set(map(id, used))) == 1
    assert not used[0].closed
    first = used[0]
    used.clear()
    db.engine.dispose()
    assert _post(client, site["key"], {"action": "reject_all", "subject": visitor,
                                       "key": key}).status_code == 201
    assert used and all(c is used[0] for c in used) and used[0] is not first
    assert used[0].connection is not first.connection
    monkeypatch.setattr(rawsql, "_cursor_and_dialect", cursor_and_dialect)
    assert verify_ledger().ok
