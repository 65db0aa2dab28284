"""The verifiable log: every event gets an index in its site's RFC 9162 Merkle tree.

Write path and log are two parts, as Trillian/Tessera split sequencer and integrator:
the consent write appends its event to a per-stream hash chain and commits (nothing of
the log is on that path), and the integrator, behind it, gives the new events log indexes
in batches, stores the tree's new perfect subtrees and signs a checkpoint.

Which events are new: per stream, those with `seq` above the stream's integrated
watermark (`log_streams`). A stream's events commit in `seq` order (each holds the
stream's head row until it commits), so whatever a reader sees of a stream is a prefix of
it; "id > last integrated" would lose events on PostgreSQL, where a lower id can commit
after a higher one. A batch is ordered by id (deterministic), which keeps every stream's
events in order. The integrator re-checks each event's chain hash and link before giving
it an index: an event edited before it was integrated is refused, not logged.

One integrator at a time: PostgreSQL's advisory lock (per site), SQLite's write lock
(BEGIN IMMEDIATE). Safe to run from every web process (`start_integrator`: one process
of a database is elected, by a file lock on SQLite and a session advisory lock on
PostgreSQL) and from cron on any machine (`flask consent integrate`).

Storage: `log_nodes` holds every perfect subtree once, `(level, index)` covering leaves
`[index * 2**level, (index + 1) * 2**level)`; level 0 are the leaf hashes. A root or a
proof of any size needs O(log n) of them, read in one query. Perfect subtrees never
change, so rows are only ever inserted (about 2 rows per event). `log_leaves` maps log
index to (stream, seq), i.e. to the event.

The leaf of an event is exactly what its chain hash covers: `prev_hash || "\\n" ||
canonical JSON of its hashed fields` (UTF-8), so a receipt holder recomputes it from the
event they were given.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from .. import rawsql
from ..database import UTCDateTime, iso, run_write, utcnow
from ..extensions import db
from . import merkle, signer_state
from .chain import BigId, canonical, hashed_fields
from .keys import previous_public_keys, public_key_raw, signing_key
from .notes import Checkpoint, NoteError, Verifier, open_checkpoint, sign_note

log = logging.getLogger(__name__)


class LogLeaf(db.Model):
    """Which event holds which index of its site's log."""

    __tablename__ = "log_leaves"
    __table_args__ = (sa.UniqueConstraint("site_id", "stream", "seq"),)

    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)
    log_index: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True,
                                           autoincrement=False)
    stream: Mapped[int] = mapped_column()
    seq: Mapped[int] = mapped_column(sa.BigInteger)


class LogNode(db.Model):
    """The hash of one perfect subtree of a site's log (level 0: a leaf)."""

    __tablename__ = "log_nodes"

    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)
    level: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True,
                                       autoincrement=False)
    idx: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))


class LogStream(db.Model):
    """How far one stream of a site has been integrated (seq and hash of its last event)."""

    __tablename__ = "log_streams"

    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)
    stream: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[str] = mapped_column(sa.String(64))


