"""Database plumbing: engine tuning, UTC timestamps, and write transactions."""
from __future__ import annotations

import contextvars
import fcntl
import os
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.types import TypeDecorator

from .extensions import db

_immediate: contextvars.ContextVar[bool] = contextvars.ContextVar("immediate", default=False)
# (DBAPI connection, dialect) of the current write transaction, for consent.rawsql.
current_raw: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("current_raw",
                                                                          default=None)


class DatabaseUnavailable(Exception):
    """The database did not accept the write (stopped, locked for too long)."""


def utcnow() -> datetime:
    """Current time in UTC, timezone-aware."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC: identical behaviour on SQLite and PostgreSQL."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


# The last two datetimes `iso` formatted and their texts. A consent write formats its
# one recorded_at several times (hash, projection, view, answer), with the view's
# expiresAt in between; datetimes are immutable and the tuples hold the objects, so `is`
# on them can only match those same values.
_last_iso: tuple = (None, None)
_prev_iso: tuple = (None, None)


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 with microseconds and a Z, the one form used in hashes and JSON."""
    global _last_iso, _prev_iso
    if dt is None:
        return None
    last = _last_iso
    if last[0] is dt:
        return last[1]
    prev = _prev_iso
    if prev[0] is dt:
        return prev[1]
    given = dt
    if dt.tzinfo is not timezone.utc:
        dt = dt.astimezone(timezone.utc)
    # isoformat is twice as fast as strftime and gives the same text (from year 1000 on)
    text = dt.isoformat(timespec="microseconds")[:26] + "Z"
    _prev_iso, _last_iso = last, (given, text)
    return text


def parse_iso(value: str | None) -> datetime | None:
    """The datetime of a text `iso` wrote; None for None or any other text."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def install_engine_hooks(engine: Engine, app) -> None:
    """Tune SQLite (WAL, busy timeout, real BEGIN IMMEDIATE for writers)."""
    if engine.dialect.name != "sqlite":
        return
    busy_ms = int(app.config["CONSENT_SQLITE_BUSY_TIMEOUT"]) * 1000
    synchronous = app.config["CONSENT_SQLITE_SYNCHRONOUS"]
    page_size = int(app.config["CONSENT_SQLITE_PAGE_SIZE"])

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if engine.url.database not in (None, "", ":memory:"):
            # Only a new, empty database takes it (before WAL mode is set); an existing
            # one keeps its page size (VACUUM outside WAL mode converts it).
            cur.execute(f"PRAGMA page_size = {page_size}")
            cur.execute("PRAGMA journal_mode = WAL")
            # Checkpoints (the only fsyncs in WAL/NORMAL) run in a background thread
            # (see _checkpointer) instead of inside whichever request crosses the
            # threshold: on a slow disk that fsync cost a millisecond per request.
            cur.execute("PRAGMA wal_autocheckpoint = 0")
            # ...and the WAL file is trimmed when a writer restarts it after a checkpoint.
            cur.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        cur.execute(f"PRAGMA synchronous = {synchronous}")
        cur.execute("PRAGMA foreign_keys = ON")
        # `INSERT OR REPLACE` deletes the row it replaces; with this on, that fires the
        # append-only tables' DELETE triggers (consent.ledger.chain), which refuse it.
        cur.execute("PRAGMA recursive_triggers = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock up front: a deferred transaction that reads first
        # and writes later can fail at once with SQLITE_BUSY instead of waiting.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if _immediate.get() else "BEGIN")


def _is_transient(exc: OperationalError) -> bool:
    """Lock contention or a dropped connection: worth one more try."""
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(
        marker in text
        for marker in ("database is locked", "deadlock detected", "could not serialize",
                       "server closed the connection", "connection refused",
                       "terminating connection", "connection is closed")
    )


# The page size of new databases, the checkpoint interval and the WAL size that makes a
# writer finish a checkpoint are settings (config.py, with why their defaults).
_checkpointers: set[tuple[str, int]] = set()
_checkpointers_lock = threading.Lock()
# Largest WAL file left on disk when SQLite restarts the log from its beginning.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# Background checkpoint passes continue until a pass found fewer new frames than this;
# the rest is copied by a writer that holds the writer queue (see _SQLiteWriterQueue).
FINISH_CHECKPOINT_FRAMES = 200
# Database paths whose WAL a writer of this process should finish checkpointing.
_finish_wanted: set[str] = set()


def _ensure_checkpointer(path: str, interval: float, restart_bytes: int) -> None:
    """Start this process's WAL checkpoint thread for PATH (once per process)."""
    key = (path, os.getpid())
    if key in _checkpointers:
        return
    with _checkpointers_lock:
        if key in _checkpointers:
            return
        _checkpointers.add(key)
        threading.Thread(target=_checkpoint_loop, args=(path, interval, restart_bytes),
                         daemon=True, name="sqlite-wal-checkpoint").start()


