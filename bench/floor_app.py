"""The write's database floor: the bare Flask endpoint plus the consent write's SQLite work.

`bench/write_bench.py --floor` serves this next to the bare endpoint and the app. Each
request parses the JSON body as the bare endpoint does, then writes what a consent
write writes, with the app's own connection settings (WAL, `synchronous`, no automatic
checkpoints), its writer queue and its background checkpointer (consent.database):

    BEGIN IMMEDIATE; INSERT subject; SELECT stream head; INSERT event (with its hash);
    INSERT details; UPDATE head; UPSERT projection; COMMIT

The values are made with the least Python that gives rows of the same shape and size
(one SHA-256 for the pseudonym, one for the device key, one for the event hash; no
validation, no canonical JSON, no listeners, no rate limits or request checks). So its
requests/s is the most that any Flask write path recording these rows this durably
could reach on the same machine: a ceiling for the write ratio, not a product.

On PostgreSQL it sends the app's own two statements (consent.subjects and
consent.ledger.chain: the subject insert that also locks the stream head, then the
event, details, head and projection in one statement) between BEGIN and COMMIT, as
the write does.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid
from datetime import datetime, timezone

from flask import Flask, jsonify, request

from config import Config
from consent.database import WAL_SIZE_LIMIT, _ensure_checkpointer, _writer_queue_for

app = Flask(__name__)

_URL = os.environ["CONSENT_DATABASE_URL"]
_DB = os.path.abspath(_URL.removeprefix("sqlite:///"))
_state: dict = {}

SUBJECT = ("INSERT INTO subjects (site_id, public_id, pseudonym, secret, key_hash, is_minor, "
           "created_at) VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT (site_id, public_id) DO "
           "NOTHING RETURNING id")
HEAD = "SELECT seq, hash FROM ledger_heads WHERE site_id = ? AND stream = ?"
EVENT = ("INSERT INTO consent_events (event_id, site_id, stream, seq, subject, recorded_at, "
         "action, source, categories, channels, policy_version, locale, meta, details_digest, "
         "idempotency_key, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, 'banner', ?, NULL, "
         "NULL, ?, ?, ?, ?, ?, ?) ON CONFLICT (site_id, subject, idempotency_key) DO NOTHING "
         "RETURNING id")
DETAILS = ("INSERT INTO event_details (event_id, ip_prefix, user_agent, page_url) "
           "VALUES (?, ?, ?, ?)")
MOVE_HEAD = "UPDATE ledger_heads SET seq = ?, hash = ? WHERE site_id = ? AND stream = ?"
STATE = ("INSERT INTO consent_states (site_id, subject, categories, channels, changed, "
         "policy_version, locale, decided_at, gpc_at, last_action, last_source, "
         "last_event_id, updated_at) VALUES (?, ?, ?, '{}', ?, NULL, ?, ?, NULL, ?, "
         "'banner', ?, ?) ON CONFLICT (site_id, subject) DO UPDATE SET categories = "
         "excluded.categories, channels = excluded.channels, changed = excluded.changed, "
         "policy_version = excluded.policy_version, locale = excluded.locale, decided_at = "
         "excluded.decided_at, gpc_at = excluded.gpc_at, last_action = excluded.last_action, "
         "last_source = excluded.last_source, last_event_id = excluded.last_event_id, "
         "updated_at = excluded.updated_at")


def _connection():
    """This process's connection, set up as consent.database sets up the app's."""
    if _state.get("pid") != os.getpid():
        conn = sqlite3.connect(_DB, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {Config.CONSENT_SQLITE_BUSY_TIMEOUT * 1000}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        conn.execute(f"PRAGMA synchronous = {Config.CONSENT_SQLITE_SYNCHRONOUS}")
        conn.execute("PRAGMA foreign_keys = ON")
        _ensure_checkpointer(_DB, float(Config.CONSENT_SQLITE_CHECKPOINT_SECONDS),
                             int(Config.CONSENT_SQLITE_WAL_RESTART_BYTES))
        site_id, streams = conn.execute(
            "SELECT id, ledger_streams FROM sites WHERE key = 'bench'").fetchone()
        # every stream's head row, as the write's first event of a stream creates it
        conn.executemany("INSERT INTO ledger_heads (site_id, stream, seq, hash) VALUES "
                         "(?, ?, 0, ?) ON CONFLICT DO NOTHING",
                         [(site_id, n, "0" * 64) for n in range(max(1, streams))])
        _state.update(pid=os.getpid(), conn=conn, queue=_writer_queue_for(_DB),
                      site=site_id, streams=streams)
    return _state["conn"], _state["queue"], _state["site"], _state["streams"]


@app.post("/floor")
def floor():
    """Parse the body, write a consent write's rows in one transaction, answer 201."""
    body = request.get_json()
    conn, queue, site, streams = _connection()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    stamp = now.isoformat(" ")
    pseudonym = hashlib.sha256(body["subject"].encode()).hexdigest()[:32]
    key_hash = hashlib.sha256(body["key"].encode()).hexdigest()
    categories = json.dumps({"essential": True, "functional": False, **body["categories"]})
    event_id = uuid.uuid4().hex
    stream = int(pseudonym[:8], 16) % max(1, streams)
    # the notice's digest, as the write records it (a SHA-256: the same bytes)
    meta = (json.dumps({"notice": hashlib.sha256(body["revision"].encode()).hexdigest()})
            if body.get("revision") else None)
    queue.acquire()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(SUBJECT, (site, body["subject"], pseudonym, key_hash, key_hash,
                                   stamp)).fetchone()
            seq, prev = conn.execute(HEAD, (site, stream)).fetchone()
            digest = hashlib.sha256(f"{prev}{event_id}{categories}".encode()).hexdigest()
            conn.execute(EVENT, (event_id, site, stream, seq + 1, pseudonym, stamp, "custom",
                                 categories, body.get("locale"), meta, digest,
                                 body["client_event_id"], prev, digest)).fetchone()
            conn.execute(DETAILS, (event_id, "127.0.0.0/24", "wrk", body.get("page_url")))
            conn.execute(MOVE_HEAD, (seq + 1, digest, site, stream))
            conn.execute(STATE, (site, pseudonym, categories, json.dumps(
                {f"category:{k}": stamp for k in ("essential", "functional", "analytics",
                                                  "advertising")}),
                body.get("locale"), stamp, "custom", event_id, stamp))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        queue.release()
    return jsonify({"event_id": event_id}), 201


