"""Audit export (CSV, JSON Lines) with a signed manifest, and its offline verifier.

An export is one file: a row per ledger event carrying every hashed field plus `prev_hash`
and `hash`; then the webhook delivery log (who was told about which event, and when: one
row per notification, each with its own hash); then one last line, the manifest (row
count, first and last hash, a digest of every row hash, time range, filters, per-stream
ranges, retention checkpoints, count and digest of the delivery rows), signed with the
server's Ed25519 key. `verify_export_file` needs only the file (and, to rule out a
re-signed file, the server's public key): it recomputes each row's hash, checks the links
between consecutive rows of a stream, and checks the manifest and its signature.

Signing key: CONSENT_SIGNING_KEY (see consent.ledger.keys; never derived from SECRET_KEY
and never stored in the database, so somebody who can write to the database cannot forge
a manifest or a checkpoint).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from array import array
from dataclasses import dataclass, field
from itertools import accumulate, islice, repeat
from operator import sub
from datetime import datetime, timezone
from typing import Callable, Iterator

import click
import sqlalchemy as sa

from . import csvcells
from .ledger import ACTIONS, GENESIS, canonical, chain_hash, hashed_fields
from .ledger.chain import CLOCK_SLACK, backdated

# /2 added the delivery rows; files of /1 (no delivery rows) still verify.
FORMAT = "consent-export/2"
FORMATS = ("consent-export/1", FORMAT)
COLUMNS = ("event_id", "site", "stream", "seq", "subject", "recorded_at", "action", "source",
           "categories", "channels", "policy_version", "locale", "meta", "details_digest",
           "idempotency_key", "prev_hash", "hash")
JSON_COLUMNS = ("categories", "channels", "meta")
MANIFEST_MARK = "#manifest"
# The webhook delivery log, after the event rows. In CSV the rows follow a header line of
# their own (DELIVERY_HEADER); in JSON Lines each is an object with "type": "delivery"
# (event rows have no "type"). Every cell but `hash` is covered by the row's hash.
DELIVERY_MARK = "delivery"
DELIVERY_COLUMNS = ("type", "site", "notification_id", "event_id", "notification_type",
                    "endpoint_id", "endpoint_name", "endpoint_url", "state", "attempts",
                    "created_at", "acknowledged_at", "dead_at", "last_status", "last_error",
                    "hash")
DELIVERY_HEADER = ",".join(DELIVERY_COLUMNS)
# The log section (unfiltered exports): every entry of each site's log up to the
# checkpoint the export was cut at, in log order, with its leaf hash, so the file alone
# recomputes the signed roots and shows it extends an earlier checkpoint an auditor held.
LOG_MARK = "log"
LOG_COLUMNS = ("type", "site", "log_index", "stream", "seq", "leaf_hash")
LOG_HEADER = ",".join(LOG_COLUMNS)
_DELIVERY_INTS = ("endpoint_id", "attempts", "last_status")
_DELIVERY_REQUIRED_INTS = ("endpoint_id", "attempts")
BATCH = 5000

# ---------------------------------------------------------------- signing

# The key lives with the log (consent.ledger.keys): one key signs log checkpoints, export
# manifests and retention checkpoints.
from .ledger.keys import (key_id, parse_public_key, public_key_pem,  # noqa: E402,F401
                          public_key_raw, public_key_text, sign, signing_key,
                          verify_signature)


def checkpoint_message(*, site: str, stream: int, seq: int, hash: str, purged_before: str,
                       events_removed: int, created_at: str) -> bytes:
    """The bytes a retention checkpoint's signature covers."""
    return canonical({"type": "ledger-checkpoint", "site": site, "stream": stream,
                      "seq": seq, "hash": hash, "purged_before": purged_before,
                      "events_removed": events_removed, "created_at": created_at}).encode()


# ---------------------------------------------------------------- export


@dataclass
class ExportFilters:
    """What an export covers. `subject` is a visitor id or a ledger pseudonym."""

    site_key: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    subject: str | None = None
    category: str | None = None
    actions: tuple[str, ...] = ()
    # The webhook delivery log of the same sites and time range (see _iter_deliveries).
    deliveries: bool = True
    # The log section: every entry of each site's log up to the checkpoint the export
    # was cut at (unfiltered exports; `--no-log` leaves it out). The checkpoint itself is
    # always in the manifest.
    log: bool = True

    @property
    def with_log(self) -> bool:
        """Whether the export carries its sites' logs (only whole, unfiltered ones)."""
        return self.log and self.contiguous and self.since is None and self.until is None

    @property
    def contiguous(self) -> bool:
        """Whether each stream's rows form an unbroken stretch of its chain."""
        return not (self.subject or self.category or self.actions)


@dataclass
class ExportStats:
    """Running totals of an export, folded into the manifest at the end."""

    rows: int = 0
    first_hash: str | None = None
    last_hash: str | None = None
    first_at: str | None = None
    last_at: str | None = None
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    streams: dict = field(default_factory=dict)
    deliveries: int = 0
    delivery_digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    logs: dict = field(default_factory=dict)
    cut: dict = field(default_factory=dict)


def _iso(dt: datetime | None) -> str | None:
    from .database import iso

    return iso(dt)


def _epoch(text: str | None) -> float:
    """Seconds since the epoch of an ISO time (0 when it has none or cannot be read: the
    row's hash check names an edited time)."""
    try:
        return datetime.fromisoformat(text).timestamp() if text else 0.0
    except (TypeError, ValueError):
        return 0.0


def _resolve_subject(site_id: int, subject: str) -> str:
    """The ledger pseudonym for a visitor id (or a pseudonym given as such)."""
    from .extensions import db
    from .subjects import Subject

    row = db.session.execute(db.select(Subject.pseudonym).where(
        Subject.site_id == site_id,
        sa.or_(Subject.public_id == subject, Subject.pseudonym == subject))).first()
    # An unknown subject simply matches no rows; the manifest says which was asked for.
    return row.pseudonym if row else subject


def _export_query(dialect: str, site, filters: ExportFilters) -> tuple[sa.TextClause, dict]:
    from .database import UTCDateTime

    if dialect == "postgresql":
        at = """to_char(recorded_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
        js = "NULLIF(CAST({0} AS TEXT), 'null')"
        has_cat = "jsonb_exists(CAST(categories AS JSONB), :category)"
    else:
        # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff' (always with microseconds).
        at = "substr(recorded_at, 1, 10) || 'T' || substr(recorded_at, 12) || 'Z'"
        js = "NULLIF({0}, 'null')"
        has_cat = "json_type(categories, '$.' || :category) IS NOT NULL"
    cols = (f"event_id, :site_key, stream, seq, subject, {at}, action, source, "
            f"{js.format('categories')}, {js.format('channels')}, policy_version, locale, "
            f"{js.format('meta')}, details_digest, idempotency_key, prev_hash, hash")
    where = ["site_id = :site_id"]
    params: dict = {"site_id": site.id, "site_key": site.key}
    binds = []
    if filters.since is not None:
        where.append("recorded_at >= :since")
        params["since"] = filters.since
        binds.append(sa.bindparam("since", type_=UTCDateTime))
    if filters.until is not None:
        where.append("recorded_at < :until")
        params["until"] = filters.until
        binds.append(sa.bindparam("until", type_=UTCDateTime))
    if filters.subject:
        where.append("subject = :subject")
        params["subject"] = _resolve_subject(site.id, filters.subject)
    if filters.category:
        where.append(has_cat)
        params["category"] = filters.category
    if filters.actions:
        names = [f"action_{i}" for i in range(len(filters.actions))]
        where.append(f"action IN ({', '.join(':' + n for n in names)})")
        params.update(zip(names, filters.actions))
    sql = (f"SELECT {cols} FROM consent_events WHERE {' AND '.join(where)} "
           "ORDER BY consent_events.stream, consent_events.seq")
    return sa.text(sql).bindparams(*binds), params


def _sites(filters: ExportFilters):
    from .extensions import db
    from .sites import Site, get_site

    if filters.site_key:
        return [get_site(filters.site_key)]
    return list(db.session.execute(db.select(Site).order_by(Site.id)).scalars())


def count_rows(filters: ExportFilters) -> int:
    """How many rows an export with FILTERS will have (for progress bars)."""
    from .extensions import db

    total = 0
    dialect = db.session.get_bind().dialect.name
    for site in _sites(filters):
        query, params = _export_query(dialect, site, filters)
        total += db.session.execute(
            sa.text(f"SELECT COUNT(*) FROM ({query.text}) AS q").bindparams(
                *query._bindparams.values()), params).scalar()
    return total


# Positions of (stream, seq, recorded_at, prev_hash, hash) in a fetched row (as values,
# or as the rendered cells of a line: stream and seq then arrive as text).
FOLD = (2, 3, 5, 15, 16)


# Columns whose values can never hold a comma, quote or newline nor start like a formula
# (hex digests, ids, numbers, fixed vocabularies, timestamps) are written as they are.
_CSV_PLAIN = {"event_id", "subject", "recorded_at", "action", "source",
              "prev_hash", "hash"}  # all NOT NULL


def _csv_cell_sql(name: str, expr: str) -> str:
    """SQLite expression rendering one column as CSV cell text, quoted exactly when needed."""
    if name in ("stream", "seq"):
        return f"CAST({expr} AS TEXT)"
    if name in _CSV_PLAIN:
        return expr
    if name == "details_digest":
        return f"coalesce({expr}, '')"
    if name in JSON_COLUMNS:  # JSON objects always contain quotes
        return f"""coalesce('"' || replace({expr}, '"', '""') || '"', '')"""
    return csvcells.sql_cell(expr)


def _line_query(sql: str) -> str:
    """The export query with SQLite rendering each cell as CSV text (in C, like the sqlite3
    shell); Python only joins the cells."""
    exprs = _split_select(sql)
    cells = ", ".join(_csv_cell_sql(name, expr) for name, expr in zip(COLUMNS, exprs))
    body = sql.split(" FROM consent_events ", 1)[1]
    return f"SELECT {cells} FROM consent_events {body}"


def _copy_cell_sql(name: str, expr: str, utf8: bool = False) -> str:
    """PostgreSQL expression for one column of the COPY export: COPY's CSV writer quotes
    (and doubles quotes) exactly as the SQLite lines do; formula marks and the empty cells
    (an empty text would be printed as "") are done here."""
    if name in ("stream", "seq") or name in JSON_COLUMNS:
        # JSON: FORCE_QUOTE quotes every non-NULL value, as the SQLite lines do
        return f"{expr} AS {name}" if name in JSON_COLUMNS else expr
    if name in _CSV_PLAIN or name == "details_digest":
        return f"NULLIF({expr}, '')"
    # a bound text (the site key) gets its type here, not from each use of it
    return csvcells.pg_marked(f"CAST({expr} AS TEXT)" if expr.startswith(":") else expr,
                              utf8)


def _copy_query(site, filters: ExportFilters) -> tuple[str, dict]:
    """`COPY (the export query) TO STDOUT` printing the export's CSV event lines, and its
    parameters (psycopg binds them client-side: COPY takes no server-side parameters)."""
    from .extensions import db

    query, params = _export_query("postgresql", site, filters)
    exprs = _split_select(query.text)
    driver = db.session.connection().connection.driver_connection
    utf8 = driver.info.parameter_status("server_encoding") in (b"UTF8", b"SQL_ASCII")
    cells = ", ".join(_copy_cell_sql(name, expr, utf8) for name, expr in zip(COLUMNS, exprs))
    body = query.text.split(" FROM consent_events ", 1)[1]
    sql = (f"COPY (SELECT {cells} FROM consent_events {body}) TO STDOUT WITH "
           f"(FORMAT csv, FORCE_QUOTE ({', '.join(JSON_COLUMNS)}))")
    compiled = sa.text(sql).bindparams(*query._bindparams.values()).compile(
        dialect=db.session.get_bind().dialect)
    return compiled.string, _pg_params(params)


def _split_select(sql: str) -> list[str]:
    """The column expressions of the export query's SELECT list."""
    select = sql[len("SELECT "):sql.index(" FROM consent_events ")]
    parts, depth, current = [], 0, ""
    for ch in select:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return parts


