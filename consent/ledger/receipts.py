"""Receipts a person can check offline: an event, its log index, an inclusion proof and
the signed checkpoint it leads to; with a later checkpoint and a consistency proof, the
proof that the event is still in the log.

`build_receipt` reads the database (integrating the event first when it has no index
yet); `check_receipt` needs nothing but the receipt, the server's public key and, to
show the event is still there, a later checkpoint with its consistency proof (the JSON
`GET /api/v1/sites/{site}/log/consistency` returns).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeSerializer

from ..extensions import db
from . import merkle
from .chain import ConsentEvent, canonical, chain_hash, event_fields, hashed_fields
from .log import (b64, checkpoint_of_size, consistency_proof, ensure_integrated,
                  event_leaf_hash, inclusion_proof, latest_checkpoint, log_origin,
                  verifier_text)
from .notes import NoteError, Verifier, open_checkpoint, split_note

RECEIPT_FORMAT = "consent-log-receipt/1"
EVENT_KEYS = ("event_id", "site", "stream", "seq", "subject", "recorded_at", "action",
              "source", "categories", "channels", "policy_version", "locale", "meta",
              "details_digest", "idempotency_key")


class ReceiptPending(Exception):
    """The event has no log index yet (its stream could not be integrated)."""


def _serializer():
    from flask import current_app

    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="consent-log-receipt")


def receipt_token(site_key: str, event_id: str) -> str:
    """A capability to download one event's receipt (for a link given to its person)."""
    return _serializer().dumps({"s": site_key, "e": event_id})


def token_allows(token: str | None, site_key: str, event_id: str) -> bool:
    """Whether TOKEN is the receipt capability of this event."""
    if not token:
        return False
    try:
        payload = _serializer().loads(token)
    except BadSignature:
        return False
    return payload == {"s": site_key, "e": event_id}


def log_proof(site, event: ConsentEvent) -> dict:
    """The `log` block of a receipt: index, inclusion proof and the signed checkpoint."""
    index = ensure_integrated(site.id, site.key, event.stream, event.seq)
    if index is None:
        raise ReceiptPending(event.event_id)
    checkpoint = latest_checkpoint(site.id)
    if checkpoint is None or checkpoint.size <= index:
        raise ReceiptPending(event.event_id)
    return {"origin": log_origin(site.key), "index": index, "tree_size": checkpoint.size,
            "inclusion_path": [b64(h) for h in inclusion_proof(site.id, index,
                                                               checkpoint.size)],
            "checkpoint": checkpoint.note}


def event_block(site_key: str, event: ConsentEvent) -> dict:
    """An event as a receipt carries it: every hashed field, prev_hash and hash."""
    return {**event_fields(event, site_key), "prev_hash": event.prev_hash,
            "hash": event.hash}


def build_receipt(site_key: str, event_id: str, *, visitor_token: str | None = None) -> dict:
    """The receipt of one event of a site (NotFound when the site has no such event, or,
    with VISITOR_TOKEN, when the event is not of the live visitor whose read token it is)."""
    from ..sites import NotFound, site_snapshot
    from ..subjects import token_reads_pseudonym

    site = site_snapshot(site_key)
    event = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.site_id == site.id, ConsentEvent.event_id == event_id)
    ).scalar_one_or_none()
    # Another visitor's event answers as an unknown one: a read token is no oracle of
    # which event ids exist.
    if event is None or visitor_token is not None and not token_reads_pseudonym(
            site.id, event.subject, visitor_token):
        raise NotFound("event", event_id[:64])
    block = event_block(site.key, event)
    proof = log_proof(site, event)
    return {"receipt": RECEIPT_FORMAT, "site": site.key, "event": block, "log": proof,
            "public_key": verifier_text(site.key)}


def consistency_bundle(site, old: int, new: int) -> dict:
    """A consistency proof from OLD to NEW with the signed checkpoint of NEW if any."""
    stored = checkpoint_of_size(site.id, new)
    return {"origin": log_origin(site.key), "from": old, "to": new,
            "consistency_path": [b64(h) for h in consistency_proof(site.id, old, new)],
            "checkpoint": stored.note if stored else None}


# ---------------------------------------------------------------- offline check