def _pg_connection():
    """This process's psycopg connection, and the app's two statements in its style."""
    if _state.get("pid") != os.getpid():
        import re

        import psycopg

        from consent.ledger.chain import _APPEND_PG_ONCE
        from consent.subjects import _INSERT_REF_ONCE_HEAD

        conn = psycopg.connect(_URL.replace("postgresql+psycopg://", "postgresql://"))
        param = re.compile(r"(?<!:):(\w+)")
        site_id, streams = conn.execute(
            "SELECT id, ledger_streams FROM sites WHERE key = 'bench'").fetchone()
        conn.execute("INSERT INTO ledger_heads (site_id, stream, seq, hash) SELECT %s, n, 0, "
                     "%s FROM generate_series(0, %s) n ON CONFLICT DO NOTHING",
                     (site_id, "0" * 64, max(1, streams) - 1))
        conn.commit()
        _state.update(pid=os.getpid(), conn=conn, cursor=conn.cursor(), site=site_id,
                      streams=streams,
                      subject_sql=param.sub(r"%(\1)s", _INSERT_REF_ONCE_HEAD),
                      append_sql=param.sub(r"%(\1)s", _APPEND_PG_ONCE))
    return _state


@app.post("/floor-pg")
def floor_pg():
    """As floor(), on PostgreSQL with the app's statements: two round trips and COMMIT."""
    body = request.get_json()
    st = _pg_connection()
    site, cursor = st["site"], st["cursor"]
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    pseudonym = hashlib.sha256(body["subject"].encode()).hexdigest()[:32]
    key_hash = hashlib.sha256(body["key"].encode()).hexdigest()
    categories = json.dumps({"essential": True, "functional": False, **body["categories"]})
    event_id = uuid.uuid4().hex
    stream = int(pseudonym[:8], 16) % max(1, st["streams"])
    meta = (json.dumps({"notice": hashlib.sha256(body["revision"].encode()).hexdigest()})
            if body.get("revision") else None)
    try:
        cursor.execute(st["subject_sql"], {
            "site_id": site, "public_id": body["subject"], "pseudonym": pseudonym,
            "secret": key_hash, "key_hash": key_hash, "is_minor": False, "created_at": now,
            "stream": stream})
        _id, seq, prev = cursor.fetchone()
        digest = hashlib.sha256(f"{prev}{event_id}{categories}".encode()).hexdigest()
        changed = json.dumps({f"category:{k}": now.isoformat() + "Z" for k in (
            "essential", "functional", "analytics", "advertising")})
        cursor.execute(st["append_sql"], {
            "event_id": event_id, "site_id": site, "stream": stream, "seq": seq + 1,
            "subject": pseudonym, "recorded_at": now, "action": "custom", "source": "banner",
            "categories": categories, "channels": None, "policy_version": None,
            "locale": body.get("locale"), "meta": meta, "details_digest": digest,
            "idempotency_key": body["client_event_id"], "prev_hash": prev, "hash": digest,
            "ip_prefix": "127.0.0.0/24", "user_agent": "wrk", "page_url": body.get("page_url"),
            "with_details": True, "s_categories": categories, "s_channels": "{}",
            "s_changed": changed, "s_policy_version": None, "s_locale": body.get("locale"),
            "s_decided_at": now, "s_gpc_at": None, "s_last_action": "custom",
            "s_last_source": "banner", "s_last_event_id": event_id, "s_updated_at": now})
        cursor.fetchone()
        st["conn"].commit()
    except BaseException:
        st["conn"].rollback()
        raise
    return jsonify({"event_id": event_id}), 201