def _sqlite_params(params: dict) -> dict:
    # The stored form of UTCDateTime on SQLite (naive UTC, always with microseconds).
    return {k: (v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
                if isinstance(v, datetime) else v) for k, v in params.items()}


def _pg_params(params: dict) -> dict:
    # The stored form of UTCDateTime on PostgreSQL (naive UTC).
    return {k: (v.astimezone(timezone.utc).replace(tzinfo=None)
                if isinstance(v, datetime) else v) for k, v in params.items()}


def _iter_batches(filters: ExportFilters, lines: bool = False
                  ) -> Iterator[tuple[str, list]]:
    """(site key, rows) batches; LINES (SQLite): rows of rendered CSV cells."""
    from .extensions import db

    dialect = db.session.get_bind().dialect.name
    for site in _sites(filters):
        query, params = _export_query(dialect, site, filters)
        conn = db.session.connection()
        if dialect == "sqlite":
            # The driver's own cursor yields plain tuples: several times faster than
            # SQLAlchemy rows, which matters at millions of rows (see bench/).
            cursor = conn.connection.driver_connection.cursor()
            sql = _line_query(query.text) if lines else query.text
            try:
                cursor.execute(sql, _sqlite_params(params))
                while batch := cursor.fetchmany(BATCH):
                    yield site.key, batch
            finally:
                cursor.close()
            continue
        # PostgreSQL (JSON Lines; CSV goes through COPY, see _copy_events): a server-side
        # cursor of the driver itself (plain tuples, BATCH rows a round trip, memory flat).
        if lines:
            raise ValueError("PostgreSQL renders CSV lines with COPY (_copy_events)")
        sql = query.text
        compiled = sa.text(sql).bindparams(*query._bindparams.values()).compile(
            dialect=conn.dialect)
        cursor = conn.connection.driver_connection.cursor(name=f"consent_export_{site.id}")
        try:
            cursor.itersize = BATCH
            cursor.execute(compiled.string, _pg_params(params))
            while batch := cursor.fetchmany(BATCH):
                yield site.key, batch
        finally:
            cursor.close()


# PostgreSQL: what the manifest says of each stream and of the time range, from one
# aggregate in the export's snapshot (REPEATABLE READ: the same rows the COPY prints).
# `first`/`last` are the rows at each stream's lowest and highest seq ((site, stream,
# seq) is unique); the times are rendered by the COPY's own expression ({at}).
_PG_RANGES = (
    "WITH r AS (SELECT stream, count(*) AS n, min(seq) AS lo, max(seq) AS hi, "
    "min(recorded_at) AS t0, max(recorded_at) AS t1, count(recorded_at) AS timed "
    "FROM consent_events {where} GROUP BY stream) "
    "SELECT r.stream, r.n, r.lo, r.hi, f.prev_hash, f.hash, l.hash, {t0}, {t1}, "
    "r.n = r.timed AND r.t0 >= CAST('1000-01-01' AS TIMESTAMP) "
    "AND r.t1 < CAST('10000-01-01' AS TIMESTAMP) "
    "FROM r JOIN consent_events f ON f.site_id = :site_id AND f.stream = r.stream "
    "AND f.seq = r.lo JOIN consent_events l ON l.site_id = :site_id "
    "AND l.stream = r.stream AND l.seq = r.hi ORDER BY r.stream")
# When a stream holds a time outside the years 1000-9999 (or none): the range of the
# rendered cells themselves, compared as Python compares them (code points).
_PG_TEXT_TIMES = ("SELECT min(coalesce({at}, '') COLLATE \"C\"), "
                  "max(coalesce({at}, '') COLLATE \"C\") FROM consent_events {where}")


@dataclass
class _SiteRanges:
    """One site's rows as the aggregate counts them: per stream (in COPY order) its rows,
    seqs, first prev_hash and last hash; the rendered time range."""

    streams: list = field(default_factory=list)  # (stream, rows, lo, hi, prev, first, last)
    first_at: str | None = None
    last_at: str | None = None

    @property
    def rows(self) -> int:
        """How many rows the COPY must print."""
        return sum(s[1] for s in self.streams)


def _pg_ranges(site, filters: ExportFilters) -> _SiteRanges:
    """The manifest's per-stream and time ranges of one site's export rows, from the
    database (in the caller's snapshot), not from folding every row in Python."""
    from .extensions import db

    query, params = _export_query("postgresql", site, filters)
    body = query.text.split(" FROM consent_events ", 1)[1].rsplit(" ORDER BY ", 1)[0]
    at = _split_select(query.text)[5]
    # (the site key bound in the SELECT list is not used here)
    binds = [b for key, b in query._bindparams.items() if f":{key}" in body]
    params = {k: v for k, v in params.items() if f":{k}" in body}
    rendered = [at.replace("recorded_at", f"r.{t}") for t in ("t0", "t1")]
    out = _SiteRanges()
    orderly = True
    for stream, n, lo, hi, prev, first, last, t0, t1, ok in db.session.execute(
            sa.text(_PG_RANGES.format(where=body, t0=rendered[0], t1=rendered[1]))
            .bindparams(*binds), params):
        out.streams.append((stream, n, lo, hi, prev, first, last))
        orderly = orderly and bool(ok)
        if orderly:  # within the years 1000-9999 the text keeps the times' order
            out.first_at = t0 if out.first_at is None or t0 < out.first_at else out.first_at
            out.last_at = t1 if out.last_at is None or t1 > out.last_at else out.last_at
    if not orderly:
        out.first_at, out.last_at = db.session.execute(
            sa.text(_PG_TEXT_TIMES.format(at=at, where=body)).bindparams(*binds),
            params).one()
    return out