def _checkpoint_loop(path: str, interval: float, restart_bytes: int) -> None:
    """Copy the WAL back into the database file every INTERVAL seconds.

    PASSIVE checkpoints take no lock that writers wait for, but under steady load they
    never copy everything: frames committed during a pass are left over, so SQLite never
    starts the WAL again from its beginning and it grows without bound. So: passes are
    repeated until few new frames came in meanwhile, and the next writer of this process
    copies that small rest while it still holds the writer queue (no other write can be
    in progress then), which lets the writer after it restart the WAL (journal_size_limit
    trims the file then). That costs that writer a few milliseconds (copy and two
    fsyncs), so it is done only once the WAL holds RESTART_BYTES.

    Before, a TRUNCATE checkpoint here held SQLite's own write lock for ~200 ms whenever
    the WAL passed 50,000 pages, and writers slept in SQLite's busy handler meanwhile:
    that was the benchmark's p99. The rest is not copied by this thread under our file
    lock either: the thread must take the GIL back after every call, and a busy request
    thread makes it wait up to the 5 ms switch interval each time, with the lock held.

    One process checkpoints at a time (a file lock elects it; the kernel frees it if
    that process dies, and another takes over): every worker checkpointing the same WAL
    only burnt CPU.
    """
    import logging
    import sqlite3

    log = logging.getLogger(__name__)
    conn = None
    elected = None
    while True:
        time.sleep(interval)
        if not os.path.exists(path):
            # The database is gone (a test's temporary one, say): so is the work.
            if conn is not None:
                conn.close()
            if elected is not None:
                os.close(elected)
            with _checkpointers_lock:
                _checkpointers.discard((path, os.getpid()))
            return
        try:
            if elected is None:
                fd = os.open(path + ".ckptlock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue  # another process checkpoints; ask again next time
                elected = fd
            if conn is None:
                conn = sqlite3.connect(path, isolation_level=None, timeout=5,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            if path in _finish_wanted:
                # No writer of this process came by since the last pass: finish here.
                _finish_wanted.discard(path)
                with _writer_queue_for(path).hold():
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                continue
            frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
            for _ in range(4):
                if frames <= 0:
                    break
                now = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
                added, frames = now - frames, now
                if added < FINISH_CHECKPOINT_FRAMES:
                    break
            if frames * page_size >= restart_bytes:
                _finish_wanted.add(path)
        except Exception as exc:  # noqa: BLE001 - keep checkpointing after a hiccup
            log.warning("WAL checkpoint failed: %s", exc)
            conn = None


class _SQLiteWriterQueue:
    """Queues writers of one SQLite file across threads and processes.

    SQLite's own busy handler polls with sleeps of up to 100 ms, which under
    contention leaves the database idle while writers sleep. An OS file lock wakes
    the next writer as soon as the previous one commits; the kernel releases it if a
    process dies (kill -9), so a crashed writer never blocks the others.
    """

    def __init__(self, path: str):
        self.db_path = path
        self.path = path + ".writelock"
        self.thread_lock = threading.Lock()
        self.fd: int | None = None
        self.checkpoint_conn = None

    @contextmanager
    def hold(self):
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self) -> None:
        """Wait for this thread's turn, then for this process's (hold() as two calls)."""
        self.thread_lock.acquire()
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.thread_lock.release()
            raise

    def release(self) -> None:
        """Finish a wanted checkpoint (see _checkpoint_loop), then let the next writer in."""
        try:
            if self.db_path in _finish_wanted:
                self._finish_checkpoint()
        finally:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                self.thread_lock.release()

    def _finish_checkpoint(self) -> None:
        """Copy the rest of the WAL while no write is in progress (see _checkpoint_loop)."""
        import sqlite3

        _finish_wanted.discard(self.db_path)
        try:
            if self.checkpoint_conn is None:
                self.checkpoint_conn = sqlite3.connect(
                    self.db_path, isolation_level=None, timeout=5, check_same_thread=False)
                self.checkpoint_conn.execute(
                    f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self.checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except Exception as exc:  # noqa: BLE001 - the write itself is done; never fail it
            import logging

            logging.getLogger(__name__).warning("WAL checkpoint failed: %s", exc)
            self.checkpoint_conn = None


_queues: dict[str, _SQLiteWriterQueue] = {}


def _writer_queue(engine=None) -> _SQLiteWriterQueue | None:
    engine = engine if engine is not None else db.engine
    pid = os.getpid()
    known = _queue_by_engine.get(engine)
    if known is not None and known[0] == pid:
        return known[1]  # (the hot path: no path arithmetic per write)
    queue = None
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        path = os.path.abspath(engine.url.database)
        config = current_app.config
        _ensure_checkpointer(path, float(config["CONSENT_SQLITE_CHECKPOINT_SECONDS"]),
                             int(config["CONSENT_SQLITE_WAL_RESTART_BYTES"]))
        queue = _writer_queue_for(path)
    _queue_by_engine[engine] = (pid, queue)
    return queue


# {engine: (pid, its writer queue or None)}; weak, so a disposed app's engine goes.
_queue_by_engine: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _writer_queue_for(path: str) -> _SQLiteWriterQueue:
    """This process's writer queue of the database file PATH."""
    queue = _queues.get(path)
    if queue is None or os.getpid() != _queue_pid.get(path):
        # A forked worker must not share the parent's file description (flock is per
        # open file description), so each process opens its own.
        queue = _queues[path] = _SQLiteWriterQueue(path)
        _queue_pid[path] = os.getpid()
    return queue


_queue_pid: dict[str, int] = {}


@contextmanager
def write_transaction() -> Iterator[sa.orm.Session]:
    """One atomic write: commits on success, rolls back on any error.

    On SQLite the transaction starts with BEGIN IMMEDIATE so concurrent writers queue
    on the busy timeout instead of failing. Callers that need retries on transient
    failures use `run_write`.
    """
    session = db.session()
    if session.in_transaction():
        # End the read snapshot of this request so the write starts from fresh data.
        session.commit()
    queue = _writer_queue()
    token = _immediate.set(True)
    try:
        if queue is None:
            with session.begin():
                yield _with_raw(session)
        else:
            with queue.hold(), session.begin():
                yield _with_raw(session)
    finally:
        _immediate.reset(token)
        current_raw.set(None)


def _with_raw(session):
    """Remember the transaction's DBAPI connection so raw SQL skips the session lookup."""
    conn = session.connection()
    current_raw.set((conn.connection.dbapi_connection, conn.dialect))
    return session


_hot = threading.local()
# Connections a forked process inherited: never used, and never closed either (closing a
# PostgreSQL connection from the child would end the parent's session).
_inherited: list = []


def _hot_connection(engine):
    """This thread's pooled DBAPI connection for the hot write path.

    Checked out of the engine's pool once and kept: a checkout and check-in (with its
    reset rollback) per request cost more than some of the write's statements. A new
    pool (engine.dispose()) or a forked process gets a fresh one.
    """
    pid = os.getpid()
    held = getattr(_hot, "held", None)
    if held is not None:
        pool, conn, held_pid = held
        if pool is engine.pool and held_pid == pid:
            return conn
        _hot.held = None
        if held_pid != pid:
            _inherited.append(conn)
        else:
            try:
                conn.close()  # back to the pool it came from
            except Exception:  # noqa: BLE001 - an old pool's connection may be gone
                pass
    try:
        conn = engine.raw_connection()
    except OperationalError:
        raise
    except Exception as exc:  # noqa: BLE001 - a driver error while connecting
        raise DatabaseUnavailable(str(exc)) from exc
    _hot.held = (engine.pool, conn, pid)
    return conn


def _drop_hot_connection(conn) -> None:
    """Forget a broken hot connection (the next write connects again)."""
    _hot.held = None
    try:
        conn.invalidate()
    except Exception:  # noqa: BLE001 - it is broken already
        pass


def _raw_setup():
    """(engine, its writer queue or None, this thread's hot connection); ends this
    request's ORM read snapshot first, so reads after the write see it."""
    if db.session.registry.has():  # (asking db.session() would create a session)
        session = db.session()
        if session.in_transaction():
            session.commit()
    engine = _app_engine()
    return engine, _writer_queue(engine), _hot_connection(engine)


# The last app whose engine the hot path asked for, and that engine: Flask-SQLAlchemy's
# `db.engine` looks the app up in a weak dictionary (two weak references) on every call,
# and an app's engine never changes (dispose() keeps the object).
_engine_of: tuple = (None, None)


def _app_engine():
    """The current app's default engine (db.engine), remembered for the last app."""
    global _engine_of
    app = current_app._get_current_object()
    known = _engine_of
    if known[0] is app:
        return known[1]
    engine = db.engine
    _engine_of = (app, engine)
    return engine


def _raw_once(engine, queue, conn, fn, args, kwargs):
    """FN(*ARGS, **KWARGS) in one write transaction on CONN, without the ORM session (the
    hot path: plain calls, no generator-based context managers). Everything FN does must
    use consent.rawsql (ledger listeners do), which finds the connection through
    `current_raw`."""
    dialect = engine.dialect
    dbapi_conn = conn.dbapi_connection
    try:
        if queue is not None:
            queue.acquire()
        try:
            try:
                if dialect.name == "sqlite":
                    dbapi_conn.execute("BEGIN IMMEDIATE")
                current_raw.set((dbapi_conn, dialect))
                result = fn(*args, **kwargs)
                dbapi_conn.commit()
                return result
            except BaseException:
                try:
                    dbapi_conn.rollback()
                except Exception:  # noqa: BLE001 - the connection may be gone
                    _drop_hot_connection(conn)
                raise
            finally:
                current_raw.set(None)
        finally:
            if queue is not None:
                queue.release()
    except dialect.loaded_dbapi.Error as exc:
        # commit/BEGIN failures come straight from the driver
        raise sa.exc.DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error) from exc


def run_raw_write(fn, *args, attempts: int = 3, **kwargs):
    """Like run_write, on a raw transaction (hot path; FN must only use consent.rawsql)."""
    delay = 0.05
    for attempt in range(1, attempts + 1):
        try:
            return _raw_once(*_raw_setup(), fn, args, kwargs)
        except IntegrityError:
            if attempt == attempts:
                raise
            time.sleep(delay)
        except OperationalError as exc:
            if attempt == attempts or not _is_transient(exc):
                current_app.logger.warning("write failed: %s", exc.orig or exc)
                raise DatabaseUnavailable(str(exc.orig or exc)) from exc
            time.sleep(delay)
            delay *= 4


def run_write(fn, *args, attempts: int = 3, **kwargs):
    """Run fn inside write_transaction, retrying transient database failures."""
    delay = 0.05
    for attempt in range(1, attempts + 1):
        try:
            with write_transaction():
                return fn(*args, **kwargs)
        except IntegrityError:
            # Two writers raced to create the same row (e.g. a visitor id on
            # PostgreSQL); the retry sees the winner's row.
            db.session.rollback()
            if attempt == attempts:
                raise
            time.sleep(delay)
        except OperationalError as exc:
            db.session.rollback()
            if attempt == attempts or not _is_transient(exc):
                current_app.logger.warning("write failed: %s", exc.orig or exc)
                raise DatabaseUnavailable(str(exc.orig or exc)) from exc
            time.sleep(delay)
            delay *= 4
