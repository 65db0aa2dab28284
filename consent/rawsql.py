"""Precompiled-free SQL for the hot write path.

Building SQLAlchemy statements costs more than executing them on SQLite, and the consent
write is benchmarked against a bare Flask endpoint. The few statements of that path are
written once here as plain SQL with `:name` parameters and sent straight to the driver
(converted to psycopg's `%(name)s` style on PostgreSQL). Values are converted the same
way the ORM column types store them, so ORM reads see identical rows.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from functools import lru_cache

from sqlalchemy import exc as sa_exc

from .database import current_raw
from .extensions import db

_PARAM = re.compile(r"(?<!:):(\w+)")


@lru_cache(maxsize=256)
def _for_dialect(sql: str, dialect: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql) if dialect == "postgresql" else sql


# PostgreSQL: the last hot connection and one cursor on it, reused by the write path's
# statements (psycopg builds a cursor's adapters and state on each cursor(): ~2% of a
# write for its two statements). A psycopg cursor holds its whole result client-side, so
# the next execute on it loses nothing a caller still reads. (One per process: with
# several threads on their own connections they take turns at it, each still on a cursor
# of its own connection. SQLite's cursors are cheap and an unfinished statement on one
# would be reset by the next, so they are not reused.)
_pg_cursor: tuple = (None, None)


def _cursor_and_dialect():
    """A DBAPI cursor on the current write transaction's connection (or the session's)."""
    global _pg_cursor
    raw = current_raw.get()
    if raw is not None:
        conn, dialect_ = raw
        if dialect_.name == "postgresql":
            known = _pg_cursor
            if known[0] is conn and not known[1].closed:
                return known[1], dialect_
            cursor = conn.cursor()
            _pg_cursor = (conn, cursor)
            return cursor, dialect_
        return conn.cursor(), dialect_
    conn = db.session.connection()
    return conn.connection.dbapi_connection.cursor(), conn.dialect


def _run(sql: str, params: dict | None):
    cursor, dialect_ = _cursor_and_dialect()
    statement = _for_dialect(sql, dialect_.name)
    try:
        cursor.execute(statement, params or {})
    except dialect_.loaded_dbapi.Error as exc:
        # Surface driver errors as SQLAlchemy's, which callers already handle.
        raise sa_exc.DBAPIError.instance(statement, params, exc,
                                         dialect_.loaded_dbapi.Error) from exc
    return cursor


def _done(cursor) -> None:
    """Close CURSOR unless it is the reused PostgreSQL one."""
    if cursor is not _pg_cursor[1]:
        cursor.close()


def run(sql: str, params: dict | None = None) -> None:
    """Execute a statement inside the session's transaction."""
    _done(_run(sql, params))


def one(sql: str, params: dict | None = None) -> tuple | None:
    """The first row of a query as a tuple, or None."""
    cursor = _run(sql, params)
    try:
        row = cursor.fetchone()
    finally:
        _done(cursor)
    return None if row is None else tuple(row)


def all_rows(sql: str, params: dict | None = None) -> list[tuple]:
    """Every row of a query as tuples."""
    cursor = _run(sql, params)
    try:
        return [tuple(r) for r in cursor.fetchall()]
    finally:
        _done(cursor)


def one_dict(sql: str, params: dict | None = None) -> dict | None:
    """The first row of a query as a dict keyed by column name, or None."""
    cursor = _run(sql, params)
    try:
        row = cursor.fetchone()
        names = [d[0] for d in cursor.description] if cursor.description else []
    finally:
        _done(cursor)
    return None if row is None else dict(zip(names, row))


def dialect() -> str:
    """Name of the database dialect in use ('sqlite' or 'postgresql')."""
    raw = current_raw.get()
    if raw is not None:
        return raw[1].name  # (asking db.session would create a session)
    return db.session.get_bind().dialect.name


# As consent.database.iso: the last datetime written and its text (a write stores its
# recorded_at in the event and twice in the projection).
_last_db_time: tuple = (None, None)


def to_db_time(value: datetime | None) -> str | None:
    """An aware datetime as the naive-UTC text both databases and the ORM type agree on."""
    global _last_db_time
    if value is None:
        return None
    last = _last_db_time
    if last[0] is value:
        return last[1]
    given = value
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    # the strftime("%Y-%m-%d %H:%M:%S.%f") text, at half the cost
    text = value.isoformat(sep=" ", timespec="microseconds")[:26]
    _last_db_time = (given, text)
    return text


def from_db_time(value) -> datetime | None:
    """A timestamp read by raw SQL (text on SQLite, naive datetime on PostgreSQL)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc)


# json.dumps with options builds a new encoder on every call; this one is built once.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def to_db_json(value) -> str | None:
    """A JSON column value (None stays SQL NULL, like the ORM's JSON type with none_as_null)."""
    if value is None:
        return None
    return "{}" if value == {} else _COMPACT.encode(value)


def from_db_json(value):
    """A JSON column read by raw SQL (text on SQLite, parsed already on PostgreSQL)."""
    if value is None or not isinstance(value, (str, bytes)):
        return value
    return json.loads(value)


def insert_rows(table, rows: list[dict]) -> None:
    """INSERT many rows into a Table, converting JSON and UTC timestamp columns the way
    their ORM types store them (usable inside raw and ORM write transactions alike)."""
    if not rows:
        return
    from .database import UTCDateTime
    import sqlalchemy as sa

    columns = list(rows[0])
    kinds = {}
    for name in columns:
        coltype = table.c[name].type
        kinds[name] = ("json" if isinstance(coltype, sa.JSON)
                       else "time" if isinstance(coltype, UTCDateTime) else None)
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "
           f"({', '.join(':' + c for c in columns)})")
    cursor, dialect_ = _cursor_and_dialect()
    statement = _for_dialect(sql, dialect_.name)
    params = []
    for row in rows:
        converted = {}
        for name in columns:
            value = row[name]
            if kinds[name] == "json":
                value = to_db_json(value)
            elif kinds[name] == "time":
                value = to_db_time(value)
            converted[name] = value
        params.append(converted)
    try:
        cursor.executemany(statement, params)
    except dialect_.loaded_dbapi.Error as exc:
        raise sa_exc.DBAPIError.instance(statement, params, exc,
                                         dialect_.loaded_dbapi.Error) from exc
    finally:
        _done(cursor)