def _copy_events(filters: ExportFilters, stats: ExportStats, ranges: dict,
                 progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """PostgreSQL: the CSV event lines as `COPY ... TO STDOUT` prints them, in blocks of
    BATCH rows, passed on as bytes. Python takes only each row's hash (the digest, first
    and last hash); per-stream and time ranges come from RANGES (`_pg_ranges`, the same
    snapshot), checked against the rows at every stream's first and last row."""
    from .extensions import db

    for site in _sites(filters):
        site_ranges = ranges[site.key]
        marks = _stream_marks(site_ranges)
        sql, params = _copy_query(site, filters)
        driver = db.session.connection().connection.driver_connection
        start = 0
        with driver.cursor() as cursor, cursor.copy(sql, params) as copy:
            for rows in _copied_blocks(copy, driver.pgconn):
                blob = b"".join(rows)
                hashes, first, last = _copied_hashes(rows, blob)
                _check_marks(marks, rows, start, site.key)
                if stats.rows == 0:
                    stats.first_hash = first
                stats.rows += len(rows)
                stats.last_hash = last
                stats.digest.update(hashes)
                start += len(rows)
                yield blob
                if progress:
                    progress(len(rows))
        if start != site_ranges.rows or marks:
            raise RuntimeError(f"site {site.key}: COPY printed {start} rows where the "
                               f"export's snapshot counts {site_ranges.rows}")
        for stream, n, lo, hi, prev, _first, last in site_ranges.streams:
            stats.streams[f"{site.key}/{stream}"] = {
                "first_seq": lo, "first_prev_hash": prev, "last_seq": hi,
                "last_hash": last, "rows": n}
        for at in (site_ranges.first_at, site_ranges.last_at):
            if at is not None:
                stats.first_at = at if stats.first_at is None or at < stats.first_at \
                    else stats.first_at
                stats.last_at = at if stats.last_at is None or at > stats.last_at \
                    else stats.last_at


def _stream_marks(site_ranges: _SiteRanges) -> list:
    """(row position, expected cells) at each stream's first and last row: what
    the COPY's rows must say there for the aggregate to describe them (positions
    ascending; a stream of one row has both marks on it)."""
    marks, position = [], 0
    for stream, n, lo, hi, prev, first, last in site_ranges.streams:
        marks.append((position, (str(stream), str(lo), prev, first)))
        marks.append((position + n - 1, (str(stream), str(hi), None, last)))
        position += n
    marks.reverse()  # popped from the end
    return marks


def _check_marks(marks: list, rows: list, start: int, site_key: str) -> None:
    """Compare the rows of a block at the marked positions with the aggregate (RuntimeError
    when they differ: the export then ends without a manifest rather than with a wrong
    one)."""
    end = start + len(rows)
    while marks and marks[-1][0] < end:
        position, (stream, seq, prev, hash_) = marks.pop()
        cells = _copied_cells([rows[position - start]])[0]
        if (cells[2], cells[3], cells[16]) != (stream, seq, hash_) or \
                (prev is not None and cells[15] != prev):
            raise RuntimeError(
                f"site {site_key}: row {position + 1} of the COPY is stream {cells[2]} seq "
                f"{cells[3]}, where the export's snapshot has stream {stream} seq {seq}")


def _copied_cells(rows: list) -> list[list[str]]:
    """COPY's CSV rows (each ending in a newline) read back with the CSV reader."""
    return list(csv.reader([bytes(r)[:-1].decode() for r in rows]))


def _copied_hashes(rows: list, blob: bytes | None = None) -> tuple[bytes, str, str]:
    """(every row's hash joined, first hash, last hash) of a block of COPY's CSV rows
    (BLOB: the rows joined).

    A row ending in a comma, 64 hex digits and its newline has them as its last cell (a
    quoted cell would end in a quote), which is the hash: checked block-wise in C. A block
    where any row ends otherwise (only a database edited by hand: a hash of another
    length or with a comma) is read with the CSV reader instead."""
    n = len(rows)
    blob = b"".join(rows) if blob is None else blob
    ends = list(accumulate(map(len, rows)))
    if ends and ends[0] >= 66:
        # the last 66 bytes of each row, sliced from the joined block in C (slices of
        # psycopg's row buffers cost more)
        tails = b"".join(map(blob.__getitem__, map(slice, map(sub, ends, repeat(66)), ends)))
        joined = tails.translate(None, b",\n")
        # (the length checks also keep the 66-byte steps aligned with the rows)
        if len(joined) == 64 * n and tails[::66] == b"," * n and \
                tails[65::66] == b"\n" * n and not joined.translate(None, b"0123456789abcdef"):
            return joined, joined[:64].decode(), joined[-64:].decode()
    hashes = [cells[16] for cells in _copied_cells(rows)]
    return "".join(hashes).encode(), hashes[0], hashes[-1]


def _copied_blocks(copy, pgconn) -> Iterator[list]:
    """The rows of a running `COPY ... TO STDOUT` (one message each), BATCH at a time.

    Rows libpq already holds are taken from it directly (non-blocking PQgetCopyData): going
    through copy.read() for each costs a generator round trip a row, which was most of the
    export's time. When libpq has nothing buffered, copy.read() waits for the socket."""
    from psycopg import errors, pq

    rows: list = []
    while True:
        nbytes, data = pgconn.get_copy_data(1)
        if nbytes == 0:  # nothing buffered: let psycopg wait for more (or the end)
            data = copy.read()
            nbytes = len(data) or -1
            if nbytes < 0:
                break
        elif nbytes < 0:
            # CopyDone read here: collect the final result as copy.read() would have
            result, error = pgconn.get_result(), None
            while result is not None:
                if result.status != pq.ExecStatus.COMMAND_OK:
                    error = error or errors.error_from_result(result,
                                                              encoding=pgconn._encoding)
                result = pgconn.get_result()
            if error:
                raise error
            break
        rows.append(data)
        if len(rows) == BATCH:
            yield rows
            rows = []
    if rows:
        yield rows


def _fold(stats: ExportStats, site_key: str, batch: list) -> None:
    """Update running totals with one batch of one site (rows ordered by stream, seq)."""
    st, sq, at, ph, hs = FOLD
    _fold_columns(stats, site_key, [r[st] for r in batch], [r[sq] for r in batch],
                  [r[at] for r in batch], [r[ph] for r in batch], [r[hs] for r in batch])


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fold_columns(stats: ExportStats, site_key: str, streams: list, seqs: list, ats: list,
                  prevs: list, hashes: list) -> None:
    """Update running totals with one block of one site, given as columns (rows ordered by
    stream, seq; values as text, as bytes from COPY, or stream and seq as numbers)."""
    if not hashes:
        return
    if stats.rows == 0:
        stats.first_hash = _text(hashes[0])
    stats.rows += len(hashes)
    stats.last_hash = _text(hashes[-1])
    joined = (b"" if isinstance(hashes[0], bytes) else "").join(hashes)
    stats.digest.update(joined if isinstance(joined, bytes) else joined.encode())
    lo, hi = _text(min(ats)), _text(max(ats))
    stats.first_at = lo if stats.first_at is None or lo < stats.first_at else stats.first_at
    stats.last_at = hi if stats.last_at is None or hi > stats.last_at else stats.last_at
    if streams[0] == streams[-1]:
        spans = [(0, len(streams) - 1)]
    else:
        spans, start = [], 0
        for i in range(1, len(streams)):
            if streams[i] != streams[start]:
                spans.append((start, i - 1))
                start = i
        spans.append((start, len(streams) - 1))
    for first, last in spans:
        key = f"{site_key}/{_text(streams[first])}"
        info = stats.streams.get(key)
        if info is None:
            stats.streams[key] = {"first_seq": int(seqs[first]),
                                  "first_prev_hash": _text(prevs[first]),
                                  "last_seq": int(seqs[last]), "last_hash": _text(hashes[last]),
                                  "rows": last - first + 1}
        else:
            info.update(last_seq=int(seqs[last]), last_hash=_text(hashes[last]),
                        rows=info["rows"] + last - first + 1)


def _checkpoints(filters: ExportFilters) -> list[dict]:
    from .extensions import db
    from .ledger import LedgerCheckpoint

    out = []
    for site in _sites(filters):
        for cp in db.session.execute(db.select(LedgerCheckpoint).where(
                LedgerCheckpoint.site_id == site.id).order_by(LedgerCheckpoint.id)).scalars():
            out.append({"site": site.key, "stream": cp.stream, "seq": cp.seq, "hash": cp.hash,
                        "purged_before": _iso(cp.purged_before),
                        "events_removed": cp.events_removed,
                        "created_at": _iso(cp.created_at), "signature": cp.signature})
    return out


# ---------------------------------------------------------------- the delivery log


def _normal_delivery(row: dict) -> dict:
    """The typed values a delivery row's hash covers: an empty text is None, as CSV has it."""
    out = {}
    for name in DELIVERY_COLUMNS:
        value = row.get(name)
        out[name] = None if value == "" else value
    return out


def delivery_hash(row: dict) -> str:
    """The hash of one delivery row: SHA-256 of its cells (all but `hash`), canonical JSON."""
    cells = {name: row[name] for name in DELIVERY_COLUMNS if name != "hash"}
    cells["v"] = "delivery/1"
    return hashlib.sha256(canonical(cells).encode()).hexdigest()


def _delivery_row(site_key: str, entry: dict) -> dict:
    """A row of the export from one `consent.outbox.delivery_log_rows` entry."""
    row = _normal_delivery({
        "type": DELIVERY_MARK, "site": site_key,
        "notification_id": entry["notification_id"], "event_id": entry["event_id"],
        "notification_type": entry["type"], "endpoint_id": entry["endpoint_id"],
        "endpoint_name": entry["endpoint_name"], "endpoint_url": entry["endpoint_url"],
        "state": entry["state"], "attempts": entry["attempts"],
        "created_at": entry["created_at"], "acknowledged_at": entry["acknowledged_at"],
        "dead_at": entry["dead_at"], "last_status": entry["last_status"],
        "last_error": entry["last_error"]})
    row["hash"] = delivery_hash(row)
    return row


def _exported_event_ids(dialect: str, site, filters: ExportFilters, ids: list[str]) -> set:
    """Which of IDS are events the export's filters select (one query per batch)."""
    from .extensions import db

    query, params = _export_query(dialect, site, filters)
    where = query.text.split(" FROM consent_events ", 1)[1].rsplit(" ORDER BY ", 1)[0]
    names = [f"eid_{i}" for i in range(len(ids))]
    sql = (f"SELECT event_id FROM consent_events {where} "
           f"AND event_id IN ({', '.join(':' + n for n in names)})")
    binds = [b for key, b in query._bindparams.items() if f":{key}" in where]
    params = {k: v for k, v in params.items() if f":{k}" in where}
    params.update(zip(names, ids))
    return set(db.session.execute(sa.text(sql).bindparams(*binds), params).scalars())


def _iter_deliveries(filters: ExportFilters) -> Iterator[list[dict]]:
    """Batches of delivery rows: every notification of the sites and time range, or, when
    the export is filtered by subject, category or action, those of its events."""
    from .extensions import db
    from .outbox import delivery_log_rows

    if not filters.deliveries:
        return
    dialect = db.session.get_bind().dialect.name
    for site in _sites(filters):
        batch: list[dict] = []
        entries = iter(delivery_log_rows(site.id, filters.since, filters.until))
        while chunk := list(islice(entries, 500)):
            if not filters.contiguous:
                # Checked per batch against the events table, so memory stays flat.
                keep = _exported_event_ids(dialect, site, filters,
                                           sorted({e["event_id"] for e in chunk}))
                chunk = [e for e in chunk if e["event_id"] in keep]
            batch.extend(_delivery_row(site.key, e) for e in chunk)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def _cut_logs(filters: ExportFilters) -> dict:
    """Integrate every exported site, then note the checkpoint the export is cut at."""
    from .ledger.log import integrate, latest_checkpoint

    from .ledger.serving import LogNotSigned

    cuts = {}
    for site in _sites(filters):
        integrate(site.key)
        checkpoint = latest_checkpoint(site.id)
        if checkpoint is None:
            raise LogNotSigned(f"site {site.key}: the log has no signed checkpoint: the "
                               "signer refused to sign it (run flask consent verify)")
        cuts[site.key] = (site.id, checkpoint.size, checkpoint.note)
    return cuts


_LOG_QUERY = ("SELECT l.log_index, l.stream, l.seq, n.hash FROM log_leaves l JOIN log_nodes n "
              "ON n.site_id = l.site_id AND n.level = 0 AND n.idx = l.log_index "
              "WHERE l.site_id = :site_id AND l.log_index < :size ORDER BY l.log_index")
# SQLite renders each CSV line itself (as for the event rows): Python only joins them.
_SQLITE_LOG_LINES = ("SELECT 'log,' || ? || ',' || l.log_index || ',' || l.stream || ',' || "
                     "l.seq || ',' || lower(hex(n.hash)) FROM log_leaves l JOIN log_nodes n "
                     "ON n.site_id = l.site_id AND n.level = 0 AND n.idx = l.log_index "
                     "WHERE l.site_id = ? AND l.log_index < ? ORDER BY l.log_index")
# The same lines printed by PostgreSQL's COPY (CSV: the key is plain, see _plain_key).
_PG_LOG_COPY = ("COPY (SELECT 'log', CAST(%s AS TEXT), l.log_index, l.stream, l.seq, "
                "encode(n.hash, 'hex') FROM log_leaves l JOIN log_nodes n "
                "ON n.site_id = l.site_id AND n.level = 0 AND n.idx = l.log_index "
                "WHERE l.site_id = %s AND l.log_index < %s ORDER BY l.log_index) "
                "TO STDOUT WITH (FORMAT csv)")


def _log_lines(site_key: str, site_id: int, size: int, fmt: str) -> Iterator[bytes]:
    """Blocks of the lines of one site's log section, UTF-8, each line ending in a newline
    (streamed: memory stays flat)."""
    from .extensions import db

    conn = db.session.connection()
    if fmt == "csv" and _plain_key(site_key) and conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(_PG_LOG_COPY,
                                                    (site_key, site_id, size)) as copy:
            for rows in _copied_blocks(copy, driver.pgconn):
                yield b"".join(rows)
        return
    if fmt == "csv" and _plain_key(site_key) and conn.dialect.name == "sqlite":
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(_SQLITE_LOG_LINES, (site_key, site_id, size))
            while batch := cursor.fetchmany(BATCH):
                yield ("\n".join([row[0] for row in batch]) + "\n").encode()
        finally:
            cursor.close()
        return
    result = conn.execution_options(stream_results=True).execute(
        sa.text(_LOG_QUERY), {"site_id": site_id, "size": size})
    for part in result.partitions(BATCH):
        lines = []
        for index, stream, seq, leaf in part:
            row = [LOG_MARK, site_key, int(index), int(stream), int(seq), bytes(leaf).hex()]
            if fmt == "csv":
                lines.append(",".join(str(c) for c in row))
            else:
                lines.append(_dumps(dict(zip(LOG_COLUMNS, row))))
        yield ("\n".join(lines) + "\n").encode()


def _plain_key(site_key: str) -> bool:
    """A site key that needs no CSV quoting (keys are slugs; anything else takes the slow
    path, which writes the same text)."""
    return all(c.isalnum() or c in "-_." for c in site_key)


def _log_section(cuts: dict, fmt: str, stats: ExportStats) -> Iterator[bytes]:
    """The log entries of each site up to its cut, leaf hashes included (UTF-8 blocks)."""
    header = fmt == "csv"
    for site_key, (site_id, size, note) in cuts.items():
        digest = hashlib.sha256()
        for block in _log_lines(site_key, site_id, size, fmt):
            digest.update(block)
            if header:
                block = (LOG_HEADER + "\n").encode() + block
                header = False
            yield block
        stats.logs[site_key] = {"checkpoint": note, "size": size,
                                "rows_sha256": digest.hexdigest()}


class _LogSpool:
    """PostgreSQL: the CSV log section read by a thread on a connection of its own, in the
    export's snapshot, while the event rows stream, into a temporary file (memory stays
    flat); `blocks` passes it on after the events. The two COPYs then run side by side in
    the database (the log's is a join as long as the events' query)."""

    def __init__(self, cuts: dict):
        import tempfile
        import threading

        from .extensions import db

        self.cuts, self.digests, self.error = cuts, {}, None
        self.file = tempfile.TemporaryFile()
        snapshot = db.session.execute(sa.text("SELECT pg_export_snapshot()")).scalar()
        self.raw = db.engine.raw_connection()
        self.thread = threading.Thread(target=self._read, args=(snapshot,), daemon=True,
                                       name="consent-export-log")
        self.thread.start()

    def _read(self, snapshot: str) -> None:
        driver = self.raw.driver_connection
        try:
            driver.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            driver.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            for site_key, (site_id, size, _note) in self.cuts.items():
                digest = hashlib.sha256()
                with driver.cursor() as cursor, cursor.copy(
                        _PG_LOG_COPY, (site_key, site_id, size)) as copy:
                    for rows in _copied_blocks(copy, driver.pgconn):
                        block = b"".join(rows)
                        digest.update(block)
                        self.file.write(block)
                self.digests[site_key] = digest.hexdigest()
            driver.rollback()
        except BaseException as exc:  # raised again in the export (blocks)
            self.error = exc
        finally:
            self.raw.close()

    def blocks(self, stats: ExportStats) -> Iterator[bytes]:
        """The log section (header first when it has a row), once the thread is done."""
        try:
            self.thread.join()
            if self.error is not None:
                raise self.error
            for site_key, (_site_id, size, note) in self.cuts.items():
                stats.logs[site_key] = {"checkpoint": note, "size": size,
                                        "rows_sha256": self.digests[site_key]}
            if self.file.tell():
                self.file.seek(0)
                yield (LOG_HEADER + "\n").encode()
                while block := self.file.read(1 << 20):
                    yield block
        finally:
            self.file.close()


def build_manifest(filters: ExportFilters, stats: ExportStats, fmt: str) -> dict:
    """The signed last line of an export."""
    from .database import utcnow

    manifest = {
        "format": FORMAT, "encoding": fmt, "generated_at": _iso(utcnow()),
        "filters": {"site": filters.site_key, "since": _iso(filters.since),
                    "until": _iso(filters.until), "subject": filters.subject,
                    "category": filters.category, "actions": list(filters.actions)},
        "contiguous": filters.contiguous,
        "row_count": stats.rows, "first_hash": stats.first_hash,
        "last_hash": stats.last_hash, "rows_sha256": stats.digest.hexdigest(),
        "time_range": {"first_recorded_at": stats.first_at,
                       "last_recorded_at": stats.last_at},
        "streams": stats.streams,
        "checkpoints": _checkpoints(filters),
        "deliveries": ({"included": True,
                        "scope": "time_range" if filters.contiguous else "exported_events",
                        "row_count": stats.deliveries,
                        "rows_sha256": stats.delivery_digest.hexdigest()}
                       if filters.deliveries else {"included": False}),
        # The signed checkpoint of each site's log this export was cut at.
        "checkpoints_at_cut": stats.cut,
        "log": ({"included": True, "sites": stats.logs} if filters.with_log
                else {"included": False}),
    }
    raw = public_key_raw()
    return {"manifest": manifest,
            "signature": {"alg": "Ed25519", "key_id": key_id(raw),
                          "public_key": public_key_text(),
                          "value": sign(canonical(manifest).encode())}}


def _csv_chunk(batch: list, header: bool = False) -> str:
    buf = io.StringIO()
    writer = csvcells.writer(buf)
    if header:
        writer.writerow(COLUMNS)
    writer.writerows(batch)
    return buf.getvalue()


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _jsonl_chunk(batch: list) -> str:
    lines = []
    for r in batch:
        # JSON columns are already JSON text from the database: embed them as they are.
        lines.append(
            f'{{"event_id":"{r[0]}","site":{_dumps(r[1])},"stream":{r[2]},"seq":{r[3]},'
            f'"subject":{_dumps(r[4])},"recorded_at":"{r[5]}","action":{_dumps(r[6])},'
            f'"source":{_dumps(r[7])},"categories":{r[8] or "null"},'
            f'"channels":{r[9] or "null"},"policy_version":{_dumps(r[10])},'
            f'"locale":{_dumps(r[11])},"meta":{r[12] or "null"},'
            f'"details_digest":{_dumps(r[13])},"idempotency_key":{_dumps(r[14])},'
            f'"prev_hash":"{r[15]}","hash":"{r[16]}"}}\n')
    return "".join(lines)


def _delivery_chunk(batch: list[dict], fmt: str, header: bool) -> str:
    if fmt == "jsonl":
        return "".join([_dumps(row) + "\n" for row in batch])
    buf = io.StringIO()
    writer = csvcells.writer(buf)
    if header:
        buf.write(DELIVERY_HEADER + "\n")
    writer.writerows([[row[name] for name in DELIVERY_COLUMNS] for row in batch])
    return buf.getvalue()


def _export_chunks(filters: ExportFilters, fmt: str,
                   progress: Callable[[int], None] | None) -> Iterator[str | bytes]:
    """The export as chunks of text or of UTF-8 bytes (COPY's blocks are passed on as they
    arrive), streamed from the database (memory stays flat)."""
    from .extensions import db

    if fmt not in ("csv", "jsonl"):
        raise ValueError("format must be csv or jsonl")
    stats = ExportStats()
    cuts = _cut_logs(filters)
    postgres = db.session.get_bind().dialect.name == "postgresql"
    if postgres:
        _begin_snapshot()
    spool = None
    try:
        ranges = ({site.key: _pg_ranges(site, filters) for site in _sites(filters)}
                  if postgres and fmt == "csv" else None)
        spool = (_LogSpool(cuts) if ranges is not None and filters.with_log
                 and all(_plain_key(key) for key in cuts) else None)
        if fmt == "csv":
            yield _csv_chunk([], header=True)
        if ranges is not None:
            yield from _copy_events(filters, stats, ranges, progress)
        else:
            for site_key, batch in _iter_batches(filters, lines=(fmt == "csv")):
                _fold(stats, site_key, batch)
                if fmt == "csv":  # cells rendered by SQLite
                    yield "\n".join([",".join(r) for r in batch]) + "\n"
                else:
                    yield _jsonl_chunk(batch)
                if progress:
                    progress(len(batch))
        # After the events, so the event rows stay one table (in CSV: one header, no
        # gaps); the CSV section header is written only when there is a delivery row.
        for batch in _iter_deliveries(filters):
            yield _delivery_chunk(batch, fmt, header=stats.deliveries == 0)
            stats.deliveries += len(batch)
            stats.delivery_digest.update("".join([row["hash"] for row in batch]).encode())
        if spool is not None:
            yield from spool.blocks(stats)
        elif filters.with_log:
            yield from _log_section(cuts, fmt, stats)
        stats.cut = {key: note for key, (_, _, note) in cuts.items()}
        signed = build_manifest(filters, stats, fmt)
    finally:
        if spool is not None:  # (an export stopped early: the thread's next write fails)
            spool.file.close()
        if postgres:
            db.session.rollback()  # ends the export's snapshot (it only read)
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([MANIFEST_MARK, canonical(signed)])
        yield buf.getvalue()
    else:
        yield canonical(signed) + "\n"


def _begin_snapshot() -> None:
    """PostgreSQL: begin the export's own REPEATABLE READ transaction, so that the ranges
    aggregate, the COPY of the rows, the delivery log and the log section all read one
    snapshot (under READ COMMITTED each statement would see the events committed by then;
    the manifest's ranges would miss rows the COPY printed)."""
    from .extensions import db

    db.session.commit()  # (the log was integrated in transactions of its own)
    db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def iter_export(filters: ExportFilters, fmt: str = "csv",
                progress: Callable[[int], None] | None = None) -> Iterator[str]:
    """The export as text chunks, streamed from the database (memory stays flat)."""
    for chunk in _export_chunks(filters, fmt, progress):
        yield chunk if isinstance(chunk, str) else chunk.decode()


def iter_export_bytes(filters: ExportFilters, fmt: str = "csv",
                      progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The export as UTF-8 chunks (no decoding of what the database already printed)."""
    for chunk in _export_chunks(filters, fmt, progress):
        yield chunk if isinstance(chunk, bytes) else chunk.encode()


def write_export(out, filters: ExportFilters, fmt: str = "csv",
                 progress: Callable[[int], None] | None = None) -> None:
    """Write an export to the text file OUT (as bytes to its buffer when it is UTF-8)."""
    import codecs

    raw = getattr(out, "buffer", None)
    if raw is None or codecs.lookup(getattr(out, "encoding", None) or "ascii").name != "utf-8":
        for chunk in iter_export(filters, fmt, progress):
            out.write(chunk)
        return
    out.flush()  # what was written as text before goes first
    for chunk in iter_export_bytes(filters, fmt, progress):
        raw.write(chunk)
    raw.flush()


# ---------------------------------------------------------------- verify (offline)


@dataclass
class ExportProblem:
    """The first thing wrong in an export file."""

    line: int
    row: int | None
    event_id: str | None
    reason: str
    # "delivery": ROW counts the delivery rows (1 = the first one after the events).
    kind: str = "event"
    notification_id: str | None = None

    def __str__(self) -> str:
        if self.kind == "delivery" and self.row is not None:
            who = f"delivery row {self.row} (line {self.line}"
            who += f", notification {self.notification_id})" if self.notification_id else ")"
        elif self.row is not None:
            who = f"row {self.row} (line {self.line}"
            who += f", event {self.event_id})" if self.event_id else ")"
        else:
            who = f"line {self.line}"
        return f"{who}: {self.reason}"


@dataclass
class ExportReport:
    """Outcome of verifying an export file."""

    rows: int = 0
    deliveries: int = 0
    format: str | None = None
    key_id: str | None = None
    key_pinned: bool = False
    manifest: dict | None = None
    problems: list[ExportProblem] = field(default_factory=list)
    # Entries of each site's log the file carries (and recomputes to its checkpoint).
    logs: dict = field(default_factory=dict)
    # The held checkpoint (--since-checkpoint) the exported log was shown to extend.
    extends: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _parse_json_cell(text: str | None):
    if text is None or text == "":
        return None
    return json.loads(text)


def _row_from_csv(cells: list[str]) -> dict:
    if len(cells) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} columns, found {len(cells)}")
    row = dict(zip(COLUMNS, cells))
    for name in ("stream", "seq"):
        if not row[name].isdigit():
            raise ValueError(f"{name} is not a number")
        row[name] = int(row[name])
    for name in JSON_COLUMNS:
        row[name] = _parse_json_cell(row[name])
    for name in ("policy_version", "locale", "details_digest", "idempotency_key"):
        row[name] = row[name] or None
    return row


def _row_from_json(obj) -> dict:
    if not isinstance(obj, dict) or set(obj) != set(COLUMNS):
        raise ValueError("not an event row: its fields are not the export's columns")
    for name in ("stream", "seq"):
        if not isinstance(obj[name], int) or isinstance(obj[name], bool):
            raise ValueError(f"{name} is not a number")
    return obj


def _delivery_from_csv(cells: list[str]) -> dict:
    if len(cells) != len(DELIVERY_COLUMNS):
        raise ValueError(f"expected {len(DELIVERY_COLUMNS)} columns, found {len(cells)}")
    return _typed_delivery(_normal_delivery(dict(zip(DELIVERY_COLUMNS, cells))), text=True)


def _delivery_from_json(obj) -> dict:
    if not isinstance(obj, dict) or set(obj) != set(DELIVERY_COLUMNS):
        raise ValueError("not a delivery row: its fields are not the delivery columns")
    return _typed_delivery(_normal_delivery(obj), text=False)


def _typed_delivery(row: dict, *, text: bool) -> dict:
    if row["type"] != DELIVERY_MARK:
        raise ValueError(f"not a delivery row: its type is {row['type']!r}")
    for name in _DELIVERY_INTS:
        value = row[name]
        if value is None and name not in _DELIVERY_REQUIRED_INTS:
            continue
        if text and isinstance(value, str) and value.isdigit():
            row[name] = value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} is not a number")
    if not isinstance(row["hash"], str):
        raise ValueError("hash is not text")
    return row


def row_hash(row: dict) -> str:
    """Recompute an exported row's hash from its fields and prev_hash."""
    fields = hashed_fields(
        event_id=row["event_id"], site_key=row["site"], stream=row["stream"], seq=row["seq"],
        subject=row["subject"], recorded_at=row["recorded_at"], action=row["action"],
        source=row["source"], categories=row["categories"], channels=row["channels"],
        policy_version=row["policy_version"], locale=row["locale"], meta=row["meta"],
        details_digest=row["details_digest"], idempotency_key=row["idempotency_key"])
    return chain_hash(row["prev_hash"], fields)


def _last_line(fh) -> tuple[int, bytes]:
    """(byte offset, bytes) of the file's last non-empty line, read from the end."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    block = 65536
    while True:
        start = max(0, size - block)
        fh.seek(start)
        tail = fh.read(size - start)
        body = tail.rstrip(b"\r\n")
        cut = body.rfind(b"\n")
        if cut != -1:
            return start + cut + 1, body[cut + 1:]
        if start == 0:
            return 0, body
        block *= 4


def _read_manifest(raw: bytes):
    """The signed manifest object of a last line, or None when it is not one."""
    try:
        text = raw.decode("utf-8").strip()
        if text.startswith(MANIFEST_MARK + ","):
            cells = next(csv.reader([text]))
            if len(cells) != 2:
                return None
            obj = json.loads(cells[1])
        elif text.startswith("{"):
            obj = json.loads(text)
        else:
            return None
    except (ValueError, csv.Error, StopIteration):
        return None
    if isinstance(obj, dict) and "manifest" in obj:
        return obj
    return None


def _check_signed_manifest(signed, pinned: bytes | None, report: ExportReport) -> str | None:
    """Why the manifest cannot be trusted, or None when its signature holds."""
    if not isinstance(signed.get("manifest"), dict) or not isinstance(signed.get("signature"),
                                                                      dict):
        return "the manifest line is malformed"
    manifest, sig = signed["manifest"], signed["signature"]
    try:
        embedded = parse_public_key(str(sig.get("public_key", "")))
    except (ValueError, TypeError):
        return "the manifest's public key is malformed"
    report.key_id = key_id(embedded)
    if pinned is not None and pinned != embedded:
        return (f"signed with key {key_id(embedded)}, not with the pinned key "
                f"{key_id(pinned)}: the manifest was re-signed")
    if not verify_signature(embedded, canonical(manifest).encode(), str(sig.get("value"))):
        return "the manifest signature is not valid: the manifest was edited"
    if manifest.get("format") not in FORMATS:
        return f"unknown export format {manifest.get('format')!r}"
    for cp in manifest.get("checkpoints") or []:
        try:
            message = checkpoint_message(
                site=cp["site"], stream=cp["stream"], seq=cp["seq"], hash=cp["hash"],
                purged_before=cp["purged_before"], events_removed=cp["events_removed"],
                created_at=cp["created_at"])
        except (KeyError, TypeError):
            return "a checkpoint in the manifest is malformed"
        if not verify_signature(embedded, message, str(cp.get("signature", ""))):
            return (f"the retention checkpoint of stream {cp['site']}/{cp['stream']} at seq "
                    f"{cp['seq']} has an invalid signature")
    report.manifest = manifest
    return None


def retention_heads(manifest: dict) -> dict[tuple, tuple[int, str]]:
    """(seq, hash) of each (site, stream)'s last retention checkpoint in an export's
    manifest: the events up to it were purged, the stream goes on from it."""
    out: dict[tuple, tuple[int, str]] = {}
    for cp in manifest.get("checkpoints") or []:
        at = (cp.get("site"), cp.get("stream"))
        seq = int(cp.get("seq") or 0)
        if seq >= out.get(at, (0, ""))[0]:
            out[at] = (seq, cp.get("hash"))
    return out


class _LogCheck:
    """The log section of an export: each site's entries recompute the signed root the
    export was cut at (and an earlier checkpoint's, with --since-checkpoint), and every
    exported event is the entry the log holds for it."""

    def __init__(self, manifest: dict, report: ExportReport, since: str | None,
                 pinned: bytes | None):
        from .ledger.merkle import CompactRange

        info = manifest.get("log") or {}
        self.sites = info.get("sites") or {} if info.get("included") else {}
        self.wanted = bool(self.sites)
        self.report, self.since, self.pinned = report, since, pinned
        # Per (site, stream): the first exported seq and the leaf hashes' first 16 bytes
        # of its events in seq order (a whole export's stream is contiguous), packed in
        # one bytearray: 16 bytes an event, not a dict entry of ~150.
        self.leaves: dict[tuple, tuple[int, bytearray]] = {}
        self.trees = {key: CompactRange() for key in self.sites}
        self.digests = {key: hashlib.sha256() for key in self.sites}
        self.signed: dict[str, object] = {}
        self.held = None
        self.problem: str | None = None
        # The last seq each stream's retention checkpoint purged (its log entries stay).
        self.purged = {at: seq for at, (seq, _hash) in retention_heads(manifest).items()}
        # With a held checkpoint: the held site's events' times (epoch seconds, packed as
        # the leaves are), for entries after it that are dated before it allows.
        self.times: dict[tuple, array] = {}
        self.floor = 0.0  # the held checkpoint's floor less the slack, epoch seconds
        self.prepare()

    def _verifiers(self, origin: str):
        from .ledger.notes import Verifier

        return [Verifier(origin, self.pinned)]

    def prepare(self) -> None:
        from .ledger.notes import NoteError, open_checkpoint, split_note

        for key, info in self.sites.items():
            try:
                note = info["checkpoint"]
                origin = split_note(note)[0].split("\n", 1)[0]
                body, _ = open_checkpoint(note, self._verifiers(origin))
            except (KeyError, TypeError, ValueError, NoteError) as exc:
                self.problem = f"site {key}: the export's checkpoint does not verify ({exc})"
                return
            self.signed[key] = body
        if self.since is None:
            return
        try:
            origin = split_note(self.since)[0].split("\n", 1)[0]
            self.held, _ = open_checkpoint(self.since, self._verifiers(origin))
        except (ValueError, NoteError) as exc:
            self.problem = f"the held checkpoint does not verify with the key ({exc})"
            return
        if self.held.floor:
            self.floor = _epoch(self.held.floor) - CLOCK_SLACK.total_seconds()
        site = origin.rstrip("/").rsplit("/", 1)[-1]
        self.held_site = next((k for k, b in self.signed.items()
                               if b.origin == self.held.origin), None)
        if self.held_site is None:
            self.problem = (f"site {site}: the export carries no log section of "
                            f"{self.held.origin} (a filtered export, or one made with "
                            "--no-log): --since-checkpoint needs a whole export of the site")
        elif self.signed[self.held_site].size < self.held.size:
            self.problem = (f"site {self.held_site}: the export was cut at checkpoint "
                            f"{self.signed[self.held_site].size:,}, before the held one "
                            f"({self.held.size:,}): the log was rewound")

    def bind(self, row: dict) -> None:
        from .ledger.log import event_leaf_hash

        fields = hashed_fields(
            event_id=row["event_id"], site_key=row["site"], stream=row["stream"],
            seq=row["seq"], subject=row["subject"], recorded_at=row["recorded_at"],
            action=row["action"], source=row["source"], categories=row["categories"],
            channels=row["channels"], policy_version=row["policy_version"],
            locale=row["locale"], meta=row["meta"], details_digest=row["details_digest"],
            idempotency_key=row["idempotency_key"])
        key = (row["site"], row["stream"])
        first, packed = self.leaves.setdefault(key, (row["seq"], bytearray()))
        if row["seq"] - first == len(packed) // 16:  # a gap is reported by the link check
            packed += event_leaf_hash(row["prev_hash"], fields)[:16]
            if self.held is not None and row["site"] == self.held_site:
                self.times.setdefault(key, array("d")).append(_epoch(row["recorded_at"]))

    def _leaf_of(self, site: str, stream: int, seq: int) -> bytes | None:
        first, packed = self.leaves.get((site, stream), (0, b""))
        at = (seq - first) * 16
        return bytes(packed[at:at + 16]) if 0 <= at < len(packed) else None

    def add(self, text: str, fmt: str) -> str | None:
        if self.problem:
            return self.problem
        try:
            if fmt == "csv":
                cells = text.split(",")
                if len(cells) != len(LOG_COLUMNS) or cells[0] != LOG_MARK:
                    raise ValueError("not a log row")
                row = dict(zip(LOG_COLUMNS, cells))
            else:
                row = json.loads(text)
                if set(row) != set(LOG_COLUMNS) or row["type"] != LOG_MARK:
                    raise ValueError("not a log row")
            key, index = row["site"], int(row["log_index"])
            stream, seq, leaf = int(row["stream"]), int(row["seq"]), bytes.fromhex(
                row["leaf_hash"])
        except (ValueError, KeyError, TypeError) as exc:
            return f"a log row cannot be read ({exc}): it was edited"
        tree = self.trees.get(key)
        if tree is None:
            return f"a log row of site {key}, which the manifest does not list: rows were added"
        self.digests[key].update((text + "\n").encode())
        if index != tree.size or len(leaf) != 32:
            return f"site {key}: log entry {tree.size:,} is missing or out of order"
        mine = self._leaf_of(key, stream, seq)
        if mine is not None and mine != leaf[:16]:
            return (f"site {key}: the exported event at stream {stream} seq {seq} is not log "
                    f"entry {index:,}: the event was rewritten after it was logged")
        if mine is None and seq > self.purged.get((key, stream), 0):
            return (f"site {key}: log entry {index:,} (stream {stream} seq {seq}) has no "
                    "event in the export, and no retention checkpoint purged it: the event "
                    "was deleted after it was logged")
        why = self._backdated(key, index, stream, seq)
        if why:
            return why
        tree.append(leaf)
        if self.held is not None and key == self.held_site and tree.size == self.held.size \
                and tree.root() != self.held.root:
            return (f"site {key}: the exported log is not an extension of the held checkpoint "
                    f"{self.held.size:,} ({self.held.time or 'time unknown'}): the log was "
                    "rewritten")
        return None

    def _backdated(self, key: str, index: int, stream: int, seq: int) -> str | None:
        """Why the event of a log entry after the held checkpoint is dated before the
        checkpoint's floor (Checkpoint.floor), if it is."""
        held = self.held
        if held is None or key != self.held_site or index < held.size or not held.floor:
            return None
        first = self.leaves[(key, stream)][0]
        times = self.times.get((key, stream))
        if times is None or not 0 <= seq - first < len(times):
            return None
        if times[seq - first] < self.floor:
            return (f"site {key}: the event at stream {stream} seq {seq} (log entry "
                    f"{index:,}) is dated before {held.floor}, yet the held checkpoint of "
                    f"{held.size:,} entries does not hold it and left out no older event: "
                    "it was backdated")
        return None

    def finish(self) -> str | None:
        if self.problem:
            return self.problem
        if self.since is not None and not self.wanted:
            return ("the export carries no log section (a filtered export, or --no-log): "
                    "--since-checkpoint needs a whole export of the site")
        for key, info in self.sites.items():
            tree, body = self.trees[key], self.signed[key]
            if self.digests[key].hexdigest() != info.get("rows_sha256"):
                return f"site {key}: the log rows differ from the signed manifest"
            if tree.size != body.size or tree.root() != body.root:
                return (f"site {key}: the log rows do not give the export's signed checkpoint "
                        f"of {body.size:,} entries: the log was edited")
            self.report.logs[key] = tree.size
        if self.held is not None:
            self.report.extends = (f"site {self.held_site}: the exported log extends the "
                                   f"held checkpoint of {self.held.size:,} entries")
        return None


def verify_export_file(path: str, public_key: str | None = None,
                       since_checkpoint: str | None = None) -> ExportReport:
    """Check an export file on its own; report the first bad row (no database needed).

    SINCE_CHECKPOINT (a signed checkpoint note an auditor kept) must be extended by the
    exported log."""
    report = ExportReport()
    pinned = parse_public_key(public_key) if public_key else None
    report.key_pinned = pinned is not None

    def bad(line: int, row: int | None, event_id, reason: str) -> ExportReport:
        report.problems.append(ExportProblem(line, row, event_id, reason))
        return report

    def bad_delivery(line: int, notification_id, reason: str) -> ExportReport:
        report.problems.append(ExportProblem(line, report.deliveries + 1, None, reason,
                                             kind="delivery",
                                             notification_id=notification_id))
        return report

    with open(path, "rb") as fh:
        manifest_offset, last = _last_line(fh)
        signed = _read_manifest(last)
        fh.seek(0)
        if signed is None:
            lines = sum(1 for _ in fh)
            return bad(lines, None, None, "the last line is not a signed manifest: the "
                       "export is truncated, or lines were added after its manifest")
        why = _check_signed_manifest(signed, pinned, report)
        if why:
            lines = sum(1 for _ in fh)
            return bad(lines, None, None, why)
        manifest = report.manifest
        contiguous = bool(manifest.get("contiguous"))
        digest = hashlib.sha256()
        delivery_digest = hashlib.sha256()
        in_deliveries = False
        in_log = False
        # Unpinned, the manifest's own key checks the checkpoints (as it checks the manifest).
        log_check = _LogCheck(manifest, report, since_checkpoint, pinned or parse_public_key(
            str(signed["signature"].get("public_key", ""))))
        streams: dict[str, dict] = {}
        stream_at: dict[str, str] = {}  # the latest time seen in each stream
        first_hash = last_hash = first_at = last_at = None
        number, offset, pending, line = 0, 0, None, 0
        for number, raw in enumerate(fh, start=1):
            if offset >= manifest_offset:
                break
            offset += len(raw)
            try:
                text = raw.decode("utf-8").removesuffix("\n")
            except UnicodeDecodeError:
                return bad(pending[0] if pending else number,
                           report.rows + 1 if number > 1 else None, None,
                           "not valid UTF-8: the row was edited")
            if report.format == "csv":
                # A quoted cell may hold a line break: a record ends where its quotes
                # balance (quotes inside cells are doubled, so parity tells).
                if pending is not None:
                    text = pending[1] + "\n" + text
                    if text.count('"') % 2:
                        pending = (pending[0], text)
                        continue
                    line, pending = pending[0], None
                elif text.count('"') % 2:
                    pending = (number, text)
                    continue
                else:
                    line = number
            else:
                line = number
            if number == 1:
                if text == ",".join(COLUMNS):
                    report.format = "csv"
                    continue
                if text.endswith("\r") and text[:-1] == ",".join(COLUMNS) or \
                        text.startswith("{") and text.endswith("\r"):
                    return bad(1, None, None, "the line endings were changed (CRLF, as a "
                               "Windows editor or a mail client saves text): the export "
                               "ends its lines with LF only, and its hashes cover the "
                               "exact bytes. Verify the file as downloaded, or convert "
                               "it back (e.g. dos2unix)")
                if not text.startswith("{"):
                    return bad(1, None, None, "not a consent export: the first line is "
                               "neither the CSV header nor a JSON row")
                report.format = "jsonl"
            if report.format != manifest.get("encoding"):
                return bad(line, None, None, "the file's format differs from the one "
                           "its manifest names")
            if text == LOG_HEADER or in_log or (report.format == "jsonl" and text.startswith(
                    '{"type":"log"')):
                if text == LOG_HEADER:
                    if in_log or report.format != "csv":
                        return bad(line, None, None, "a second header of log rows: lines "
                                   "were added")
                    in_log = True
                    continue
                in_log = in_log or report.format == "csv"
                why = log_check.add(text, report.format)
                if why:
                    return bad(line, None, None, why)
                continue
            delivery = in_deliveries
            if report.format == "csv":
                if text == DELIVERY_HEADER:
                    if in_deliveries:
                        return bad(line, None, None, "a second header of delivery rows: "
                                   "lines were added")
                    in_deliveries = True
                    continue
                if not in_deliveries and text.startswith(DELIVERY_MARK + ","):
                    return bad(line, None, None, "a delivery row before the header of "
                               "the delivery rows: the header line was edited or removed")
            try:
                if report.format == "csv":
                    cells = csvcells.read_row(text)
                    row = _delivery_from_csv(cells) if delivery else _row_from_csv(cells)
                else:
                    obj = json.loads(text)
                    # Event rows have no "type"; a delivery row keeps one of these two
                    # names whatever single byte of it is edited.
                    delivery = delivery or (isinstance(obj, dict) and (
                        "type" in obj or "notification_id" in obj))
                    row = _delivery_from_json(obj) if delivery else _row_from_json(obj)
            except (ValueError, StopIteration, csv.Error) as exc:
                if delivery or '"notification_id"' in text:
                    return bad_delivery(line, None, f"cannot be read ({exc}): the row was "
                                        "edited")
                return bad(line, report.rows + 1, None,
                           f"cannot be read ({exc}): the row was edited")
            if delivery:
                in_deliveries = True
                if delivery_hash(row) != row["hash"]:
                    return bad_delivery(line, row["notification_id"], "contents do not "
                                        "match the row's hash: the row was edited")
                report.deliveries += 1
                delivery_digest.update(row["hash"].encode())
                continue
            report.rows += 1
            n, ev = report.rows, row.get("event_id")
            try:
                recomputed = row_hash(row)
            except (TypeError, AttributeError) as exc:
                return bad(line, n, ev, f"cannot be hashed ({exc}): the row was edited")
            if log_check.wanted:
                log_check.bind(row)
            if recomputed != row["hash"]:
                return bad(line, n, ev, "contents do not match the row's hash: the row "
                           "was edited")
            key = f"{row['site']}/{row['stream']}"
            info = streams.get(key)
            if info is not None:
                if row["seq"] <= info["last_seq"]:
                    return bad(line, n, ev, f"seq {row['seq']} does not follow seq "
                               f"{info['last_seq']}: rows were reordered or repeated")
                if contiguous and row["seq"] != info["last_seq"] + 1:
                    return bad(line, n, ev, f"expected seq {info['last_seq'] + 1}, found "
                               f"{row['seq']}: a row before it is missing")
                if contiguous and row["prev_hash"] != info["last_hash"]:
                    return bad(line, n, ev, "prev_hash does not link to the row before "
                               "it: a row was replaced or inserted")
                info.update(last_seq=row["seq"], last_hash=row["hash"], rows=info["rows"] + 1)
            else:
                streams[key] = {"first_seq": row["seq"], "first_prev_hash": row["prev_hash"],
                                "last_seq": row["seq"], "last_hash": row["hash"], "rows": 1}
            at = row["recorded_at"]
            if backdated(at, stream_at.get(key)):
                return bad(line, n, ev, f"recorded at {at}, before a row it follows in its "
                           f"stream ({stream_at[key]}): it was backdated")
            if at and at > stream_at.get(key, ""):
                stream_at[key] = at
            first_hash = first_hash or row["hash"]
            last_hash = row["hash"]
            digest.update(row["hash"].encode())
            first_at = at if first_at is None or at < first_at else first_at
            last_at = at if last_at is None or at > last_at else last_at
        if pending is not None:
            return bad(pending[0], report.rows + 1, None,
                       "a quoted cell never ends: the row was edited")
    expected = {"row_count": report.rows, "first_hash": first_hash, "last_hash": last_hash,
                "rows_sha256": digest.hexdigest()}
    for name, value in expected.items():
        if manifest.get(name) != value:
            return bad(number, None, None, f"the signed manifest says {name} "
                       f"{manifest.get(name)!r} but the rows give {value!r}: rows were "
                       "removed, added or replaced")
    shown = manifest.get("deliveries") or {}
    if not isinstance(shown, dict):
        return bad(number, None, None, "the manifest's deliveries entry is malformed")
    if shown.get("included"):
        expected = {"row_count": report.deliveries,
                    "rows_sha256": delivery_digest.hexdigest()}
        for name, value in expected.items():
            if shown.get(name) != value:
                return bad(number, None, None, f"the signed manifest says deliveries "
                           f"{name} {shown.get(name)!r} but the delivery rows give "
                           f"{value!r}: delivery rows were removed, added or replaced")
    elif report.deliveries:
        return bad(number, None, None, f"{report.deliveries} delivery rows, but the signed "
                   "manifest says the export has none: rows were added")
    why = log_check.finish()
    if why:
        return bad(number, None, None, why)
    if manifest.get("streams") != streams:
        return bad(number, None, None, "per-stream ranges differ from the signed manifest: "
                   "rows were removed or added")
    span = manifest.get("time_range") or {}
    if (span.get("first_recorded_at"), span.get("last_recorded_at")) != (first_at, last_at):
        return bad(number, None, None, "the rows' time range differs from the signed manifest")
    for cp in manifest.get("checkpoints") or []:
        info = streams.get(f"{cp['site']}/{cp['stream']}")
        if info and info["first_seq"] == cp["seq"] + 1 and info["first_prev_hash"] != cp["hash"]:
            return bad(number, None, None, f"stream {cp['site']}/{cp['stream']} does not "
                       "continue from its signed retention checkpoint")
    if contiguous and not (manifest.get("filters") or {}).get("since"):
        # A whole export starts each stream at its first event, or just after the events
        # a retention checkpoint purged.
        starts = retention_heads(manifest)
        for at, info in streams.items():
            site, _, stream = at.rpartition("/")
            seq, value = starts.get((site, int(stream)), (0, GENESIS))
            if (info["first_seq"], info["first_prev_hash"]) != (seq + 1, value):
                return bad(number, None, None, f"stream {at} starts at seq "
                           f"{info['first_seq']}, but no retention checkpoint purged the "
                           "events before it: they were deleted")
    return report


# ---------------------------------------------------------------- verify everything


def verify_outbox(site_ids=None) -> list:
    """Every outbox payload says what its event and the replayed states say (who was told
    what): an edited notification, or one without its event, is named."""
    from .extensions import db
    from .ledger import ConsentEvent, LedgerCheckpoint, apply_event
    from .ledger.verify import SiteProblem, _sites
    from .outbox import OutboxMessage

    out: list = []
    for site_id, key in _sites(site_ids):
        messages: dict[str, list] = {}
        for m in db.session.execute(db.select(OutboxMessage).where(
                OutboxMessage.site_id == site_id)).scalars():
            if m.kind == "guardian.requested":
                why = _guardian_notice_mismatch(m, key)
                if why and len(out) < 20:
                    out.append(SiteProblem(key, f"notification {m.idempotency_key}: {why}",
                                           kind="outbox"))
                continue
            if m.kind == "policy.published":
                # Not about a person: checked against the published version instead.
                why = _policy_notice_mismatch(m, key)
                if why and len(out) < 20:
                    out.append(SiteProblem(key, f"notification {m.idempotency_key}: {why}",
                                           kind="outbox"))
                continue
            messages.setdefault(m.event_id, []).append(m)
        if not messages:
            continue
        purged = {cp.stream: cp.seq for cp in db.session.execute(db.select(
            LedgerCheckpoint).where(LedgerCheckpoint.site_id == site_id)).scalars()}
        states: dict[str, dict | None] = {}
        ev = ConsentEvent.__table__
        query = sa.select(ev).where(ev.c.site_id == site_id).order_by(ev.c.stream, ev.c.seq)
        seen = set()
        for row in db.session.execute(query.execution_options(yield_per=5000)):
            before = states.get(row.subject)
            after = apply_event(before, row._mapping)
            states[row.subject] = after
            for m in messages.get(row.event_id, ()):
                seen.add(row.event_id)
                why = _outbox_mismatch(m, row, key, before, after)
                if why and len(out) < 20:
                    out.append(SiteProblem(key, f"notification {m.idempotency_key}: {why}",
                                           kind="outbox"))
        for event_id, group in messages.items():
            if event_id in seen:
                continue
            # An event removed by a retention purge keeps its notifications (the log
            # outlives them); any other missing event means the payload has no source.
            if not purged:
                for m in group[:1]:
                    out.append(SiteProblem(key, f"notification {m.idempotency_key} tells "
                                           f"of event {event_id}, which is not in the "
                                           "ledger", kind="outbox"))
    return out


def _guardian_notice_mismatch(message, site_key: str) -> str | None:
    """Why a guardian.requested notification does not match the event that opened the
    request (None if it does)."""
    from .extensions import db
    from .ledger import ConsentEvent

    payload = message.payload or {}
    request = payload.get("guardian_request") or {}
    event = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.site_id == message.site_id,
        ConsentEvent.event_id == str(request.get("event_id")))).scalar_one_or_none()
    if event is None:
        return None if _purged(message.site_id) else \
            f"it tells of event {request.get('event_id')}, which is not in the ledger"
    if message.event_id != f"guardian_{request.get('id')}":
        return "it names another guardian request than its own"
    meta = event.meta or {}
    if not meta.get("awaiting_guardian") or request.get("event_id") != event.event_id:
        return "its event did not ask for a guardian"
    withheld = sorted(meta.get("withheld") or [])
    if sorted((request.get("categories") or []) + (request.get("channels") or [])) \
            != withheld or message.subject != event.subject or payload.get("site") != site_key:
        return "its request differs from what the event withheld (edited)"
    return None


def _purged(site_id: int) -> bool:
    from .extensions import db
    from .ledger import LedgerCheckpoint

    return db.session.execute(db.select(LedgerCheckpoint.id).where(
        LedgerCheckpoint.site_id == site_id).limit(1)).first() is not None


def _policy_notice_mismatch(message, site_key: str) -> str | None:
    """Why a policy.published notification does not match its version (None if it does)."""
    from .extensions import db
    from .outbox import policy_event_id
    from .policies import PolicyVersion

    payload = message.payload or {}
    policy = payload.get("policy") or {}
    version = db.session.execute(db.select(PolicyVersion).where(
        PolicyVersion.site_id == message.site_id,
        PolicyVersion.label == str(policy.get("version")))).scalar_one_or_none()
    if version is None or policy_event_id(version.id) != message.event_id:
        return "it announces a policy version that was not published"
    from .database import iso

    expected = {"published_at": iso(version.published_at),
                "effective_at": iso(version.effective_at), "material": version.material,
                "sha256": version.sha256, "summary": version.summary}
    if any(policy.get(k) != v for k, v in expected.items()) or payload.get("site") != site_key:
        return "its policy block differs from the published version (edited)"
    return None


def _outbox_mismatch(message, row, site_key: str, before, after) -> str | None:
    """Why an outbox message does not match its event (None when it does)."""
    from .database import iso

    payload = message.payload or {}
    event = payload.get("event") or {}
    expected = {"id": row.event_id, "action": row.action, "source": row.source,
                "recorded_at": iso(row.recorded_at), "policy_version": row.policy_version}
    if event != expected:
        return "its event block differs from the ledger event (edited)"
    if payload.get("site") != site_key or message.subject != row.subject:
        return "it names another site or subject than its event"
    erased = row.action == "erase"
    kind = "subject.erased" if erased else "consent.changed"
    if message.kind != kind or payload.get("type") != kind:
        return f"it is a {message.kind}, its event asks for {kind}"
    if erased:
        return None if payload.get("state") is None else "an erasure carries no state"
    before, after = before or {}, after or {}
    changes = payload.get("changes") or {}
    for group in ("categories", "channels"):
        old, new = before.get(group) or {}, after.get(group) or {}
        for k, change in (changes.get(group) or {}).items():
            if change != {"from": old.get(k), "to": new.get(k)}:
                return f"its change of {group[:-1]} {k!r} is not what the event changed"
        for k, value in ((payload.get("state") or {}).get(group) or {}).items():
            if new.get(k) != value:
                return f"its state of {group[:-1]} {k!r} is not the state after the event"
    return None


def verify_all(site_ids=None):
    """Everything `flask consent verify` checks: hash chains, the log against its signed
    checkpoints, the projection against a replay, the outbox against its events, the
    notices events name against their digests."""
    from .ledger import verify_ledger
    from .ledger.verify import verify_log, verify_projection
    from .notices import verify_notices

    report = verify_ledger(site_ids)
    report.problems += verify_log(site_ids)
    report.problems += verify_projection(site_ids)
    report.problems += verify_outbox(site_ids)
    report.problems += verify_notices(site_ids)
    return report


# ---------------------------------------------------------------- CLI

from .cli import consent_cli  # noqa: E402


def check_filters(filters: ExportFilters) -> None:
    """Refuse filters that name nothing (ValueError): an unknown site or category, a
    start after the end. An export of zero events is then a fact, not a typo."""
    from .extensions import db
    from .sites import Category, Site, get_site

    if filters.since and filters.until and filters.since >= filters.until:
        from .database import iso

        raise ValueError(f"--since {iso(filters.since)} is not before --until "
                         f"{iso(filters.until)}: the range is empty")
    if filters.site_key:
        get_site(filters.site_key)  # NotFound names it
    if filters.category:
        query = db.select(Category.key).join(Site, Site.id == Category.site_id)
        if filters.site_key:
            query = query.where(Site.key == filters.site_key)
        known = sorted(set(db.session.execute(query).scalars()))
        if filters.category not in known:
            where = f"site {filters.site_key!r}" if filters.site_key else "any site"
            raise ValueError(f"unknown category {filters.category!r} for {where} "
                             f"(known: {', '.join(known) or 'none'})")


# (here, not in cli.py: cli.py would import this module, and this module imports cli.py)
@consent_cli.command("verify")
@click.option("--site", "site_key", help="Only this site.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def verify_command(site_key, as_json):
    """Check the hash chains, the log against its signed checkpoints, the current state
    against a replay and the outbox against its events; exit 1 naming what is wrong."""
    from .sites import NotFound, get_site

    try:
        ids = [get_site(site_key).id] if site_key else None
    except NotFound as exc:
        raise click.ClickException(str(exc))
    report = verify_all(ids)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "events": report.events,
                               "streams": report.streams,
                               "problems": [p.__dict__ for p in report.problems]}))
    elif report.ok:
        click.echo(f"OK: {report.events} events in {report.streams} streams verify")
    else:
        for problem in report.problems:
            click.echo(f"BAD: {problem}", err=True)
    sys.exit(0 if report.ok else 1)



