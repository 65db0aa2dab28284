"""Checks beyond the hash chains: the log against its signed checkpoints, and the
current-state projection against a replay of the ledger.

Hash chains catch a careless edit; an insider who recomputes them is caught here, because
the leaves of the log and the roots of its signed checkpoints cannot be recomputed to
match without the signing key: an event rewritten after it was logged no longer matches
its leaf, a rewritten log no longer matches a signed root, and a truncated log is shorter
than its latest checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import sqlalchemy as sa

from ..extensions import db
from . import merkle, signer_state
from ..database import iso
from .chain import (ConsentEvent, LedgerCheckpoint, _iter_rows, backdated, compute_states,
                    current_states, event_fields, normalise_state)
from .log import (LogCheckpoint, LogLeaf, LogNode, event_leaf_hash, log_origin,
                  site_verifiers)
from .notes import NoteError, open_checkpoint

MAX_PROBLEMS = 20


@dataclass
class SiteProblem:
    """Something wrong with a site's log or projection."""

    site_key: str
    reason: str
    kind: str = "log"

    def __str__(self) -> str:
        return f"site {self.site_key} {self.kind}: {self.reason}"


def _sites(site_ids: Iterable[int] | None):
    from ..sites import Site

    query = db.select(Site.id, Site.key).order_by(Site.id)
    if site_ids is not None:
        query = query.where(Site.id.in_(list(site_ids)))
    return db.session.execute(query).all()


def verify_log(site_ids: Iterable[int] | None = None) -> list[SiteProblem]:
    """Recompute every site's log from its events; check it against every signed checkpoint."""
    problems: list[SiteProblem] = []
    for site_id, key in _sites(site_ids):
        problems += _verify_site_log(site_id, key)
    return problems


def _verify_site_log(site_id: int, key: str) -> list[SiteProblem]:
    out: list[SiteProblem] = []

    def bad(reason: str) -> None:
        if len(out) < MAX_PROBLEMS:
            out.append(SiteProblem(key, reason))

    verifiers = site_verifiers(key)
    # (size, root, when it was signed as said in reports, its floor: Checkpoint.floor)
    signed: list[tuple[int, bytes, str, str | None]] = []
    notes = set()
    for cp in db.session.execute(db.select(LogCheckpoint).where(
            LogCheckpoint.site_id == site_id).order_by(LogCheckpoint.size, LogCheckpoint.id)
    ).scalars():
        try:
            body, _ = open_checkpoint(cp.note, verifiers)
        except NoteError as exc:
            bad(f"the checkpoint of {cp.size:,} entries signed at {cp.created_at} does not "
                f"verify ({exc}): it was edited")
            continue
        signed.append((body.size, body.root, body.time or str(cp.created_at), body.floor))
        notes.add(cp.note)
    # The checkpoint this machine's signer kept outside the database: deleting or
    # rewinding checkpoint rows does not make the log look unsigned.
    try:
        held = signer_state.held_checkpoint(log_origin(key), verifiers)
    except signer_state.StateError as exc:
        bad(str(exc))
        held = None
    if held is not None:
        if held.note not in notes:
            bad(f"the checkpoint of {held.size:,} entries signed at {held.when}, kept by the "
                f"signer in {held.path}, is not in the database: checkpoint rows were "
                "deleted or rewound")
        signed.append((held.size, held.checkpoint.root,
                       f"{held.when} (kept outside the database)", held.checkpoint.floor))
        signed.sort(key=lambda item: item[0])
    purged_upto = {}
    for cp in db.session.execute(db.select(LedgerCheckpoint).where(
            LedgerCheckpoint.site_id == site_id)).scalars():
        purged_upto[cp.stream] = max(purged_upto.get(cp.stream, 0), cp.seq)
    leaves, ev, nodes = LogLeaf.__table__, ConsentEvent.__table__, LogNode.__table__
    query = (sa.select(leaves.c.log_index, leaves.c.stream.label("l_stream"),
                       leaves.c.seq.label("l_seq"), nodes.c.hash.label("stored"), ev)
             .select_from(leaves.outerjoin(ev, sa.and_(ev.c.site_id == leaves.c.site_id,
                                                       ev.c.stream == leaves.c.stream,
                                                       ev.c.seq == leaves.c.seq))
                          .outerjoin(nodes, sa.and_(nodes.c.site_id == leaves.c.site_id,
                                                    nodes.c.level == 0,
                                                    nodes.c.idx == leaves.c.log_index)))
             .where(leaves.c.site_id == site_id).order_by(leaves.c.log_index))
    compact = merkle.CompactRange()
    pending = list(signed)
    # The date no later entry may precede, from the last checkpoint passed (Checkpoint.floor).
    floor, floor_when = None, None
    while pending and pending[0][0] == 0:
        # Checkpoints of the empty log (signed before the first event) come first.
        if pending.pop(0)[1] != merkle.EMPTY_ROOT:
            bad("a signed checkpoint of 0 entries has a root other than the empty tree's")
    for row in _iter_rows(query):
        if row.log_index != compact.size:
            bad(f"log entry {compact.size:,} is missing: the log was edited")
            break
        stored = bytes(row.stored) if row.stored is not None else None
        if row.event_id is None:
            if row.l_seq <= purged_upto.get(row.l_stream, 0) and stored is not None:
                leaf = stored  # purged by retention: its signed checkpoints still cover it
            else:
                bad(f"log entry {row.log_index:,} (stream {row.l_stream} seq {row.l_seq}): "
                    "its event is gone: it was deleted")
                leaf = stored or bytes(32)
        else:
            leaf = event_leaf_hash(row.prev_hash, event_fields(row, key))
            if stored != leaf:
                bad(f"event {row.event_id} (log entry {row.log_index:,}) does not match the "
                    "leaf the log holds: the event was rewritten after it was logged")
            elif backdated(iso(row.recorded_at), floor):
                bad(f"event {row.event_id} (log entry {row.log_index:,}) is dated "
                    f"{iso(row.recorded_at)}, but the checkpoint signed at {floor_when} does "
                    f"not hold it and left out no event recorded before {floor}: it was "
                    "backdated")
        compact.append(leaf)
        while pending and pending[0][0] == compact.size:
            size, root, when, floor_at = pending.pop(0)
            if floor_at and (floor is None or floor_at > floor):
                floor, floor_when = floor_at, when
            if compact.root() != root:
                bad(f"the signed checkpoint of {size:,} entries ({when}) does not match the "
                    "events: an entry before it was rewritten")
    for size, root, when, _at in pending:
        bad(f"the log holds {compact.size:,} entries but a checkpoint signed at {when} covers "
            f"{size:,}: the log was rewound (entries deleted)")
    out += _verify_nodes(site_id, key)[: max(0, MAX_PROBLEMS - len(out))]
    return out