class LogCheckpoint(db.Model):
    """A signed checkpoint (C2SP tlog-checkpoint note) of a site's log."""

    __tablename__ = "log_checkpoints"
    __table_args__ = (sa.Index("ix_log_checkpoints_site_size", "site_id", "size"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    root: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(sa.Text)


# ---------------------------------------------------------------- leaves and origins


def leaf_bytes(prev_hash: str, fields: dict) -> bytes:
    """The log entry of an event: what its chain hash covers."""
    return (prev_hash + "\n" + canonical(fields)).encode("utf-8")


def event_leaf_hash(prev_hash: str, fields: dict) -> bytes:
    """The RFC 9162 leaf hash of an event."""
    return merkle.leaf_hash(leaf_bytes(prev_hash, fields))


def log_origin(site_key: str) -> str:
    """The origin line (and key name) of a site's checkpoints."""
    template = current_app.config.get("CONSENT_LOG_ORIGIN") or ""
    if not template:
        public = current_app.config.get("CONSENT_PUBLIC_URL") or os.environ.get(
            "CONSENT_PUBLIC_URL", "")
        host = public.split("://", 1)[-1].split("/", 1)[0] if public else "consent.local"
        template = host + "/{site}"
    return template.replace("{site}", site_key)


def site_verifiers(site_key: str) -> list[Verifier]:
    """The keys a site's checkpoints may be signed with: the current one and old ones."""
    origin = log_origin(site_key)
    return [Verifier(origin, raw) for raw in [public_key_raw(), *previous_public_keys()]]


def verifier_text(site_key: str) -> str:
    """The current key of a site's log in signed-note verifier-key form."""
    return Verifier(log_origin(site_key), public_key_raw()).text()


# ---------------------------------------------------------------- reading the tree


def read_nodes(site_id: int, wanted: set[merkle.Node]) -> dict[merkle.Node, bytes]:
    """The hashes of the perfect subtrees WANTED (one query); KeyError if one is absent."""
    if not wanted:
        return {}
    params: dict = {"site_id": site_id}
    terms = []
    for i, (level, index) in enumerate(sorted(wanted)):
        params[f"l{i}"], params[f"i{i}"] = level, index
        terms.append(f"(level = :l{i} AND idx = :i{i})")
    rows = rawsql.all_rows("SELECT level, idx, hash FROM log_nodes WHERE site_id = :site_id "
                           "AND (" + " OR ".join(terms) + ")", params)
    found = {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}
    missing = wanted - set(found)
    if missing:
        raise KeyError(f"log nodes missing: {sorted(missing)[:3]}")
    return found


def tree_size(site_id: int) -> int:
    """How many events the site's log holds."""
    row = rawsql.one("SELECT MAX(log_index) FROM log_leaves WHERE site_id = :site_id",
                     {"site_id": site_id})
    return 0 if row is None or row[0] is None else int(row[0]) + 1


def root_hash(site_id: int, size: int) -> bytes:
    """The root of the first SIZE entries of the site's log."""
    return merkle.root_of(size, lambda wanted: read_nodes(site_id, wanted))


def inclusion_proof(site_id: int, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of entry INDEX in the tree of SIZE."""
    return merkle.hashes_of(merkle.inclusion_ranges(index, size),
                            lambda wanted: read_nodes(site_id, wanted))


def consistency_proof(site_id: int, old: int, new: int) -> list[bytes]:
    """RFC 9162 consistency proof from the tree of OLD entries to the tree of NEW."""
    return merkle.hashes_of(merkle.consistency_ranges(old, new),
                            lambda wanted: read_nodes(site_id, wanted))


def leaf_index_of(site_id: int, stream: int, seq: int) -> int | None:
    """The log index of the event at (STREAM, SEQ), or None before it is integrated."""
    row = rawsql.one("SELECT log_index FROM log_leaves WHERE site_id = :site_id AND "
                     "stream = :stream AND seq = :seq",
                     {"site_id": site_id, "stream": stream, "seq": seq})
    return None if row is None else int(row[0])


def latest_checkpoint(site_id: int) -> LogCheckpoint | None:
    """The site's most recently signed checkpoint (by signing order, not size: a log that
    was rewound must show its smaller checkpoint, not hide behind an old larger one)."""
    return db.session.execute(
        db.select(LogCheckpoint).where(LogCheckpoint.site_id == site_id)
        .order_by(LogCheckpoint.id.desc()).limit(1)
    ).scalar_one_or_none()


def checkpoint_of_size(site_id: int, size: int) -> LogCheckpoint | None:
    """The latest signed checkpoint of exactly SIZE entries, if the log signed one."""
    return db.session.execute(
        db.select(LogCheckpoint).where(LogCheckpoint.site_id == site_id,
                                       LogCheckpoint.size == size)
        .order_by(LogCheckpoint.id.desc()).limit(1)).scalar_one_or_none()


def b64(value: bytes) -> str:
    """Hashes travel as standard base64, as in checkpoints."""
    return base64.b64encode(value).decode()


# ---------------------------------------------------------------- the integrator


@dataclass
class Integration:
    """What one integration pass of one site did."""

    site_key: str
    added: int = 0
    size: int = 0
    checkpoint: str | None = None
    refused: list[str] | None = None
    # The whole log was refused (it does not extend a signed checkpoint): nothing written.
    blocked: bool = False


_EVENT_COLUMNS = ("id, event_id, stream, seq, subject, recorded_at, action, source, "
                  "categories, channels, policy_version, locale, meta, details_digest, "
                  "idempotency_key, prev_hash, hash")


def _lock_site(site_id: int) -> None:
    """Serialise integrators of one site (SQLite: the transaction's write lock does)."""
    if rawsql.dialect() == "postgresql":
        # A fixed 32-bit namespace for this lock, and the site id as the second key.
        rawsql.one("SELECT pg_advisory_xact_lock(:ns, :site_id)",
                   {"ns": zlib.crc32(b"consent-log-integrator") & 0x7FFFFFFF,
                    "site_id": site_id})


def _event_fields(row: dict, site_key: str) -> dict:
    return hashed_fields(
        event_id=row["event_id"], site_key=site_key, stream=row["stream"], seq=row["seq"],
        subject=row["subject"], recorded_at=iso(rawsql.from_db_time(row["recorded_at"])),
        action=row["action"], source=row["source"],
        categories=rawsql.from_db_json(row["categories"]),
        channels=rawsql.from_db_json(row["channels"]),
        policy_version=row["policy_version"], locale=row["locale"],
        meta=rawsql.from_db_json(row["meta"]), details_digest=row["details_digest"],
        idempotency_key=row["idempotency_key"])


def _stream_marks(site_id: int) -> dict[int, tuple[int, str]]:
    """{stream: (seq, hash)} of the site's last integrated event per stream."""
    return {int(r[0]): (int(r[1]), r[2]) for r in rawsql.all_rows(
        "SELECT stream, seq, hash FROM log_streams WHERE site_id = :site_id",
        {"site_id": site_id})}


def _new_events(site_id: int, site_key: str, batch: int, refused: list[str],
                marks: dict[int, tuple[int, str]]) -> list[dict]:
    """Events not yet in the log, at most BATCH, ordered by id; each stream's in order."""
    heads = rawsql.all_rows("SELECT stream, seq FROM ledger_heads WHERE site_id = :site_id",
                            {"site_id": site_id})
    names = [c.strip() for c in _EVENT_COLUMNS.split(",")]
    candidates: list[dict] = []
    for stream, head_seq in heads:
        done_seq = marks.get(int(stream), (0, None))[0]
        if int(head_seq) <= done_seq:
            continue
        candidates += [dict(zip(names, raw)) for raw in rawsql.all_rows(
            f"SELECT {_EVENT_COLUMNS} FROM consent_events WHERE site_id = :site_id AND "
            "stream = :stream AND seq > :seq ORDER BY seq LIMIT :batch",
            {"site_id": site_id, "stream": stream, "seq": done_seq, "batch": batch})]
    # The batch first (each stream's events keep their id order, so what is taken of a
    # stream is a prefix of what is new in it), then the chain checks on what is taken
    # only: with a backlog in every stream, hashing what the cut drops would multiply the
    # work by the number of streams.
    candidates.sort(key=lambda r: int(r["id"]))
    chosen = candidates[:batch]
    bad_streams: set[int] = set()
    expect: dict[int, tuple[int, str | None]] = {}
    for row in sorted(chosen, key=lambda r: (int(r["stream"]), int(r["seq"]))):
        stream = int(row["stream"])
        if stream in bad_streams:
            continue
        done_seq, done_hash = marks.get(stream, (0, None))
        expect_seq, expect_hash = expect.get(stream, (done_seq + 1, done_hash))
        # The leaf is exactly what the chain hash covers: encoded once for both.
        entry = leaf_bytes(row["prev_hash"], _event_fields(row, site_key))
        why = None
        if int(row["seq"]) != expect_seq:
            why = f"seq {expect_seq} is missing"
        elif expect_hash is not None and row["prev_hash"] != expect_hash:
            why = "its prev_hash does not link to the event before it"
        elif hashlib.sha256(entry).hexdigest() != row["hash"]:
            why = "its contents do not match its hash"
        if why:
            # Never put an event into the log that the chain does not vouch for: the
            # stream stops here until `flask consent verify` is looked at.
            refused.append(f"site {site_key} stream {stream} event {row['event_id']} "
                           f"(seq {row['seq']}): {why}")
            bad_streams.add(stream)
            continue
        row["leaf"] = merkle.leaf_hash(entry)
        expect[stream] = (int(row["seq"]) + 1, row["hash"])
    return [row for row in chosen if "leaf" in row]


# The first event above each stream's watermark is its oldest not in the log.
_OLDEST_UNLOGGED = (
    "SELECT MIN(e.recorded_at) FROM ledger_heads h "
    "LEFT JOIN log_streams l ON l.site_id = h.site_id AND l.stream = h.stream "
    "JOIN consent_events e ON e.site_id = h.site_id AND e.stream = h.stream "
    "AND e.seq = COALESCE(l.seq, 0) + 1 "
    "WHERE h.site_id = :site_id AND h.seq > COALESCE(l.seq, 0)")


def sign_checkpoint(site_id: int, site_key: str, size: int, root: bytes) -> str:
    """Sign and store a checkpoint of the site's log; returns the signed note."""
    now = utcnow()
    # The oldest event committed but left out (a backlog, a refused stream): no later
    # entry may be dated before it, or before the signing time when there is none; an
    # outsider's check of backdated events rests on this (docs/audit.md).
    oldest = rawsql.one(_OLDEST_UNLOGGED, {"site_id": site_id})[0]
    pending = iso(rawsql.from_db_time(oldest)) if oldest is not None else "none"
    body = Checkpoint(log_origin(site_key), size, root,
                      [f"time {iso(now)}", f"pending {pending}"])
    note = sign_note(body.text(), body.origin, signing_key())
    rawsql.run("INSERT INTO log_checkpoints (site_id, size, root, created_at, note) VALUES "
               "(:site_id, :size, :root, :created_at, :note)",
               {"site_id": site_id, "size": size, "root": root.hex(),
                "created_at": rawsql.to_db_time(now), "note": note})
    signer_state.keep_after_commit(db.session(), body.origin, note, size)
    return note


def _signed_before(site_id: int, site_key: str) -> tuple[list[tuple[Checkpoint, str]],
                                                          str | None]:
    """The checkpoints a new one must extend: the one this signer kept outside the database
    (which must still be in it) and the latest one in the database; or why none can be
    trusted."""
    origin = log_origin(site_key)
    verifiers = site_verifiers(site_key)
    refs: list[tuple[Checkpoint, str]] = []
    try:
        held = signer_state.held_checkpoint(origin, verifiers)
    except signer_state.StateError as exc:
        return [], f"site {site_key}: {exc}"
    if held is not None:
        stored = rawsql.one("SELECT 1 FROM log_checkpoints WHERE site_id = :site_id AND "
                            "size = :size AND note = :note",
                            {"site_id": site_id, "size": held.size, "note": held.note})
        if stored is None:
            return [], (f"site {site_key}: the checkpoint of {held.size:,} entries signed at "
                        f"{held.when}, kept by this signer in {held.path}, is gone from the "
                        "database: checkpoint rows were deleted or rewound")
        refs.append((held.checkpoint, f"signed at {held.when}"))
    last = rawsql.one("SELECT id, size, note FROM log_checkpoints WHERE site_id = :site_id "
                      "ORDER BY id DESC LIMIT 1", {"site_id": site_id})
    if last is not None and (held is None or last[2] != held.note):
        try:
            checkpoint, _ = open_checkpoint(last[2], verifiers)
        except NoteError as exc:
            return [], (f"site {site_key}: the latest checkpoint in the database (of "
                        f"{int(last[1]):,} entries) does not verify ({exc}): it was edited")
        refs.append((checkpoint, f"signed at {checkpoint.time or 'time unknown'}"))
    return refs, None


def _inconsistency(site_id: int, site_key: str, size: int, root: bytes,
                   new_nodes: dict[merkle.Node, bytes]) -> str | None:
    """Why the tree of SIZE entries with ROOT (stored nodes plus NEW_NODES) must not be
    signed: it does not extend a checkpoint signed before (RFC 9162 consistency proof)."""
    refs, why = _signed_before(site_id, site_key)
    if why:
        return why

    def read(wanted: set[merkle.Node]) -> dict[merkle.Node, bytes]:
        found = read_nodes(site_id, {n for n in wanted if n not in new_nodes})
        found.update({n: new_nodes[n] for n in wanted if n in new_nodes})
        return found

    for old, when in refs:
        if size < old.size:
            return (f"site {site_key}: the log holds {size:,} entries but the checkpoint of "
                    f"{old.size:,} {when} covers more: the log was rewound")
        try:
            proof = merkle.hashes_of(merkle.consistency_ranges(old.size, size), read)
        except KeyError as exc:
            return f"site {site_key}: the stored tree is incomplete ({exc}): it was edited"
        if not merkle.verify_consistency(old.size, size, proof, old.root, root):
            return (f"site {site_key}: the log of {size:,} entries is not an extension of "
                    f"the checkpoint of {old.size:,} {when}: the log was rewritten")
    return None


@dataclass
class PreparedBatch:
    """A site's next batch of log entries, computed from what one snapshot showed."""

    size: int  # the tree size it extends
    marks: dict[int, tuple[int, str]]  # log_streams as the snapshot had them
    compact: merkle.CompactRange  # the tree after the batch
    leaves: list[dict]
    nodes: list[dict]
    new_marks: dict[int, tuple[int, str]]
    refused: list[str]


def prepare_batch(site_id: int, site_key: str, batch: int | None = None) -> PreparedBatch:
    """Read the site's next BATCH new events, re-check their chain and compute their log
    leaves and tree nodes (the integrator's CPU work, ~0.1 ms an event).

    Needs no write transaction: `integrate_site` takes the result only if the log is
    still where this snapshot saw it, so the integrator does this work outside the
    database's write lock (on SQLite, holding it stalled every consent write for the
    ~0.25 s a batch of 2,000 took).
    """
    batch = batch or int(current_app.config.get("CONSENT_LOG_BATCH", 2000))
    size = tree_size(site_id)
    border_nodes = merkle.CompactRange.border_nodes(size)
    border = read_nodes(site_id, set(border_nodes))
    compact = merkle.CompactRange(size, [border[n] for n in border_nodes])
    marks = _stream_marks(site_id)
    refused: list[str] = []
    events = _new_events(site_id, site_key, batch, refused, marks)
    leaves, nodes, new_marks = [], [], {}
    for row in events:
        leaves.append({"site_id": site_id, "log_index": compact.size,
                       "stream": row["stream"], "seq": row["seq"]})
        for level, index, value in compact.append(row["leaf"]):
            nodes.append({"site_id": site_id, "level": level, "idx": index, "hash": value})
        new_marks[int(row["stream"])] = (int(row["seq"]), row["hash"])
    return PreparedBatch(size, marks, compact, leaves, nodes, new_marks, refused)


def integrate_site(site_id: int, site_key: str, *, batch: int | None = None,
                   checkpoint: bool = True, force_checkpoint: bool = False,
                   prepared: PreparedBatch | None = None) -> Integration:
    """Give the site's new events log indexes (one batch) and sign a checkpoint.

    Must run inside a write transaction. A checkpoint is signed when events were added,
    when the site has none yet, or when FORCE_CHECKPOINT asks. PREPARED (from
    `prepare_batch`, outside the transaction) is used only when the tree and every
    stream's watermark are still what it was computed from; otherwise the batch is
    computed again here.
    """
    _lock_site(site_id)
    if prepared is None or prepared.size != tree_size(site_id) \
            or prepared.marks != _stream_marks(site_id):
        prepared = prepare_batch(site_id, site_key, batch)
    result = Integration(site_key, refused=list(prepared.refused))
    size, compact = prepared.size, prepared.compact
    leaves, nodes, marks = prepared.leaves, prepared.nodes, prepared.new_marks
    # C2SP tlog-checkpoint: never sign (nor grow) a log that does not extend what was
    # signed before. Checked on the tree as it will be, before anything is written.
    why = _inconsistency(site_id, site_key, compact.size, compact.root(),
                         {(n["level"], n["idx"]): n["hash"] for n in nodes})
    if why:
        result.refused.append(why + "; nothing was signed")
        result.size, result.blocked = size, True
        return result
    if leaves:
        rawsql.insert_rows(LogLeaf.__table__, leaves)
        rawsql.insert_rows(LogNode.__table__, nodes)
        for stream, (seq, value) in marks.items():
            params = {"site_id": site_id, "stream": stream, "seq": seq, "hash": value}
            rawsql.run("INSERT INTO log_streams (site_id, stream, seq, hash) VALUES "
                       "(:site_id, :stream, :seq, :hash) ON CONFLICT (site_id, stream) DO "
                       "UPDATE SET seq = excluded.seq, hash = excluded.hash", params)
    result.added, result.size = len(leaves), compact.size
    if checkpoint:
        last = rawsql.one("SELECT size, root FROM log_checkpoints WHERE site_id = :site_id "
                          "ORDER BY id DESC LIMIT 1", {"site_id": site_id})
        # (also when an earlier batch of this pass added what no checkpoint covers yet:
        # a backlog of a whole number of batches ends on an empty one)
        if leaves or last is None or force_checkpoint or int(last[0]) != compact.size:
            result.checkpoint = sign_checkpoint(site_id, site_key, compact.size,
                                                compact.root())
    return result


def _sites_with_new_events() -> list[tuple[int, str]]:
    rows = rawsql.all_rows(
        "SELECT DISTINCT s.id, s.key FROM ledger_heads h JOIN sites s ON s.id = h.site_id "
        "LEFT JOIN log_streams l ON l.site_id = h.site_id AND l.stream = h.stream "
        "WHERE h.seq > COALESCE(l.seq, 0) ORDER BY s.id")
    return [(int(r[0]), r[1]) for r in rows]


@dataclass
class Backlog:
    """Events of one site that are committed but not yet in its log."""

    site_key: str
    events: int
    oldest_recorded_at: datetime


def log_backlog() -> list[Backlog]:
    """Per site with events not yet integrated: how many, and when the oldest was
    recorded. Empty when every committed event has its log index. One query: the stream
    heads against their watermarks (a row per stream), and the first event above each
    watermark by its (site, stream, seq) key; a stream whose next event is not visible
    yet (its transaction has not committed) counts only once it is."""
    rows = rawsql.all_rows(
        "SELECT s.key, SUM(h.seq - COALESCE(l.seq, 0)), MIN(e.recorded_at) "
        "FROM ledger_heads h JOIN sites s ON s.id = h.site_id "
        "LEFT JOIN log_streams l ON l.site_id = h.site_id AND l.stream = h.stream "
        "JOIN consent_events e ON e.site_id = h.site_id AND e.stream = h.stream "
        "AND e.seq = COALESCE(l.seq, 0) + 1 "
        "WHERE h.seq > COALESCE(l.seq, 0) GROUP BY s.key ORDER BY s.key")
    return [Backlog(key, int(pending), rawsql.from_db_time(oldest))
            for key, pending, oldest in rows]


def log_health() -> dict:
    """How far behind the log is, overall and per site (for /healthz, `flask consent
    check-log`, the dashboard and `_overdue`): "behind" once its oldest missing event is
    older than CONSENT_LOG_MAX_LAG_SECONDS."""
    backlog = log_backlog()
    limit = float(current_app.config.get("CONSENT_LOG_MAX_LAG_SECONDS", 600.0))
    now = utcnow()
    oldest = min((b.oldest_recorded_at for b in backlog), default=None)
    age = round(max(0.0, (now - oldest).total_seconds()), 3) if oldest else None
    return {"status": "behind" if age is not None and age > limit else "ok",
            "pending_events": sum(b.events for b in backlog),
            "oldest_pending_seconds": age, "max_lag_seconds": limit,
            "sites": [{"site": b.site_key, "pending_events": b.events,
                       "oldest_pending_seconds": round(max(0.0, (
                           now - b.oldest_recorded_at).total_seconds()), 3)}
                      for b in backlog]}


def _sites_missing_their_checkpoint() -> list[tuple[int, str]]:
    """Sites whose checkpoint kept by this signer is no longer in the database (the
    integrator then runs, refuses and says so even when no event arrives)."""
    out = []
    for site_id, key in rawsql.all_rows("SELECT id, key FROM sites ORDER BY id"):
        try:
            held = signer_state.held_note(log_origin(key))
        except signer_state.StateError:
            out.append((int(site_id), key))  # unreadable: integrate_site reports it
            continue
        if held is not None and rawsql.one(
                "SELECT 1 FROM log_checkpoints WHERE site_id = :site_id AND size = :size "
                "AND note = :note", {"site_id": site_id, "size": held[2],
                                     "note": held[1]}) is None:
            out.append((int(site_id), key))
    return out


def integrate(site_key: str | None = None, *, max_batches: int = 1000) -> list[Integration]:
    """Integrate every site with new events (or SITE_KEY), batch after batch, each batch in
    its own transaction; returns what each pass did."""
    from ..sites import get_site

    if site_key is not None:
        site = get_site(site_key)
        targets = [(site.id, site.key)]
    else:
        targets = _sites_with_new_events()
        targets += [t for t in _sites_missing_their_checkpoint() if t not in targets]
    batch = int(current_app.config.get("CONSENT_LOG_BATCH", 2000))
    done: list[Integration] = []
    for site_id, key in targets:
        for turn in range(max_batches):
            # The hashing outside the write transaction; only the rows inside it.
            try:
                prepared = prepare_batch(site_id, key)
            finally:
                db.session.commit()  # (ends the read snapshot)
            # One checkpoint a pass, after its last batch: small batches keep each write
            # transaction short (on SQLite the consent writes wait for it) without
            # signing a checkpoint for every one of them.
            last = len(prepared.leaves) < batch or turn == max_batches - 1
            result = run_write(integrate_site, site_id, key, prepared=prepared,
                               checkpoint=last)
            done.append(result)
            for why in result.refused or []:
                log.error("not integrated: %s", why)
            if result.blocked or result.added < batch:
                if not last and not result.blocked:
                    # (the batch was computed again inside, and came out short: sign)
                    done.append(run_write(integrate_site, site_id, key,
                                          force_checkpoint=True))
                break
    return done


def ensure_integrated(site_id: int, site_key: str, stream: int, seq: int) -> int | None:
    """The log index of an event, integrating first when it has none yet (None if it
    still cannot be: its stream is refused, see `integrate_site`)."""
    index = leaf_index_of(site_id, stream, seq)
    if index is not None:
        return index
    for _ in range(1000):
        result = run_write(integrate_site, site_id, site_key)
        index = leaf_index_of(site_id, stream, seq)
        if index is not None or not result.added:
            return index
    return None


# ---------------------------------------------------------------- background integrator

_started: set[tuple[str, int]] = set()
_started_lock = threading.Lock()


def start_integrator(app) -> None:
    """Run the integrator every CONSENT_LOG_INTEGRATE_SECONDS in this process (once).

    One process of a database integrates: on SQLite a file lock elects it (as for WAL
    checkpoints; the kernel frees it if that process dies), on PostgreSQL a session
    advisory lock held on a connection of its own (the server frees it when that
    connection ends: the process died, or the server restarted). The others ask again
    every interval, and integrate anyway when the log has fallen half of
    CONSENT_LOG_MAX_LAG_SECONDS behind (`_overdue`). The election only saves work: the
    per-site lock of `integrate_site` is what keeps two integrators (a web process and
    `flask consent integrate` from cron, say) correct.
    """
    key = (app.config["SQLALCHEMY_DATABASE_URI"], os.getpid())
    if key in _started:
        return  # (every request asks: answered without the lock once it runs)
    interval = float(app.config.get("CONSENT_LOG_INTEGRATE_SECONDS") or 0)
    if interval <= 0:
        return
    with _started_lock:
        if key in _started:
            return
        _started.add(key)
    threading.Thread(target=_integrator_loop, args=(app, interval), daemon=True,
                     name="log-integrator").start()


# The namespace of the PostgreSQL advisory lock that elects the integrating process (the
# second key is 0; `_lock_site` uses another namespace, with the site's id).
ELECTION_NS = zlib.crc32(b"consent-log-integrator-election") & 0x7FFFFFFF


class _FileElection:
    """SQLite: this process holds the database's integrator lock file (until it exits)."""

    def __init__(self, fd: int):
        self.fd = fd

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _AdvisoryElection:
    """PostgreSQL: this process holds the election's session advisory lock on CONN, a
    connection taken out of the pool for it (autocommit: never idle in a transaction)."""

    def __init__(self, conn):
        self.conn = conn

    def alive(self) -> bool:
        """Whether the lock's connection is still up; a lost connection lost the lock."""
        try:
            self.conn.execute("SELECT 1").fetchone()
            return True
        except Exception:  # noqa: BLE001 - any failure: the lock may be gone
            self.close()
            return False

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - already gone
            pass


def _elect(app) -> _FileElection | _AdvisoryElection | None:
    """This process's turn as the integrator, or None when another process has it."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if not uri.startswith("sqlite:///"):
        return _elect_postgresql(app)
    path = os.path.abspath(uri.removeprefix("sqlite:///")) + ".integrator-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return _FileElection(fd)  # kept open: the lock lasts as long as this process


def _elect_postgresql(app) -> _AdvisoryElection | None:
    with app.app_context():
        proxied = db.engine.raw_connection()
    proxied.detach()  # ours alone: never handed back to the pool; closing it ends it
    conn = proxied.dbapi_connection
    try:
        conn.rollback()
        conn.autocommit = True
        won = conn.execute("SELECT pg_try_advisory_lock(%s, 0)", (ELECTION_NS,)).fetchone()[0]
    except BaseException:
        conn.close()
        raise
    if not won:
        conn.close()
        return None
    return _AdvisoryElection(conn)


def _database_gone(app, exc: BaseException | None = None) -> bool:
    """Whether the app's database no longer exists (a test's temporary one, say): then
    the integrator's work is gone too."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///"):
        return not os.path.exists(uri.removeprefix("sqlite:///").split("?", 1)[0])
    # PostgreSQL: SQLSTATE 3D000. A refused connection carries no SQLSTATE in psycopg, only
    # the server's message (in English unless the server's lc_messages says otherwise;
    # then the thread keeps trying, as it did before).
    if exc is None:
        return False
    orig = getattr(exc, "orig", exc)
    name = sa.engine.make_url(uri).database
    return getattr(orig, "sqlstate", None) == "3D000" \
        or f'database "{name}" does not exist' in str(orig)


def _overdue(app) -> bool:
    """Whether the log is so far behind (its oldest missing event older than half of
    CONSENT_LOG_MAX_LAG_SECONDS) that a process that lost the election integrates
    anyway: the election only saves work, and whoever holds it may not be integrating (a
    stuck process; on PostgreSQL any database user can take the advisory lock). The
    per-site lock keeps several integrators correct."""
    with app.app_context():
        try:
            health = log_health()
        finally:
            db.session.remove()
    age = health["oldest_pending_seconds"]
    if age is None or age <= health["max_lag_seconds"] / 2:
        return False
    log.warning("the log is %.0f s behind and the process elected to integrate it does not; "
                "integrating from this one", age)
    return True


def _integrator_loop(app, interval: float) -> None:
    elected = None
    while True:
        time.sleep(interval)
        if _database_gone(app):
            break
        try:
            if elected is not None and not elected.alive():
                log.warning("the log integrator lost its election (database connection "
                            "lost); asking again")
                elected = None
            if elected is None:
                elected = _elect(app)
                if elected is None and not _overdue(app):
                    continue
            with app.app_context():
                integrate()
        except Exception as exc:  # noqa: BLE001 - keep integrating after a hiccup
            if _database_gone(app, exc):
                break
            log.warning("log integration failed: %s", exc)
    if elected is not None:
        elected.close()
    with _started_lock:
        _started.discard((app.config["SQLALCHEMY_DATABASE_URI"], os.getpid()))