@dataclass
class ReceiptCheck:
    """Outcome of checking a receipt."""

    site: str | None = None
    event_id: str | None = None
    index: int | None = None
    size: int | None = None
    later_size: int | None = None
    problems: list[str] = field(default_factory=list)
    # Why the later checkpoint given can neither show the event is still there nor that
    # it is gone (a bare checkpoint of another size): the holder needs the proof.
    undecided: str | None = None
    # The digest of the notice the receipt carries, once checked against the event's.
    notice: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line for people."""
        if not self.ok:
            return f"site {self.site or '?'}: " + "; ".join(self.problems)
        line = (f"site {self.site}: event {self.event_id} is entry {self.index:,} of the "
                f"log in the signed checkpoint of {self.size:,} entries")
        if self.notice:
            line += f"; the notice it was shown is the one recorded ({self.notice[:12]}…)"
        if self.later_size is not None:
            line += f", and still in the log at checkpoint {self.later_size:,}"
        return line


def _hashes(values) -> list[bytes]:
    if not isinstance(values, list):
        raise ValueError("a proof is a list of base64 hashes")
    out = []
    for v in values:
        raw = base64.b64decode(v, validate=True) if isinstance(v, str) else b""
        if len(raw) != 32:
            raise ValueError("a proof hash is 32 bytes of base64")
        out.append(raw)
    return out


def verifiers_from(public_key: str | bytes, origin: str) -> list[Verifier]:
    """The Verifier of a pinned key for a log ORIGIN (a verifier key must name it)."""
    from .keys import parse_public_key
    from .notes import parse_verifier_key

    if isinstance(public_key, bytes):
        return [Verifier(origin, public_key)]
    text = public_key.strip()
    if text.count("+") >= 2 and not text.startswith("ed25519:"):
        verifier = parse_verifier_key(text)
        return [verifier]
    return [Verifier(origin, parse_public_key(text))]


def check_receipt(receipt: dict, public_key: str | bytes, later: dict | str | None = None
                  ) -> ReceiptCheck:
    """Check a receipt offline against the server's public key; with LATER (a consistency
    bundle, or a checkpoint note of the same size) that the event is still in the log."""
    out = ReceiptCheck()
    if isinstance(receipt, dict) and "proof" in receipt and "event" not in receipt:
        receipt = receipt["proof"]  # a Kantara receipt carries the proof under "proof"
    try:
        event, proof = receipt["event"], receipt["log"]
        out.site, out.event_id = event["site"], event["event_id"]
        fields = hashed_fields(
            event_id=event["event_id"], site_key=event["site"], stream=event["stream"],
            seq=event["seq"], subject=event["subject"], recorded_at=event["recorded_at"],
            action=event["action"], source=event["source"], categories=event["categories"],
            channels=event["channels"], policy_version=event["policy_version"],
            locale=event["locale"], meta=event["meta"],
            details_digest=event["details_digest"], idempotency_key=event["idempotency_key"])
        if set(event) - set(EVENT_KEYS) - {"v", "prev_hash", "hash"}:
            out.problems.append("the event carries fields its hash does not cover")
            return out
        index, size = int(proof["index"]), int(proof["tree_size"])
        out.index, out.size = index, size
        path = _hashes(proof["inclusion_path"])
        note = proof["checkpoint"]
        origin = proof.get("origin") or split_note(note)[0].split("\n", 1)[0]
        checkpoint, _ = open_checkpoint(note, verifiers_from(public_key, origin))
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        out.problems.append(f"the receipt is malformed or its checkpoint is not signed by "
                            f"the pinned key ({exc})")
        return out
    if chain_hash(event["prev_hash"], fields) != event["hash"]:
        out.problems.append(f"event {out.event_id} does not match its hash: it was edited")
        return out
    if checkpoint.size != size:
        out.problems.append(f"the checkpoint is of {checkpoint.size:,} entries, the proof "
                            f"of {size:,}")
        return out
    leaf = event_leaf_hash(event["prev_hash"], fields)
    if not merkle.verify_inclusion(leaf, index, size, path, checkpoint.root):
        out.problems.append(f"event {out.event_id} is not entry {index:,} of the log whose "
                            f"signed checkpoint has {size:,} entries")
        return out
    if "notice" in receipt:
        # What the visitor was shown (consent.notices): its canonical JSON's SHA-256 is
        # the digest the event recorded.
        recorded = (event["meta"] or {}).get("notice") if isinstance(event["meta"], dict) \
            else None
        shown = hashlib.sha256(canonical(receipt["notice"]).encode("utf-8")).hexdigest()
        if not recorded or shown != recorded:
            out.problems.append(f"the notice in the receipt is not the one event "
                                f"{out.event_id} recorded (meta.notice): it was edited")
            return out
        out.notice = recorded
    if later is not None:
        _check_later(out, checkpoint, later, public_key)
    return out


def _check_later(out: ReceiptCheck, first, later, public_key) -> None:
    try:
        bare = isinstance(later, str) or "consistency_path" not in later
        if isinstance(later, str):
            later = {"checkpoint": later, "from": first.size, "to": None}
        note = later["checkpoint"]
        if not note:
            raise ValueError("the consistency proof carries no signed checkpoint")
        newer, _ = open_checkpoint(note, verifiers_from(public_key, first.origin))
        path = _hashes(later.get("consistency_path") or [])
        old = int(later.get("from", first.size))
    except (KeyError, TypeError, ValueError, NoteError) as exc:
        out.problems.append(f"the later checkpoint cannot be used ({exc})")
        return
    out.later_size = newer.size
    if newer.origin != first.origin:
        out.problems.append(f"the later checkpoint is of another log ({newer.origin})")
    elif old != first.size:
        out.problems.append(f"the consistency proof starts at {old:,}, the receipt's "
                            f"checkpoint has {first.size:,} entries")
    elif bare and newer.size < first.size and first.time and newer.time and \
            newer.time > first.time:
        out.problems.append(f"checkpoint {newer.size:,}, signed at {newer.time}, is smaller "
                            f"than the receipt's of {first.size:,}, signed earlier at "
                            f"{first.time}: the log was rewound")
    elif bare and newer.size != first.size:
        # Two signed checkpoints of different sizes say nothing of each other without a
        # consistency proof: an older, smaller one is as honest as a larger, newer one.
        out.later_size = None
        out.undecided = (f"the later checkpoint has {newer.size:,} entries and the "
                         f"receipt's {first.size:,}, and no consistency proof links them: "
                         f"give the JSON of GET /api/v1/sites/{out.site}/log/consistency"
                         f"?from={first.size} instead")
    elif newer.size < first.size:
        out.problems.append(f"checkpoint {newer.size:,} is not an extension of "
                            f"{first.size:,} the receipt holds: it is smaller (the log was "
                            "rewound)")
    elif not merkle.verify_consistency(first.size, newer.size, path, first.root, newer.root):
        out.problems.append(f"checkpoint {newer.size:,} is not an extension of "
                            f"{first.size:,} the receipt holds: the log was rewritten")