def _verify_nodes(site_id: int, key: str) -> list[SiteProblem]:
    """Each stored interior node is the hash of its two children (else proofs served from
    them would be wrong)."""
    out = []
    n = LogNode.__table__
    parent, left, right = n.alias("p"), n.alias("a"), n.alias("b")
    levels = db.session.execute(sa.select(sa.func.max(n.c.level)).where(
        n.c.site_id == site_id)).scalar() or 0
    for level in range(1, levels + 1):
        query = (sa.select(parent.c.idx, parent.c.hash, left.c.hash.label("l"),
                           right.c.hash.label("r"))
                 .select_from(parent
                              .outerjoin(left, sa.and_(left.c.site_id == parent.c.site_id,
                                                       left.c.level == level - 1,
                                                       left.c.idx == parent.c.idx * 2))
                              .outerjoin(right, sa.and_(right.c.site_id == parent.c.site_id,
                                                        right.c.level == level - 1,
                                                        right.c.idx == parent.c.idx * 2 + 1)))
                 .where(parent.c.site_id == site_id, parent.c.level == level))
        for row in _iter_rows(query):
            if row.l is None or row.r is None or \
                    merkle.node_hash(bytes(row.l), bytes(row.r)) != bytes(row.hash):
                out.append(SiteProblem(key, f"stored tree node (level {level}, index "
                                            f"{row.idx}) does not match its children"))
                return out
    return out


def verify_projection(site_ids: Iterable[int] | None = None) -> list[SiteProblem]:
    """The current-state projection equals a replay of the ledger; names who differs."""
    from ..subjects import Subject

    sites = {sid: key for sid, key in _sites(site_ids)}
    replayed = {k: normalise_state(v) for k, v in compute_states(list(sites)).items()}
    stored = {k: normalise_state(v) for k, v in current_states().items() if k[0] in sites}
    differ = sorted(k for k in set(replayed) | set(stored) if replayed.get(k) != stored.get(k))
    if not differ:
        return []
    names = dict(db.session.execute(db.select(Subject.pseudonym, Subject.public_id).where(
        Subject.pseudonym.in_([k[1] for k in differ[:200]]))).all())
    out = []
    for site_id, pseudonym in differ[:MAX_PROBLEMS]:
        a, b = stored.get((site_id, pseudonym)), replayed.get((site_id, pseudonym))
        keys = sorted(k for k in set(a or {}) | set(b or {})
                      if (a or {}).get(k) != (b or {}).get(k)) if a and b else []
        what = ("has a stored state but no events" if b is None else
                "has events but no stored state" if a is None else
                f"differs in {', '.join(keys)}")
        who = names.get(pseudonym) or "(erased)"
        out.append(SiteProblem(sites[site_id], f"subject {who} (pseudonym {pseudonym}) {what}"
                               ": the stored current state is not what its events say",
                               kind="projection"))
    if len(differ) > MAX_PROBLEMS:
        out.append(SiteProblem(sites[differ[0][0]], f"... {len(differ)} subjects differ in "
                               "all", kind="projection"))
    return out
