"""Database plumbing: engine tuning, UTC timestamps, and write transactions."""
from __future__ import annotations

import contextvars
import fcntl
import os
import threading
import time
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


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 with microseconds and a Z, the one form used in hashes and JSON."""
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def install_engine_hooks(engine: Engine, app) -> None:
    """Tune SQLite (WAL, busy timeout, real BEGIN IMMEDIATE for writers)."""
    if engine.dialect.name != "sqlite":
        return
    busy_ms = int(app.config["CONSENT_SQLITE_BUSY_TIMEOUT"]) * 1000
    synchronous = app.config["CONSENT_SQLITE_SYNCHRONOUS"]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute(f"PRAGMA synchronous = {synchronous}")
        cur.execute("PRAGMA foreign_keys = ON")
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


class _SQLiteWriterQueue:
    """Queues writers of one SQLite file across threads and processes.

    SQLite's own busy handler polls with sleeps of up to 100 ms, which under
    contention leaves the database idle while writers sleep. An OS file lock wakes
    the next writer as soon as the previous one commits; the kernel releases it if a
    process dies (kill -9), so a crashed writer never blocks the others.
    """

    def __init__(self, path: str):
        self.path = path + ".writelock"
        self.thread_lock = threading.Lock()
        self.fd: int | None = None

    @contextmanager
    def hold(self):
        with self.thread_lock:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


_queues: dict[str, _SQLiteWriterQueue] = {}


def _writer_queue() -> _SQLiteWriterQueue | None:
    engine = db.engine
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    path = os.path.abspath(engine.url.database)
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
                yield session
        else:
            with queue.hold(), session.begin():
                yield session
    finally:
        _immediate.reset(token)


def run_write(fn, *args, attempts: int = 3, **kwargs):
    """Run fn inside write_transaction, retrying transient database failures."""
    delay = 0.05
    for attempt in range(1, attempts + 1):
        try:
            with write_transaction():
                return fn(*args, **kwargs)
        except IntegrityError as exc:
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