def parse_when(value: str | None, *, end: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD) or ISO time as an aware UTC datetime; END: a date means its end."""
    if value in (None, ""):
        return None
    from datetime import timedelta

    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day + timedelta(days=1) if end else day
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or ISO date-time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@consent_cli.command("export")
@click.option("--site", "site_key", help="Only this site (default: every site).")
@click.option("--since", help="From this date/time on (YYYY-MM-DD or ISO, UTC).")
@click.option("--until", help="Up to this date (inclusive) or before this ISO time.")
@click.option("--subject", help="Only this subject (visitor id or ledger pseudonym).")
@click.option("--category", help="Only events that name this category.")
@click.option("--action", "actions", multiple=True, type=click.Choice(ACTIONS),
              help="Only these actions (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True)
@click.option("--deliveries/--no-deliveries", default=True, show_default=True,
              help="Append the webhook delivery log (who was told, when) after the events.")
@click.option("--log/--no-log", "with_log", default=True, show_default=True,
              help="Append each site's log up to the checkpoint the export was cut at, so "
              "verify-export --since-checkpoint can check it (unfiltered exports; about "
              "90 bytes an event in CSV).")
@click.option("--output", "-o", default="-", help="File to write (default: standard output).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on standard error (default: when writing to a file).")
def export_command(site_key, since, until, subject, category, actions, fmt, deliveries,
                   with_log, output, progress):
    """Export the consent ledger and webhook delivery log with a signed manifest."""
    from .errors import DomainError
    from .sites import NotFound

    try:
        filters = ExportFilters(site_key=site_key, since=parse_when(since),
                                until=parse_when(until, end=True), subject=subject,
                                category=category, actions=tuple(actions),
                                deliveries=deliveries, log=with_log)
        check_filters(filters)
        if output != "-":
            folder = os.path.dirname(os.path.abspath(output))
            if not os.path.isdir(folder):
                raise ValueError(f"cannot write {output}: the directory {folder} does not "
                                 "exist")
        if progress is None:
            progress = output != "-"
        out = sys.stdout if output == "-" else open(output, "w", encoding="utf-8",
                                                    newline="")
        try:
            if progress:
                total = count_rows(filters)
                with click.progressbar(length=total, label=f"exporting {total} events",
                                       file=sys.stderr, show_pos=True) as bar:
                    write_export(out, filters, fmt, bar.update)
            else:
                write_export(out, filters, fmt)
        finally:
            if out is not sys.stdout:
                out.close()
    except (ValueError, NotFound) as exc:
        raise click.ClickException(str(exc))
    except DomainError as exc:
        raise click.ClickException(exc.detail)
    if output != "-":
        click.echo(f"wrote {output}", err=True)


@consent_cli.command("verify-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--public-key", help="The server's public key (ed25519:..., or a PEM file) "
              "to pin; without it the key embedded in the export is used.")
@click.option("--since-checkpoint", "since", type=click.Path(exists=True, dir_okay=False),
              help="A signed checkpoint held from earlier: the exported log must extend it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def verify_export_command(file, public_key, since, as_json):
    """Check an export file alone (no database): exit 1 naming the first bad row."""
    try:
        held = open(since, encoding="utf-8").read() if since else None
        report = verify_export_file(file, public_key, held)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    _print_report(report, as_json)
    sys.exit(0 if report.ok else 1)


def _print_report(report: ExportReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "rows": report.rows,
                               "deliveries": report.deliveries, "format": report.format,
                               "key_id": report.key_id, "key_pinned": report.key_pinned,
                               "logs": report.logs, "extends": report.extends,
                               "problems": [p.__dict__ for p in report.problems]}))
    elif report.ok:
        also = f" and {report.deliveries} delivery rows" if report.deliveries else ""
        logs = "".join(f"; the log of site {key} ({size:,} entries) matches its signed "
                       "checkpoint" for key, size in report.logs.items())
        click.echo(f"OK: {report.rows} rows{also} verify{logs}"
                   + (f"; {report.extends}" if report.extends else "")
                   + f"; manifest signed by key {report.key_id}"
                   + ("" if report.key_pinned else
                      " (not pinned: pass --public-key to rule out a re-signed file)"))
    else:
        for problem in report.problems:
            click.echo(f"BAD: {problem}", err=True)


@consent_cli.command("signing-key")
@click.option("--pem", is_flag=True, help="Print the PEM form.")
@click.option("--site", "site_key", help="Only the verifier key of this site's log.")
def signing_key_command(pem, site_key):
    """Print the public key: `ed25519:<base64>`, then each site's log key in signed-note
    verifier-key form (`<origin>+<key id>+<key>`, what witnesses and Go's note package
    read)."""
    from .extensions import db
    from .ledger.log import verifier_text
    from .sites import NotFound, Site, get_site

    if pem:
        click.echo(public_key_pem())
        return
    if site_key:
        try:
            click.echo(verifier_text(get_site(site_key).key))
        except NotFound as exc:
            raise click.ClickException(str(exc))
        return
    click.echo(public_key_text())
    for key in db.session.execute(db.select(Site.key).order_by(Site.id)).scalars():
        click.echo(verifier_text(key))
    click.echo(f"key id {key_id(public_key_raw())}", err=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m consent.audit FILE [--public-key KEY] [--since-checkpoint FILE]`: verify
    without the Flask app."""
    import argparse

    parser = argparse.ArgumentParser(description="Verify a consent export file offline.")
    parser.add_argument("file")
    parser.add_argument("--public-key")
    parser.add_argument("--since-checkpoint", help="a signed checkpoint held from earlier")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    held = None
    if args.since_checkpoint:
        with open(args.since_checkpoint, encoding="utf-8") as fh:
            held = fh.read()
    report = verify_export_file(args.file, args.public_key, held)
    _print_report(report, args.json)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
