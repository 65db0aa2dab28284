"""Serving the log: checkpoints, proofs and keys as the HTTP surface hands them out."""
from __future__ import annotations

import logging

from ..errors import DomainError, Invalid
from ..extensions import db
from .chain import ConsentEvent
from .keys import previous_public_keys
from .log import (b64, checkpoint_of_size, consistency_proof, ensure_integrated,
                  inclusion_proof, integrate_site, latest_checkpoint, log_origin,
                  read_nodes, site_verifiers, tree_size)
from .receipts import consistency_bundle

log = logging.getLogger(__name__)


class LogNotSigned(DomainError):
    """The site's log has no checkpoint and the signer refused to sign one."""

    status = 503
    title = "Log not signed"


def _site(site_key: str):
    from ..sites import site_snapshot

    return site_snapshot(site_key)


def checkpoint_note(site_key: str) -> str:
    """The latest signed checkpoint of a site (the first one is signed on demand)."""
    from ..database import run_write

    site = _site(site_key)
    checkpoint = latest_checkpoint(site.id)
    if checkpoint is None:
        result = run_write(integrate_site, site.id, site.key)
        checkpoint = latest_checkpoint(site.id)
        if checkpoint is None:
            for why in result.refused or []:
                log.error("not integrated: %s", why)
            raise LogNotSigned(f"site {site.key}: the log has no signed checkpoint: the "
                               "signer refused to sign it (see the server's log)")
    return checkpoint.note


def _latest_size(site) -> int:
    checkpoint = latest_checkpoint(site.id)
    return checkpoint.size if checkpoint is not None else 0


def inclusion_document(site_key: str, event_id: str, size: int | None) -> dict:
    """The inclusion proof of an event in the tree of SIZE (default: latest checkpoint)."""
    from ..sites import NotFound

    site = _site(site_key)
    event = db.session.execute(db.select(ConsentEvent.stream, ConsentEvent.seq).where(
        ConsentEvent.site_id == site.id, ConsentEvent.event_id == event_id)).first()
    index = None
    if event is not None:
        index = ensure_integrated(site.id, site.key, event.stream, event.seq)
    if index is None:
        raise NotFound("event", event_id)
    size = size if size is not None else _latest_size(site)
    current = tree_size(site.id)
    if size > current:
        raise Invalid(f"the log has {current} entries, not {size}", field="size")
    if index >= size:
        raise Invalid(f"event {event_id} is entry {index}, not in a tree of {size} entries",
                      field="size")
    stored = checkpoint_of_size(site.id, size)
    leaf = read_nodes(site.id, {(0, index)})[(0, index)]
    return {"origin": log_origin(site.key), "event_id": event_id, "index": index,
            "tree_size": size, "leaf_hash": b64(leaf),
            "inclusion_path": [b64(h) for h in inclusion_proof(site.id, index, size)],
            "checkpoint": stored.note if stored else None}


def consistency_document(site_key: str, old: int, new: int | None) -> dict:
    """The consistency proof from OLD to NEW entries (default: the latest checkpoint)."""
    site = _site(site_key)
    new = new if new is not None else _latest_size(site)
    current = tree_size(site.id)
    if new > current:
        raise Invalid(f"the log has {current} entries, not {new}", field="to")
    if old > new:
        raise Invalid(f"must not be larger than {new}", field="from")
    return consistency_bundle(site, old, new)


def site_keys_text(site_key: str) -> str:
    """The site's checkpoint keys as verifier keys, one per line, current first."""
    site = _site(site_key)
    return "\n".join(v.text() for v in site_verifiers(site.key)) + "\n"


__all__ = ["checkpoint_note", "consistency_document", "inclusion_document",
           "site_keys_text", "consistency_proof", "previous_public_keys"]
